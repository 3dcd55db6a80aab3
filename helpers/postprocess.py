"""From model output to maps and numbers: masks, polygons, areas in km² and change between dates.

A segmentation model gives a probability per pixel. Turning that into something a planner can
use takes a few steps, each a function here:

1. **Masks** -- :func:`threshold` cuts probabilities into a ``uint8`` mask (``1`` = class,
   ``0`` = background, :data:`~helpers.labels.IGNORE_VALUE` ``255`` = no data);
   :func:`median_filter` smooths speckle (in probabilities or masks) without letting no-data
   leak in; :func:`clean_mask` removes specks and fills pinholes with scikit-image morphology.
2. **Polygons** -- :func:`vectorize` turns a mask into a GeoDataFrame with one row per connected
   object (:func:`rasterio.features.shapes`), holes kept, optionally simplified and with the
   mean probability of each object; :func:`write_geojson` saves it as RFC 7946 GeoJSON.
3. **Areas** -- :func:`area_km2` and :func:`add_polygon_attributes` measure polygons in an
   equal-area projection chosen for the data (:func:`equal_area_crs`), so the numbers are right
   whatever CRS the polygons come in, lon/lat included.
4. **Checking and change** -- :func:`compare_to_truth` scores predicted polygons against
   reference polygons by area (IoU, precision, recall); :func:`change_polygons` (two masks on one
   grid) and :func:`change_between_layers` (two polygon layers) map where the class appeared
   (``new``) or disappeared (``lost``); :func:`summarize_change` gives the km² of each.

Example:
    >>> from helpers import postprocess  # doctest: +SKIP
    >>> mask = postprocess.threshold(probabilities, 0.5)  # doctest: +SKIP
    >>> mask = postprocess.clean_mask(mask, opening=1, min_size=20, max_hole=20)  # doctest: +SKIP
    >>> polygons = postprocess.vectorize(mask, src.transform, src.crs, simplify=0.5,
    ...                                  probabilities=probabilities)  # doctest: +SKIP
    >>> polygons = postprocess.add_polygon_attributes(polygons)  # doctest: +SKIP
    >>> postprocess.write_geojson(polygons, "outputs/settlements.geojson")  # doctest: +SKIP

Why an equal-area projection for areas: the area of a polygon in EPSG:4326 is in square
*degrees*, whose size in km² shrinks with the cosine of the latitude, and a UTM grid is
conformal (it keeps angles, not areas: its scale is 0.9996 on the central meridian and grows to
about 1.001 at the edge of the zone, so areas are off by up to a few tenths of a percent, and
much more for data outside its zone). A Lambert azimuthal equal-area (LAEA) projection centred
on the data keeps areas exact on the WGS84 ellipsoid, anywhere on Earth, and barely distorts
shapes (so perimeters) within a few hundred kilometres of its centre.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import rasterio.features
import rasterio.transform
import shapely
import skimage.morphology
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from helpers.files import atomic_path
from helpers.labels import IGNORE_VALUE
from helpers.raster import MissingCRSError

__all__ = [
    "CHANGE_CLASSES",
    "add_polygon_attributes",
    "area_km2",
    "change_between_layers",
    "change_polygons",
    "clean_mask",
    "compare_to_truth",
    "equal_area_crs",
    "median_filter",
    "summarize_change",
    "threshold",
    "vectorize",
    "write_geojson",
]

logger = logging.getLogger(__name__)

#: Class codes and names of the change mask built by :func:`change_polygons`.
CHANGE_CLASSES: dict[int, str] = {1: "new", 2: "lost"}

PathLike = str | os.PathLike
CRSLike = CRS | pyproj.CRS | str | int
GeometriesLike = gpd.GeoDataFrame | gpd.GeoSeries | shapely.Geometry | Iterable[Any]

# Median filtering with no-data works on a float copy, cut in row chunks of about this many
# window values so that memory stays bounded whatever the raster size.
_MEDIAN_CHUNK_VALUES = 8_000_000


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def _invalid(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """Element-wise no-data: masked entries, ``nodata`` and NaN."""
    data = np.ma.getdata(array)
    invalid = np.array(np.ma.getmaskarray(array), copy=True)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        invalid |= data == nodata
    if np.issubdtype(data.dtype, np.floating):
        invalid |= np.isnan(data)
    return invalid


def threshold(
    probabilities: np.ndarray,
    t: float = 0.5,
    *,
    nodata: float | None = None,
    ignore_value: int = IGNORE_VALUE,
) -> np.ndarray:
    """Cut a probability grid into a ``uint8`` mask: ``1`` where ``p >= t``, else ``0``.

    ``>=`` is the convention of :func:`sklearn.metrics.precision_recall_curve`, where decision
    thresholds are usually chosen (e.g. the ``decision_threshold`` of a model card).

    Args:
        probabilities: Probabilities of the positive class, any shape, plain or masked.
        t: Decision threshold in ``[0, 1]``.
        nodata: Value marking pixels without a prediction (NaN and masked entries always do).
        ignore_value: The mask value written where there is no prediction.

    Returns:
        A ``uint8`` array of the same shape with 0, 1 and ``ignore_value``.

    Raises:
        ValueError: ``t`` is not a number in ``[0, 1]``.

    Example:
        >>> threshold(np.array([[0.1, 0.5], [0.9, np.nan]]), 0.5)
        array([[  0,   1],
               [  1, 255]], dtype=uint8)
    """
    if isinstance(t, bool) or not isinstance(t, int | float | np.number) or not 0 <= t <= 1:
        raise ValueError(
            f"threshold t must be a number in [0, 1], got {t!r}. Probabilities are in [0, 1]; "
            "use e.g. t=0.5 or the model card's decision_threshold."
        )
    invalid = _invalid(probabilities, nodata)
    data = np.ma.getdata(probabilities)
    with np.errstate(invalid="ignore"):
        mask = (data >= t).astype(np.uint8)
    mask[invalid] = ignore_value
    return mask


def median_filter(array: np.ndarray, size: int = 3, *, nodata: float | None = None) -> np.ndarray:
    """Median of each ``size`` x ``size`` neighbourhood, ignoring no-data.

    Smooths salt-and-pepper noise in probability grids and masks while keeping edges sharp. For
    a binary mask it is a majority vote. No-data cells (``nodata``, NaN, masked entries) neither
    contribute to their neighbours' medians nor get filled: they keep their value. Without
    no-data this is exactly :func:`scipy.ndimage.median_filter` (``mode="reflect"``).

    Where no-data leaves an even number of values in a window, the upper of the two middle
    values is taken (as scipy does for even footprints), so a mask keeps its values.

    Args:
        array: A 2-D grid, plain or masked (probabilities or an integer mask).
        size: Side of the square window in pixels (odd: 3, 5, ...).
        nodata: Value of no-data cells, e.g. :data:`~helpers.labels.IGNORE_VALUE` for a mask.

    Returns:
        A plain array of the same shape and dtype.

    Raises:
        ValueError: ``array`` is not 2-D, or ``size`` is not a positive odd integer.

    Example:
        >>> mask = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 255]], dtype=np.uint8)
        >>> median_filter(mask, 3, nodata=255)
        array([[  0,   0,   0],
               [  0,   0,   0],
               [  0,   0, 255]], dtype=uint8)
    """
    if np.ndim(array) != 2:
        raise ValueError(
            f"median_filter needs a 2-D grid (rows, cols), got shape {np.shape(array)}; "
            "filter each band separately."
        )
    if (
        isinstance(size, bool)
        or not isinstance(size, int | np.integer)
        or size < 1
        or size % 2 == 0
    ):
        raise ValueError(f"size must be a positive odd integer (3, 5, ...), got {size!r}.")
    data = np.ma.getdata(array)
    invalid = _invalid(array, nodata)
    if not invalid.any():
        return ndimage.median_filter(data, size=size, mode="reflect")
    # scipy's median_filter has no mask, and skimage.filters.rank.median (which has one) only
    # takes integer images; so: no-data -> NaN, reflect-pad like scipy, and take the median of
    # the valid values of each window from a sorted sliding-window view, chunk by chunk.
    radius = size // 2
    values = data.astype(np.float64)
    values[invalid] = np.nan
    padded = np.pad(values, radius, mode="symmetric")  # numpy "symmetric" == scipy "reflect"
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    rows, cols = data.shape
    out = np.array(data, copy=True)
    step = max(1, _MEDIAN_CHUNK_VALUES // max(1, cols * size * size))
    for start in range(0, rows, step):
        chunk = np.sort(windows[start : start + step].reshape(-1, size * size), axis=1)
        count = np.sum(~np.isnan(chunk), axis=1)
        median = chunk[np.arange(len(chunk)), count // 2]  # count >= 1: the centre is valid
        block = out[start : start + step]
        keep = invalid[start : start + step]
        block[~keep] = median.reshape(block.shape)[~keep].astype(data.dtype)
    return out


def _binary_mask(mask: np.ndarray, argument: str, ignore_value: int) -> np.ndarray:
    """Check a 0/1/ignore mask and return it as ``uint8``."""
    if np.ndim(mask) == 3 and np.shape(mask)[0] == 1:
        mask = np.asarray(mask)[0]
    if np.ndim(mask) != 2:
        raise ValueError(f"{argument} must be a 2-D mask (rows, cols), got shape {np.shape(mask)}.")
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(
            f"{argument} must be an integer or boolean mask, got dtype {mask.dtype}; turn "
            "probabilities into a mask with threshold() first."
        )
    unexpected = np.setdiff1d(np.unique(mask), [0, 1, ignore_value])
    if unexpected.size:
        raise ValueError(
            f"{argument} must hold only 0, 1 and {ignore_value} (ignore), but holds "
            f"{unexpected[:10].tolist()}; for a class mask use (mask == class_code) first."
        )
    return mask.astype(np.uint8)


def _skimage_size_argument(smaller_than: int) -> dict[str, int]:
    """Keyword of remove_small_objects that removes objects of fewer than ``smaller_than`` pixels.

    scikit-image 0.26 replaced ``min_size`` (remove if size < value) by ``max_size`` (remove if
    size <= value); the course supports both.
    """
    if "max_size" in inspect.signature(skimage.morphology.remove_small_objects).parameters:
        return {"max_size": smaller_than - 1}
    return {"min_size": smaller_than}


def clean_mask(
    mask: np.ndarray,
    *,
    opening: int = 0,
    closing: int = 0,
    min_size: int = 0,
    max_hole: int = 0,
    connectivity: int = 8,
    ignore_value: int = IGNORE_VALUE,
) -> np.ndarray:
    """Remove specks, bridges and pinholes from a binary mask with scikit-image morphology.

    Steps, in this order, each skipped when its argument is 0: opening with a disk of radius
    ``opening`` (removes thin spurs and specks), closing with a disk of radius ``closing``
    (bridges narrow gaps), :func:`skimage.morphology.remove_small_objects` (objects of fewer
    than ``min_size`` pixels) and hole filling (holes of at most ``max_hole`` pixels are
    filled, as :func:`skimage.morphology.remove_small_holes` does, except that a background
    region touching the raster edge or no-data is not a hole: it may continue beyond).

    Ignore pixels count as background during cleaning (nothing is invented under them) and
    come out as ``ignore_value`` again.

    Args:
        mask: 2-D mask of 0 (background), 1 (class) and ``ignore_value``, or a boolean mask.
        opening: Radius in pixels of the opening disk.
        closing: Radius in pixels of the closing disk.
        min_size: Objects with fewer pixels are removed.
        max_hole: Enclosed holes with this many pixels or fewer are filled.
        connectivity: 4 or 8, the neighbourhood that makes pixels one object (and, for holes,
            its complement).
        ignore_value: Value of pixels without data, kept as they are.

    Returns:
        A ``uint8`` mask of 0, 1 and ``ignore_value``.

    Raises:
        ValueError: The mask holds other values, or an argument is negative.

    Example:
        >>> mask = np.zeros((5, 7), dtype=np.uint8)
        >>> mask[1:4, 1:4] = 1
        >>> mask[2, 2] = 0  # a pinhole
        >>> mask[2, 5] = 1  # a speck
        >>> clean_mask(mask, min_size=2, max_hole=1)[1:4]
        array([[0, 1, 1, 1, 0, 0, 0],
               [0, 1, 1, 1, 0, 0, 0],
               [0, 1, 1, 1, 0, 0, 0]], dtype=uint8)
    """
    for name, value in (
        ("opening", opening),
        ("closing", closing),
        ("min_size", min_size),
        ("max_hole", max_hole),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer (pixels), got {value!r}.")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    mask = _binary_mask(mask, "mask", ignore_value)
    ignored = mask == ignore_value
    foreground = mask == 1
    if opening:
        foreground = skimage.morphology.opening(foreground, skimage.morphology.disk(opening))
    if closing:
        foreground = skimage.morphology.closing(foreground, skimage.morphology.disk(closing))
    skimage_connectivity = 1 if connectivity == 4 else 2
    if min_size > 1:
        foreground = skimage.morphology.remove_small_objects(
            foreground,
            connectivity=skimage_connectivity,
            **_skimage_size_argument(min_size),
        )
    if max_hole:
        # skimage.morphology.remove_small_holes fills every small background region, even one
        # cut by the raster edge or by no-data, where nobody knows whether it is enclosed; so
        # holes are found here with scipy: background components of at most max_hole pixels
        # touching neither the edge nor ignore pixels. Holes use the complementary
        # connectivity (4 for 8-connected objects), as in remove_small_holes.
        hole_structure = ndimage.generate_binary_structure(2, 2 if connectivity == 4 else 1)
        labelled, count = ndimage.label(~foreground & ~ignored, structure=hole_structure)
        sizes = np.bincount(labelled.ravel(), minlength=count + 1)
        open_ = np.zeros(count + 1, dtype=bool)
        open_[0] = True
        open_[np.unique(labelled[ndimage.binary_dilation(ignored, hole_structure)])] = True
        edges = np.concatenate([labelled[0], labelled[-1], labelled[:, 0], labelled[:, -1]])
        open_[np.unique(edges)] = True
        fill = (sizes <= max_hole) & ~open_
        foreground = foreground | fill[labelled]
    out = foreground.astype(np.uint8)
    out[ignored] = ignore_value
    return out


# --------------------------------------------------------------------------------------------
# CRS and areas
# --------------------------------------------------------------------------------------------


def _as_pyproj(crs: Any) -> pyproj.CRS:
    if isinstance(crs, pyproj.CRS):
        return crs
    if isinstance(crs, CRS):
        return pyproj.CRS.from_wkt(crs.to_wkt())
    return pyproj.CRS.from_user_input(crs)


def _missing_crs(argument: str) -> MissingCRSError:
    return MissingCRSError(
        f"{argument} has no coordinate reference system (CRS), so its areas cannot be measured "
        "in km². Pass crs=... (e.g. the raster's src.crs, or 'EPSG:4326' for lon/lat), or set "
        "it on the frame with gdf.set_crs(...)."
    )


def _geoseries(geometries: GeometriesLike, crs: CRSLike | None, argument: str) -> gpd.GeoSeries:
    """Any geometry container as a GeoSeries with a CRS (``crs`` fills in a missing one)."""
    if isinstance(geometries, gpd.GeoDataFrame):
        series = geometries.geometry
    elif isinstance(geometries, gpd.GeoSeries):
        series = geometries
    elif isinstance(geometries, shapely.Geometry):
        series = gpd.GeoSeries([geometries])
    else:
        series = gpd.GeoSeries(list(geometries))
    if crs is not None:
        target = _as_pyproj(crs)
        if series.crs is None:
            series = series.set_crs(target)
        elif not series.crs.equals(target):
            raise ValueError(
                f"{argument} is in {series.crs.to_string()} but crs={target.to_string()} was "
                "passed; crs only fills in a missing CRS. Reproject with .to_crs(...) instead."
            )
    if series.crs is None:
        raise _missing_crs(argument)
    return series


def _polygonal(geometries: np.ndarray) -> np.ndarray:
    """Repair invalid geometries and keep their polygonal parts (areas need polygons)."""
    geometries = np.array(geometries, dtype=object)
    present = ~shapely.is_missing(geometries)
    broken = present & ~shapely.is_valid(geometries)
    for index in np.flatnonzero(broken):
        parts = shapely.get_parts(shapely.get_parts(shapely.make_valid(geometries[index])))
        kinds = shapely.get_type_id(parts)
        polygons = parts[kinds == shapely.GeometryType.POLYGON]
        geometries[index] = shapely.union_all(polygons) if len(polygons) else shapely.Polygon()
    return geometries


def equal_area_crs(geometries: GeometriesLike, crs: CRSLike | None = None) -> pyproj.CRS:
    """A Lambert azimuthal equal-area CRS centred on the data, for areas in m².

    The centre is the middle of the data's lon/lat bounding box (rounded to 1e-6 degrees);
    areas in this CRS are exact on the WGS84 ellipsoid, and lengths are within 0.01 % for data
    less than about 150 km from the centre (0.1 % at about 550 km).

    Args:
        geometries: A GeoDataFrame, GeoSeries, geometry or sequence of geometries.
        crs: CRS of ``geometries`` if they carry none.

    Returns:
        A :class:`pyproj.CRS` in metres.

    Raises:
        MissingCRSError: Neither the geometries nor ``crs`` give a CRS.

    Example:
        >>> from shapely import box
        >>> equal_area_crs([box(39.1, -6.8, 39.2, -6.7)], "EPSG:4326").to_proj4()  # doctest: +SKIP
        '+proj=laea +lat_0=-6.75 +lon_0=39.15 ... +units=m +no_defs +type=crs'
    """
    series = _geoseries(geometries, crs, "geometries")
    return _laea_for([series])


def _laea_for(layers: list[gpd.GeoSeries]) -> pyproj.CRS:
    boxes = []
    for series in layers:
        present = series[~(series.is_empty | series.isna())]
        if len(present):
            bounds = present.total_bounds
            if not series.crs.equals("EPSG:4326"):
                to_lonlat = pyproj.Transformer.from_crs(series.crs, "EPSG:4326", always_xy=True)
                bounds = to_lonlat.transform_bounds(*bounds, densify_pts=21)
            boxes.append(bounds)
    if boxes:
        bounds = np.array(boxes)
        west, south = bounds[:, 0].min(), bounds[:, 1].min()
        east, north = bounds[:, 2].max(), bounds[:, 3].max()
        lon, lat = round((west + east) / 2, 6), round((south + north) / 2, 6)
    else:
        lon, lat = 0.0, 0.0
    return pyproj.CRS.from_proj4(
        f"+proj=laea +lat_0={lat} +lon_0={lon} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
    )


def area_km2(gdf_or_geometries: GeometriesLike, crs: CRSLike | None = None) -> pd.Series:
    """Area of each geometry in km², measured in an equal-area CRS (see :func:`equal_area_crs`).

    Args:
        gdf_or_geometries: A GeoDataFrame, GeoSeries, geometry or sequence of geometries, in
            any CRS (lon/lat included).
        crs: CRS of the geometries if they carry none.

    Returns:
        A float Series (index of the input frame or series). Lines and points have area 0.
        Its ``.sum()`` counts overlaps twice: use :func:`shapely.union_all` first if polygons
        may overlap.

    Raises:
        MissingCRSError: Neither the geometries nor ``crs`` give a CRS.
        ValueError: ``crs`` contradicts the geometries' own CRS.

    Example:
        >>> from shapely import box
        >>> square = box(500_000, 9_250_000, 501_000, 9_251_000)  # 1 km in UTM 37S
        >>> round(float(area_km2([square], "EPSG:32737").iloc[0]), 3)
        1.001
    """
    series = _geoseries(gdf_or_geometries, crs, "gdf_or_geometries")
    if len(series) == 0:
        return pd.Series([], index=series.index, dtype=float, name="area_km2")
    projected = series.to_crs(_laea_for([series]))
    return pd.Series(projected.area.to_numpy() / 1e6, index=series.index, name="area_km2")


def add_polygon_attributes(gdf: gpd.GeoDataFrame, crs: CRSLike | None = None) -> gpd.GeoDataFrame:
    """Add ``area_km2``, ``perimeter_m``, ``compactness`` and ``centroid_lon/lat`` columns.

    All measured in one equal-area CRS centred on the frame (:func:`equal_area_crs`).
    ``compactness`` is the Polsby-Popper score ``4 pi A / P**2``: 1 for a circle, about 0.785
    for a square, near 0 for long thin shapes (roads, slivers from misregistration).

    Args:
        gdf: Polygons, in any CRS.
        crs: CRS of ``gdf`` if it carries none.

    Returns:
        A copy of ``gdf`` with the five columns added (or replaced).

    Raises:
        MissingCRSError: Neither ``gdf`` nor ``crs`` give a CRS.

    Example:
        >>> from shapely import box
        >>> square = box(500_000, 9_250_000, 501_000, 9_251_000)  # 1 km in UTM 37S
        >>> gdf = gpd.GeoDataFrame(geometry=[square], crs="EPSG:32737")
        >>> add_polygon_attributes(gdf)[["perimeter_m", "compactness"]].round(3).values.tolist()
        [[4001.601, 0.785]]
    """
    series = _geoseries(gdf, crs, "gdf")
    out = gdf.copy()
    if out.crs is None:
        out = out.set_crs(series.crs)
    if len(series) == 0:
        for column in ("area_km2", "perimeter_m", "compactness", "centroid_lon", "centroid_lat"):
            out[column] = pd.Series([], index=out.index, dtype=float)
        return out
    projected = series.to_crs(_laea_for([series]))
    area_m2 = projected.area.to_numpy()
    perimeter = projected.length.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        compactness = np.where(perimeter > 0, 4 * np.pi * area_m2 / perimeter**2, np.nan)
    centroids = projected.centroid.to_crs("EPSG:4326")
    out["area_km2"] = area_m2 / 1e6
    out["perimeter_m"] = perimeter
    out["compactness"] = compactness
    out["centroid_lon"] = centroids.x.to_numpy()
    out["centroid_lat"] = centroids.y.to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# Polygons
# --------------------------------------------------------------------------------------------


def _class_mask(mask: np.ndarray, argument: str) -> np.ndarray:
    if np.ndim(mask) == 3 and np.shape(mask)[0] == 1:
        mask = np.asarray(mask)[0]
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(
            f"{argument} must be a 2-D mask (rows, cols) or (1, rows, cols), got shape "
            f"{mask.shape}."
        )
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(
            f"{argument} must hold integer classes, got dtype {mask.dtype}; turn probabilities "
            "into a mask with threshold() first."
        )
    return mask


def _empty_frame(columns: dict[str, str], crs: Any) -> gpd.GeoDataFrame:
    data = {name: pd.Series([], dtype=dtype) for name, dtype in columns.items()}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def vectorize(
    mask_or_classes: np.ndarray,
    transform: Affine,
    crs: CRSLike | None,
    *,
    classes: Iterable[int] | None = None,
    connectivity: int = 8,
    simplify: float = 0.0,
    min_area: float = 0.0,
    class_names: Mapping[int, str] | None = None,
    probabilities: np.ndarray | None = None,
    ignore_value: int = IGNORE_VALUE,
) -> gpd.GeoDataFrame:
    """Turn a mask or class map into polygons, one row per connected object.

    Objects are the connected components of each class (:func:`scipy.ndimage.label`), traced
    with :func:`rasterio.features.shapes` on the raster's grid, so polygons follow pixel edges
    exactly and keep their holes. With 8-connectivity, pixels touching only at a corner belong
    to one object, whose geometry is then a MultiPolygon of the parts (its ``pixels`` and
    ``mean_probability`` are those of the whole object).

    Args:
        mask_or_classes: 2-D integer or boolean mask (``(1, rows, cols)`` is accepted):
            0 is background, ``ignore_value`` no data, other values are classes.
        transform: The mask's affine transform (``src.transform``, or a window's transform).
        crs: The mask's CRS (``src.crs``). None still works (pixel or map coordinates without a
            CRS) but logs a warning: such polygons cannot be placed on a map or measured in km².
        classes: Class values to trace; default every value except 0 and ``ignore_value``.
        connectivity: 4 (edge neighbours) or 8 (edge and corner neighbours) make one object.
        simplify: Douglas-Peucker tolerance in map units (metres for UTM) with
            ``preserve_topology=True``; 0 keeps the staircase pixel outlines. Each polygon is
            simplified on its own, so neighbouring objects may overlap or gap by up to this.
        min_area: Objects smaller than this many m² are dropped (measured in an equal-area
            CRS, before simplification); without a CRS, in square map units.
        class_names: ``{class value: name}`` for the ``class_name`` column; default the value
            as text. Every traced class must have a name.
        probabilities: Optional grid of the same shape; adds ``mean_probability``, the mean
            over each object's pixels (NaN and masked entries left out).
        ignore_value: Mask value of pixels without data.

    Returns:
        A GeoDataFrame in ``crs`` with columns ``class_id``, ``class_name``, ``pixels`` (the
        object's pixel count), ``mean_probability`` (only with ``probabilities``) and
        ``geometry``, ordered by class then by the object's first pixel in reading order. An
        empty mask gives an empty frame with the same columns.

    Raises:
        ValueError: The mask is not a 2-D integer mask, ``probabilities`` has another shape,
            ``connectivity`` is not 4 or 8, or a class has no name in ``class_names``.

    Example:
        >>> mask = np.array([[1, 1, 0], [0, 0, 0], [0, 2, 2]], dtype=np.uint8)
        >>> gdf = vectorize(mask, Affine(10, 0, 500_000, 0, -10, 9_250_000), "EPSG:32737",
        ...                 class_names={1: "formal", 2: "informal"})
        >>> gdf[["class_id", "class_name", "pixels"]].values.tolist()
        [[1, 'formal', 2], [2, 'informal', 2]]
        >>> gdf.geometry.area.tolist()
        [200.0, 200.0]
    """
    mask = _class_mask(mask_or_classes, "mask_or_classes")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    if simplify < 0 or min_area < 0:
        raise ValueError(
            f"simplify and min_area must be >= 0, got simplify={simplify!r}, min_area={min_area!r}."
        )
    if probabilities is not None and np.shape(probabilities) != mask.shape:
        raise ValueError(
            f"probabilities has shape {np.shape(probabilities)} but the mask has shape "
            f"{mask.shape}: pass the probability grid the mask was made from."
        )
    if crs is None:
        logger.warning(
            "vectorize: no CRS given, so the polygons are in the transform's coordinates "
            "without a CRS; they cannot be placed on a map or measured in km² (min_area is in "
            "square map units). Pass crs=src.crs."
        )
    out_crs = None if crs is None else _as_pyproj(crs)
    if classes is None:
        values = np.unique(mask)
        values = [int(v) for v in values if v != 0 and v != ignore_value]
    else:
        values = sorted({int(v) for v in classes})
    if class_names is not None:
        present = set(np.unique(mask).tolist())
        unnamed = [v for v in values if v in present and v not in class_names]
        if unnamed:
            raise ValueError(
                f"mask_or_classes holds classes without a name in class_names: {unnamed} "
                f"(named: {sorted(class_names)}). Add them, or pass classes=... to skip them."
            )
    columns = {"class_id": "int64", "class_name": "object", "pixels": "int64"}
    if probabilities is not None:
        columns["mean_probability"] = "float64"

    # One id per object: connected components of each class, numbered class after class.
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    ids = np.zeros(mask.shape, dtype=np.int32)
    class_of_id: list[int] = []
    for value in values:
        labelled, count = ndimage.label(mask == value, structure=structure)
        if count:
            ids = np.where(labelled > 0, labelled + len(class_of_id), ids).astype(np.int32)
            class_of_id.extend([value] * count)
    if not class_of_id:
        return _empty_frame(columns, out_crs)

    # Trace with 4-connectivity whatever ``connectivity``: GDAL's 8-connected tracing returns a
    # ring that touches itself where pixels meet at a corner (invalid, and slow to repair on
    # large objects), while 4-connected pieces are always valid. The pieces of one 8-connected
    # object touch only at corners, so together they form a valid MultiPolygon.
    parts: list[list[Any]] = [[] for _ in class_of_id]
    for geometry, value in rasterio.features.shapes(
        ids, mask=ids > 0, connectivity=4, transform=transform
    ):
        parts[int(value) - 1].append(shapely.geometry.shape(geometry))
    geometries = np.empty(len(parts), dtype=object)
    for k, pieces in enumerate(parts):
        geometries[k] = pieces[0] if len(pieces) == 1 else shapely.MultiPolygon(pieces)
    geometries = _polygonal(geometries)  # a safety net: repairs nothing in practice

    index = np.arange(1, len(class_of_id) + 1)
    table: dict[str, Any] = {
        "class_id": np.asarray(class_of_id, dtype=np.int64),
        "class_name": [class_names[v] if class_names is not None else str(v) for v in class_of_id],
        "pixels": np.bincount(ids.ravel(), minlength=len(index) + 1)[1:].astype(np.int64),
    }
    if probabilities is not None:
        valid = ~_invalid(probabilities, None)
        p = np.where(valid, np.ma.getdata(probabilities), 0.0).astype(np.float64)
        sums = ndimage.sum_labels(p, ids, index)
        counts = ndimage.sum_labels(valid, ids, index)
        with np.errstate(invalid="ignore", divide="ignore"):
            table["mean_probability"] = np.where(counts > 0, sums / counts, np.nan)
    gdf = gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geometries, crs=out_crs), crs=out_crs)
    if min_area > 0:
        areas = area_km2(gdf) * 1e6 if out_crs is not None else gdf.geometry.area
        gdf = gdf.loc[areas.to_numpy() >= min_area]
    if simplify > 0:
        gdf = gdf.set_geometry(gdf.geometry.simplify(simplify, preserve_topology=True))
    return gdf.reset_index(drop=True)


def write_geojson(
    gdf: gpd.GeoDataFrame,
    path: PathLike,
    *,
    overwrite: bool = False,
    rfc7946: bool = True,
) -> Path:
    """Write polygons as GeoJSON, atomically.

    By default the file follows RFC 7946, what web maps, geojson.io and most tools expect:
    coordinates reprojected to lon/lat EPSG:4326 (7 decimals, about 1 cm), outer rings
    counter-clockwise, no ``crs`` member. An empty frame writes a valid, empty
    FeatureCollection.

    Args:
        gdf: The polygons (with a CRS when ``rfc7946``).
        path: Output file, e.g. ``outputs/settlements_2024.geojson``.
        overwrite: Replace an existing file; otherwise an existing file is an error.
        rfc7946: False keeps the frame's own CRS, declared in a (pre-RFC 7946) ``crs`` member:
            handy for QGIS, but other tools may assume lon/lat.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        MissingCRSError: ``gdf`` has no CRS and ``rfc7946`` is True.

    Example:
        >>> write_geojson(polygons, "outputs/settlements.geojson")  # doctest: +SKIP
        PosixPath('outputs/settlements.geojson')
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or choose another name."
        )
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise TypeError(f"gdf must be a GeoDataFrame, got {type(gdf).__name__}.")
    options: dict[str, Any] = {}
    if rfc7946:
        if gdf.crs is None:
            raise MissingCRSError(
                f"cannot write {path} as RFC 7946 GeoJSON (lon/lat): the frame has no CRS. "
                "Set it with gdf.set_crs(...) (e.g. the raster's src.crs), or pass "
                "rfc7946=False to write coordinates as they are."
            )
        # OGC:CRS84 is WGS 84 with longitude first, RFC 7946's order, whatever GDAL's version:
        # with EPSG:4326 (latitude first) some GDAL builds swap the axes when writing.
        gdf = gdf.to_crs("OGC:CRS84")
        options["RFC7946"] = "YES"
    with atomic_path(path) as tmp:
        gdf.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer=path.stem, **options)
    return path


# --------------------------------------------------------------------------------------------
# Checking against reference polygons
# --------------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def compare_to_truth(
    predicted: GeometriesLike, truth: GeometriesLike, *, crs: CRSLike | None = None
) -> dict[str, float]:
    """Score predicted polygons against reference polygons by area.

    Both layers are reprojected to one equal-area CRS centred on them and dissolved
    (:func:`shapely.union_all`) first, so overlapping polygons are not counted twice.

    Args:
        predicted: Predicted polygons (e.g. from :func:`vectorize`), any CRS.
        truth: Reference polygons (e.g. from :func:`helpers.labels.read_vectors`), any CRS.
        crs: CRS of a layer that carries none.

    Returns:
        ``predicted_km2``, ``truth_km2``, ``intersection_km2``, ``union_km2``, ``iou``
        (intersection / union), ``precision`` (intersection / predicted), ``recall``
        (intersection / truth) and ``f1``. A ratio whose denominator is 0 is NaN.

    Raises:
        MissingCRSError: A layer has no CRS and ``crs`` is None.

    Example:
        >>> from shapely import box
        >>> scores = compare_to_truth([box(0, 0, 200, 100)], [box(100, 0, 300, 100)],
        ...                           crs="EPSG:32737")
        >>> round(scores["iou"], 3), round(scores["precision"], 3)
        (0.333, 0.5)
    """
    first = _geoseries(predicted, crs, "predicted")
    second = _geoseries(truth, crs, "truth")
    target = _laea_for([first, second])
    a = shapely.union_all(_polygonal(first.to_crs(target).to_numpy()))
    b = shapely.union_all(_polygonal(second.to_crs(target).to_numpy()))
    predicted_m2, truth_m2 = a.area, b.area
    intersection = a.intersection(b).area
    union = predicted_m2 + truth_m2 - intersection
    precision = _ratio(intersection, predicted_m2)
    recall = _ratio(intersection, truth_m2)
    return {
        "predicted_km2": predicted_m2 / 1e6,
        "truth_km2": truth_m2 / 1e6,
        "intersection_km2": intersection / 1e6,
        "union_km2": union / 1e6,
        "iou": _ratio(intersection, union),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * intersection, predicted_m2 + truth_m2),
    }


# --------------------------------------------------------------------------------------------
# Change between two dates
# --------------------------------------------------------------------------------------------


def _change_mask(
    before: np.ndarray, after: np.ndarray, ignore_value: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary before/after masks (0 outside the pixels valid at both dates) and change classes."""
    b = _binary_mask(before, "before", ignore_value)
    a = _binary_mask(after, "after", ignore_value)
    if b.shape != a.shape:
        raise ValueError(
            f"before has shape {b.shape} but after has shape {a.shape}: both masks must be on "
            "the same grid. Resample one onto the other's grid first (rasterio.warp.reproject), "
            "or compare polygons with change_between_layers()."
        )
    valid = (b != ignore_value) & (a != ignore_value)
    b = (b == 1) & valid
    a = (a == 1) & valid
    change = np.zeros(b.shape, dtype=np.uint8)
    change[a & ~b] = 1
    change[b & ~a] = 2
    return b, a, change


def change_polygons(
    before: np.ndarray,
    after: np.ndarray,
    transform: Affine,
    crs: CRSLike,
    *,
    min_area: float = 0.0,
    connectivity: int = 8,
    ignore_value: int = IGNORE_VALUE,
) -> gpd.GeoDataFrame:
    """Polygons where a class appeared (``new``) or disappeared (``lost``) between two masks.

    Pixels that are no data (``ignore_value``) at either date are left out.

    Args:
        before: Binary mask (0, 1, ``ignore_value``) of the earlier date.
        after: Binary mask of the later date, on the same grid.
        transform: The grid's affine transform.
        crs: The grid's CRS.
        min_area: Change polygons smaller than this many m² are dropped (misregistration
            slivers along edges are usually a few pixels).
        connectivity: 4 or 8, see :func:`vectorize`.
        ignore_value: Mask value of pixels without data.

    Returns:
        A GeoDataFrame in ``crs`` with columns ``change`` (``"new"`` or ``"lost"``),
        ``pixels``, ``area_km2`` and ``geometry``.

    Raises:
        ValueError: The masks differ in shape or hold values other than 0, 1, ignore.
        MissingCRSError: ``crs`` is None.

    Example:
        >>> before = np.array([[1, 1, 0, 0]], dtype=np.uint8)
        >>> after = np.array([[0, 1, 1, 1]], dtype=np.uint8)
        >>> gdf = change_polygons(before, after, Affine(1, 0, 500_000, 0, -1, 9_250_000),
        ...                       "EPSG:32737")
        >>> gdf[["change", "pixels"]].values.tolist()
        [['new', 2], ['lost', 1]]
    """
    if crs is None:
        raise _missing_crs("the masks (crs=None)")
    _, _, change = _change_mask(before, after, ignore_value)
    gdf = vectorize(
        change,
        transform,
        crs,
        classes=CHANGE_CLASSES,
        connectivity=connectivity,
        min_area=min_area,
        class_names=CHANGE_CLASSES,
    )
    gdf = gdf.rename(columns={"class_name": "change"})[["change", "pixels", "geometry"]]
    gdf.insert(2, "area_km2", area_km2(gdf))
    return gdf


def _dissolve(series: gpd.GeoSeries) -> Any:
    return shapely.union_all(_polygonal(series.to_numpy()))


def change_between_layers(
    before: GeometriesLike,
    after: GeometriesLike,
    *,
    crs: CRSLike | None = None,
    min_area: float = 0.0,
) -> gpd.GeoDataFrame:
    """Polygons where ``after`` covers ground ``before`` did not (``new``), and vice versa.

    For when both dates are vectors (digitised outlines, or predictions already polygonised).
    Each layer is dissolved first, so overlaps within a layer do not matter. The overlay is
    done in ``before``'s CRS (``after`` is reprojected to it).

    Args:
        before: Polygons of the earlier date (GeoDataFrame, GeoSeries or geometries).
        after: Polygons of the later date, any CRS.
        crs: CRS of a layer that carries none.
        min_area: Change polygons smaller than this many m² are dropped.

    Returns:
        A GeoDataFrame in ``before``'s CRS with one row per polygon and columns ``change``
        (``"new"`` or ``"lost"``), ``area_km2`` and ``geometry``; new polygons first.

    Raises:
        MissingCRSError: A layer has no CRS and ``crs`` is None.

    Example:
        >>> from shapely import box
        >>> gdf = change_between_layers([box(0, 0, 100, 100)], [box(50, 0, 150, 100)],
        ...                             crs="EPSG:32737")
        >>> gdf.change.tolist(), gdf.geometry.area.tolist()
        (['new', 'lost'], [5000.0, 5000.0])
    """
    first = _geoseries(before, crs, "before")
    second = _geoseries(after, crs, "after")
    if not second.crs.equals(first.crs):
        second = second.to_crs(first.crs)
    old, new = _dissolve(first), _dissolve(second)
    pieces = {"new": new.difference(old), "lost": old.difference(new)}
    rows: list[tuple[str, Any]] = []
    for label, geometry in pieces.items():
        parts = shapely.get_parts(geometry)
        parts = parts[shapely.get_type_id(parts) == shapely.GeometryType.POLYGON]
        rows.extend((label, part) for part in parts if not part.is_empty)
    if not rows:
        return _empty_frame({"change": "object", "area_km2": "float64"}, first.crs)
    gdf = gpd.GeoDataFrame(
        {"change": [label for label, _ in rows]},
        geometry=gpd.GeoSeries([g for _, g in rows], crs=first.crs),
        crs=first.crs,
    )
    gdf.insert(1, "area_km2", area_km2(gdf).to_numpy())
    if min_area > 0:
        gdf = gdf.loc[gdf["area_km2"] * 1e6 >= min_area].reset_index(drop=True)
    return gdf


def summarize_change(
    before: np.ndarray | GeometriesLike,
    after: np.ndarray | GeometriesLike,
    transform: Affine | None = None,
    crs: CRSLike | None = None,
    *,
    ignore_value: int = IGNORE_VALUE,
) -> dict[str, float]:
    """Areas in km² before, after, new, lost and net, and the percent change.

    Works on two binary masks on one grid (pass ``transform`` and ``crs``; pixels without data
    at either date are left out of every number, so ``net == new - lost`` exactly) or on two
    polygon layers (each dissolved first, so overlaps are not counted twice).

    Args:
        before: Mask or polygons of the earlier date.
        after: Mask or polygons of the later date.
        transform: The masks' affine transform (masks only).
        crs: The masks' CRS, or the CRS of a polygon layer that carries none.
        ignore_value: Mask value of pixels without data.

    Returns:
        ``before_km2``, ``after_km2``, ``new_km2``, ``lost_km2``, ``net_km2``
        (after - before) and ``percent_change`` (100 * net / before; NaN when before is 0).

    Raises:
        ValueError: Masks without ``transform``, or of different shapes.
        MissingCRSError: No CRS is known.

    Example:
        >>> from shapely import box
        >>> summary = summarize_change([box(0, 0, 1000, 1000)], [box(0, 0, 1000, 1500)],
        ...                            crs="EPSG:32737")
        >>> round(summary["percent_change"], 6)
        50.0
    """
    if isinstance(before, np.ndarray) or isinstance(after, np.ndarray):
        if transform is None:
            raise ValueError(
                "summarize_change: masks need transform=... (and crs=...) to be measured."
            )
        if crs is None:
            raise _missing_crs("the masks (crs=None)")
        b, _, change = _change_mask(before, after, ignore_value)
        # one equal-area CRS for every number, centred on the whole grid
        rows, cols = b.shape
        grid = shapely.box(*rasterio.transform.array_bounds(rows, cols, transform))
        target = _laea_for([gpd.GeoSeries([grid], crs=_as_pyproj(crs))])

        def km2(polygons: gpd.GeoDataFrame) -> float:
            return float(polygons.to_crs(target).area.sum()) / 1e6 if len(polygons) else 0.0

        # Two tracings instead of four: after = before + new - lost, pixel for pixel.
        before_km2 = km2(vectorize(b.astype(np.uint8), transform, crs))
        changes = vectorize(change, transform, crs, classes=CHANGE_CLASSES)
        new_km2 = km2(changes[changes["class_id"] == 1])
        lost_km2 = km2(changes[changes["class_id"] == 2])
        after_km2 = before_km2 + new_km2 - lost_km2
    else:
        first = _geoseries(before, crs, "before")
        second = _geoseries(after, crs, "after")
        target = _laea_for([first, second])
        old = _dissolve(first.to_crs(target))
        new = _dissolve(second.to_crs(target))
        before_km2, after_km2 = old.area / 1e6, new.area / 1e6
        new_km2, lost_km2 = new.difference(old).area / 1e6, old.difference(new).area / 1e6
    net = after_km2 - before_km2
    return {
        "before_km2": before_km2,
        "after_km2": after_km2,
        "new_km2": new_km2,
        "lost_km2": lost_km2,
        "net_km2": net,
        "percent_change": 100 * net / before_km2 if before_km2 > 0 else float("nan"),
    }
