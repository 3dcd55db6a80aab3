"""Tests for helpers.labels: reading vector labels, per-patch labels and rasterized masks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import UTM_CRS, UTM_ORIGIN
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely import LineString, Polygon, box

from helpers import labels
from helpers.labels import IGNORE_LABEL, IGNORE_VALUE, VectorError

X0, Y0 = UTM_ORIGIN  # top-left corner of the 64 x 64 test raster, 1 m pixels


def utm_box(col0: float, row0: float, col1: float, row1: float) -> Polygon:
    """A rectangle given in pixel columns/rows of the test raster, in UTM metres."""
    return box(X0 + col0, Y0 - row1, X0 + col1, Y0 - row0)


@pytest.fixture
def raster_path(make_geotiff) -> Path:
    return make_geotiff("scene.tif", width=64, height=64)


@pytest.fixture
def outlines() -> gpd.GeoDataFrame:
    """Two labelled rectangles in UTM: pixels rows 5-15 x cols 10-20 and rows 30-40 x cols 40-52."""
    return gpd.GeoDataFrame(
        {"id": [1, 2], "kind": ["informal", "formal"], "code": [7, 6]},
        geometry=[utm_box(10, 5, 20, 15), utm_box(40, 30, 52, 40)],
        crs=UTM_CRS,
    )


def write_vectors(gdf: gpd.GeoDataFrame, path: Path, crs: str | None) -> Path:
    out = gdf.to_crs(crs) if crs is not None else gdf
    out.to_file(path, engine="pyogrio")
    return path


# --------------------------------------------------------------------------------------------
# read_vectors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "file_crs"),
    [("labels.geojson", "EPSG:4326"), ("labels.shp", "EPSG:4326"), ("labels.gpkg", UTM_CRS)],
)
def test_read_vectors_reprojects_each_format_onto_the_raster(
    tmp_path, raster_path, outlines, name, file_crs
):
    path = write_vectors(outlines, tmp_path / name, file_crs)
    with rasterio.open(raster_path) as src:
        gdf = labels.read_vectors(path, crs=src.crs, class_property="kind")
        shape, transform = src.shape, src.transform
    assert gdf.crs.to_epsg() == 32633
    assert gdf.attrs["source"] == str(path)
    np.testing.assert_allclose(gdf.total_bounds, outlines.total_bounds, atol=0.01)
    mask = labels.rasterize_mask(gdf, shape, transform)
    expected = np.zeros(shape, dtype="uint8")
    expected[5:15, 10:20] = 1
    expected[30:40, 40:52] = 1
    np.testing.assert_array_equal(mask, expected)


def test_geojson_without_crs_member_is_read_as_lon_lat(make_geojson, outlines):
    lonlat = outlines.to_crs("EPSG:4326").geometry
    path = make_geojson(lonlat)  # RFC 7946 FeatureCollection, no "crs" member
    assert "crs" not in json.loads(path.read_text())
    gdf = labels.read_vectors(path, crs=UTM_CRS)
    np.testing.assert_allclose(gdf.total_bounds, outlines.total_bounds, atol=0.01)


def test_invalid_polygons_are_repaired_and_reported(tmp_path, caplog):
    bow_tie = Polygon([(X0, Y0), (X0 + 10, Y0 - 10), (X0 + 10, Y0), (X0, Y0 - 10)])
    # A square with a spike: make_valid returns the square plus a stray line.
    spike = [(20, 0), (30, 0), (30, 5), (35, 5), (30, 5), (30, 10), (20, 10), (20, 0)]
    spiked = Polygon([(X0 + x, Y0 - y) for x, y in spike])
    assert not bow_tie.is_valid and not spiked.is_valid
    gdf = gpd.GeoDataFrame(
        {"id": [1, 2, 3]}, geometry=[bow_tie, spiked, utm_box(0, 0, 4, 4)], crs=UTM_CRS
    )
    path = write_vectors(gdf, tmp_path / "invalid.gpkg", None)
    with caplog.at_level(logging.INFO, logger="helpers.labels"):
        read = labels.read_vectors(path)
    assert read.geometry.is_valid.all()
    assert list(read.geom_type) == ["MultiPolygon", "Polygon", "Polygon"]  # no stray lines
    np.testing.assert_allclose(read.area, [50.0, 100.0, 16.0])  # bow-tie: two 25 m2 triangles
    assert "Repaired 2 invalid geometries" in caplog.text


def test_shapefile_without_prj_names_file_and_fix(tmp_path, outlines):
    path = tmp_path / "no_crs.shp"
    with pytest.warns(UserWarning):  # pyogrio warns when writing without a CRS
        attributes = outlines.drop(columns="geometry")
        no_crs = gpd.GeoDataFrame(attributes, geometry=list(outlines.geometry))
        write_vectors(no_crs, path, None)
    assert not path.with_suffix(".prj").exists()
    with pytest.raises(VectorError, match="no coordinate reference system") as info:
        labels.read_vectors(path, crs=UTM_CRS)
    message = str(info.value)
    assert str(path) in message and "set_crs" in message and "QGIS" in message


@pytest.mark.parametrize("target", [UTM_CRS, None])
def test_metres_declared_as_lon_lat_name_the_crs_mistake(tmp_path, outlines, target):
    wrong = outlines.set_crs("EPSG:4326", allow_override=True)  # UTM metres, declared degrees
    path = write_vectors(wrong, tmp_path / "metres.gpkg", None)
    with pytest.raises(VectorError) as info:
        labels.read_vectors(path, crs=target)
    message = str(info.value)
    assert "coordinates look projected (metres) but the file declares EPSG:4326" in message
    assert "set the right CRS" in message and "metres.gpkg" in message
    assert "empty geometry" not in message


def test_empty_feature_collection_raises(tmp_path):
    path = tmp_path / "empty.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(VectorError, match=f"no features in {path}"):
        labels.read_vectors(path)


def test_a_table_without_geometry_names_the_formats_to_use(tmp_path):
    table = tmp_path / "camps.csv"
    table.write_text("class,x,y\ncamp,36.8,-1.3\n")
    with pytest.raises(VectorError, match="camps.csv has no geometry .*GeoPackage or Shapefile"):
        labels.read_vectors(table, crs=UTM_CRS)


def test_unreadable_and_missing_files(tmp_path):
    blank = tmp_path / "blank.geojson"
    blank.write_text("")
    with pytest.raises(VectorError, match="Cannot read .*blank.geojson as vector data"):
        labels.read_vectors(blank)
    with pytest.raises(FileNotFoundError, match="nope.geojson"):
        labels.read_vectors(tmp_path / "nope.geojson")


def test_missing_class_property_lists_columns(tmp_path, outlines):
    path = write_vectors(outlines, tmp_path / "labels.gpkg", None)
    with pytest.raises(VectorError, match="'class'.*Available columns: 'id', 'kind', 'code'"):
        labels.read_vectors(path, class_property="class")


def test_geopackage_with_several_layers_needs_a_layer(tmp_path, outlines):
    path = tmp_path / "two.gpkg"
    outlines.to_file(path, layer="settlements", engine="pyogrio")
    outlines.iloc[:1].to_file(path, layer="roads", engine="pyogrio")
    with pytest.raises(VectorError, match="settlements, roads.*layer="):
        labels.read_vectors(path)
    assert len(labels.read_vectors(path, layer="roads")) == 1


# --------------------------------------------------------------------------------------------
# check_overlap
# --------------------------------------------------------------------------------------------


def test_check_overlap_reprojects_and_accepts_matching_labels(outlines, raster_path):
    with rasterio.open(raster_path) as src:
        fraction = labels.check_overlap(outlines.to_crs("EPSG:4326"), src.bounds, crs=src.crs)
    assert fraction == 1.0


def test_check_overlap_raises_when_labels_miss_the_raster(outlines, raster_path):
    far = outlines.translate(xoff=50_000)
    far.attrs["source"] = "far.geojson"
    with rasterio.open(raster_path) as src, pytest.raises(VectorError) as info:
        labels.check_overlap(gpd.GeoDataFrame(geometry=far), src.bounds, crs=src.crs)
    message = str(info.value)
    assert "lie outside the raster" in message and "check both CRSs" in message
    assert "500000" in message and "550010" in message  # raster and label bounds


def test_check_overlap_warns_on_small_overlap(outlines, raster_path, caplog):
    shifted = gpd.GeoDataFrame(
        geometry=[*outlines.geometry, *outlines.translate(xoff=5_000)], crs=UTM_CRS
    )
    shifted = gpd.GeoDataFrame(geometry=[*shifted.geometry, *shifted.translate(yoff=9_000)])
    shifted = shifted.set_crs(UTM_CRS)
    with rasterio.open(raster_path) as src, caplog.at_level(logging.WARNING):
        fraction = labels.check_overlap(shifted, src.bounds, crs=src.crs)
    assert fraction == pytest.approx(0.25)
    assert "Only 2 of 8 features" in caplog.text


# --------------------------------------------------------------------------------------------
# tile_label_fractions / tile_labels
# --------------------------------------------------------------------------------------------


def test_fractions_are_exact_on_hand_made_cases():
    identity = Affine.identity()
    windows = [Window(0, 0, 10, 10), Window(10, 0, 10, 10), Window(20, 0, 10, 10)]
    half = box(0, 0, 5, 10)  # left half of the first window
    triangle = Polygon([(10, 0), (20, 0), (20, 10)])  # half of the second, on the diagonal
    overlapping = [box(20, 0, 30, 5), box(20, 0, 30, 5), box(25, 0, 30, 10)]  # 50 + 25 m2
    fractions = labels.tile_label_fractions(windows, identity, [half, triangle, *overlapping])
    np.testing.assert_allclose(fractions, [0.5, 0.5, 0.75], atol=1e-12)


def test_fractions_in_map_coordinates_and_for_padded_windows():
    transform = Affine(2.0, 0, X0, 0, -2.0, Y0)  # 2 m pixels
    polygon = box(X0, Y0 - 8, X0 + 8, Y0)  # 4 x 4 pixels in the top-left corner
    windows = [Window(0, 0, 4, 4), Window(0, 0, 8, 4), Window(2, 0, 4, 4)]
    # The second window could extend past the raster in "pad" mode: it counts in full.
    fractions = labels.tile_label_fractions(windows, transform, gpd.GeoSeries([polygon]))
    np.testing.assert_allclose(fractions, [1.0, 0.5, 0.5], atol=1e-12)


def test_fractions_of_no_geometry_are_zero_and_lines_are_refused():
    windows = [Window(0, 0, 4, 4)]
    np.testing.assert_array_equal(labels.tile_label_fractions(windows, Affine.identity(), []), [0])
    with pytest.raises(VectorError, match="needs polygons.*buffer"):
        labels.tile_label_fractions(windows, Affine.identity(), [LineString([(0, 0), (4, 4)])])


def test_tile_labels_thresholds():
    windows = [Window(c, 0, 10, 10) for c in range(0, 50, 10)]
    covered = [10.0, 5.0, 3.0, 0.5, 0.0]  # columns covered in each window -> 1, .5, .3, .05, 0
    polygons = [box(c, 0, c + w, 10) for c, w in zip(range(0, 50, 10), covered, strict=True)]
    polygons = [p for p in polygons if p.area > 0]
    result = labels.tile_labels(windows, Affine.identity(), polygons)
    assert result.dtype == np.int8
    np.testing.assert_array_equal(result, [1, 1, IGNORE_LABEL, 0, 0])
    strict = labels.tile_labels(windows, Affine.identity(), polygons, positive=0.9, negative=0)
    np.testing.assert_array_equal(strict, [1, IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL, 0])


def test_tile_labels_warn_when_the_labels_miss_every_window(outlines, caplog):
    transform = Affine(1.0, 0, X0, 0, -1.0, Y0)
    windows = [Window(c, r, 16, 16) for r in range(0, 64, 16) for c in range(0, 64, 16)]
    far = outlines.to_crs("EPSG:4326")  # lon/lat handed over as if in the raster's CRS
    far.attrs["source"] = "camps.geojson"
    with caplog.at_level(logging.WARNING, logger="helpers.labels"):
        result = labels.tile_labels(windows, transform, far)
    assert (result == 0).all()
    assert "None of the 2 label geometries of camps.geojson (CRS EPSG:4326)" in caplog.text
    assert "500000, 3.99994e+06, 500064, 4e+06" in caplog.text  # the windows' bounds
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="helpers.labels"):
        hit = labels.tile_labels(windows, transform, outlines)
        none = labels.tile_labels(windows, transform, [])
    assert (hit != 0).any() and (none == 0).all()
    assert "None of the" not in caplog.text  # labels that hit, or no labels: no warning


@pytest.mark.parametrize(("positive", "negative"), [(0.5, 0.5), (0.2, 0.3), (1.5, 0.1), (0.5, -1)])
def test_tile_labels_rejects_bad_thresholds(positive, negative):
    with pytest.raises(ValueError, match="negative=.*positive="):
        labels.tile_labels(
            [Window(0, 0, 1, 1)], Affine.identity(), [], positive=positive, negative=negative
        )


def test_tile_majority_labels_k_classes():
    transform = Affine(1.0, 0, X0, 0, -1.0, Y0)
    polygons = gpd.GeoDataFrame(
        {"landcover": ["crop", "forest", "water", "crop", "road"]},
        geometry=[utm_box(0, 0, 10, 10), utm_box(10, 0, 20, 7), utm_box(13, 7, 20, 10),
                  utm_box(20, 0, 24, 10), utm_box(30, 0, 40, 10)],
        crs=UTM_CRS,
    )  # fmt: skip
    windows = [Window(c, 0, 10, 10) for c in (0, 10, 20, 30, 40)]
    codes = {"crop": 0, "forest": 1, "water": 2}  # roads are not a class here
    got = labels.tile_majority_labels(windows, transform, polygons, "landcover", codes)
    # crop 100 %; forest 70 % beats water 21 %; crop 40 % < min_fraction; road unused; nothing
    assert got.tolist() == [0, 1, IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL]
    loose = labels.tile_majority_labels(
        windows, transform, polygons, "landcover", codes, min_fraction=0.3
    )
    assert loose.tolist()[:3] == [0, 1, 0]
    other = labels.tile_majority_labels(
        windows, transform, polygons, "landcover", {"forest": 1, "water": 2}, background=0
    )
    # the uncovered area and unused classes count as background 0: crop, road and empty tiles
    assert other.tolist() == [0, 1, 0, 0, 0]
    with pytest.raises(VectorError, match="'kind' is not a column.*'landcover'"):
        labels.tile_majority_labels(windows, transform, polygons, "kind", codes)
    with pytest.raises(ValueError, match="min_fraction=0"):
        labels.tile_majority_labels(
            windows, transform, polygons, "landcover", codes, min_fraction=0
        )


# --------------------------------------------------------------------------------------------
# rasterize_mask / class_counts
# --------------------------------------------------------------------------------------------


@pytest.fixture
def grid() -> tuple[tuple[int, int], Affine]:
    return (64, 64), Affine(1.0, 0, X0, 0, -1.0, Y0)


def test_rasterize_classes_from_property(outlines, grid):
    shape, transform = grid
    by_name = labels.rasterize_mask(
        outlines, shape, transform, class_property="kind", class_values={"informal": 7, "formal": 6}
    )
    by_code = labels.rasterize_mask(outlines, shape, transform, class_property="code")
    np.testing.assert_array_equal(by_name, by_code)
    assert labels.class_counts(by_name) == {0: 64 * 64 - 220, 6: 120, 7: 100}
    assert (by_name[5:15, 10:20] == 7).all()


def test_rasterize_reports_unknown_or_non_integer_classes(outlines, grid):
    shape, transform = grid
    with pytest.raises(VectorError, match="missing from class_values: 'formal'"):
        labels.rasterize_mask(
            outlines, shape, transform, class_property="kind", class_values={"informal": 1}
        )
    with pytest.raises(VectorError, match="not integer classes.*class_values="):
        labels.rasterize_mask(outlines, shape, transform, class_property="kind")
    with pytest.raises(ValueError, match="equals fill"):
        labels.rasterize_mask(outlines.geometry, shape, transform, fill=1)


def test_all_touched_keeps_thin_lines(grid):
    shape, transform = grid
    road = LineString([(X0 + 0.3, Y0 - 20.3), (X0 + 63.7, Y0 - 30.1)])  # a diagonal road
    centre_only = labels.rasterize_mask([road], shape, transform)
    touched = labels.rasterize_mask([road], shape, transform, all_touched=True)
    assert touched.sum() > centre_only.sum()
    assert touched.sum() >= 64  # at least one pixel per column: an unbroken line
    assert (touched.max(axis=0) == 1).all()


def test_ignore_geometries_burn_ignore_value_on_top(outlines, grid):
    shape, transform = grid
    uncertain = [utm_box(15, 0, 25, 10)]
    mask = labels.rasterize_mask(outlines, shape, transform, ignore=uncertain)
    assert (mask[0:10, 15:25] == IGNORE_VALUE).all()
    assert (mask[10:15, 10:20] == 1).all() and (mask[5:10, 10:15] == 1).all()
    counts = labels.class_counts(mask, {0: "background", 1: "settlement"})
    assert counts == {"background": 64 * 64 - 220 - 75, "settlement": 220 - 25}


def test_rasterize_in_a_window_matches_the_full_mask(outlines, grid):
    shape, transform = grid
    full = labels.rasterize_mask(outlines, shape, transform)
    window = Window(col_off=8, row_off=4, width=40, height=30)
    part = labels.rasterize_mask(
        outlines, (window.height, window.width), window_transform(window, transform)
    )
    np.testing.assert_array_equal(part, full[4:34, 8:48])


def test_class_counts_names_every_class_and_rejects_unknown_codes():
    mask = np.array([[0, 1, 1], [255, 1, 3]], dtype="uint8")
    counts = labels.class_counts(mask, {0: "a", 1: "b", 2: "c", 3: "d"})
    assert counts == {"a": 1, "b": 3, "c": 0, "d": 1}
    assert labels.class_counts(mask, ignore=None) == {0: 1, 1: 3, 3: 1, 255: 1}
    with pytest.raises(ValueError, match=r"without a name: \[3\]"):
        labels.class_counts(mask, {0: "a", 1: "b"})
