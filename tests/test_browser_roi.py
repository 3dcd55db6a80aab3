"""The ROI editor in a real browser: JupyterLab on 127.0.0.1 driven by headless Chromium.

A person's workflow, with the mouse: run a notebook that shows a :class:`helpers.maps.RoiEditor`
on a tiny scene, pick a class, draw a polygon, pick another class, draw two points, delete one
of them, then ask the kernel what it holds. The kernel's ROI collection must be exactly what is
on the map, with the right classes.

Needs Debian's ``chromium`` and Playwright's Python package (its own browser download is not
used). Without them the test is skipped locally and fails in CI (``CI=true``), where
``.ci/run`` installs chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "outputs" / "browser"


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run in CI)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _notebook(path: Path, scene: Path, out: Path) -> None:
    setup = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from helpers.maps import RoiEditor\n"
        f"editor = RoiEditor({str(scene)!r}, classes=['water', 'trees'], height='420px')\n"
        "editor"
    )
    report = f"import json\nwith open({str(out)!r}, 'w') as f:\n    json.dump(editor.rois, f)"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(report)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def lab(tmp_path: Path):
    """JupyterLab on a free local port with a token, isolated config; yields (url, root)."""
    port, token = _free_port(), uuid.uuid4().hex
    config = tmp_path / "jupyter_config"
    (config / "labconfig").mkdir(parents=True)
    # Expose the app object (to run cells by command) and keep the news pop-up away.
    page_config = {
        "exposeAppInBrowser": True,
        "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
    }
    (config / "labconfig" / "page_config.json").write_text(json.dumps(page_config))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "PYTHONPATH": str(REPO),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp_path}", "--LabApp.check_for_updates_class="
        "jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI runners often run as root
    log = open(tmp_path / "lab.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(
                        "JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:]
                    )
                time.sleep(0.3)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_draw_edit_delete_in_jupyterlab(lab, tmp_path, make_geotiff):
    _require(CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "Playwright's Python package is not installed (pip install playwright)")
    base, token = lab
    scene = make_geotiff("scene.tif", width=64, height=64)
    out = tmp_path / "rois_out.json"
    _notebook(tmp_path / "roi.ipynb", scene, out)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/roi.ipynb?token={token}&reset")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
            timeout=30_000,
        )

        def run_cell(index: int) -> None:
            page.evaluate(
                """async (index) => {
                    const panel = window.jupyterapp.shell.currentWidget;
                    await panel.sessionContext.ready;
                    panel.content.activeCellIndex = index;
                    await window.jupyterapp.commands.execute('notebook:run-cell');
                }""",
                index,
            )

        run_cell(0)
        polygon_tool = page.locator(".leaflet-draw-draw-polygon")
        polygon_tool.wait_for(timeout=30_000)
        leaflet = page.locator(".leaflet-container").first
        page.locator(".leaflet-image-layer").first.wait_for(state="attached")
        box = leaflet.bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

        def settle() -> None:
            page.wait_for_timeout(600)  # let the kernel answer and the map redraw

        # a polygon of class "trees"
        page.locator(".widget-dropdown select").select_option("trees")
        settle()
        page.locator(".leaflet-draw-draw-polygon").click()
        for dx, dy in [(-120, -80), (-20, -90), (-10, 10), (-130, 20)]:
            # Leaflet.draw tracks the pointer: move there first, as a hand would
            page.mouse.move(cx + dx - 5, cy + dy - 5)
            page.mouse.move(cx + dx, cy + dy)
            page.mouse.click(cx + dx, cy + dy)
            page.wait_for_timeout(150)
        page.get_by_text("Finish", exact=True).click()
        settle()

        # two points of class "water"
        page.locator(".widget-dropdown select").select_option("water")
        settle()
        for dx, dy in [(80, 60), (140, -60)]:
            page.locator(".leaflet-draw-draw-circlemarker").click()
            page.mouse.move(cx + dx, cy + dy)
            page.mouse.click(cx + dx, cy + dy)
            settle()
        markers = page.locator(".leaflet-marker-pane .leaflet-marker-icon")
        assert markers.count() == 2

        # delete the second point with the delete tool: click its pin, then Save
        page.locator(".leaflet-draw-edit-remove").click()
        page.mouse.click(cx + 140, cy - 60 - 15)  # the pin's body sits above its tip
        page.get_by_text("Save", exact=True).click()
        settle()

        run_cell(1)
        deadline = time.monotonic() + 15
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        on_map_pins = page.locator(".leaflet-marker-pane .leaflet-marker-icon").count()
        on_map_paths = page.locator(".leaflet-overlay-pane path").count()
        shot = tmp_path / "roi_editor.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / "roi_editor.png")
    except OSError:
        pass  # a read-only checkout still runs the test

    assert out.exists(), "the kernel did not report its ROIs"
    collection = json.loads(out.read_text())
    kinds = sorted(
        (f["geometry"]["type"], f["properties"]["class"], f["properties"]["split"])
        for f in collection["features"]
    )
    assert kinds == [("Point", "water", "train"), ("Polygon", "trees", "train")]
    # exactly what is on the map: one pin per point; one path per polygon and per point's dot
    assert on_map_pins == 1
    assert on_map_paths == 2
    polygon = next(f for f in collection["features"] if f["geometry"]["type"] == "Polygon")
    assert len(polygon["geometry"]["coordinates"][0]) == 5  # 4 clicked vertices, closed
