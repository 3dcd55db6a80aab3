"""Tests for helpers.label_rasters: a GeoTIFF of class codes as labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import UTM_ORIGIN, write_geotiff
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from helpers import label_rasters as lr
from helpers.labels import IGNORE_LABEL, IGNORE_VALUE

CLASSES = {1: "water", 2: "trees", 5: "built-up"}


def _codes(size: int = 64) -> np.ndarray:
    """Left quarter water (1), then trees (2), right half built-up (5), a 0 row, a 255 square."""
    codes = np.full((size, size), 2, dtype="uint8")
    codes[:, : size // 4] = 1
    codes[:, size // 2 :] = 5
    codes[0] = 0
    codes[8:16, 8:16] = 255
    return codes


@pytest.fixture
def scene(make_geotiff) -> Path:
    return make_geotiff("scene.tif", width=64, height=64)


def _source(path: Path, **changes) -> lr.LabelRaster:
    return lr.LabelRaster(
        path, **({"classes": CLASSES, "ignore": (0, 255), "target": "built-up"} | changes)
    )


def test_same_grid_gives_class_indices_and_ignores_codes(scene, tmp_path):
    labels = write_geotiff(tmp_path / "lc.tif", _codes(), nodata=None)
    mask = lr.class_mask(_source(labels), scene)
    assert mask.dtype == np.uint8 and mask.shape == (64, 64)
    assert mask[5, 0] == 0 and mask[5, 20] == 1 and mask[5, 40] == 2  # codes 1, 2, 5 -> 0, 1, 2
    assert (mask[0] == IGNORE_VALUE).all() and (mask[8:16, 8:16] == IGNORE_VALUE).all()


def test_another_crs_is_reprojected_with_nearest(scene, tmp_path):
    """The same codes stored in EPSG:4326 come back on the UTM grid: only listed codes (no
    averaged 3 or 4 between 1, 2 and 5), nearly every pixel where it was."""
    src_transform = from_origin(*UTM_ORIGIN, 1.0, 1.0)
    codes = _codes()
    dst_transform, w, h = calculate_default_transform(
        "EPSG:32633",
        "EPSG:4326",
        64,
        64,
        UTM_ORIGIN[0],
        UTM_ORIGIN[1] - 64,
        UTM_ORIGIN[0] + 64,
        UTM_ORIGIN[1],
    )
    lonlat = np.zeros((h, w), dtype="uint8")
    reproject(
        codes,
        lonlat,
        src_transform=src_transform,
        src_crs="EPSG:32633",
        dst_transform=dst_transform,
        dst_crs="EPSG:4326",
        resampling=Resampling.nearest,
    )
    labels = write_geotiff(
        tmp_path / "lc4326.tif", lonlat, crs="EPSG:4326", transform=dst_transform, nodata=None
    )
    mask = lr.class_mask(_source(labels), scene)
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, IGNORE_VALUE}
    expected = lr.class_mask(
        _source(write_geotiff(tmp_path / "same.tif", codes, nodata=None)), scene
    )
    assert np.mean(mask == expected) > 0.95


def test_target_mask_and_tile_labels_use_the_vector_thresholds(scene, tmp_path):
    source = _source(write_geotiff(tmp_path / "lc.tif", _codes(), nodata=None))
    binary = lr.target_mask(source, lr.class_mask(source, scene))
    assert set(np.unique(binary).tolist()) == {0, 1, IGNORE_VALUE}
    windows = [Window(32, 16, 32, 32), Window(0, 16, 32, 32), Window(16, 16, 32, 32)]
    fractions = lr.tile_fractions_from_mask(binary, windows)
    np.testing.assert_allclose(fractions, [1.0, 0.0, 0.5])
    labels = lr.tile_labels_from_mask(binary, windows, positive=0.6, negative=0.1)
    assert labels.tolist() == [1, 0, IGNORE_LABEL]
    # a window mostly on ignored codes (the 255 square, row 0) is not a negative
    unknown = [Window(8, 0, 8, 16)]
    assert lr.tile_labels_from_mask(binary, unknown).tolist() == [IGNORE_LABEL]
    assert lr.tile_labels_from_mask(binary, unknown, max_ignored=1.0).tolist() == [0]


def test_a_map_much_larger_than_the_scene_is_read_under_the_scene_only(scene, tmp_path):
    """The same codes inside a canvas 20 times wider: the same mask (only a window is read)."""
    big = np.zeros((64 * 20, 64 * 20), dtype="uint8")
    big[640 : 640 + 64, 640 : 640 + 64] = _codes()
    origin = (UTM_ORIGIN[0] - 640, UTM_ORIGIN[1] + 640)
    canvas = write_geotiff(
        tmp_path / "big.tif", big, crs="EPSG:32633", transform=from_origin(*origin, 1.0, 1.0),
        nodata=None, blocksize=None,
    )  # fmt: skip
    small = write_geotiff(tmp_path / "small.tif", _codes(), nodata=None)
    np.testing.assert_array_equal(
        lr.class_mask(_source(canvas), scene), lr.class_mask(_source(small), scene)
    )


def test_check_refuses_missing_file_no_crs_no_overlap_and_unknown_codes(scene, tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.raster"):
        lr.check_label_raster(_source(tmp_path / "nope.tif"), scene, "r.yaml")
    no_crs = write_geotiff(tmp_path / "nocrs.tif", _codes(), crs=None, nodata=None)
    with pytest.raises(lr.LabelRasterError, match="r.yaml: labels.raster: .*no CRS"):
        lr.check_label_raster(_source(no_crs), scene, "r.yaml")
    far = write_geotiff(
        tmp_path / "far.tif", _codes(), transform=from_origin(0, 100, 1, 1), nodata=None
    )
    with pytest.raises(lr.LabelRasterError, match="does not overlap"):
        lr.check_label_raster(_source(far), scene, "r.yaml")
    labels = write_geotiff(tmp_path / "lc.tif", _codes(), nodata=None)
    with pytest.raises(lr.LabelRasterError, match=r"code\(s\) \[5\].*labels.classes"):
        lr.check_label_raster(_source(labels, classes={1: "water", 2: "trees"}), scene, "r.yaml")
    with pytest.raises(lr.LabelRasterError, match=r"labels.classes: 7 \(snow\) never occur"):
        lr.check_label_raster(_source(labels, classes=CLASSES | {7: "snow"}), scene, "r.yaml")
    lr.check_label_raster(_source(labels), scene, "r.yaml")  # all fine


def test_parse_names_the_key(tmp_path):
    ok = lr.parse_label_raster(
        {"raster": "lc.tif", "classes": {5: "b", 1: "a"}, "target": "b"}, tmp_path, "r"
    )
    assert ok.path == tmp_path / "lc.tif" and list(ok.classes) == [1, 5] and ok.target_code == 5
    bad = {
        "labels.classes": {"raster": "x.tif", "classes": ["water"]},
        "labels.ignore": {"raster": "x.tif", "classes": {1: "a"}, "ignore": [1]},
        "labels.target": {"raster": "x.tif", "classes": {1: "a"}, "target": "b"},
        "labels.class_property": {"raster": "x.tif", "classes": {1: "a"}, "class_property": "c"},
    }
    for key, section in bad.items():
        with pytest.raises(lr.LabelRasterError, match=f"r: {key}"):
            lr.parse_label_raster(section, tmp_path, "r")
    with pytest.raises(lr.LabelRasterError, match="outside 0-254"):
        lr.parse_class_table({300: "x"}, "labels.classes")
    with pytest.raises(lr.LabelRasterError, match="several codes"):
        lr.parse_class_table({1: "x", 2: "x"}, "labels.classes")
