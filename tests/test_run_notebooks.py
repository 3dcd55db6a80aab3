"""The headless runner behind `make course`: executed copies, HTML, parameters, loud failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import run_notebooks  # noqa: E402


def _write_notebook(path: Path, *sources: str, parameters: str | None = None) -> Path:
    cells = [nbformat.v4.new_markdown_cell("# A tiny notebook")]
    if parameters is not None:
        cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_discover_finds_numbered_notebooks_in_order(tmp_path):
    for name in ["01_b.ipynb", "00_a.ipynb", "scratch.ipynb", "10_c.ipynb"]:
        _write_notebook(tmp_path / name, "1")
    assert [p.name for p in run_notebooks.discover(tmp_path)] == [
        "00_a.ipynb",
        "01_b.ipynb",
        "10_c.ipynb",
    ]


def test_parameters_are_injected_and_outputs_written(tmp_path):
    nb = _write_notebook(
        tmp_path / "00_demo.ipynb",
        "from pathlib import Path\nPath('seen.txt').write_text(str(SIZE * 2))",
        parameters="SIZE = 1",
    )
    run = run_notebooks.run_notebook(nb, tmp_path / "out", {"SIZE": 21})
    # the notebook runs in its own folder, like in JupyterLab
    assert (tmp_path / "seen.txt").read_text() == "42"
    executed = nbformat.read(run.output, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert Path(run.html).read_text().lstrip().lower().startswith("<!doctype html")
    assert run.seconds > 0


def test_main_runs_in_order_and_writes_a_summary(tmp_path, capsys):
    a = _write_notebook(tmp_path / "00_a.ipynb", "x = 1")
    b = _write_notebook(tmp_path / "01_b.ipynb", "y = 2")
    assert run_notebooks.main([str(a), str(b), "--out", str(tmp_path / "out"), "--no-html"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] 00_a.ipynb ... ok" in out and "[2/2] 01_b.ipynb ... ok" in out
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert [Path(n["notebook"]).name for n in summary["notebooks"]] == ["00_a.ipynb", "01_b.ipynb"]


def test_a_failing_notebook_is_named_with_its_cell_and_stops_the_run(tmp_path, capsys):
    bad = _write_notebook(tmp_path / "00_bad.ipynb", "x = 1", "raise ValueError('broken scene')")
    after = _write_notebook(tmp_path / "01_after.ipynb", "open('ran.txt', 'w').write('yes')")
    code = run_notebooks.main([str(bad), str(after), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "00_bad.ipynb failed at cell 2" in captured.err
    assert "ValueError: broken scene" in captured.err
    # the executed copy keeps the traceback, and the run stopped before the next notebook
    assert (tmp_path / "out" / "notebooks" / "00_bad.ipynb").exists()
    assert not (tmp_path / "ran.txt").exists()


def test_missing_notebook_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        run_notebooks.run_notebook(tmp_path / "nope.ipynb", tmp_path / "out")


def test_parse_parameter_reads_literals():
    assert run_notebooks.parse_parameter("SIZE=512") == ("SIZE", 512)
    assert run_notebooks.parse_parameter("DIR=../data") == ("DIR", "../data")
    assert run_notebooks.parse_parameter("FLAG=True") == ("FLAG", True)
