"""Tests for helpers.raster: reading, describing, stretches, indices and the error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import SCENE_BANDS, synthetic_reflectance, write_geotiff
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import array_bounds
from rasterio.windows import Window

from helpers import raster
from helpers.raster import MissingCRSError, RasterError

# --------------------------------------------------------------------------------------------
# describe / RasterInfo
# --------------------------------------------------------------------------------------------


def test_describe_reports_geometry_bands_and_layout(scene_path):
    info = raster.describe(scene_path)
    assert (info.width, info.height, info.count) == (64, 64, 4)
    assert info.dtype == "uint16"
    assert info.crs.to_epsg() == 32633
    assert info.crs_units == "metre"
    assert info.resolution == (1.0, 1.0)
    assert info.bounds == rasterio.coords.BoundingBox(500000, 3999936, 500064, 4000000)
    assert info.transform == Affine(1, 0, 500000, 0, -1, 4000000)
    assert info.nodata == 0
    assert info.band_names == SCENE_BANDS
    assert info.block_shapes == ((32, 32),) * 4
    assert info.compression == "deflate"
    assert info.overviews == [2, 4]
    assert info.area_km2 == pytest.approx(64 * 64 / 1e6)


def test_describe_falls_back_to_numbered_band_names_and_no_area_without_crs(make_geotiff):
    path = make_geotiff("plain.tif", data=np.ones((2, 8, 8), "uint8"), crs=None, blocksize=None)
    info = raster.describe(path)
    assert info.band_names == ("band_1", "band_2")
    assert info.crs is None and info.crs_units is None and info.area_km2 is None
    assert info.overviews == []


def test_describe_geographic_crs_has_degree_units_and_no_area(make_geotiff):
    path = make_geotiff(
        "geo.tif",
        data=np.ones((1, 8, 8), "uint8"),
        crs="EPSG:4326",
        transform=Affine(0.001, 0, 30.0, 0, -0.001, -1.0),
    )
    info = raster.describe(path)
    assert info.crs_units == "degree"
    assert info.area_km2 is None


def test_raster_info_str_is_aligned_key_value_lines(scene_path):
    text = str(raster.describe(scene_path))
    lines = text.splitlines()
    assert all(" : " in line for line in lines)
    # every separator in the same column
    assert len({line.index(" : ") for line in lines}) == 1
    assert "1=blue, 2=green, 3=red, 4=nir" in text
    assert "EPSG:32633" in text
    assert "1 x 1 m" in text


def test_raster_info_to_dict_round_trips_through_json(scene_path):
    info = raster.describe(scene_path)
    data = json.loads(json.dumps(info.to_dict()))
    assert data["crs"] == "EPSG:32633"
    assert data["band_names"] == list(SCENE_BANDS)
    assert data["transform"] == [1.0, 0.0, 500000.0, 0.0, -1.0, 4000000.0]
    assert data["bounds"]["top"] == 4000000.0
    assert data["overviews"] == [2, 4]


def test_to_dict_handles_nan_nodata(make_geotiff):
    path = make_geotiff("f.tif", data=np.zeros((1, 4, 4), "float32"), nodata=float("nan"))
    json.dumps(raster.describe(path).to_dict(), allow_nan=False)


# --------------------------------------------------------------------------------------------
# open_raster errors
# --------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        raster.open_raster(path)


def test_missing_generated_file_says_how_to_generate(tmp_path):
    path = tmp_path / "data" / "generated" / "sample" / "scene_2021.tif"
    with pytest.raises(FileNotFoundError) as excinfo:
        raster.describe(path)
    assert "make data" in str(excinfo.value)
    assert "python -m helpers.sample_data" in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", "just some notes\n"),
        ("settlements.geojson", '{"type": "FeatureCollection", "features": []}'),
    ],
)
def test_non_raster_file_raises_raster_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RasterError, match="GDAL cannot read .* as a raster") as excinfo:
        raster.read(path)
    assert name in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_folder_is_not_a_raster(tmp_path):
    with pytest.raises(RasterError, match="folder"):
        raster.open_raster(tmp_path)


def test_require_crs_raises_missing_crs_error_with_fix(make_geotiff):
    path = make_geotiff("nocrs.tif", crs=None)
    with raster.open_raster(path) as ds:  # fine without require_crs
        assert ds.crs is None
    with pytest.raises(MissingCRSError) as excinfo:
        raster.open_raster(path, require_crs=True)
    message = str(excinfo.value)
    assert "nocrs.tif" in message and "rio edit-info --crs" in message
    assert isinstance(excinfo.value, RasterError)


def test_open_raster_is_a_context_manager(scene_path):
    with raster.open_raster(scene_path, require_crs=True) as ds:
        assert ds.count == 4
    assert ds.closed


def test_ensure_crs(scene_path):
    assert raster.ensure_crs("EPSG:32633").to_epsg() == 32633
    with pytest.raises(MissingCRSError, match="scene.tif"):
        raster.ensure_crs(None, scene_path)


# --------------------------------------------------------------------------------------------
# resolve_bands
# --------------------------------------------------------------------------------------------


def test_resolve_bands_accepts_none_ints_names_and_mixes():
    assert raster.resolve_bands(None, SCENE_BANDS) == [1, 2, 3, 4]
    assert raster.resolve_bands(4, SCENE_BANDS) == [4]
    assert raster.resolve_bands("NIR", SCENE_BANDS) == [4]
    assert raster.resolve_bands(["nir", "Red", 2], SCENE_BANDS) == [4, 3, 2]
    assert raster.resolve_bands((np.int64(1),), SCENE_BANDS) == [1]


def test_resolve_bands_out_of_range_lists_choices_and_file():
    with pytest.raises(RasterError) as excinfo:
        raster.resolve_bands([1, 5], SCENE_BANDS, path="data/scene.tif")
    assert str(excinfo.value).startswith(
        "bands: band 5 is out of range for scene.tif, which has 4 bands "
        "(1=blue, 2=green, 3=red, 4=nir)"
    )
    with pytest.raises(RasterError, match="band 0 is out of range"):
        raster.resolve_bands(0, SCENE_BANDS)


def test_resolve_bands_unknown_name_lists_choices():
    with pytest.raises(RasterError, match=r"no band named 'swir'.*1=blue, 2=green, 3=red, 4=nir"):
        raster.resolve_bands("swir", SCENE_BANDS)


@pytest.mark.parametrize("bad", [[True], [1.5], [None]])
def test_resolve_bands_rejects_other_types(bad):
    with pytest.raises(TypeError, match="bands"):
        raster.resolve_bands(bad, SCENE_BANDS)


def test_resolve_bands_rejects_empty_selection():
    with pytest.raises(RasterError, match="empty"):
        raster.resolve_bands([], SCENE_BANDS)


# --------------------------------------------------------------------------------------------
# read / read_decimated
# --------------------------------------------------------------------------------------------


def test_read_returns_bands_rows_cols_in_requested_order(scene_path):
    full = raster.read(scene_path)
    assert full.shape == (4, 64, 64) and full.dtype == np.uint16
    picked = raster.read(scene_path, ["nir", 1])
    np.testing.assert_array_equal(picked, full[[3, 0]])


def test_read_window_as_window_or_tuple(scene_path):
    full = raster.read(scene_path)
    a = raster.read(scene_path, "red", Window(col_off=10, row_off=5, width=20, height=7))
    b = raster.read(scene_path, "red", ((5, 12), (10, 30)))
    assert a.shape == (1, 7, 20)
    np.testing.assert_array_equal(a, full[2:3, 5:12, 10:30])
    np.testing.assert_array_equal(a, b)


def test_read_window_outside_raster_raises(scene_path):
    with pytest.raises(RasterError, match="does not lie inside"):
        raster.read(scene_path, window=((60, 70), (0, 10)))


def test_read_masked_masks_nodata(scene_path):
    arr = raster.read(scene_path, masked=True)
    assert isinstance(arr, np.ma.MaskedArray)
    assert arr.mask[:, :8, :8].all()
    assert not arr.mask[:, 8:, :].any()


def test_read_bad_band_names_the_file(scene_path):
    with pytest.raises(RasterError, match=r"band 5 is out of range for scene.tif"):
        raster.read(scene_path, 5)


def test_read_decimated_keeps_extent_and_limits_size(make_geotiff):
    path = make_geotiff("wide.tif", width=100, height=40, overviews=(2,))
    array, transform = raster.read_decimated(path, max_size=25)
    assert array.shape == (4, 10, 25)
    with rasterio.open(path) as ds:
        bounds = ds.bounds
    assert array_bounds(10, 25, transform) == pytest.approx(tuple(bounds))


def test_read_decimated_small_raster_is_read_as_is(scene_path):
    array, transform = raster.read_decimated(scene_path, max_size=1024)
    np.testing.assert_array_equal(array, raster.read(scene_path))
    assert transform == raster.describe(scene_path).transform


def test_read_decimated_reads_from_overviews(tmp_path):
    # Overviews built from zeros, then the full resolution overwritten with ones: a decimated
    # read that returns zeros can only have come from the overview.
    path = write_geotiff(tmp_path / "ov.tif", np.zeros((1, 64, 64), "uint8"), nodata=None)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2], rasterio.enums.Resampling.average)
    with rasterio.open(path, "r+") as ds:
        ds.write(np.ones((1, 64, 64), "uint8"))
    array, _ = raster.read_decimated(path, max_size=32)
    assert array.shape == (1, 32, 32)
    assert (array == 0).all()
    assert (raster.read(path) == 1).all()


def test_read_decimated_masked_and_bad_resampling(scene_path):
    array, _ = raster.read_decimated(scene_path, max_size=32, masked=True, resampling="nearest")
    assert isinstance(array, np.ma.MaskedArray)
    assert array.mask[:, :4, :4].all()
    with pytest.raises(ValueError, match="resampling='bicubicc'.*average"):
        raster.read_decimated(scene_path, resampling="bicubicc")
    with pytest.raises(ValueError, match="max_size"):
        raster.read_decimated(scene_path, max_size=0)


def test_truncated_cog_read_error_names_the_file_and_window(tmp_path):
    """A file cut after its header opens, but reading pixels fails: say which file and where."""
    data = np.random.default_rng(0).integers(0, 10_000, (2, 128, 128)).astype("uint16")
    path = write_geotiff(tmp_path / "cut.tif", data, blocksize=32)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    raster.describe(path)  # the header is intact
    with pytest.raises(rasterio.errors.RasterioIOError) as info:
        raster.read(path, window=((96, 128), (96, 128)))
    message = str(info.value)
    assert str(path) in message and "row_off=96" in message and "truncated" in message
    assert "See previous exception" not in message
    with pytest.raises(rasterio.errors.RasterioIOError, match="cut.tif.*truncated"):
        raster.read_decimated(path, max_size=64)


# --------------------------------------------------------------------------------------------
# valid_mask and percentile_stretch
# --------------------------------------------------------------------------------------------


def test_valid_mask_requires_all_bands_valid():
    arr = np.ones((3, 2, 2), "float32")
    arr[0, 0, 0] = 0  # nodata in one band
    arr[2, 1, 1] = np.nan
    mask = raster.valid_mask(arr, nodata=0)
    np.testing.assert_array_equal(mask, [[False, True], [True, False]])
    masked = np.ma.masked_array(np.ones((2, 2)), mask=[[False, True], [False, False]])
    np.testing.assert_array_equal(raster.valid_mask(masked), [[True, False], [True, True]])
    with pytest.raises(RasterError, match="got shape"):
        raster.valid_mask(np.ones(4), 0)


def test_percentile_stretch_maps_to_unit_range_and_ignores_nodata():
    band = np.arange(1, 101, dtype="uint16").reshape(10, 10)
    band[0, 0] = 0  # nodata; would drag the low percentile down if counted
    band[9, 9] = 60000  # outlier above the 98th percentile
    out = raster.percentile_stretch(band, 2, 98, nodata=0)
    assert out.dtype == np.float32 and out.shape == (10, 10)
    assert np.isnan(out[0, 0])
    valid = out[~np.isnan(out)]
    assert valid.min() == 0.0 and valid.max() == 1.0
    assert out[9, 9] == 1.0
    lo, hi = np.percentile(np.delete(band.ravel(), 0), [2, 98])
    assert out[5, 5] == pytest.approx((band[5, 5] - lo) / (hi - lo))


def test_percentile_stretch_per_band_vs_shared():
    arr = np.stack([np.linspace(0, 10, 100), np.linspace(0, 1000, 100)]).reshape(2, 10, 10)
    per_band = raster.percentile_stretch(arr, 0, 100)
    np.testing.assert_allclose(per_band[0], per_band[1], atol=1e-6)
    shared = raster.percentile_stretch(arr, 0, 100, per_band=False)
    assert shared[0].max() == pytest.approx(0.01)
    assert shared[1].max() == 1.0


def test_percentile_stretch_masked_constant_and_empty_bands():
    arr = np.ma.masked_array(np.full((3, 4, 4), 7.0), mask=False)
    arr[2] = np.ma.masked  # all invalid
    out = raster.percentile_stretch(arr)
    assert (out[0] == 0).all()  # constant band -> 0, no division by zero
    assert np.isnan(out[2]).all()


def test_percentile_stretch_rejects_bad_percentiles():
    with pytest.raises(ValueError, match="low=50, high=10"):
        raster.percentile_stretch(np.ones((2, 2)), 50, 10)


@settings(max_examples=30, deadline=None)
@given(
    data=st.lists(st.integers(0, 65535), min_size=4, max_size=64),
    low=st.floats(0, 49),
    high=st.floats(51, 100),
)
def test_percentile_stretch_output_always_in_unit_range(data, low, high):
    arr = np.array(data, dtype="uint16").reshape(1, 1, -1)
    out = raster.percentile_stretch(arr, low, high, nodata=0)
    finite = out[np.isfinite(out)]
    assert ((finite >= 0) & (finite <= 1)).all()
    np.testing.assert_array_equal(np.isnan(out), arr == 0)


# --------------------------------------------------------------------------------------------
# composite and indices
# --------------------------------------------------------------------------------------------


def test_composite_true_and_false_colour():
    arr = np.arange(4)[:, None, None] * np.ones((4, 2, 3))
    np.testing.assert_array_equal(raster.composite(arr, SCENE_BANDS)[:, 0, 0], [2, 1, 0])
    false_colour = raster.composite(arr, SCENE_BANDS, ("nir", "red", "green"))
    np.testing.assert_array_equal(false_colour[:, 0, 0], [3, 2, 1])
    with pytest.raises(RasterError, match="3 names but array has 4 bands"):
        raster.composite(arr, SCENE_BANDS[:3])
    with pytest.raises(RasterError, match="no band named 'swir'"):
        raster.composite(arr, SCENE_BANDS, ("swir", "nir", "red"))


def test_normalized_difference_does_not_overflow_uint16():
    a = np.array([100, 60000, 0, 500], dtype="uint16")
    b = np.array([200, 50000, 0, 500], dtype="uint16")
    out = raster.normalized_difference(a, b)
    assert out.dtype == np.float32
    assert out[0] == pytest.approx(-1 / 3)
    assert out[1] == pytest.approx(10000 / 110000)
    assert np.isnan(out[2])  # 0 / 0
    assert out[3] == 0


def test_normalized_difference_invalid_inputs_are_nan():
    a = np.ma.masked_array([1.0, 2.0, np.nan, 3.0], mask=[True, False, False, False])
    b = np.array([1.0, 9.0, 1.0, 1.0])
    out = raster.normalized_difference(a, b, nodata=9.0)
    assert np.isnan(out[:3]).all() and out[3] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        raster.normalized_difference(np.ones(3), np.ones(4))


def test_spectral_indices_separate_water_vegetation_and_soil():
    image = synthetic_reflectance(8, 30)  # water | vegetation | soil, left to right
    ndvi = raster.spectral_index(image, SCENE_BANDS, "NDVI")
    ndwi = raster.spectral_index(image, SCENE_BANDS, "ndwi")
    gndvi = raster.spectral_index(image, SCENE_BANDS, "gndvi")
    water, veg, soil = slice(0, 10), slice(10, 20), slice(20, 30)
    assert (ndwi[:, water] > 0.3).all() and (ndwi[:, veg] < 0).all()
    assert (ndvi[:, veg] > 0.7).all() and (ndvi[:, water] < 0).all()
    assert (np.abs(ndvi[:, soil]) < 0.2).all()
    assert (gndvi[:, veg] > 0.6).all()
    assert set(raster.SPECTRAL_INDICES) >= {"ndvi", "ndwi", "gndvi"}
    assert raster.SPECTRAL_INDICES["ndwi"][:2] == ("green", "nir")


def test_spectral_index_nodata_is_nan():
    image = synthetic_reflectance(4, 4)
    image[:, 0, 0] = 0
    ndvi = raster.spectral_index(image, SCENE_BANDS, "ndvi", nodata=0)
    assert np.isnan(ndvi[0, 0]) and np.isfinite(ndvi[1:, 1:]).all()


def test_spectral_index_errors_list_choices():
    image = np.ones((3, 2, 2))
    with pytest.raises(RasterError, match="Unknown spectral index 'evi'.*gndvi, ndvi, ndwi"):
        raster.spectral_index(image, ("blue", "green", "red"), "evi")
    with pytest.raises(RasterError, match="ndvi needs a band named 'nir'.*blue, green, red"):
        raster.spectral_index(image, ("blue", "green", "red"), "ndvi")
    with pytest.raises(RasterError, match=r"got shape \(2, 2\)"):
        raster.spectral_index(image[0], ("blue",), "ndvi")


# --------------------------------------------------------------------------------------------
# axis order
# --------------------------------------------------------------------------------------------


def test_channels_last_and_first_round_trip():
    arr = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    last = raster.to_channels_last(arr)
    assert last.shape == (3, 2, 4)
    assert last[1, 0, 2] == arr[2, 1, 0]
    np.testing.assert_array_equal(raster.to_channels_first(last), arr)
    batch = np.zeros((5, 4, 3, 2))
    assert raster.to_channels_last(batch).shape == (5, 3, 2, 4)
    assert raster.to_channels_first(raster.to_channels_last(batch)).shape == batch.shape


def test_channel_helpers_add_axis_to_2d_and_reject_other_ndim():
    assert raster.to_channels_last(np.zeros((3, 2))).shape == (3, 2, 1)
    assert raster.to_channels_first(np.zeros((3, 2))).shape == (1, 3, 2)
    with pytest.raises(RasterError, match=r"got shape \(5,\) \(1-D\)"):
        raster.to_channels_last(np.zeros(5))
    with pytest.raises(RasterError, match="5-D"):
        raster.to_channels_first(np.zeros((1, 1, 1, 1, 1)))


@pytest.mark.parametrize("size", [64, 256])  # fails while closing / while writing
def test_write_like_failing_write_names_the_file_and_the_disk(tmp_path, size):
    """GDAL reports a full disk only on stderr; the error must still name the output."""
    like = write_geotiff(tmp_path / "like.tif", np.zeros((1, size, size), "uint8"))
    out = tmp_path / "out" / "big.tif"
    out.parent.mkdir()
    code = """
import resource, signal, sys
import numpy as np
from helpers import raster
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
size = int(sys.argv[3])
noise = np.random.default_rng(0).integers(0, 60000, (4, size, size)).astype("uint16")
try:
    raster.write_like(sys.argv[1], noise, sys.argv[2])
except OSError as exc:
    print(type(exc).__name__, exc)
"""
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code, str(out), str(like), str(size)],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    assert result.stdout.startswith("RasterioIOError"), result.stdout + result.stderr
    assert str(out) in result.stdout and "disk full" in result.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == []  # nothing half-written


def test_write_like_keeps_the_grid_and_is_atomic(scene_path, tmp_path):
    info = raster.describe(scene_path)
    mask = (raster.read(scene_path, bands="nir")[0] > 3000).astype("uint8")
    out = raster.write_like(
        tmp_path / "mask.tif",
        mask,
        scene_path,
        nodata=255,
        descriptions=["vegetation"],
        colormap={0: (0, 0, 0), 1: (0, 200, 0)},
    )
    written = raster.describe(out)
    assert (written.crs, written.transform, written.count) == (info.crs, info.transform, 1)
    assert written.nodata == 255 and written.band_names == ("vegetation",)
    np.testing.assert_array_equal(raster.read(out)[0], mask)
    assert not list(tmp_path.glob(".*partial"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        raster.write_like(out, mask, scene_path)
    with pytest.raises(ValueError, match="same grid"):
        raster.write_like(tmp_path / "bad.tif", mask[:10], scene_path)


def test_scene_percentiles_give_one_stretch_for_every_part_of_a_scene(scene_path):
    limits = raster.scene_percentiles(scene_path, bands=["red", "green", "blue"])
    assert list(limits) == ["red", "green", "blue"]
    full = raster.read(scene_path, bands=["red", "green", "blue"], masked=True)
    for name, band in zip(limits, full, strict=True):
        low, high = limits[name]
        expected = np.percentile(band.compressed(), [2, 98])
        # from the overviews, so close to (not exactly) the full-resolution percentiles
        assert low == pytest.approx(expected[0], rel=0.2) and high == pytest.approx(
            expected[1], rel=0.2
        )
    # a corner stretched with the scene's limits keeps the scene's colours
    corner = full[:, 32:, 32:]
    stretched = raster.percentile_stretch(corner, limits=list(limits.values()))
    low, high = limits["red"]
    np.testing.assert_allclose(
        stretched[0], np.clip((corner[0] - low) / (high - low), 0, 1), rtol=1e-5
    )
    with pytest.raises(ValueError, match="limits has 2"):
        raster.percentile_stretch(corner, limits=[(0, 1), (0, 1)])


def test_scene_percentiles_ignore_nan_in_a_float_raster_without_nodata(tmp_path):
    data = np.random.default_rng(2).normal(100.0, 10.0, (2, 40, 50)).astype("float32")
    data[:, :5, :] = np.nan  # nodata written as NaN, no nodata declared
    data[1, 20, 20] = np.inf
    path = write_geotiff(tmp_path / "nan.tif", data, nodata=None)
    limits = raster.scene_percentiles(path)
    for band, (low, high) in zip(data, limits.values(), strict=True):
        finite = band[np.isfinite(band)]
        assert [low, high] == pytest.approx(np.percentile(finite, [2, 98]).tolist())
    data[1] = np.nan
    write_geotiff(tmp_path / "nan.tif", data, nodata=None)
    with pytest.raises(ValueError, match="'band_2' .* only nodata"):
        raster.scene_percentiles(tmp_path / "nan.tif")


def test_scene_percentiles_sample_a_large_raster_without_overviews(tmp_path, monkeypatch):
    monkeypatch.setattr(raster, "PERCENTILE_FULL_READ_PIXELS", 100 * 100, raising=False)
    rng = np.random.default_rng(3)
    data = rng.gamma(2.0, 500.0, (1, 300, 400)).astype("float32")
    data[0, :, :200] += 1000.0  # the left half is brighter: the sample must see both halves
    path = write_geotiff(tmp_path / "big.tif", data, nodata=None)

    def whole_read(*args, **kwargs):
        raise AssertionError("the whole raster was read")

    with monkeypatch.context() as patched:
        patched.setattr(raster, "read_decimated", whole_read)
        limits = raster.scene_percentiles(path, max_size=128)
        again = raster.scene_percentiles(path, max_size=128)
    assert limits == again  # deterministic
    low, high = limits["band_1"]
    exact = np.percentile(data, [2, 98])
    assert low == pytest.approx(exact[0], rel=0.25) and high == pytest.approx(exact[1], rel=0.1)
    # With overviews the (cheap) decimated read is used, as for a raster below the limit.
    with_overviews = write_geotiff(tmp_path / "ovr.tif", data, nodata=None, overviews=(2, 4))
    decimated, _ = raster.read_decimated(with_overviews, max_size=128, masked=True)
    expected = np.percentile(decimated.compressed(), [2, 98])
    assert raster.scene_percentiles(with_overviews, max_size=128)["band_1"] == pytest.approx(
        expected.tolist()
    )
