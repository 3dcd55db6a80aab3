"""Split patches into train / validation / test without leaking pixels between the splits.

Patches cut from one scene with overlap share pixels with their neighbours. Split such patches
at random (:func:`random_split`) and almost every validation patch has a neighbour in training
that holds most of its pixels: validation scores then measure memory, not generalisation.
:func:`spatial_block_split` splits by place instead: the scene is cut into square blocks, whole
blocks go to one split, and patches where two splits meet are dropped so that no pixel (and,
with ``buffer``, no pixel within ``buffer`` of another split) is shared. :func:`leakage_report`
measures the difference; :func:`split_summary` reports the class balance per split.

Typical use in a notebook::

    from helpers import splits

    split_of = splits.spatial_block_split(windows, block_size=512, buffer=16, seed=42)
    splits.leakage_report(windows, split_of)        # {'leaking_pairs': 0, ...}
    splits.split_summary(split_of, patch_labels)    # counts per split and class

Windows are :class:`rasterio.windows.Window` objects with integer offsets and sizes, in pixel
space; splits come back as a list aligned with them: ``"train"``, ``"validation"``, ``"test"``
or None for a patch dropped to keep the splits apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import shapely
from rasterio.windows import Window

from helpers.labels import IGNORE_LABEL

__all__ = [
    "DEFAULT_NAMES",
    "leakage_report",
    "random_split",
    "spatial_block_split",
    "split_summary",
]

logger = logging.getLogger(__name__)

#: Split names, in the order of the ``fractions`` arguments.
DEFAULT_NAMES = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------
# Shared checks and geometry
# --------------------------------------------------------------------------------------------


def _window_array(windows: Sequence[Window]) -> np.ndarray:
    """``(n, 4)`` int64 array of ``row_off, col_off, height, width``."""
    values = np.array(
        [(w.row_off, w.col_off, w.height, w.width) for w in windows], dtype=float
    ).reshape(-1, 4)
    if not np.all(values == np.round(values)):
        raise ValueError(
            "windows: offsets and sizes must be whole pixels; round them with "
            "window.round_offsets().round_lengths() first."
        )
    values = values.astype(np.int64)
    if np.any(values[:, 2:] <= 0):
        raise ValueError("windows: every window needs a positive width and height.")
    return values


def _check_fractions(fractions: Sequence[float], names: Sequence[str]) -> np.ndarray:
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {tuple(names)}.")
    values = np.asarray(fractions, dtype=float)
    if values.shape != (len(names),):
        raise ValueError(
            f"fractions {tuple(fractions)} must have one value per split name {tuple(names)}."
        )
    if np.any(values < 0) or not np.isclose(values.sum(), 1.0, atol=1e-6):
        raise ValueError(
            f"fractions {tuple(fractions)} must be >= 0 and sum to 1, e.g. (0.7, 0.15, 0.15)."
        )
    return values


def _split_counts(n: int, fractions: np.ndarray) -> np.ndarray:
    """Share ``n`` items among splits by largest remainder; when ``n`` allows, every split with a
    positive fraction gets at least one item."""
    ideal = fractions * n
    counts = np.floor(ideal).astype(int)
    order = np.argsort(-(ideal - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    if n < int((fractions > 0).sum()):
        return counts
    for i in np.flatnonzero((fractions > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        counts[donor] -= 1
        counts[i] += 1
    return counts


def _conflicts(
    candidates: np.ndarray, others: np.ndarray, buffer: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` where window ``candidates[i]``, grown by ``buffer`` pixels on every side,
    shares at least one pixel with window ``others[j]``.

    An STRtree finds the pairs whose bounding boxes meet (touching included); the exact test
    then runs on integer pixel coordinates, so adjacent windows (no shared pixel) do not count.
    """
    if len(candidates) == 0 or len(others) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)

    def boxes(w: np.ndarray, grow: int) -> np.ndarray:
        return shapely.box(
            w[:, 1] - grow, w[:, 0] - grow, w[:, 1] + w[:, 3] + grow, w[:, 0] + w[:, 2] + grow
        )

    i, j = shapely.STRtree(boxes(others, 0)).query(boxes(candidates, buffer))
    a, b = candidates[i], others[j]
    overlap = (
        (a[:, 0] - buffer < b[:, 0] + b[:, 2])
        & (b[:, 0] < a[:, 0] + a[:, 2] + buffer)
        & (a[:, 1] - buffer < b[:, 1] + b[:, 3])
        & (b[:, 1] < a[:, 1] + a[:, 3] + buffer)
    )
    return i[overlap], j[overlap]


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def spatial_block_split(
    windows: Sequence[Window],
    *,
    block_size: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    buffer: int = 0,
    names: Sequence[str] = DEFAULT_NAMES,
) -> list[str | None]:
    """Assign patches to splits by spatial block, dropping patches that would leak.

    1. The scene is cut into square blocks of ``block_size`` pixels (a grid starting at pixel
       (0, 0)). Only blocks that contain the centre of at least one window take part.
    2. Blocks are shuffled (seeded) and shared among the splits by count, rounding by largest
       remainder, so the share of blocks in each split is as close to ``fractions`` as the
       block count allows; every split with a positive fraction gets at least one block.
    3. Each window goes to the split of the block holding its centre.
    4. Leakage guard. Two windows of different splits may not share a pixel, nor lie within
       ``buffer`` pixels of each other (one window grown by ``buffer`` on every side must not
       overlap the other). Conflicts are settled by a fixed priority: the split with the
       smallest fraction keeps all its windows (ties: the split named later, so test before
       validation), the next one drops every window that conflicts with a window already
       kept, and so on; with the default fractions training gives up the patches along the
       borders of validation and test blocks, which costs it the smallest share of its data.
       Dropped windows get None.

    Choose ``block_size`` several times the patch size (and larger than typical objects): a
    patch larger than a block straddles several blocks and is likely to be dropped.

    Args:
        windows: The patch grid, whole-pixel windows.
        block_size: Side of the square blocks, in pixels.
        fractions: Target share of blocks for each split, in the order of ``names``; sums to 1.
            A fraction of 0 leaves that split empty.
        seed: Seed of the block shuffle; the same inputs and seed give the same splits.
        buffer: Minimum gap, in pixels, between windows of different splits (0: no shared
            pixel, touching allowed). Use about the receptive field, or the distance over which
            the scene looks alike.
        names: Split names.

    Returns:
        A list aligned with ``windows``: a name from ``names``, or None for dropped windows.

    Raises:
        ValueError: Bad arguments; fewer occupied blocks than splits with a positive fraction
            (the message gives the minimum and suggests a smaller ``block_size``); or the
            leakage guard emptied a split (suggests a larger ``block_size`` or smaller
            ``buffer``).

    Example:
        >>> grid = [Window(c, r, 8, 8) for r in range(0, 64, 4) for c in range(0, 64, 4)]
        >>> split_of = spatial_block_split(grid, block_size=16, buffer=2, seed=1)
        >>> leakage_report(grid, split_of, buffer=2)["leaking_pairs"]
        0
    """
    if int(block_size) != block_size or block_size <= 0:
        raise ValueError(f"block_size must be a positive whole number of pixels, got {block_size}.")
    if int(buffer) != buffer or buffer < 0:
        raise ValueError(f"buffer must be a whole number of pixels >= 0, got {buffer}.")
    block_size, buffer = int(block_size), int(buffer)
    target = _check_fractions(fractions, names)
    boxes = _window_array(windows)
    n = len(boxes)
    if n == 0:
        return []
    if np.any(boxes[:, 2:].max(axis=1) > block_size):
        logger.warning(
            "Some patches (up to %d px) are larger than block_size=%d: they straddle several "
            "blocks and many will be dropped. Use a block_size several times the patch size.",
            int(boxes[:, 2:].max()),
            block_size,
        )

    # Block of each window centre; in doubled coordinates to stay in integers.
    block_row = (2 * boxes[:, 0] + boxes[:, 2]) // (2 * block_size)
    block_col = (2 * boxes[:, 1] + boxes[:, 3]) // (2 * block_size)
    blocks, block_of_window = np.unique(
        np.column_stack([block_row, block_col]), axis=0, return_inverse=True
    )
    block_of_window = block_of_window.ravel()
    needed = int((target > 0).sum())
    if len(blocks) < needed:
        raise ValueError(
            f"Only {len(blocks)} block(s) of {block_size} px contain patch centres, but "
            f"{needed} splits need at least one block each (minimum block count: {needed}). "
            f"Use a smaller block_size (the scene's patches span "
            f"{int(boxes[:, 0].max() + boxes[:, 2].max())} x "
            f"{int(boxes[:, 1].max() + boxes[:, 3].max())} px) or fewer splits."
        )
    counts = _split_counts(len(blocks), target)
    shuffled = np.random.default_rng(seed).permutation(len(blocks))
    split_of_block = np.empty(len(blocks), dtype=np.int64)
    split_of_block[shuffled] = np.repeat(np.arange(len(names)), counts)
    split_index = split_of_block[block_of_window]

    # Leakage guard: keep splits in priority order, dropping windows that conflict with any
    # window kept before them.
    priority = sorted(range(len(names)), key=lambda s: (target[s], -s))
    kept = np.zeros(n, dtype=bool)
    for s in priority:
        members = np.flatnonzero(split_index == s)
        accepted = np.flatnonzero(kept)
        bad, _ = _conflicts(boxes[members], boxes[accepted], buffer)
        ok = np.ones(len(members), dtype=bool)
        ok[bad] = False
        kept[members[ok]] = True

    result: list[str | None] = [
        names[s] if keep else None for s, keep in zip(split_index.tolist(), kept, strict=True)
    ]
    sizes = {name: result.count(name) for name in names}
    logger.info(
        "spatial_block_split: %d blocks of %d px -> %s; patches %s; %d of %d dropped at split "
        "borders (buffer %d px).",
        len(blocks),
        block_size,
        dict(zip(names, counts.tolist(), strict=True)),
        sizes,
        int(n - kept.sum()),
        n,
        buffer,
    )
    emptied = [
        name for name, frac in zip(names, target, strict=True) if frac > 0 and not sizes[name]
    ]
    if emptied:
        raise ValueError(
            f"The leakage guard dropped every patch of split(s) {emptied} (block_size="
            f"{block_size}, buffer={buffer}, patches up to {int(boxes[:, 2:].max())} px). Use a "
            "larger block_size (several times the patch size plus buffer), a smaller buffer, "
            "or another seed."
        )
    return result


def random_split(
    windows: Sequence[Window],
    *,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    names: Sequence[str] = DEFAULT_NAMES,
) -> list[str]:
    """Assign patches to splits at random, ignoring where they are. **Do not use this.**

    This is the common pattern, kept only to show the pitfall: with overlapping patches (or
    patches next to each other in an autocorrelated scene) validation and test patches share
    pixels with training patches, and :func:`leakage_report` shows it. Use
    :func:`spatial_block_split` instead. There is no ``buffer``: a buffer between randomly
    placed patches would drop almost every patch.

    Args:
        windows: The patch grid.
        fractions: Share of patches per split (rounded by largest remainder), in ``names`` order.
        seed: Seed of the shuffle.
        names: Split names.

    Returns:
        A list of split names aligned with ``windows``.
    """
    target = _check_fractions(fractions, names)
    n = len(windows)
    counts = _split_counts(n, target)
    shuffled = np.random.default_rng(seed).permutation(n)
    split_index = np.empty(n, dtype=np.int64)
    split_index[shuffled] = np.repeat(np.arange(len(names)), counts)
    return [names[s] for s in split_index.tolist()]


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


def leakage_report(
    windows: Sequence[Window],
    splits: Sequence[str | None],
    *,
    train: str = "train",
    buffer: int = 0,
) -> dict:
    """Measure how much the splits share: pixel-sharing pairs and pixels seen in training.

    Args:
        windows: The patch grid.
        splits: Split of each window (None: dropped, not counted).
        train: Name of the training split.
        buffer: Also count pairs closer than this many pixels as leaking (0: shared pixels only).

    Returns:
        A dict with

        * ``"leaking_pairs"``: number of pairs of windows in different splits that share a pixel
          (or lie within ``buffer`` pixels);
        * ``"leaking_pairs_by_split"``: the same per pair of splits, keyed ``"train/test"``;
        * ``"seen_in_train"``: for every other split, the fraction of its pixels that some
          training window also covers;
        * ``"patches"``: number of windows per split; ``"dropped"``: windows with None.

    Example:
        >>> grid = [Window(c, 0, 8, 8) for c in range(0, 32, 4)]
        >>> leakage_report(grid, ["train", "test"] * 4)["seen_in_train"]["test"]  # 28 of 32 px
        0.875
    """
    if len(splits) != len(windows):
        raise ValueError(
            f"splits has {len(splits)} entries but there are {len(windows)} windows; pass one "
            "split per window, in the same order."
        )
    boxes = _window_array(windows)
    present = np.array([s is not None for s in splits], dtype=bool)
    labels = np.array([s if s is not None else "" for s in splits], dtype=object)
    index = np.flatnonzero(present)
    i, j = _conflicts(boxes[index], boxes[index], int(buffer))
    i, j = index[i], index[j]
    cross = (i < j) & (labels[i] != labels[j])
    by_split: dict[str, int] = {}
    for a, b in zip(labels[i[cross]], labels[j[cross]], strict=True):
        key = "/".join(sorted((a, b)))
        by_split[key] = by_split.get(key, 0) + 1

    names = list(dict.fromkeys(labels[index].tolist()))
    footprints = {
        name: shapely.union_all(
            shapely.box(
                boxes[m, 1], boxes[m, 0], boxes[m, 1] + boxes[m, 3], boxes[m, 0] + boxes[m, 2]
            )
        )
        for name in names
        for m in [index[labels[index] == name]]
    }
    seen: dict[str, float] = {}
    for name in names:
        if name == train:
            continue
        area = shapely.area(footprints[name])
        shared = (
            shapely.area(shapely.intersection(footprints[name], footprints[train]))
            if train in footprints
            else 0.0
        )
        seen[name] = float(shared / area) if area else 0.0
    return {
        "leaking_pairs": int(cross.sum()),
        "leaking_pairs_by_split": dict(sorted(by_split.items())),
        "seen_in_train": seen,
        "patches": {name: int((labels[index] == name).sum()) for name in names},
        "dropped": int((~present).sum()),
    }


def split_summary(
    splits: Sequence[str | None],
    labels: Sequence[int] | np.ndarray,
    class_names: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Class balance per split: patch counts per class, ignored patches and the positive rate.

    Args:
        splits: Split of each patch (None: dropped by the leakage guard).
        labels: Label of each patch: class codes, or :data:`~helpers.labels.IGNORE_LABEL`.
        class_names: ``{code: name}``; default ``{0: "negative", 1: "positive"}``.

    Returns:
        A DataFrame with one row per split (``train``, ``validation``, ``test`` first, then any
        other in order of appearance) and a last row ``"dropped"`` when some splits are None.
        Columns: one per class name; ``"ignored"`` (IGNORE_LABEL patches, left out of the
        rates); ``"patches"`` (all patches of the row); ``"positive_rate"``: the share of class
        1 among the labelled (not ignored) patches, NaN when there are none.

    Raises:
        ValueError: Lengths differ, or a label has no class name.

    Example:
        >>> summary = split_summary(["train", "train", "test", None], [1, 0, -1, 1])
        >>> summary  # doctest: +NORMALIZE_WHITESPACE
                 negative  positive  ignored  patches  positive_rate
        split
        train           1         1        0        2            0.5
        test            0         0        1        1            NaN
        dropped         0         1        0        1            1.0
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) != len(splits):
        raise ValueError(
            f"labels has {len(labels)} entries but splits has {len(splits)}; both must be "
            "aligned with the same window list."
        )
    class_names = dict(class_names) if class_names is not None else {0: "negative", 1: "positive"}
    unknown = sorted(set(labels.tolist()) - set(class_names) - {IGNORE_LABEL})
    if unknown:
        raise ValueError(
            f"labels hold codes without a class name: {unknown}. Add them to class_names "
            f"(known: {class_names})."
        )
    keys = np.array(["\0dropped" if s is None else s for s in splits], dtype=object)
    present = list(dict.fromkeys(s for s in splits if s is not None))
    order = [n for n in DEFAULT_NAMES if n in present] + [
        n for n in present if n not in DEFAULT_NAMES
    ]
    rows = [(name, name) for name in order]
    if any(s is None for s in splits):
        rows.append(("dropped", "\0dropped"))
    codes = sorted(class_names)
    records = []
    for _, key in rows:
        row_labels = labels[keys == key]
        labelled = row_labels[row_labels != IGNORE_LABEL]
        record = {class_names[c]: int((row_labels == c).sum()) for c in codes}
        record["ignored"] = int((row_labels == IGNORE_LABEL).sum())
        record["patches"] = len(row_labels)
        record["positive_rate"] = float((labelled == 1).mean()) if len(labelled) else float("nan")
        records.append(record)
    columns = [class_names[c] for c in codes] + ["ignored", "patches", "positive_rate"]
    return pd.DataFrame.from_records(
        records, index=pd.Index([name for name, _ in rows], name="split"), columns=columns
    )
