"""Cleaning settings from the labels: cleaning the ground truth itself keeps every object."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin
from scipy import ndimage

from helpers import postprocess
from helpers.cleaning_suggestions import suggest_cleaning, suggest_cleaning_from_labels

PIXEL_M2 = 0.25  # 0.5 m pixels, as in the region where a fixed 200 m² minimum failed
EIGHT = np.ones((3, 3), dtype=bool)


def _buildings(seed: int = 0) -> np.ndarray:
    """Buildings of 5 to 40 m² up to 300 m² at 0.5 m, a thin one, an L, one with a courtyard."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((200, 200), dtype=np.uint8)
    for row in range(6, 150, 36):
        for col in range(6, 190, 36):
            height, width = rng.integers(5, 31, size=2)
            mask[row : row + height, col : col + width] = 1
    mask[160:163, 10:60] = 1  # 3 px (1.5 m) wide wall-like building
    mask[170:190, 80:86] = 1  # an L
    mask[184:190, 86:110] = 1
    mask[160:190, 140:170] = 1  # a courtyard of 8 x 8 px
    mask[171:179, 151:159] = 0
    return mask


def _kept_and_iou(mask: np.ndarray, cleaned: np.ndarray) -> tuple[int, int, float]:
    labelled, count = ndimage.label(mask == 1, structure=EIGHT)
    kept = len(np.setdiff1d(np.unique(labelled[cleaned == 1]), [0]))
    truth, pred = mask == 1, cleaned == 1
    return count, kept, (truth & pred).sum() / (truth | pred).sum()


def test_cleaning_the_labels_with_the_suggestion_keeps_every_object():
    mask = _buildings()
    suggestion = suggest_cleaning(mask, pixel_area_m2=PIXEL_M2)
    cleaned = postprocess.clean_mask(mask, **suggestion.clean_mask_kwargs())
    count, kept, iou = _kept_and_iou(mask, cleaned)
    assert kept == count == suggestion.objects
    assert iou >= 0.95 and iou == pytest.approx(suggestion.iou)
    labelled, _ = ndimage.label(mask == 1, structure=EIGHT)
    smallest = np.bincount(labelled.ravel())[1:].min()
    assert suggestion.min_size <= suggestion.smallest_object_px == smallest
    assert suggestion.max_hole < 64  # the courtyard stays open
    assert cleaned[175, 155] == 0
    assert suggestion.thinnest_object_px == 3 and suggestion.opening == 1  # radius 2 erases it
    assert suggestion.min_object_m2 == suggestion.min_size * PIXEL_M2
    assert "OPENING 1" in suggestion.describe() and "m²" in suggestion.describe()
    # The fixed defaults of notebook 07 (opening 2, 200 m²) delete labelled buildings.
    fixed = postprocess.clean_mask(mask, opening=2, closing=2, min_size=round(200 / PIXEL_M2))
    assert _kept_and_iou(mask, fixed)[1] < count


def test_closing_that_would_merge_two_labelled_objects_is_not_suggested():
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[5:30, 5:25] = 1
    mask[5:30, 27:50] = 1  # 2 px apart: any closing joins them
    suggestion = suggest_cleaning(mask)
    assert suggestion.closing == 0 and suggestion.opening == 2
    merged = postprocess.clean_mask(mask, closing=1)
    assert ndimage.label(merged == 1, structure=EIGHT)[1] == 1  # what the check prevents
    apart = postprocess.clean_mask(mask, **suggestion.clean_mask_kwargs())
    assert ndimage.label(apart == 1, structure=EIGHT)[1] == 2


def test_tiny_labelled_objects_lower_the_minimum_below_the_floor():
    mask = np.zeros((30, 30), dtype=np.uint8)
    mask[2:20, 2:20] = 1
    mask[25, 25] = mask[25, 26] = 1  # a 2-pixel object in the labels
    suggestion = suggest_cleaning(mask, max_radius=0)
    assert suggestion.min_size == 2 and (suggestion.opening, suggestion.closing) == (0, 0)
    assert suggestion.min_object_m2 is None


def test_suggestion_from_polygons_on_the_scene_grid():
    transform = from_origin(500_000.0, 4_000_000.0, 0.5, 0.5)
    x0, y0 = 500_010.0, 3_999_990.0
    small = shapely.box(x0, y0 - 3, x0 + 3, y0)  # 9 m² = 36 px
    large = shapely.box(x0 + 20, y0 - 15, x0 + 40, y0)  # 300 m²
    suggestion = suggest_cleaning_from_labels([small, large], transform)
    assert suggestion.pixel_area_m2 == 0.25 and suggestion.smallest_object_px == 36
    assert suggestion.min_object_m2 <= 9 and suggestion.objects == 2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no labelled object"):
        suggest_cleaning(np.zeros((5, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="min_iou"):
        suggest_cleaning(np.ones((5, 5), dtype=np.uint8), min_iou=0)
    with pytest.raises(ValueError, match="max_radius"):
        suggest_cleaning(np.ones((5, 5), dtype=np.uint8), max_radius=-1)
    with pytest.raises(ValueError, match="cover no pixel centre"):
        suggest_cleaning_from_labels([shapely.box(0, 0, 0.1, 0.1)], from_origin(0, 10, 1, 1))


def test_a_pinhole_of_the_rasterization_is_not_a_courtyard():
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[5:35, 5:35] = 1
    mask[20, 20] = 0  # one pixel enclosed: rasterized outlines leave these where corners meet
    assert suggest_cleaning(mask).max_hole == suggest_cleaning(mask).min_size > 1
    mask[10:13, 10:13] = 0  # a 9 px courtyard stays open
    assert suggest_cleaning(mask).max_hole == 8
