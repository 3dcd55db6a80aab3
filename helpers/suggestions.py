"""Tiling defaults that fit the region's objects, and a check that every split gets positives.

Thresholds and sizes that suit the sample region (settlements filling whole tiles) fail
elsewhere: with buildings that cover at most a fifth of a tile, ``tiling.positive: 0.5`` gives
no positive tile at all, and every notebook after patching fails. This module derives them from
the labelled objects (see :mod:`helpers.object_sizes`):

* :func:`suggest_tile_thresholds` -- ``tiling.positive`` is a value that a tile centred on the
  median object reaches (counting its neighbours too); ``tiling.negative`` stays below it.
* :func:`positive_tile_problems` / :func:`warn_if_few_positive_tiles` /
  :func:`require_positive_tiles` -- count positive tiles per split and, when a split has too
  few (warning) or none (error), say so naming ``tiling.positive`` and a value that gives enough
  in every split.
* :func:`suggest_sizes` -- patch, tile and block sizes: a patch holds a few whole objects with
  their surroundings, a tile about two objects across, a block several patches wide, all
  multiples of 8 and no larger than the scene.

Example:
    >>> mask = np.zeros((200, 200), dtype=bool)
    >>> mask[50:60, 50:60] = mask[120:130, 100:110] = True  # two 10 x 10 px buildings
    >>> suggest_tile_thresholds(mask, tile_size=32).positive  # 100 px of a 32 x 32 tile
    0.097
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from affine import Affine

from helpers import object_sizes as _sizes
from helpers.splits import DEFAULT_NAMES

__all__ = [
    "FewPositiveTilesWarning",
    "SizeSuggestion",
    "TileThresholds",
    "centred_tile_fractions",
    "positive_tile_counts",
    "positive_tile_problems",
    "require_positive_tiles",
    "suggest_sizes",
    "suggest_tile_thresholds",
    "warn_if_few_positive_tiles",
]


class FewPositiveTilesWarning(UserWarning):
    """A split has too few positive tiles to train or score on."""


def round_down(value: float, digits: int = 2) -> float:
    """``value`` rounded down to ``digits`` significant digits (0.137 -> 0.13), so a threshold
    suggested from a fraction is still reached by it."""
    if value <= 0:
        return 0.0
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.floor(value * scale + 1e-9) / scale


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(max(value, 1) / multiple) * multiple)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(value // multiple) * multiple)


# --------------------------------------------------------------------------------------------
# Tile thresholds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileThresholds:
    """Suggested ``tiling.positive`` / ``tiling.negative`` and what they are based on."""

    positive: float
    negative: float
    median_fraction: float  # covered share of a tile centred on the median object
    tile_size: int
    objects: int

    def describe(self) -> str:
        return (
            f"tiling.positive: {self.positive:g}, tiling.negative: {self.negative:g} (a "
            f"{self.tile_size} px tile centred on the median of {self.objects} objects is "
            f"{self.median_fraction:.0%} covered)"
        )


def centred_tile_fractions(mask: np.ndarray, tile_size: int) -> np.ndarray:
    """For each object of ``mask``, the covered share of a tile centred on it (all objects in
    the tile count; outside the mask counts as uncovered)."""
    if int(tile_size) != tile_size or tile_size < 1:
        raise ValueError(f"tile_size={tile_size!r} must be a whole number of pixels >= 1.")
    mask = np.asarray(mask)
    foreground = mask if mask.dtype == bool else mask == 1
    sizes = _sizes.object_sizes(foreground)
    if sizes.empty:
        return np.zeros(0)
    tile = int(tile_size)
    padded = np.pad(foreground, tile).astype(np.int64)
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = padded.cumsum(0).cumsum(1)  # summed-area table
    top = np.round(sizes["row"].to_numpy()).astype(int) - tile // 2 + tile
    left = np.round(sizes["col"].to_numpy()).astype(int) - tile // 2 + tile
    covered = (table[top + tile, left + tile] - table[top, left + tile]
               - table[top + tile, left] + table[top, left])  # fmt: skip
    return covered / float(tile * tile)


def suggest_tile_thresholds(
    labels: Any,
    tile_size: int,
    *,
    transform: Affine | None = None,
    quantile: float = 0.5,
    cap: float = 0.5,
) -> TileThresholds:
    """``tiling.positive`` and ``tiling.negative`` from the objects' sizes and the tile size.

    ``positive`` is the covered share that a tile centred on the median object reaches
    (``quantile`` of :func:`centred_tile_fractions`), rounded down, at most ``cap`` (the course's
    "at least half covered" where objects fill whole tiles); ``negative`` is a quarter of it,
    at most 0.05.

    Args:
        labels: A mask (1 or True for the class) or polygons in the CRS of ``transform``.
        tile_size: Tile side in pixels (``tiling.tile_size``).
        transform: The raster's transform, for polygons (``Affine.identity()``: pixel units).
        quantile: Which object sets the threshold (0.5: the median one).
        cap: Largest suggested ``positive``.

    Returns:
        The :class:`TileThresholds`.

    Raises:
        ValueError: No labelled object, or polygons without ``transform``.
    """
    if isinstance(labels, np.ndarray):
        mask = labels
    elif transform is None:
        raise ValueError("transform is needed for polygons (Affine.identity() for pixel units).")
    else:
        mask, _ = _sizes.rasterize_objects(labels, transform, margin=int(tile_size))
    fractions = centred_tile_fractions(mask, tile_size)
    if len(fractions) == 0:
        raise ValueError("labels hold no object that covers a pixel centre: nothing to measure.")
    median = float(np.quantile(fractions, quantile))
    positive = min(float(cap), round_down(median))
    positive = max(positive, round_down(1.0 / tile_size**2))  # one pixel: the least possible
    negative = round_down(min(0.05, positive / 4))
    return TileThresholds(positive, negative, median, int(tile_size), len(fractions))


# --------------------------------------------------------------------------------------------
# Positive tiles per split
# --------------------------------------------------------------------------------------------


def positive_tile_counts(
    fractions: Sequence[float],
    assignment: Sequence[str | None],
    *,
    positive: float,
    names: Sequence[str] = DEFAULT_NAMES,
) -> dict[str, int]:
    """Tiles per split with at least ``positive`` of their area covered (dropped tiles: None)."""
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != len(assignment):
        raise ValueError(
            f"fractions ({len(fractions)}) and assignment ({len(assignment)}) must be aligned "
            "with the same windows."
        )
    split = np.asarray([str(s) for s in assignment])
    return {name: int(((split == name) & (fractions >= positive - 1e-9)).sum()) for name in names}


def _reachable(fractions: np.ndarray, split: np.ndarray, names, min_positives: int) -> float:
    """The largest threshold giving every split ``min_positives`` tiles (or all it has)."""
    best = []
    for name in names:
        values = np.sort(fractions[(split == name) & (fractions > 0)])[::-1]
        if len(values):
            best.append(values[min(min_positives, len(values)) - 1])
    return min(best) if best else 0.0


def positive_tile_problems(
    fractions: Sequence[float],
    assignment: Sequence[str | None],
    *,
    positive: float,
    negative: float,
    min_positives: int = 10,
    names: Sequence[str] = DEFAULT_NAMES,
    key: str = "tiling.positive",
) -> list[str]:
    """Messages for the splits with fewer than ``min_positives`` positive tiles (empty: none).

    Each message names ``key`` and a value that gives every split enough positives when one
    exists, else says which split lacks labelled tiles altogether.
    """
    fractions = np.asarray(fractions, dtype=float)
    counts = positive_tile_counts(fractions, assignment, positive=positive, names=names)
    split = np.asarray([str(s) for s in assignment])
    present = [name for name in names if (split == name).any()]
    short = [name for name in present if counts[name] < min_positives]
    if not short:
        return []
    listed = ", ".join(f"{name} {counts[name]}" for name in present)
    head = (
        f"{key} = {positive:g} gives {listed} positive tiles: fewer than {min_positives} in "
        f"{', '.join(short)}, too few to train or score on."
    )
    suggestion = round_down(_reachable(fractions, split, present, min_positives))
    labelled = {name: int(((split == name) & (fractions > negative)).sum()) for name in present}
    scarce = [name for name in present if labelled[name] < min_positives]
    if suggestion > negative and suggestion < positive:
        enough = positive_tile_counts(fractions, assignment, positive=suggestion, names=present)
        tail = (
            f" Set {key}: {suggestion:g} (then {', '.join(f'{n} {c}' for n, c in enough.items())}"
            f") and keep tiling.negative ({negative:g}) below it."
        )
    else:
        tail = ""
    if scarce:
        tail += (
            f" {', '.join(scarce)} hold(s) fewer than {min_positives} tiles with more than "
            f"tiling.negative covered at all: use a smaller tiling.block_size or another "
            "training.seed so labelled areas fall in every split, or label more objects."
        )
    return [head + tail]


def warn_if_few_positive_tiles(
    fractions: Sequence[float],
    assignment: Sequence[str | None],
    *,
    positive: float,
    negative: float,
    min_positives: int = 10,
    names: Sequence[str] = DEFAULT_NAMES,
) -> dict[str, int]:
    """:func:`positive_tile_counts`, warning (:class:`FewPositiveTilesWarning`) with the fix
    when a split has fewer than ``min_positives``; for notebooks 02 and 03 after labelling."""
    for problem in positive_tile_problems(fractions, assignment, positive=positive,
                                          negative=negative, min_positives=min_positives,
                                          names=names):  # fmt: skip
        warnings.warn(problem, FewPositiveTilesWarning, stacklevel=2)
    return positive_tile_counts(fractions, assignment, positive=positive, names=names)


def require_positive_tiles(
    fractions: Sequence[float],
    assignment: Sequence[str | None],
    *,
    positive: float,
    negative: float,
    min_positives: int = 10,
    names: Sequence[str] = DEFAULT_NAMES,
) -> dict[str, int]:
    """:func:`warn_if_few_positive_tiles`, but a split without any positive tile is an error.

    A model cannot learn the class from a training split without positives, nor be scored on
    a validation or test split without them; stopping here names the key to change instead
    of failing later with a message about empty arrays.

    Raises:
        ValueError: A split holding tiles has no positive one; the message names
            ``tiling.positive`` and a value that gives every split ``min_positives``.
    """
    counts = positive_tile_counts(fractions, assignment, positive=positive, names=names)
    present = {str(s) for s in assignment}
    if any(counts[name] == 0 for name in names if name in present):
        (problem,) = positive_tile_problems(fractions, assignment, positive=positive,
                                            negative=negative, min_positives=min_positives,
                                            names=names)  # fmt: skip
        raise ValueError(problem)
    return warn_if_few_positive_tiles(fractions, assignment, positive=positive, negative=negative,
                                      min_positives=min_positives, names=names)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Patch, tile and block sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeSuggestion:
    """Suggested ``tiling`` sizes in pixels, with the object sizes they come from."""

    patch_size: int
    stride: int
    tile_size: int
    tile_stride: int
    block_size: int
    typical_extent_px: float
    large_extent_px: float
    notes: tuple[str, ...] = ()

    def as_tiling(self) -> dict[str, int]:
        """The sizes as ``tiling`` keys of a region config."""
        return {"patch_size": self.patch_size, "stride": self.stride,
                "tile_size": self.tile_size, "tile_stride": self.tile_stride,
                "block_size": self.block_size}  # fmt: skip


def suggest_sizes(
    sizes: pd.DataFrame,
    scene_shape: tuple[int, int],
    *,
    multiple: int = 8,
    patch_range: tuple[int, int] = (64, 256),
    large_objects_patch: int = 128,
    tile_range: tuple[int, int] = (32, 64),
    min_blocks: int = 9,
) -> SizeSuggestion:
    """Patch, tile and block sizes from the objects' extents and the scene size.

    * block: about ``min_blocks`` blocks fit in the scene (a spatial split needs several), at
      most four patches wide and at least two (else most patches straddle blocks);
    * patch: four times the extent of a large object (75th percentile), so it holds a few whole
      objects with their surroundings; within ``patch_range`` and at most half a block. Objects
      too large for that (settlements) get ``large_objects_patch``, the course's default: a
      larger patch would still show parts of them, at several times the cost;
    * tile: twice a typical (median) object's extent, within ``tile_range`` and at most the
      patch (objects larger than a tile simply fill it);
    * strides: half the size. Everything a multiple of ``multiple`` (the U-Net halves the patch
      three times) and no larger than the scene.

    Args:
        sizes: :func:`helpers.object_sizes.object_sizes` of the labels.
        scene_shape: ``(rows, cols)`` of the scene.
        multiple: Every size is a multiple of this.
        patch_range, tile_range: Smallest and largest patch and tile sizes to suggest.
        large_objects_patch: The patch size for objects too large for ``patch_range``.
        min_blocks: Blocks the scene should hold.

    Returns:
        The :class:`SizeSuggestion`, with notes where the scene or objects forced a compromise.

    Raises:
        ValueError: ``sizes`` is empty, or the scene is smaller than ``multiple``.
    """
    if sizes.empty:
        raise ValueError("sizes holds no object: measure the labels with object_sizes first.")
    rows, cols = (int(v) for v in scene_shape)
    if min(rows, cols) < multiple:
        raise ValueError(f"scene_shape={scene_shape} is smaller than {multiple} px.")
    side = min(rows, cols) // multiple * multiple
    typical = float(sizes["extent_px"].median())
    large = float(sizes["extent_px"].quantile(0.75))
    notes = []
    most_blocks = _round_to(math.sqrt(rows * cols / min_blocks), multiple)
    wanted = _round_up(4 * large, multiple)
    if wanted > patch_range[1]:
        wanted = large_objects_patch
    wanted = min(max(wanted, patch_range[0]), patch_range[1], side)
    patch = min(wanted, max(_round_to(most_blocks / 2, multiple), multiple))
    if patch < wanted:
        notes.append(f"patches of {wanted} px would leave the scene ({cols} x {rows} px) too few "
                     f"spatial blocks: {patch} px instead")  # fmt: skip
    elif 4 * large > patch_range[1]:
        notes.append(f"objects ({large:.0f} px across) are large: a {patch} px patch shows parts "
                     "of them (the context around a boundary is what it learns from)")  # fmt: skip
    tile = min(max(_round_up(2 * typical, multiple), tile_range[0]), tile_range[1], patch)
    block = max(2 * patch, min(4 * patch, most_blocks))
    return SizeSuggestion(patch, max(patch // 2, 1), tile, max(tile // 2, 1), block, typical,
                          large, tuple(notes))  # fmt: skip
