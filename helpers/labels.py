"""Turn vector labels (polygons digitised in QGIS, GeoJSON outlines) into patch labels and masks.

Two kinds of labels come out of one vector file:

* **Per patch** (image classification): :func:`tile_labels` gives each window of a patch grid
  ``1`` (positive), ``0`` (negative) or :data:`IGNORE_LABEL` from the exact fraction of the
  window that the polygons cover (:func:`tile_label_fractions`).
* **Per pixel** (segmentation): :func:`rasterize_mask` burns classes into a ``uint8`` mask on
  the raster's grid, with :data:`IGNORE_VALUE` where the labels are uncertain.

Typical use in a notebook::

    from helpers import labels, raster

    with raster.open_raster("data/generated/sample/scene_2021.tif") as src:
        crs, transform, bounds, shape = src.crs, src.transform, src.bounds, src.shape
    outlines = labels.read_vectors("data/generated/sample/settlements_2021.geojson", crs=crs)
    labels.check_overlap(outlines, bounds, crs=crs)
    patch_labels = labels.tile_labels(windows, transform, outlines.geometry)
    mask = labels.rasterize_mask(outlines, shape, transform)

Conventions chosen here:

* Geometries handed to the per-patch and per-pixel functions must already be in the raster's
  CRS: :func:`read_vectors` reprojects with ``crs=src.crs``.
* Invalid polygons (self-intersections, bow-ties) are repaired with :func:`shapely.make_valid`
  when read; the number repaired is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio.features
import shapely
from affine import Affine
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.crs import CRS
from rasterio.windows import Window

from helpers import raster

__all__ = [
    "IGNORE_LABEL",
    "IGNORE_VALUE",
    "VectorError",
    "check_overlap",
    "class_counts",
    "rasterize_mask",
    "read_vectors",
    "tile_label_fractions",
    "tile_labels",
    "tile_majority_labels",
]

logger = logging.getLogger(__name__)

#: Per-patch label of a patch that is neither clearly positive nor clearly negative.
IGNORE_LABEL = -1
#: Per-pixel mask value for pixels whose class is unknown (losses and metrics skip it).
IGNORE_VALUE = 255

# Tolerance when comparing area fractions with thresholds, so that a window covered exactly
# half by a polygon counts as 0.5 despite floating-point round-off in the intersection.
_FRACTION_TOLERANCE = 1e-9

PathLike = str | os.PathLike
GeometriesLike = gpd.GeoDataFrame | gpd.GeoSeries | Iterable[Any]


class VectorError(ValueError):
    """A vector file or geometry collection cannot be used as labels the way the caller asked."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _missing_crs_message(path: str) -> str:
    return (
        f"{path} has no coordinate reference system (CRS), so its shapes cannot be placed on the "
        "raster. A Shapefile keeps its CRS in a .prj file next to the .shp; a GeoJSON without a "
        "'crs' member is lon/lat EPSG:4326 (RFC 7946). Assign the CRS the coordinates were "
        "digitised in: in QGIS, right-click the layer > Layer CRS > Set Layer CRS, then "
        "Export > Save Features As...; or in Python, "
        "`gpd.read_file(path).set_crs('EPSG:4326').to_file(path)` (use your data's EPSG code)."
    )


def _is_polygonal(geometries: np.ndarray) -> np.ndarray:
    kinds = shapely.get_type_id(geometries)
    return (kinds == shapely.GeometryType.POLYGON) | (kinds == shapely.GeometryType.MULTIPOLYGON)


def _polygonal_part(geometry: Any) -> Any:
    """The polygons inside ``geometry`` (a repaired polygon may come back as a collection)."""
    if geometry is None or shapely.is_empty(geometry):
        return shapely.Polygon()
    if _is_polygonal(np.asarray([geometry]))[0]:
        return geometry
    parts = shapely.get_parts(geometry)
    # Collections can nest (a GeometryCollection holding a MultiPolygon): flatten once more.
    parts = shapely.get_parts(parts)
    polygons = parts[_is_polygonal(parts)] if len(parts) else parts
    if len(polygons) == 0:
        return shapely.Polygon()
    if len(polygons) == 1:
        return polygons[0]
    return shapely.MultiPolygon(list(polygons))


def _repair(geometries: np.ndarray, source: str) -> np.ndarray:
    """Make invalid geometries valid; originally polygonal ones keep only their polygons."""
    geometries = np.asarray(geometries, dtype=object)
    present = ~shapely.is_missing(geometries)
    invalid = present & ~shapely.is_valid(geometries)
    if invalid.any():
        was_polygonal = _is_polygonal(geometries)
        repaired = shapely.make_valid(geometries[invalid])
        for k, index in enumerate(np.flatnonzero(invalid)):
            geometries[index] = (
                _polygonal_part(repaired[k]) if was_polygonal[index] else repaired[k]
            )
        logger.info(
            "Repaired %d invalid geometr%s in %s with shapely.make_valid.",
            int(invalid.sum()),
            "y" if invalid.sum() == 1 else "ies",
            source,
        )
    return geometries


def _check_geographic_range(gdf: gpd.GeoDataFrame, name: str) -> None:
    """Refuse coordinates outside longitude/latitude range in a file that declares a
    geographic CRS: metres labelled as degrees (reprojecting them gives empty geometries)."""
    if not gdf.crs.is_geographic:
        return
    geometries = gdf.geometry.to_numpy()
    geometries = geometries[~(shapely.is_missing(geometries) | shapely.is_empty(geometries))]
    if len(geometries) == 0:
        return
    west, south, east, north = (float(v) for v in shapely.total_bounds(geometries))
    # Longitudes up to 360 occur (0-360 conventions); latitudes never pass the poles.
    if max(abs(west), abs(east)) <= 360.0 and max(abs(south), abs(north)) <= 90.0 + 1e-6:
        return
    declared = gdf.crs.to_string()
    raise VectorError(
        f"{name}: coordinates look projected (metres) but the file declares {declared}; set "
        f"the right CRS. Its bounds ({west:.6g}, {south:.6g}, {east:.6g}, {north:.6g}) are "
        "outside longitude -180..180 / latitude -90..90. Assign the CRS the coordinates were "
        "digitised in (the raster's, often a UTM zone): in QGIS, right-click the layer > "
        "Layer CRS > Set Layer CRS, then Export > Save Features As...; or in Python, "
        "`gpd.read_file(path).set_crs('EPSG:32633', allow_override=True).to_file(path)` "
        "(use your data's EPSG code)."
    )


def read_vectors(
    path: PathLike,
    *,
    crs: CRS | str | None = None,
    layer: str | int | None = None,
    class_property: str | None = None,
) -> gpd.GeoDataFrame:
    """Read labels from a GeoJSON, Shapefile or GeoPackage, reprojected and repaired.

    Steps: read with geopandas (pyogrio engine); require a CRS; reproject to ``crs``; repair
    invalid geometries with :func:`shapely.make_valid` (polygons keep only their polygonal
    parts, so a bow-tie becomes two triangles and stray lines from the repair are dropped);
    drop features with empty or missing geometry. Repairs and drops are logged.

    Args:
        path: A vector file GDAL can read: ``.geojson``, ``.shp`` (with its ``.shx``, ``.dbf``
            and ``.prj``), ``.gpkg`` ...
        crs: Target CRS, usually the raster's ``src.crs``. None keeps the file's CRS.
        layer: Layer name or index, required for files with several layers (GeoPackages).
        class_property: If given, the attribute that holds the class; checked to exist.

    Returns:
        A GeoDataFrame in ``crs`` (or the file's CRS) with valid, non-empty geometries and the
        file's path in ``gdf.attrs["source"]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VectorError: The file cannot be read as vector data or has no geometry (a CSV), it
            has several layers and no ``layer`` was given, the layer does not exist, the file
            has no CRS, it declares a geographic CRS (EPSG:4326) for coordinates outside
            longitude/latitude range (projected metres), it holds no features, or
            ``class_property`` is not one of its columns.

    Example:
        >>> gdf = read_vectors("settlements_2021.geojson", crs="EPSG:32633")  # doctest: +SKIP
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise raster.file_not_found(name, "Vector file")
    unreadable = (
        "Pass a GeoJSON, a Shapefile (.shp with its .shx and .dbf) or a GeoPackage; rasters "
        "such as .tif files are read with helpers.raster instead."
    )
    try:
        layers = pyogrio.list_layers(name)
    except DataSourceError as exc:
        raise VectorError(f"Cannot read {name} as vector data ({exc}). {unreadable}") from exc
    if len(layers) == 0:
        raise VectorError(f"no features in {name}: it holds no vector layer. {unreadable}")
    if layer is None and len(layers) > 1:
        raise VectorError(
            f"{name} holds {len(layers)} layers: {', '.join(str(n) for n in layers[:, 0])}. "
            "Pass layer=... to choose one."
        )
    try:
        gdf = gpd.read_file(name, engine="pyogrio", layer=layer)
    except DataLayerError as exc:
        raise VectorError(
            f"Cannot read layer {layer!r} of {name} ({exc}). Available layers: "
            f"{', '.join(str(n) for n in layers[:, 0])}."
        ) from exc
    except DataSourceError as exc:
        raise VectorError(f"Cannot read {name} as vector data ({exc}). {unreadable}") from exc
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise VectorError(
            f"{name} has no geometry (CSV?): it is a table without shapes. Use GeoJSON, "
            "GeoPackage or Shapefile: e.g. in QGIS, add it as a delimited-text layer with its "
            "coordinate columns, then Export > Save Features As... GeoPackage."
        )

    if len(gdf) == 0:
        raise VectorError(
            f"no features in {name}: the file (layer {layer!r}) is empty. Check that you saved "
            "the edits in QGIS, or that you exported the right layer."
        )
    if gdf.crs is None:
        raise VectorError(_missing_crs_message(name))
    if class_property is not None and class_property not in gdf.columns:
        columns = [c for c in gdf.columns if c != gdf.geometry.name]
        raise VectorError(
            f"class_property {class_property!r} is not a column of {name}. Available columns: "
            f"{', '.join(map(repr, columns)) or '(none)'}."
        )
    _check_geographic_range(gdf, name)
    if crs is not None:
        target = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
        if not gdf.crs.equals(target.to_wkt()):
            gdf = gdf.to_crs(target.to_wkt())

    geometries = _repair(gdf.geometry.to_numpy(), name)
    gdf = gdf.set_geometry(gpd.GeoSeries(geometries, index=gdf.index, crs=gdf.crs))
    empty = shapely.is_missing(geometries) | shapely.is_empty(geometries)
    if empty.any():
        logger.warning("Dropped %d features with empty geometry from %s.", int(empty.sum()), name)
        gdf = gdf.loc[~empty].copy()
    if len(gdf) == 0:
        raise VectorError(f"no features in {name}: every feature has an empty geometry.")
    if class_property is not None:
        missing = int(gdf[class_property].isna().sum())
        if missing:
            logger.warning("%d features in %s have no value for %r.", missing, name, class_property)
    gdf.attrs["source"] = name
    return gdf


def check_overlap(
    gdf: gpd.GeoDataFrame,
    bounds: Sequence[float],
    *,
    crs: CRS | str,
    raster_name: str = "the raster",
    warn_below: float = 0.5,
) -> float:
    """Check that the labels and the raster cover the same place.

    The classic symptom of a CRS mix-up (lon/lat read as metres, a file saved in the wrong
    CRS) is labels that miss the raster entirely, which otherwise shows up much later as an
    all-negative dataset.

    Args:
        gdf: The labels, for example from :func:`read_vectors`. Reprojected to ``crs`` if its
            CRS differs; a GeoDataFrame without CRS is assumed to be in ``crs`` already.
        bounds: The raster's ``(left, bottom, right, top)`` in ``crs`` (``src.bounds``).
        crs: The raster's CRS (``src.crs``).
        raster_name: How to call the raster in messages (its path, for example).
        warn_below: Log a warning when fewer than this fraction of features touch the raster.

    Returns:
        The fraction of features that intersect the raster's footprint.

    Raises:
        VectorError: No feature intersects the raster.
    """
    target = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    name = gdf.attrs.get("source", "labels")
    if gdf.crs is not None and not gdf.crs.equals(target.to_wkt()):
        gdf = gdf.to_crs(target.to_wkt())
    left, bottom, right, top = (float(v) for v in bounds)
    footprint = shapely.box(left, bottom, right, top)
    geometries = gdf.geometry.to_numpy()
    geometries = geometries[~(shapely.is_missing(geometries) | shapely.is_empty(geometries))]
    if len(geometries) == 0:
        raise VectorError(f"labels {name} hold no geometry to compare with {raster_name}.")
    inside = shapely.intersects(geometries, footprint)
    fraction = float(inside.mean())
    label_bounds = ", ".join(f"{v:.6g}" for v in shapely.total_bounds(geometries))
    raster_bounds = ", ".join(f"{v:.6g}" for v in (left, bottom, right, top))
    if not inside.any():
        raise VectorError(
            f"labels {name} lie outside the raster {raster_name}: label bounds ({label_bounds}) "
            f"vs raster bounds ({raster_bounds}) in CRS {target.to_string()}; check both CRSs "
            "(the labels' file must declare the CRS its coordinates are in, and "
            "read_vectors(..., crs=src.crs) reprojects them to the raster's)."
        )
    if fraction < warn_below:
        logger.warning(
            "Only %d of %d features of %s touch %s (label bounds %s vs raster bounds %s in %s).",
            int(inside.sum()),
            len(inside),
            name,
            raster_name,
            label_bounds,
            raster_bounds,
            target.to_string(),
        )
    return fraction


# --------------------------------------------------------------------------------------------
# Per-patch labels
# --------------------------------------------------------------------------------------------


def _geometry_array(geometries: GeometriesLike) -> np.ndarray:
    if isinstance(geometries, gpd.GeoDataFrame):
        geometries = geometries.geometry
    if isinstance(geometries, gpd.GeoSeries):
        return geometries.to_numpy()
    if isinstance(geometries, shapely.Geometry):
        return np.asarray([geometries], dtype=object)
    return np.asarray(list(geometries), dtype=object)


def _to_pixel_space(geometries: np.ndarray, transform: Affine) -> np.ndarray:
    inverse = ~transform

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        cols = inverse.a * x + inverse.b * y + inverse.c
        rows = inverse.d * x + inverse.e * y + inverse.f
        return np.column_stack([cols, rows])

    return shapely.transform(geometries, apply)


def _window_boxes(windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(col, row)`` in pixel space for each window, and their areas."""
    offsets = np.array(
        [(w.col_off, w.row_off, w.width, w.height) for w in windows], dtype=float
    ).reshape(-1, 4)
    col, row, width, height = offsets.T
    if np.any(width <= 0) or np.any(height <= 0):
        raise ValueError(
            "windows: every window needs a positive width and height; drop empty windows first."
        )
    return shapely.box(col, row, col + width, row + height), width * height


def tile_label_fractions(
    windows: Sequence[Window], transform: Affine, geometries: GeometriesLike
) -> np.ndarray:
    """The fraction of each window's area covered by the union of the polygons.

    Computed exactly with shapely: the polygons are moved to pixel space (the inverse of
    ``transform``), dissolved, and intersected with one box per window, using an STRtree so that
    only boxes near a polygon are intersected. Overlapping polygons are not counted twice.

    A window that extends past the raster (edge mode "pad" of a patch grid) counts with its full
    area: the part outside the raster holds no labels, so it lowers the fraction, just as the
    nodata padding in the patch carries no settlement.

    Args:
        windows: Patch windows over the raster whose grid is ``transform``.
        transform: The raster's affine transform (``src.transform``).
        geometries: Polygons in the raster's CRS: a GeoDataFrame, a GeoSeries or a sequence of
            shapely geometries. Lines and points have no area; they are ignored with a warning.

    Returns:
        A float64 array aligned with ``windows``, values in ``[0, 1]``.

    Raises:
        VectorError: ``geometries`` is not empty but holds no polygon.

    Example:
        >>> from rasterio.windows import Window
        >>> from shapely import box
        >>> tile_label_fractions([Window(0, 0, 2, 2)], Affine.identity(), [box(0, 0, 1, 2)])
        array([0.5])
    """
    boxes, areas = _window_boxes(windows)
    fractions = np.zeros(len(boxes), dtype=float)
    geoms = _geometry_array(geometries)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0 or len(boxes) == 0:
        return fractions
    polygonal = _is_polygonal(geoms)
    if not polygonal.any():
        kinds = sorted(set(shapely.get_type_id(geoms).tolist()))
        names = ", ".join(shapely.GeometryType(k).name for k in kinds)
        raise VectorError(
            f"tile_label_fractions needs polygons, got only {names}: lines and points have no "
            "area. Buffer them first, e.g. gdf.geometry.buffer(width_in_metres / 2)."
        )
    if not polygonal.all():
        logger.warning(
            "tile_label_fractions ignores %d non-polygon geometries.", int((~polygonal).sum())
        )
    polygons = _to_pixel_space(geoms[polygonal], transform)
    invalid = ~shapely.is_valid(polygons)
    if invalid.any():
        polygons[invalid] = [_polygonal_part(g) for g in shapely.make_valid(polygons[invalid])]
    # The parts of a dissolved union are interior-disjoint, so their intersection areas add up
    # to the area of the intersection with the union.
    parts = shapely.get_parts(shapely.union_all(polygons))
    parts = parts[_is_polygonal(parts)]
    if len(parts) == 0:
        return fractions
    box_index, part_index = shapely.STRtree(parts).query(boxes, predicate="intersects")
    covered = shapely.area(shapely.intersection(boxes[box_index], parts[part_index]))
    fractions = np.bincount(box_index, weights=covered, minlength=len(boxes)) / areas
    return np.clip(fractions, 0.0, 1.0)


def tile_majority_labels(
    windows: Sequence[Window],
    transform: Affine,
    gdf: gpd.GeoDataFrame,
    class_property: str,
    class_values: Mapping[Any, int],
    *,
    min_fraction: float = 0.5,
    background: int | None = None,
) -> np.ndarray:
    """Label each window with the class that covers most of it (K-class tile labels).

    For each class, :func:`tile_label_fractions` of its polygons; the class with the largest
    fraction wins when it covers at least ``min_fraction`` of the window, else the window gets
    :data:`IGNORE_LABEL` (mixed or unlabelled tiles are left out rather than guessed).

    Args:
        windows: Tile windows over the raster whose grid is ``transform``.
        transform: The raster's affine transform.
        gdf: Polygons in the raster's CRS with a class column (see :func:`read_vectors`).
        class_property: The column holding each polygon's class.
        class_values: ``{value of class_property: class code 0 .. K-1}``; polygons of other
            values are not used.
        min_fraction: Share of the window the winning class must cover, in ``(0, 1]``.
        background: Class code of the area no polygon covers (e.g. 0 for "other"), or None
            when uncovered area belongs to no class.

    Returns:
        An int16 array aligned with ``windows``: class codes or :data:`IGNORE_LABEL`.

    Raises:
        VectorError: ``class_property`` is not a column of ``gdf``.
        ValueError: ``min_fraction`` outside ``(0, 1]``, or no class value given.

    Example:
        >>> from rasterio.windows import Window
        >>> from shapely import box
        >>> polygons = gpd.GeoDataFrame({"lc": ["crop", "forest"]},
        ...                             geometry=[box(0, 0, 3, 4), box(4, 0, 8, 4)])
        >>> grid = [Window(0, 0, 4, 4), Window(4, 0, 4, 4), Window(8, 0, 4, 4)]
        >>> tile_majority_labels(grid, Affine.identity(), polygons, "lc", {"crop": 0, "forest": 1})
        array([ 0,  1, -1], dtype=int16)
    """
    if class_property not in gdf.columns:
        columns = [c for c in gdf.columns if c != gdf.geometry.name]
        raise VectorError(
            f"class_property {class_property!r} is not a column of the labels. Available "
            f"columns: {', '.join(map(repr, columns)) or '(none)'}."
        )
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction={min_fraction} must be in (0, 1], e.g. 0.5.")
    if not class_values:
        raise ValueError("class_values is empty; map each class value to a code, e.g. {'crop': 0}.")
    codes = sorted(set(int(c) for c in class_values.values()) | ({background} - {None}))
    fractions = np.zeros((len(codes), len(windows)))
    for row, code in enumerate(codes):
        values = [v for v, c in class_values.items() if int(c) == code]
        picked = gdf.geometry[gdf[class_property].isin(values)]
        fractions[row] = tile_label_fractions(windows, transform, picked)
    if background is not None:
        others = fractions.sum(axis=0) - fractions[codes.index(background)]
        fractions[codes.index(background)] = np.clip(1.0 - others, 0.0, 1.0)  # its own + bare
    best = fractions.argmax(axis=0) if len(windows) else np.zeros(0, dtype=int)
    labels = np.asarray(codes, dtype=np.int16)[best]
    covered = fractions.max(axis=0, initial=0.0) if len(windows) else np.zeros(0)
    labels[covered < min_fraction - _FRACTION_TOLERANCE] = IGNORE_LABEL
    return labels


def _warn_if_labels_miss(
    windows: Sequence[Window], transform: Affine, geometries: GeometriesLike
) -> None:
    """Warn when there are polygons but none covers any window (every label would be 0): the
    symptom of labels in another CRS or of another place."""
    geoms = _geometry_array(geometries)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0:
        return  # no labels at all: negatives are what was asked for
    source = getattr(geometries, "attrs", {}).get("source", "the labels")
    crs = getattr(geometries, "crs", None)
    crs_text = crs.to_string() if crs is not None else "unknown"
    rows = [(w.row_off, w.row_off + w.height) for w in windows]
    cols = [(w.col_off, w.col_off + w.width) for w in windows]
    r0, r1 = min(r for r, _ in rows), max(r for _, r in rows)
    c0, c1 = min(c for c, _ in cols), max(c for _, c in cols)
    xs, ys = zip(*(transform * (c, r) for c in (c0, c1) for r in (r0, r1)), strict=True)
    scene = ", ".join(f"{v:.6g}" for v in (min(xs), min(ys), max(xs), max(ys)))
    label_bounds = ", ".join(f"{v:.6g}" for v in shapely.total_bounds(geoms))
    logger.warning(
        "None of the %d label geometries of %s (CRS %s) covers any of the %d windows: every "
        "window is labelled 0 (negative). Label bounds (%s) vs the windows' bounds (%s) on the "
        "raster's grid. The labels must be in the raster's CRS: read them with "
        "read_vectors(path, crs=src.crs), and check with check_overlap.",
        len(geoms), source, crs_text, len(windows), label_bounds, scene,
    )  # fmt: skip


def tile_labels(
    windows: Sequence[Window],
    transform: Affine,
    geometries: GeometriesLike,
    *,
    positive: float = 0.5,
    negative: float = 0.05,
) -> np.ndarray:
    """Label each window 1, 0 or :data:`IGNORE_LABEL` from how much of it the polygons cover.

    A window is positive when at least ``positive`` of its area is covered, negative when at
    most ``negative`` is, and ignored in between. Compare with the common "label by the maximum
    mask value" rule, which calls a 256 x 256 patch positive when a single pixel of a settlement
    clips its corner: the model is then asked to see something that is barely there, and the
    near-duplicate patches around every outline become noisy positives. Ignored patches are
    best left out of training and reported separately. When there are polygons but none
    covers any window (labels in another CRS, or of another place), a warning is logged with
    both bounds.

    Args:
        windows: Patch windows over the raster whose grid is ``transform``.
        transform: The raster's affine transform.
        geometries: Polygons in the raster's CRS (see :func:`tile_label_fractions`).
        positive: Minimum covered fraction for label 1.
        negative: Maximum covered fraction for label 0. ``0 <= negative < positive <= 1``.

    Returns:
        An int8 array aligned with ``windows``.

    Raises:
        ValueError: The thresholds are out of order or outside ``[0, 1]``.

    Example:
        >>> from rasterio.windows import Window
        >>> from shapely import box
        >>> grid = [Window(0, 0, 4, 4), Window(4, 0, 4, 4), Window(8, 0, 4, 4)]
        >>> tile_labels(grid, Affine.identity(), [box(0, 0, 5, 4)])  # covers 1, 0.25, 0
        array([ 1, -1,  0], dtype=int8)
    """
    if not (0.0 <= negative < positive <= 1.0):
        raise ValueError(
            f"Thresholds must satisfy 0 <= negative < positive <= 1, got negative={negative} "
            f"and positive={positive}. Example: positive=0.5, negative=0.05."
        )
    fractions = tile_label_fractions(windows, transform, geometries)
    if len(fractions) and not fractions.any():
        _warn_if_labels_miss(windows, transform, geometries)
    labels = np.full(len(fractions), IGNORE_LABEL, dtype=np.int8)
    labels[fractions >= positive - _FRACTION_TOLERANCE] = 1
    labels[fractions <= negative + _FRACTION_TOLERANCE] = 0
    return labels


# --------------------------------------------------------------------------------------------
# Per-pixel masks
# --------------------------------------------------------------------------------------------


def _burn_values(
    gdf: gpd.GeoDataFrame, class_property: str, class_values: Mapping[Any, int] | None
) -> np.ndarray:
    if class_property not in gdf.columns:
        columns = [c for c in gdf.columns if c != gdf.geometry.name]
        raise VectorError(
            f"class_property {class_property!r} is not a column of the labels. Available "
            f"columns: {', '.join(map(repr, columns)) or '(none)'}."
        )
    values = gdf[class_property]
    if class_values is not None:
        unknown = sorted({v for v in values if v not in class_values}, key=repr)
        if unknown:
            raise VectorError(
                f"class_property {class_property!r} holds values missing from class_values: "
                f"{', '.join(map(repr, unknown))}. Add them to class_values (known: "
                f"{', '.join(map(repr, class_values))})."
            )
        return np.array([class_values[v] for v in values], dtype=np.int64)
    if values.isna().any():
        raise VectorError(
            f"{int(values.isna().sum())} features have no value for class_property "
            f"{class_property!r}: fill them in, drop them, or map them with class_values."
        )
    numeric = np.asarray(values.to_numpy(), dtype=object)
    try:
        as_float = numeric.astype(float)
    except (TypeError, ValueError):
        as_float = None
    if as_float is None or not np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
        examples = sorted({v for v in values}, key=repr)[:10]
        raise VectorError(
            f"class_property {class_property!r} holds values that are not integer classes: "
            f"{', '.join(map(repr, examples))}. Pass class_values, e.g. "
            f"class_values={{{examples[0]!r}: 1, ...}}."
        )
    return as_float.astype(np.int64)


def _check_value(value: int, dtype: np.dtype, what: str) -> None:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ValueError(
                f"{what} {value} does not fit dtype {dtype.name} ({info.min}..{info.max}): "
                "choose another value or a wider dtype."
            )


def rasterize_mask(
    gdf_or_geometries: GeometriesLike,
    out_shape: tuple[int, int],
    transform: Affine,
    *,
    class_property: str | None = None,
    class_values: Mapping[Any, int] | None = None,
    all_touched: bool = False,
    fill: int = 0,
    ignore: GeometriesLike | None = None,
    ignore_value: int = IGNORE_VALUE,
    dtype: str = "uint8",
) -> np.ndarray:
    """Burn vector labels into a 2-D class mask with :func:`rasterio.features.rasterize`.

    The mask is on the grid given by ``out_shape`` and ``transform``: the whole raster
    (``src.shape``, ``src.transform``) or one window of it
    (``(window.height, window.width)``, ``rasterio.windows.transform(window, src.transform)``),
    so masks can be made patch by patch for large scenes.

    Args:
        gdf_or_geometries: Labels in the grid's CRS: a GeoDataFrame (required with
            ``class_property``), a GeoSeries or a sequence of shapely geometries.
        out_shape: ``(rows, cols)`` of the mask.
        transform: Affine transform of the mask's grid.
        class_property: Column holding each feature's class. Without it every feature burns 1.
        class_values: Maps property values to class codes (``{"formal": 6, "informal": 7}``).
            Without it the property must hold integers, which are burned as they are.
        all_touched: False burns pixels whose centre lies inside a shape (GDAL's default);
            True burns every pixel a shape touches. Thin features (roads, rivers as lines,
            narrow polygons) need True, or they break up into dashes or vanish.
        fill: Value of pixels no shape covers (background).
        ignore: Optional geometries whose pixels get ``ignore_value``, burned last (on top of
            the classes): areas where the labels are uncertain or were not digitised.
        ignore_value: The value burned for ``ignore`` (default :data:`IGNORE_VALUE`, 255).
        dtype: Mask dtype.

    Returns:
        A ``(rows, cols)`` array of ``dtype``. Where features overlap, the later feature wins.

    Raises:
        VectorError: ``class_property`` is missing, or holds values without a class code.
        ValueError: A class code does not fit ``dtype`` or equals ``fill``/``ignore_value``.

    Example:
        >>> from shapely import box
        >>> rasterize_mask([box(0, 0, 2, 1)], (2, 3), Affine.identity())
        array([[1, 1, 0],
               [0, 0, 0]], dtype=uint8)
    """
    np_dtype = np.dtype(dtype)
    _check_value(fill, np_dtype, "fill")
    if class_property is not None:
        if not isinstance(gdf_or_geometries, gpd.GeoDataFrame):
            raise VectorError(
                "class_property needs a GeoDataFrame (for example from read_vectors); got "
                f"{type(gdf_or_geometries).__name__}."
            )
        burn = _burn_values(gdf_or_geometries, class_property, class_values)
    else:
        burn = None
    geometries = _geometry_array(gdf_or_geometries)
    if burn is None:
        burn = np.ones(len(geometries), dtype=np.int64)
    for value in sorted(set(burn.tolist())):
        _check_value(value, np_dtype, "class code")
        if value == fill:
            raise ValueError(
                f"class code {value} equals fill={fill}, so that class would be "
                "indistinguishable from background: choose another fill or class code."
            )
        if ignore is not None and value == ignore_value:
            raise ValueError(
                f"class code {value} equals ignore_value={ignore_value}: choose another value."
            )
    present = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    mask = np.full(tuple(out_shape), fill, dtype=np_dtype)
    shapes = list(zip(geometries[present], burn[present].tolist(), strict=True))
    if shapes:
        rasterio.features.rasterize(shapes, out=mask, transform=transform, all_touched=all_touched)
    if ignore is not None:
        _check_value(ignore_value, np_dtype, "ignore_value")
        ignored = _geometry_array(ignore)
        ignored = ignored[~(shapely.is_missing(ignored) | shapely.is_empty(ignored))]
        if len(ignored):
            rasterio.features.rasterize(
                ((g, ignore_value) for g in ignored),
                out=mask,
                transform=transform,
                all_touched=all_touched,
            )
    return mask


def class_counts(
    mask: np.ndarray,
    class_names: Mapping[int, str] | None = None,
    ignore: int | None = IGNORE_VALUE,
) -> dict[int | str, int]:
    """Count the pixels of each class in a mask, leaving out the ignore value.

    Args:
        mask: A class mask (any shape); masked entries of a masked array are not counted.
        class_names: Optional ``{code: name}``. When given, keys are names, every named class
            appears (with 0 if absent), and a code without a name is an error.
        ignore: Value left out of the counts (None counts every value).

    Returns:
        ``{class code or name: pixel count}``, ordered by class code.

    Raises:
        ValueError: ``mask`` holds a code missing from ``class_names``.

    Example:
        >>> class_counts(np.array([[0, 1, 1], [255, 1, 0]]), {0: "background", 1: "settlement"})
        {'background': 2, 'settlement': 3}
    """
    values = np.ma.compressed(mask) if np.ma.isMaskedArray(mask) else np.asarray(mask).ravel()
    if ignore is not None:
        values = values[values != ignore]
    codes, counts = np.unique(values, return_counts=True)
    found = {int(c): int(n) for c, n in zip(codes.tolist(), counts.tolist(), strict=True)}
    if class_names is None:
        return found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(
            f"mask holds class codes without a name: {unknown}. Add them to class_names "
            f"(known: {sorted(class_names)}), or pass ignore=... if one is a no-data value."
        )
    return {class_names[c]: found.get(int(c), 0) for c in sorted(class_names)}
