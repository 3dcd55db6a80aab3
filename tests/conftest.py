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
