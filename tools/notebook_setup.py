"""The one Setup cell every course notebook starts with, and a command to keep notebooks in sync.

The cell works in three places: on Colab it clones the course, installs only what Colab lacks and
enables the custom widget manager (needed by ipyleaflet); in a local JupyterLab or under
``make course`` it finds the ``helpers`` package next to ``notebooks/``; everywhere it ends with an
environment check (versions, Keras backend, GPU) that says what to do when something is missing.

    python tools/notebook_setup.py          # rewrite the Setup cell of every notebook
    python tools/notebook_setup.py --check  # exit 1 if a notebook's Setup cell differs

tests/test_notebook_structure.py fails when a notebook's Setup cell is not this one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Setup: the same cell in every notebook"


def repository_url() -> str:
    """The course's public repository, read from pyproject.toml so it is written in one place."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"].rstrip("/")


def colab_badge(notebook_name: str) -> str:
    """Markdown for the "Open in Colab" badge of a notebook."""
    owner_repo = repository_url().split("github.com/", 1)[1]
    url = (
        f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{notebook_name}"
    )
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


# Core dependencies the Setup cell never installs on Colab: Colab's own Keras and TensorFlow
# must stay, and the rest only run the notebooks locally or headless (make lab, make course).
COLAB_SKIP = {"keras", "jupyterlab", "ipykernel", "papermill", "nbconvert"}
# Colab's own builds that an install on Colab must never upgrade: they are pinned at the installed
# version on the pip command line, so a package that would need another version fails to install
# with pip's message instead of replacing them (Colab's front end supports only ipywidgets 7).
COLAB_KEEP = ("tensorflow", "keras", "numpy", "ipywidgets")
# Import names that differ from the distribution's name.
MODULE_NAMES = {
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "matplotlib-scalebar": "matplotlib_scalebar",
    "pystac-client": "pystac_client",
    "pyyaml": "yaml",
    "pillow": "PIL",
}


def core_dependencies() -> dict[str, str]:
    """{distribution name: requirement} of pyproject.toml's core dependencies."""
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower(): req
        for req in project["dependencies"]
    }


def colab_installs() -> dict[str, str]:
    """{module: pip requirement} the Setup cell installs on Colab when the module is missing.

    Every core dependency but :data:`COLAB_SKIP`, with its version range, so a package Colab
    lacks arrives in a version the course supports; one Colab has is left alone (the environment
    check then reports a version that is too old).
    """
    return {
        MODULE_NAMES.get(name, name.replace("-", "_")): req
        for name, req in core_dependencies().items()
        if name not in COLAB_SKIP
    }


def setup_cell() -> str:
    """Source of the Setup cell."""
    url = repository_url()
    name = url.rsplit("/", 1)[1]
    items = [f"{module!r}: {req!r}".replace("'", '"') for module, req in colab_installs().items()]
    lines, line = [], "{"
    for item in items:  # wrapped at about 100 characters, as ruff formats code
        if len(line) + len(item) > 88:
            lines.append(line.rstrip())
            line = "              "
        line += item + ", "
    wanted = "\n".join([*lines, line.rstrip(", ") + "}"])
    colab_keep = "(" + ", ".join(f'"{dist}"' for dist in COLAB_KEEP) + ")"
    return f'''{MARKER} (tools/notebook_setup.py writes it).
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:
    course = Path("/content/{name}")
    if not course.exists():
        subprocess.run(["git", "clone", "--depth", "1", "{url}", str(course)], check=True)
    # Install only what Colab lacks, in pyproject.toml's ranges. Colab's own TensorFlow, Keras,
    # numpy and ipywidgets stay as they are: they are pinned on pip's command line.
    wanted = {wanted}
    missing = [pkg for module, pkg in wanted.items() if importlib.util.find_spec(module) is None]
    if missing:
        from importlib.metadata import PackageNotFoundError, version

        keep = []
        for dist in {colab_keep}:
            try:
                keep.append(f"{{dist}}=={{version(dist)}}")
            except PackageNotFoundError:
                pass
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing, *keep], check=True)
    os.chdir(course / "notebooks")
    from google.colab import output

    output.enable_custom_widget_manager()  # interactive maps (ipyleaflet) need it on Colab

# The course's `helpers` package lives next to notebooks/; make it importable without installing.
if Path("../helpers/__init__.py").is_file() and str(Path("..").resolve()) not in sys.path:
    sys.path.insert(0, str(Path("..").resolve()))

from helpers.env import check_environment

check_environment()  # versions, Keras backend and GPU, with advice when something is off'''


def sync(check: bool = False) -> list[Path]:
    """Rewrite (or, with check=True, only list) the notebooks whose Setup cell differs."""
    import nbformat

    expected = setup_cell()
    differ = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(MARKER)]
        if len(cells) != 1:
            raise SystemExit(
                f"{path.name}: expected exactly one Setup cell starting with {MARKER!r}"
            )
        if cells[0].source != expected:
            differ.append(path)
            if not check:
                cells[0].source = expected
                nbformat.write(nb, path)
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keep every notebook's Setup cell identical.")
    parser.add_argument("--check", action="store_true", help="only report, exit 1 on a difference")
    args = parser.parse_args(argv)
    differ = sync(check=args.check)
    for path in differ:
        print(f"{'differs' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and differ) else 0


if __name__ == "__main__":
    sys.exit(main())
