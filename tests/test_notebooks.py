"""Execute every course notebook headless with small parameters, as `make course` does with its
defaults. A notebook without an entry in NOTEBOOK_PARAMETERS fails here: give it small ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import run_notebooks  # noqa: E402

from helpers.sample_data import ensure_sample_region  # noqa: E402

NOTEBOOKS = run_notebooks.discover()
SMALL_SCENE = 512
SEED = 42


def _region_and_figures(ctx: dict, name: str) -> dict:
    return {
        "DATA_DIR": str(ctx["region"]),
        "SCENE_SIZE": SMALL_SCENE,
        "SEED": SEED,
        "OUTPUT_DIR": str(ctx["out"] / "figures" / name),
    }


# Small parameters per notebook; each notebook's own defaults are what `make course` runs.
NOTEBOOK_PARAMETERS = {
    "00_setup": lambda ctx: _region_and_figures(ctx, "00_setup"),
    "01_imagery_basics": lambda ctx: _region_and_figures(ctx, "01_imagery_basics"),
    "02_patching": lambda ctx: (
        _region_and_figures(ctx, "02_patching")
        | {
            "PATCH_SIZE": 64,
            "STRIDE": 32,
            "BLOCK_SIZE": 128,
            "DATASET_DIR": str(ctx["out"] / "patches"),
        }
    ),
}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    region = root / "region"
    ensure_sample_region(region, size=SMALL_SCENE, seed=SEED, progress=False)
    return {"region": region, "out": root / "outputs"}


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_small_parameters(notebook, ctx):
    assert notebook.stem in NOTEBOOK_PARAMETERS, (
        f"{notebook.name} has no small parameters in tests/test_notebooks.py"
    )
    params = NOTEBOOK_PARAMETERS[notebook.stem](ctx)
    run = run_notebooks.run_notebook(notebook, ctx["out"], params, html=False, timeout=900)
    assert Path(run.output).exists()
    figures = sorted(Path(params["OUTPUT_DIR"]).glob("*.png"))
    assert figures, f"{notebook.name} saved no figure under OUTPUT_DIR"
