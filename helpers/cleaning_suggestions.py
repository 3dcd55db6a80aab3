"""Post-processing settings that the region's own labels survive.

A fixed "remove objects under 200 m²" deleted 18 of 43 real buildings in one region: the
right minimum depends on what is being mapped and on the pixel size. So the cleaning of
:func:`helpers.postprocess.clean_mask` is chosen from the labels themselves:

* the minimum object size is below the smallest labelled object (half its area, with a floor
  of a few pixels), so cleaning never deletes an object the labels contain;
* holes as large as the smallest labelled hole stay open (courtyards are real; pinholes of a
  few pixels, which rasterizing outlines leaves where corners touch, do not count);
* the opening and closing radii are the largest (up to ``max_radius``) with which cleaning the
  rasterized labels themselves keeps every object (at least half of each), merges none, and
  keeps their IoU with the labels at ``min_iou`` or more.

:func:`suggest_cleaning` works on a mask, :func:`suggest_cleaning_from_labels` on polygons.

Example:
    >>> mask = np.zeros((20, 30), dtype=np.uint8)
    >>> mask[2:12, 2:12] = 1  # a 10 x 10 building
    >>> mask[15:18, 5:25] = 1  # a 3 px wide one
    >>> suggestion = suggest_cleaning(mask, pixel_area_m2=0.25)
    >>> suggestion.min_size, suggestion.opening, suggestion.min_object_m2
    (30, 1, 7.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from scipy import ndimage

from helpers import object_sizes as _sizes
from helpers import postprocess

__all__ = ["CleaningSuggestion", "suggest_cleaning", "suggest_cleaning_from_labels"]


@dataclass(frozen=True)
class CleaningSuggestion:
    """Arguments for :func:`helpers.postprocess.clean_mask` that the labels survive.

    Attributes:
        opening, closing: Disk radii in pixels.
        min_size: Objects with fewer pixels are removed (<= the smallest labelled object).
        max_hole: Enclosed holes up to this many pixels are filled (< the smallest labelled
            hole).
        objects: Number of labelled objects.
        smallest_object_px: Area of the smallest labelled object.
        thinnest_object_px: Thickness of the thinnest labelled object
            (see :func:`helpers.object_sizes.object_sizes`).
        iou: IoU of the cleaned labels with the labels.
        pixel_area_m2: Area of one pixel, when known.
    """

    opening: int
    closing: int
    min_size: int
    max_hole: int
    objects: int
    smallest_object_px: int
    thinnest_object_px: int
    iou: float
    pixel_area_m2: float | None = None

    @property
    def min_object_m2(self) -> float | None:
        """``min_size`` in m² (notebook 07's ``MIN_OBJECT_M2``), when the pixel size is known."""
        return None if self.pixel_area_m2 is None else self.min_size * self.pixel_area_m2

    @property
    def max_hole_m2(self) -> float | None:
        """``max_hole`` in m² (notebook 07's ``MAX_HOLE_M2``), when the pixel size is known."""
        return None if self.pixel_area_m2 is None else self.max_hole * self.pixel_area_m2

    def clean_mask_kwargs(self) -> dict[str, int]:
        """``postprocess.clean_mask(mask, **suggestion.clean_mask_kwargs())``."""
        return {"opening": self.opening, "closing": self.closing, "min_size": self.min_size,
                "max_hole": self.max_hole}  # fmt: skip

    def describe(self) -> str:
        """One line with the settings and what they are based on."""
        area = "" if self.min_object_m2 is None else f" = {self.min_object_m2:g} m²"
        hole = "" if self.max_hole_m2 is None else f" = {self.max_hole_m2:g} m²"
        return (
            f"OPENING {self.opening}, CLOSING {self.closing} px; min object {self.min_size} px"
            f"{area}; holes filled up to {self.max_hole} px{hole} (from {self.objects} "
            f"labelled objects: smallest {self.smallest_object_px} px, thinnest "
            f"{self.thinnest_object_px} px; cleaning the labels keeps all, IoU {self.iou:.3f})"
        )


def _smallest_hole(foreground: np.ndarray, connectivity: int, at_least: int) -> int | None:
    """Pixels of the smallest background region enclosed by the class with ``at_least``
    pixels (None: no such hole); smaller ones are pinholes of the rasterization, where two
    corners of an outline meet diagonally."""
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 4 else 1)
    labelled, count = ndimage.label(~foreground, structure=structure)
    edges = np.concatenate([labelled[0], labelled[-1], labelled[:, 0], labelled[:, -1]])
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    sizes[0] = 0
    sizes[np.unique(edges)] = 0
    holes = sizes[sizes >= max(at_least, 1)]
    return int(holes.min()) if len(holes) else None


def _survives(labelled: np.ndarray, count: int, cleaned: np.ndarray, structure, min_iou: float):
    """IoU of ``cleaned`` with the labels if every object keeps half its pixels and no two
    objects merge; else None."""
    truth = labelled > 0
    kept = np.bincount(labelled[cleaned], minlength=count + 1)[1:]
    area = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    if np.any(kept < 0.5 * area):
        return None
    pieces, _ = ndimage.label(cleaned, structure=structure)
    pairs = np.unique(np.column_stack([pieces[cleaned & truth], labelled[cleaned & truth]]), axis=0)
    if len(np.unique(pairs[:, 0])) < len(pairs):  # a cleaned piece spans two labelled objects
        return None
    iou = float((cleaned & truth).sum() / max((cleaned | truth).sum(), 1))
    return iou if iou >= min_iou else None


def suggest_cleaning(
    mask: np.ndarray,
    *,
    pixel_area_m2: float | None = None,
    max_radius: int = 2,
    min_iou: float = 0.95,
    floor_px: int = 4,
    size_fraction: float = 0.5,
    connectivity: int = 8,
) -> CleaningSuggestion:
    """Cleaning settings that keep every object of a ground-truth mask.

    Args:
        mask: The rasterized labels: 1 (or True) for the class, anything else background.
        pixel_area_m2: Area of a pixel in m², to give the sizes in m² too.
        max_radius: Largest opening and closing radius to consider (notebook 07's default).
        min_iou: Lowest IoU of the cleaned labels with the labels.
        floor_px: Smallest useful ``min_size`` (specks of fewer pixels are noise), unless the
            labels hold smaller objects.
        size_fraction: ``min_size`` is this share of the smallest object's area.
        connectivity: 4 or 8, as for ``clean_mask``.

    Returns:
        The :class:`CleaningSuggestion`.

    Raises:
        ValueError: The mask holds no object, or an argument is out of range.
    """
    if not 0 < min_iou <= 1 or not 0 < size_fraction <= 1:
        raise ValueError(f"min_iou={min_iou} and size_fraction={size_fraction} must be in (0, 1].")
    if int(max_radius) != max_radius or max_radius < 0:
        raise ValueError(f"max_radius={max_radius!r} must be a whole number of pixels >= 0.")
    sizes = _sizes.object_sizes(mask, connectivity=connectivity)
    if sizes.empty:
        raise ValueError(
            "mask holds no labelled object (no pixel is 1): rasterize the target class's "
            "polygons first, e.g. with suggest_cleaning_from_labels."
        )
    mask = np.asarray(mask)
    foreground = mask if mask.dtype == bool else mask == 1
    smallest = int(sizes["area_px"].min())
    min_size = min(smallest, max(int(floor_px), math.floor(size_fraction * smallest)))
    hole = _smallest_hole(foreground, connectivity, at_least=int(floor_px))
    max_hole = min_size if hole is None else min(min_size, hole - 1)
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    labelled, count = ndimage.label(foreground, structure=structure)
    chosen: dict[str, Any] = {"opening": 0, "closing": 0}
    iou = 1.0
    for step in ("opening", "closing"):
        for radius in range(int(max_radius), -1, -1):
            trial = {**chosen, step: radius}
            cleaned = postprocess.clean_mask(foreground.astype(np.uint8), min_size=min_size,
                                             max_hole=max_hole, connectivity=connectivity,
                                             **trial) == 1  # fmt: skip
            score = _survives(labelled, count, cleaned, structure, min_iou)
            if score is not None:
                chosen, iou = trial, score
                break
    return CleaningSuggestion(
        opening=chosen["opening"], closing=chosen["closing"], min_size=min_size,
        max_hole=max(max_hole, 0), objects=len(sizes), smallest_object_px=smallest,
        thinnest_object_px=int(sizes["thickness_px"].min()), iou=iou,
        pixel_area_m2=None if pixel_area_m2 is None else float(pixel_area_m2),
    )  # fmt: skip


def suggest_cleaning_from_labels(
    geometries: Any, transform: Affine, *, shape: tuple[int, int] | None = None, **kwargs: Any
) -> CleaningSuggestion:
    """:func:`suggest_cleaning` for label polygons in the raster's CRS (``transform``'s grid).

    The polygons are burnt over their bounding box only; the pixel area comes from
    ``transform`` (so the sizes in m² assume a projected CRS in metres).

    Raises:
        ValueError: No polygon falls on a pixel of the grid.
    """
    mask, _ = _sizes.rasterize_objects(geometries, transform, shape=shape, margin=2)
    if not mask.any():
        raise ValueError(
            "The label polygons cover no pixel centre of the grid: check that they are in the "
            "raster's CRS (read_vectors(path, crs=src.crs)) and not smaller than a pixel."
        )
    kwargs.setdefault("pixel_area_m2", abs(transform.a * transform.e - transform.b * transform.d))
    return suggest_cleaning(mask.astype(np.uint8), **kwargs)
