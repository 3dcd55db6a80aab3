"""Notebook 08's ROI editor in a real browser: JupyterLab on 127.0.0.1 driven by headless Chromium.

A person's workflow, with the mouse: open notebook 08 (a copy with tiny parameters injected by
papermill, drawing its own ROIs instead of loading the examples), run it up to the editor, pick
a class, draw a polygon, pick another class, draw two points, delete one of them, run the next
cells (the ROIs used, their figure, their rasterisation), then ask the kernel what it holds. The
kernel's ROI collection must be exactly what is on the map, with the right classes, and no cell
may have failed. The rest of the notebook (training) is run by tests/test_notebooks.py.

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
NOTEBOOK = REPO / "notebooks" / "08_roi_labelling.ipynb"
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


def _prepare_notebook_08(tmp_path: Path) -> tuple[Path, int, int]:
    """Notebook 08 with tiny parameters injected (not executed), in ``tmp_path``.

    Returns the copy and the indices of its editor cell and of the cell that burns the ROIs.
    """
    import papermill as pm
    import yaml

    from helpers.sample_data import ensure_sample_region

    region = tmp_path / "region"
    ensure_sample_region(region, size=256, seed=42, progress=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "sample": {"folder": str(region), "size": 256, "seed": 42},
                # sizes that fit a 256 px scene (the sample's 512 px blocks do not)
                "tiling": {
                    "patch_size": 64,
                    "stride": 32,
                    "tile_size": 32,
                    "tile_stride": 16,
                    "block_size": 128,
                },
                "outputs": {"root": str(tmp_path / "outputs")},
            }
        )
    )
    copy = tmp_path / NOTEBOOK.name
    parameters = {
        "REGION": str(config),
        "USE_EXAMPLE_ROIS": False,  # the ROIs are the ones drawn below
        "ROI_FILE": str(tmp_path / "rois" / "drawn.geojson"),
    }
    pm.execute_notebook(
        str(NOTEBOOK), str(copy), parameters=parameters, prepare_only=True, progress_bar=False
    )
    sources = [cell.source for cell in nbformat.read(copy, as_version=4).cells]
    editor = next(i for i, s in enumerate(sources) if "maps.RoiEditor(" in s)
    burn = next(i for i, s in enumerate(sources) if s.startswith("roi_labels = rois.rois_to_"))
    return copy, editor, burn


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


_RUN_CELLS = """async ([first, last]) => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.sessionContext.ready;
    for (let i = first; i <= last; i++) {
        panel.content.activeCellIndex = i;
        await window.jupyterapp.commands.execute('notebook:run-cell');
    }
}"""

# Code cells up to ``last`` that did not run, and every error output, as readable strings.
_PROBLEMS = """(last) => {
    const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    const problems = [];
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        if (i <= last && !cell.executionCount) problems.push(`cell ${i} did not run`);
        for (let j = 0; j < cell.outputs.length; j++) {
            const out = cell.outputs.get(j).toJSON();
            if (out.output_type === 'error') {
                problems.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
            }
        }
    }
    return problems;
}"""

# Run code in the notebook's kernel (not in a cell) and return what it prints.
_ASK_KERNEL = """async (code) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute({code: code, store_history: false});
    let text = '';
    future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'stream') text += msg.content.text;
        if (msg.header.msg_type === 'error') text += 'ERROR ' + msg.content.evalue;
    };
    await future.done;
    return text;
}"""

_REPORT = (
    "import json\n"
    "print(json.dumps({'editor': editor.rois, 'used': roi_collection['features'],"
    " 'classes': list(classes), 'counts': roi_labels.counts['train']}))"
)


def _kinds(features: list[dict]) -> list[tuple[str, str, str]]:
    return sorted(
        (f["geometry"]["type"], f["properties"]["class"], f["properties"]["split"])
        for f in features
    )


def test_draw_edit_delete_in_notebook_08(lab, tmp_path):
    _require(CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "Playwright's Python package is not installed (pip install playwright)")
    base, token = lab
    notebook, editor_cell, burn_cell = _prepare_notebook_08(tmp_path)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/{notebook.name}?token={token}&reset")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
            timeout=30_000,
        )

        # the notebook itself, from the top down to the editor
        page.evaluate(_RUN_CELLS, [0, editor_cell])
        assert page.evaluate(_PROBLEMS, editor_cell) == []
        page.locator(".leaflet-draw-draw-polygon").wait_for(timeout=30_000)
        page.locator(".leaflet-image-layer").first.wait_for(state="attached")
        leaflet = page.locator(".leaflet-container").first
        leaflet.scroll_into_view_if_needed()
        box = leaflet.bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        dropdown = page.locator(".widget-dropdown select").first

        def settle() -> None:
            page.wait_for_timeout(600)  # let the kernel answer and the map redraw

        # a polygon of class "trees"
        dropdown.select_option("trees")
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
        dropdown.select_option("water")
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
        page.get_by_role("link", name="Save").click()  # the delete tool's Save, not the editor's
        settle()
        on_map_pins = markers.count()
        on_map_paths = leaflet.locator(".leaflet-overlay-pane path").count()
        shot = tmp_path / "roi_editor.png"
        page.screenshot(path=str(shot), full_page=True)

        # the next cells of the notebook work on what was drawn
        page.evaluate(_RUN_CELLS, [editor_cell + 1, burn_cell])
        problems = page.evaluate(_PROBLEMS, burn_cell)
        report = page.evaluate(_ASK_KERNEL, _REPORT)
        browser.close()
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / "roi_editor.png")
    except OSError:
        pass  # a read-only checkout still runs the test

    assert problems == [], f"notebook 08 failed in the browser: {problems}"
    assert report.startswith("{"), f"the kernel did not report its ROIs: {report[:500]}"
    state = json.loads(report)
    expected = [("Point", "water", "train"), ("Polygon", "trees", "train")]
    assert _kinds(state["editor"]["features"]) == expected
    # the notebook trains on exactly the drawn shapes, with their classes
    assert _kinds(state["used"]) == expected
    assert sorted(state["classes"]) == ["trees", "water"]
    assert state["counts"]["water"] == 1 and state["counts"]["trees"] > 10
    # exactly what is on the map: one pin per point; one path per polygon and per point's dot
    assert on_map_pins == 1
    assert on_map_paths == 2
    polygon = next(f for f in state["editor"]["features"] if f["geometry"]["type"] == "Polygon")
    assert len(polygon["geometry"]["coordinates"][0]) == 5  # 4 clicked vertices, closed
