"""Region configs: one YAML file describes a region; mistakes are caught when it is loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import yaml

from helpers import labels, regions, tiling
from helpers.regions import RegionConfigError, load_region

ROOT = Path(__file__).resolve().parents[1]


def _edit(config: Path, tmp_path: Path, change) -> Path:
    """A copy of ``config`` (in the same folder, so relative paths hold) changed by ``change``."""
    data = yaml.safe_load(config.read_text())
    change(data)
    path = config.parent / f"edited_{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sample_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample_config")
    path = root / "small.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "small",
                "sample": {"folder": "region", "size": 256, "seed": 3},
                "tiling": {"patch_size": 64, "stride": 32, "block_size": 128},
                "outputs": {"root": "out"},
            }
        )
    )
    return path


def test_the_sample_config_describes_the_sample_region(sample_config):
    region = load_region(sample_config)
    assert region.dates == ("2021-06-15", "2024-06-20")
    assert region.band_names == ("blue", "green", "red", "nir")
    assert region.rgb == [3, 2, 1] and region.display_bands == [3, 2, 1]
    assert region.has_bands("red", "nir") and not region.has_bands("swir")
    assert region.target == "informal settlement"
    assert region.input_scaling() == {"method": "linear", "scale": 1e-4, "offset": 0.0}
    assert region.tiling.patch_size == 64 and region.tiling.tile_size == 64  # default kept
    assert region.seed == 3  # the sample's seed unless training.seed says otherwise
    assert region.outputs.models == sample_config.parent / "out" / "models"
    assert set(region.clouds) == set(region.dates)
    assert region.sample_root == sample_config.parent / "region"
    with rasterio.open(region.scenes[region.dates[0]]) as src:
        outlines = region.read_labels(region.dates[0], crs=src.crs)
    assert len(outlines) > 0 and outlines.crs == src.crs


def test_the_shipped_configs_are_valid():
    region = load_region(ROOT / "regions" / "sample.yaml", check_files=False)
    assert region.name == "sample" and region.tiling.patch_size == 128
    assert region.outputs.datasets == (ROOT / "data" / "generated" / "patches").resolve()
    template = load_region(ROOT / "regions" / "template.yaml", check_files=False)
    assert template.band_names == ("blue", "green", "red", "nir")
    assert template.class_property == "class" and template.target_values == ("informal",)


def test_a_foreign_region_gets_its_bands_classes_and_scaling_from_the_config(foreign_region):
    region = load_region(foreign_region)
    assert region.band_names == ("pan",)  # the file has no band description; the config names it
    assert region.rgb is None and region.display_bands == [1]
    assert region.nodata is None and region.sample_root is None
    scaling = region.input_scaling()
    assert scaling["method"] == "uint8_stretch" and len(scaling["limits"]) == 1
    assert region.class_names == {0: "other", 1: "refugee camp"}
    with rasterio.open(region.scenes[region.dates[0]]) as src:
        camps = region.read_labels(region.dates[0], crs=src.crs)
        everything = labels.read_vectors(region.labels[region.dates[0]], crs=src.crs)
    assert set(camps["landuse"]) == {"camp"}
    assert len(everything) > len(camps)  # the "farm" polygons are left out
    assert camps.crs == src.crs  # reprojected from EPSG:4326 to UTM 33N


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(tilling=d.pop("tiling")), "Did you mean 'tiling'"),
        (lambda d: d["tiling"].update(patchsize=64), "Did you mean 'tiling.patch_size'"),
        (lambda d: d["tiling"].update(stride=100), "larger than tiling.patch_size"),
        (lambda d: d["tiling"].update(patch_size=0), "tiling.patch_size"),
        (lambda d: d["tiling"].update(patch_size=600), "tiling.patch_size: 600 px is larger than"),
        (lambda d: d["tiling"].update(tile_size=513), "tiling.tile_size: 513 px is larger than"),
        (lambda d: d["tiling"].update(block_size=1024), "tiling.block_size: 1024 px is larger"),
        (lambda d: d["tiling"].update(positive=1.5), "between 0 and 1"),
        (lambda d: d["imagery"].update(bands=["red", "nir"]), "lists 2 band(s)"),
        (lambda d: d["imagery"].update(scale=-1), "imagery.scale"),
        (lambda d: d["labels"].update(values=["school"]), "none of ['school'] occurs"),
        (lambda d: d["labels"].pop("target"), "labels.target"),
        (lambda d: d["labels"].update(files={"2022-03-01": "x.shp"}), "either 'file'"),
        (lambda d: d.pop("labels"), "labels: missing"),
        (lambda d: d.update(sample={"size": 256}), "exactly one of 'imagery'"),
        (lambda d: d.update(aoi=[100.0, 10.0, 101.0, 11.0]), "lies outside the imagery"),
        (lambda d: d.update(aoi=[15.0, 48.0, 14.0, 49.0]), "west < east"),
        (lambda d: d["imagery"].update(scenes={"June": "imagery/scene_2022.tif"}), "not a date"),
    ],
)
def test_config_mistakes_are_named_with_the_fix(foreign_region, tmp_path, change, message):
    path = _edit(foreign_region, tmp_path, change)
    with pytest.raises(RegionConfigError) as info:
        load_region(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)  # which file


def test_missing_files_are_named(foreign_region, tmp_path):
    path = _edit(
        foreign_region, tmp_path, lambda d: d["imagery"].update(scenes={"2022-03-01": "gone.tif"})
    )
    with pytest.raises(FileNotFoundError, match=r"imagery\.scenes\.2022-03-01: .*gone\.tif"):
        load_region(path)
    path = _edit(foreign_region, tmp_path, lambda d: d["labels"].update(file="nothing.gpkg"))
    with pytest.raises(FileNotFoundError, match="nothing.gpkg does not exist"):
        load_region(path)
    with pytest.raises(FileNotFoundError, match="template.yaml"):
        load_region(tmp_path / "no_such_region.yaml")


def test_labels_that_miss_the_imagery_are_refused(foreign_region, tmp_path):
    import geopandas as gpd
    import shapely

    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(
        {"landuse": ["camp"]}, geometry=[shapely.box(100, 10, 100.01, 10.01)], crs="EPSG:4326"
    ).to_file(far)
    path = _edit(foreign_region, tmp_path, lambda d: d["labels"].update(file=str(far)))
    with pytest.raises(labels.VectorError, match="outside the raster"):
        load_region(path)


def test_invalid_yaml_and_wrong_shapes_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RegionConfigError, match="not valid YAML"):
        load_region(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(RegionConfigError, match="mapping of keys"):
        load_region(bad)
    bad.write_text("name: x\ntiling: 128\n")
    with pytest.raises(RegionConfigError, match="tiling: expected a mapping"):
        load_region(bad)


def test_an_aoi_keeps_only_the_windows_that_touch_it(foreign_region, tmp_path):
    region = load_region(foreign_region)
    scene = region.scenes[region.dates[0]]
    with rasterio.open(scene) as src:
        west, south, east, north = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        windows = tiling.tile_windows(src.height, src.width, 64, stride=64)
    quarter = [west, south + (north - south) / 2, west + (east - west) / 2, north]  # top-left
    path = _edit(foreign_region, tmp_path, lambda d: d.update(aoi=quarter))
    inside = load_region(path).windows_in_aoi(windows, scene)
    assert 0 < len(inside) < len(windows)
    assert all(w.row_off < 512 // 2 + 64 and w.col_off < 512 // 2 + 64 for w in inside)
    assert region.windows_in_aoi(windows, scene) == windows  # no AOI: every window


def test_a_sentinel2_query_needs_an_aoi_and_names_its_scene_paths(tmp_path):
    config = tmp_path / "s2.yaml"
    base = {
        "name": "s2",
        "imagery": {"sentinel2": {"dates": ["2024-06-01/2024-08-31"], "max_cloud": 10}},
        "labels": {"file": "labels.geojson", "target": "building"},
    }
    config.write_text(yaml.safe_dump(base))
    with pytest.raises(RegionConfigError, match="needs an area of interest"):
        load_region(config, check_files=False)
    config.write_text(yaml.safe_dump(base | {"aoi": [36.80, -1.32, 36.84, -1.28]}))
    region = load_region(config, check_files=False)
    (scene,) = region.scenes.values()
    assert scene.parent == tmp_path.parent / "outputs" / "s2" / "imagery"
    with pytest.raises(FileNotFoundError, match="fetch=True"):
        load_region(config)  # the scene is not downloaded yet: say how


def test_the_command_line_check(foreign_region, tmp_path, capsys):
    assert regions.main([str(foreign_region)]) == 0
    assert "refugee camp" in capsys.readouterr().out
    broken = _edit(foreign_region, tmp_path, lambda d: d["tiling"].update(strid=3))
    assert regions.main([str(broken)]) == 1
    assert "Did you mean 'tiling.stride'" in capsys.readouterr().out


def test_relative_paths_start_at_the_config_folder(foreign_region, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(
        foreign_region.parent, moved, ignore=shutil.ignore_patterns("source", "outputs")
    )
    region = load_region(moved / foreign_region.name)
    assert region.scenes[region.dates[0]].is_relative_to(moved)
    assert region.outputs.root == moved / "outputs"


def test_model_bands_are_found_by_position(foreign_region, sample_config):
    foreign, sample = load_region(foreign_region), load_region(sample_config)
    assert foreign.band_indexes(["pan"]) == [1]
    assert sample.band_indexes(["nir", "red"]) == [4, 3]
    with pytest.raises(RegionConfigError, match=r"no band \['red'\] in region 'foreign'"):
        foreign.band_indexes(["red"])


# ------------------------------------------------------------------ mistakes found on real data


VALUES = "  values:\n  - camp\n"  # labels.values in the foreign region's config
SCENE = "    '2022-03-01': imagery/scene_2022.tif\n"  # its imagery.scenes


def _edit_text(config: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of ``config`` (same folder) with ``old`` replaced by ``new`` in its text."""
    text = config.read_text()
    assert old in text
    path = config.parent / f"edited_{tmp_path.name}.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_label_table_without_geometry_is_named_with_the_fix(foreign_region, tmp_path):
    table = tmp_path / "camps.csv"
    table.write_text("landuse,x,y\ncamp,14.2,48.8\nfarm,14.3,48.9\n")
    path = _edit(foreign_region, tmp_path, lambda d: d["labels"].update(file=str(table)))
    with pytest.raises(labels.VectorError) as info:
        load_region(path)
    message = str(info.value)
    assert f"labels.file: {table} has no geometry (CSV?)" in message
    assert "use GeoJSON, GeoPackage or Shapefile" in message.replace("Use", "use")
    assert str(path) in message


def _copy_scene(scene: Path, out: Path, **changes) -> Path:
    with rasterio.open(scene) as src:
        profile, data = src.profile | changes, src.read()
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"crs": None}, "has no CRS (no georeferencing)"),
        ({"transform": rasterio.Affine.identity()}, "has no geotransform"),
    ],
)
def test_a_scene_without_georeferencing_is_refused(foreign_region, tmp_path, changes, message):
    scene = load_region(foreign_region, check_files=False).scenes["2022-03-01"]
    bare = _copy_scene(scene, tmp_path / "bare.tif", **changes)
    path = _edit(
        foreign_region, tmp_path, lambda d: d["imagery"].update(scenes={"2022-03-01": str(bare)})
    )
    with pytest.raises(RegionConfigError) as info:
        load_region(path)
    text = str(info.value)
    assert f"imagery.scenes.2022-03-01: {bare} {message}" in text
    assert "gdal_edit.py" in text and "-a_srs EPSG:" in text
    assert regions.main([str(path)]) == 1


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_labels_without_crs_name_the_key(foreign_region, tmp_path):
    camps = labels.read_vectors(foreign_region.parent / "labels" / "landuse.shp")
    bare = tmp_path / "bare.shp"
    # Geometries without a CRS (set_crs(None) needs geopandas 1.0).
    gpd.GeoDataFrame(camps.drop(columns="geometry"), geometry=list(camps.geometry)).to_file(bare)
    path = _edit(foreign_region, tmp_path, lambda d: d["labels"].update(file=str(bare)))
    with pytest.raises(labels.VectorError, match=r"labels\.file: .*bare\.shp has no coordinate"):
        load_region(path)


def test_each_dates_labels_are_compared_with_that_dates_scene(foreign_region, tmp_path):
    scene = load_region(foreign_region, check_files=False).scenes["2022-03-01"]
    with rasterio.open(scene) as src:
        far = src.transform * rasterio.Affine.translation(0, 50_000)  # 100 km further south
    moved = _copy_scene(scene, tmp_path / "moved.tif", transform=far)
    shapes = str(foreign_region.parent / "labels" / "landuse.shp")
    both = {"2022-03-01": str(scene), "2023-03-01": str(moved)}
    path = _edit(
        foreign_region,
        tmp_path,
        lambda d: (
            d["imagery"].update(scenes=both),
            d["labels"].pop("file"),
            d["labels"].update(files={"2022-03-01": shapes, "2023-03-01": shapes}),
        ),
    )
    with pytest.raises(labels.VectorError) as info:
        load_region(path)  # the second date's labels lie on the first date's scene only
    assert "labels.files.2023-03-01" in str(info.value)
    assert f"outside the raster {moved}" in str(info.value)


@pytest.mark.parametrize(("size", "fits"), [(100, "96 or 104"), (4, "8")])
def test_a_patch_size_the_unet_cannot_halve_is_refused(foreign_region, tmp_path, size, fits):
    path = _edit(foreign_region, tmp_path, lambda d: d["tiling"].update(patch_size=size, stride=4))
    with pytest.raises(RegionConfigError) as info:
        load_region(path, check_files=False)
    text = str(info.value)
    assert f"tiling.patch_size: {size} is not a multiple of 8 = 2**3" in text
    assert "depth 3" in text and f"Use {fits} " in text


def test_blocks_narrower_than_two_patches_are_warned_with_a_size(foreign_region, tmp_path):
    path = _edit(foreign_region, tmp_path, lambda d: d["tiling"].update(block_size=96))
    with pytest.warns(UserWarning, match=r"tiling\.block_size: 96 px .* at least 128") as caught:
        region = load_region(path, check_files=False)
    assert region.tiling.block_size == 96  # still usable
    assert caught[0].filename == __file__  # points at the caller


@pytest.mark.parametrize(
    ("old", "new", "message", "hint"),
    [
        (VALUES, "  values: [yes]\n", "labels.values[0]: yes (line 12)", "values: ['yes']"),
        (VALUES, "  values: [camp, 'no', off]\n", "labels.values[2]: off", "values: ['off']"),
        ("target: refugee camp", "target: on", "labels.target: on (line 11)", "target: 'on'"),
    ],
)
def test_yaml_booleans_in_class_names_are_refused(
    foreign_region, tmp_path, old, new, message, hint
):
    path = _edit_text(foreign_region, tmp_path, old, new)
    with pytest.raises(RegionConfigError) as info:
        load_region(path, check_files=False)
    text = str(info.value)
    assert message in text and "was read as the boolean" in text
    assert f"quote it: {hint}" in text


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("outputs:\n", "name: again\noutputs:\n", "key 'name' appears twice"),
        ("  stride: 32\n", "  stride: 32\n  patch_size: 32\n", "key 'patch_size' appears twice"),
        (SCENE, f"{SCENE}    2022-03-01: other.tif\n", "key '2022-03-01' appears twice"),
    ],
)
def test_duplicate_keys_are_refused_with_their_lines(foreign_region, tmp_path, old, new, message):
    path = _edit_text(foreign_region, tmp_path, old, new)
    with pytest.raises(RegionConfigError) as info:
        load_region(path, check_files=False)
    text = str(info.value)
    assert message in text and str(path) in text
    lines = path.read_text().splitlines()
    key = message.split("'")[1]
    starts = [line.strip().replace("'", "").startswith(f"{key}:") for line in lines]
    numbers = [i + 1 for i, start in enumerate(starts) if start]
    assert f"(lines {numbers[0]} and {numbers[1]})" in text


def test_a_config_not_in_utf8_is_named_with_the_fix(foreign_region, tmp_path, capsys):
    text = foreign_region.read_text().replace("description: ", "description: Liège, ")
    path = foreign_region.parent / f"latin1_{tmp_path.name}.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(RegionConfigError, match="not UTF-8 .* line 2 .*save it as UTF-8") as info:
        load_region(path)
    assert str(path) in str(info.value)
    assert regions.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"INVALID {path} is not UTF-8") and "save it as UTF-8" in out


def test_a_folder_given_as_the_config_is_named(foreign_region, capsys):
    folder = foreign_region.parent
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a YAML file.*region\.yaml"):
        load_region(folder)
    assert regions.main([str(folder)]) == 1
    assert capsys.readouterr().out.startswith(f"INVALID Region config {folder} is a folder")


def test_the_command_line_names_the_file_of_any_error(tmp_path, capsys, monkeypatch):
    def broken(path, **kwargs):
        raise ValueError("something without a file name")

    monkeypatch.setattr(regions, "load_region", broken)
    assert regions.main([str(tmp_path / "x.yaml")]) == 1
    assert (
        capsys.readouterr().out == f"INVALID {tmp_path / 'x.yaml'}: something without a file name\n"
    )


def _building_region(folder: Path, make_geotiff, positive: float = 0.5) -> Path:
    """A 256 x 256 px scene at 0.5 m with 8 x 8 px buildings every 24 px: at most a fifth of a
    32 px tile is building, so tiling.positive 0.5 gives no positive tile."""
    import geopandas as gpd
    import shapely

    scene = make_geotiff("buildings.tif", width=256, height=256, pixel_size=0.5)
    with rasterio.open(scene) as src:
        transform, crs = src.transform, src.crs
    starts = range(4, 248, 24)
    boxes = [shapely.box(*(transform * (c, r + 8)), *(transform * (c + 8, r))) for r in starts
             for c in starts]  # fmt: skip
    gpd.GeoDataFrame(geometry=boxes, crs=crs).to_file(folder / "buildings.gpkg")
    config = folder / f"buildings_{positive}.yaml"
    tiles = {"patch_size": 32, "stride": 16, "tile_size": 32, "tile_stride": 16,
             "block_size": 64, "positive": positive, "negative": 0.01}  # fmt: skip
    config.write_text(yaml.safe_dump({
        "name": "buildings",
        "imagery": {"scenes": {"2024-05-01": scene.name}, "bands": ["blue", "green", "red", "nir"]},
        "labels": {"file": "buildings.gpkg", "target": "building"},
        "tiling": tiles,
        "outputs": {"root": "out"},
    }))  # fmt: skip
    return config


def test_the_command_line_suggests_sizes_and_warns_about_missing_positives(
    tmp_path, make_geotiff, capsys
):
    config = _building_region(tmp_path, make_geotiff)
    assert regions.main([str(config)]) == 0  # suggestions never change the check's outcome
    out = capsys.readouterr().out
    assert out.startswith("OK region 'buildings'")
    assert "suggestions for buildings (from 121 building objects of 2024-05-01" in out
    for key in ("patch_size", "stride", "tile_size", "tile_stride", "block_size", "negative"):
        assert f"  tiling.{key}: " in out
    assert "notebook 07: OPENING" in out and "m²" in out
    assert "positive tiles per split with tiling.positive 0.5: train 0, validation 0, test 0" in out
    (warning,) = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert warning.startswith("WARNING tiling.positive = 0.5 gives train 0")
    suggested = float(warning.split("Set tiling.positive: ")[1].split(" ")[0])
    assert 0.01 < suggested < 0.25
    fixed = _building_region(tmp_path, make_geotiff, positive=suggested)
    assert regions.main([str(fixed)]) == 0
    out = capsys.readouterr().out
    assert "WARNING" not in out and "suggestions for buildings" in out
    assert regions.main([str(fixed), "--no-files"]) == 0
    assert "suggestions" not in capsys.readouterr().out


def test_the_suggestions_never_break_the_check(tmp_path, make_geotiff, monkeypatch):
    from helpers import region_suggestions

    region = load_region(_building_region(tmp_path, make_geotiff))
    monkeypatch.setattr(region_suggestions, "MAX_CLEANING_PIXELS", 10)
    lines = region_suggestions.suggestion_lines(region)
    assert any("run cleaning_suggestions.suggest_cleaning on a crop" in line for line in lines)

    def unreadable(*args, **kwargs):
        raise OSError("labels unreadable")

    monkeypatch.setattr(region_suggestions.raster, "describe", unreadable)
    report = region_suggestions.suggestions_report(region)
    assert report == "suggestions unavailable: labels unreadable"


def test_a_label_raster_region_is_validated_and_reads_as_classes(tmp_path):
    """labels.raster: the class table, the target, checks against every scene."""
    import yaml
    from conftest import LABEL_RASTER_CLASSES, make_label_raster_region

    from helpers import label_rasters

    config = make_label_raster_region(tmp_path / "lc")
    region = load_region(config)
    assert region.label_raster is not None and region.target == "built-up"
    assert region.classes == dict(enumerate(LABEL_RASTER_CLASSES.values()))
    assert set(region.labels) == set(region.dates)
    with pytest.raises(TypeError, match="label raster"):
        region.read_labels(region.dates[0])
    data = yaml.safe_load(config.read_text())
    data["labels"]["classes"][9] = "snow"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(label_rasters.LabelRasterError, match=r"labels.classes: 9 \(snow\) never"):
        load_region(config)
    data["labels"]["classes"].pop(9)
    data["labels"]["target"] = "houses"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(label_rasters.LabelRasterError, match="labels.target: 'houses'"):
        load_region(config)


def test_a_pair_region_has_no_scenes_and_takes_its_bands_from_the_config(tmp_path):
    import yaml
    from conftest import PAIR_CLASSES, make_pair_region

    from helpers import pair_sources

    config = make_pair_region(tmp_path / "pairs", count=4, size=64)
    region = load_region(config)
    assert region.dates == () and region.scenes == {} and region.pairs is not None
    assert region.band_names == ("red", "green", "blue") and region.target == "cloud"
    assert region.classes == PAIR_CLASSES and "4 image/mask pairs" in region.summary()
    data = yaml.safe_load(config.read_text())
    data["labels"] = {"file": "x.gpkg", "target": "x"}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(RegionConfigError, match="pairs bring their own masks"):
        load_region(config)
    data.pop("labels")
    data["imagery"] = {"scenes": {"2020-01-01": "x.tif"}}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(RegionConfigError, match="exactly one of 'imagery'"):
        load_region(config)
    data.pop("imagery")
    data["pairs"]["classes"] = {0: "clear", 1: "cloud"}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(
        pair_sources.PairSourceError, match=r"pairs.classes: .* holds code\(s\) \[2\]"
    ):
        load_region(config)
