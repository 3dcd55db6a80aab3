"""Every course notebook follows the house skeleton and is committed without outputs."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebook_setup  # noqa: E402
import run_notebooks  # noqa: E402

NOTEBOOKS = run_notebooks.discover()
SECTIONS = ["Learning goals", "Setup", "Parameters", "Exercises", "What's next"]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _headings(nb) -> list[str]:
    return [
        line.lstrip("#").strip()
        for c in nb.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if line.startswith("#")
    ]


def test_notebooks_are_numbered_from_00_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers[:2] == [0, 1], f"the course starts with 00_setup and 01_...: {NOTEBOOKS}"
    assert numbers == list(range(len(numbers))), f"gaps or duplicates in {numbers}"
    stray = [p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p not in NOTEBOOKS]
    assert not stray, f"notebooks not named NN_topic.ipynb: {stray}"


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param


def test_valid_and_committed_without_outputs(notebook):
    nb = _read(notebook)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{notebook.name}: cells {dirty} keep outputs; clear them before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_title_description_and_colab_badge_first(notebook):
    first = _read(notebook).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "title first"
    assert notebook_setup.colab_badge(notebook.name) in first.source, (
        f"{notebook.name}: the first cell needs the Colab badge pointing at this notebook"
    )
    body = [ln for ln in first.source.splitlines()[1:] if ln.strip() and "colab" not in ln.lower()]
    assert body, f"{notebook.name}: a one-line description under the title"


def test_house_sections_in_order(notebook):
    heads = _headings(_read(notebook))
    positions = []
    for section in SECTIONS:
        found = [i for i, h in enumerate(heads) if h.lower().startswith(section.lower())]
        assert found, f"{notebook.name}: no '{section}' heading (has {heads})"
        positions.append(found[0])
    assert positions == sorted(positions), f"{notebook.name}: sections out of order: {SECTIONS}"


def test_states_expected_run_time_on_cpu(notebook):
    text = " ".join(c.source for c in _read(notebook).cells if c.cell_type == "markdown")
    assert re.search(r"run time", text, re.I) and re.search(r"\bCPU\b", text), (
        f"{notebook.name}: say how long the notebook takes on a CPU (and a GPU)"
    )
    assert re.search(r"\d+\s*(s|sec|seconds|min|minutes)\b", text), f"{notebook.name}: a time"


def test_one_parameters_cell_of_upper_case_assignments(notebook):
    cells = [c for c in _read(notebook).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{notebook.name}: exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    for node in tree.body:
        assert isinstance(node, ast.Assign | ast.AnnAssign), (
            f"{notebook.name}: the parameters cell holds only assignments, found {ast.dump(node)}"
        )
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for t in targets:
            assert isinstance(t, ast.Name) and t.id.isupper(), f"{notebook.name}: UPPER_CASE knobs"


def test_setup_cell_is_the_shared_one(notebook):
    setup = [
        c
        for c in _read(notebook).cells
        if c.cell_type == "code" and c.source.startswith(notebook_setup.MARKER)
    ]
    assert len(setup) == 1, f"{notebook.name}: one Setup cell (python tools/notebook_setup.py)"
    assert setup[0].source == notebook_setup.setup_cell(), (
        f"{notebook.name}: Setup cell differs; run `python tools/notebook_setup.py`"
    )


def test_setup_cell_installs_on_colab_every_dependency_it_may_lack():
    """A dependency added to pyproject.toml reaches Colab users: the Setup cell's install list is
    every core dependency (with its version range) except Colab's own Keras/TensorFlow and the
    local-only tools, and each is checked under the module name it is imported by."""
    import importlib.util

    cell = notebook_setup.setup_cell()
    wanted_source = cell.split("wanted = ", 1)[1].split("\n    missing", 1)[0]
    wanted = ast.literal_eval(wanted_source)
    for name, requirement in notebook_setup.core_dependencies().items():
        if name in notebook_setup.COLAB_SKIP:
            assert requirement not in wanted.values(), f"{name} must not be reinstalled on Colab"
        else:
            assert requirement in wanted.values(), f"{name} is not installed on Colab"
    for module in wanted:  # a wrong import name would reinstall the package every time
        assert importlib.util.find_spec(module) is not None, f"no module {module!r} in this env"
    assert "keras" not in wanted and "tensorflow" not in wanted
    assert "output.enable_custom_widget_manager()" in cell and "check_environment()" in cell


def test_readme_lists_every_notebook_with_its_badge():
    readme = (ROOT / "README.md").read_text()
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.name}" in readme, f"README contents table misses {nb.name}"
        assert notebook_setup.colab_badge(nb.name).split("](")[1] in readme


def test_readme_quick_start_comes_first_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_section = readme.split("\n## ", 2)[1]
    assert first_section.lower().startswith("quick start")
    assert "make course" in first_section and "make test" in first_section
