"""Sentinel-2 Level-2A imagery of your own area from a public STAC API.

Sentinel-2 scenes are published as cloud-optimised GeoTIFFs (COGs), one file per band, listed in
STAC catalogues. Because a COG is tiled and has an index, GDAL can read just the tiles that cover
an area of interest over HTTP range requests: a 20 km x 20 km study area costs a few megabytes,
not the ~1 GB of a full scene. The steps, each a function here:

1. :func:`search_scenes` asks the STAC API (default: Earth Search,
   ``https://earth-search.aws.element84.com/v1``, collection ``sentinel-2-l2a``) for the scenes
   that intersect the area, in a date range, under a cloud-cover limit, and ranks them:
   scenes covering the whole area first, least cloud first among them.
2. :func:`download_scene` reads only the area's window of the chosen bands (reprojected to the
   scene's UTM CRS) and writes one local multi-band GeoTIFF with band names, nodata and the
   scene's metadata in its tags.
3. :func:`fetch_sentinel2` does both.

Example::

    from helpers import stac

    path = stac.fetch_sentinel2(
        aoi=(36.80, -1.32, 36.84, -1.28),  # lon/lat bbox: west, south, east, north
        dates="2024-06-01/2024-08-31",
        path="data/my_region/s2_2024.tif",
        bands=("blue", "green", "red", "nir"),
        max_cloud=10,
    )

Values: with ``harmonize=True`` (default) reflectance bands are written as surface reflectance x
10 000 (uint16, nodata 0), the convention of the course's sample scenes, whatever the processing
baseline. Since baseline 04.00 (January 2022) the raw values carry an offset of +1000, recorded
in the STAC metadata (``raster:bands`` scale and offset); harmonizing removes it, so scenes before
and after 2022 compare directly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import requests
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError, WindowError
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from tqdm.auto import tqdm

from helpers.download import OfflineError
from helpers.files import atomic_path
from helpers.raster import RasterError

__all__ = [
    "DEFAULT_BANDS",
    "EARTH_SEARCH_URL",
    "S2_BANDS",
    "S2_COLLECTION",
    "AoiOutsideSceneError",
    "NoScenesFoundError",
    "SceneCandidate",
    "as_aoi",
    "download_scene",
    "fetch_sentinel2",
    "gdal_http_options",
    "rank_scenes",
    "resolve_assets",
    "search_scenes",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
AoiLike = Sequence[float] | BaseGeometry | Mapping[str, Any] | PathLike

#: Earth Search by Element 84: a free STAC API over the Sentinel-2 COGs on AWS (no account).
EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
#: Sentinel-2 Level-2A (bottom-of-atmosphere reflectance) in Earth Search.
S2_COLLECTION = "sentinel-2-l2a"
#: Bands read by default: the 10 m visible and near-infrared bands, as in the sample scenes.
DEFAULT_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")

#: Earth Search asset key -> (Sentinel-2 band id, native resolution in metres). Bands can be
#: asked for by asset key ("nir"), band id ("B08", "B8") or the ``eo:bands`` names in the item.
S2_BANDS: dict[str, tuple[str, int]] = {
    "coastal": ("B01", 60),
    "blue": ("B02", 10),
    "green": ("B03", 10),
    "red": ("B04", 10),
    "rededge1": ("B05", 20),
    "rededge2": ("B06", 20),
    "rededge3": ("B07", 20),
    "nir": ("B08", 10),
    "nir08": ("B8A", 20),
    "nir09": ("B09", 60),
    "swir16": ("B11", 20),
    "swir22": ("B12", 20),
    "scl": ("SCL", 20),
}

# Coverage at or above this fraction counts as covering the whole AOI (float round-off).
_FULL_COVERAGE = 0.999


class NoScenesFoundError(LookupError):
    """A STAC search returned no scene for the area, dates and cloud limit."""


class AoiOutsideSceneError(RasterError):
    """The area of interest does not overlap the scene (its footprint or its rasters)."""


# --------------------------------------------------------------------------------------------
# Area of interest
# --------------------------------------------------------------------------------------------


def as_aoi(aoi: AoiLike) -> BaseGeometry:
    """Turn an area of interest into a shapely geometry in lon/lat (EPSG:4326).

    Args:
        aoi: A bbox ``(west, south, east, north)`` in degrees; a shapely geometry in lon/lat; a
            GeoJSON geometry, Feature or FeatureCollection (dict, lon/lat as RFC 7946 requires);
            or the path of a vector file in any CRS (reprojected, features merged).

    Returns:
        A valid, non-empty shapely geometry in EPSG:4326.

    Raises:
        ValueError: The bbox is malformed or not in lon/lat (e.g. metres), or the geometry is
            empty.
        FileNotFoundError: A path that does not exist.

    Example:
        >>> as_aoi((36.80, -1.32, 36.84, -1.28)).bounds
        (36.8, -1.32, 36.84, -1.28)
    """
    if isinstance(aoi, BaseGeometry):
        geometry = aoi
    elif isinstance(aoi, Mapping):
        if aoi.get("type") == "FeatureCollection":
            geometry = shapely.union_all([shape(f["geometry"]) for f in aoi.get("features", [])])
        elif aoi.get("type") == "Feature":
            geometry = shape(aoi["geometry"])
        else:
            geometry = shape(aoi)
    elif isinstance(aoi, (str, os.PathLike)):
        from helpers.labels import read_vectors

        geometry = shapely.union_all(read_vectors(aoi, crs="EPSG:4326").geometry.values)
    else:
        try:
            west, south, east, north = (float(v) for v in aoi)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"aoi={aoi!r} is not a bbox (west, south, east, north), a geometry, GeoJSON "
                "or a vector file path."
            ) from exc
        if not (west < east and south < north):
            raise ValueError(
                f"aoi bbox {aoi!r} must be (west, south, east, north) with west < east and "
                "south < north, in degrees of longitude and latitude."
            )
        geometry = box(west, south, east, north)
    if geometry.is_empty:
        raise ValueError("The area of interest is empty: pass a bbox or a polygon with an area.")
    minx, miny, maxx, maxy = geometry.bounds
    if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
        raise ValueError(
            f"The area of interest has bounds {geometry.bounds}, which are not longitude/latitude "
            "degrees (EPSG:4326). Pass lon/lat coordinates (x = longitude first), or a vector "
            "file, which is reprojected for you."
        )
    return shapely.make_valid(geometry)


def _equal_area_ratio(part: BaseGeometry, whole: BaseGeometry) -> float:
    """Area of ``part`` over area of ``whole`` (both lon/lat), measured in the AOI's UTM zone."""
    if whole.area == 0:  # a point or a line: covered or not
        return 1.0 if part.covers(whole) else 0.0
    from pyproj import Transformer

    # The standard UTM zone of the AOI's centre (the Norway/Svalbard exceptions do not matter
    # for an area ratio); querying the PROJ database for it is much slower.
    lon, lat = whole.centroid.x, whole.centroid.y
    zone = min(int((lon + 180) // 6) + 1, 60)
    epsg = (32600 if lat >= 0 else 32700) + zone
    transformer = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)

    def to_utm(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(part, to_utm).area / shapely.transform(whole, to_utm).area


# --------------------------------------------------------------------------------------------
# Search and ranking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneCandidate:
    """A scene found by :func:`search_scenes`, with what the ranking looked at.

    Attributes:
        item: The :class:`pystac.Item` (assets, properties, footprint).
        cloud_cover: ``eo:cloud_cover`` in percent of the scene (None if not reported).
        coverage: Fraction 0-1 of the AOI inside the scene's footprint.
        datetime: Acquisition time.
    """

    item: Any
    cloud_cover: float | None
    coverage: float
    datetime: datetime | None

    @property
    def id(self) -> str:
        """The STAC item id, e.g. ``S2B_37MBU_20240612_0_L2A``."""
        return self.item.id

    def __str__(self) -> str:
        cloud = "?" if self.cloud_cover is None else f"{self.cloud_cover:.1f}%"
        when = self.datetime.date().isoformat() if self.datetime else "?"
        return f"{self.id} ({when}, cloud {cloud}, covers {self.coverage:.0%} of the AOI)"


def rank_scenes(items: Iterable[Any], aoi: AoiLike) -> list[SceneCandidate]:
    """Order scenes best first: full AOI coverage, then least cloud, then most coverage.

    Scenes that cover the whole AOI come first, least cloudy first (ties: more recent first,
    then by id, so the order is deterministic). Scenes covering only part of the AOI follow,
    most coverage first, then least cloud: a clear scene that misses most of the area is
    worth less than a slightly cloudier one that covers all of it. Scenes that do not touch
    the AOI are dropped.

    Args:
        items: STAC items (``pystac.Item``) with ``geometry`` and ``eo:cloud_cover``.
        aoi: The area of interest, see :func:`as_aoi`.

    Returns:
        Ranked :class:`SceneCandidate` objects.

    Example:
        >>> best = rank_scenes(search.items(), aoi)[0]  # doctest: +SKIP
    """
    area = as_aoi(aoi)
    candidates = []
    for item in items:
        footprint = shape(item.geometry) if item.geometry else None
        if footprint is None and item.bbox:  # 2-D or 3-D bbox
            half = len(item.bbox) // 2
            footprint = box(*item.bbox[:2], *item.bbox[half : half + 2])
        if footprint is None:
            coverage = 0.0
        else:
            coverage = _equal_area_ratio(footprint.intersection(area), area)
        if coverage <= 0:
            continue
        cloud = item.properties.get("eo:cloud_cover")
        candidates.append(
            SceneCandidate(
                item=item,
                cloud_cover=None if cloud is None else float(cloud),
                coverage=min(1.0, coverage),
                datetime=item.datetime,
            )
        )

    def key(c: SceneCandidate) -> tuple:
        cloud = math.inf if c.cloud_cover is None else c.cloud_cover
        newest_first = -c.datetime.timestamp() if c.datetime else math.inf
        if c.coverage >= _FULL_COVERAGE:
            return (0, cloud, 0.0, newest_first, c.id)
        return (1, -round(c.coverage, 3), cloud, newest_first, c.id)

    return sorted(candidates, key=key)


def _api_error(url: str, exc: Exception) -> Exception:
    cause = exc.__cause__ or exc.__context__
    status = getattr(exc, "status_code", None)
    if isinstance(cause, (requests.ConnectionError, requests.Timeout)) or (
        status is None and isinstance(exc, (requests.ConnectionError, requests.Timeout))
    ):
        return OfflineError(
            f"Cannot reach the STAC API at {url}: {cause or exc}. This machine seems to be "
            "offline, or a proxy/firewall blocks it. Check the connection and run again; or "
            "download a GeoTIFF of your area by hand (e.g. from the Copernicus Browser) and use "
            "it as local imagery instead of a Sentinel-2 query."
        )
    return RuntimeError(
        f"The STAC API at {url} answered with an error"
        + (f" (HTTP {status})" if status else "")
        + f": {str(exc)[:500]}. Check the url= and collection= arguments; if the service is "
        "down, try again later."
    )


def search_scenes(
    aoi: AoiLike,
    dates: str | Sequence[str | datetime],
    *,
    max_cloud: float | None = 20.0,
    url: str = EARTH_SEARCH_URL,
    collection: str = S2_COLLECTION,
    max_items: int = 200,
    timeout: float = 60.0,
    method: str = "POST",
) -> list[SceneCandidate]:
    """Search a STAC API for scenes over an area and rank them (see :func:`rank_scenes`).

    Args:
        aoi: Area of interest, see :func:`as_aoi` (lon/lat bbox, geometry, GeoJSON, vector
            file).
        dates: ``"2024-06-01/2024-08-31"``, a ``(start, end)`` pair of strings or datetimes, or
            one day ``"2024-06-15"``.
        max_cloud: Highest ``eo:cloud_cover`` (percent of the scene) to accept; None for any.
        url: The STAC API's root URL.
        collection: The collection to search.
        max_items: Stop after this many items (a busy AOI over a year has ~150 scenes).
        timeout: Seconds to wait for the API.
        method: ``"POST"`` (JSON body, the STAC API default) or ``"GET"`` (query string) for
            APIs that only accept one of them.

    Returns:
        Ranked :class:`SceneCandidate` objects, best first (never empty).

    Raises:
        NoScenesFoundError: Nothing matched; the message says which filter to relax.
        helpers.download.OfflineError: The API cannot be reached.
        RuntimeError: The API answered with an error.

    Example:
        >>> scenes = search_scenes((36.80, -1.32, 36.84, -1.28), "2024-06-01/2024-08-31")
        ... # doctest: +SKIP
        >>> print(scenes[0])  # doctest: +SKIP
        S2B_37MBU_20240612_0_L2A (2024-06-12, cloud 0.4%, covers 100% of the AOI)
    """
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    area = as_aoi(aoi)
    parameters: dict[str, Any] = {
        "collections": [collection],
        "intersects": mapping(area),
        "datetime": dates if isinstance(dates, str) else tuple(dates),
        "max_items": max_items,
        "limit": min(100, max_items),
    }
    if max_cloud is not None:
        parameters["query"] = {"eo:cloud_cover": {"lte": float(max_cloud)}}
    try:
        client = Client.open(url, timeout=timeout)
        items = list(client.search(method=method.upper(), **parameters).items())
    except (APIError, requests.RequestException) as exc:
        raise _api_error(url, exc) from exc
    ranked = rank_scenes(items, area)
    if not ranked:
        west, south, east, north = (round(v, 5) for v in area.bounds)
        cloud = "any cloud cover" if max_cloud is None else f"cloud cover <= {max_cloud:g}%"
        relax = [
            "widen the dates (dates=...; Sentinel-2 revisits every ~5 days, but clouds can hide "
            "a region for weeks)",
        ]
        if max_cloud is not None:
            relax.insert(0, f"raise max_cloud (now {max_cloud:g})")
        relax.append(
            "check the AOI: lon/lat order (west, south, east, north), and that it is on land "
            "or coast that Sentinel-2 images"
        )
        raise NoScenesFoundError(
            f"No {collection} scenes at {url} intersect the AOI (lon {west}..{east}, lat "
            f"{south}..{north}) for dates {dates!r} with {cloud}"
            + (f" ({len(items)} returned, none overlapping the AOI)" if items else "")
            + ". Relax the filters: "
            + "; ".join(relax)
            + "."
        )
    log.info("%d scene(s) found; best: %s", len(ranked), ranked[0])
    return ranked


# --------------------------------------------------------------------------------------------
# Reading windows of the COGs
# --------------------------------------------------------------------------------------------


def gdal_http_options(retries: int = 3, **overrides: Any) -> dict[str, Any]:
    """GDAL settings for reading COGs over HTTP efficiently and only from the asset's URL.

    ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` stops GDAL from listing the remote folder (one
    request per open, and sidecar probes to other paths); ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``
    keeps it from probing ``.aux.xml``/``.ovr`` files. Use them in ``rasterio.Env(**options)``.

    Args:
        retries: GDAL's retries on HTTP 429/5xx answers.
        **overrides: Further or different GDAL configuration options.

    Returns:
        A dict of configuration options.
    """
    options: dict[str, Any] = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "GDAL_HTTP_MAX_RETRY": str(int(retries)),
        "GDAL_HTTP_RETRY_DELAY": "1",
        "VSI_CACHE": "TRUE",
    }
    options.update(overrides)
    return options


def _band_id_key(name: str) -> str:
    """'B8' -> 'B08', 'b8a' -> 'B8A', 'B11' -> 'B11'."""
    name = name.strip().upper()
    if len(name) == 2 and name[0] == "B" and name[1].isdigit():
        return f"B0{name[1]}"
    return name


def resolve_assets(item: Any, bands: Sequence[str]) -> list[str]:
    """Map band names to the item's asset keys.

    A band is found by asset key (``"nir"``), by Sentinel-2 band id (``"B08"``, ``"B8"``) via
    :data:`S2_BANDS`, or by the ``name``/``common_name`` in an asset's ``eo:bands`` metadata
    (for APIs that key assets differently, e.g. ``"B08"``).

    Args:
        item: A ``pystac.Item``.
        bands: Band names.

    Returns:
        Asset keys, one per band, in order.

    Raises:
        KeyError: A band matches no asset; the message lists the item's raster assets.

    Example:
        >>> resolve_assets(item, ["B04", "nir"])  # doctest: +SKIP
        ['red', 'nir']
    """
    if isinstance(bands, str):
        bands = [bands]
    assets = item.assets
    by_id = {band_id: key for key, (band_id, _) in S2_BANDS.items()}
    lowered = {k.lower(): k for k in assets}
    # eo:bands names and common names of each asset ("B08", "nir"), for differently keyed APIs.
    eo_names: dict[str, str] = {}
    for asset_key, asset in assets.items():
        for meta in asset.extra_fields.get("eo:bands") or []:
            for field in ("name", "common_name"):
                if meta.get(field):
                    eo_names.setdefault(str(meta[field]).lower(), asset_key)
    keys = []
    for band in bands:
        wanted = str(band).strip().lower()
        key = lowered.get(wanted)
        if key is None and by_id.get(_band_id_key(wanted)) in assets:
            key = by_id[_band_id_key(wanted)]
        if key is None:
            key = eo_names.get(wanted)
        if key is None:
            rasters = sorted(
                k
                for k, a in assets.items()
                if "image/tiff" in (a.media_type or "") or "data" in (a.roles or [])
            ) or sorted(assets)
            raise KeyError(
                f"Band {band!r} is not an asset of scene {item.id}; its raster assets are "
                f"{', '.join(rasters)}. Pass asset keys or Sentinel-2 band ids (B02, B8A, ...)."
            )
        keys.append(key)
    return keys


def _is_offline_message(message: str) -> bool:
    text = message.lower()
    return any(
        hint in text
        for hint in (
            "could not resolve",
            "couldn't resolve",
            "failed to connect",
            "couldn't connect",
            "connection refused",
            "timed out",
            "network is unreachable",
        )
    )


def _open_asset(href: str, item_id: str, key: str) -> rasterio.io.DatasetReader:
    try:
        return rasterio.open(href)
    except RasterioIOError as exc:
        if _is_offline_message(str(exc)):
            raise OfflineError(
                f"Cannot read band {key!r} of scene {item_id} from {href}: {exc}. This machine "
                "seems to be offline, or a proxy/firewall blocks it. Check the connection and "
                "run again."
            ) from exc
        raise RasterError(
            f"GDAL cannot read band {key!r} of scene {item_id} from {href}: {exc}. The file may "
            "have moved (search again for a fresh item) or need signing/credentials."
        ) from exc


def _scale_offset(asset: Any) -> tuple[float | None, float | None]:
    bands = asset.extra_fields.get("raster:bands") or []
    if not bands:
        return None, None
    scale, offset = bands[0].get("scale"), bands[0].get("offset")
    return (None if scale is None else float(scale)), (None if offset is None else float(offset))


def _pixel_window(bounds: tuple[float, float, float, float], transform: Affine) -> Window:
    """The window of whole pixels that covers ``bounds`` (outward-rounded)."""
    window = from_bounds(*bounds, transform=transform)
    eps = 1e-6
    col0 = math.floor(window.col_off + eps)
    row0 = math.floor(window.row_off + eps)
    col1 = math.ceil(window.col_off + window.width - eps)
    row1 = math.ceil(window.row_off + window.height - eps)
    return Window(col0, row0, max(col1 - col0, 1), max(row1 - row0, 1))


def _read_band(
    src: rasterio.io.DatasetReader,
    window: Window,
    grid: Affine,
    crs: CRS,
    out_transform: Affine,
    nodata: float,
    resampling: Resampling,
) -> np.ndarray:
    """One band on the output grid, with the source's nodata pixels set to ``nodata``."""
    if src.crs == crs and src.transform.almost_equals(grid):
        data = src.read(1, window=window)  # the output grid is this band's own
        if src.nodata is not None and src.nodata != nodata:
            data = np.where(data == src.nodata, nodata, data)
        return data
    # Another pixel size (20 m, 60 m) or grid: resample onto the output grid; the VRT reads
    # only the source tiles under the window.
    with WarpedVRT(
        src,
        crs=crs,
        transform=out_transform,
        width=int(window.width),
        height=int(window.height),
        resampling=resampling,
        src_nodata=src.nodata,
        nodata=nodata,
    ) as vrt:
        return vrt.read(1)


def download_scene(
    item: Any,
    aoi: AoiLike,
    path: PathLike,
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    resolution: float | None = None,
    resampling: str | Resampling = "nearest",
    harmonize: bool = True,
    mask_outside: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    gdal_options: Mapping[str, Any] | None = None,
) -> Path:
    """Read the AOI's window of some bands of a STAC item and write one local GeoTIFF.

    The output grid is the scene's own: its UTM CRS, and the pixel grid of the finest band
    asked for (10 m for blue/green/red/nir), cut to the whole pixels covering the AOI's
    bounding box (reprojected to that CRS). Bands on another grid (20 m, 60 m) are resampled
    onto it with ``resampling``; only the COG tiles under the window are transferred.

    Args:
        item: A ``pystac.Item`` (e.g. ``search_scenes(...)[0].item``).
        aoi: Area of interest, see :func:`as_aoi`.
        path: Output GeoTIFF; written atomically.
        bands: Band names in output order, see :func:`resolve_assets`.
        resolution: Output pixel size in the scene CRS units (metres); None keeps the finest
            band's. The grid stays aligned with the scene's origin.
        resampling: How bands on a coarser or finer grid are resampled ("nearest" keeps
            values unchanged; "bilinear" is smoother for reflectance; never use it for SCL).
        harmonize: Convert reflectance bands with STAC ``raster:bands`` scale/offset to
            reflectance x 10 000 (removes the +1000 offset of processing baseline >= 04.00).
            Valid pixels stay >= 1, so 0 remains nodata.
        mask_outside: Set pixels outside the AOI polygon (not just its bbox) to nodata; pixels
            the polygon touches are kept.
        overwrite: Replace an existing ``path``.
        progress: Show a progress bar over bands.
        gdal_options: GDAL configuration overriding :func:`gdal_http_options`.

    Returns:
        ``path``: a tiled, DEFLATE-compressed GeoTIFF with one band per entry of ``bands``,
        described by asset key ("blue", "nir", ...), nodata 0 (or the assets' nodata), the
        scene's CRS, and tags ``stac_item``, ``datetime``, ``cloud_cover``, ``collection`` (per
        band: ``asset``, ``href``, ``band_id``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        AoiOutsideSceneError: The AOI does not overlap the scene.
        KeyError: A band is not an asset of the item.
        helpers.download.OfflineError: The COGs cannot be reached.
        RasterError: GDAL cannot read an asset.

    Example:
        >>> best = search_scenes(aoi, "2024-06-01/2024-08-31")[0]  # doctest: +SKIP
        >>> download_scene(best.item, aoi, "s2.tif", bands=["red", "nir"])  # doctest: +SKIP
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    area = as_aoi(aoi)
    if item.geometry and not shape(item.geometry).intersects(area):
        fp = tuple(round(v, 4) for v in shape(item.geometry).bounds)
        raise AoiOutsideSceneError(
            f"The AOI (lon/lat bounds {tuple(round(v, 4) for v in area.bounds)}) lies outside "
            f"scene {item.id} (footprint bounds {fp}). Use a scene found by "
            "search_scenes(aoi, ...) for this AOI, or check the AOI's coordinates."
        )
    keys = resolve_assets(item, bands)
    if isinstance(resampling, str):
        resampling = Resampling[resampling.lower()]
    options = gdal_http_options()
    options.update(gdal_options or {})
    with rasterio.Env(**options), contextlib.ExitStack() as stack:
        sources = [stack.enter_context(_open_asset(item.assets[k].href, item.id, k)) for k in keys]
        reference = min(sources, key=lambda ds: abs(ds.res[0]))
        crs: CRS = reference.crs
        grid = reference.transform
        full_width, full_height = reference.width, reference.height
        if resolution is not None:
            factor = abs(grid.a) / float(resolution)
            grid = Affine(float(resolution), 0, grid.c, 0, -float(resolution), grid.f)
            full_width = math.ceil(reference.width * factor)
            full_height = math.ceil(reference.height * factor)
        # Densified first: straight lon/lat edges are curves in UTM.
        step = max(area.bounds[2] - area.bounds[0], area.bounds[3] - area.bounds[1]) / 32
        dense = shapely.segmentize(area, step) if step > 0 else area
        aoi_projected = shape(transform_geom("EPSG:4326", crs, mapping(dense)))
        wanted = _pixel_window(aoi_projected.bounds, grid)
        try:
            window = wanted.intersection(Window(0, 0, full_width, full_height))
        except WindowError:
            window = None
        if window is None or window.width < 1 or window.height < 1:
            b = reference.bounds
            raise AoiOutsideSceneError(
                f"The AOI (bounds {tuple(round(v, 1) for v in aoi_projected.bounds)} in "
                f"{crs.to_string()}) lies outside the rasters of scene {item.id} (bounds "
                f"{(round(b.left, 1), round(b.bottom, 1), round(b.right, 1), round(b.top, 1))})."
                " Choose a scene that covers the AOI (search_scenes ranks them by coverage)."
            )
        window = Window(
            int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        )
        if window.width * window.height < wanted.width * wanted.height:
            log.warning(
                "The AOI reaches beyond the rasters of scene %s; the output covers only the "
                "%.0f %% of its bounding box inside them.",
                item.id,
                100 * window.width * window.height / (wanted.width * wanted.height),
            )
        out_transform = window_transform(window, grid)
        height, width = int(window.height), int(window.width)
        nodata = next((ds.nodata for ds in sources if ds.nodata is not None), 0)
        out_dtype = np.result_type(*[np.dtype(ds.dtypes[0]) for ds in sources])
        outside = None
        if mask_outside:
            outside = geometry_mask(
                [mapping(aoi_projected)],
                out_shape=(height, width),
                transform=out_transform,
                all_touched=True,  # keep the boundary pixels the AOI only partly covers
            )
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": len(keys),
            "dtype": out_dtype.name,
            "crs": crs,
            "transform": out_transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        if np.issubdtype(out_dtype, np.integer):
            profile["predictor"] = 2
        cloud = item.properties.get("eo:cloud_cover")
        # Band by band straight into the file: memory stays at one band of the window.
        with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            scales: list[float] = []
            offsets: list[float] = []
            pairs = list(zip(keys, sources, strict=True))
            for i, (key, src) in enumerate(
                tqdm(pairs, desc="read bands", unit="band", disable=not progress), start=1
            ):
                data = _read_band(src, window, grid, crs, out_transform, nodata, resampling)
                scale, offset = _scale_offset(item.assets[key])
                if harmonize and scale is not None and key != "scl":
                    valid = data != nodata
                    reflectance = data.astype("float64") * scale + (offset or 0.0)
                    scaled = np.clip(np.rint(reflectance * 10_000), 1, np.iinfo("uint16").max)
                    data = np.where(valid, scaled, nodata)
                    scale, offset = 1e-4, 0.0
                if outside is not None:
                    data = np.where(outside, nodata, data)
                dst.write(data.astype(out_dtype, copy=False), i)
                scales.append(1.0 if scale is None else scale)
                offsets.append(0.0 if offset is None else offset)
                band_id = S2_BANDS.get(key, (key, None))[0]
                dst.update_tags(i, asset=key, href=item.assets[key].href, band_id=band_id)
            dst.descriptions = tuple(keys)
            dst.scales = tuple(scales)
            dst.offsets = tuple(offsets)
            dst.update_tags(
                stac_item=item.id,
                collection=item.collection_id or "",
                datetime=item.datetime.isoformat() if item.datetime else "",
                cloud_cover="" if cloud is None else str(cloud),
                harmonized=str(bool(harmonize)).lower(),
            )
    log.info("Wrote %s (%d x %d px, bands %s) from %s", path, width, height, keys, item.id)
    return path


def fetch_sentinel2(
    aoi: AoiLike,
    dates: str | Sequence[str | datetime],
    path: PathLike,
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    max_cloud: float | None = 20.0,
    url: str = EARTH_SEARCH_URL,
    collection: str = S2_COLLECTION,
    resolution: float | None = None,
    resampling: str | Resampling = "nearest",
    harmonize: bool = True,
    mask_outside: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    gdal_options: Mapping[str, Any] | None = None,
) -> Path:
    """Search for the best Sentinel-2 L2A scene over an AOI and write its window as a GeoTIFF.

    :func:`search_scenes` then :func:`download_scene` with the best-ranked scene; the chosen
    scene is logged and recorded in the file's tags. See those functions for the arguments.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before searching).
        NoScenesFoundError: No scene matched; the message says which filter to relax.
        AoiOutsideSceneError, KeyError, RasterError: See :func:`download_scene`.
        helpers.download.OfflineError: The API or the COGs cannot be reached.

    Example:
        >>> fetch_sentinel2((36.80, -1.32, 36.84, -1.28), "2024-06-01/2024-08-31",
        ...                 "data/my_region/s2_2024.tif")  # doctest: +SKIP
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    ranked = search_scenes(
        aoi, dates, max_cloud=max_cloud, url=url, collection=collection, timeout=timeout
    )
    best = ranked[0]
    log.info("Using %s", best)
    return download_scene(
        best.item,
        aoi,
        path,
        bands=bands,
        resolution=resolution,
        resampling=resampling,
        harmonize=harmonize,
        mask_outside=mask_outside,
        overwrite=overwrite,
        progress=progress,
        gdal_options=gdal_options,
    )
