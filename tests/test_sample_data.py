"""Tests of helpers.sample_data: the synthetic two-date sample region and its ground truth."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import rasterize

from helpers import _scene_render, sample_data
from helpers.sample_data import (
    DATES,
    LANDCOVER_CLASSES,
    ensure_sample_region,
    generate_sample_region,
    load_sample_region,
)

SIZE = 512


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return generate_sample_region(tmp_path_factory.mktemp("sample"), size=SIZE, progress=False)


@pytest.fixture(scope="module")
def region_1024(tmp_path_factory):
    return generate_sample_region(
        tmp_path_factory.mktemp("sample1024"), size=1024, footprints=False, progress=False
    )


def _features(path):
    return json.loads(path.read_text())["features"]


def _utm_geoms(path, crs):
    feats = _features(path)
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in feats])
    tf = Transformer.from_crs(4326, crs, always_xy=True)
    return shapely.transform(geoms, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))


def _digests(root):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.iterdir())
        if p.is_file()
    }


def test_files_and_manifest_present(region):
    m = region.manifest
    assert set(region.scenes) == set(DATES) == set(region.buildings) == set(region.settlements)
    for paths in (region.scenes, region.landcover, region.clouds, region.settlements):
        assert all(p.is_file() for p in paths.values())
    on_disk = json.loads((region.root / "manifest.json").read_text())
    assert on_disk == m
    assert m["synthetic"] is True and "synthetic" in m["note"].lower()
    assert m["parameters"] == {
        "size": SIZE,
        "pixel_size": 1.0,
        "seed": 42,
        "crs": "EPSG:32737",
        "footprints": True,
    }
    assert m["dates"] == list(DATES)
    for info in m["files"].values():
        digest = hashlib.sha256((region.root / info["name"]).read_bytes()).hexdigest()
        assert digest == info["sha256"]
    assert {int(k) for k in m["landcover_classes"]} == set(LANDCOVER_CLASSES)
    fr = m["class_fractions"][DATES[1]]
    assert abs(sum(fr[n] for n, _ in LANDCOVER_CLASSES.values()) - 1) < 1e-3
    assert not list(region.root.glob(".*partial"))


def test_scene_geotiff_properties(region):
    for date, path in region.scenes.items():
        with rasterio.open(path) as ds:
            assert ds.count == 4 and ds.dtypes == ("uint16",) * 4
            assert ds.nodata == 0
            assert ds.descriptions == ("blue", "green", "red", "nir")
            assert ds.crs.to_epsg() == 32737
            assert ds.res == (1.0, 1.0)
            assert ds.width == ds.height == SIZE
            assert ds.block_shapes[0] == (256, 256)
            assert ds.profile["tiled"]
            assert ds.compression.name.lower() == "deflate"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
            assert ds.overviews(1) == [2]
            assert ds.tags()["ACQUISITION_DATE"] == date


def test_label_rasters_on_same_grid(region):
    for date in DATES:
        with rasterio.open(region.scenes[date]) as s:
            grid = (s.crs, s.transform, s.shape)
        with rasterio.open(region.landcover[date]) as lc:
            assert (lc.crs, lc.transform, lc.shape) == grid
            assert lc.dtypes[0] == "uint8" and lc.nodata == 0
            assert set(np.unique(lc.read(1))) <= set(LANDCOVER_CLASSES) | {0}
            assert lc.colormap(1)[6][:3] == (0xD9, 0x53, 0x4F)
        with rasterio.open(region.clouds[date]) as cl:
            assert (cl.crs, cl.transform, cl.shape) == grid
            assert cl.nodata == 255
            assert set(np.unique(cl.read(1))) <= {0, 1, 2, 255}


def test_reflectance_plausible(region):
    with rasterio.open(region.scenes[DATES[0]]) as s:
        img = s.read().astype(float)
    with rasterio.open(region.landcover[DATES[0]]) as lc:
        lab = lc.read(1)
    valid = lab > 0
    assert (img[:, ~valid] == 0).all(), "nodata pixels must be 0 in every band"
    assert (img[:, valid] >= 1).all() and (img[:, valid] <= 10000).all()
    veg = np.isin(lab, (2, 3))
    water = lab == 1
    assert img[3][veg].mean() > 2 * img[2][veg].mean()
    assert img[3][water].mean() < img[2][water].mean()
    assert img[3][water].mean() < img[1][water].mean()
    assert 0.01 < (~valid).mean() < 0.2, "date 1 has a nodata corner beyond the swath"


def test_geojson_lonlat_properties_and_inside_scene(region):
    with rasterio.open(region.scenes[DATES[0]]) as s:
        crs, bounds = s.crs, shapely.box(*s.bounds)
    for date in DATES:
        for path, keys in (
            (region.settlements[date], {"id", "date", "area_m2"}),
            (region.buildings[date], {"id", "date", "kind"}),
        ):
            doc = json.loads(path.read_text())
            assert doc["type"] == "FeatureCollection" and "crs" not in doc
            feats = doc["features"]
            assert feats
            assert all(set(f["properties"]) == keys for f in feats)
            assert all(f["properties"]["date"] == date for f in feats)
            lon, lat = (
                feats[0]["geometry"]["coordinates"][0][0][:2]
                if feats[0]["geometry"]["type"] == "Polygon"
                else feats[0]["geometry"]["coordinates"][0][0][0][:2]
            )
            assert 35 < lon < 42 and -12 < lat < -1, "lon/lat order in East Africa"
            geoms = _utm_geoms(path, crs)
            assert shapely.is_valid(geoms).all()
            assert shapely.within(geoms, bounds.buffer(1.0)).all()
    kinds = {f["properties"]["kind"] for f in _features(region.buildings[DATES[1]])}
    assert kinds == {"formal", "informal"}


def test_informal_building_pixels_inside_settlements(region):
    for date in DATES:
        with rasterio.open(region.landcover[date]) as lc:
            lab, tr, crs = lc.read(1), lc.transform, lc.crs
        geoms = _utm_geoms(region.settlements[date], crs)
        inside = rasterize(
            ((g, 1) for g in geoms), out_shape=lab.shape, transform=tr, all_touched=True
        )
        informal = lab == 7
        assert informal.sum() > 100
        assert (inside[informal] == 1).all()


def test_settlements_grow_and_clouds_on_second_date(region):
    area = [
        sum(f["properties"]["area_m2"] for f in _features(region.settlements[d])) for d in DATES
    ]
    assert area[1] > 1.15 * area[0]
    n_b = [len(_features(region.buildings[d])) for d in DATES]
    assert n_b[1] > n_b[0]
    ids0 = {f["properties"]["id"] for f in _features(region.buildings[DATES[0]])}
    ids1 = {f["properties"]["id"] for f in _features(region.buildings[DATES[1]])}
    assert ids0 <= ids1, "buildings of date 1 keep their id on date 2"
    frac = []
    for d in DATES:
        with rasterio.open(region.clouds[d]) as cl:
            c = cl.read(1)
        frac.append(((c == 1).mean(), (c == 2).mean()))
    assert frac[1][0] > 0.01 and frac[1][1] > 0.001
    assert frac[1][0] > frac[0][0]


def test_deterministic_and_seed_dependent(tmp_path):
    a = generate_sample_region(tmp_path / "a", size=256, progress=False)
    b = generate_sample_region(tmp_path / "b", size=256, progress=False)
    c = generate_sample_region(tmp_path / "c", size=256, seed=7, progress=False)
    da, db, dc = _digests(a.root), _digests(b.root), _digests(c.root)
    assert da == db
    assert da["scene_2021.tif"] != dc["scene_2021.tif"]
    assert da["buildings_2024.geojson"] != dc["buildings_2024.geojson"]


def test_ensure_noop_regenerate_and_overwrite_error(tmp_path, monkeypatch):
    r = ensure_sample_region(tmp_path, size=256, footprints=False, progress=False)
    before = (tmp_path / "manifest.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("must not regenerate")

    monkeypatch.setattr(sample_data, "_render_rasters", boom)
    again = ensure_sample_region(tmp_path, size=256, footprints=False, progress=False)
    assert again.manifest == r.manifest
    assert (tmp_path / "manifest.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_sample_region(tmp_path, size=256, seed=3, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        ensure_sample_region(tmp_path, size=256, seed=3, overwrite=False, progress=False)
    monkeypatch.undo()
    other = ensure_sample_region(tmp_path, size=256, seed=3, footprints=False, progress=False)
    assert other.manifest["parameters"]["seed"] == 3
    assert load_sample_region(tmp_path).manifest["parameters"]["seed"] == 3


def test_atomic_when_rendering_fails(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = _scene_render.StripRenderer.render

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(self, *a, **k)

    monkeypatch.setattr(_scene_render.StripRenderer, "render", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_sample_region(tmp_path, size=768, progress=False)
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == [], "no partial or final-named files are left"
    with pytest.raises(FileNotFoundError, match="ensure_sample_region"):
        load_sample_region(tmp_path)


def test_runs_into_one_folder_use_their_own_temporary_files(tmp_path, monkeypatch):
    # Two runs at once must not write, rename or delete each other's temporary files.
    seen = []

    def record_and_stop(root, tmp, *args):
        seen.append(sorted(p.name for p in tmp.values()))
        raise RuntimeError("stop")

    monkeypatch.setattr(sample_data, "_render_rasters", record_and_stop)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="stop"):
            generate_sample_region(tmp_path, size=256, progress=False)
    assert not set(seen[0]) & set(seen[1])
    assert all(f".{os.getpid()}." in name for name in seen[0])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"size": 100}, "size"),
        ({"pixel_size": 0}, "pixel_size"),
        ({"pixel_size": -1.0}, "pixel_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_sample_region(tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "manifest.json").exists()


def test_cli(tmp_path):
    out = tmp_path / "cli"
    assert (
        sample_data.main(
            ["--out", str(out), "--size", "256", "--seed", "5", "--quiet", "--no-footprints"]
        )
        == 0
    )
    r = load_sample_region(out)
    assert r.manifest["parameters"]["seed"] == 5 and r.buildings == {}
    with pytest.raises(FileExistsError):
        sample_data.main(["--out", str(out), "--size", "256", "--seed", "6", "--quiet"])
    assert (
        sample_data.main(
            ["--out", str(out), "--size", "256", "--seed", "6", "--quiet", "--overwrite"]
        )
        == 0
    )


def test_baselines_meet_difficulty_targets(region_1024):
    b = region_1024.manifest["baselines"]
    assert b["window_px"] == 1024
    assert 0.0 < b["building_threshold_iou"]["best"] <= 0.6
    assert b["settlement_tiles_f1"]["positives_test"] >= 5
    assert b["settlement_tiles_f1"]["best"] <= 0.85
    assert 0.3 < b["cloud_brightness_iou"]["best"] < 1.0
    # the measurement is reproducible from the files alone
    again = sample_data.measure_baselines(load_sample_region(region_1024.root))
    assert again == b
