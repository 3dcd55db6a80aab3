"""Execute every course notebook headless with small parameters, as `make course` does with its
defaults. A notebook without an entry in NOTEBOOK_PARAMETERS fails here: give it small ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import run_notebooks  # noqa: E402
import yaml  # noqa: E402
from conftest import SMALL_TILING  # noqa: E402

from helpers.regions import load_region  # noqa: E402
from helpers.sample_data import ensure_sample_region  # noqa: E402

NOTEBOOKS = run_notebooks.discover()
SMALL_SCENE = 512
SEED = 42


def write_small_config(root: Path, **changes) -> Path:
    """The sample region at 512 px with small patches, its outputs under ``root/outputs``."""
    config = {
        "name": "small",
        "sample": {"folder": str(root / "region"), "size": SMALL_SCENE, "seed": SEED},
        "tiling": dict(SMALL_TILING),
        "outputs": {"root": str(root / "outputs")},
    } | changes
    path = root / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _region(ctx: dict) -> dict:
    return {"REGION": str(ctx["config"])}


_TILE_TRAINING = {
    "EPOCHS": 1,
    "STEPS_PER_EPOCH": 2,
    "BATCH_SIZE": 8,
    "RANGE_TEST_STEPS": 10,
}

_UNET_TRAINING = {
    "FILTERS": 4,
    "EPOCHS": 1,
    "STEPS_PER_EPOCH": 2,
    "CLOUD_EPOCHS": 1,
    "BATCH_SIZE": 8,
    "BASELINE_PIXELS": 5000,
}

# Small parameters per notebook; each notebook's own defaults are what `make course` runs.
NOTEBOOK_PARAMETERS = {
    "00_setup": lambda ctx: _region(ctx),
    "01_imagery_basics": lambda ctx: _region(ctx),
    "02_patching": lambda ctx: _region(ctx),
    # 03 trains from scratch on 32 px tiles for a few steps; 04 reads the model 03 saved.
    "03_tile_classification": lambda ctx: _region(ctx) | _TILE_TRAINING,
    "04_tile_evaluation_and_mapping": lambda ctx: _region(ctx) | {"MIN_AREA_M2": 0},
    # 05: 64 px patches, a 4-filter U-Net, two steps per model; writes the settlement and cloud
    # models (with cards) under outputs/models, where 06 and 07 read them.
    "05_unet_segmentation": lambda ctx: _region(ctx) | _UNET_TRAINING,
    # 06 and 07 predict the 512 px region with the settlement model 05 saved.
    "06_scene_prediction": lambda ctx: _region(ctx) | {"CROP_SIZE": 256},
    "07_postprocessing": lambda ctx: _region(ctx) | {"ZOOM_SIZE": 96},
    # 08: example ROIs on the small region; a tiny U-Net for one epoch; a 256 px new region.
    "08_roi_labelling": lambda ctx: (
        _region(ctx)
        | {
            "RF_TREES": 10,
            "PATCH_SIZE": 32,
            "FILTERS": 4,
            "STEPS_PER_EPOCH": 2,
            "EPOCHS": 1,
            "BATCH_SIZE": 8,
            "PREDICT_PATCH": 128,
            "NEW_DATA_DIR": str(ctx["out"] / "new_region"),
            "NEW_SCENE_SIZE": 256,
        }
    ),
}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    region = root / "region"
    ensure_sample_region(region, size=SMALL_SCENE, seed=SEED, progress=False)
    return {"region": region, "config": write_small_config(root), "out": root / "outputs"}


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_small_parameters(notebook, ctx):
    assert notebook.stem in NOTEBOOK_PARAMETERS, (
        f"{notebook.name} has no small parameters in tests/test_notebooks.py"
    )
    params = NOTEBOOK_PARAMETERS[notebook.stem](ctx)
    run = run_notebooks.run_notebook(notebook, ctx["out"], params, html=False, timeout=900)
    assert Path(run.output).exists()
    folder = load_region(params["REGION"]).figures_dir(notebook.stem)
    assert sorted(folder.glob("*.png")), f"{notebook.name} saved no figure under {folder}"


def _stand_in_imagenet_weights(folder: Path) -> Path:
    """A ResNet50 no-top weights file in the legacy layout Keras publishes ImageNet weights in
    (random weights, seed 0): what `weights: imagenet` would download, offline."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(0)
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = folder / "resnet50_notop.h5"
    with h5py.File(weights, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    return weights


@pytest.mark.notebook
def test_tile_classification_fine_tunes_pretrained_weights(ctx, tmp_path):
    """Notebook 03's other path: pretrained weights (a local file standing in for ImageNet's),
    ImageNet scaling in the card, two-phase fine-tuning with discriminative learning rates."""
    import json

    weights = _stand_in_imagenet_weights(tmp_path)
    notebook = ROOT / "notebooks" / "03_tile_classification.ipynb"
    config = write_small_config(
        ctx["config"].parent,
        name="pretrained03",
        training={"weights": str(weights)},
        outputs={"root": str(tmp_path)},
    )
    params = NOTEBOOK_PARAMETERS["03_tile_classification"](ctx) | {
        "REGION": str(config),
        "FREEZE_LAYERS": 20,
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
    from helpers import models

    weights = _stand_in_imagenet_weights(tmp_path)
    notebook = ROOT / "notebooks" / "05_unet_segmentation.ipynb"
    config = write_small_config(
        ctx["config"].parent,
        name="pretrained05",
        training={"weights": str(weights)},
        outputs={"root": str(tmp_path)},
    )
    params = NOTEBOOK_PARAMETERS["05_unet_segmentation"](ctx) | {
        "REGION": str(config),
        "ENCODER": "resnet50",
        "STEPS_PER_EPOCH": 1,
    }
    run_notebooks.run_notebook(notebook, tmp_path / "out", params, html=False, timeout=900)
    model, card = models.load_with_card(tmp_path / "models" / "informal_settlement_unet.keras")
    assert card["encoder"] == "resnet50" and card["pretrained"] is True
    assert card["scaling"]["method"] == "uint8_stretch"
    assert card["scaling"]["then"] == "imagenet_caffe"
    assert model.get_layer("resnet50_encoder") is not None
    _, cloud_card = models.load_with_card(tmp_path / "models" / "cloud_unet.keras")
    assert cloud_card["scaling"]["method"] == "linear"
    assert cloud_card["classes"] == {0: "clear", 1: "cloud", 2: "cloud_shadow"}


@pytest.mark.notebook
def test_a_foreign_region_runs_the_patching_classification_and_segmentation_notebooks(
    foreign_region, tmp_path
):
    """Notebooks 02, 03 and 05, unchanged, on a region unlike the sample: one uint16 band with
    no description in UTM 33N, Shapefile labels in EPSG:4326 with another class name and other
    classes to leave out. Only the config (and small training knobs) differ."""
    from helpers import datasets, models

    region = load_region(foreign_region)
    small = {
        "02_patching": {},
        "03_tile_classification": _TILE_TRAINING,
        "05_unet_segmentation": _UNET_TRAINING,
    }
    for stem, knobs in small.items():
        notebook = ROOT / "notebooks" / f"{stem}.ipynb"
        params = {"REGION": str(foreign_region)} | knobs
        run_notebooks.run_notebook(notebook, tmp_path / "out", params, html=False, timeout=900)
        assert sorted(region.figures_dir(stem).glob("*.png")), f"{stem} saved no figure"

    # 02: one-band shards and grey PNGs, labelled from the camps only
    images, tile_labels = datasets.load_shards(region.outputs.datasets / "scene_npz", split="train")
    assert images.shape[1:] == (64, 64, 1) and images.max() > 255  # stored units, not 8-bit
    assert {0, 1} <= set(tile_labels.tolist())
    png = sorted((region.outputs.datasets / "tiles_png" / "train" / "positive").glob("*.png"))
    assert png

    # 03 and 05: one-band models whose cards speak of the region's class and scaling
    classifier, card = models.load_with_card(region.outputs.models / "tile_classifier.keras")
    assert card["bands"] == ["pan"] and classifier.input_shape[-1] == 1
    assert card["classes"] == {0: "other", 1: "refugee camp"}
    assert card["scaling"]["method"] == "uint8_stretch" and card["pretrained"] is False
    unet, unet_card = models.load_with_card(region.outputs.models / "refugee_camp_unet.keras")
    assert unet_card["bands"] == ["pan"] and unet.input_shape[-1] == 1
    assert unet_card["classes"] == {0: "background", 1: "refugee camp"}
    assert not (region.outputs.models / "cloud_unet.keras").exists()  # no cloud masks here
    patch = models.scale_inputs(images[:2, :64, :64], unet_card)
    assert unet.predict(patch, verbose=0).shape == (2, 64, 64, 1)


S2_LIKE = ("coastal", "blue", "green", "red", "re1", "re2", "re3", "nir", "nir08", "wv", "swir1")
USERS_DATA = {
    # 13 float32 bands named by their descriptions, in lon/lat; a GeoPackage in Web Mercator
    "13 float32 bands, EPSG:4326": dict(
        source_bands=(1, 1, 2, 3, 3, 3, 4, 4, 4, 4, 3, 2, 1),
        roles=(*S2_LIKE, "swir2", "extra"),
        describe=True,
        roles_in_config=False,
        dtype="float32",
        crs="EPSG:4326",
        origin=(36.80, -1.28),
        pixel=1e-5,
        labels_name="landuse.gpkg",
        labels_crs="EPSG:3857",
    ),
    # an 8-bit RGB export in Web Mercator, bands named only in the config; GeoJSON in UTM
    "3 uint8 bands, EPSG:3857": dict(
        source_bands=(3, 2, 1),
        roles=("red", "green", "blue"),
        dtype="uint8",
        crs="EPSG:3857",
        origin=(4_096_000.0, -142_000.0),
        pixel=1.2,
        labels_name="landuse.geojson",
        labels_crs="EPSG:32737",
    ),
}


@pytest.mark.notebook
@pytest.mark.parametrize("variant", list(USERS_DATA), ids=["13band_float32_4326", "rgb_uint8_3857"])
def test_patching_takes_data_as_users_have_it(variant, tmp_path):
    """Any band count, dtype and CRS, labels in any CRS and format: notebook 02, unchanged."""
    import pandas as pd
    from conftest import make_region

    from helpers import tiling

    spec = USERS_DATA[variant]
    config = make_region(tmp_path / "region", size=256, **spec)
    region = load_region(config)
    assert len(region.band_names) == len(spec["source_bands"])
    assert region.rgb is not None  # natural colour found by role, wherever the bands sit
    notebook = ROOT / "notebooks" / "02_patching.ipynb"
    run_notebooks.run_notebook(notebook, tmp_path / "out", {"REGION": str(config)}, html=False)
    store = region.outputs.datasets / "scene_npz"
    index = pd.read_csv(store / "index.csv")
    assert {0, 1} <= set(index["label"]) and set(index["status"]) == {"written"}
    shard = tiling.read_shard(store / index["file"].iloc[0])  # every band, at full precision
    assert shard["images"].shape[1:] == (len(spec["source_bands"]), 64, 64)
    assert shard["images"].dtype == spec["dtype"]
    assert sorted(region.figures_dir("02_patching").glob("*.png"))


def _run_tile_notebooks(config: Path, out: Path) -> Path:
    """Run notebooks 03 and 04 on ``config`` with small training parameters; return ``out``."""
    for stem, knobs in (
        ("03_tile_classification", _TILE_TRAINING),
        ("04_tile_evaluation_and_mapping", {}),
    ):
        notebook = ROOT / "notebooks" / f"{stem}.ipynb"
        run_notebooks.run_notebook(
            notebook, out, {"REGION": str(config)} | knobs, html=False, timeout=900
        )
    return out


@pytest.mark.notebook
def test_tile_notebooks_run_on_a_ten_class_folder_dataset(tmp_path):
    """Notebooks 03 and 04, unchanged, on a region of class-folder JPEG tiles with ten classes:
    a softmax head, macro-F1, the K x K confusion matrix and the per-class errors; no scene, so
    no threshold lesson and no map, and no word of the sample's settlements in the outputs."""
    import json

    from conftest import TILE_CLASSES, write_class_folder_tiles, write_tiles_config

    from helpers import models

    tiles = write_class_folder_tiles(tmp_path / "eurosat_like", per_class=12, size=32)
    config = write_tiles_config(tmp_path / "landcover.yaml", tiles, tmp_path / "outputs")
    region = load_region(config)
    out = _run_tile_notebooks(config, tmp_path / "out")

    classifier, card = models.load_with_card(region.outputs.models / "tile_classifier.keras")
    assert classifier.output_shape == (None, 10)
    assert classifier.get_layer("predictions").get_config()["activation"] == "softmax"
    assert card["classes"] == dict(enumerate(sorted(TILE_CLASSES)))
    assert card["decision_threshold"] is None and card["multiclass"] is True
    assert card["baseline_validation_f1"] > 0.8  # the classes differ by colour: learnable
    figures = {p.name for p in region.figures_dir("04_tile_evaluation_and_mapping").glob("*.png")}
    assert {"confusion_matrix.png", "errors.png"} <= figures and "settlement_map.png" not in figures
    for stem in ("03_tile_classification", "04_tile_evaluation_and_mapping"):
        executed = json.loads((out / "notebooks" / f"{stem}.ipynb").read_text())
        outputs = json.dumps([c.get("outputs", []) for c in executed["cells"]])
        assert "macro-F1" in outputs and "settlement" not in outputs.lower()
    assert "nothing to map" in outputs and "no threshold to choose" in outputs


@pytest.mark.notebook
def test_tile_notebooks_run_on_two_classes_of_geotiff_tiles(tmp_path):
    """Two class folders of 4-band uint16 GeoTIFF tiles without georeferencing: the binary story
    (one sigmoid unit, a threshold chosen on validation, a percentile stretch in the card), and
    no scene to map."""
    import json

    from conftest import write_class_folder_tiles, write_tiles_config

    from helpers import models

    tiles = write_class_folder_tiles(
        tmp_path / "ms", classes=["cropland", "water"], per_class=16, suffix=".tif", bands=4
    )
    bands = ["blue", "green", "red", "nir"]
    config = write_tiles_config(tmp_path / "water.yaml", tiles, tmp_path / "outputs", bands=bands)
    region = load_region(config)
    out = _run_tile_notebooks(config, tmp_path / "out")

    classifier, card = models.load_with_card(region.outputs.models / "tile_classifier.keras")
    assert classifier.output_shape == (None, 1) and card["bands"] == bands
    assert card["classes"] == {0: "cropland", 1: "water"} and card["multiclass"] is False
    assert 0.0 <= card["decision_threshold"] <= 1.0
    assert card["scaling"]["method"] == "uint8_stretch" and card["scaling"]["limits"][0] != [0, 255]
    figures = {p.name for p in region.figures_dir("04_tile_evaluation_and_mapping").glob("*.png")}
    assert {"test_scores.png", "errors.png"} <= figures and "settlement_map.png" not in figures
    executed = json.loads((out / "notebooks" / "04_tile_evaluation_and_mapping.ipynb").read_text())
    outputs = json.dumps([c.get("outputs", []) for c in executed["cells"]])
    assert "threshold used for mapping" in outputs and "nothing to map" in outputs
    assert "settlement" not in outputs.lower()


@pytest.mark.notebook
@pytest.mark.parametrize("stem", ["02_patching", "05_unet_segmentation"])
def test_scene_notebooks_stop_on_a_tile_region_saying_it_has_no_scene(stem, tmp_path):
    """A region of class-folder tiles has no scene: the scene notebooks stop at their first use
    of one, with an error that names the config and the notebooks that do run on it."""
    from conftest import write_class_folder_tiles, write_tiles_config

    tiles = write_class_folder_tiles(tmp_path / "tiles", classes=["a", "b"], per_class=2)
    config = write_tiles_config(tmp_path / "tiles.yaml", tiles, tmp_path / "outputs")
    notebook = ROOT / "notebooks" / f"{stem}.ipynb"
    with pytest.raises(run_notebooks.NotebookFailed, match="LookupError.*no scene.*03 and 04"):
        run_notebooks.run_notebook(notebook, tmp_path / "out", {"REGION": str(config)}, html=False)


@pytest.mark.notebook
def test_unet_notebook_trains_on_png_pairs_without_georeferencing(tmp_path):
    """Notebook 05, unchanged, on PNG image/mask pairs (no CRS, no transform): three classes
    and an ignore code, split by image; a softmax model named after the region's class table,
    with per-class IoU beside the pixel baseline in its card."""
    from conftest import PAIR_CLASSES, make_pair_region

    from helpers import models, task_names

    config = make_pair_region(tmp_path / "pairs")
    region = load_region(config)
    notebook = ROOT / "notebooks" / "05_unet_segmentation.ipynb"
    params = {"REGION": str(config)} | _UNET_TRAINING
    run_notebooks.run_notebook(notebook, tmp_path / "out", params, html=False, timeout=900)
    assert task_names.model_path(region).name == "clouds_classes_unet.keras"
    model, card = models.load_with_card(task_names.model_path(region))
    assert card["classes"] == PAIR_CLASSES and card["bands"] == ["red", "green", "blue"]
    assert model.output_shape[-1] == 3 and card["scaling"]["method"] == "uint8_stretch"
    assert set(card["test_iou"]) == set(PAIR_CLASSES.values())
    assert "split by image" in card["training_data"]
    executed = (tmp_path / "out" / "notebooks" / notebook.name).read_text()
    assert "IoU shadow" in executed and "IoU settlement" not in executed
    assert (region.figures_dir(notebook.stem) / "clouds_classes_gallery.png").exists()


@pytest.mark.notebook
def test_label_raster_in_another_crs_runs_patching_and_unet_notebooks(tmp_path):
    """A land-cover GeoTIFF of codes in EPSG:4326 over UTM imagery, with ignored codes:
    notebook 02 labels patches from the target's share, notebook 05 trains a four-class U-Net."""
    import pandas as pd
    from conftest import LABEL_RASTER_CLASSES, make_label_raster_region

    from helpers import models, task_names

    config = make_label_raster_region(tmp_path / "landcover")
    region = load_region(config)
    for stem, knobs in {"02_patching": {}, "05_unet_segmentation": _UNET_TRAINING}.items():
        notebook = ROOT / "notebooks" / f"{stem}.ipynb"
        params = {"REGION": str(config)} | knobs
        run_notebooks.run_notebook(notebook, tmp_path / "out", params, html=False, timeout=900)
        assert sorted(region.figures_dir(stem).glob("*.png")), f"{stem} saved no figure"
    index = pd.read_csv(region.outputs.datasets / "scene_npz" / "index.csv")
    assert {0, 1} <= set(index["label"])
    assert (region.outputs.datasets / "built_up_mask_2021.tif").exists()
    model, card = models.load_with_card(task_names.model_path(region))
    assert card["classes"] == dict(enumerate(LABEL_RASTER_CLASSES.values()))
    assert model.output_shape[-1] == len(LABEL_RASTER_CLASSES)
    assert "landcover_4326.tif" in card["training_data"]


@pytest.mark.notebook
def test_scene_notebooks_name_what_a_pair_region_lacks(tmp_path):
    """Notebooks 06 and 07 map georeferenced scenes: on image/mask pairs they stop at once with
    a message that says why and how to predict such images, not a KeyError half-way."""
    from conftest import make_pair_region

    config = make_pair_region(tmp_path / "pairs", count=3, size=64)
    notebook = ROOT / "notebooks" / "06_scene_prediction.ipynb"
    with pytest.raises(run_notebooks.NotebookFailed, match="image/mask pairs") as failed:
        run_notebooks.run_notebook(notebook, tmp_path / "out", {"REGION": str(config)}, html=False)
    assert "inference.predict" in str(failed.value)
