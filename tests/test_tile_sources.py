"""Class-folder tile datasets as a region (``tiles:`` in a region config): parsing, checks,
loading and the stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TILE_CLASSES, write_class_folder_tiles, write_tiles_config

from helpers import tile_sources
from helpers.regions import RegionConfigError, load_region
from helpers.regions import main as check_configs


@pytest.fixture
def jpeg_tiles(tmp_path: Path) -> Path:
    return write_class_folder_tiles(tmp_path / "tiles", per_class=10)


def test_a_tiles_config_loads_as_a_region_without_a_scene(jpeg_tiles, tmp_path):
    config = write_tiles_config(tmp_path / "landcover.yaml", jpeg_tiles, tmp_path / "out")
    region = load_region(config)
    source = region.tiles
    assert source.classes == tuple(sorted(TILE_CLASSES))  # default: sorted folder names
    assert region.class_names == dict(enumerate(sorted(TILE_CLASSES)))
    assert region.band_names == ("red", "green", "blue") and source.dtype == "uint8"
    assert source.tile_shape == (32, 32) and region.tiling.tile_size == 32
    assert region.target == "land cover" and not source.georeferenced
    assert "no scene" in region.summary() and "10 classes of land cover" in region.summary()
    assert len(region.dates) == 0
    with pytest.raises(LookupError, match="no scene.*notebooks 03 and 04.*02 and 05-08"):
        region.dates[0]
    with pytest.raises(LookupError, match="no scene"):
        region.scenes["2021-06-15"]
    assert check_configs([str(config)]) == 0


def test_classes_choose_order_and_subset_and_two_classes_are_binary(jpeg_tiles, tmp_path):
    picked = ["River", "Forest"]
    config = write_tiles_config(tmp_path / "two.yaml", jpeg_tiles, tmp_path / "out", classes=picked)
    region = load_region(config)
    assert region.class_names == {0: "River", 1: "Forest"}
    assert region.target == "Forest"  # two classes: the second is the target, as in binary tasks
    images, labels, paths = region.tiles.load()
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 10 + [1] * 10
    assert all(p.parent.name == picked[code] for p, code in zip(paths, labels, strict=True))


def test_split_is_stratified_seeded_and_disjoint(jpeg_tiles, tmp_path):
    split = {"validation": 0.2, "test": 0.3, "seed": 7}
    config = write_tiles_config(tmp_path / "s.yaml", jpeg_tiles, tmp_path / "o", split=split)
    source = load_region(config).tiles
    _, labels, _ = source.load()
    assignment = source.assign_splits(labels)
    for code in range(10):  # every class: 2 validation, 3 test, 5 train of its 10 tiles
        names, counts = np.unique(assignment[labels == code], return_counts=True)
        assert dict(zip(names, counts, strict=True)) == {"test": 3, "train": 5, "validation": 2}
    np.testing.assert_array_equal(assignment, source.assign_splits(labels))  # seeded
    other = tile_sources.TileSource(**{**source.__dict__, "seed": 8}).assign_splits(labels)
    assert (other != assignment).any()
    wide = tile_sources.TileSource(**{**source.__dict__, "validation": 0.3, "test": 0.3})
    few = wide.assign_splits(np.array([0, 0, 1, 1]))  # 0.3 of 2 rounds to 1, twice
    assert sorted(few[:2]) == ["test", "train"] or sorted(few[:2]) == ["train", "validation"]
    assert (few[2:] == "train").sum() == 1  # every class keeps a training tile
    splits = source.load_splits()
    assert sum(len(y) for _, y in splits.values()) == 100
    assert splits["train"][0].shape == (50, 32, 32, 3)


def test_geotiff_tiles_with_any_band_count(tmp_path):
    folder = write_class_folder_tiles(tmp_path / "ms", classes=["a", "b", "c"], per_class=4,
                                      suffix=".tif", bands=5)  # fmt: skip
    config = write_tiles_config(tmp_path / "ms.yaml", folder, tmp_path / "o")
    source = load_region(config).tiles
    assert source.bands == tuple(f"band_{i}" for i in range(1, 6)) and source.dtype == "uint16"
    images, _, _ = source.load()
    assert images.shape == (12, 32, 32, 5) and images.dtype == np.uint16
    limits = source.scaling_limits(images)
    assert len(limits) == 5 and all(low < high for low, high in limits)
    named = write_tiles_config(tmp_path / "n.yaml", folder, tmp_path / "o", bands=["b1", "b2"])
    with pytest.raises(RegionConfigError, match=r"tiles\.bands: 2 name\(s\).*5 band\(s\)"):
        load_region(named)


def test_bad_tile_configs_name_the_key_and_the_fix(jpeg_tiles, tmp_path):
    def fails(match: str, folder: Path = jpeg_tiles, **tiles) -> None:
        config = write_tiles_config(tmp_path / "bad.yaml", folder, tmp_path / "o", **tiles)
        with pytest.raises(RegionConfigError, match=match):
            load_region(config)

    fails(r"tiles\.folder: .*missing is not a folder", folder=tmp_path / "missing")
    fails(r"tiles\.classes: no folder \['Desert'\]", classes=["Forest", "Desert"])
    fails(r"tiles\.classes: 1 class folder", classes=["Forest"])
    fails(
        r"tiles\.split: validation \(0\.6\) \+ test \(0\.5\)",
        split={"validation": 0.6, "test": 0.5},
    )
    fails(r"tiles\.split\.folds: unknown key", split={"folds": 5})
    fails(r"tiles\.shuffle: unknown key", shuffle=True)
    (tmp_path / "one" / "only").mkdir(parents=True)
    fails(r"tiles\.folder: 1 class folder\(s\) \(only\).*at least two", folder=tmp_path / "one")
    (jpeg_tiles / "Empty").mkdir()
    fails(r"class folder\(s\) \['Empty'\].*hold no tile")
    (jpeg_tiles / "Empty").rmdir()
    from PIL import Image

    Image.new("RGB", (64, 64)).save(jpeg_tiles / "Forest" / "zz_big.jpg")
    fails(r"tiles differ: .* is 32 x 32 px.*zz_big\.jpg is 64 x 64 px")
    (jpeg_tiles / "Forest" / "zz_big.jpg").write_bytes(b"not an image")
    fails(r"cannot read .*zz_big\.jpg")


def test_a_tiles_config_refuses_scene_sections(jpeg_tiles, tmp_path):
    import yaml

    config = write_tiles_config(tmp_path / "mixed.yaml", jpeg_tiles, tmp_path / "o")
    data = yaml.safe_load(config.read_text()) | {"labels": {"file": "x.geojson", "target": "y"}}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(RegionConfigError, match="labels: a region with 'tiles'.*no scene"):
        load_region(config)
    data = yaml.safe_load(config.read_text())
    data.pop("labels")
    data["tiling"] = {"tile_size": 64}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(RegionConfigError, match=r"tiling\.tile_size: 64 differs.*32 px"):
        load_region(config)
