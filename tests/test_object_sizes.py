"""Measuring labelled objects: rasterized over their bounding box, measured per component."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.transform import from_origin

from helpers.object_sizes import object_sizes, rasterize_objects


def test_object_sizes_measure_area_thickness_extent_and_centre():
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[2:7, 2:7] = 1  # 5 x 5
    mask[10:13, 3:28] = 1  # 3 px wide, 25 long
    mask[16, 20] = 1  # a single pixel
    mask[0, 29] = 255  # ignore value: background here
    sizes = object_sizes(mask)
    assert sizes["area_px"].tolist() == [25, 75, 1]
    assert sizes["thickness_px"].tolist() == [5, 3, 1]
    assert sizes["extent_px"].tolist() == [5, 25, 1]
    assert sizes.loc[0, ["row", "col"]].tolist() == [4.0, 4.0]
    diagonal = np.eye(4, dtype=bool)
    assert len(object_sizes(diagonal)) == 1 and len(object_sizes(diagonal, connectivity=4)) == 4
    assert object_sizes(np.zeros((3, 3), bool)).empty
    with pytest.raises(ValueError, match="2-D"):
        object_sizes(np.zeros((2, 3, 3)))


def test_rasterize_objects_burns_only_the_bounding_box_on_the_raster_grid():
    transform = from_origin(500_000.0, 4_000_000.0, 0.5, 0.5)  # 0.5 m pixels
    x0, y0 = transform * (100, 200)  # the corner of pixel (row 200, col 100)
    building = shapely.box(x0, y0 - 6.0, x0 + 10.0, y0)  # 10 m x 6 m = 20 x 12 px
    mask, window = rasterize_objects([building], transform, margin=3)
    assert (window.col_off, window.row_off) == (97, 197)
    assert mask.shape == (12 + 6, 20 + 6) and mask.sum() == 240
    clipped, window = rasterize_objects([building], transform, shape=(205, 110), margin=3)
    assert (window.height, window.width) == (8, 13) and clipped.sum() == 5 * 10
    pixels, _ = rasterize_objects(shapely.box(0, 0, 4, 2), Affine.identity())
    assert pixels.sum() == 8
    empty, window = rasterize_objects([], transform)
    assert empty.size == 0 and window.width == 0
    with pytest.raises(ValueError, match="no polygons"):
        rasterize_objects([shapely.Point(0, 0)], transform)
