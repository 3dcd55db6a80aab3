"""From a few regions of interest (ROIs) drawn on a scene to a label map of the whole scene.

A person draws a handful of points, lines and polygons per class on a map (see
:class:`helpers.maps.RoiEditor`); each ROI is a GeoJSON feature in EPSG:4326 with two
properties, ``class`` (the class name) and ``split`` (``"train"`` or ``"validation"``). This
module turns them into training data and a first classifier:

* :func:`rois_to_labels` burns the ROIs onto the scene's grid in its CRS: points as one pixel
  (or a small disc), lines with all-touched, polygons filled; every other pixel is
  :data:`helpers.labels.IGNORE_VALUE`. It returns per-split label rasters and class counts.
* :func:`example_rois` draws ROIs on the sample region the way a person would (polygons and
  lines inside homogeneous areas of its ground-truth land cover, points all over each class,
  half of them on its edges), so that notebooks and tests run headless.
* :func:`pixel_features`, :func:`train_random_forest` and :func:`predict_scene` are the fast
  baseline: a random forest on per-pixel bands, spectral indices and local texture (each
  labelled pixel weighted by :func:`roi_weights`, so that polygons do not outvote points),
  applied to the whole scene block by block and written as a georeferenced GeoTIFF. The
  fitted :class:`PixelClassifier` is also a per-pixel model for
  :func:`helpers.inference.predict`: called on a batch of patches it returns class
  probabilities, and :meth:`PixelClassifier.model_card` gives its card.
  :func:`evaluate_label_map` compares a label map with a reference raster.

Typical use in a notebook::

    from helpers import inference, rois

    classes = rois.LANDCOVER_ROI_CLASSES  # {"water": 1, "trees": 2, ...}
    path = rois.ensure_example_rois(region, "2021-06-15")
    roi_labels = rois.rois_to_labels(path, region.scenes["2021-06-15"], classes=classes)
    print(roi_labels.counts)
    forest = rois.train_random_forest(region.scenes["2021-06-15"], roi_labels)
    rois.predict_scene(forest, region.scenes["2021-06-15"], "outputs/rf_2021.tif")
    # or through the course's scene predictor, like any network:
    inference.predict(forest, region.scenes["2021-06-15"], "outputs/rf_2021.tif",
                      card=forest.model_card(), output="classes", overwrite=True)

Conventions chosen here:

* ROIs are stored and exchanged in EPSG:4326 (RFC 7946 GeoJSON); they are reprojected to the
  scene's CRS only when rasterised.
* A pixel claimed by two classes, or by both splits, is ambiguous: it becomes
  :data:`~helpers.labels.IGNORE_VALUE` (with a warning) instead of letting the later ROI win.
* Label maps written here use :data:`~helpers.labels.IGNORE_VALUE` (255) as nodata, so that
  class code 0 stays available.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
import shapely.affinity
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy import ndimage
from tqdm.auto import tqdm

from helpers import labels, raster
from helpers.files import atomic_write_text
from helpers.sample_data import LANDCOVER_CLASSES

__all__ = [
    "DEFAULT_MIN_PIXELS",
    "EXAMPLE_ROIS_VERSION",
    "LANDCOVER_ROI_CLASSES",
    "ROI_CRS",
    "ROI_SPLITS",
    "PixelClassifier",
    "RoiError",
    "RoiLabels",
    "as_roi_frame",
    "ensure_example_rois",
    "evaluate_label_map",
    "example_rois",
    "example_rois_path",
    "pixel_features",
    "predict_scene",
    "read_rois",
    "roi_weights",
    "rois_to_labels",
    "train_random_forest",
    "write_rois",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
#: The CRS ROIs are stored in (GeoJSON, RFC 7946).
ROI_CRS = "EPSG:4326"
#: The values of the ``split`` property, in the codes of :attr:`RoiLabels.split` (1, 2).
ROI_SPLITS: tuple[str, str] = ("train", "validation")
#: Below this many training pixels a class gets a warning.
DEFAULT_MIN_PIXELS = 50
#: Version of the placement of :func:`example_rois`; files of another version are redrawn.
EXAMPLE_ROIS_VERSION = 2

#: Class names and codes of the sample region's land cover (``landcover_<year>.tif``).
LANDCOVER_ROI_CLASSES: dict[str, int] = {
    name: code for code, (name, _) in LANDCOVER_CLASSES.items()
}
#: Their colours, as in the course's land-cover maps.
LANDCOVER_COLORS: dict[str, str] = dict(LANDCOVER_CLASSES.values())

_GEOMETRY_KINDS = {
    "Point": "point",
    "MultiPoint": "point",
    "LineString": "line",
    "MultiLineString": "line",
    "Polygon": "polygon",
    "MultiPolygon": "polygon",
}


class RoiError(ValueError):
    """ROIs cannot be used the way the caller asked (empty, outside the scene, unknown class)."""


# --------------------------------------------------------------------------------------------
# Reading, checking and writing ROI collections
# --------------------------------------------------------------------------------------------


def _frame_from_features(features: Sequence[Mapping[str, Any]], crs: Any, source: str):
    rows, geometries = [], []
    for number, feature in enumerate(features, start=1):
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            raise RoiError(
                f"{source}: item {number} is not a GeoJSON Feature ({str(feature)[:80]!r}); "
                "a FeatureCollection holds {'type': 'Feature', 'geometry': ..., "
                "'properties': ...} items."
            )
        try:
            geometry = shapely.geometry.shape(feature.get("geometry"))
        except (AttributeError, TypeError, ValueError, shapely.errors.ShapelyError) as exc:
            raise RoiError(
                f"{source}: feature {number} has no valid geometry ({exc}). Delete it or draw "
                "it again."
            ) from exc
        rows.append(dict(feature.get("properties") or {}))
        geometries.append(geometry)
    return gpd.GeoDataFrame(rows, geometry=geometries, crs=crs)


def _check_frame(gdf: gpd.GeoDataFrame, source: str) -> gpd.GeoDataFrame:
    if len(gdf) == 0:
        return gpd.GeoDataFrame({"class": [], "split": []}, geometry=[], crs=gdf.crs)
    if "class" not in gdf.columns:
        columns = [c for c in gdf.columns if c != gdf.geometry.name]
        raise RoiError(
            f"{source}: the ROIs have no 'class' property (columns: "
            f"{', '.join(map(repr, columns)) or 'none'}). Each feature needs "
            "properties {'class': <name>, 'split': 'train' or 'validation'}."
        )
    gdf = gdf.copy()
    missing = gdf["class"].isna() | (gdf["class"].astype(str).str.strip() == "")
    if missing.any():
        raise RoiError(
            f"{source}: {int(missing.sum())} ROI(s) have no class name (features "
            f"{', '.join(str(i + 1) for i in np.flatnonzero(missing.to_numpy())[:10])}). Give "
            "each feature a 'class' property or delete it."
        )
    gdf["class"] = gdf["class"].astype(str)
    if "split" not in gdf.columns:
        logger.warning("%s: the ROIs have no 'split' property; all are used for training.", source)
        gdf["split"] = "train"
    gdf["split"] = gdf["split"].fillna("train").astype(str).str.strip().str.lower()
    bad = sorted(set(gdf["split"]) - set(ROI_SPLITS))
    if bad:
        raise RoiError(
            f"{source}: unknown split value(s) {', '.join(map(repr, bad))}; use "
            f"{' or '.join(map(repr, ROI_SPLITS))}."
        )
    kinds = gdf.geometry.geom_type.map(_GEOMETRY_KINDS)
    if kinds.isna().any():
        other = sorted(set(gdf.geometry.geom_type[kinds.isna()].dropna()))
        raise RoiError(
            f"{source}: unsupported geometry type(s) {', '.join(other) or 'None'}; ROIs are "
            "points, lines or polygons."
        )
    return gdf[["class", "split", gdf.geometry.name]]


def as_roi_frame(rois: Any, *, crs: CRS | str | None = None) -> gpd.GeoDataFrame:
    """Turn ROIs in any supported form into a checked GeoDataFrame with ``class`` and ``split``.

    Args:
        rois: A GeoJSON FeatureCollection dict (features in EPSG:4326 unless it has a ``crs``
            member), a GeoDataFrame with a CRS, or the path of a vector file (see
            :func:`read_rois`).
        crs: Reproject to this CRS; None keeps the input's CRS.

    Returns:
        A GeoDataFrame with columns ``class`` (str), ``split`` (``"train"`` or
        ``"validation"``; missing splits become ``"train"`` with a warning) and the geometry.

    Raises:
        RoiError: The input is malformed: not a FeatureCollection, a feature without geometry
            or class, an unknown split, an unsupported geometry type, no CRS.
        FileNotFoundError: A path that does not exist.

    Example:
        >>> fc = {"type": "FeatureCollection", "features": [{"type": "Feature",
        ...       "geometry": {"type": "Point", "coordinates": [39.1, -6.8]},
        ...       "properties": {"class": "water", "split": "train"}}]}
        >>> as_roi_frame(fc)["class"].tolist()
        ['water']
    """
    if isinstance(rois, (str, os.PathLike)):
        return read_rois(rois, crs=crs)
    if isinstance(rois, gpd.GeoDataFrame):
        source = str(rois.attrs.get("source", "ROIs"))
        if rois.crs is None:
            raise RoiError(
                f"{source}: the GeoDataFrame has no CRS; set it, e.g. gdf.set_crs('EPSG:4326')."
            )
        gdf = rois
    elif isinstance(rois, Mapping):
        source = "ROIs"
        if rois.get("type") != "FeatureCollection" or not isinstance(rois.get("features"), list):
            raise RoiError(
                "ROIs must be a GeoJSON FeatureCollection: {'type': 'FeatureCollection', "
                f"'features': [...]}}, got keys {sorted(rois)[:6]}."
            )
        declared = (rois.get("crs") or {}).get("properties", {}).get("name")
        gdf = _frame_from_features(rois["features"], declared or ROI_CRS, source)
    else:
        raise RoiError(
            "ROIs must be a GeoJSON FeatureCollection dict, a GeoDataFrame or a file path, got "
            f"{type(rois).__name__}."
        )
    gdf = _check_frame(gdf, source)
    if crs is not None:
        gdf = gdf.to_crs(CRS.from_user_input(crs).to_wkt())
    gdf.attrs["source"] = source
    return gdf


def read_rois(path: PathLike, *, crs: CRS | str | None = None) -> gpd.GeoDataFrame:
    """Read ROIs from a GeoJSON (or any vector file), checked as in :func:`as_roi_frame`.

    A file in another CRS (a GeoJSON with a ``crs`` member, a GeoPackage in UTM) is read in its
    own CRS and reprojected to ``crs`` when given. An empty FeatureCollection gives an empty
    frame.

    Args:
        path: The ROI file.
        crs: Reproject to this CRS, e.g. :data:`ROI_CRS` or the scene's CRS.

    Returns:
        The checked GeoDataFrame, with the path in ``gdf.attrs["source"]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RoiError: The file is not valid JSON / vector data, or the ROIs are malformed.

    Example:
        >>> gdf = read_rois("rois_2021.geojson", crs="EPSG:32737")  # doctest: +SKIP
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise raster.file_not_found(name, "ROI file")
    if name.lower().endswith((".geojson", ".json")):
        try:
            data = json.loads(Path(name).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RoiError(
                f"{name} is not valid JSON ({exc}); an ROI file is a GeoJSON FeatureCollection "
                "as written by RoiEditor.save or write_rois."
            ) from exc
        if not isinstance(data, Mapping):
            raise RoiError(f"{name} holds a JSON {type(data).__name__}, not a FeatureCollection.")
        try:
            gdf = as_roi_frame(data, crs=crs)
        except RoiError as exc:
            raise RoiError(str(exc).replace("ROIs", name, 1)) from exc
    else:
        try:
            gdf = labels.read_vectors(name, crs=crs)
        except labels.VectorError as exc:
            raise RoiError(str(exc)) from exc
        gdf.attrs["source"] = name
        gdf = _check_frame(gdf, name)
    gdf.attrs["source"] = name
    return gdf


def _feature_collection(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    gdf = gdf.to_crs(ROI_CRS) if gdf.crs is not None else gdf
    features = [
        {
            "type": "Feature",
            "geometry": shapely.geometry.mapping(geometry),
            "properties": {"class": str(name), "split": str(split)},
        }
        for name, split, geometry in zip(gdf["class"], gdf["split"], gdf.geometry, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def write_rois(rois: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ROIs as a GeoJSON FeatureCollection in EPSG:4326, atomically.

    Args:
        rois: Anything :func:`as_roi_frame` accepts.
        path: The ``.geojson`` file to write.
        overwrite: Replace an existing file; otherwise an existing ``path`` is an error.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        RoiError: The ROIs are malformed.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    collection = _feature_collection(as_roi_frame(rois))
    return atomic_write_text(path, json.dumps(collection, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# ROIs to label rasters
# --------------------------------------------------------------------------------------------


@dataclass
class RoiLabels:
    """Label rasters burned from ROIs, on a scene's grid.

    Attributes:
        labels: ``(rows, cols)`` uint8: the class code of every labelled pixel (both splits),
            :data:`~helpers.labels.IGNORE_VALUE` elsewhere.
        split: ``(rows, cols)`` uint8: 0 unlabelled, 1 train, 2 validation.
        classes: ``{class name: code}`` as passed to :func:`rois_to_labels`.
        transform: The scene's affine transform.
        crs: The scene's CRS.
        counts: ``{split: {class name: pixels}}`` for ``"train"``, ``"validation"`` and
            ``"all"``.
        outside: Number of ROIs that lie entirely outside the scene (dropped).
    """

    labels: np.ndarray
    split: np.ndarray
    classes: dict[str, int]
    transform: Affine
    crs: CRS | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    outside: int = 0

    def for_split(self, split: str) -> np.ndarray:
        """The label raster of one split (``"train"``, ``"validation"`` or ``"all"``)."""
        if split == "all":
            return self.labels
        if split not in ROI_SPLITS:
            raise ValueError(f"split must be 'train', 'validation' or 'all', got {split!r}.")
        code = ROI_SPLITS.index(split) + 1
        return np.where(self.split == code, self.labels, labels.IGNORE_VALUE).astype(np.uint8)

    @property
    def train(self) -> np.ndarray:
        """Labels of the training ROIs (IGNORE_VALUE elsewhere)."""
        return self.for_split("train")

    @property
    def validation(self) -> np.ndarray:
        """Labels of the validation ROIs (IGNORE_VALUE elsewhere)."""
        return self.for_split("validation")

    @property
    def class_names(self) -> dict[int, str]:
        """``{code: name}``, the inverse of :attr:`classes`."""
        return {code: name for name, code in self.classes.items()}


def _normalise_classes(classes: Mapping[str, int] | Sequence[str]) -> dict[str, int]:
    if isinstance(classes, Mapping):
        mapping = {str(k): int(v) for k, v in classes.items()}
    elif isinstance(classes, (str, bytes)):
        raise TypeError("classes must be a sequence of names or a {name: code} mapping.")
    else:
        mapping = {str(name): code for code, name in enumerate(classes)}
    if not mapping:
        raise RoiError("classes is empty: pass the class names, e.g. ['water', 'trees'].")
    codes = list(mapping.values())
    if len(set(codes)) != len(codes):
        raise RoiError(f"classes gives two classes the same code: {mapping}.")
    bad = [c for c in codes if not 0 <= c < labels.IGNORE_VALUE]
    if bad:
        raise RoiError(
            f"class codes must be 0..{labels.IGNORE_VALUE - 1} ({labels.IGNORE_VALUE} marks "
            f"unlabelled pixels), got {bad}."
        )
    return mapping


def _scene_grid(scene: Any) -> tuple[tuple[int, int], Affine, CRS | None, str]:
    if isinstance(scene, raster.RasterInfo):
        info = scene
    else:
        info = raster.describe(scene)
    if info.crs is None:
        raise raster.MissingCRSError(
            f"{info.path} has no CRS, so ROIs drawn on a map cannot be placed on it."
        )
    return (info.height, info.width), info.transform, info.crs, str(info.path)


def _burnable(geometries: np.ndarray, point_radius: float, pixel: float) -> np.ndarray:
    """Points buffered to discs of ``point_radius`` pixels (0: left as points, one pixel)."""
    if point_radius <= 0:
        return geometries
    out = geometries.copy()
    points = np.isin(shapely.get_type_id(out), [0, 4])  # Point, MultiPoint
    # A radius of r pixels covers the pixel centres within r of the point; the quarter pixel
    # keeps centres at exactly r despite the buffer's polygon approximation (r=1: a 5-px cross).
    out[points] = shapely.buffer(out[points], (point_radius + 0.25) * pixel)
    return out


def rois_to_labels(
    rois: Any,
    scene: PathLike | raster.RasterInfo,
    *,
    classes: Mapping[str, int] | Sequence[str],
    point_radius: float = 0,
    min_pixels: int = DEFAULT_MIN_PIXELS,
) -> RoiLabels:
    """Burn ROIs onto a scene's grid: one class code per labelled pixel, IGNORE_VALUE elsewhere.

    Points burn the pixel they fall in (or a disc of ``point_radius`` pixels), lines every
    pixel they touch (all-touched, so a one-pixel road stays continuous), polygons the pixels
    whose centre lies inside. ROIs are reprojected to the scene's CRS first.

    Args:
        rois: ROIs as accepted by :func:`as_roi_frame` (FeatureCollection, GeoDataFrame, path).
        scene: The scene's GeoTIFF (or its :class:`~helpers.raster.RasterInfo`): the grid.
        classes: Class names in code order (codes 0, 1, ...) or a ``{name: code}`` mapping
            such as :data:`LANDCOVER_ROI_CLASSES`.
        point_radius: Radius of the disc burned around each point, in pixels (0: one pixel).
        min_pixels: Log a warning when a class has fewer training pixels than this.

    Returns:
        A :class:`RoiLabels` with the label and split rasters and the class counts.

    Raises:
        RoiError: No ROIs at all; an ROI class missing from ``classes``; every ROI outside the
            scene; a class of ``classes`` without any training pixel.
        FileNotFoundError, RasterError: see :func:`helpers.raster.describe`.

    Example:
        >>> result = rois_to_labels("rois.geojson", "scene.tif", classes=["water", "trees"])
        ... # doctest: +SKIP
        >>> result.counts["train"]  # doctest: +SKIP
        {'water': 412, 'trees': 977}
    """
    mapping = _normalise_classes(classes)
    shape, transform, crs, scene_name = _scene_grid(scene)
    gdf = as_roi_frame(rois)
    source = gdf.attrs.get("source", "ROIs")
    if len(gdf) == 0:
        raise RoiError(
            f"{source} holds no ROIs: draw at least one point, line or polygon per class "
            "(or load example ROIs with ensure_example_rois)."
        )
    unknown = sorted(set(gdf["class"]) - set(mapping))
    if unknown:
        raise RoiError(
            f"{source}: class name(s) {', '.join(map(repr, unknown))} are not in classes "
            f"({', '.join(map(repr, mapping))}). Add them to classes or rename the ROIs."
        )
    gdf = gdf.to_crs(crs.to_wkt())
    height, width = shape
    left, top = transform * (0, 0)
    right, bottom = transform * (width, height)
    footprint = shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    geometries = gdf.geometry.to_numpy()
    inside = shapely.intersects(geometries, footprint)
    outside = int((~inside).sum())
    if not inside.any():
        bounds = ", ".join(f"{v:.6g}" for v in shapely.total_bounds(geometries))
        raise RoiError(
            f"every ROI of {source} lies outside the scene {scene_name}: ROI bounds ({bounds}) vs "
            f"scene bounds ({', '.join(f'{v:.6g}' for v in footprint.bounds)}) in "
            f"{crs.to_string()}. Were they drawn on another scene?"
        )
    if outside:
        logger.warning(
            "%d of %d ROIs lie outside %s and are ignored.", outside, len(gdf), scene_name
        )
    pixel = float(min(abs(transform.a), abs(transform.e)))
    geometries = _burnable(geometries, point_radius, pixel)
    kinds = gdf.geometry.geom_type.map(_GEOMETRY_KINDS).to_numpy()

    label_raster = np.full(shape, labels.IGNORE_VALUE, dtype=np.uint8)
    split_raster = np.zeros(shape, dtype=np.uint8)
    claimed = np.zeros(shape, dtype=bool)  # burned by an earlier (class, split) pair
    ambiguous_mask = np.zeros(shape, dtype=bool)
    for split_code, split in enumerate(ROI_SPLITS, start=1):
        for name, code in mapping.items():
            chosen = inside & (gdf["class"].to_numpy() == name) & (gdf["split"].to_numpy() == split)
            if not chosen.any():
                continue
            mask = np.zeros(shape, dtype=np.uint8)
            for touched in (False, True):  # polygons and points by centre, lines all-touched
                pick = chosen & ((kinds == "line") == touched)
                if pick.any():
                    rasterio.features.rasterize(
                        ((g, 1) for g in geometries[pick]),
                        out=mask,
                        transform=transform,
                        all_touched=touched,
                    )
            hit = mask.astype(bool)
            label_raster[hit & ~claimed] = code
            split_raster[hit & ~claimed] = split_code
            ambiguous_mask |= hit & claimed
            claimed |= hit
    ambiguous = int(ambiguous_mask.sum())
    if ambiguous:
        logger.warning(
            "%d pixels are covered by ROIs of different classes or splits; they are left "
            "unlabelled (IGNORE_VALUE).",
            ambiguous,
        )
        label_raster[ambiguous_mask] = labels.IGNORE_VALUE
        split_raster[ambiguous_mask] = 0

    result = RoiLabels(label_raster, split_raster, mapping, transform, crs, outside=outside)
    names = result.class_names
    for split in (*ROI_SPLITS, "all"):
        result.counts[split] = labels.class_counts(result.for_split(split), names)
    empty = [name for name, n in result.counts["train"].items() if n == 0]
    if empty:
        drawn = {name for name in empty if (gdf["class"] == name).any()}
        detail = "; ".join(
            f"{name!r}: "
            + (
                "its ROIs cover no pixel centre (too small or outside the scene: draw larger "
                "polygons, or use point_radius)"
                if name in drawn
                else "no training ROI was drawn"
            )
            for name in empty
        )
        raise RoiError(
            f"class(es) without training pixels in {source}: {detail}. Every class needs "
            "training pixels; drop unused classes from classes."
        )
    for name, n in result.counts["train"].items():
        if n < min_pixels:
            logger.warning(
                "class %r has only %d training pixels (fewer than %d): draw more ROIs for it.",
                name,
                n,
                min_pixels,
            )
    missing_val = [name for name, n in result.counts["validation"].items() if n == 0]
    if missing_val and result.counts["validation"] and any(result.counts["validation"].values()):
        logger.warning("no validation pixels for class(es) %s.", ", ".join(missing_val))
    return result


# --------------------------------------------------------------------------------------------
# Example ROIs on the sample region
# --------------------------------------------------------------------------------------------


def example_rois_path(region: Any, date: str = "2021-06-15") -> Path:
    """Where :func:`ensure_example_rois` keeps a region's example ROIs: ``rois_<date>.geojson``.

    Args:
        region: A :class:`helpers.sample_data.SampleRegion` (or its folder).
        date: The scene's date, a key of ``region.scenes``.
    """
    root = Path(region.root if hasattr(region, "root") else region)
    return root / f"rois_{date}.geojson"


def _pixel_to_lonlat(transform: Affine, crs: CRS) -> Transformer:
    return Transformer.from_crs(crs.to_wkt(), ROI_CRS, always_xy=True)


def _to_roi_crs(geometry: Any, transform: Affine, to_lonlat: Transformer) -> Any:
    def apply(cr: np.ndarray) -> np.ndarray:
        # pixel (col, row) -> scene CRS -> lon/lat, rounded as a map would round clicks
        x = transform.a * cr[:, 0] + transform.b * cr[:, 1] + transform.c
        y = transform.d * cr[:, 0] + transform.e * cr[:, 1] + transform.f
        lon, lat = to_lonlat.transform(x, y)
        return np.round(np.column_stack([lon, lat]), 8)

    return shapely.transform(geometry, apply)


def _pick_spread(
    candidates: np.ndarray, count: int, separation: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Up to ``count`` candidate (row, col) pixels, at least ``separation`` pixels apart."""
    chosen: list[np.ndarray] = []
    if len(candidates) == 0:
        return chosen
    order = rng.permutation(len(candidates))[: max(200 * count, 1000)]
    for index in order:
        point = candidates[index]
        if all(np.hypot(*(point - other)) >= separation for other in chosen):
            chosen.append(point)
            if len(chosen) == count:
                break
    return chosen


def _polygon_at(center: np.ndarray, radius: float, rng: np.random.Generator) -> Any:
    vertices = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radii = radius * rng.uniform(0.65, 1.0, vertices)
    row, col = center + 0.5  # pixel centre
    return shapely.Polygon(
        np.column_stack([col + radii * np.cos(angles), row + radii * np.sin(angles)])
    )


def _reach(dist: np.ndarray, center: np.ndarray, angle: float, limit: float, clear: float) -> float:
    """How far from ``center`` a straight line can go at ``angle`` staying ``clear`` inside."""
    steps = np.arange(0.5, limit + 0.5, 0.5)
    rows = np.round(center[0] + steps * np.sin(angle)).astype(int)
    cols = np.round(center[1] + steps * np.cos(angle)).astype(int)
    ok = (rows >= 0) & (rows < dist.shape[0]) & (cols >= 0) & (cols < dist.shape[1])
    ok[ok] &= dist[rows[ok], cols[ok]] >= clear
    bad = np.flatnonzero(~ok)
    return float(steps[bad[0] - 1]) if len(bad) and bad[0] > 0 else (0.0 if len(bad) else limit)


def _line_at(dist: np.ndarray, center: np.ndarray, max_length: float, clear: float) -> Any:
    angles = np.linspace(0, np.pi * 2, 24, endpoint=False)
    reach = np.array([_reach(dist, center, a, max_length / 2, clear) for a in angles])
    first = int(np.argmax(reach))
    # a person's polyline bends: the second arm goes at least 120 degrees away from the first
    gap = np.abs((angles - angles[first] + np.pi) % (2 * np.pi) - np.pi)
    second = int(np.argmax(np.where(gap >= np.radians(120), reach, -1)))
    if reach[first] < 4 or reach[second] < 4:
        return None
    row, col = center + 0.5
    ends = [
        (col + reach[k] * np.cos(angles[k]), row + reach[k] * np.sin(angles[k]))
        for k in (first, second)
    ]
    return shapely.LineString([ends[0], (col, row), ends[1]])


def _class_edges(cover: np.ndarray, code: int, width: float) -> np.ndarray:
    """Pixels of class ``code`` within ``width`` pixels of another class (nodata is no class)."""
    inside = cover == code
    return inside & (ndimage.distance_transform_edt(inside | (cover == 0)) <= width)


def example_rois(
    region: Any,
    date: str = "2021-06-15",
    *,
    max_fraction: float = 0.005,
    polygons: tuple[int, int] = (6, 2),
    lines: tuple[int, int] = (3, 1),
    point_density: tuple[float, float] = (1.6e-3, 4e-4),
    edge_share: float = 0.5,
    area_power: float = 0.75,
    seed: int = 0,
) -> dict[str, Any]:
    """Draw example ROIs on the sample region the way a person would, from its land cover.

    For each land-cover class (:data:`LANDCOVER_ROI_CLASSES`) a few small polygons and bent
    polylines are placed inside homogeneous areas of the ground truth (at a distance from any
    other class, computed with a Euclidean distance transform), spread over the class's extent.
    Then points are clicked on pixels of the class all over the scene: a share ``edge_share``
    of them on the difficult pixels within 2 px of another class (field edges, single roofs,
    the ground between houses), the rest anywhere in the class. Polygons alone sample only the
    easy interiors, and a classifier trained on them fails on the mixed pixels that make up
    much of a 1 m scene. Larger classes get more points and larger polygons, in proportion to
    ``area ** area_power`` (a person spends more clicks on what covers more ground, but not
    in full proportion: small classes need their share too).

    Like a person, the placement keeps 4 px away from clouds and from nodata; the ground in
    the shadow of a cloud is visible (darker) and is drawn on like any other ground. The
    polygons are shrunk, if needed, so that at most ``max_fraction`` of the pixels are
    labelled; then points and lines of the most labelled class are dropped if still needed.

    Args:
        region: A :class:`helpers.sample_data.SampleRegion`.
        date: The scene's date (a key of ``region.scenes``).
        max_fraction: Largest fraction of pixels the ROIs may label (0.005 = 0.5 %).
        polygons: ``(train, validation)`` polygons per class.
        lines: ``(train, validation)`` polylines per class.
        point_density: ``(train, validation)`` points per scene pixel, shared between the
            classes (the default clicks about 6 700 + 1 700 points on a 2048 x 2048 scene).
        edge_share: Share of each class's points on pixels within 2 px of another class.
        area_power: Classes get points and polygon area in proportion to
            ``area ** area_power`` (0: the same for every class, 1: in proportion to area).
        seed: Seed of the placement; the same inputs give the same ROIs.

    Returns:
        A GeoJSON FeatureCollection (EPSG:4326) with ``class`` and ``split`` properties, and
        a foreign member ``example_rois`` recording the version and arguments of the
        placement (read by :func:`ensure_example_rois`).

    A class without any clear pixel (absent from a small region) gets no ROI, with a warning.

    Raises:
        KeyError: ``date`` is not a date of the region.
        ValueError: ``edge_share`` is outside [0, 1] or ``max_fraction`` outside (0, 1].

    Example:
        >>> fc = example_rois(region, "2021-06-15")  # doctest: +SKIP
        >>> sorted({f["properties"]["split"] for f in fc["features"]})  # doctest: +SKIP
        ['train', 'validation']
    """
    if date not in region.scenes:
        raise KeyError(
            f"date {date!r} is not a date of the region; choose one of {sorted(region.scenes)}."
        )
    if not 0.0 <= edge_share <= 1.0:
        raise ValueError(f"edge_share={edge_share!r} must be in [0, 1] (0.5: half the points).")
    if not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"max_fraction={max_fraction!r} must be in (0, 1], e.g. 0.005.")
    with raster.open_raster(region.landcover[date]) as ds:
        cover = ds.read(1)
        transform, crs = ds.transform, ds.crs
    usable = cover > 0
    if date in region.clouds:
        with raster.open_raster(region.clouds[date]) as ds:
            clouds = ds.read(1)
        # a person keeps away from clouds (and their blurred edges), not from their shadows
        usable &= ~ndimage.binary_dilation(clouds == 1, iterations=4)
    with raster.open_raster(region.scenes[date]) as ds:
        usable &= ds.read_masks(1) > 0
    usable &= ndimage.distance_transform_edt(cover > 0) > 4  # away from the swath edge too
    budget = int(max_fraction * cover.size)
    areas = {
        name: int(np.count_nonzero(usable & (cover == code)))
        for name, code in LANDCOVER_ROI_CLASSES.items()
    }
    weights = {name: float(area) ** area_power if area else 0.0 for name, area in areas.items()}
    total_weight = sum(weights.values()) or 1.0
    points = tuple(round(d * cover.size) for d in point_density)
    quota = {"polygon": polygons, "line": lines, "point": points}
    to_lonlat = _pixel_to_lonlat(transform, crs)
    features: list[tuple[str, str, str, Any]] = []  # class, split, kind, geometry (pixels)
    for name, code in LANDCOVER_ROI_CLASSES.items():
        rng = np.random.default_rng([seed, code])
        mine = usable & (cover == code)
        dist = ndimage.distance_transform_edt(mine)
        if dist.max() < 1:
            logger.warning(
                "class %r has no clear pixel in %s: no example ROI for it.",
                name,
                region.landcover[date],
            )
            continue
        share = weights[name] / total_weight
        # polygon radius: from this class's share of 40 % of the budget (points and lines
        # take the rest), as large as the class's homogeneous areas allow
        area = 0.4 * budget * share / max(sum(polygons), 1)
        radius = float(np.clip(math.sqrt(area / (0.75 * math.pi)), 1.5, 25.0))
        while radius > 1.5 and np.count_nonzero(dist >= radius + 1.5) < 50 * sum(polygons):
            radius = max(1.5, radius * 0.8)
        spread = math.sqrt(max(areas[name], 1) / math.pi)  # radius of the class as one disc
        drawn: list[tuple[str, Any]] = []
        centres = _pick_spread(
            np.argwhere(dist >= radius + 1.5), sum(polygons), max(3 * radius, spread / 3), rng
        )
        drawn += [("polygon", _polygon_at(c, radius, rng)) for c in centres]
        made = 0
        for c in _pick_spread(np.argwhere(dist >= 2.5), 4 * sum(lines), spread / 4, rng):
            line = _line_at(dist, c, max_length=min(60.0, cover.shape[0] / 8), clear=1.6)
            if line is not None:
                drawn.append(("line", line))
                made += 1
                if made == sum(lines):
                    break
        n_points = [max(1, round(n * share)) for n in points]
        quota["point"] = (n_points[0], n_points[1])
        edges = _class_edges(cover, code, 2.0) & mine
        clicked = []
        n_edge = round(sum(n_points) * edge_share)
        for pool, n in ((edges, n_edge), (mine & ~edges, sum(n_points) - n_edge)):
            candidates = np.flatnonzero(pool.ravel())
            clicked.append(rng.choice(candidates, min(n, len(candidates)), replace=False))
        clicked = np.concatenate(clicked)
        rng.shuffle(clicked)  # edge and other points in both splits
        for index in clicked:
            row, col = np.array(divmod(int(index), cover.shape[1])) + 0.5
            drawn.append(("point", shapely.Point(col, row)))
        # splits: per kind, the first n_train shapes are for training, the rest validation
        seen: dict[str, int] = {}
        for kind, geometry in drawn:
            k = seen.get(kind, 0)
            seen[kind] = k + 1
            split = "train" if k < quota[kind][0] else "validation"
            features.append((name, split, kind, geometry))
    # measure what each ROI labels (on its own bounding window) and shrink the largest
    # polygons until the whole collection is within budget
    counts = [1 if kind == "point" else _pixels_of(g, kind == "line") for _, _, kind, g in features]
    total = sum(counts)
    shrinkable = [i for i, f in enumerate(features) if f[2] == "polygon"]
    while total > budget and shrinkable and max(counts[i] for i in shrinkable) > 0:
        biggest = max(shrinkable, key=counts.__getitem__)
        name, split, kind, geometry = features[biggest]
        geometry = shapely.affinity.scale(geometry, 0.9, 0.9, origin=geometry.centroid)
        features[biggest] = (name, split, kind, geometry)
        new = _pixels_of(geometry, False)
        total += new - counts[biggest]
        counts[biggest] = new
    while total > budget:  # still too many: drop points and lines of the most labelled class
        per_class: dict[str, int] = {}
        for (name, _, kind, _), n in zip(features, counts, strict=True):
            if kind != "polygon":
                per_class[name] = per_class.get(name, 0) + n
        if not per_class:
            break
        richest = max(per_class, key=per_class.__getitem__)
        last = max(i for i, f in enumerate(features) if f[2] != "polygon" and f[0] == richest)
        total -= counts.pop(last)
        features.pop(last)
    keep = [i for i, n in enumerate(counts) if n > 0]  # polygons shrunk to nothing
    features = [features[i] for i in keep]
    logger.info(
        "Example ROIs for %s: %d features labelling %d pixels (%.3f %% of the scene).",
        date,
        len(features),
        total,
        100 * total / cover.size,
    )
    placement = {
        "version": EXAMPLE_ROIS_VERSION,
        "date": date,
        "max_fraction": max_fraction,
        "polygons": list(polygons),
        "lines": list(lines),
        "point_density": list(point_density),
        "edge_share": edge_share,
        "area_power": area_power,
        "seed": seed,
    }
    return {
        "type": "FeatureCollection",
        "example_rois": placement,
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(_to_roi_crs(g, transform, to_lonlat)),
                "properties": {"class": name, "split": split},
            }
            for name, split, _, g in features
        ],
    }


def _pixels_of(geometry: Any, all_touched: bool) -> int:
    """Pixels a geometry in pixel coordinates burns (rasterised on its own bounding box)."""
    x0, y0, x1, y1 = shapely.bounds(geometry)
    c0, r0 = math.floor(x0) - 1, math.floor(y0) - 1
    shape = (math.ceil(y1) - r0 + 1, math.ceil(x1) - c0 + 1)
    burned = rasterio.features.rasterize(
        [(geometry, 1)],
        out_shape=shape,
        transform=Affine.translation(c0, r0),
        all_touched=all_touched,
    )
    return int(burned.sum())


def _placement(date: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``example_rois`` member that :func:`example_rois` writes for these arguments."""
    bound = inspect.signature(example_rois).bind(None, date, **kwargs)
    bound.apply_defaults()
    arguments = {k: v for k, v in bound.arguments.items() if k not in ("region", "date")}
    placement = {"version": EXAMPLE_ROIS_VERSION, "date": date, **arguments}
    return json.loads(json.dumps(placement))  # tuples as lists, as read back from the file


def ensure_example_rois(
    region: Any, date: str = "2021-06-15", *, overwrite: bool = False, **kwargs: Any
) -> Path:
    """Write the region's example ROIs to ``rois_<date>.geojson`` next to it, if missing.

    A file written by another version of :func:`example_rois`, or with other arguments, is
    drawn and written again (its ``example_rois`` member records both), so a region generated
    once keeps up with the placement.

    Args:
        region: A :class:`helpers.sample_data.SampleRegion`.
        date: The scene's date.
        overwrite: Draw and write them again even if the file is up to date.
        **kwargs: Passed to :func:`example_rois`.

    Returns:
        The path of the GeoJSON file (see :func:`example_rois_path`).

    Raises:
        TypeError: ``kwargs`` holds an argument :func:`example_rois` does not take.
    """
    path = example_rois_path(region, date)
    wanted = _placement(date, kwargs)
    if path.is_file() and not overwrite:
        try:
            written = json.loads(path.read_text()).get("example_rois")
        except (OSError, ValueError, AttributeError):
            written = None
        if written == wanted:
            return path
        logger.info("%s was drawn by another placement (%s); drawing it again.", path, written)
    collection = example_rois(region, date, **kwargs)
    return atomic_write_text(path, json.dumps(collection, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# Per-pixel features and the random-forest baseline
# --------------------------------------------------------------------------------------------

#: Default spectral indices of :func:`pixel_features`.
DEFAULT_INDICES: tuple[str, ...] = ("ndvi", "ndwi")
#: Default texture: local mean and standard deviation of these layers ...
DEFAULT_TEXTURE_LAYERS: tuple[str, ...] = ("blue", "red", "nir", "ndvi")
#: ... in square windows of these sizes (pixels).
DEFAULT_TEXTURE_SIZES: tuple[int, ...] = (3, 7, 15)


def pixel_features(
    image: np.ndarray,
    band_names: Sequence[str],
    *,
    nodata: float | None = None,
    indices: Sequence[str] = DEFAULT_INDICES,
    texture_layers: Sequence[str] = DEFAULT_TEXTURE_LAYERS,
    texture_sizes: Sequence[int] = DEFAULT_TEXTURE_SIZES,
) -> tuple[np.ndarray, list[str]]:
    """Per-pixel features: the bands, spectral indices and local mean / std texture.

    Texture is the mean and standard deviation in a ``size x size`` window
    (:func:`scipy.ndimage.uniform_filter`, edges reflected), which separates smooth covers
    (water, fields) from busy ones (buildings, trees) of similar colour. Invalid pixels enter the
    filters as 0; their own features are nan.

    Args:
        image: ``(bands, rows, cols)``, any numeric dtype, plain or masked.
        band_names: Names of the bands of ``image``.
        nodata: The image's nodata value.
        indices: Spectral index names of :data:`helpers.raster.SPECTRAL_INDICES`.
        texture_layers: Bands or indices whose texture is computed.
        texture_sizes: Window sizes in pixels.

    Returns:
        ``(features, names)``: float32 ``(n_features, rows, cols)`` and the feature names.

    Raises:
        RasterError: An index needs a band the image lacks, or a texture layer is unknown.

    Example:
        >>> feats, names = pixel_features(image, ("blue", "green", "red", "nir"))  # doctest: +SKIP
    """
    valid = raster.valid_mask(image, nodata)
    data = np.ma.getdata(image).astype(np.float32)
    layers: dict[str, np.ndarray] = {
        str(n): np.where(valid, band, np.nan) for n, band in zip(band_names, data, strict=True)
    }
    for index in indices:
        layers[index.lower()] = raster.spectral_index(image, band_names, index, nodata=nodata)
    names = list(layers)
    stack = list(layers.values())
    for layer in texture_layers:
        key = str(layer).lower()
        lookup = {n.lower(): n for n in layers}
        if key not in lookup:
            raise raster.RasterError(
                f"texture layer {layer!r} is neither a band nor an index; choose from "
                f"{', '.join(layers)}."
            )
        values = np.nan_to_num(layers[lookup[key]], nan=0.0).astype(np.float64)
        for size in texture_sizes:
            mean = ndimage.uniform_filter(values, size=size, mode="reflect")
            square = ndimage.uniform_filter(values * values, size=size, mode="reflect")
            std = np.sqrt(np.maximum(square - mean * mean, 0.0))
            stack += [mean.astype(np.float32), std.astype(np.float32)]
            names += [f"{lookup[key]}_mean{size}", f"{lookup[key]}_std{size}"]
    features = np.stack(stack).astype(np.float32)
    features[:, ~valid] = np.nan
    return features, names


@dataclass
class PixelClassifier:
    """A fitted per-pixel classifier and everything needed to apply it to another scene.

    Attributes:
        model: The fitted scikit-learn estimator (``predict`` on ``(n, n_features)``).
        band_names: The scene bands it reads, in order.
        classes: ``{class name: code}``.
        feature_names: Names of the features, in model input order.
        feature_options: Keyword arguments of :func:`pixel_features`.
        halo: Pixels of context each block needs around it (half the largest texture window).
        nodata: The nodata value of the training scene (used when the scene declares none).
        training: Facts about the training run (pixels per class, seconds, parameters).
    """

    model: Any
    band_names: tuple[str, ...]
    classes: dict[str, int]
    feature_names: list[str]
    feature_options: dict[str, Any]
    halo: int
    nodata: float | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def features(self, image: np.ndarray, nodata: float | None = None) -> np.ndarray:
        """Features ``(n_features, rows, cols)`` of an image with the classifier's bands."""
        features, _ = pixel_features(
            image,
            self.band_names,
            nodata=nodata if nodata is not None else self.nodata,
            **self.feature_options,
        )
        return features

    def predict_image(self, image: np.ndarray, nodata: float | None = None) -> np.ndarray:
        """Class codes ``(rows, cols)`` uint8 of an image; IGNORE_VALUE where it is invalid."""
        features = self.features(image, nodata)
        flat = features.reshape(features.shape[0], -1).T
        valid = np.isfinite(flat).all(axis=1)
        out = np.full(flat.shape[0], labels.IGNORE_VALUE, dtype=np.uint8)
        if valid.any():
            out[valid] = self.model.predict(flat[valid]).astype(np.uint8)
        return out.reshape(features.shape[1:])

    @property
    def codes(self) -> list[int]:
        """Class codes in increasing order: the channels of :meth:`__call__`."""
        return sorted(self.classes.values())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of images, so that the forest is a per-pixel model.

        With this, :func:`helpers.inference.predict` takes the forest like a Keras model::

            inference.predict(forest, scene, "rf.tif", card=forest.model_card(),
                              output="classes")

        Each image's features are computed on the image alone (edges reflected), so pixels
        near an image's edge get slightly different texture features than in
        :func:`predict_scene`, which reads context around every block; the overlapping,
        smoothly blended patches of ``predict`` keep the difference small.

        Args:
            batch: ``(n, rows, cols, bands)`` raw band values (the classifier's bands, in
                order; :meth:`model_card` makes ``predict`` pass them unscaled).

        Returns:
            float32 ``(n, rows, cols, k)``: the forest's class probabilities, channel ``i``
            for the ``i``-th class code of :attr:`codes`; all 0 where a pixel is invalid.

        Raises:
            ValueError: ``batch`` is not 4-D with one band per classifier band.
        """
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != len(self.band_names):
            raise ValueError(
                f"batch has shape {batch.shape}; the forest takes (n, rows, cols, "
                f"{len(self.band_names)}) images with bands {list(self.band_names)}."
            )
        channel = {code: i for i, code in enumerate(self.codes)}
        columns = [channel[int(code)] for code in self.model.classes_]
        out = np.zeros((*batch.shape[:3], len(channel)), dtype=np.float32)
        for i, image in enumerate(batch):
            features = self.features(np.moveaxis(image, -1, 0))
            flat = features.reshape(features.shape[0], -1).T
            valid = np.isfinite(flat).all(axis=1)
            if valid.any():
                probabilities = np.zeros((flat.shape[0], len(channel)), dtype=np.float32)
                probabilities[np.ix_(valid, columns)] = self.model.predict_proba(flat[valid])
                out[i] = probabilities.reshape(*features.shape[1:], len(channel))
        return out

    def model_card(self, tile_size: int = 512) -> dict[str, Any]:
        """A model card that lets :func:`helpers.inference.predict` run the forest.

        Args:
            tile_size: The patch size ``predict`` uses by default.

        Returns:
            ``{"bands", "scaling", "tile_size", "classes", "training_data"}``: the bands by
            name, raw values (the forest computes its own features), and ``{code: name}``,
            so the label map holds the class codes.
        """
        names = {code: name for name, code in self.classes.items()}
        return {
            "bands": list(self.band_names),
            "scaling": {"method": "linear", "scale": 1.0, "offset": 0.0},
            "tile_size": int(tile_size),
            "classes": {code: names[code] for code in self.codes},
            "training_data": str(self.training.get("scene", "")),
        }


def _blocks(height: int, width: int, size: int) -> Iterator[Window]:
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def _read_with_halo(
    ds: Any, indexes: list[int], window: Window, halo: int
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Read ``window`` plus up to ``halo`` pixels of context, clipped to the raster."""
    r0 = max(0, int(window.row_off) - halo)
    c0 = max(0, int(window.col_off) - halo)
    r1 = min(ds.height, int(window.row_off + window.height) + halo)
    c1 = min(ds.width, int(window.col_off + window.width) + halo)
    data = ds.read(indexes, window=Window.from_slices((r0, r1), (c0, c1)), masked=True)
    inner = (
        slice(int(window.row_off) - r0, int(window.row_off) - r0 + int(window.height)),
        slice(int(window.col_off) - c0, int(window.col_off) - c0 + int(window.width)),
    )
    return data, inner


def roi_weights(target: np.ndarray, window: int = 9) -> np.ndarray:
    """Sample weights that let sparse labels count as much as dense ones.

    Each labelled pixel weighs ``1 / n``, where ``n`` is the number of pixels of its class
    labelled in the ``window x window`` square centred on it (itself included): a lone point
    weighs 1, a pixel inside a large polygon ``1 / window**2``.

    Args:
        target: ``(rows, cols)`` class codes, :data:`~helpers.labels.IGNORE_VALUE` unlabelled.
        window: Side of the square in pixels (odd, >= 1).

    Returns:
        float32 ``(rows, cols)``: the weights, 0 on unlabelled pixels.

    Raises:
        ValueError: ``window`` is not an odd positive integer.

    Example:
        >>> target = np.full((5, 5), 255, np.uint8); target[2, 2] = 1; target[0, :2] = 2
        >>> roi_weights(target, 3)[[2, 0], [2, 0]].tolist()
        [1.0, 0.5]
    """
    if isinstance(window, bool) or int(window) != window or window < 1 or window % 2 == 0:
        raise ValueError(f"window={window!r} must be an odd number of pixels, e.g. 9.")
    weights = np.zeros(target.shape, dtype=np.float32)
    for code in np.unique(target[target != labels.IGNORE_VALUE]):
        mine = target == code
        counts = ndimage.uniform_filter(mine.astype(np.float32), int(window), mode="constant")
        weights[mine] = 1.0 / np.maximum(np.rint(counts[mine] * window * window), 1.0)
    return weights


def train_random_forest(
    scene: PathLike,
    roi_labels: RoiLabels,
    *,
    split: str = "train",
    n_estimators: int = 100,
    max_samples_per_class: int | None = 20_000,
    block_size: int = 512,
    seed: int = 0,
    n_jobs: int = -1,
    feature_options: Mapping[str, Any] | None = None,
    density_window: int | None = 9,
    progress: bool = False,
) -> PixelClassifier:
    """Fit a random forest on the labelled pixels of one split.

    Features are computed block by block (only blocks holding labels are read), with enough
    context around each block for the texture windows, so memory stays bounded on large scenes
    and the features equal those :func:`predict_scene` computes.

    A polygon labels hundreds of neighbouring pixels that look alike, a point one pixel where
    the person thought it mattered. Left as they are, the polygons' easy interiors outvote the
    points; so each pixel weighs ``1 / n``, ``n`` the number of pixels of its class labelled in
    the ``density_window`` square around it (:func:`roi_weights`): a polygon counts about as
    much as the points that would cover it sparsely, a lone point fully.

    Args:
        scene: The scene's GeoTIFF (the grid of ``roi_labels``).
        roi_labels: From :func:`rois_to_labels` on this scene.
        split: Which labels to fit on: ``"train"`` (default), ``"validation"`` or ``"all"``.
        n_estimators: Number of trees.
        max_samples_per_class: Subsample larger classes to this many pixels (seeded), so that
            big polygons do not drown small classes; None keeps all.
        block_size: Block size of the feature computation.
        seed: Seed of the subsampling and of the forest.
        n_jobs: Parallel jobs of the forest (-1: all cores).
        feature_options: Keyword arguments of :func:`pixel_features`.
        density_window: Side of the window of the sample weights (odd pixels); None weighs
            every labelled pixel the same.
        progress: Show a progress bar.

    Returns:
        A fitted :class:`PixelClassifier`.

    Raises:
        RoiError: ``roi_labels`` is on another grid than ``scene``, or the split has no labels.
    """
    from sklearn.ensemble import RandomForestClassifier

    started = time.perf_counter()
    options = dict(feature_options or {})
    sizes = options.get("texture_sizes", DEFAULT_TEXTURE_SIZES)
    halo = max(sizes) // 2 + 1 if sizes else 0
    info = raster.describe(scene)
    target = roi_labels.for_split(split)
    if target.shape != (info.height, info.width) or not info.transform.almost_equals(
        roi_labels.transform
    ):
        raise RoiError(
            f"roi_labels are on another grid ({target.shape}, {tuple(roi_labels.transform)[:6]}) "
            f"than {scene} ({info.height}, {info.width}); burn the ROIs onto this scene with "
            "rois_to_labels(rois, scene, ...)."
        )
    if not (target != labels.IGNORE_VALUE).any():
        raise RoiError(f"no labelled pixels in split {split!r}; draw ROIs with this split.")
    weights = (
        roi_weights(target, density_window)
        if density_window
        else (target != labels.IGNORE_VALUE).astype(np.float32)
    )
    xs, ys, ws = [], [], []
    names: list[str] = []
    with raster.open_raster(scene) as ds:
        indexes = list(range(1, ds.count + 1))
        windows = [
            w
            for w in _blocks(ds.height, ds.width, block_size)
            if (target[w.toslices()] != labels.IGNORE_VALUE).any()
        ]
        for window in tqdm(windows, desc="features", disable=not progress):
            data, inner = _read_with_halo(ds, indexes, window, halo)
            feats, names = pixel_features(data, info.band_names, nodata=info.nodata, **options)
            feats = feats[:, inner[0], inner[1]]
            block_labels = target[window.toslices()]
            keep = (block_labels != labels.IGNORE_VALUE) & np.isfinite(feats).all(axis=0)
            xs.append(feats[:, keep].T)
            ys.append(block_labels[keep])
            ws.append(weights[window.toslices()][keep])
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    rng = np.random.default_rng(seed)
    if max_samples_per_class is not None:
        keep_idx = []
        for code in np.unique(y):
            idx = np.flatnonzero(y == code)
            if len(idx) > max_samples_per_class:
                idx = np.sort(rng.choice(idx, max_samples_per_class, replace=False))
            keep_idx.append(idx)
        order = np.concatenate(keep_idx)
        x, y, w = x[order], y[order], w[order]
    model = RandomForestClassifier(
        n_estimators=n_estimators,
        min_samples_leaf=2,
        n_jobs=n_jobs,
        random_state=seed,
    )
    model.fit(x, y, sample_weight=w / w.mean())
    counts = {roi_labels.class_names[int(c)]: int((y == c).sum()) for c in np.unique(y)}
    return PixelClassifier(
        model=model,
        band_names=tuple(info.band_names),
        classes=dict(roi_labels.classes),
        feature_names=names,
        feature_options=options,
        halo=halo,
        nodata=info.nodata,
        training={
            "scene": str(scene),
            "split": split,
            "pixels": counts,
            "n_estimators": n_estimators,
            "density_window": density_window,
            "seed": seed,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )


def _colormap(classes: Mapping[str, int], colors: Mapping[str, str] | None) -> dict:
    from matplotlib.colors import to_rgba

    palette = dict(colors or {})
    defaults = LANDCOVER_COLORS
    import matplotlib

    cycle = matplotlib.colormaps["tab10"]
    table = {}
    for k, (name, code) in enumerate(classes.items()):
        colour = palette.get(name) or defaults.get(name) or cycle(k % 10)
        table[int(code)] = tuple(int(round(255 * v)) for v in to_rgba(colour))
    return table


def predict_scene(
    classifier: PixelClassifier,
    scene: PathLike,
    out_path: PathLike,
    *,
    block_size: int = 512,
    colors: Mapping[str, str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Classify every pixel of a scene block by block and write a georeferenced label map.

    Memory is bounded by one block (plus its texture context) at a time; the output is a tiled
    uint8 GeoTIFF on the scene's grid with class codes, :data:`~helpers.labels.IGNORE_VALUE` as
    nodata (invalid input pixels) and a colour table, written atomically.

    Args:
        classifier: From :func:`train_random_forest`.
        scene: The GeoTIFF to classify; it needs the classifier's bands (by name).
        out_path: The label map to write.
        block_size: Rows and columns per block.
        colors: ``{class name: colour}`` for the colour table (defaults: land-cover colours).
        overwrite: Replace an existing ``out_path``.
        progress: Show a progress bar.

    Returns:
        ``out_path``.

    Raises:
        FileExistsError: ``out_path`` exists and ``overwrite`` is False.
        RasterError: The scene lacks a band the classifier needs.
    """
    from helpers.files import atomic_path

    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True to replace it.")
    info = raster.describe(scene)
    indexes = raster.resolve_bands(
        list(classifier.band_names), info.band_names, path=scene, argument="classifier bands"
    )
    profile = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": 1,
        "dtype": "uint8",
        "crs": info.crs,
        "transform": info.transform,
        "nodata": labels.IGNORE_VALUE,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    nodata = info.nodata if info.nodata is not None else classifier.nodata
    windows = list(_blocks(info.height, info.width, block_size))
    with atomic_path(out_path) as tmp, raster.open_raster(scene) as ds:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write_colormap(1, _colormap(classifier.classes, colors))
            dst.set_band_description(1, "class")
            dst.update_tags(classes=json.dumps(classifier.classes))
            for window in tqdm(windows, desc="predict", disable=not progress):
                data, inner = _read_with_halo(ds, indexes, window, classifier.halo)
                block = classifier.predict_image(data, nodata)[inner[0], inner[1]]
                dst.write(block[np.newaxis], window=window)
    return out_path


def evaluate_label_map(
    prediction: PathLike | np.ndarray,
    reference: PathLike | np.ndarray,
    classes: Mapping[str, int],
    *,
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Overall accuracy, per-class IoU and the confusion matrix of a label map.

    Pixels count where the reference holds one of ``classes``, the prediction is not
    IGNORE_VALUE and ``mask`` (if given) is True.

    Args:
        prediction: A label map (GeoTIFF path or ``(rows, cols)`` array) of class codes.
        reference: The reference on the same grid (e.g. ``landcover_2021.tif``).
        classes: ``{class name: code}``.
        mask: Optional boolean ``(rows, cols)`` of the pixels to evaluate.

    Returns:
        ``{"overall_accuracy", "iou": {name: value}, "mean_iou", "pixels", "confusion"}``;
        ``confusion[i][j]`` counts reference class i predicted as class j (``classes`` order).

    Raises:
        ValueError: The two maps differ in shape.
    """

    def load(value: Any) -> np.ndarray:
        if isinstance(value, (str, os.PathLike)):
            with raster.open_raster(value) as ds:
                return ds.read(1)
        return np.asarray(value)

    pred, ref = load(prediction), load(reference)
    if pred.shape != ref.shape:
        raise ValueError(
            f"prediction {pred.shape} and reference {ref.shape} differ in shape; both must be "
            "on the same grid."
        )
    codes = np.array(list(classes.values()))
    keep = np.isin(ref, codes) & (pred != labels.IGNORE_VALUE)
    if mask is not None:
        keep &= mask
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[codes] = np.arange(len(codes))
    r = lookup[ref[keep]]
    p = lookup[pred[keep].astype(np.int64)]
    valid = p >= 0
    n = len(codes)
    confusion = np.bincount(r[valid] * n + p[valid], minlength=n * n).reshape(n, n)
    wrong_unknown = int((~valid).sum())  # predicted a code outside classes: counts as wrong
    total = int(keep.sum())
    correct = int(np.trace(confusion))
    iou = {}
    for k, name in enumerate(classes):
        tp = confusion[k, k]
        union = confusion[k, :].sum() + confusion[:, k].sum() - tp
        iou[name] = float(tp / union) if union else float("nan")
    values = [v for v in iou.values() if not math.isnan(v)]
    return {
        "overall_accuracy": correct / total if total else float("nan"),
        "iou": iou,
        "mean_iou": float(np.mean(values)) if values else float("nan"),
        "pixels": total,
        "unknown_predictions": wrong_unknown,
        "confusion": confusion.tolist(),
    }
