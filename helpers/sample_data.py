"""The course's synthetic sample region: a georeferenced two-date multispectral scene with labels.

Every notebook of the course runs offline on this region. It imitates the edge of a tropical city
seen by a very-high-resolution satellite (Blue, Green, Red, NIR at 1 m): a meandering river,
fields, bushland, a formal town with a street grid, informal settlements that grow between the two
dates, roads, trees, building shadows, clouds and their shadows, a nodata corner beyond the swath
edge, PSF blur and sensor noise. Ground truth comes with it: land cover and cloud masks per date,
informal-settlement outlines and building footprints as GeoJSON.

The place is synthetic: it is generated from a seed and does not show any real town.

How it is built (so it scales to 16384 x 16384 px with bounded memory): a vector layout is made
first in a UTM frame (macro land use, then parcels, blocks, buildings, shadows, trees), then the
rasters are rendered in horizontal strips that are written straight into tiled GeoTIFFs.

Example:
    >>> from helpers.sample_data import ensure_sample_region
    >>> region = ensure_sample_region("data/generated/sample", size=512)  # doctest: +SKIP
    >>> sorted(region.scenes)  # doctest: +SKIP
    ['2021-06-15', '2024-06-20']
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.windows import Window
from tqdm.auto import tqdm

from helpers._scene_layout import build_layout
from helpers._scene_render import StripRenderer
from helpers.files import atomic_write_text, partial_path

__all__ = [
    "CLOUD_CLASSES",
    "DATES",
    "GENERATOR_VERSION",
    "LANDCOVER_CLASSES",
    "SampleRegion",
    "ensure_sample_region",
    "generate_sample_region",
    "load_sample_region",
    "main",
    "measure_baselines",
    "render_previews",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"
DATES: tuple[str, str] = ("2021-06-15", "2024-06-20")
BAND_NAMES = ("blue", "green", "red", "nir")
LANDCOVER_CLASSES: dict[int, tuple[str, str]] = {
    1: ("water", "#2b6cb0"),
    2: ("trees", "#1f6f3a"),
    3: ("grass_crops", "#8cc63f"),
    4: ("bare_soil", "#c8a165"),
    5: ("road", "#6b6b6b"),
    6: ("building_formal", "#d9534f"),
    7: ("building_informal", "#f0ad4e"),
}
CLOUD_CLASSES: dict[int, tuple[str, str]] = {
    0: ("clear", "#00000000"),
    1: ("cloud", "#f7f7f7"),
    2: ("cloud_shadow", "#4a4a8a"),
}
CLOUD_NODATA = 255
MIN_SIZE = 256
EPSG = 32737  # UTM zone 37S
# Bottom-left corner of the scene in UTM 37S: plausible peri-urban coordinates in East Africa.
ORIGIN_EASTING, ORIGIN_NORTHING_TOP = 516000.0, 9252000.0
DEFAULT_DIR = Path("data/generated/sample")


@dataclass
class SampleRegion:
    """Paths of a generated sample region; dicts are keyed by the date strings in :data:`DATES`."""

    root: Path
    dates: tuple[str, str]
    scenes: dict[str, Path]
    landcover: dict[str, Path]
    clouds: dict[str, Path]
    settlements: dict[str, Path]
    buildings: dict[str, Path]
    manifest: dict


# --------------------------------------------------------------------------- names and checks


def _year(date: str) -> str:
    return date[:4]


def _file_names(footprints: bool) -> dict[str, str]:
    names = {}
    for date in DATES:
        y = _year(date)
        names[f"scene_{y}"] = f"scene_{y}.tif"
        names[f"landcover_{y}"] = f"landcover_{y}.tif"
        names[f"clouds_{y}"] = f"clouds_{y}.tif"
        names[f"settlements_{y}"] = f"settlements_{y}.geojson"
        if footprints:
            names[f"buildings_{y}"] = f"buildings_{y}.geojson"
    return names


def _check_args(size: int, pixel_size: float, seed: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(
            f"size must be an integer >= {MIN_SIZE} pixels, got {size!r}; pass e.g. 512."
        )
    if not np.isfinite(pixel_size) or pixel_size <= 0:
        raise ValueError(f"pixel_size must be a positive number of metres, got {pixel_size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")


def _params(size: int, pixel_size: float, seed: int, footprints: bool) -> dict:
    return {
        "size": int(size),
        "pixel_size": float(pixel_size),
        "seed": int(seed),
        "crs": f"EPSG:{EPSG}",
        "footprints": bool(footprints),
    }


def _matches(manifest: dict, params: dict) -> bool:
    p = manifest.get("parameters", {})
    same = all(p.get(k) == params[k] for k in ("size", "pixel_size", "seed", "crs"))
    same &= manifest.get("generator_version") == GENERATOR_VERSION
    # a region with footprints also serves a request without them
    return bool(same and (p.get("footprints", False) or not params["footprints"]))


def _read_manifest(root: Path) -> dict | None:
    path = root / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _region_from_manifest(root: Path, manifest: dict) -> SampleRegion:
    files = manifest["files"]

    def pick(prefix):
        return {
            d: root / files[f"{prefix}_{_year(d)}"]["name"]
            for d in DATES
            if f"{prefix}_{_year(d)}" in files
        }

    return SampleRegion(
        root=root,
        dates=DATES,
        scenes=pick("scene"),
        landcover=pick("landcover"),
        clouds=pick("clouds"),
        settlements=pick("settlements"),
        buildings=pick("buildings"),
        manifest=manifest,
    )


def load_sample_region(out_dir: str | os.PathLike) -> SampleRegion:
    """Open a generated sample region (its manifest marks it complete).

    Args:
        out_dir: Folder the region was generated into.

    Returns:
        The region's file paths and manifest.

    Raises:
        FileNotFoundError: If the folder has no complete region (no manifest or a missing file).
    """
    root = Path(out_dir)
    manifest = _read_manifest(root)
    how = (
        "generate it with helpers.sample_data.ensure_sample_region(...) or "
        f"`python -m helpers.sample_data --out {root}`."
    )
    if manifest is None:
        raise FileNotFoundError(f"No complete sample region in '{root}' (no manifest.json); {how}")
    region = _region_from_manifest(root, manifest)
    for info in manifest["files"].values():
        if not (root / info["name"]).is_file():
            raise FileNotFoundError(
                f"Sample region in '{root}' is incomplete: '{info['name']}' is missing; {how}"
            )
    return region


# --------------------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _overview_factors(size: int) -> list[int]:
    f, out = 2, []
    while size / f >= 256:
        out.append(f)
        f *= 2
    return out


def _hex_rgba(hx: str) -> tuple[int, int, int, int]:
    hx = hx.lstrip("#")
    a = int(hx[6:8], 16) if len(hx) == 8 else 255
    return int(hx[0:2], 16), int(hx[2:4], 16), int(hx[4:6], 16), a


def _profile(size: int, pixel_size: float, count: int, dtype: str, nodata) -> dict:
    block = 256 if size >= 256 else 128
    return {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "crs": CRS.from_epsg(EPSG),
        "transform": Affine(pixel_size, 0, ORIGIN_EASTING, 0, -pixel_size, ORIGIN_NORTHING_TOP),
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel" if count > 1 else "band",
    }


def _to_lonlat(geoms: np.ndarray, size: int, pixel_size: float) -> np.ndarray:
    """Local layout frame (metres from the bottom-left corner) -> EPSG:4326 lon/lat, 1e-7 deg."""
    tf = Transformer.from_crs(EPSG, 4326, always_xy=True)
    y0 = ORIGIN_NORTHING_TOP - size * pixel_size

    def fn(c):
        lon, lat = tf.transform(c[:, 0] + ORIGIN_EASTING, c[:, 1] + y0)
        return np.round(np.column_stack([lon, lat]), 7)

    out = shapely.transform(geoms, fn)
    bad = ~shapely.is_valid(out)
    if bad.any():  # parts that touch after rounding: snap to the 1e-7 grid with valid output
        out[bad] = shapely.set_precision(out[bad], 1e-7)
    return out


def _write_geojson(path: Path, geoms: np.ndarray, props: list[dict]) -> None:
    """Write a FeatureCollection (RFC 7946: lon/lat, no crs member), one feature per line."""
    gj = shapely.to_geojson(geoms) if len(geoms) else []
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"type": "FeatureCollection", "features": [\n')
        for i, (g, p) in enumerate(zip(gj, props, strict=True)):
            sep = ",\n" if i else ""
            f.write(f'{sep}{{"type": "Feature", "properties": {json.dumps(p)}, "geometry": {g}}}')
        f.write("\n]}\n")


def _atomic_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def generate_sample_region(
    out_dir: str | os.PathLike = DEFAULT_DIR,
    *,
    size: int = 2048,
    pixel_size: float = 1.0,
    seed: int = 42,
    overwrite: bool = False,
    footprints: bool = True,
    progress: bool = True,
) -> SampleRegion:
    """Generate the synthetic sample region into ``out_dir``.

    Files are written under temporary names and renamed when complete; ``manifest.json`` comes
    last, so a folder with a manifest always holds a complete region.

    Args:
        out_dir: Destination folder (created if needed).
        size: Scene width and height in pixels (>= 256).
        pixel_size: Ground sampling distance in metres (> 0).
        seed: Seed of everything random; the same arguments give byte-identical files.
        overwrite: Replace a complete region generated with other parameters. Without it, such a
            region raises; a region with the same parameters is returned as it is.
        footprints: Also write building footprints (large for big scenes).
        progress: Show a progress bar over the strips.

    Returns:
        The generated region.

    Raises:
        ValueError: If ``size``, ``pixel_size`` or ``seed`` is invalid.
        FileExistsError: If ``out_dir`` holds a region with other parameters and ``overwrite``
            is False.

    Example:
        >>> region = generate_sample_region("sample", size=512)  # doctest: +SKIP
    """
    _check_args(size, pixel_size, seed)
    root = Path(out_dir)
    params = _params(size, pixel_size, seed, footprints)
    existing = _read_manifest(root)
    if existing is not None and not overwrite:
        if _matches(existing, params):
            return load_sample_region(root)
        raise FileExistsError(
            f"'{root}' already holds a sample region with other parameters "
            f"({existing.get('parameters')}); pass overwrite=True (CLI: --overwrite) to replace "
            "it, or choose another folder."
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").unlink(missing_ok=True)  # the folder is incomplete from now on
    names = _file_names(footprints)
    tmp = {k: partial_path(root / v) for k, v in names.items()}  # unique per run
    try:
        stats = _render_rasters(root, tmp, size, pixel_size, seed, footprints, progress)
        for k, v in names.items():
            os.replace(tmp[k], root / v)
    except BaseException:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise
    region = _region_from_manifest(root, {"files": {k: {"name": v} for k, v in names.items()}})
    baselines = measure_baselines(region)
    manifest = {
        "generator": "helpers.sample_data",
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "note": (
            "Synthetic scene generated from a seed; it imitates a peri-urban area in East Africa "
            "seen by a very-high-resolution satellite but shows no real place."
        ),
        "parameters": params,
        "dates": list(DATES),
        "bands": list(BAND_NAMES),
        "scale_factor": 1e-4,
        "bounds_utm": list(
            rasterio.transform.array_bounds(
                size, size, _profile(size, pixel_size, 1, "uint8", 0)["transform"]
            )
        )[:4],
        "landcover_classes": {
            str(k): {"name": n, "color": c} for k, (n, c) in LANDCOVER_CLASSES.items()
        },
        "cloud_classes": {str(k): {"name": n, "color": c} for k, (n, c) in CLOUD_CLASSES.items()},
        "landcover_nodata": 0,
        "cloud_nodata": CLOUD_NODATA,
        "class_fractions": stats["fractions"],
        "objects": stats["objects"],
        "sun": stats["sun"],
        "baselines": baselines,
        "files": {k: {"name": v, "sha256": _sha256(root / v)} for k, v in names.items()},
    }
    _atomic_json(root / "manifest.json", manifest)
    region.manifest = manifest
    return region


def _render_rasters(root, tmp, size, pixel_size, seed, footprints, progress) -> dict:
    from helpers import _scene_layout as lay

    layout = build_layout(size, pixel_size, seed)
    renderer = StripRenderer(layout, size, pixel_size, seed)
    strip = 512 if size <= 4096 else 256
    counts = np.zeros((2, 8), np.int64)
    years = [_year(d) for d in DATES]
    with ExitStack() as stack, rasterio.Env(GDAL_NUM_THREADS="1"):
        pool = _worker_pool(renderer, -(-size // strip))
        if pool is not None:
            stack.enter_context(pool)
        ds = {}
        for di, y in enumerate(years):
            p = _profile(size, pixel_size, 4, "uint16", 0)
            s = stack.enter_context(rasterio.open(tmp[f"scene_{y}"], "w", **p))
            s.descriptions = BAND_NAMES
            s.update_tags(ACQUISITION_DATE=DATES[di], SYNTHETIC="yes", SCALE_FACTOR="0.0001")
            p = _profile(size, pixel_size, 1, "uint8", 0)
            lc = stack.enter_context(rasterio.open(tmp[f"landcover_{y}"], "w", **p))
            lc.write_colormap(1, {k: _hex_rgba(c) for k, (_, c) in LANDCOVER_CLASSES.items()})
            lc.descriptions = ("landcover",)
            p = _profile(size, pixel_size, 1, "uint8", CLOUD_NODATA)
            cl = stack.enter_context(rasterio.open(tmp[f"clouds_{y}"], "w", **p))
            cl.descriptions = ("cloud_mask",)
            cl.write_colormap(1, {k: _hex_rgba(c) for k, (_, c) in CLOUD_CLASSES.items()})
            ds[di] = (s, lc, cl)
        starts = list(range(0, size, strip))
        jobs = [(si, r0, min(size, r0 + strip)) for si, r0 in enumerate(starts)]
        for _si, r0, r1, out in tqdm(
            _strips(renderer, jobs, pool),
            total=len(jobs),
            desc="sample region",
            disable=not progress,
        ):
            win = Window(0, r0, size, r1 - r0)
            for di in (0, 1):
                bands, lc, cm = out[di]
                s, lcd, cld = ds[di]
                s.write(bands, window=win)
                lcd.write(lc, 1, window=win)
                cld.write(cm, 1, window=win)
                counts[di] += np.bincount(lc.ravel(), minlength=8)[:8]
    factors = _overview_factors(size)
    if factors:
        with rasterio.Env(COMPRESS_OVERVIEW="DEFLATE", PREDICTOR_OVERVIEW=2, GDAL_NUM_THREADS="1"):
            for key, path in tmp.items():
                if not key.startswith(("scene", "landcover", "clouds")):
                    continue
                with rasterio.open(path, "r+") as d:
                    rs = Resampling.average if key.startswith("scene") else Resampling.mode
                    d.build_overviews(factors, rs)
                    d.update_tags(ns="rio_overview", resampling=rs.name)
    # vectors
    sett = layout.settlements
    for di, y in enumerate(years):
        geoms = np.array([g for g in sett[di] if not g.is_empty], dtype=object)
        ids = [i + 1 for i, g in enumerate(sett[di]) if not g.is_empty]
        areas = shapely.area(geoms) if len(geoms) else []
        props = [
            {"id": i, "date": DATES[di], "area_m2": round(float(a), 1)}
            for i, a in zip(ids, areas, strict=True)
        ]
        _write_geojson(tmp[f"settlements_{y}"], _to_lonlat(geoms, size, pixel_size), props)
        if footprints:
            sel = np.nonzero(layout.b_exists[di])[0]
            g = _to_lonlat(layout.b_geom[sel], size, pixel_size)
            kinds = np.where(layout.b_informal[sel], "informal", "formal")
            props = [
                {"id": int(i) + 1, "date": DATES[di], "kind": str(k)}
                for i, k in zip(sel, kinds, strict=True)
            ]
            _write_geojson(tmp[f"buildings_{y}"], g, props)
    valid = counts[:, 1:].sum(1, keepdims=True)
    fractions = {
        DATES[di]: {
            LANDCOVER_CLASSES[k][0]: round(float(counts[di, k] / max(valid[di, 0], 1)), 5)
            for k in LANDCOVER_CLASSES
        }
        for di in (0, 1)
    }
    for di in (0, 1):
        fractions[DATES[di]]["nodata"] = round(float(counts[di, 0] / size**2), 5)
    objects = {
        DATES[di]: {
            "buildings_formal": int((layout.b_exists[di] & ~layout.b_informal).sum()),
            "buildings_informal": int((layout.b_exists[di] & layout.b_informal).sum()),
            "settlements": int(sum(not g.is_empty for g in sett[di])),
            "settlement_area_m2": round(float(sum(g.area for g in sett[di])), 1),
            "trees": int(layout.t_exists[di].sum()),
        }
        for di in (0, 1)
    }
    sun = {DATES[di]: dict(lay.SUN[di]) for di in (0, 1)}
    return {"fractions": fractions, "objects": objects, "sun": sun}


_RENDERER: StripRenderer | None = None  # set in the parent right before forking render workers


def _render_job(job):
    si, r0, r1 = job
    return si, r0, r1, _RENDERER.render(r0, r1, si)


def _worker_pool(renderer: StripRenderer, n_strips: int):
    """A fork pool of strip renderers on Linux with several cores and strips, else None.

    Strips are independent (their content depends only on the layout and their rows), so
    rendering them in parallel gives the same bytes as rendering them in order.
    """
    global _RENDERER
    n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(4, n_cpu or 1, n_strips)
    if workers < 2 or n_strips < 4 or sys.platform != "linux":
        return None
    _RENDERER = renderer
    return multiprocessing.get_context("fork").Pool(workers)


def _strips(renderer: StripRenderer, jobs, pool):
    if pool is None:
        for si, r0, r1 in jobs:
            yield si, r0, r1, renderer.render(r0, r1, si)
    else:
        yield from pool.imap(_render_job, jobs)


def ensure_sample_region(
    out_dir: str | os.PathLike = DEFAULT_DIR,
    *,
    size: int = 2048,
    pixel_size: float = 1.0,
    seed: int = 42,
    overwrite: bool = True,
    footprints: bool = True,
    progress: bool = True,
) -> SampleRegion:
    """Return the region in ``out_dir`` if it matches the parameters, otherwise generate it.

    The folder is treated as a cache: by default a region generated with other parameters is
    replaced (``overwrite=True``); pass ``overwrite=False`` to get an error instead.

    Args:
        out_dir: Folder of the region.
        size: Scene width and height in pixels (>= 256).
        pixel_size: Ground sampling distance in metres.
        seed: Seed of the generator.
        overwrite: Replace a region generated with other parameters.
        footprints: Building footprints are needed.
        progress: Show a progress bar if the region is generated.

    Returns:
        The region.

    Raises:
        ValueError: If an argument is invalid.
        FileExistsError: If a region with other parameters exists and ``overwrite`` is False.

    Example:
        >>> region = ensure_sample_region("data/generated/sample", size=512)  # doctest: +SKIP
    """
    _check_args(size, pixel_size, seed)
    root = Path(out_dir)
    manifest = _read_manifest(root)
    if manifest is not None and _matches(manifest, _params(size, pixel_size, seed, footprints)):
        try:
            return load_sample_region(root)
        except FileNotFoundError:
            log.warning("Sample region in '%s' is incomplete; generating it again.", root)
    return generate_sample_region(
        root,
        size=size,
        pixel_size=pixel_size,
        seed=seed,
        overwrite=overwrite or manifest is None,
        footprints=footprints,
        progress=progress,
    )


# --------------------------------------------------------------------------- baselines


def _read_window(path: Path, n: int):
    with rasterio.open(path) as ds:
        off = (ds.width - n) // 2
        win = Window(off, off, n, n)
        return ds.read(window=win), ds.window_transform(win), ds.crs


def _settlement_raster(path: Path, transform, n: int, crs) -> np.ndarray:
    with open(path) as f:
        feats = json.load(f)["features"]
    if not feats:
        return np.zeros((n, n), np.uint8)
    geoms = shapely.from_geojson([json.dumps(ft["geometry"]) for ft in feats])
    tf = Transformer.from_crs(4326, crs, always_xy=True)
    geoms = shapely.transform(geoms, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))
    return rasterize(((g, 1) for g in geoms), out_shape=(n, n), transform=transform, dtype="uint8")


def _best_threshold_iou(feature: np.ndarray, target: np.ndarray, bins: int = 512) -> float:
    lo, hi = np.percentile(feature, [0.1, 99.9])
    edges = np.linspace(lo, hi, bins + 1)
    pos = np.histogram(feature[target], edges)[0].astype(float)
    neg = np.histogram(feature[~target], edges)[0].astype(float)
    P = target.sum()
    best = 0.0
    for p, n in ((pos[::-1].cumsum(), neg[::-1].cumsum()), (pos.cumsum(), neg.cumsum())):
        iou = p / np.maximum(P + n, 1)
        best = max(best, float(iou.max()))
    return best


def _f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp = float((pred & y).sum())
    fp = float((pred & ~y).sum())
    fn = float((~pred & y).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1.0)


def _logistic(xtr, ytr, xte, iters=600, lr=0.3, l2=1e-3):
    """Plain gradient-descent logistic regression (numpy only)."""
    w = np.zeros(xtr.shape[1])
    b = 0.0
    yt = ytr.astype(float)
    for _ in range(iters):
        z = np.clip(xtr @ w + b, -30, 30)
        p = 1 / (1 + np.exp(-z))
        g = p - yt
        w -= lr * (xtr.T @ g / len(yt) + l2 * w)
        b -= lr * g.mean()
    return (xte @ w + b) > 0


def measure_baselines(region: SampleRegion, max_size: int = 2048, tile: int = 64) -> dict:
    """Measure how well simple, non-spatial baselines do on the region (numpy only, seconds).

    The scores tell how much a model has to learn beyond colour: (a) the best single threshold on
    one band, NDVI or brightness for building pixels (IoU); (b) settlement yes/no on 64 x 64 tiles
    from the tile mean and standard deviation of each band, trained on the left half and tested
    on the right half (F1, logistic regression and nearest centroid); (c) a brightness threshold
    for clouds on the second date (IoU). Large scenes are measured on a central window.

    Args:
        region: A generated region (its rasters and settlement outlines are read).
        max_size: Side of the central window measured, in pixels.
        tile: Tile side for (b).

    Returns:
        A dict of scores and the settings used.
    """
    feats_b, target_b = [], []
    tiles_x, tiles_y, tiles_left = [], [], []
    cloud_score = None
    for di, date in enumerate(region.dates):
        with rasterio.open(region.scenes[date]) as ds:
            n = min(ds.width, ds.height, max_size)
        img, transform, crs = _read_window(region.scenes[date], n)
        lc = _read_window(region.landcover[date], n)[0][0]
        cm = _read_window(region.clouds[date], n)[0][0]
        img = img.astype(np.float32)
        valid = lc > 0
        clear = valid & (cm == 0)
        bright = img.mean(0)
        ndvi = (img[3] - img[2]) / np.maximum(img[3] + img[2], 1)
        feats_b.append(np.stack([img[0], img[1], img[2], img[3], ndvi, bright])[:, clear])
        target_b.append(np.isin(lc[clear], (6, 7)))
        if di == 1:
            vis = img[:3].mean(0)
            cloud_score = _best_threshold_iou(vis[valid], cm[valid] == 1)
        sett = _settlement_raster(region.settlements[date], transform, n, crs)
        m = n // tile
        for i in range(m):
            for j in range(m):
                sl = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
                if not valid[sl].all() or (cm[sl] != 0).mean() > 0.1:
                    continue
                frac = sett[sl].mean()
                if 0.05 < frac < 0.5:
                    continue
                t = img[(slice(None), *sl)].reshape(4, -1)
                tiles_x.append(np.concatenate([t.mean(1), t.std(1)]))
                tiles_y.append(frac >= 0.5)
                tiles_left.append(j < m // 2)
    fb = np.concatenate(feats_b, axis=1)
    tb = np.concatenate(target_b)
    names = ["blue", "green", "red", "nir", "ndvi", "brightness"]
    ious = {nm: round(_best_threshold_iou(fb[k], tb), 4) for k, nm in enumerate(names)}
    best_feat = max(ious, key=ious.get)
    X = np.array(tiles_x)
    y = np.array(tiles_y, bool)
    left = np.array(tiles_left, bool)
    mu, sd = X[left].mean(0), X[left].std(0) + 1e-6
    Xn = (X - mu) / sd
    pred_lr = _logistic(Xn[left], y[left], Xn[~left])
    te = Xn[~left]
    if (left & y).any() and (left & ~y).any():
        c1, c0 = Xn[left & y].mean(0), Xn[left & ~y].mean(0)
        pred_nc = ((te - c1) ** 2).sum(1) < ((te - c0) ** 2).sum(1)
    else:  # a small scene may hold no positive (or negative) tile in its training half
        pred_nc = np.zeros(len(te), bool)
    f1_lr, f1_nc = _f1(pred_lr, y[~left]), _f1(pred_nc, y[~left])
    return {
        "window_px": int(n),
        "building_threshold_iou": {
            "best": ious[best_feat],
            "best_feature": best_feat,
            "per_feature": ious,
            "target_max": 0.6,
        },
        "settlement_tiles_f1": {
            "logistic_regression": round(f1_lr, 4),
            "nearest_centroid": round(f1_nc, 4),
            "best": round(max(f1_lr, f1_nc), 4),
            "tile_px": tile,
            "n_train": int(left.sum()),
            "n_test": int((~left).sum()),
            "positives_test": int(y[~left].sum()),
            "features": "mean and std of each band",
            "split": "left half train, right half test; both dates",
            "target_max": 0.85,
        },
        "cloud_brightness_iou": {"best": round(float(cloud_score), 4), "date": region.dates[1]},
    }


# --------------------------------------------------------------------------- previews


def render_previews(
    region: SampleRegion, out_dir: str | os.PathLike, width_px: int = 1400
) -> list[Path]:
    """Render the README figures of the region (true/false colour, labels, change, zoom).

    Args:
        region: A generated region.
        out_dir: Folder for the PNG files (``sample_*.png``).
        width_px: Approximate width of the figures in pixels.

    Returns:
        Paths of the written PNG files.
    """
    from helpers import _scene_previews

    return _scene_previews.render(region, Path(out_dir), width_px)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m helpers.sample_data --out DIR --size 2048 --seed 42``."""
    ap = argparse.ArgumentParser(
        prog="satcourse-sample-data", description="Generate the course's synthetic sample region."
    )
    ap.add_argument("--out", default=str(DEFAULT_DIR), help="output folder")
    ap.add_argument("--size", type=int, default=2048, help="width and height in pixels")
    ap.add_argument("--pixel-size", type=float, default=1.0, help="pixel size in metres")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--overwrite", action="store_true", help="replace a region with other parameters"
    )
    ap.add_argument("--no-footprints", action="store_true", help="skip building footprints")
    ap.add_argument("--previews", default=None, help="also render preview PNGs into this folder")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    region = generate_sample_region(
        args.out,
        size=args.size,
        pixel_size=args.pixel_size,
        seed=args.seed,
        overwrite=args.overwrite,
        footprints=not args.no_footprints,
        progress=not args.quiet,
    )
    if args.previews:
        render_previews(region, args.previews)
    log.info("Sample region ready in %s", region.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
