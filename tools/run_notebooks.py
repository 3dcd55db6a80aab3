"""Execute the course notebooks headless, in order, and keep executed copies and HTML exports.

``make course`` runs every numbered notebook (``notebooks/NN_*.ipynb``) with its own defaults::

    python tools/run_notebooks.py --out outputs
    python tools/run_notebooks.py --out outputs notebooks/01_imagery_basics.ipynb -p SCENE_SIZE=512

Each notebook runs with ``notebooks/`` as its working directory, exactly as in JupyterLab, with
parameters injected by papermill after the cell tagged ``parameters``. The executed copy goes to
``<out>/notebooks/``, an HTML export to ``<out>/html/`` and the wall times to
``<out>/run_summary.json``.
A failing notebook stops the run with a message naming the notebook and the cell; its executed copy,
error included, is still written so the traceback can be read in context.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOK_NAME = re.compile(r"^\d{2}_[a-z0-9_]+\.ipynb$")


class NotebookFailed(RuntimeError):
    """A notebook raised while executing; the message names the notebook and the cell."""

    def __init__(self, notebook: Path, cell: int | None, detail: str, output: Path):
        self.notebook, self.cell, self.output = notebook, cell, output
        where = f"cell {cell}" if cell is not None else "before any cell ran"
        super().__init__(
            f"{notebook.name} failed at {where}: {detail}\n"
            f"  the executed copy with the traceback is {output}"
        )


@dataclass
class NotebookRun:
    notebook: str
    output: str
    html: str | None
    seconds: float


def discover(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered course notebooks, in learning order."""
    return sorted(p for p in notebook_dir.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def export_html(executed: Path, html_path: Path) -> Path:
    """Write an HTML rendering of an executed notebook (figures embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(html_path, body)
    return html_path


def run_notebook(
    notebook: Path,
    out_dir: Path,
    parameters: dict | None = None,
    *,
    html: bool = True,
    kernel_name: str = "python3",
    timeout: int | None = None,
) -> NotebookRun:
    """Execute one notebook with papermill.

    Args:
        notebook: the ``.ipynb`` to run; it runs with its own folder as working directory.
        out_dir: where ``notebooks/<name>`` (executed copy) and ``html/<name>.html`` are written.
        parameters: values injected after the cell tagged ``parameters`` (small ones for tests).
        html: also export HTML.
        kernel_name: Jupyter kernel to use.
        timeout: per-cell timeout in seconds (None: no limit).

    Returns:
        A :class:`NotebookRun` with the paths written and the wall time.

    Raises:
        NotebookFailed: naming the notebook and the failing cell.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise FileNotFoundError(
            f"notebook {notebook} does not exist; `ls notebooks/` lists the course"
        )
    out_dir = Path(out_dir).resolve()
    executed = out_dir / "notebooks" / notebook.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook),
            str(executed),
            parameters=parameters or {},
            cwd=str(notebook.parent),
            kernel_name=kernel_name,
            progress_bar=False,
            execution_timeout=timeout,
        )
    except PapermillExecutionError as err:
        detail = f"{err.ename}: {err.evalue}"
        # papermill counts cells from 0 including markdown; people count code cells by their number
        # in the executed copy, so report the execution count when there is one.
        cell = err.exec_count if err.exec_count is not None else err.cell_index
        raise NotebookFailed(notebook, cell, detail, executed) from None
    seconds = time.perf_counter() - start
    html_path = export_html(executed, out_dir / "html" / f"{notebook.stem}.html") if html else None
    return NotebookRun(str(notebook), str(executed), str(html_path) if html_path else None, seconds)


@contextlib.contextmanager
def kernel_stderr_to(log_path: Path):
    """Send what kernels print to stderr (TensorFlow's start-up lines, ZMQ warnings) to a log file.

    Kernels are child processes that inherit file descriptor 2, so it is redirected at the
    descriptor level for the duration of the block; the runner's own messages go to the terminal.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield log_path
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def parse_parameter(text: str) -> tuple[str, object]:
    """``NAME=value`` with value parsed as a Python literal when it is one (``-p SIZE=512``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"parameter {text!r} is not NAME=value")
    name, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name.strip(), value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every numbered notebook")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs", help="output folder")
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        type=parse_parameter,
        default=[],
        metavar="NAME=VALUE",
        help="parameter for every notebook (repeatable)",
    )
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or discover()
    if not notebooks:
        print(f"no numbered notebooks found in {NOTEBOOK_DIR}", file=sys.stderr)
        return 1
    parameters = dict(args.parameter)
    runs: list[NotebookRun] = []
    total = time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {Path(nb).name} ...", end=" ", flush=True)
        log = Path(args.out) / "logs" / f"{Path(nb).stem}.stderr.log"
        try:
            with kernel_stderr_to(log):
                run = run_notebook(nb, args.out, parameters, html=not args.no_html)
        except NotebookFailed as err:
            print("FAILED", flush=True)
            print(f"error: {err}\n  the kernel's stderr is in {log}", file=sys.stderr)
            return 1
        runs.append(run)
        print(f"ok ({run.seconds:.1f} s)", flush=True)
    summary = {
        "total_seconds": round(time.perf_counter() - total, 1),
        "notebooks": [asdict(r) | {"seconds": round(r.seconds, 1)} for r in runs],
    }
    atomic_write_text(Path(args.out) / "run_summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"{len(runs)} notebooks executed in {summary['total_seconds']:.0f} s; "
        f"executed copies in {Path(args.out) / 'notebooks'}, HTML in {Path(args.out) / 'html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
