"""Tests for helpers.stac against a STAC API and cloud-optimised GeoTIFFs served on 127.0.0.1.

The fake API answers the landing page, ``/collections`` and ``/search`` (GET and POST, with
``intersects``/``bbox``, ``datetime`` and the ``query`` extension's ``eo:cloud_cover``); its
items point to small COGs in ``tmp_path`` served with HTTP range requests, as GDAL's
``/vsicurl/`` needs.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping, shape

from helpers import stac
from helpers.download import OfflineError
from helpers.stac import (
    AoiOutsideSceneError,
    NoScenesFoundError,
    as_aoi,
    download_scene,
    fetch_sentinel2,
    rank_scenes,
    resolve_assets,
    search_scenes,
)

CRS = "EPSG:32633"
ORIGIN = (500_000.0, 4_000_000.0)
SIZE = 1024  # pixels at 10 m: a 10.24 km scene
BANDS_10M = ("blue", "green", "red", "nir")
# The AOI: rows 100-140, cols 200-260 of the 10 m grid, as a lon/lat bbox.
AOI_UTM = (ORIGIN[0] + 2000, ORIGIN[1] - 1400, ORIGIN[0] + 2600, ORIGIN[1] - 1000)
AOI = transform_bounds(CRS, "EPSG:4326", *AOI_UTM)


def scene_footprint(fraction: float = 1.0) -> dict[str, Any]:
    """The scene's extent in lon/lat; ``fraction`` < 1 keeps only a western strip of the AOI."""
    if fraction >= 1:
        extent = box(ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1])
    else:
        width = (AOI_UTM[2] - AOI_UTM[0]) * fraction
        extent = box(ORIGIN[0], ORIGIN[1] - SIZE * 10, AOI_UTM[0] + width, ORIGIN[1])
    return transform_geom(CRS, "EPSG:4326", mapping(extent))


def write_cog(path: Path, data: np.ndarray, pixel: float) -> None:
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs=CRS,
        transform=from_origin(*ORIGIN, pixel, pixel),
        nodata=0,
        blocksize=128,  # the COG driver's smallest
        compress="deflate",
    ) as dst:
        dst.write(data, 1)


def make_cogs(folder: Path) -> dict[str, np.ndarray]:
    """Noisy (poorly compressible) uint16 bands, so a windowed read is visibly partial."""
    rng = np.random.default_rng(7)
    arrays = {}
    for band in BANDS_10M:
        arrays[band] = rng.integers(1, 10_000, size=(SIZE, SIZE), dtype="uint16")
        write_cog(folder / f"{band}.tif", arrays[band], 10.0)
    arrays["swir16"] = rng.integers(1, 10_000, size=(SIZE // 2, SIZE // 2), dtype="uint16")
    write_cog(folder / "swir16.tif", arrays["swir16"], 20.0)
    return arrays


def item_dict(
    base: str, item_id: str, day: str, cloud: float, geometry: dict[str, Any]
) -> dict[str, Any]:
    assets = {}
    for band in (*BANDS_10M, "swir16"):
        asset: dict[str, Any] = {
            "href": f"{base}/cogs/{band}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "eo:bands": [{"name": stac.S2_BANDS[band][0], "common_name": band}],
        }
        if band == "blue":  # processing baseline >= 04.00: reflectance = DN * 1e-4 - 0.1
            asset["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": -0.1}]
        assets[band] = asset
    assets["thumbnail"] = {"href": f"{base}/thumb.jpg", "type": "image/jpeg"}
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "geometry": geometry,
        "bbox": list(shape(geometry).bounds),
        "properties": {"datetime": f"{day}T10:00:00Z", "eo:cloud_cover": cloud},
        "links": [],
        "assets": assets,
    }


def parse_time(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    if len(text) == 10:
        text += "T00:00:00Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _StacHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    # --- JSON routes ---
    def _json(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _landing(self) -> dict[str, Any]:
        base = self.server.base
        spec = "https://api.stacspec.org/v1.0.0"
        geojson = "application/geo+json"
        return {
            "type": "Catalog",
            "id": "local-test-api",
            "stac_version": "1.0.0",
            "description": "A STAC API on 127.0.0.1 for tests",
            "conformsTo": [
                f"{spec}/core",
                f"{spec}/collections",
                f"{spec}/ogcapi-features",
                f"{spec}/item-search",
                f"{spec}/item-search#query",
            ],
            "links": [
                {"rel": "self", "href": base, "type": "application/json"},
                {"rel": "root", "href": base, "type": "application/json"},
                {"rel": "data", "href": f"{base}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{base}/search", "type": geojson, "method": "GET"},
                {"rel": "search", "href": f"{base}/search", "type": geojson, "method": "POST"},
            ],
        }

    def _collection(self) -> dict[str, Any]:
        return {
            "type": "Collection",
            "id": "sentinel-2-l2a",
            "stac_version": "1.0.0",
            "description": "Sentinel-2 L2A (test)",
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
            },
            "links": [],
        }

    def _search(self, params: dict[str, Any]) -> None:
        self.server.searches.append(params)
        if "intersects" in params:
            area = shape(params["intersects"])
        elif "bbox" in params:
            area = box(*params["bbox"])
        else:
            area = None
        start, end = (params.get("datetime") or "../..").split("/")
        start, end = parse_time(start), parse_time(end)
        cloud_max = (params.get("query") or {}).get("eo:cloud_cover", {}).get("lte")
        features = []
        for item in self.server.items:
            when = parse_time(item["properties"]["datetime"])
            if area is not None and not shape(item["geometry"]).intersects(area):
                continue
            if (start and when < start) or (end and when > end):
                continue
            if cloud_max is not None and item["properties"]["eo:cloud_cover"] > cloud_max:
                continue
            if params.get("collections") and item["collection"] not in params["collections"]:
                continue
            features.append(item)
        self._json({"type": "FeatureCollection", "features": features, "links": []})

    # --- files with Range support ---
    def _file(self, with_body: bool) -> None:
        path = self.server.root / self.path.lstrip("/").split("?")[0]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        requested = self.headers.get("Range")
        if requested:
            first, last = re.fullmatch(r"bytes=(\d+)-(\d*)", requested.strip()).groups()
            start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if with_body:
            self.server.served[path.name] = self.server.served.get(path.name, 0) + len(body)
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.server.paths.append(("HEAD", self.path))
        self._file(False)

    def do_GET(self) -> None:
        self.server.paths.append(("GET", self.path))
        url = urlparse(self.path)
        if url.path in ("", "/"):
            self._json(self._landing())
        elif url.path == "/collections":
            self._json({"collections": [self._collection()], "links": []})
        elif url.path == "/collections/sentinel-2-l2a":
            self._json(self._collection())
        elif url.path == "/search":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            params: dict[str, Any] = {}
            for key in ("intersects", "query"):
                if key in query:
                    params[key] = json.loads(query[key])
            if "bbox" in query:
                params["bbox"] = [float(v) for v in query["bbox"].split(",")]
            if "collections" in query:
                params["collections"] = query["collections"].split(",")
            params["datetime"] = query.get("datetime")
            params["method"] = "GET"
            self._search(params)
        else:
            self._file(True)

    def do_POST(self) -> None:
        self.server.paths.append(("POST", self.path))
        if urlparse(self.path).path != "/search":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length", 0))
        params = json.loads(self.rfile.read(length) or b"{}")
        params["method"] = "POST"
        self._search(params)


class Api:
    """Handle on the running fake API: its URL, the source arrays and request logs."""

    def __init__(self, server: ThreadingHTTPServer, arrays: dict[str, np.ndarray]) -> None:
        self.server = server
        self.url = server.base
        self.arrays = arrays

    def item(self, item_id: str) -> pystac.Item:
        found = next(i for i in self.server.items if i["id"] == item_id)
        return pystac.Item.from_dict(found)


@pytest.fixture(scope="module")
def running_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The server and its COGs, built once for the module (writing the COGs takes a moment)."""
    root = tmp_path_factory.mktemp("served")
    (root / "cogs").mkdir()
    arrays = make_cogs(root / "cogs")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StacHandler)
    server.root = root
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    full = scene_footprint()
    far_away = mapping(box(10.0, 50.0, 10.1, 50.1))
    server.items = [
        item_dict(server.base, "S2A_FULL_CLOUD5", "2024-06-10", 5.0, full),
        item_dict(server.base, "S2B_PARTIAL_CLOUD1", "2024-06-12", 1.0, scene_footprint(0.3)),
        item_dict(server.base, "S2A_FULL_CLOUD8", "2024-06-20", 8.0, full),
        item_dict(server.base, "S2B_FULL_CLOUD30", "2024-06-15", 30.0, full),
        item_dict(server.base, "S2A_ELSEWHERE", "2024-06-10", 0.0, far_away),
    ]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Api(server, arrays)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api(running_api: Api) -> Api:
    """The module's server with empty request logs."""
    server = running_api.server
    server.paths, server.searches, server.served = [], [], {}
    return running_api


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def source_window(path: Path, pixel: float = 10.0) -> tuple[int, int, int, int]:
    """``(row_off, col_off, rows, cols)`` of an output file on the 10 m source grid."""
    with rasterio.open(path) as ds:
        t = ds.transform
        return (
            round((ORIGIN[1] - t.f) / pixel),
            round((t.c - ORIGIN[0]) / pixel),
            ds.height,
            ds.width,
        )


# --------------------------------------------------------------------------------------------
# Search and ranking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_search_filters_and_ranks(api: Api, method: str) -> None:
    ranked = search_scenes(AOI, "2024-06-01/2024-06-30", max_cloud=20, url=api.url, method=method)
    assert [c.id for c in ranked] == ["S2A_FULL_CLOUD5", "S2A_FULL_CLOUD8", "S2B_PARTIAL_CLOUD1"]
    assert ranked[0].coverage == pytest.approx(1.0)
    assert ranked[-1].coverage == pytest.approx(0.3, abs=0.02)
    sent = api.server.searches[-1]
    assert sent["method"] == method
    assert sent["query"] == {"eo:cloud_cover": {"lte": 20.0}}
    assert sent["collections"] == ["sentinel-2-l2a"]


def test_rank_scenes_prefers_full_coverage_then_least_cloud(api: Api) -> None:
    items = [api.item(i) for i in ("S2B_PARTIAL_CLOUD1", "S2A_FULL_CLOUD8", "S2A_FULL_CLOUD5")]
    items.append(api.item("S2A_ELSEWHERE"))  # does not touch the AOI: dropped
    assert [c.id for c in rank_scenes(items, AOI)] == [
        "S2A_FULL_CLOUD5",
        "S2A_FULL_CLOUD8",
        "S2B_PARTIAL_CLOUD1",
    ]
    assert "cloud 5.0%" in str(rank_scenes(items, AOI)[0])


def test_no_results_says_which_filters_to_relax(api: Api) -> None:
    with pytest.raises(NoScenesFoundError) as info:
        search_scenes(AOI, "2019-01-01/2019-01-31", max_cloud=3, url=api.url)
    message = str(info.value)
    assert "raise max_cloud (now 3)" in message
    assert "widen the dates" in message
    assert "2019-01-01/2019-01-31" in message
    assert api.url in message


def test_offline_api_gives_clear_message() -> None:
    url = refused_url()
    with pytest.raises(OfflineError) as info:
        search_scenes(AOI, "2024-06-01/2024-06-30", url=url, timeout=5)
    assert url in str(info.value) and "offline" in str(info.value)


# --------------------------------------------------------------------------------------------
# Reading windows
# --------------------------------------------------------------------------------------------


def test_fetch_sentinel2_writes_the_aoi_window(api: Api, tmp_path: Path) -> None:
    out = tmp_path / "out" / "s2.tif"
    path = fetch_sentinel2(
        AOI, "2024-06-01/2024-06-30", out, url=api.url, progress=False, harmonize=False
    )
    assert path == out
    with rasterio.open(out) as ds:
        assert ds.crs == rasterio.crs.CRS.from_string(CRS)
        assert ds.count == 4 and ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.descriptions == BANDS_10M
        assert ds.tags()["stac_item"] == "S2A_FULL_CLOUD5"
        assert ds.tags(1)["band_id"] == "B02"
        assert ds.res == (10.0, 10.0)
        left, bottom, right, top = ds.bounds
        data = ds.read()
    # Whole pixels covering the AOI, less than a pixel beyond its (reprojected) bounds.
    assert left <= AOI_UTM[0] + 1e-6 and right >= AOI_UTM[2] - 1e-6
    assert bottom <= AOI_UTM[1] + 1e-6 and top >= AOI_UTM[3] - 1e-6
    assert AOI_UTM[0] - left < 10 + 2 and right - AOI_UTM[2] < 10 + 2
    row, col, rows, cols = source_window(out)
    for i, band in enumerate(BANDS_10M):
        np.testing.assert_array_equal(data[i], api.arrays[band][row : row + rows, col : col + cols])
    # Only the window's tiles crossed the wire, and only the COGs' own URLs were asked for.
    size = (Path(api.server.root) / "cogs" / "nir.tif").stat().st_size
    assert api.server.served["nir.tif"] < 0.2 * size  # about 6 % here
    cog_paths = [p for _, p in api.server.paths if p.startswith("/cogs/")]
    assert cog_paths and all(p.endswith(".tif") for p in cog_paths)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_harmonize_removes_the_baseline_offset(api: Api, tmp_path: Path) -> None:
    out = download_scene(
        api.item("S2A_FULL_CLOUD5"), AOI, tmp_path / "h.tif", bands=["blue", "B04"],
        progress=False,
    )  # fmt: skip
    row, col, rows, cols = source_window(out)
    with rasterio.open(out) as ds:
        blue, red = ds.read()
        assert ds.descriptions == ("blue", "red")
        assert ds.scales[0] == pytest.approx(1e-4) and ds.offsets[0] == 0
    raw = api.arrays["blue"][row : row + rows, col : col + cols].astype(int)
    np.testing.assert_array_equal(blue, np.clip(raw - 1000, 1, None))
    assert blue.min() >= 1  # 0 stays nodata
    # red has no scale/offset metadata: written unchanged.
    np.testing.assert_array_equal(red, api.arrays["red"][row : row + rows, col : col + cols])


def test_coarser_band_is_resampled_onto_the_10m_grid(api: Api, tmp_path: Path) -> None:
    out = download_scene(
        api.item("S2A_FULL_CLOUD5"), AOI, tmp_path / "mixed.tif", bands=["nir", "B11"],
        progress=False,
    )  # fmt: skip
    row, col, rows, cols = source_window(out)
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("nir", "swir16") and ds.res == (10.0, 10.0)
        swir = ds.read(2)
    r = (row + np.arange(rows)) // 2
    c = (col + np.arange(cols)) // 2
    np.testing.assert_array_equal(swir, api.arrays["swir16"][np.ix_(r, c)])


def test_resolution_20m_and_mask_outside(api: Api, tmp_path: Path) -> None:
    west, south, east, north = AOI
    triangle = {"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                    [west, north], [west, south]]]}  # fmt: skip
    out = download_scene(
        api.item("S2A_FULL_CLOUD5"), triangle, tmp_path / "tri.tif", bands=["red"],
        resolution=20, mask_outside=True, progress=False,
    )  # fmt: skip
    with rasterio.open(out) as ds:
        assert ds.res == (20.0, 20.0)
        assert (ds.transform.c - ORIGIN[0]) % 20 == 0  # still on the scene's grid
        red = ds.read(1)
    rows, cols = red.shape
    assert red[int(rows * 0.8), int(cols * 0.2)] != 0  # south-west: inside the triangle
    assert red[int(rows * 0.1), int(cols * 0.9)] == 0  # north-east: outside, set to nodata
    assert 0.3 < (red == 0).mean() < 0.7  # about half of the bbox


def test_existing_output_is_not_overwritten(api: Api, tmp_path: Path) -> None:
    out = tmp_path / "s2.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fetch_sentinel2(AOI, "2024-06-01/2024-06-30", out, url=api.url, progress=False)
    assert out.read_bytes() == b"keep me"
    assert api.server.searches == []  # refused before any request
    download_scene(api.item("S2A_FULL_CLOUD5"), AOI, out, overwrite=True, progress=False)
    with rasterio.open(out) as ds:
        assert ds.count == 4


def test_aoi_outside_scene_footprint(api: Api, tmp_path: Path) -> None:
    with pytest.raises(AoiOutsideSceneError, match="S2A_ELSEWHERE"):
        download_scene(api.item("S2A_ELSEWHERE"), AOI, tmp_path / "x.tif", progress=False)
    assert not (tmp_path / "x.tif").exists()


def test_aoi_outside_scene_rasters(api: Api, tmp_path: Path) -> None:
    item = api.item("S2A_FULL_CLOUD5")
    item.geometry = None  # no footprint to check first: the rasters' bounds decide
    east_of_scene = transform_bounds(
        CRS, "EPSG:4326", ORIGIN[0] + 11_000, ORIGIN[1] - 1000, ORIGIN[0] + 11_500, ORIGIN[1] - 500
    )
    with pytest.raises(AoiOutsideSceneError, match="outside the rasters"):
        download_scene(item, east_of_scene, tmp_path / "x.tif", progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_aoi_partly_outside_is_clipped_with_a_warning(api: Api, tmp_path: Path, caplog) -> None:
    item = api.item("S2A_FULL_CLOUD5")
    item.geometry = None
    straddling = transform_bounds(
        CRS, "EPSG:4326", ORIGIN[0] + 9_800, ORIGIN[1] - 1000, ORIGIN[0] + 10_600, ORIGIN[1] - 500
    )
    with caplog.at_level("WARNING", logger="helpers.stac"):
        out = download_scene(item, straddling, tmp_path / "edge.tif", bands=["red"], progress=False)
    assert "reaches beyond the rasters" in caplog.text
    with rasterio.open(out) as ds:
        assert ds.bounds.right == ORIGIN[0] + SIZE * 10  # clipped at the scene's east edge


def test_offline_cogs_give_clear_message(api: Api, tmp_path: Path) -> None:
    item = api.item("S2A_FULL_CLOUD5")
    dead = refused_url()
    for asset in item.assets.values():
        asset.href = asset.href.replace(api.url, dead)
    with pytest.raises(OfflineError) as info:
        download_scene(item, AOI, tmp_path / "x.tif", progress=False)
    assert dead in str(info.value) and "offline" in str(info.value)
    assert not (tmp_path / "x.tif").exists()


# --------------------------------------------------------------------------------------------
# Bands and areas
# --------------------------------------------------------------------------------------------


def test_resolve_assets_by_key_band_id_and_eo_bands(api: Api) -> None:
    item = api.item("S2A_FULL_CLOUD5")
    assert resolve_assets(item, ["NIR", "B08", "b8", "B02", "swir16"]) == [
        "nir",
        "nir",
        "nir",
        "blue",
        "swir16",
    ]
    renamed = item.clone()
    renamed.assets = {"B04": item.assets["red"]}  # an API keyed by band id, eo:bands intact
    assert resolve_assets(renamed, ["red"]) == ["B04"]
    with pytest.raises(KeyError, match="blue, green, nir, red, swir16"):
        resolve_assets(item, ["rededge1"])


def test_as_aoi_accepts_bbox_geojson_and_files(make_geojson) -> None:
    square = box(36.80, -1.32, 36.84, -1.28)
    assert as_aoi((36.80, -1.32, 36.84, -1.28)).equals(square)
    assert as_aoi(mapping(square)).equals(square)
    feature = {"type": "Feature", "geometry": mapping(square), "properties": {}}
    assert as_aoi({"type": "FeatureCollection", "features": [feature]}).equals(square)
    assert as_aoi(make_geojson([square])).equals(square)
    with pytest.raises(ValueError, match="west < east"):
        as_aoi((36.84, -1.32, 36.80, -1.28))
    with pytest.raises(ValueError, match="longitude/latitude"):
        as_aoi(AOI_UTM)  # metres, not degrees


def test_defaults_point_at_earth_search() -> None:
    assert stac.EARTH_SEARCH_URL == "https://earth-search.aws.element84.com/v1"
    assert stac.S2_COLLECTION == "sentinel-2-l2a"
    options = stac.gdal_http_options()
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert ".tif" in options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]


def test_a_region_config_downloads_its_sentinel2_scene(api: Api, tmp_path: Path) -> None:
    """imagery.sentinel2 in a region config: load_region(fetch=True) searches, downloads the
    AOI's window once, then validates the labels against it like any local scene."""
    import geopandas as gpd
    import shapely
    import yaml

    from helpers.regions import load_region

    west, south, east, north = AOI
    labels = tmp_path / "buildings.geojson"
    middle = shapely.box(*shapely.box(west, south, east, north).centroid.buffer(1e-4).bounds)
    gpd.GeoDataFrame({"kind": ["building"]}, geometry=[middle], crs="EPSG:4326").to_file(labels)
    config = tmp_path / "s2.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "s2",
                "imagery": {
                    "sentinel2": {"dates": ["2024-06-01/2024-06-30"], "url": api.url},
                    "scale": 0.0001,
                },
                "aoi": [west, south, east, north],
                "labels": {"file": "buildings.geojson", "target": "building"},
                # The AOI's window is small: sizes that fit in it.
                "tiling": {
                    "patch_size": 16,
                    "stride": 8,
                    "tile_size": 16,
                    "tile_stride": 8,
                    "block_size": 32,
                },
                "outputs": {"root": "out"},
            }
        )
    )
    region = load_region(config, fetch=True)
    (scene,) = region.scenes.values()
    assert scene.is_file() and scene.parent == tmp_path / "out" / "imagery"
    assert region.band_names == BANDS_10M and region.rgb == [3, 2, 1]
    with rasterio.open(scene) as ds:
        assert ds.count == 4 and ds.tags()["stac_item"] == "S2A_FULL_CLOUD5"
    modified = scene.stat().st_mtime_ns
    again = load_region(config, fetch=True)  # already there: nothing is downloaded again
    assert again.scenes == region.scenes and scene.stat().st_mtime_ns == modified
