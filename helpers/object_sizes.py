"""How big are the labelled objects, in pixels? The measurements the suggested defaults start from.

Sizes that suit one region (tile thresholds, patch sizes, the smallest object kept after
cleaning) are wrong for another: settlements at 1 m fill whole tiles, buildings at 0.5 m fill a
fifth of one at most. So the course measures the objects of each region's own labels:

* :func:`rasterize_objects` -- burn label polygons onto the scene's pixel grid, only over the
  labels' bounding box (plus a margin), so even a large scene costs little memory.
* :func:`object_sizes` -- one row per connected object of a mask: area, thickness (the widest
  disk that fits, as a width) and extent in pixels, and its centroid.

Objects are the connected components of the rasterized labels (8-connected, like
:func:`helpers.postprocess.clean_mask` by default), so two touching outlines are one object, as
they are for everything that works on masks.

Example:
    >>> mask = np.zeros((8, 12), dtype=bool)
    >>> mask[1:4, 1:4] = True  # a 3 x 3 square
    >>> mask[5:7, 2:11] = True  # a 2 x 9 strip
    >>> object_sizes(mask)[["area_px", "thickness_px", "extent_px"]].to_numpy().tolist()
    [[9, 3, 3], [18, 1, 9]]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

__all__ = ["object_sizes", "rasterize_objects"]

GeometriesLike = gpd.GeoDataFrame | gpd.GeoSeries | shapely.Geometry | Iterable[Any]

_COLUMNS = ("area_px", "thickness_px", "extent_px", "row", "col")


def _geometries(geometries: GeometriesLike) -> np.ndarray:
    if isinstance(geometries, gpd.GeoDataFrame | gpd.GeoSeries):
        geometries = geometries.geometry.to_numpy()
    elif isinstance(geometries, shapely.Geometry):
        geometries = [geometries]
    array = np.asarray(list(geometries), dtype=object)
    keep = ~(shapely.is_missing(array) | shapely.is_empty(array))
    array = array[keep]
    polygonal = np.isin(shapely.get_type_id(array), (3, 6))  # Polygon, MultiPolygon
    if len(array) and not polygonal.any():
        raise ValueError(
            "geometries: no polygons among them (lines and points have no area); buffer them "
            "into polygons first, e.g. gdf.geometry.buffer(width_in_metres / 2)."
        )
    return array[polygonal]


def rasterize_objects(
    geometries: GeometriesLike,
    transform: Affine,
    *,
    shape: tuple[int, int] | None = None,
    margin: int = 0,
) -> tuple[np.ndarray, Window]:
    """Burn polygons onto the raster grid of ``transform``, over their bounding box only.

    Args:
        geometries: Polygons in the raster's CRS (a GeoDataFrame, GeoSeries or shapely
            geometries); pass ``Affine.identity()`` as ``transform`` for polygons already in
            pixel units (x = column, y = row).
        transform: The raster's affine transform.
        shape: ``(rows, cols)`` of the raster, to clip the box to it; None: no clipping.
        margin: Pixels added around the box on every side (room for tiles around objects).

    Returns:
        ``(mask, window)``: a boolean mask of the box (a pixel is True when its centre is
        inside a polygon) and its window on the raster. No polygons: an empty mask.

    Raises:
        ValueError: The geometries hold no polygon, or ``margin`` is negative.
    """
    if int(margin) != margin or margin < 0:
        raise ValueError(f"margin={margin!r} must be a whole number of pixels >= 0.")
    polygons = _geometries(geometries)
    if len(polygons) == 0:
        return np.zeros((0, 0), dtype=bool), Window(0, 0, 0, 0)
    inverse = ~transform
    corners = shapely.get_coordinates(shapely.envelope(polygons))
    cols, rows = inverse * (corners[:, 0], corners[:, 1])
    col0, row0 = int(np.floor(cols.min())) - margin, int(np.floor(rows.min())) - margin
    col1, row1 = int(np.ceil(cols.max())) + margin, int(np.ceil(rows.max())) + margin
    if shape is not None:
        col0, row0 = max(col0, 0), max(row0, 0)
        col1, row1 = min(col1, int(shape[1])), min(row1, int(shape[0]))
    if col1 <= col0 or row1 <= row0:
        return np.zeros((0, 0), dtype=bool), Window(0, 0, 0, 0)
    window = Window(col0, row0, col1 - col0, row1 - row0)
    window_transform = transform * Affine.translation(col0, row0)
    burnt = rasterio.features.rasterize(
        ((g, 1) for g in polygons),
        out_shape=(row1 - row0, col1 - col0),
        transform=window_transform,
        fill=0,
        dtype="uint8",
    )
    return burnt.astype(bool), window


def _deepest(piece: np.ndarray) -> float:
    """Largest distance from a pixel of ``piece`` to the background around it (the box is
    padded, so the outside counts as background); per object, so memory stays small."""
    return float(ndimage.distance_transform_edt(np.pad(piece, 1)).max())


def object_sizes(mask: np.ndarray, *, connectivity: int = 8) -> pd.DataFrame:
    """Measure each connected object of a binary mask.

    Args:
        mask: 2-D mask, True (or 1) for the class; other values (0, the ignore value 255) are
            background.
        connectivity: 4 or 8, which neighbours make pixels one object.

    Returns:
        One row per object, in label order, with ``area_px`` (pixels), ``thickness_px`` (the
        side of the widest odd square disk that fits: ``2 * max distance to the background -
        1``, so a 1-pixel line is 1 and a 5 x 5 square 5), ``extent_px`` (the longer side of its
        bounding box) and ``row`` / ``col`` (its centroid in the mask).

    Raises:
        ValueError: ``mask`` is not 2-D, or ``connectivity`` is not 4 or 8.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (rows, cols), got shape {mask.shape}.")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    foreground = mask == 1 if mask.dtype != bool else mask
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    labelled, count = ndimage.label(foreground, structure=structure)
    if count == 0:
        return pd.DataFrame({name: pd.Series(dtype=float) for name in _COLUMNS})
    index = np.arange(1, count + 1)
    boxes = ndimage.find_objects(labelled)
    inner = np.array(
        [_deepest(labelled[box] == label) for label, box in zip(index, boxes, strict=True)]
    )
    centres = np.asarray(ndimage.center_of_mass(foreground, labelled, index)).reshape(-1, 2)
    extent = [max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes]
    return pd.DataFrame(
        {
            "area_px": np.bincount(labelled.ravel(), minlength=count + 1)[1:],
            "thickness_px": (2 * np.floor(inner) - 1).astype(int),
            "extent_px": np.asarray(extent, dtype=int),
            "row": centres[:, 0],
            "col": centres[:, 1],
        }
    )
