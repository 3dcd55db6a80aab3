"""Shared fixtures: tiny synthetic GeoTIFFs and GeoJSON files written into ``tmp_path``.

Factories are fixtures that return a function, so a test can build as many files as it needs::

    def test_something(make_geotiff):
        path = make_geotiff("scene.tif", width=64, height=48)

Everything is deterministic (seeded) and small, so tests stay fast.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # tests never open windows

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

#: Band order of the course's sample scenes.
SCENE_BANDS = ("blue", "green", "red", "nir")
#: A UTM zone (33N) and an origin inside it, so coordinates look like real ones.
UTM_CRS = "EPSG:32633"
UTM_ORIGIN = (500_000.0, 4_000_000.0)


def synthetic_reflectance(height: int = 64, width: int = 64, *, seed: int = 0) -> np.ndarray:
    """A 4-band (blue, green, red, nir) uint16 scene (reflectance x 10000) with three covers.

    Left third water (green > nir, so NDWI > 0), middle third vegetation (nir >> red, NDVI
    high), right third bare soil; plus a little seeded noise. Never contains 0, so 0 can be
    used as nodata.
    """
    rng = np.random.default_rng(seed)
    #                       blue  green  red   nir
    covers = np.array([[900, 1100, 600, 300], [400, 800, 500, 4000], [1500, 1800, 2200, 2800]])
    cols = np.arange(width)
    cover_of_col = np.minimum(cols * 3 // max(width, 1), 2)
    base = covers[cover_of_col].T[:, np.newaxis, :]  # (4, 1, width)
    noise = rng.integers(-50, 51, size=(4, height, width))
    return np.clip(base + noise, 1, 10_000).astype("uint16")


def write_geotiff(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    crs: str | None = UTM_CRS,
    transform: Affine | None = None,
    pixel_size: float = 1.0,
    nodata: float | None = 0,
    band_names: Sequence[str | None] | None = None,
    blocksize: int | None = 32,
    compress: str | None = "deflate",
    overviews: Iterable[int] = (),
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
) -> Path:
    """Write ``data`` ``(bands, rows, cols)`` or ``(rows, cols)`` as a GeoTIFF; return its path."""
    path = Path(path)
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    count, height, width = data.shape
    if transform is None:
        transform = from_origin(*UTM_ORIGIN, pixel_size, pixel_size)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
        if np.issubdtype(data.dtype, np.integer):
            profile["predictor"] = 2
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if band_names is not None:
            dst.descriptions = tuple(band_names)
        if colormap is not None:
            dst.write_colormap(1, colormap)
        factors = list(overviews)
        if factors:
            dst.build_overviews(factors, rasterio.enums.Resampling.average)
    return path


@pytest.fixture
def make_geotiff(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_geotiff(name="scene.tif", *, data=None, width=64, height=64, seed=0,
    **write_geotiff_kwargs) -> Path``.

    Without ``data`` it writes :func:`synthetic_reflectance` with band names
    blue/green/red/nir and nodata 0. Any :func:`write_geotiff` keyword can be overridden.
    """

    def factory(
        name: str = "scene.tif",
        *,
        data: np.ndarray | None = None,
        width: int = 64,
        height: int = 64,
        seed: int = 0,
        **kwargs: Any,
    ) -> Path:
        if data is None:
            data = synthetic_reflectance(height, width, seed=seed)
            kwargs.setdefault("band_names", SCENE_BANDS)
        return write_geotiff(tmp_path / name, data, **kwargs)

    return factory


@pytest.fixture
def scene_path(make_geotiff: Callable[..., Path]) -> Path:
    """A 4-band 64x64 uint16 UTM scene with named bands, nodata 0 in the top-left 8x8 corner,
    32x32 tiles, DEFLATE and overviews 2 and 4 (like the sample scenes, only smaller)."""
    data = synthetic_reflectance(64, 64, seed=1)
    data[:, :8, :8] = 0
    return make_geotiff("scene.tif", data=data, band_names=SCENE_BANDS, overviews=(2, 4))


@pytest.fixture
def make_geojson(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_geojson(geometries, name="shapes.geojson", properties=None) -> Path``.

    Writes shapely geometries (assumed EPSG:4326 lon/lat, RFC 7946) as a FeatureCollection.
    """
    from shapely.geometry import mapping

    def factory(
        geometries: Iterable[Any],
        name: str = "shapes.geojson",
        properties: Sequence[dict[str, Any]] | None = None,
    ) -> Path:
        geometries = list(geometries)
        props = (
            list(properties)
            if properties is not None
            else [{"id": i} for i in range(len(geometries))]
        )
        collection = {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "geometry": mapping(g), "properties": p}
                for g, p in zip(geometries, props, strict=True)
            ],
        }
        path = tmp_path / name
        path.write_text(json.dumps(collection))
        return path

    return factory


@pytest.fixture(autouse=True)
def _close_figures() -> Iterable[None]:
    """Close every matplotlib figure a test opened, so memory does not grow across tests."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def local_http_server(tmp_path_factory):
    """Serve a fresh folder over HTTP on 127.0.0.1 (range requests not needed here).

    Yields ``(root, base_url)``: put files into ``root`` and fetch ``base_url + name``. The
    server runs in a thread and stops after the test; nothing leaves this machine.
    """
    import functools
    import http.server
    import threading

    root = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------- a "foreign" region

FOREIGN_EPSG = 32633  # UTM zone 33N: another hemisphere and zone than the sample region's 37S
FOREIGN_ORIGIN = (452000.0, 5412000.0)  # top-left corner, metres
FOREIGN_PIXEL = 2.0  # metres
# Small patches for regions of a few hundred pixels (the notebooks' tests).
SMALL_TILING = {
    "patch_size": 64,
    "stride": 32,
    "tile_size": 32,
    "tile_stride": 16,
    "block_size": 128,
}


def make_region(
    folder: Path,
    *,
    name: str = "foreign",
    size: int = 512,
    seed: int = 5,
    source_bands: Sequence[int] = (3,),
    roles: Sequence[str] | None = ("pan",),
    describe: bool = False,
    roles_in_config: bool = True,
    dtype: str = "uint16",
    crs: str = f"EPSG:{FOREIGN_EPSG}",
    origin: tuple[float, float] = FOREIGN_ORIGIN,
    pixel: float = FOREIGN_PIXEL,
    labels_name: str = "landuse.shp",
    labels_crs: str = "EPSG:4326",
) -> Path:
    """A region built from a generated one, re-shaped the way users' data comes, and its config.

    ``source_bands`` picks bands of the generated scene (1 blue, 2 green, 3 red, 4 nir; repeats
    allowed, e.g. 13 bands); ``dtype`` converts them (uint8: reflectance x 10 000 / 40, float32:
    reflectance); ``crs``, ``origin`` and ``pixel`` place the grid anywhere (the pixels and the
    polygons move together, pixel for pixel). ``roles`` go into the config's ``imagery.bands``
    (unless ``roles_in_config`` is False), ``describe`` writes them as band descriptions.
    Labels are written as ``labels_name`` (its suffix picks the format) in ``labels_crs``, with
    a ``landuse`` attribute: ``"camp"`` for the target class "refugee camp" and ``"farm"`` for
    other polygons, to be left out. The scene has no nodata value.

    Returns:
        The path of the region config (``folder / "region.yaml"``).
    """
    import geopandas as gpd
    import shapely
    import yaml

    from helpers.sample_data import ensure_sample_region

    folder.mkdir(parents=True, exist_ok=True)
    source = ensure_sample_region(folder / "source", size=size, seed=seed, progress=False)
    date = source.dates[0]
    with rasterio.open(source.scenes[date]) as src:
        data = src.read(list(source_bands)).astype("float64")
        old, old_crs = src.transform, src.crs
    data = np.maximum(data, 1)  # no nodata in this file
    if dtype == "uint8":
        data = np.clip(data / 40, 1, 255)
    elif dtype.startswith("float"):
        data = data * 1e-4
    new = from_origin(*origin, pixel, pixel)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": len(source_bands),
        "dtype": dtype,
        "crs": crs,
        "transform": new,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    scene = folder / "imagery" / "scene_2022.tif"
    scene.parent.mkdir(exist_ok=True)
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        if describe and roles:
            dst.descriptions = tuple(roles)

    to_new = new * ~old  # the sample's polygons, from its grid to the new one
    camps = gpd.read_file(source.settlements[date]).to_crs(old_crs)
    matrix = [to_new.a, to_new.b, to_new.d, to_new.e, to_new.xoff, to_new.yoff]
    moved = [shapely.affinity.affine_transform(g, matrix) for g in camps.geometry]
    rng = np.random.default_rng(seed)
    farms = [
        shapely.box(*(new * (col, row)), *(new * (col + 20, row + 20)))
        for col, row in rng.uniform(0, size - 20, (6, 2))
    ]
    gdf = gpd.GeoDataFrame(
        {"landuse": ["camp"] * len(moved) + ["farm"] * len(farms)},
        geometry=[shapely.normalize(g) for g in moved + farms],
        crs=crs,
    ).to_crs(labels_crs)
    labels = folder / "labels" / labels_name
    labels.parent.mkdir(exist_ok=True)
    gdf.to_file(labels)

    imagery: dict[str, Any] = {"scenes": {"2022-03-01": "imagery/scene_2022.tif"}}
    if roles is not None and roles_in_config:
        imagery["bands"] = list(roles)
    config = {
        "name": name,
        "description": f"{len(source_bands)} band(s) {dtype} in {crs}, labels {labels_name}",
        "imagery": imagery,
        "labels": {
            "file": f"labels/{labels_name}",
            "class_property": "landuse",
            "target": "refugee camp",
            "values": ["camp"],
        },
        "tiling": dict(SMALL_TILING),
        "outputs": {"root": "outputs"},
    }
    path = folder / "region.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_foreign_region(folder: Path) -> Path:
    """The "foreign" region of the course's tests: one uint16 band with no description or
    nodata (built from the red band of a generated region), UTM zone 33N at 2 m, labels as a
    Shapefile in EPSG:4326 with a target class called "refugee camp" and other classes."""
    return make_region(folder)


@pytest.fixture(scope="session")
def foreign_region(tmp_path_factory) -> Path:
    """The config path of :func:`make_foreign_region`, built once per test session."""
    return make_foreign_region(tmp_path_factory.mktemp("foreign"))


#: Class names of the synthetic class-folder tile dataset (EuroSAT's ten land-cover classes).
TILE_CLASSES = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
)  # fmt: skip


def write_class_folder_tiles(
    folder: Path,
    *,
    classes: Sequence[str] = TILE_CLASSES,
    per_class: int = 12,
    size: int = 32,
    suffix: str = ".jpg",
    bands: int = 3,
    seed: int = 0,
) -> Path:
    """A class-folder tile dataset: ``folder/<class>/<i><suffix>``, learnable by colour and texture.

    Class ``k`` has its own base colour (a hue around the colour wheel) and stripes of period
    ``2 + k % 4`` px, plus seeded noise. JPEG and PNG are 8-bit RGB (``bands`` is 3);
    ``.tif`` writes uint16 GeoTIFFs with ``bands`` bands and no CRS.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(size)[:, None] + np.zeros((1, size))
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        hue = 2 * np.pi * k / len(classes)
        base = 127 + 90 * np.cos(hue + np.array([0.0, 2.1, 4.2]))
        stripes = 30 * np.sign(np.sin(2 * np.pi * rows / (2 + k % 4)))
        for i in range(per_class):
            noise = rng.normal(0, 8, size=(size, size, 3))
            tile = np.clip(base + stripes[..., None] + noise, 0, 255)
            path = folder / name / f"{name.lower()}_{i:03d}{suffix}"
            if suffix == ".tif":
                data = np.concatenate([tile] * (bands // 3 + 1), axis=-1)[..., :bands]
                profile = {"driver": "GTiff", "width": size, "height": size, "count": bands,
                           "dtype": "uint16"}  # fmt: skip
                with warnings.catch_warnings():  # tiles without georeferencing, on purpose
                    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                    with rasterio.open(path, "w", **profile) as dst:
                        dst.write(np.moveaxis((data * 40).astype("uint16"), -1, 0))
            else:
                from PIL import Image

                Image.fromarray(tile.astype("uint8")).save(path)
    return folder


def write_tiles_config(path: Path, tiles_folder: Path, outputs: Path, **tiles: Any) -> Path:
    """A region config with a ``tiles`` section over ``tiles_folder``, outputs under ``outputs``."""
    import yaml

    config = {
        "name": path.stem,
        "tiles": {"folder": str(tiles_folder), **tiles},
        "outputs": {"root": str(outputs)},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: Class table of :func:`make_label_raster_region`: the sample's land cover, merged to four.
LABEL_RASTER_CLASSES = {1: "water", 2: "vegetation", 3: "bare", 4: "built-up"}
_LANDCOVER_TO_LABEL = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4}


def make_label_raster_region(folder: Path, *, size: int = 256, seed: int = 5) -> Path:
    """A region whose labels are a land-cover GeoTIFF of codes in EPSG:4326 (the imagery is in
    UTM 37S): the sample's land cover merged to :data:`LABEL_RASTER_CLASSES`, 0 outside, and a
    square of code 255 (ignored) in the middle. Returns the config path."""
    import yaml
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from helpers.sample_data import ensure_sample_region

    folder.mkdir(parents=True, exist_ok=True)
    sample = ensure_sample_region(folder / "source", size=size, seed=seed, progress=False)
    date = sample.dates[0]
    with rasterio.open(sample.landcover[date]) as src:
        codes, crs, transform = src.read(1), src.crs, src.transform
    merged = np.zeros_like(codes)
    for old, new in _LANDCOVER_TO_LABEL.items():
        merged[codes == old] = new
    quarter = size // 4
    merged[quarter : 2 * quarter, quarter : 2 * quarter] = 255
    dst_transform, width, height = calculate_default_transform(
        crs, "EPSG:4326", size, size, *rasterio.transform.array_bounds(size, size, transform)
    )
    out = np.zeros((height, width), dtype="uint8")
    reproject(merged, out, src_transform=transform, src_crs=crs, dst_transform=dst_transform,
              dst_crs="EPSG:4326", resampling=Resampling.nearest)  # fmt: skip
    raster = folder / "landcover_4326.tif"
    write_geotiff(raster, out, crs="EPSG:4326", transform=dst_transform, nodata=None)
    config = {
        "name": "landcover",
        "imagery": {"scenes": {d: str(sample.scenes[d]) for d in sample.dates}, "scale": 0.0001},
        "labels": {
            "raster": raster.name,
            "classes": dict(LABEL_RASTER_CLASSES),
            "ignore": [0, 255],
            "target": "built-up",
        },
        "tiling": dict(SMALL_TILING) | {"positive": 0.25},  # built-up: at most 37 % of a patch
        "outputs": {"root": "outputs"},
    }
    path = folder / "region.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: Class table of :func:`make_pair_region`.
PAIR_CLASSES = {0: "clear", 1: "cloud", 2: "shadow"}


def write_pair(folder: Path, stem: str, size: int, rng: np.random.Generator) -> None:
    """One RGB PNG without georeferencing and its mask PNG: a bright cloud (1), its dark shadow
    (2) to the lower right, clear ground (0) and a strip of 255 (ignored) along the top."""
    from PIL import Image

    mask = np.zeros((size, size), dtype="uint8")
    r, c = rng.integers(size // 8, size // 2, 2)
    radius = int(rng.integers(size // 8, size // 5))
    rows, cols = np.mgrid[:size, :size]
    shadow = (rows - r - radius) ** 2 + (cols - c - radius) ** 2 < radius**2
    cloud = (rows - r) ** 2 + (cols - c) ** 2 < radius**2
    mask[shadow] = 2
    mask[cloud] = 1
    mask[:3] = 255
    level = np.select([mask == 1, mask == 2], [220, 30], default=110)
    image = level[..., None] + rng.integers(-25, 26, (size, size, 3))
    image[..., 2] += 10  # a little colour
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(image, 0, 255).astype("uint8")).save(folder / "images" / f"{stem}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def make_pair_region(folder: Path, *, count: int = 8, size: int = 96, seed: int = 3) -> Path:
    """A region of ``count`` PNG image/mask pairs without georeferencing (3 classes, code 255
    ignored), split by image. Returns the config path."""
    import yaml

    rng = np.random.default_rng(seed)
    for i in range(count):
        write_pair(folder / "data", f"scene_{i:02d}", size, rng)
    config = {
        "name": "clouds",
        "pairs": {
            "images": "data/images/*.png",
            "masks": "data/masks",
            "classes": dict(PAIR_CLASSES),
            "ignore": [255],
            "bands": ["red", "green", "blue"],
            "target": "cloud",
            "split": {"validation": 0.25, "test": 0.25, "seed": seed},
        },
        "tiling": dict(SMALL_TILING),
        "outputs": {"root": "outputs"},
    }
    path = folder / "region.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
