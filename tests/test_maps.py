"""Tests for helpers.maps: the scene overlay and the RoiEditor's state (no browser needed).

The draw control's messages are simulated the way the map sends them: a "created" event with
the new shape, then the whole ``data`` list of every shape on the map. The real-browser test
is tests/test_browser_roi.py.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from helpers import maps, rois

pytest.importorskip("ipyleaflet")


@pytest.fixture
def scene(make_geotiff):
    return make_geotiff("scene.tif", width=64, height=64)


@pytest.fixture
def editor(scene):
    return maps.RoiEditor(scene, classes=["water", "trees"], max_size=64)


def square(editor, dx=0.0, size=1e-4):
    (south, west), _ = editor.bounds
    x, y = west + 1e-5 + dx, south + 1e-5
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
            "coordinates": [ring]}}  # fmt: skip


def point(editor, dx=3e-4):
    (south, west), _ = editor.bounds
    return {"type": "Feature", "properties": {},
            "geometry": {"type": "Point", "coordinates": [west + dx, south + 2e-4]}}  # fmt: skip


def draw(editor, feature):
    """What the map sends when a shape is drawn: the event, then all shapes."""
    editor.draw_control._handle_leaflet_event(
        None, {"event": "draw:created", "geo_json": feature}, None
    )
    editor.draw_control.data = [*editor.draw_control.data, feature]


def classes_of(editor):
    return [(f["geometry"]["type"], f["properties"]["class"], f["properties"]["split"])
            for f in editor.rois["features"]]  # fmt: skip


def test_scene_overlay_is_a_png_in_the_right_place(scene):
    url, ((south, west), (north, east)) = maps.scene_overlay(scene)
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.mode == "RGBA" and max(image.size) >= 60
    # the scene's corners (UTM 33N, conftest) lie inside the overlay's lon/lat bounds
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    tolerance = 1e-5  # about a metre: the warped grid may round off part of an edge pixel
    for x, y in [(500_000, 4_000_000), (500_064, 3_999_936)]:
        lon, lat = to_lonlat.transform(x, y)
        assert west - tolerance <= lon <= east + tolerance
        assert south - tolerance <= lat <= north + tolerance
    assert (east - west) < 1e-3 and (north - south) < 1e-3


def test_nodata_is_transparent(scene_path):
    url, _ = maps.scene_overlay(scene_path)
    rgba = np.array(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert rgba[0, 0, 3] == 0 and rgba[-1, -1, 3] == 255


def test_shapes_get_the_class_they_were_drawn_with(editor):
    editor.current_class = "trees"
    draw(editor, square(editor))
    editor.current_class = "water"
    editor.current_split = "validation"
    draw(editor, point(editor))
    assert classes_of(editor) == [("Polygon", "trees", "train"), ("Point", "water", "validation")]
    # the map gets the class colours back
    styles = [f["properties"]["style"]["color"] for f in editor.draw_control.data]
    assert styles == [editor.classes["trees"], editor.classes["water"]]


def test_deletions_and_edits_on_the_map_are_respected(editor):
    draw(editor, square(editor))
    editor.current_class = "trees"
    draw(editor, point(editor))
    draw(editor, square(editor, dx=4e-4))
    on_map = list(editor.draw_control.data)
    # delete the first square (the map sends every remaining shape)
    editor.draw_control.data = on_map[1:]
    assert classes_of(editor) == [("Point", "trees", "train"), ("Polygon", "trees", "train")]
    # edit: move the point; the map keeps its properties
    moved = json.loads(json.dumps(on_map[1]))
    moved["geometry"]["coordinates"][0] += 1e-5
    editor.draw_control.data = [moved, on_map[2]]
    assert classes_of(editor) == [("Point", "trees", "train"), ("Polygon", "trees", "train")]
    assert editor.rois["features"][0]["geometry"]["coordinates"] == moved["geometry"]["coordinates"]


def test_save_load_round_trip(editor, tmp_path):
    draw(editor, square(editor))
    editor.current_class = "trees"
    draw(editor, point(editor))
    path = editor.save(tmp_path / "rois.geojson")
    with pytest.raises(FileExistsError):
        editor.save(path)
    other = maps.RoiEditor(editor.scene, classes=["water", "trees"], max_size=64)
    other.load(path)
    assert classes_of(other) == classes_of(editor)
    assert len(other.draw_control.data) == 2  # drawn on the map again
    gdf = other.to_geodataframe()
    assert gdf.crs.to_epsg() == 4326 and gdf["class"].tolist() == ["water", "trees"]


def test_load_reprojects_other_crs(editor, tmp_path):
    path = tmp_path / "utm.geojson"
    path.write_text(json.dumps({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "features": [{"type": "Feature", "properties": {"class": "water", "split": "train"},
                      "geometry": {"type": "Point", "coordinates": [500_010.0, 3_999_990.0]}}],
    }))  # fmt: skip
    editor.load(path)
    lon, lat = editor.rois["features"][0]["geometry"]["coordinates"]
    (south, west), (north, east) = editor.bounds
    assert west < lon < east and south < lat < north


def test_failed_load_keeps_the_current_rois(editor, tmp_path):
    draw(editor, square(editor))
    before = editor.rois
    bad = tmp_path / "bad.geojson"
    bad.write_text("{broken")
    with pytest.raises(rois.RoiError):
        editor.load(bad)
    with pytest.raises(FileNotFoundError):
        editor.load(tmp_path / "missing.geojson")
    assert editor.rois == before


def test_unknown_classes_are_added_or_refused(editor, tmp_path):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "lava", "split": "train"},
         "geometry": point(editor)["geometry"]}]}  # fmt: skip
    draw(editor, square(editor))
    with pytest.raises(rois.RoiError, match="'lava'"):
        editor.load(fc, unknown_classes="error")
    assert "lava" not in editor.classes and len(editor.rois["features"]) == 1
    editor.load(fc)
    assert list(editor.classes) == ["water", "trees", "lava"]
    assert classes_of(editor) == [("Point", "lava", "train")]


def test_palette_add_rename_and_colour(editor):
    draw(editor, square(editor))
    editor.add_class("roads", "#333333")
    assert editor.current_class == "roads" and editor.classes["roads"] == "#333333"
    with pytest.raises(ValueError, match="already"):
        editor.add_class("roads")
    editor.rename_class("water", "river")
    assert classes_of(editor) == [("Polygon", "river", "train")]
    assert editor.class_codes == {"river": 0, "trees": 1, "roads": 2}
    editor.set_color("river", "#0000ff")
    assert editor.draw_control.data[0]["properties"]["style"]["color"] == "#0000ff"
    # a new class colour gives a new draw tool in that colour; the shapes stay
    editor.current_class = "trees"
    assert editor.draw_control.polygon["shapeOptions"]["color"] == editor.classes["trees"]
    assert len(editor.draw_control.data) == 1


def test_editor_rois_feed_rois_to_labels(editor):
    editor.current_class = "water"
    draw(editor, square(editor, size=2e-4))
    editor.current_class = "trees"
    draw(editor, point(editor))
    result = rois.rois_to_labels(editor.rois, editor.scene, classes=editor.class_codes)
    assert result.counts["train"]["water"] > 100 and result.counts["train"]["trees"] == 1


def test_class_overlay_paints_each_class_in_its_colour(make_geotiff):
    codes = np.full((1, 64, 64), 1, dtype=np.uint8)
    codes[0, :, 32:] = 2
    codes[0, :8, :8] = 255  # nodata corner
    path = make_geotiff("classes.tif", data=codes, nodata=255)
    url, ((south, west), (north, east)) = maps.class_overlay(
        path, {"water": 1, "trees": 2}, colors={"trees": "#00ff00"}
    )
    rgba = np.array(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    h, w = rgba.shape[:2]
    assert rgba[0, 0, 3] == 0  # nodata is transparent
    assert tuple(rgba[h // 2, w // 4]) == (0x2B, 0x6C, 0xB0, 255)  # land-cover colour of water
    assert tuple(rgba[h // 2, 3 * w // 4]) == (0, 255, 0, 255)  # the colour asked for
    scene_url, scene_bounds = maps.scene_overlay(make_geotiff("scene.tif"))
    assert np.allclose((south, west, north, east), np.ravel(scene_bounds), atol=1e-6)
    with pytest.raises(ValueError, match="classes is empty"):
        maps.class_overlay(path, {})
