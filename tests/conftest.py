"""Shared fixtures: tiny synthetic GeoTIFFs and GeoJSON files written into ``tmp_path``.

Factories are fixtures that return a function, so a test can build as many files as it needs::

    def test_something(make_geotiff):
        path = make_geotiff("scene.tif", width=64, height=48)

Everything is deterministic (seeded) and small, so tests stay fast.
"""

from __future__ import annotations

import json
import os
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


def make_foreign_region(folder: Path, *, size: int = 512, seed: int = 5) -> Path:
    """A region unlike the sample one, as a user might bring it, and its config file.

    One uint16 band without a band description or nodata value (a panchromatic-like band built
    from the red band of a generated region), in UTM zone 33N at 2 m; labels as a Shapefile in
    EPSG:4326 whose ``landuse`` attribute holds ``"camp"`` for the target class and ``"farm"``
    for other polygons, which must be left out; a target class called "refugee camp".

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
        band = src.read(3)  # red
        old = src.transform
    band = np.where(band == 0, 1, band).astype("uint16")  # no nodata in this file
    new = from_origin(*FOREIGN_ORIGIN, FOREIGN_PIXEL, FOREIGN_PIXEL)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": f"EPSG:{FOREIGN_EPSG}",
        "transform": new,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    scene = folder / "imagery" / "pan_2022.tif"
    scene.parent.mkdir(exist_ok=True)
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(band, 1)

    # Move the sample's polygons from its grid to the new one, pixel for pixel.
    to_new = new * ~old
    camps = gpd.read_file(source.settlements[date]).to_crs(src.crs)
    matrix = [to_new.a, to_new.b, to_new.d, to_new.e, to_new.xoff, to_new.yoff]
    moved = [shapely.affinity.affine_transform(g, matrix) for g in camps.geometry]
    rng = np.random.default_rng(seed)
    farms = [
        shapely.box(x, y, x + 40, y - 40)
        for x, y in zip(
            FOREIGN_ORIGIN[0] + rng.uniform(0, size * FOREIGN_PIXEL - 40, 6),
            FOREIGN_ORIGIN[1] - rng.uniform(40, size * FOREIGN_PIXEL, 6),
            strict=True,
        )
    ]
    gdf = gpd.GeoDataFrame(
        {"landuse": ["camp"] * len(moved) + ["farm"] * len(farms)},
        geometry=moved + farms,
        crs=f"EPSG:{FOREIGN_EPSG}",
    ).to_crs("EPSG:4326")
    labels = folder / "labels" / "landuse.shp"
    labels.parent.mkdir(exist_ok=True)
    gdf.to_file(labels)

    config = {
        "name": "foreign",
        "description": "One band, UTM 33N, Shapefile labels in EPSG:4326",
        "imagery": {"scenes": {"2022-03-01": "imagery/pan_2022.tif"}, "bands": ["pan"]},
        "labels": {
            "file": "labels/landuse.shp",
            "class_property": "landuse",
            "target": "refugee camp",
            "values": ["camp"],
        },
        "tiling": {
            "patch_size": 64,
            "stride": 32,
            "tile_size": 32,
            "tile_stride": 16,
            "block_size": 128,
        },
        "outputs": {"root": "outputs"},
    }
    path = folder / "region.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def foreign_region(tmp_path_factory) -> Path:
    """The config path of :func:`make_foreign_region`, built once per test session."""
    return make_foreign_region(tmp_path_factory.mktemp("foreign"))
