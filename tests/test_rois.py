"""Tests for helpers.rois: ROIs to labels, example ROIs, features and the random-forest baseline."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import shapely
from conftest import synthetic_reflectance
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.transform import from_origin

from helpers import rois
from helpers.labels import IGNORE_VALUE
from helpers.sample_data import generate_sample_region

UTM = "EPSG:32633"
ORIGIN = (500_000.0, 4_000_000.0)  # the conftest scenes' top-left corner, 1 m pixels
TRANSFORM = from_origin(*ORIGIN, 1.0, 1.0)
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def lonlat(geometry):
    """A geometry given in pixel (col, row) of the test scenes, as lon/lat."""

    def apply(cr):
        x = ORIGIN[0] + cr[:, 0]
        y = ORIGIN[1] - cr[:, 1]
        return np.column_stack(TO_LONLAT.transform(x, y))

    return shapely.transform(geometry, apply)


def collection(*items):
    """A FeatureCollection from (geometry in pixels, class, split) items."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(lonlat(g)),
                "properties": {"class": c, "split": s},
            }
            for g, c, s in items
        ],
    }


@pytest.fixture
def scene(make_geotiff):
    return make_geotiff("scene.tif", width=64, height=64)


CLASSES = {"water": 1, "vegetation": 2, "soil": 3}


# ------------------------------------------------------------------ ROIs to labels


def test_polygons_lines_and_points_burn_as_drawn(scene):
    fc = collection(
        (shapely.box(2, 2, 6, 5), "water", "train"),  # 4 x 3 pixel centres
        (shapely.LineString([(30.5, 10.2), (30.5, 19.8)]), "vegetation", "train"),
        (shapely.Point(50.5, 40.5), "soil", "train"),
        (shapely.Point(10.5, 50.5), "soil", "validation"),
    )
    result = rois.rois_to_labels(fc, scene, classes=CLASSES)
    expected = np.full((64, 64), IGNORE_VALUE, np.uint8)
    expected[2:5, 2:6] = 1
    expected[10:20, 30] = 2
    expected[40, 50] = 3
    expected[50, 10] = 3
    np.testing.assert_array_equal(result.labels, expected)
    assert result.counts["train"] == {"water": 12, "vegetation": 10, "soil": 1}
    assert result.counts["validation"] == {"water": 0, "vegetation": 0, "soil": 1}
    assert result.validation[50, 10] == 3 and result.train[50, 10] == IGNORE_VALUE
    assert result.split[40, 50] == 1 and result.split[50, 10] == 2
    assert result.transform == TRANSFORM


def test_point_radius_burns_a_disc(scene):
    fc = collection(
        (shapely.box(2, 2, 6, 5), "water", "train"),
        (shapely.box(20, 2, 26, 5), "vegetation", "train"),
        (shapely.Point(40.5, 40.5), "soil", "train"),
    )
    one = rois.rois_to_labels(fc, scene, classes=CLASSES, point_radius=0)
    disc = rois.rois_to_labels(fc, scene, classes=CLASSES, point_radius=1)
    assert one.counts["train"]["soil"] == 1
    assert disc.counts["train"]["soil"] == 5  # the centre and its 4 neighbours
    assert (disc.labels[39:42, 39:42] == 3).sum() == 5


def test_overlapping_classes_are_left_unlabelled(scene, caplog):
    fc = collection(
        (shapely.box(0, 0, 10, 10), "water", "train"),
        (shapely.box(5, 5, 15, 15), "vegetation", "train"),
        (shapely.box(30, 30, 35, 35), "soil", "train"),
    )
    with caplog.at_level(logging.WARNING, logger="helpers.rois"):
        result = rois.rois_to_labels(fc, scene, classes=CLASSES)
    assert (result.labels[5:10, 5:10] == IGNORE_VALUE).all()
    assert result.counts["train"]["water"] == 100 - 25
    assert "different classes" in caplog.text


def test_class_names_as_a_list_get_codes_from_zero(scene):
    fc = collection(
        (shapely.box(0, 0, 4, 4), "a", "train"), (shapely.box(10, 10, 14, 14), "b", "train")
    )
    result = rois.rois_to_labels(fc, scene, classes=["a", "b"])
    assert result.classes == {"a": 0, "b": 1}
    assert result.labels[0, 0] == 0 and result.labels[12, 12] == 1


def test_few_pixels_warn(scene, caplog):
    fc = collection((shapely.box(0, 0, 4, 4), "a", "train"), (shapely.Point(20, 20), "b", "train"))
    with caplog.at_level(logging.WARNING, logger="helpers.rois"):
        rois.rois_to_labels(fc, scene, classes=["a", "b"], min_pixels=20)
    assert "'a' has only 16" in caplog.text and "'b' has only 1" in caplog.text


def test_roi_file_in_another_crs_gives_the_same_labels(scene, tmp_path):
    box = shapely.box(ORIGIN[0] + 3, ORIGIN[1] - 9, ORIGIN[0] + 8, ORIGIN[1] - 2)
    utm = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(box),
                "properties": {"class": "water", "split": "train"},
            }
        ],
    }
    path = tmp_path / "utm.geojson"
    path.write_text(json.dumps(utm))
    result = rois.rois_to_labels(path, scene, classes=["water"])
    assert result.counts["train"] == {"water": 35}
    assert (result.labels[2:9, 3:8] == 0).all()
    assert rois.read_rois(path).crs.to_epsg() == 32633
    assert rois.read_rois(path, crs=rois.ROI_CRS).crs.to_epsg() == 4326


def test_no_rois_is_an_error(scene):
    with pytest.raises(rois.RoiError, match="holds no ROIs"):
        rois.rois_to_labels(collection(), scene, classes=CLASSES)


def test_unknown_class_is_an_error(scene):
    fc = collection((shapely.box(0, 0, 4, 4), "lava", "train"))
    with pytest.raises(rois.RoiError, match="'lava' are not in classes"):
        rois.rois_to_labels(fc, scene, classes=CLASSES)


def test_class_without_pixels_is_an_error(scene):
    fc = collection(
        (shapely.box(0, 0, 4, 4), "water", "train"),
        (shapely.box(10.1, 10.1, 10.3, 10.3), "vegetation", "train"),  # no pixel centre
    )
    with pytest.raises(rois.RoiError) as info:
        rois.rois_to_labels(fc, scene, classes=CLASSES)
    message = str(info.value)
    assert "'vegetation': its ROIs cover no pixel centre" in message
    assert "'soil': no training ROI was drawn" in message


def test_rois_outside_the_scene_are_an_error(scene):
    fc = collection((shapely.box(1000, 1000, 1010, 1010), "water", "train"))
    with pytest.raises(rois.RoiError, match="outside the scene"):
        rois.rois_to_labels(fc, scene, classes=["water"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a FeatureCollection"),
        ('{"type": "Feature"}', "must be a GeoJSON FeatureCollection"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null, '
         '"properties": {"class": "a"}}]}', "no valid geometry"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
         '{"type": "Point", "coordinates": [15, 36]}, "properties": {}}]}', "no 'class'"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
         '{"type": "Point", "coordinates": [15, 36]}, "properties": {"class": "a", '
         '"split": "test"}}]}', "unknown split"),
    ],
)  # fmt: skip
def test_malformed_files_say_what_is_wrong(tmp_path, text, match):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(rois.RoiError, match=match):
        rois.read_rois(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ROI file not found"):
        rois.read_rois(tmp_path / "nope.geojson")


def test_write_rois_round_trip_and_refuses_to_overwrite(tmp_path):
    fc = collection((shapely.box(0, 0, 4, 4), "water", "validation"))
    path = rois.write_rois(fc, tmp_path / "r.geojson")
    back = rois.read_rois(path)
    assert back["class"].tolist() == ["water"] and back["split"].tolist() == ["validation"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rois.write_rois(fc, path)
    rois.write_rois(collection(), path, overwrite=True)
    assert json.loads(path.read_text())["features"] == []
    assert not list(tmp_path.glob(".*partial"))


@settings(max_examples=25, deadline=None)
@given(c0=st.integers(0, 60), r0=st.integers(0, 60), w=st.integers(1, 20), h=st.integers(1, 20))
def test_a_box_labels_exactly_its_pixels(tmp_path_factory, c0, r0, w, h):
    path = tmp_path_factory.getbasetemp() / "box_scene.tif"
    if not path.exists():
        from conftest import synthetic_reflectance, write_geotiff

        write_geotiff(path, synthetic_reflectance(64, 64), band_names=("b", "g", "r", "n"))
    fc = collection((shapely.box(c0, r0, c0 + w, r0 + h), "a", "train"))
    result = rois.rois_to_labels(fc, path, classes=["a"], min_pixels=0)
    expected = np.full((64, 64), IGNORE_VALUE, np.uint8)
    expected[r0 : r0 + h, c0 : c0 + w] = 0
    np.testing.assert_array_equal(result.labels, expected)


# ------------------------------------------------------------------ example ROIs


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return generate_sample_region(
        tmp_path_factory.mktemp("sample"), size=256, footprints=False, progress=False
    )


def _labelled_fraction(fc, region, date):
    present = {f["properties"]["class"] for f in fc["features"]}
    result = rois.rois_to_labels(fc, region.scenes[date], classes=sorted(present), min_pixels=0)
    return float((result.labels != IGNORE_VALUE).mean())


def test_example_rois_are_deterministic_sparse_and_on_their_class(region):
    date = region.dates[0]
    assert _labelled_fraction(rois.example_rois(region, date), region, date) <= 0.005
    # a 256-px region is small: allow 2 % so that polygons keep a few pixels
    first = rois.example_rois(region, date, max_fraction=0.02)
    assert first == rois.example_rois(region, date, max_fraction=0.02)
    present = {f["properties"]["class"] for f in first["features"]}
    classes = {k: v for k, v in rois.LANDCOVER_ROI_CLASSES.items() if k in present}
    assert len(classes) >= 5  # a 256-px region lacks some classes; those get no ROIs
    result = rois.rois_to_labels(first, region.scenes[date], classes=classes)
    labelled = result.labels != IGNORE_VALUE
    assert labelled.mean() <= 0.02
    with rasterio.open(region.landcover[date]) as ds:
        cover = ds.read(1)
    # drawn on homogeneous areas of the ground truth: (almost) every pixel is right
    assert (result.labels[labelled] == cover[labelled]).mean() > 0.98
    kinds = {f["geometry"]["type"] for f in first["features"]}
    assert kinds == {"Polygon", "LineString", "Point"}
    assert all(n > 0 for n in result.counts["train"].values())
    assert sum(result.counts["validation"].values()) > 0


def test_example_points_go_to_edges_as_asked(region):
    date = region.dates[0]
    with rasterio.open(region.landcover[date]) as ds:
        cover = ds.read(1)
    near_other = np.zeros(cover.shape, bool)  # within 2 px of another class
    for code in np.unique(cover[cover > 0]):
        near_other |= rois._class_edges(cover, int(code), 2.0)
    share = {}
    for edge_share in (0.0, 0.8):
        fc = rois.example_rois(region, date, max_fraction=0.02, edge_share=edge_share)
        points = [f["geometry"]["coordinates"] for f in fc["features"]
                  if f["geometry"]["type"] == "Point"]  # fmt: skip
        with rasterio.open(region.landcover[date]) as ds:
            rows, cols = rasterio.transform.rowcol(
                ds.transform, *Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
                .transform(*np.array(points).T),
            )  # fmt: skip
        share[edge_share] = near_other[rows, cols].mean()
        assert fc["example_rois"]["edge_share"] == edge_share
    assert share[0.0] < 0.05 and share[0.8] > 0.75


def test_example_rois_check_their_arguments(region):
    with pytest.raises(ValueError, match="edge_share"):
        rois.example_rois(region, region.dates[0], edge_share=1.5)
    with pytest.raises(ValueError, match="max_fraction"):
        rois.example_rois(region, region.dates[0], max_fraction=0)


def test_ensure_example_rois_writes_once(region):
    date = region.dates[0]
    path = rois.ensure_example_rois(region, date)
    assert path == region.root / f"rois_{date}.geojson"
    stamp = path.stat().st_mtime_ns
    assert rois.ensure_example_rois(region, date) == path
    assert path.stat().st_mtime_ns == stamp
    assert len(rois.read_rois(path)) > 0
    recorded = json.loads(path.read_text())["example_rois"]
    assert recorded["version"] == rois.EXAMPLE_ROIS_VERSION and recorded["date"] == date


def test_ensure_example_rois_redraws_an_outdated_file(region):
    date = region.dates[1]
    path = rois.ensure_example_rois(region, date)
    old = json.loads(path.read_text())
    del old["example_rois"]  # a file of the first placement records nothing
    old["features"] = old["features"][:3]
    path.write_text(json.dumps(old))
    rois.ensure_example_rois(region, date)
    redrawn = json.loads(path.read_text())
    assert len(redrawn["features"]) > 3 and "example_rois" in redrawn
    # other arguments: drawn again with them
    rois.ensure_example_rois(region, date, edge_share=0.2)
    assert json.loads(path.read_text())["example_rois"]["edge_share"] == 0.2
    with pytest.raises(TypeError):
        rois.ensure_example_rois(region, date, colour="red")


def test_example_rois_unknown_date(region):
    with pytest.raises(KeyError, match="1999"):
        rois.example_rois(region, "1999-01-01")


# ------------------------------------------------------------------ features and the forest


def test_pixel_features_names_and_nodata(scene_path):
    with rasterio.open(scene_path) as ds:
        image = ds.read()
    feats, names = rois.pixel_features(
        image, ("blue", "green", "red", "nir"), nodata=0, texture_layers=("ndvi",),
        texture_sizes=(3,),
    )  # fmt: skip
    assert names == ["blue", "green", "red", "nir", "ndvi", "ndwi", "ndvi_mean3", "ndvi_std3"]
    assert feats.shape == (8, 64, 64) and feats.dtype == np.float32
    assert np.isnan(feats[:, :8, :8]).all() and np.isfinite(feats[:, 10:, 10:]).all()


def _three_cover_rois():
    # conftest scenes: columns 0-20 water, 21-41 vegetation, 42-63 soil
    return collection(
        (shapely.box(2, 2, 12, 12), "water", "train"),
        (shapely.box(25, 40, 35, 50), "vegetation", "train"),
        (shapely.LineString([(50.5, 5), (50.5, 30)]), "soil", "train"),
        (shapely.Point(5.5, 40.5), "water", "validation"),
    )


def test_random_forest_predicts_the_scene_blockwise(make_geotiff, tmp_path):
    scene = make_geotiff("scene.tif", width=64, height=48, seed=3)
    labels_ = rois.rois_to_labels(_three_cover_rois(), scene, classes=CLASSES)
    forest = rois.train_random_forest(scene, labels_, n_estimators=20, n_jobs=1, seed=0)
    pixels = forest.training["pixels"]
    assert (pixels["water"], pixels["vegetation"]) == (100, 80)
    # The line's end pixel: GDAL 3.6 (rasterio 1.3's wheels) burns it, GDAL 3.10 does not.
    assert pixels["soil"] in (25, 26)
    small = rois.predict_scene(forest, scene, tmp_path / "a.tif", block_size=16, progress=False)
    whole = rois.predict_scene(forest, scene, tmp_path / "b.tif", block_size=64, progress=False)
    with rasterio.open(small) as a, rasterio.open(whole) as b, rasterio.open(scene) as src:
        assert a.crs == src.crs and a.transform == src.transform and a.nodata == IGNORE_VALUE
        predicted = a.read(1)
        # blocks with their texture context give exactly the whole-scene answer
        np.testing.assert_array_equal(predicted, b.read(1))
        assert a.colormap(1)[1][:3] == (43, 108, 176)
    truth = np.repeat(np.minimum(np.arange(64) * 3 // 64, 2)[np.newaxis] + 1, 48, axis=0)
    assert (predicted == truth).mean() > 0.9
    with pytest.raises(FileExistsError):
        rois.predict_scene(forest, scene, small, progress=False)
    scores = rois.evaluate_label_map(small, truth, CLASSES)
    assert scores["overall_accuracy"] > 0.9 and set(scores["iou"]) == set(CLASSES)


def test_the_forest_is_a_model_for_inference_predict(make_geotiff, tmp_path):
    from helpers import inference

    data = synthetic_reflectance(48, 64, seed=3)
    data[:, :6, :6] = 0  # nodata corner
    scene = make_geotiff("scene.tif", data=data, band_names=("blue", "green", "red", "nir"))
    labels_ = rois.rois_to_labels(_three_cover_rois(), scene, classes=CLASSES)
    forest = rois.train_random_forest(scene, labels_, n_estimators=20, n_jobs=1, seed=0)
    exact = rois.predict_scene(forest, scene, tmp_path / "exact.tif", progress=False)
    card = forest.model_card(tile_size=32)
    assert card["classes"] == {1: "water", 2: "vegetation", 3: "soil"}
    path = inference.predict(forest, scene, tmp_path / "predict.tif", card=card,
                             output="classes", stride=16, progress=False)  # fmt: skip
    with rasterio.open(exact) as a, rasterio.open(path) as b:
        expected, got = a.read(1), b.read(1)
        assert b.transform == a.transform
    assert (got[:6, :6] == IGNORE_VALUE).all()  # nodata stays nodata
    assert set(np.unique(got[6:, 6:])) <= {1, 2, 3}  # class codes, not channel numbers
    assert (got == expected).mean() > 0.97  # texture near patch edges differs a little
    probabilities = forest(np.moveaxis(data, 0, -1)[np.newaxis].astype(np.float32))
    assert probabilities.shape == (1, 48, 64, 3)
    np.testing.assert_allclose(probabilities[0, 6:, 6:].sum(axis=-1), 1.0, rtol=1e-5)
    assert (probabilities[0, :6, :6] == 0).all()
    with pytest.raises(ValueError, match="bands"):
        forest(np.zeros((1, 8, 8, 3), np.float32))


def test_roi_weights_let_points_count_like_polygons():
    target = np.full((40, 40), IGNORE_VALUE, np.uint8)
    target[5:25, 5:25] = 1  # a polygon of 400 pixels
    target[30, 30] = 1  # a lone point of the same class
    target[30, 10], target[30, 12] = 2, 2  # two points 2 px apart
    weights = rois.roi_weights(target, 9)
    assert weights[30, 30] == 1.0 and weights[30, 10] == 0.5
    assert weights[15, 15] == pytest.approx(1 / 81)  # inside the polygon
    assert weights[5, 5] == pytest.approx(1 / 25)  # its corner sees a quarter of the window
    assert weights[target == IGNORE_VALUE].sum() == 0
    assert weights[5:25, 5:25].sum() < 10  # the whole polygon weighs a few points
    with pytest.raises(ValueError, match="odd"):
        rois.roi_weights(target, 4)


def test_density_weights_let_points_outweigh_a_polygon(make_geotiff):
    # The water cover is uniform, so its pixels cannot be told apart: a big polygon says
    # "water", three points on the same cover say "soil", and the forest can only weigh them.
    # Unweighted, 3 points against 700 polygon pixels; weighted, against about a dozen.
    data = synthetic_reflectance(48, 64, seed=3)
    data[:, :, :21] = np.array([900, 1100, 600, 300])[:, None, None]
    scene = make_geotiff("scene.tif", data=data, band_names=("blue", "green", "red", "nir"))
    fc = collection(
        (shapely.box(1, 1, 19, 40), "water", "train"),
        *[(shapely.Point(col + 0.5, 44.5), "soil", "train") for col in (3, 6, 9)],
        (shapely.box(25, 40, 35, 47), "vegetation", "train"),
    )
    labels_ = rois.rois_to_labels(fc, scene, classes=CLASSES, min_pixels=0)
    image = np.moveaxis(data, 0, -1)[np.newaxis].astype(np.float32)
    soil_probability = {}
    for window in (None, 9):
        forest = rois.train_random_forest(scene, labels_, n_estimators=30, n_jobs=1, seed=0,
                                          density_window=window)  # fmt: skip
        assert forest.training["density_window"] == window
        soil = forest.codes.index(CLASSES["soil"])
        soil_probability[window] = forest(image)[0, :, :12, soil].mean()
    assert soil_probability[None] < 0.02  # 3 / 703
    assert soil_probability[9] > 0.1  # 3 / (3 + about 12)


def test_training_on_another_grid_is_an_error(make_geotiff):
    scene = make_geotiff("scene.tif", width=64, height=64)
    other = make_geotiff("other.tif", width=64, height=48)
    labels_ = rois.rois_to_labels(_three_cover_rois(), scene, classes=CLASSES)
    with pytest.raises(rois.RoiError, match="another grid"):
        rois.train_random_forest(other, labels_, n_estimators=2)


def test_evaluate_label_map_counts():
    reference = np.array([[1, 1, 2, 2], [0, 1, 2, 2]])
    prediction = np.array([[1, 2, 2, 2], [1, 1, 2, IGNORE_VALUE]])
    scores = rois.evaluate_label_map(prediction, reference, {"a": 1, "b": 2})
    assert scores["pixels"] == 6  # reference 0 (not a class) and ignored prediction left out
    assert scores["overall_accuracy"] == pytest.approx(5 / 6)
    assert scores["iou"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(3 / 4)}
    assert scores["confusion"] == [[2, 1], [0, 3]]
