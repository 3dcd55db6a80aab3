"""Tests for helpers.postprocess: masks, polygons, areas in km² and change between dates."""

from __future__ import annotations

import json
import logging
import math

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.crs import CRS
from scipy import ndimage
from shapely import box

from helpers import postprocess as pp
from helpers.raster import MissingCRSError

UTM = "EPSG:32737"  # the sample region's zone (37S), central meridian 39°E
# 1 m pixels on the central meridian of zone 37S, near the sample region.
TRANSFORM = Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 9_250_000.0)
# The UTM scale factor on the central meridian: a 1 km UTM square covers 1 / 0.9996**2 km².
UTM_SQUARE_KM2 = 1 / 0.9996**2


def _utm_square(x0: float = 500_000.0, y0: float = 9_250_000.0, side: float = 1000.0):
    return box(x0, y0, x0 + side, y0 + side)


# --------------------------------------------------------------------------------------------
# threshold
# --------------------------------------------------------------------------------------------


def test_threshold_marks_class_background_and_nodata():
    p = np.array([[0.1, 0.5, 0.9], [np.nan, -1.0, 0.49]], dtype=np.float32)
    mask = pp.threshold(p, 0.5, nodata=-1.0)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 1, 1], [255, 255, 0]])


def test_threshold_respects_masked_entries_and_ignore_value():
    p = np.ma.masked_array([0.8, 0.8], mask=[False, True])
    np.testing.assert_array_equal(pp.threshold(p, 0.5, ignore_value=9), [1, 9])


@pytest.mark.parametrize("t", [-0.1, 1.5, 50, float("nan"), True])
def test_threshold_rejects_thresholds_outside_unit_interval(t):
    with pytest.raises(ValueError, match="threshold t"):
        pp.threshold(np.zeros((2, 2)), t)


# --------------------------------------------------------------------------------------------
# median_filter
# --------------------------------------------------------------------------------------------


def _brute_force_median(array: np.ndarray, size: int, invalid: np.ndarray) -> np.ndarray:
    """Upper median of the valid values of each reflect-padded window, by loops."""
    r = size // 2
    values = array.astype(float)
    values[invalid] = np.nan
    padded = np.pad(values, r, mode="symmetric")
    out = array.copy()
    for i in range(array.shape[0]):
        for j in range(array.shape[1]):
            if invalid[i, j]:
                continue
            window = padded[i : i + size, j : j + size].ravel()
            window = np.sort(window[~np.isnan(window)])
            out[i, j] = window[len(window) // 2]
    return out


def test_median_filter_without_nodata_is_scipys():
    rng = np.random.default_rng(0)
    p = rng.random((12, 9)).astype(np.float32)
    np.testing.assert_array_equal(pp.median_filter(p, 3), ndimage.median_filter(p, 3))


@settings(max_examples=40, deadline=None)
@given(
    array=arrays(
        np.uint8,
        st.tuples(st.integers(1, 9), st.integers(1, 9)),
        elements=st.sampled_from([0, 1, 255]),
    ),
    size=st.sampled_from([1, 3, 5]),
)
def test_median_filter_ignores_nodata_for_all_shapes(array, size):
    out = pp.median_filter(array, size, nodata=255)
    assert out.dtype == array.dtype and out.shape == array.shape
    invalid = array == 255
    np.testing.assert_array_equal(out[invalid], 255)  # no-data is not filled
    np.testing.assert_array_equal(out, _brute_force_median(array, size, invalid))
    assert set(np.unique(out[~invalid]).tolist()) <= {0, 1}  # nodata never leaks into data


def test_median_filter_nan_probabilities_do_not_spread():
    p = np.full((5, 5), 0.2)
    p[2, 2] = np.nan
    p[0, 0] = 0.9  # a lone speck is removed
    out = pp.median_filter(p, 3)
    assert np.isnan(out[2, 2]) and np.isnan(out).sum() == 1
    np.testing.assert_allclose(out[~np.isnan(out)], 0.2)


def test_median_filter_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        pp.median_filter(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="odd"):
        pp.median_filter(np.zeros((4, 4)), 4)


# --------------------------------------------------------------------------------------------
# clean_mask
# --------------------------------------------------------------------------------------------


def test_clean_mask_removes_small_objects_by_pixel_count():
    mask = np.zeros((8, 12), dtype=np.uint8)
    mask[1:3, 1:3] = 1  # 4 pixels: kept with min_size=4
    mask[5, 5:8] = 1  # 3 pixels: removed
    out = pp.clean_mask(mask, min_size=4)
    assert out[1:3, 1:3].all() and not out[5].any()


def test_clean_mask_fills_small_holes_only():
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[1:11, 1:11] = 1
    mask[2, 2] = 0  # 1-pixel hole
    mask[5:8, 5:8] = 0  # 9-pixel hole
    out = pp.clean_mask(mask, max_hole=8)
    assert out[2, 2] == 1
    assert not out[5:8, 5:8].any()


def test_clean_mask_preserves_ignore_and_does_not_fill_next_to_it():
    mask = np.ones((6, 6), dtype=np.uint8)
    mask[2, 2] = 0  # a hole touching no-data: unknown whether it is a hole
    mask[2, 3] = 255
    mask[0, 5] = 255
    out = pp.clean_mask(mask, max_hole=4, min_size=2)
    assert out[2, 3] == 255 and out[0, 5] == 255
    assert out[2, 2] == 0
    assert ((out == 255) == (mask == 255)).all()


def test_clean_mask_does_not_fill_background_cut_by_the_raster_edge():
    mask = np.ones((5, 5), dtype=np.uint8)
    mask[0, 2] = 0  # may continue beyond the edge
    mask[2, 2] = 0  # enclosed
    out = pp.clean_mask(mask, max_hole=3)
    assert out[0, 2] == 0 and out[2, 2] == 1


def test_clean_mask_opening_removes_spurs_and_closing_bridges_gaps():
    mask = np.zeros((11, 15), dtype=np.uint8)
    mask[3:8, 1:6] = 1
    mask[5, 6:10] = 1  # one-pixel-wide spur
    opened = pp.clean_mask(mask, opening=1)
    assert not opened[5, 7:10].any() and opened[5, 3]
    gap = np.zeros((9, 11), dtype=np.uint8)
    gap[2:7, 1:5] = 1
    gap[2:7, 6:10] = 1  # one-pixel gap at column 5
    assert pp.clean_mask(gap, closing=1)[4, 5] == 1


def test_clean_mask_rejects_class_masks_and_negative_sizes():
    with pytest.raises(ValueError, match="only 0, 1"):
        pp.clean_mask(np.array([[0, 7]], dtype=np.uint8))
    with pytest.raises(ValueError, match="min_size"):
        pp.clean_mask(np.zeros((3, 3), dtype=np.uint8), min_size=-1)


# --------------------------------------------------------------------------------------------
# vectorize
# --------------------------------------------------------------------------------------------


def test_vectorize_keeps_holes_classes_and_georeferencing():
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[0:5, 0:5] = 1
    mask[2, 2] = 0  # hole
    mask[4:6, 6:8] = 2
    gdf = pp.vectorize(mask, TRANSFORM, UTM, class_names={1: "formal", 2: "informal"})
    assert gdf.crs == pyproj.CRS(UTM)
    assert gdf["class_id"].tolist() == [1, 2]
    assert gdf["class_name"].tolist() == ["formal", "informal"]
    assert gdf["pixels"].tolist() == [24, 4]
    donut = gdf.geometry.iloc[0]
    assert len(donut.interiors) == 1 and donut.area == 24.0
    assert donut.bounds == (500_000.0, 9_249_995.0, 500_005.0, 9_250_000.0)
    assert gdf.geometry.iloc[1].bounds == (500_006.0, 9_249_994.0, 500_008.0, 9_249_996.0)


def test_vectorize_connectivity_decides_about_diagonal_pixels():
    mask = np.eye(3, dtype=np.uint8)
    eight = pp.vectorize(mask, TRANSFORM, UTM, connectivity=8)
    four = pp.vectorize(mask, TRANSFORM, UTM, connectivity=4)
    assert len(eight) == 1 and eight.geometry.iloc[0].geom_type == "MultiPolygon"
    assert eight.is_valid.all() and eight["pixels"].tolist() == [3]
    assert len(four) == 3 and four.is_valid.all()


@settings(max_examples=30, deadline=None)
@given(
    mask=arrays(
        np.uint8,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.sampled_from([0, 1, 2, 255]),
    ),
    connectivity=st.sampled_from([4, 8]),
)
def test_vectorize_polygons_cover_exactly_the_class_pixels(mask, connectivity):
    gdf = pp.vectorize(mask, TRANSFORM, UTM, connectivity=connectivity)
    assert gdf.is_valid.all()
    np.testing.assert_allclose(gdf.geometry.area, gdf["pixels"])  # 1 m pixels
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    for value in (1, 2):
        rows = gdf[gdf["class_id"] == value]
        assert len(rows) == ndimage.label(mask == value, structure=structure)[1]
        assert rows["pixels"].sum() == (mask == value).sum()
        if len(rows):
            assert shapely.union_all(rows.geometry.to_numpy()).area == (mask == value).sum()


def test_vectorize_mean_probability_skips_nan():
    mask = np.array([[1, 1, 0, 1]], dtype=np.uint8)
    p = np.array([[0.6, np.nan, 0.1, 0.9]], dtype=np.float32)
    gdf = pp.vectorize(mask, TRANSFORM, UTM, connectivity=4, probabilities=p)
    np.testing.assert_allclose(gdf["mean_probability"], [0.6, 0.9], rtol=1e-6)


def test_vectorize_min_area_is_in_square_metres_and_simplify_keeps_validity():
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[2:4, 2:4] = 1  # 4 m²
    yy, xx = np.mgrid[:40, :40]
    mask[(yy - 24) ** 2 + (xx - 24) ** 2 < 100] = 1  # a pixelated disk, staircase outline
    transform = Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 9_250_000.0)  # 2 m pixels: 16 m² speck
    raw = pp.vectorize(mask, transform, UTM)
    assert len(raw) == 2
    kept = pp.vectorize(mask, transform, UTM, min_area=20.0)
    assert len(kept) == 1 and kept["pixels"].iloc[0] > 100
    smooth = pp.vectorize(mask, transform, UTM, min_area=20.0, simplify=2.0)
    assert smooth.is_valid.all()
    assert shapely.get_num_coordinates(smooth.geometry.iloc[0]) < shapely.get_num_coordinates(
        kept.geometry.iloc[0]
    )
    assert smooth.geometry.iloc[0].area == pytest.approx(kept.geometry.iloc[0].area, rel=0.1)


def test_vectorize_empty_mask_gives_empty_frame_with_columns_and_crs():
    gdf = pp.vectorize(
        np.zeros((4, 4), dtype=np.uint8),
        TRANSFORM,
        CRS.from_epsg(32737),
        probabilities=np.zeros((4, 4)),
    )
    assert len(gdf) == 0
    assert list(gdf.columns) == ["class_id", "class_name", "pixels", "mean_probability", "geometry"]
    assert gdf.crs == pyproj.CRS(UTM)
    assert len(pp.add_polygon_attributes(gdf)) == 0


def test_vectorize_without_crs_warns_but_works(caplog):
    with caplog.at_level(logging.WARNING, logger="helpers.postprocess"):
        gdf = pp.vectorize(np.ones((2, 2), dtype=bool), Affine.identity(), None)
    assert "no CRS" in caplog.text
    assert gdf.crs is None and gdf.geometry.iloc[0].area == 4.0
    with pytest.raises(MissingCRSError, match="crs="):
        pp.area_km2(gdf)


def test_vectorize_rejects_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        pp.vectorize(np.zeros((3, 3), dtype=np.float32), TRANSFORM, UTM)
    with pytest.raises(ValueError, match="class_names"):
        pp.vectorize(np.array([[1, 2]], dtype=np.uint8), TRANSFORM, UTM, class_names={1: "a"})
    with pytest.raises(ValueError, match="probabilities has shape"):
        pp.vectorize(np.ones((3, 3), np.uint8), TRANSFORM, UTM, probabilities=np.ones((2, 3)))


# --------------------------------------------------------------------------------------------
# write_geojson
# --------------------------------------------------------------------------------------------


def test_write_geojson_writes_rfc7946_lonlat_and_refuses_to_overwrite(tmp_path):
    gdf = gpd.GeoDataFrame({"class_id": [1]}, geometry=[_utm_square()], crs=UTM)
    path = pp.write_geojson(gdf, tmp_path / "out.geojson")
    collection = json.loads(path.read_text())
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    lon, lat = collection["features"][0]["geometry"]["coordinates"][0][0]
    assert 38.9 < lon < 39.1 and -6.8 < lat < -6.7  # zone 37S central meridian is 39°E
    assert collection["features"][0]["properties"]["class_id"] == 1
    back = gpd.read_file(path)
    assert back.crs == pyproj.CRS("EPSG:4326")
    assert pp.area_km2(back).iloc[0] == pytest.approx(UTM_SQUARE_KM2, rel=1e-5)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pp.write_geojson(gdf, path)
    pp.write_geojson(gdf.iloc[:0], path, overwrite=True)
    assert json.loads(path.read_text())["features"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["out.geojson"]  # no temporary leftovers


def test_write_geojson_without_crs_raises_unless_not_rfc7946(tmp_path):
    gdf = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)])
    with pytest.raises(MissingCRSError, match="set_crs"):
        pp.write_geojson(gdf, tmp_path / "a.geojson")
    assert not (tmp_path / "a.geojson").exists()
    with pytest.warns(UserWarning, match="crs"):  # pyogrio: the file will have no CRS
        path = pp.write_geojson(gdf, tmp_path / "a.geojson", rfc7946=False)
    assert json.loads(path.read_text())["features"][0]["geometry"]["type"] == "Polygon"


# --------------------------------------------------------------------------------------------
# Areas
# --------------------------------------------------------------------------------------------


def test_area_of_a_utm_square_and_of_the_same_square_in_lonlat():
    square = gpd.GeoSeries([_utm_square()], crs=UTM)
    utm_km2 = pp.area_km2(square).iloc[0]
    # 1 km x 1 km of UTM grid is 1 km² up to the UTM scale factor (0.9996 here).
    assert utm_km2 == pytest.approx(1.0, rel=1e-3)
    assert utm_km2 == pytest.approx(UTM_SQUARE_KM2, rel=1e-5)
    lonlat = square.to_crs("EPSG:4326")
    assert pp.area_km2(lonlat).iloc[0] == pytest.approx(utm_km2, rel=1e-5)
    with pytest.warns(UserWarning, match="geographic CRS"):
        naive = lonlat.area.iloc[0]  # square degrees
    assert naive < 1e-3  # nowhere near 1: degree² are not km²


def test_area_matches_geodesic_area_away_from_the_equator():
    # A 0.1° x 0.1° cell at 60°N: about half as wide as at the equator.
    cell = box(10.0, 60.0, 10.1, 60.1)
    geodesic_m2, _ = pyproj.Geod(ellps="WGS84").geometry_area_perimeter(cell)
    assert pp.area_km2([cell], "EPSG:4326").iloc[0] == pytest.approx(
        abs(geodesic_m2) / 1e6, rel=1e-4
    )


def test_area_km2_crs_handling():
    with pytest.raises(MissingCRSError, match="crs="):
        pp.area_km2([_utm_square()])
    with pytest.raises(ValueError, match="fills in a missing CRS"):
        pp.area_km2(gpd.GeoSeries([_utm_square()], crs=UTM), crs="EPSG:4326")
    frame = gpd.GeoDataFrame(geometry=[_utm_square(), _utm_square(side=500)], index=[7, 9])
    areas = pp.area_km2(frame, crs=UTM)
    assert areas.index.tolist() == [7, 9]
    assert areas.iloc[1] == pytest.approx(areas.iloc[0] / 4, rel=1e-4)
    assert len(pp.area_km2(gpd.GeoSeries([], crs=UTM))) == 0


def test_equal_area_crs_is_laea_centred_on_the_data():
    crs = pp.equal_area_crs([box(39.1, -6.8, 39.2, -6.7)], "EPSG:4326")
    assert crs.coordinate_operation.method_name == "Lambert Azimuthal Equal Area"
    assert crs.axis_info[0].unit_name == "metre"
    params = {p.name: p.value for p in crs.coordinate_operation.params}
    assert params["Longitude of natural origin"] == pytest.approx(39.15)
    assert params["Latitude of natural origin"] == pytest.approx(-6.75)


def test_add_polygon_attributes_measures_shape():
    circle = shapely.Point(500_500, 9_250_500).buffer(100, quad_segs=64)
    gdf = gpd.GeoDataFrame(
        {"name": ["square", "circle"]}, geometry=[_utm_square(), circle], crs=UTM
    )
    out = pp.add_polygon_attributes(gdf)
    assert "area_km2" not in gdf.columns  # the input is not modified
    square, disk = out.iloc[0], out.iloc[1]
    assert square["perimeter_m"] == pytest.approx(4000 / 0.9996, rel=1e-4)
    assert square["compactness"] == pytest.approx(math.pi / 4, rel=1e-4)
    assert disk["compactness"] == pytest.approx(1.0, abs=1e-3)
    lon, lat = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(
        500_500, 9_250_500
    )
    assert square["centroid_lon"] == pytest.approx(lon, abs=1e-7)
    assert square["centroid_lat"] == pytest.approx(lat, abs=1e-7)


# --------------------------------------------------------------------------------------------
# compare_to_truth
# --------------------------------------------------------------------------------------------


def test_compare_to_truth_by_area_without_double_counting():
    x, y = 500_000.0, 9_250_000.0
    # Two overlapping predictions covering x..x+2000 (2 km² of ground, 3 km² summed).
    predicted = gpd.GeoDataFrame(
        geometry=[box(x, y, x + 1500, y + 1000), box(x + 500, y, x + 2000, y + 1000)], crs=UTM
    )
    truth = gpd.GeoDataFrame(geometry=[box(x + 1000, y, x + 3000, y + 1000)], crs=UTM)
    scores = pp.compare_to_truth(predicted, truth.to_crs("EPSG:4326"))  # mixed CRSs
    km2 = UTM_SQUARE_KM2
    assert scores["predicted_km2"] == pytest.approx(2 * km2, rel=1e-4)
    assert scores["truth_km2"] == pytest.approx(2 * km2, rel=1e-4)
    assert scores["intersection_km2"] == pytest.approx(km2, rel=1e-4)
    assert scores["union_km2"] == pytest.approx(3 * km2, rel=1e-4)
    assert scores["iou"] == pytest.approx(1 / 3, rel=1e-4)
    assert scores["precision"] == pytest.approx(0.5, rel=1e-4)
    assert scores["recall"] == pytest.approx(0.5, rel=1e-4)
    assert scores["f1"] == pytest.approx(0.5, rel=1e-4)


def test_compare_to_truth_with_no_prediction():
    scores = pp.compare_to_truth(gpd.GeoSeries([], crs=UTM), [_utm_square()], crs=UTM)
    assert scores["predicted_km2"] == 0 and scores["recall"] == 0 and scores["iou"] == 0
    assert math.isnan(scores["precision"])


# --------------------------------------------------------------------------------------------
# Change
# --------------------------------------------------------------------------------------------


def _change_masks() -> tuple[np.ndarray, np.ndarray]:
    before = np.zeros((10, 10), dtype=np.uint8)
    after = np.zeros((10, 10), dtype=np.uint8)
    before[0:4, 0:4] = 1  # 16 px, of which 4 lost
    after[0:4, 0:3] = 1  # 12 px kept
    after[6:10, 6:10] = 1  # 16 px new
    after[0, 9] = 1  # 1 px new
    before[9, 0] = 1
    after[9, 0] = 255  # no data in 2024: left out of every number
    return before, after


def test_change_polygons_maps_new_and_lost():
    before, after = _change_masks()
    gdf = pp.change_polygons(before, after, TRANSFORM, UTM)
    assert list(gdf.columns) == ["change", "pixels", "area_km2", "geometry"]
    assert gdf["change"].tolist() == ["new", "new", "lost"]
    assert gdf["pixels"].tolist() == [1, 16, 4]
    np.testing.assert_allclose(gdf["area_km2"], gdf["pixels"] * 1e-6 * UTM_SQUARE_KM2, rtol=1e-4)
    assert pp.change_polygons(before, after, TRANSFORM, UTM, min_area=2)["pixels"].tolist() == [
        16,
        4,
    ]


def test_change_polygons_errors():
    with pytest.raises(ValueError, match="same grid"):
        pp.change_polygons(np.zeros((3, 3), np.uint8), np.zeros((3, 4), np.uint8), TRANSFORM, UTM)
    with pytest.raises(MissingCRSError):
        pp.change_polygons(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8), TRANSFORM, None)


def test_summarize_change_of_masks_agrees_with_polygons():
    before, after = _change_masks()
    summary = pp.summarize_change(before, after, TRANSFORM, UTM)
    px = 1e-6 * UTM_SQUARE_KM2
    assert summary["before_km2"] == pytest.approx(16 * px, rel=1e-4)
    assert summary["after_km2"] == pytest.approx(29 * px, rel=1e-4)
    assert summary["new_km2"] == pytest.approx(17 * px, rel=1e-4)
    assert summary["lost_km2"] == pytest.approx(4 * px, rel=1e-4)
    assert summary["net_km2"] == pytest.approx(summary["new_km2"] - summary["lost_km2"])
    assert summary["percent_change"] == pytest.approx(100 * 13 / 16, rel=1e-4)
    # The same masks as polygon layers (no-data pixel left out) give the same numbers.
    valid = after != 255
    layers = pp.summarize_change(
        pp.vectorize(np.where(valid, before, 0), TRANSFORM, UTM),
        pp.vectorize(np.where(valid, after, 0), TRANSFORM, UTM),
    )
    for key, value in summary.items():
        assert layers[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_summarize_change_edge_cases():
    zero = np.zeros((4, 4), dtype=np.uint8)
    summary = pp.summarize_change(zero, np.ones((4, 4), np.uint8), TRANSFORM, UTM)
    assert summary["before_km2"] == 0 and math.isnan(summary["percent_change"])
    with pytest.raises(ValueError, match="transform"):
        pp.summarize_change(zero, zero)


def test_change_between_layers_new_and_lost_polygons():
    x, y = 500_000.0, 9_250_000.0
    before = gpd.GeoDataFrame(geometry=[box(x, y, x + 1000, y + 1000)], crs=UTM)
    after = gpd.GeoDataFrame(
        geometry=[box(x + 500, y, x + 1000, y + 1000), box(x + 2000, y, x + 2100, y + 100)], crs=UTM
    )
    gdf = pp.change_between_layers(before, after)
    assert gdf["change"].tolist() == ["new", "lost"]
    assert gdf.geometry.area.tolist() == [10_000.0, 500_000.0]
    expected = [0.01 * UTM_SQUARE_KM2, 0.5 * UTM_SQUARE_KM2]
    np.testing.assert_allclose(gdf["area_km2"], expected, rtol=1e-5)
    assert pp.change_between_layers(before, after, min_area=20_000)["change"].tolist() == ["lost"]
    same = pp.change_between_layers(before, before)
    assert len(same) == 0 and list(same.columns) == ["change", "area_km2", "geometry"]


def test_change_between_layers_in_different_crss():
    x, y = 500_000.0, 9_250_000.0
    before = gpd.GeoDataFrame(geometry=[box(x, y, x + 1000, y + 1000)], crs=UTM)
    after = gpd.GeoDataFrame(geometry=[box(x + 500, y, x + 1000, y + 1000)], crs=UTM)
    # Reprojection round-off leaves slivers of a few mm² along shared edges: min_area drops them.
    gdf = pp.change_between_layers(before, after.to_crs("EPSG:4326"), min_area=1.0)
    assert gdf.crs == before.crs  # output in the before layer's CRS
    assert gdf["change"].tolist() == ["lost"]
    assert gdf["area_km2"].iloc[0] == pytest.approx(0.5 * UTM_SQUARE_KM2, rel=1e-6)
