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


_TILE_TRAINING = {
    "TILE_SIZE": 32,
    "STRIDE": 16,
    "BLOCK_SIZE": 128,
    "EPOCHS": 1,
    "STEPS_PER_EPOCH": 2,
    "BATCH_SIZE": 8,
    "RANGE_TEST_STEPS": 10,
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
    # 03 trains from scratch on 32 px tiles for a few steps; 04 reads the model 03 saved.
    "03_tile_classification": lambda ctx: (
        _region_and_figures(ctx, "03_tile_classification")
        | _TILE_TRAINING
        | {"DATASET_DIR": str(ctx["out"] / "patches"), "MODEL_DIR": str(ctx["out"] / "models")}
    ),
    "04_tile_evaluation_and_mapping": lambda ctx: (
        _region_and_figures(ctx, "04_tile_evaluation_and_mapping")
        | {
            "MODEL_PATH": str(ctx["out"] / "models" / "tile_classifier.keras"),
            "MAP_DIR": str(ctx["out"] / "maps"),
            "MIN_AREA_M2": 0,
        }
    ),
    # 05: 64 px patches, a 4-filter U-Net, two steps per model; writes the settlement and cloud
    # models (with cards) under outputs/models, where 06 and 07 read them.
    "05_unet_segmentation": lambda ctx: (
        _region_and_figures(ctx, "05_unet_segmentation")
        | {
            "PATCH_SIZE": 64,
            "STRIDE": 32,
            "BLOCK_SIZE": 128,
            "FILTERS": 4,
            "EPOCHS": 1,
            "STEPS_PER_EPOCH": 2,
            "CLOUD_EPOCHS": 1,
            "BATCH_SIZE": 8,
            "BASELINE_PIXELS": 5000,
            "DATASET_DIR": str(ctx["out"] / "patches"),
            "MODEL_DIR": str(ctx["out"] / "models"),
        }
    ),
    # 06 and 07 predict the 512 px region with the settlement model 05 saved.
    "06_scene_prediction": lambda ctx: (
        _region_and_figures(ctx, "06_scene_prediction")
        | {
            "MODEL_PATH": str(ctx["out"] / "models" / "settlement_unet.keras"),
            "CROP_SIZE": 256,
            "PREDICTION_DIR": str(ctx["out"] / "predictions" / "06_scene_prediction"),
        }
    ),
    "07_postprocessing": lambda ctx: (
        _region_and_figures(ctx, "07_postprocessing")
        | {
            "MODEL_PATH": str(ctx["out"] / "models" / "settlement_unet.keras"),
            "ZOOM_SIZE": 96,
            "MAP_DIR": str(ctx["out"] / "maps" / "07_postprocessing"),
        }
    ),
    # 08: example ROIs on the small region; a tiny U-Net for one epoch; a 256 px new region.
    "08_roi_labelling": lambda ctx: (
        _region_and_figures(ctx, "08_roi_labelling")
        | {
            "ROI_FILE": str(ctx["out"] / "rois" / "08_my_rois.geojson"),
            "RF_TREES": 10,
            "PATCH_SIZE": 32,
            "FILTERS": 4,
            "STEPS_PER_EPOCH": 2,
            "EPOCHS": 1,
            "BATCH_SIZE": 8,
            "PREDICT_PATCH": 128,
            "NEW_DATA_DIR": str(ctx["out"] / "new_region"),
            "NEW_SCENE_SIZE": 256,
            "MAP_DIR": str(ctx["out"] / "maps" / "08_roi_labelling"),
            "MODEL_DIR": str(ctx["out"] / "models"),
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


@pytest.mark.notebook
def test_tile_classification_fine_tunes_pretrained_weights(ctx, tmp_path):
    """Notebook 03's other path: pretrained weights (a local file standing in for ImageNet's),
    ImageNet scaling in the card, two-phase fine-tuning with discriminative learning rates."""
    import json

    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(0)
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = tmp_path / "resnet50_notop.h5"
    with h5py.File(weights, "w") as f:  # the legacy layout Keras publishes ImageNet weights in
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    notebook = ROOT / "notebooks" / "03_tile_classification.ipynb"
    params = NOTEBOOK_PARAMETERS["03_tile_classification"](ctx) | {
        "WEIGHTS": str(weights),
        "FREEZE_LAYERS": 20,
        "MODEL_DIR": str(tmp_path / "models"),
        "OUTPUT_DIR": str(tmp_path / "figures"),
    }
    run_notebooks.run_notebook(notebook, tmp_path / "out", params, html=False, timeout=900)
    card = json.loads((tmp_path / "models" / "tile_classifier.card.json").read_text())
    assert card["pretrained"] is True
    assert card["scaling"]["method"] == "uint8_stretch"
    assert card["scaling"]["then"] == "imagenet_caffe"
    executed = (tmp_path / "out" / "notebooks" / notebook.name).read_text()
    assert "two-phase fine-tuning" in executed


@pytest.mark.notebook
def test_unet_segmentation_with_a_pretrained_resnet50_encoder(ctx, tmp_path):
    """Notebook 05's optional path: the ResNet50-encoder U-Net with pretrained weights (a local
    file standing in for ImageNet's); the settlement card records the ImageNet scaling, the cloud
    model keeps reflectance, and both reload."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from helpers import models

    keras.utils.set_random_seed(0)
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = tmp_path / "resnet50_notop.h5"
    with h5py.File(weights, "w") as f:  # the legacy layout Keras publishes ImageNet weights in
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    notebook = ROOT / "notebooks" / "05_unet_segmentation.ipynb"
    params = NOTEBOOK_PARAMETERS["05_unet_segmentation"](ctx) | {
        "ENCODER": "resnet50",
        "WEIGHTS": str(weights),
        "STEPS_PER_EPOCH": 1,
        "MODEL_DIR": str(tmp_path / "models"),
        "OUTPUT_DIR": str(tmp_path / "figures"),
    }
    run_notebooks.run_notebook(notebook, tmp_path / "out", params, html=False, timeout=900)
    model, card = models.load_with_card(tmp_path / "models" / "settlement_unet.keras")
    assert card["encoder"] == "resnet50" and card["pretrained"] is True
    assert card["scaling"]["method"] == "uint8_stretch"
    assert card["scaling"]["then"] == "imagenet_caffe"
    assert model.get_layer("resnet50_encoder") is not None
    _, cloud_card = models.load_with_card(tmp_path / "models" / "cloud_unet.keras")
    assert cloud_card["scaling"]["method"] == "linear"
    assert cloud_card["classes"] == {0: "clear", 1: "cloud", 2: "cloud_shadow"}
