"""Cut a large georeferenced scene into patches for training, fast, resumably and without leaks.

Three layers, each usable on its own:

1. **The grid** -- :func:`tile_windows` returns a list of :class:`rasterio.windows.Window` over a
   raster of shape ``(height, width)``. Edge modes: ``"shift"`` (default; the last row/column of
   windows moves inward so every patch is full size and inside the raster), ``"pad"`` (regular
   stride, the last windows stick out past the right/bottom edge and are filled with nodata when
   read) and ``"drop"`` (only complete windows on the regular stride). In ``"shift"`` and ``"pad"``
   every pixel lies in at least one window. :func:`patch_id` names a window
   (``"r000256_c000512"``), :func:`window_bounds` and :func:`window_transform` place it on the map.
2. **Streaming reads** -- :func:`iter_patches` reads the source once, in horizontal strips aligned
   to the file's block rows, and slices the patches out of memory: every compressed block is
   decoded once even when patches overlap, and memory stays at about ``(size + block)`` rows of
   the scene, whatever its height. :func:`read_patch` reads one patch (edge-padded).
3. **Writing a dataset** -- :func:`extract_patches` writes per-patch GeoTIFFs, 8-bit PNG/JPEG
   (explicit, recorded scaling) or ``.npz`` shards (the fast path for training), in a flat layout
   or in the ``split/class_name/`` folders that ``keras.utils.image_dataset_from_directory``
   reads, plus an index (``index.csv``, ``index.geojson``, ``index.json``). It is atomic and
   resumable: run it again after a crash and it writes only what is missing, giving the same
   bytes as an uninterrupted run.

Example:
    >>> from helpers import tiling
    >>> windows = tiling.tile_windows(2048, 2048, 256, stride=128)  # doctest: +SKIP
    >>> index = tiling.extract_patches(
    ...     "data/generated/sample/scene_2021.tif", "outputs/patches", windows, writer="npz"
    ... )  # doctest: +SKIP
    >>> index.table.status.value_counts()  # doctest: +SKIP

Conventions:

* Arrays are channels-first ``(bands, rows, cols)`` as rasterio reads them; :func:`read_shard`
  returns a shard's ``images`` as ``(N, bands, rows, cols)`` in the source dtype. Keras code
  converts once with :func:`helpers.raster.to_channels_last`.
* Patches come out in row-major order (by ``row_off``, then ``col_off``) whatever the order of
  the windows passed in; the index lists them in that order.
* A pixel is nodata when every band equals the raster's nodata value; pixels outside the raster
  (pad mode) always count as nodata.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import struct
import threading
import warnings
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.windows import Window
from tqdm.auto import tqdm

from helpers import __version__, raster
from helpers.files import (
    atomic_write_text,
    is_stale_partial,
    lock_file,
    partial_path,
    replace_durably,
)
from helpers.labels import IGNORE_LABEL
from helpers.splits import DEFAULT_NAMES as SPLITS

__all__ = [
    "EDGE_MODES",
    "LAYOUTS",
    "WRITERS",
    "PatchIndex",
    "extract_patches",
    "iter_patches",
    "overlap_to_stride",
    "patch_id",
    "patch_profile",
    "read_patch",
    "read_shard",
    "scale_to_uint8",
    "tile_windows",
    "window_bounds",
    "window_table",
    "window_transform",
]

log = logging.getLogger(__name__)

EDGE_MODES = ("shift", "pad", "drop")
WRITERS = ("geotiff", "png", "jpeg", "npz")
LAYOUTS = ("flat", "class_folders")
#: Label of a patch to leave out of the class folders (same value as helpers.labels.IGNORE_LABEL).
DEFAULT_CLASS_NAMES = {0: "negative", 1: "positive"}

#: Default size of an ``.npz`` shard in memory and on disk (``shard_size=None``).
SHARD_BYTES = 64 * 2**20

_EXTENSIONS = {"geotiff": "tif", "png": "png", "jpeg": "jpg", "npz": "npz"}
_PARTIAL = ".partial"  # suffix of files being written; never a final name
_WRITE_CHUNK = 2**20  # bytes per write of a large shard array (CRC-32 and copy in cache)
_INDEX_COLUMNS = [
    "id", "row_off", "col_off", "height", "width", "minx", "miny", "maxx", "maxy",
    "split", "label", "file", "status",
]  # fmt: skip

SizeLike = int | tuple[int, int]
PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


def _pair(value: Any, name: str) -> tuple[int, int]:
    """``int`` or ``(rows, cols)`` -> ``(rows, cols)`` of ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a (rows, cols) pair of ints, got {value!r}.")
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    try:
        rows, cols = value
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be an int or a (rows, cols) pair of ints, got {value!r}."
        ) from None
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (rows, cols)):
        raise TypeError(f"{name} must be an int or a (rows, cols) pair of ints, got {value!r}.")
    return int(rows), int(cols)


def overlap_to_stride(size: SizeLike, overlap: SizeLike) -> SizeLike:
    """Stride that makes neighbouring patches share ``overlap`` pixels.

    Args:
        size: Patch size in pixels, an int or ``(rows, cols)``.
        overlap: Pixels shared by neighbours, an int or ``(rows, cols)``; ``0 <= overlap < size``.

    Returns:
        ``size - overlap``: an int when both arguments are ints, else a ``(rows, cols)`` tuple.

    Raises:
        ValueError: ``overlap`` is negative or not smaller than ``size``.

    Example:
        >>> overlap_to_stride(256, 64)
        192
    """
    sizes, overlaps = _pair(size, "size"), _pair(overlap, "overlap")
    for s, o in zip(sizes, overlaps, strict=True):
        if o < 0 or o >= s:
            raise ValueError(
                f"overlap={overlap!r} must satisfy 0 <= overlap < size={size!r}: patches that "
                "overlap by their whole size never advance. Use a smaller overlap (half the "
                "size is the usual maximum)."
            )
    stride = (sizes[0] - overlaps[0], sizes[1] - overlaps[1])
    both_int = isinstance(size, int | np.integer) and isinstance(overlap, int | np.integer)
    return stride[0] if both_int else stride


def _axis_starts(n: int, size: int, stride: int, edge: str) -> list[int]:
    if edge == "pad":
        starts = [0]
        while starts[-1] + size < n:
            starts.append(starts[-1] + stride)
        return starts
    starts = list(range(0, n - size + 1, stride))
    if edge == "shift" and starts[-1] + size < n:
        starts.append(n - size)  # the shifted last window; never a duplicate (see condition)
    return starts


def tile_windows(
    height: int,
    width: int,
    size: SizeLike,
    stride: SizeLike | None = None,
    *,
    edge: str = "shift",
    allow_gaps: bool = False,
) -> list[Window]:
    """Lay a regular grid of patch windows over a raster.

    Args:
        height: Raster rows (``dataset.height``).
        width: Raster columns (``dataset.width``).
        size: Patch size in pixels, an int or ``(rows, cols)``.
        stride: Step between patch origins, an int or ``(rows, cols)``; defaults to ``size`` (no
            overlap). Use :func:`overlap_to_stride` to ask for an overlap instead.
        edge: ``"shift"`` (default): the last row/column of windows is moved inward so every
            window is full size and inside the raster. ``"pad"``: windows keep the regular
            stride and the last ones extend past the right/bottom edge (reads fill them with
            nodata). ``"drop"``: only complete windows on the regular stride (the remainder
            strip at the right/bottom is not covered).
        allow_gaps: A stride larger than the size leaves pixels between patches uncovered, so it
            raises unless this is True.

    Returns:
        Windows with integer offsets and the full patch size, in row-major order (all windows of
        the first row of patches, then the next row ...), without duplicates. In ``"shift"`` and
        ``"pad"`` (and ``stride <= size``) every pixel is covered by at least one window.

    Raises:
        ValueError: non-positive raster shape, size or stride; ``stride > size`` without
            ``allow_gaps``; ``size`` larger than the raster in ``"shift"``/``"drop"``; unknown
            ``edge``.

    Example:
        >>> [(w.row_off, w.col_off) for w in tile_windows(5, 5, 3)]
        [(0, 0), (0, 2), (2, 0), (2, 2)]
        >>> len(tile_windows(5, 5, 3, edge="drop")), len(tile_windows(5, 5, 3, edge="pad"))
        (1, 4)
    """
    if edge not in EDGE_MODES:
        raise ValueError(f"edge={edge!r} is not an edge mode; use one of {', '.join(EDGE_MODES)}.")
    shape = _pair((height, width), "(height, width)")
    if min(shape) <= 0:
        raise ValueError(
            f"height and width must be positive numbers of pixels, got {height} x {width}."
        )
    sizes = _pair(size, "size")
    if min(sizes) <= 0:
        raise ValueError(f"size must be positive, got size={size!r}.")
    strides = sizes if stride is None else _pair(stride, "stride")
    if min(strides) <= 0:
        raise ValueError(
            f"stride must be positive, got stride={stride!r}; pass stride=size for patches side "
            "by side, or a smaller stride for overlapping patches."
        )
    if not allow_gaps and any(st > s for st, s in zip(strides, sizes, strict=True)):
        raise ValueError(
            f"stride={stride!r} is larger than size={size!r}, which leaves pixels between "
            "patches uncovered. Use stride <= size, or pass allow_gaps=True if that is intended."
        )
    if edge != "pad" and (sizes[0] > shape[0] or sizes[1] > shape[1]):
        raise ValueError(
            f"size={size!r} is larger than the raster ({height} rows x {width} cols), so no "
            f'complete patch fits with edge="{edge}". Use edge="pad" (fills with nodata) or a '
            "size that fits."
        )
    rows = _axis_starts(shape[0], sizes[0], strides[0], edge)
    cols = _axis_starts(shape[1], sizes[1], strides[1], edge)
    return [Window(c, r, sizes[1], sizes[0]) for r in rows for c in cols]


def _int_window(window: Window, name: str = "window") -> Window:
    c, r, w, h = values = (window.col_off, window.row_off, window.width, window.height)
    if type(c) is type(r) is type(w) is type(h) is int and w > 0 and h > 0:
        return window  # as tile_windows builds them (the fast path: called per patch id)
    if not all(float(v).is_integer() for v in values) or window.width <= 0 or window.height <= 0:
        raise ValueError(
            f"{name} {window} must have integer offsets and positive integer sizes; round it "
            "with window.round_offsets().round_lengths() or build it with tile_windows."
        )
    return Window(*(int(v) for v in values))


def patch_id(window: Window) -> str:
    """Stable, sortable id of a patch: ``"r{row_off:06d}_c{col_off:06d}"``.

    Example:
        >>> patch_id(Window(col_off=512, row_off=256, width=256, height=256))
        'r000256_c000512'
    """
    window = _int_window(window)
    return f"r{window.row_off:06d}_c{window.col_off:06d}"


def window_transform(window: Window, transform: Affine) -> Affine:
    """Affine transform of a patch: the source transform moved to the window's origin.

    A thin name for :func:`rasterio.windows.transform`, so patch code reads as one vocabulary.
    """
    return rasterio.windows.transform(window, transform)


def _corners(window: Window, transform: Affine) -> list[tuple[float, float]]:
    """Map coordinates of a window's corners: top-left, top-right, bottom-right, bottom-left
    (written out: the Affine multiplication operators differ between affine 2 and 3)."""
    t = transform
    cols = (window.col_off, window.col_off + window.width)
    rows = (window.row_off, window.row_off + window.height)
    pixels = [(cols[0], rows[0]), (cols[1], rows[0]), (cols[1], rows[1]), (cols[0], rows[1])]
    return [(t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f) for c, r in pixels]


def window_bounds(window: Window, transform: Affine) -> tuple[float, float, float, float]:
    """``(minx, miny, maxx, maxy)`` of a window in the raster's CRS.

    Pad-mode windows that stick out of the raster get the bounds of the whole window.
    """
    corners = _corners(window, transform)
    xs, ys = zip(*corners, strict=True)
    return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))


def patch_profile(
    src_profile: Mapping[str, Any], window: Window, transform: Affine | None = None
) -> dict[str, Any]:
    """Profile for writing a patch as its own GeoTIFF.

    Args:
        src_profile: The source's ``dataset.profile``.
        window: The patch window in the source's pixel grid.
        transform: The source transform; defaults to ``src_profile["transform"]``.

    Returns:
        A copy of the profile with the patch's width, height and transform, driver ``GTiff``,
        and the source's block layout removed (a patch is written in GDAL's default strips).
        CRS, dtype, nodata, count and compression are kept.
    """
    window = _int_window(window)
    profile = dict(src_profile)
    for key in ("blockxsize", "blockysize", "tiled"):
        profile.pop(key, None)
    source_transform = transform if transform is not None else profile["transform"]
    profile.update(
        driver="GTiff",
        width=window.width,
        height=window.height,
        transform=window_transform(window, source_transform),
    )
    return profile


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


#: GDAL block cache while streaming. Each block is decoded once and copied out at once, so a
#: bigger cache only holds blocks nobody reads again (GDAL's default is 5 % of RAM, which would
#: end up holding the whole scene), and every new cache block is fresh memory to fault in. GDAL
#: still decodes a strip larger than this in parallel (``GDAL_NUM_THREADS``), block by block.
_STREAM_CACHE_BYTES = 8 * 2**20


def _env(num_threads: int | str) -> rasterio.Env:
    return rasterio.Env(GDAL_NUM_THREADS=str(num_threads), GDAL_CACHEMAX=_STREAM_CACHE_BYTES)


def _fill_value(dataset: Any, fill: float | None) -> float:
    if fill is not None:
        return fill
    return dataset.nodata if dataset.nodata is not None else 0


def _read_strip(dataset: Any, indexes: list[int], window: Window, out: np.ndarray) -> None:
    """One windowed read of whole block rows into ``out`` ``(bands, rows, cols)``, any strides
    (GDAL copies pixel-interleaved or band by band as asked); a seam tests use to count reads."""
    dataset.read(indexes, window=window, out=out)


class _StripBuffers:
    """Strip buffers ``(bands, rows, cols)`` for :func:`_iter_sorted`.

    With ``channels_last`` each is a view of ``(rows, cols, bands)`` memory, so that
    ``buffer.transpose(1, 2, 0)`` slices are patches whose rows are contiguous. With ``reuse``
    two buffers take turns (the next strip is built in the one before the current), so a long
    scene allocates no new memory per strip: fresh memory costs a page fault (kernel time) per
    4 KiB on first touch, a large share of reading when the patches are copied out at once.
    """

    def __init__(self, bands: int, cols: int, dtype: Any, channels_last: bool,
                 reuse: bool) -> None:  # fmt: skip
        self.bands, self.cols, self.dtype = bands, cols, dtype
        self.channels_last, self.reuse = channels_last, reuse
        self._turns: list[np.ndarray] = []  # with reuse: the previous and the current memory

    def new(self, rows: int) -> np.ndarray:
        """A writable buffer of ``rows`` rows, not the one :meth:`new` returned last."""
        axis = 0 if self.channels_last else 1
        memory = None
        if self.reuse and len(self._turns) == 2:
            spare = self._turns.pop(0)
            memory = spare if spare.shape[axis] >= rows else None
        if memory is None:
            shape = (rows, self.cols, self.bands) if self.channels_last else (
                self.bands, rows, self.cols)  # fmt: skip
            memory = np.empty(shape, dtype=self.dtype)
        if self.reuse:
            self._turns.append(memory)
        if self.channels_last:
            return memory[:rows].transpose(2, 0, 1)
        return memory[:, :rows]


def _place(window: Window, region: np.ndarray, r0: int, c0: int, fill: float) -> np.ndarray:
    """Return ``region`` (the part of ``window`` inside the raster, starting at raster row/col
    ``r0``/``c0``) as a full-size patch, filling the rest with ``fill``."""
    out = np.full((region.shape[0], window.height, window.width), fill, dtype=region.dtype)
    rr, cc = r0 - window.row_off, c0 - window.col_off
    out[:, rr : rr + region.shape[1], cc : cc + region.shape[2]] = region
    return out


def _clip(window: Window, height: int, width: int) -> tuple[int, int, int, int] | None:
    r0, c0 = max(window.row_off, 0), max(window.col_off, 0)
    r1 = min(window.row_off + window.height, height)
    c1 = min(window.col_off + window.width, width)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def read_patch(
    path: PathLike,
    window: Window,
    *,
    bands: raster.BandSelection = None,
    fill: float | None = None,
    num_threads: int | str = "ALL_CPUS",
) -> np.ndarray:
    """Read one patch, filling the part outside the raster (pad-mode windows).

    For many patches use :func:`iter_patches`, which decodes each block once.

    Args:
        path: The source raster.
        window: Patch window (may extend past the raster's edges).
        bands: Bands by 1-based index or name, see :func:`helpers.raster.resolve_bands`.
        fill: Value outside the raster; defaults to the raster's nodata (0 if it has none).
        num_threads: ``GDAL_NUM_THREADS`` for decoding.

    Returns:
        ``(bands, window.height, window.width)`` in the source dtype.

    Raises:
        FileNotFoundError, RasterError: see :func:`helpers.raster.open_raster`.
        ValueError: the window does not overlap the raster.
    """
    window = _int_window(window)
    with _env(num_threads), raster.open_raster(path) as ds:
        indexes = raster.resolve_bands(bands, raster._band_names(ds), path=path)
        inside = _clip(window, ds.height, ds.width)
        if inside is None:
            raise ValueError(
                f"window {window} does not overlap {path} ({ds.height} x {ds.width} px); build "
                "windows with tile_windows(dataset.height, dataset.width, ...)."
            )
        r0, r1, c0, c1 = inside
        region = ds.read(indexes, window=Window.from_slices((r0, r1), (c0, c1)))
    if region.shape[1:] == (window.height, window.width):
        return region
    return _place(window, region, r0, c0, _fill_value(ds, fill))


def _iter_sorted(
    dataset: Any,
    indexes: list[int],
    windows: Sequence[Window],
    fill: float,
    num_threads: int | str,
    channels_last: bool = False,
    reuse_strips: bool = False,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Core of :func:`iter_patches` over an open dataset; ``windows`` sorted row-major."""
    height, width = dataset.height, dataset.width
    block_rows = dataset.block_shapes[0][0]
    dtype = np.dtype(dataset.dtypes[0])
    # Patches are band-first slices of the buffer, moved channels-last as they are yielded.
    layout = (lambda a: a.transpose(1, 2, 0)) if channels_last else (lambda a: a)
    spans = [s for s in (_clip(w, height, width) for w in windows) if s is not None]
    if not spans:
        for window in windows:
            yield window, layout(np.full((len(indexes), window.height, window.width), fill,
                                         dtype=dtype))  # fmt: skip
        return
    # Columns: only the span the windows need. Rows: a buffer [buf_start, buf_end) that slides
    # down; new rows are always read from buf_end to a block-row boundary, so reads never
    # overlap and every compressed block is decoded exactly once.
    col0, col1 = min(s[2] for s in spans), max(s[3] for s in spans)
    strips = _StripBuffers(len(indexes), col1 - col0, dtype, channels_last, reuse_strips)
    buffer = np.empty((len(indexes), 0, col1 - col0), dtype=dtype)
    buf_start = buf_end = 0
    for _, group in itertools.groupby(windows, key=lambda w: w.row_off):
        group = list(group)
        clipped = [_clip(w, height, width) for w in group]
        inside = [s for s in clipped if s is not None]
        if inside:
            r0 = min(s[0] for s in inside)
            r1 = max(s[1] for s in inside)
            if r0 >= buf_end:  # no overlap with what is held: start at r0's block row
                buf_start = buf_end = r0 // block_rows * block_rows
                buffer = buffer[:, :0]
            if r1 > buf_end:
                stop = min(height, -(-r1 // block_rows) * block_rows)
                # Drop the rows above r0 (windows come sorted, so no later one needs them).
                skip = min(max(r0 - buf_start, 0), buffer.shape[1])
                keep = buffer.shape[1] - skip
                new = strips.new(keep + stop - buf_end)
                new[:, :keep] = buffer[:, skip:]
                strip = Window.from_slices((buf_end, stop), (col0, col1))
                with _env(num_threads):  # the same GDAL threading for every read
                    _read_strip(dataset, indexes, strip, new[:, keep:])
                buffer = new
                buf_start, buf_end = buf_end - keep, stop
                buffer.flags.writeable = False  # patches are views: protect shared pixels
        for window, span in zip(group, clipped, strict=True):
            if span is None:
                yield window, layout(np.full((len(indexes), window.height, window.width), fill,
                                             dtype=dtype))  # fmt: skip
                continue
            r0, r1, c0, c1 = span
            region = buffer[:, r0 - buf_start : r1 - buf_start, c0 - col0 : c1 - col0]
            if region.shape[1:] == (window.height, window.width):
                yield window, layout(region)
            else:
                yield window, layout(_place(window, region, r0, c0, fill))


def _sorted_windows(windows: Iterable[Window]) -> list[Window]:
    return sorted((_int_window(w) for w in windows), key=lambda w: (w.row_off, w.col_off))


def iter_patches(
    path: PathLike,
    windows: Iterable[Window],
    *,
    bands: raster.BandSelection = None,
    fill: float | None = None,
    num_threads: int | str = "ALL_CPUS",
    channels_last: bool = False,
    reuse_strips: bool = False,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Stream patches out of a raster, reading each source block once.

    The source is read in horizontal strips aligned to the file's block rows, and each strip is
    read once: rows shared by overlapping rows of patches (``stride < size``) stay in memory
    until no later patch needs them. Memory is about ``(size + block rows) x width x bands``
    values, independent of the scene's height.

    Args:
        path: The source raster (ideally tiled; a striped file works too).
        windows: Patch windows in any order; they are yielded sorted row-major (by ``row_off``,
            then ``col_off``), duplicates included.
        bands: Bands by 1-based index or name (None: all).
        fill: Value for pixels outside the raster (pad-mode windows); defaults to the raster's
            nodata, or 0 when it has none.
        num_threads: ``GDAL_NUM_THREADS`` used for every read (``"ALL_CPUS"`` or an int).
        channels_last: Yield ``(rows, cols, bands)`` patches, the layout Keras models take. The
            strip buffer is then kept pixel-interleaved, so a patch's rows are contiguous and
            copying patches into a batch is a plain copy, not a transpose.
        reuse_strips: Read into two strip buffers that take turns instead of a new one per
            strip: no fresh memory to fault in per strip, but a yielded patch is then valid
            only until the next one is requested (copy it at once, as into a batch).

    Yields:
        ``(window, array)`` with ``array`` of shape ``(bands, window.height, window.width)``
        (``channels_last``: ``(window.height, window.width, bands)``) in the source dtype.
        Patches fully inside the raster are read-only views into the strip buffer:
        ``array.copy()`` to modify one.

    Raises:
        FileNotFoundError, RasterError: see :func:`helpers.raster.open_raster`.

    Example:
        >>> for window, patch in iter_patches("scene.tif", tile_windows(1024, 1024, 256)):
        ...     pass  # doctest: +SKIP
    """
    ordered = _sorted_windows(windows)
    with _env(num_threads):
        dataset = raster.open_raster(path)
    with dataset:
        indexes = raster.resolve_bands(bands, raster._band_names(dataset), path=path)
        fill_value = _fill_value(dataset, fill)
        yield from _iter_sorted(dataset, indexes, ordered, fill_value, num_threads,
                                channels_last, reuse_strips)  # fmt: skip


# --------------------------------------------------------------------------------------------
# 8-bit scaling for PNG / JPEG
# --------------------------------------------------------------------------------------------


def scale_to_uint8(
    array: np.ndarray,
    limits: Sequence[Sequence[float]] | Mapping[Any, Sequence[float]],
    *,
    nodata: float | None = None,
) -> np.ndarray:
    """Map each band linearly from ``(low, high)`` to 0-255, clipping outside the range.

    This is the mapping :func:`extract_patches` uses for PNG/JPEG patches; apply it with the
    limits recorded in ``index.json`` (``metadata["scaling"]``) to images at prediction time.

    Args:
        array: ``(bands, rows, cols)``.
        limits: One ``(low, high)`` per band, in band order (a list, or a dict such as the
            recorded ``{"red": [low, high], ...}``).
        nodata: Pixels where every band equals it become 0 in all bands (as do pixels with a
            NaN or infinite band, with or without ``nodata``).

    Returns:
        uint8 ``(bands, rows, cols)``: ``round((value - low) * 255 / (high - low))`` clipped.

    Raises:
        ValueError: the number of limits differs from the number of bands, or ``high <= low``.
    """
    pairs = list(limits.values()) if isinstance(limits, Mapping) else list(limits)
    if len(pairs) != array.shape[0]:
        raise ValueError(
            f"limits has {len(pairs)} (low, high) pairs but the array has {array.shape[0]} "
            "bands; pass one pair per band."
        )
    lows = np.array([float(p[0]) for p in pairs], dtype=np.float32)[:, None, None]
    highs = np.array([float(p[1]) for p in pairs], dtype=np.float32)[:, None, None]
    if np.any(highs <= lows):
        raise ValueError(f"every (low, high) in limits needs high > low, got {pairs}.")
    scaled = (array.astype(np.float32) - lows) * (np.float32(255.0) / (highs - lows))
    nonfinite = _nonfinite_pixels(array)
    if nonfinite is not None and nonfinite.any():
        scaled[:, nonfinite] = 0  # NaN has no uint8 value
    out = np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
    if nodata is not None:
        out[:, _nodata_pixels(array, nodata)] = 0
    return out


def _nodata_pixels(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(rows, cols)`` True where every band equals ``nodata`` (nan-aware)."""
    if nodata is None:
        return np.zeros(array.shape[1:], dtype=bool)
    nan = isinstance(nodata, float) and math.isnan(nodata)
    # Band by band, stopping when no candidate pixel is left: on imagery with little nodata
    # this compares one band instead of all, without a (bands, rows, cols) temporary.
    mask = np.isnan(array[0]) if nan else array[0] == nodata
    for band in array[1:]:
        if not mask.any():
            break
        mask &= np.isnan(band) if nan else band == nodata
    return mask


def _resolve_scaling(scaling: Any, path: PathLike, indexes: list[int], names: list[str]) -> dict:
    if scaling is None:
        return raster.scene_percentiles(path, indexes)
    if isinstance(scaling, Mapping):
        lookup = {}
        for key, pair in scaling.items():
            (index,) = raster.resolve_bands([key], _all_names(path), path=path, argument="scaling")
            lookup[index] = pair
        missing = [n for i, n in zip(indexes, names, strict=True) if i not in lookup]
        if missing:
            raise ValueError(
                f"scaling has no (low, high) for band(s) {missing}; give one per written band "
                f"({names}) or a single (low, high) for all."
            )
        result = {n: [float(v) for v in lookup[i]] for i, n in zip(indexes, names, strict=True)}
    else:
        try:
            low, high = (float(v) for v in scaling)
        except (TypeError, ValueError):
            raise TypeError(
                f"scaling must be None, (low, high) or {{band: (low, high)}}, got {scaling!r}."
            ) from None
        result = {n: [low, high] for n in names}
    for name, (low, high) in result.items():
        if not high > low:
            raise ValueError(f"scaling for band {name!r} needs high > low, got ({low}, {high}).")
    return result


def _all_names(path: PathLike) -> tuple[str, ...]:
    with raster.open_raster(path) as ds:
        return raster._band_names(ds)


# --------------------------------------------------------------------------------------------
# Writers (module-level functions so a process pool can pickle them)
# --------------------------------------------------------------------------------------------


def _partial(final: Path) -> Path:
    """A unique temporary name next to ``final`` (pid and random part): runs writing into one
    folder at once never touch each other's temporary files."""
    return partial_path(final)


def _patch_geotiff_profile(profile: Mapping[str, Any], count: int, compress: str | None) -> dict:
    """The source profile made fit for patch GeoTIFFs of ``count`` bands and ``compress``.

    The source's compression, predictor, interleave and photometric are dropped: a JPEG-YCbCr
    orthophoto's ``photometric="ycbcr"`` is only valid with JPEG compression of three uint8
    bands, so it is kept only then (``compress="jpeg"``); otherwise GDAL picks the photometric
    interpretation that fits the bands written.
    """
    out = {k: v for k, v in profile.items() if k not in _SOURCE_ENCODING_KEYS}
    out["count"] = count
    if compress is not None:
        out["compress"] = compress
        if str(compress).lower() == "jpeg" and count == 3 and np.dtype(out["dtype"]) == np.uint8:
            out["photometric"] = "ycbcr"  # what JPEG compresses best; readers convert back to RGB
    return out


#: Profile keys that describe how the source is encoded, not what its pixels mean.
_SOURCE_ENCODING_KEYS = ("compress", "predictor", "interleave", "photometric", "jpeg_quality")


def _write_geotiff(
    final: Path,
    array: np.ndarray,
    profile: dict,
    descriptions: list[str],
    template: _GeoTiffTemplate | None = None,
) -> None:
    tmp = _partial(final)
    if template is not None:
        tmp.write_bytes(template.render(array, profile["transform"]))
    else:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
            dst.descriptions = tuple(descriptions)
    os.replace(tmp, final)


class _GeoTiffTemplate:
    """The bytes of an uncompressed patch GeoTIFF, to stamp out patches of one run quickly.

    Creating and closing a GeoTIFF through GDAL costs ~1.5-2 ms, more than reading the patch,
    and it is the same work for every patch of a run: the files differ only in their pixels
    and their origin. So GDAL writes one file with marker pixels and a marker origin; the offsets
    of the pixel block and of the origin (the X, Y doubles, which GDAL stores more than once)
    are found in its bytes, and each patch is that file with those ranges replaced.
    :meth:`build` checks the result by reading a stamped file back with rasterio and returns
    None (GDAL then writes every patch) whenever the layout is not the simple one this relies
    on: compression, rotated transforms, non-contiguous strips.
    """

    _MARKER_ORIGIN = (1234567.0625, 7654321.03125)  # exactly representable doubles

    def __init__(
        self, blob: bytes, origin_at: list[int], data_at: int, interleave: str, shape, dtype
    ):
        self.blob, self.origin_at, self.data_at = blob, origin_at, data_at
        self.interleave, self.shape, self.dtype = interleave, tuple(shape), np.dtype(dtype)

    def _pixels(self, array: np.ndarray) -> bytes:
        data = np.ascontiguousarray(array, dtype=self.dtype.newbyteorder("<"))
        return (data.transpose(1, 2, 0) if self.interleave == "pixel" else data).tobytes()

    def render(self, array: np.ndarray, transform: Affine) -> bytes:
        if tuple(array.shape) != self.shape:
            raise ValueError(f"patch of shape {array.shape} for a template of {self.shape}")
        pixels = self._pixels(array)
        out = bytearray(self.blob)
        origin = struct.pack("<dd", transform.c, transform.f)
        for at in self.origin_at:
            out[at : at + 16] = origin
        out[self.data_at : self.data_at + len(pixels)] = pixels
        return bytes(out)

    @staticmethod
    def _gdal_bytes(profile: dict, array: np.ndarray, descriptions: list[str]) -> bytes:
        from rasterio.io import MemoryFile

        with MemoryFile() as memfile:
            with memfile.open(**profile) as dst:
                dst.write(array)
                dst.descriptions = tuple(descriptions)
            return bytes(memfile.read())

    @classmethod
    def build(cls, profile: dict, descriptions: list[str], shape, dtype) -> _GeoTiffTemplate | None:
        t = profile["transform"]
        if profile.get("compress") or t.b or t.d:
            return None
        x0, y0 = cls._MARKER_ORIGIN
        marker = dict(profile, transform=Affine(t.a, 0, x0, 0, t.e, y0))
        rng = np.random.default_rng(0)
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        high = min(int(info.max), 2**31 - 1) if info else 1
        data = (rng.integers(1, high, size=shape) if info else rng.random(shape)).astype(dtype)
        blob = cls._gdal_bytes(marker, data, descriptions)
        origin = struct.pack("<dd", x0, y0)
        origin_at, at = [], blob.find(origin)
        while at >= 0:
            origin_at.append(at)
            at = blob.find(origin, at + 1)
        if blob[:2] != b"II" or not origin_at:
            return None
        for interleave in ("pixel", "band"):
            template = cls(blob, origin_at, -1, interleave, shape, dtype)
            pixels = template._pixels(data)
            if blob.count(pixels) == 1:
                template.data_at = blob.find(pixels)
                break
        else:
            return None
        # Check once: a stamped patch must read back exactly as GDAL would have written it.
        from rasterio.io import MemoryFile

        check = data[:, ::-1].copy()
        origin_check = Affine(t.a, 0, t.c + 3 * t.a, 0, t.e, t.f + 5 * t.e)
        with MemoryFile(template.render(check, origin_check)) as memfile, memfile.open() as src:
            ok = (
                src.transform == origin_check
                and np.array_equal(src.read(), check)
                and src.crs == profile.get("crs")
                and src.nodata == profile.get("nodata")
                and tuple(src.descriptions) == tuple(descriptions)
            )
        return template if ok else None


class _TemplateCache:
    """One :class:`_GeoTiffTemplate` per patch shape and dtype within a run (None: not possible)."""

    def __init__(self) -> None:
        self._templates: dict[tuple, _GeoTiffTemplate | None] = {}
        self._lock = threading.Lock()

    def get(self, profile: dict, descriptions: list[str], array: np.ndarray):
        key = (array.shape, array.dtype.str)
        with self._lock:
            if key not in self._templates:
                self._templates[key] = _GeoTiffTemplate.build(
                    profile, descriptions, array.shape, array.dtype
                )
            return self._templates[key]


def _write_image(final: Path, image: np.ndarray, fmt: str, quality: int) -> None:
    from PIL import Image

    tmp = _partial(final)
    picture = Image.fromarray(image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1))
    if fmt == "png":
        # Lossless; level 1 compresses about as well as 6 on imagery, several times faster.
        picture.save(tmp, format="PNG", compress_level=1)
    else:
        picture.save(tmp, format="JPEG", quality=quality)
    os.replace(tmp, final)


def _write_npz(final: Path, arrays: dict[str, Any]) -> None:
    """Write an uncompressed ``.npz`` that ``np.load`` reads like one from ``np.savez``.

    Written by hand because ``np.savez`` stamps the current time into the zip (two identical
    runs would not give identical bytes) and needs one stacked array; here a value may also be
    a list of same-shape arrays, written as their stack ``(N, ...)`` without building it: each
    is copied into one contiguous scratch array and written from there, so zipfile's CRC-32 and
    the write read it from the CPU cache (``np.lib.format.write_array`` would copy to ``bytes``).
    """
    tmp = _partial(final)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fid:
                if isinstance(value, list):
                    header = {
                        "descr": np.lib.format.dtype_to_descr(value[0].dtype),
                        "fortran_order": False,
                        "shape": (len(value), *value[0].shape),
                    }
                    np.lib.format.write_array_header_1_0(fid, header)
                    scratch = np.empty(value[0].shape, dtype=value[0].dtype)
                    for item in value:
                        np.copyto(scratch, item)
                        fid.write(scratch.data)
                    continue
                array = np.asanyarray(value)
                if array.dtype.hasobject or not array.flags.c_contiguous:
                    np.lib.format.write_array(fid, array, allow_pickle=False)
                    continue
                # A large array (a piece) straight from its memory, a cache-sized slice at a
                # time, with no copy (write_array would copy it to bytes in 16 MiB parts).
                header = np.lib.format.header_data_from_array_1_0(array)
                np.lib.format.write_array_header_1_0(fid, header)
                flat = memoryview(array.reshape(-1).view(np.uint8))
                for start in range(0, len(flat), _WRITE_CHUNK):
                    fid.write(flat[start : start + _WRITE_CHUNK])
    replace_durably(tmp, final)  # a shard is large: the flush costs little next to its bytes


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


@dataclass
class PatchIndex:
    """What :func:`extract_patches` wrote: one row per patch, plus the run's metadata.

    Attributes:
        root: The output folder.
        table: A DataFrame with columns ``id, row_off, col_off, height, width, minx, miny,
            maxx, maxy`` (bounds in the raster's CRS), ``split, label, file`` (relative to
            ``root``) and ``status`` (``"written"``, ``"skipped_nodata"``, ``"skipped_label"``
            or ``"skipped_split"``), in row-major order.
        metadata: The content of ``index.json``: ``config`` (what a resume compares),
            ``source``, ``scaling`` (PNG/JPEG), ``counts`` and ``version``.
    """

    root: Path
    table: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def written(self) -> pd.DataFrame:
        """Rows of the patches that have a file (or a place in an ``.npz`` shard)."""
        return self.table[self.table["status"] == "written"]

    @property
    def skipped(self) -> pd.DataFrame:
        """Rows of the patches left out, with the reason in ``status``."""
        return self.table[self.table["status"] != "written"]

    def files(self) -> list[Path]:
        """Absolute paths of the written files (each shard once for ``npz``)."""
        return [self.root / f for f in dict.fromkeys(self.written["file"])]

    @classmethod
    def load(cls, out_dir: PathLike) -> PatchIndex:
        """Read the index of a finished :func:`extract_patches` run from ``out_dir``.

        Raises:
            FileNotFoundError: ``out_dir`` holds no complete index.
        """
        root = Path(out_dir)
        meta_path, csv_path = root / "index.json", root / "index.csv"
        if not csv_path.exists() or not meta_path.exists():
            raise FileNotFoundError(
                f"{root} holds no complete patch index (index.csv + index.json); run "
                "extract_patches(...) into it first (a crashed run resumes when re-run)."
            )
        table = pd.read_csv(csv_path, dtype={"split": "string", "label": "Int64"})
        return cls(root, table, json.loads(meta_path.read_text(encoding="utf-8")))


def _geojson_crs(crs: Any) -> dict | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def _footprint(window: Window, transform: Affine) -> list[list[float]]:
    ring = _corners(window, transform)[::-1]  # top-left, bottom-left, bottom-right, top-right
    # Shoelace: make the exterior ring counter-clockwise (right-hand rule).
    pairs = zip(ring, ring[1:] + ring[:1], strict=True)
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs)
    if area < 0:
        ring.reverse()
    return [[float(x), float(y)] for x, y in ring + ring[:1]]


def _write_index(root: Path, table: pd.DataFrame, windows: list[Window], transform, crs) -> None:
    csv_tmp = _partial(root / "index.csv")
    table.to_csv(csv_tmp, index=False, lineterminator="\n")
    replace_durably(csv_tmp, root / "index.csv")
    features = []
    for row, window in zip(table.itertuples(index=False), windows, strict=True):
        properties = {
            "id": row.id,
            "row_off": int(row.row_off),
            "col_off": int(row.col_off),
            "split": None if pd.isna(row.split) else str(row.split),
            "label": None if pd.isna(row.label) else int(row.label),
            "file": None if pd.isna(row.file) else str(row.file),
            "status": row.status,
        }
        geometry = {"type": "Polygon", "coordinates": [_footprint(window, transform)]}
        features.append({"type": "Feature", "properties": properties, "geometry": geometry})
    collection: dict[str, Any] = {"type": "FeatureCollection", "name": "patches"}
    crs_member = _geojson_crs(crs)
    if crs_member is not None:
        collection["crs"] = crs_member
    collection["features"] = features
    atomic_write_text(root / "index.geojson", json.dumps(collection) + "\n")


# --------------------------------------------------------------------------------------------
# extract_patches
# --------------------------------------------------------------------------------------------


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _source_identity(path: PathLike) -> dict[str, Any]:
    """Name, size, modification time and a hash of the first MiB of the source raster.

    The hash alone misses an edit after the first MiB; any write to the file changes its
    modification time, so a scene edited in place is a different source and a resume refuses
    to mix its patches with the earlier ones. (Copying the scene without keeping its time
    counts as a change too: the safe side.)
    """
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
        stat = os.fstat(handle.fileno())
    return {
        "name": Path(path).name,
        "size_bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256_first_mib": hashlib.sha256(head).hexdigest(),
    }


def _check_class_folder_names(class_names: Mapping[int, str]) -> None:
    """Each class name must be one plain folder name: never a path out of ``out_dir``."""
    for label, name in class_names.items():
        if (
            not isinstance(name, str)
            or name in ("", ".", "..")
            or any(c in name for c in ("/", "\\", "\0"))
        ):
            raise ValueError(
                f"class_names[{label!r}] = {name!r} is not a plain folder name; with "
                'layout="class_folders" each class name becomes one folder out_dir/<split>/<name>, '
                "so it must be a non-empty string without '/', '\\' or NUL characters and not "
                "'.' or '..'. Rename the class (e.g. 'built_up' instead of 'built/up')."
            )


def _check_inputs(
    windows: list[Window],
    labels: Sequence[int] | None,
    splits: Sequence[str | None] | None,
    writer: str,
    layout: str,
    class_names: Mapping[int, str],
    height: int,
    width: int,
    path: PathLike,
) -> None:
    if writer not in WRITERS:
        raise ValueError(f"writer={writer!r} is not a writer; use one of {', '.join(WRITERS)}.")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not a layout; use one of {', '.join(LAYOUTS)}.")
    if not windows:
        raise ValueError("windows is empty; build a grid with tile_windows(height, width, size).")
    for name, values in (("labels", labels), ("splits", splits)):
        if values is not None and len(values) != len(windows):
            raise ValueError(
                f"{name} has {len(values)} entries but there are {len(windows)} windows; pass "
                f"one {name[:-1]} per window, in the order of the windows."
            )
    if splits is not None:
        bad = sorted({repr(s) for s in splits if s is not None and s not in SPLITS})
        if bad:
            raise ValueError(
                f"splits holds {', '.join(bad)}; each split must be one of {SPLITS} or None."
            )
    if layout == "class_folders":
        if writer == "npz":
            raise ValueError(
                'layout="class_folders" is for image files; npz shards store labels inside. '
                'Use layout="flat" with writer="npz", or writer="png"/"jpeg"/"geotiff".'
            )
        if labels is None or splits is None:
            raise ValueError(
                'layout="class_folders" needs labels and splits (one per window) to choose '
                'each patch\'s split/class_name folder; pass both, or use layout="flat".'
            )
        _check_class_folder_names(class_names)
        unknown = sorted({int(v) for v in labels} - set(class_names) - {IGNORE_LABEL})
        if unknown:
            raise ValueError(
                f"labels {unknown} have no entry in class_names={dict(class_names)}; add a "
                f"folder name for each label (or use IGNORE_LABEL={IGNORE_LABEL} to skip)."
            )
    ids = [patch_id(w) for w in windows]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(
            f"windows holds the same patch origin more than once ({duplicated}); patch ids must "
            "be unique. Remove duplicated windows."
        )
    for position, window in enumerate(windows):
        if _clip(window, height, width) is None:
            raise ValueError(
                f"windows[{position}] {window} lies outside {path} ({height} x {width} px); "
                "build windows with tile_windows(dataset.height, dataset.width, ...)."
            )


def _warn_no_crs(path: PathLike) -> None:
    warnings.warn(
        f"{path} has no coordinate reference system (CRS): writing patches anyway, but the "
        "GeoTIFF patches and index.geojson keep only its pixel transform and cannot be placed "
        "on a map in a CRS. Assign the CRS of the data (e.g. `rio edit-info --crs EPSG:32633 "
        "scene.tif`) to georeference them.",
        UserWarning,
        stacklevel=3,
    )


def _warn_all_nodata(
    path: PathLike, counts: Mapping[str, int], nodata: float | None, max_fraction: float
) -> None:
    """Warn when no patch was written because every patch read was mostly nodata."""
    skipped = counts.get("skipped_nodata", 0)
    if skipped == 0 or counts.get("written", 0) > 0:
        return
    warnings.warn(
        f"all {skipped} patch(es) of {path} were skipped as nodata (more than "
        f"max_nodata_fraction={max_fraction} of their pixels equal the nodata value {nodata}, "
        "are NaN or lie outside the raster): no patch was written. Check the raster's nodata "
        "value (helpers.raster.describe) and that the windows cover its data, or raise "
        "max_nodata_fraction.",
        UserWarning,
        stacklevel=3,
    )


_INDEX_FILES = ("index.csv", "index.geojson", "index.json")
_LOCK_NAME = ".extract_patches.lock"  # held by the run writing into out_dir
_OUTPUT_FOLDERS = ("patches", "shards", *SPLITS)
#: Relative paths of the files extract_patches writes (patch ids may be negative).
_OUTPUT_NAME = re.compile(
    r"^(?:(?:patches|(?:" + "|".join(map(re.escape, SPLITS)) + r")/[^/]+)/"
    r"r-?\d+_c-?\d+\.(?:" + "|".join(_EXTENSIONS.values()) + r")|shards/shard_\d{5,}\.npz)$"
)


def _listed_files(root: Path) -> set[str]:
    """The files the index of an earlier run lists (empty without a readable index.csv)."""
    try:
        table = pd.read_csv(root / "index.csv", usecols=["file"], dtype={"file": "string"})
    except (OSError, ValueError, pd.errors.ParserError):
        return set()
    return set(table["file"].dropna())


def _earlier_files(root: Path) -> tuple[list[Path], list[Path]]:
    """Files of ``root``'s output folders and index: (written by extract_patches, not).

    Ours are the index files, the files the earlier index lists, and files named as
    extract_patches names them in its folders (``patches/{patch_id}.{ext}``,
    ``{split}/{class}/{patch_id}.{ext}``, ``shards/shard_NNNNN.npz``), which covers a crashed
    run that wrote no index.csv. Temporary files (``.*.partial``) are neither.
    """
    listed = _listed_files(root)
    ours = [root / n for n in _INDEX_FILES if (root / n).is_file()]
    foreign = []
    for folder in _OUTPUT_FOLDERS:
        if not (root / folder).is_dir():
            continue
        for path in sorted((root / folder).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_dir() or (path.name.startswith(".") and path.name.endswith(_PARTIAL)):
                continue
            mine = relative in listed or _OUTPUT_NAME.match(relative)
            (ours if mine and not path.is_symlink() else foreign).append(path)
    return ours, foreign


def _listing(root: Path, paths: list[Path]) -> str:
    shown = [p.relative_to(root).as_posix() for p in paths[:5]]
    return ", ".join(shown) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _previous_config(root: Path) -> dict | None:
    """The ``config`` of ``root/index.json``; None without one, {} when unreadable."""
    meta_path = root / "index.json"
    if not meta_path.is_file():
        return None
    try:
        return json.loads(meta_path.read_text(encoding="utf-8")).get("config")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return {}


def _prepare_out_dir(root: Path, config: dict, previous: dict | None, overwrite: bool) -> None:
    """Resume when ``previous`` (:func:`_previous_config`) is ``config``; else refuse, or with
    ``overwrite`` delete the earlier outputs (:func:`_delete_earlier_outputs`)."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"out_dir {root} is a file; pass a folder for the patches.")
    if previous == config and not overwrite:
        return  # resume (or a finished run: nothing left to write)
    if not root.exists():
        return
    if overwrite:
        _delete_earlier_outputs(root)
        return
    ours, foreign = _earlier_files(root)
    if not ours and not foreign:
        return
    if previous is None:
        reason = "files without an index.json (unknown configuration)"
    else:
        keys = sorted(k for k in set(config) | set(previous) if config.get(k) != previous.get(k))
        reason = f"patches from a different configuration (differing keys: {', '.join(keys)})"
        if "source" in keys:
            reason += "; the source raster's name, size, time or content changed since"
    if foreign:
        reason += f"; not written by extract_patches: {_listing(root, foreign)}"
    raise FileExistsError(
        f"{root} already holds {reason}. Pass overwrite=True to delete the patches, shards "
        "and index an earlier run wrote (other files are kept) and start again, or choose "
        "another out_dir."
    )


def _delete_earlier_outputs(root: Path) -> None:
    """Delete what an earlier run wrote (:func:`_earlier_files`), then the output folders left
    empty; other files stay, with a warning naming them."""
    _remove_partials(root)
    ours, foreign = _earlier_files(root)
    for path in ours:
        path.unlink()
    if ours:
        log.info("overwrite=True: deleted %d files of an earlier run in %s", len(ours), root)
    for folder in _OUTPUT_FOLDERS:
        if (root / folder).is_dir():
            for sub in sorted((root / folder).rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
                    sub.rmdir()
            if not any((root / folder).iterdir()):
                (root / folder).rmdir()
    if foreign:
        warnings.warn(
            f"overwrite=True kept {len(foreign)} file(s) in {root} that extract_patches did not "
            f"write: {_listing(root, foreign)}. Move them out if they are not meant to be part "
            "of the dataset.",
            UserWarning,
            stacklevel=4,  # the caller of extract_patches
        )


def _remove_partials(root: Path) -> None:
    """Remove the temporary files of killed runs; those of a run still writing stay."""
    candidates = list(root.glob(f".index.*{_PARTIAL}"))
    for folder in ("patches", "shards", *SPLITS):
        if (root / folder).is_dir():
            candidates += (root / folder).rglob(f".*{_PARTIAL}")
    for stale in candidates:
        if is_stale_partial(stale):
            stale.unlink(missing_ok=True)


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with
_TIFF_EXTENTS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), tiles likewise
_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8


def _tiff_problem(handle: Any, size: int) -> str | None:
    """Why a TIFF is incomplete (its IFD, or a strip or tile past the end), or None."""
    head = handle.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 16:
        return "not a complete TIFF (bad header)"
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic not in (42, 43):
        return "not a complete TIFF (bad header)"
    big = magic == 43  # BigTIFF: 8-byte offsets and counts, 20-byte entries
    count_fmt, entry, inline = ("Q", 20, 8) if big else ("H", 12, 4)
    ifd = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
    handle.seek(ifd)
    raw = handle.read(struct.calcsize(count_fmt))
    n = struct.unpack(order + count_fmt, raw)[0]
    table = handle.read(n * entry)
    if len(table) < n * entry:
        return "truncated (its directory ends past the end of the file)"
    tags = {}
    for j in range(n):
        item = table[j * entry : (j + 1) * entry]
        tag, kind = struct.unpack(order + "HH", item[:4])
        count = struct.unpack(order + ("Q" if big else "I"), item[4 : 12 if big else 8])[0]
        if kind not in _TIFF_TYPES:
            continue
        data = item[12 if big else 8 :]
        fmt = f"{order}{count}{_TIFF_TYPES[kind]}"
        if struct.calcsize(fmt) > inline:
            handle.seek(struct.unpack(order + ("Q" if big else "I"), data)[0])
            data = handle.read(struct.calcsize(fmt))
        tags[tag] = struct.unpack(fmt, data[: struct.calcsize(fmt)])
    for offsets, counts in _TIFF_EXTENTS:
        if offsets in tags and counts in tags:
            end = max(o + c for o, c in zip(tags[offsets], tags[counts], strict=True))
            if end > size:
                return f"truncated ({size} bytes, its pixels end at byte {end})"
            return None
    return "not a complete TIFF (no strips or tiles)"


def _patch_file_problem(path: Path, writer: str) -> str | None:
    """Why a patch file left by an earlier run cannot be kept (empty, truncated), or None.

    Patch files are not flushed to disk one by one (that would cost more than writing them):
    after a power loss a renamed file may be empty or cut short, so a resume checks each one's
    ending (PNG, JPEG) or its directory and pixel extents (GeoTIFF) without decoding it.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty (0 bytes)"
        with open(path, "rb") as handle:
            if writer == "geotiff":
                return _tiff_problem(handle, size)
            handle.seek(max(0, size - len(_PNG_END)))
            tail = handle.read()
    except (OSError, struct.error, ValueError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if writer == "png" and not tail.endswith(_PNG_END):
        return "truncated (no PNG end chunk)"
    if writer == "jpeg" and not tail.endswith(b"\xff\xd9"):
        return "truncated (no JPEG end marker)"
    return None


def _warn_redone(root: Path, damaged: list[str]) -> None:
    if damaged:
        shown = "; ".join(damaged[:5]) + ("; ..." if len(damaged) > 5 else "")
        warnings.warn(
            f"{root}: {len(damaged)} file(s) left by an earlier run are damaged and are written "
            f"again: {shown}",
            UserWarning,
            stacklevel=4,  # the caller of extract_patches
        )


def _redo_damaged_patches(
    root: Path, files: list[str | None], status: list[str | None], writer: str
) -> None:
    """Mark the damaged patch files of an earlier run as still to write (and delete them)."""
    damaged = []
    for i, name in enumerate(files):
        if status[i] == "written" and name is not None:
            problem = _patch_file_problem(root / name, writer)
            if problem is not None:
                damaged.append(f"{name} ({problem})")
                (root / name).unlink(missing_ok=True)
                status[i] = None
    _warn_redone(root, damaged)


def _resume_shards(root: Path, ordered: list[Window], shard_size: int,
                   files: list[str | None], status: list[str | None]) -> None:  # fmt: skip
    """Take the rows of the complete shards of an earlier run; unreadable ones are redone."""
    damaged = []
    for k in range(-(-len(ordered) // shard_size)):
        shard = root / "shards" / _ShardWriter.name(k)
        if not shard.exists():
            continue
        try:
            with np.load(shard) as data:
                kept = set(data["ids"].tolist())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            damaged.append(f"shards/{shard.name} ({type(exc).__name__}: {exc})")
            shard.unlink(missing_ok=True)
            continue
        for i in range(k * shard_size, min((k + 1) * shard_size, len(ordered))):
            files[i] = f"shards/{shard.name}"
            status[i] = "written" if patch_id(ordered[i]) in kept else "skipped_nodata"
    _warn_redone(root, damaged)


def _check_real_pixels(dtype: Any, writer: str, path: PathLike) -> None:
    """PNG and JPEG hold real 8-bit values; a complex raster (e.g. SAR SLC) has no such scale."""
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise ValueError(
            f"{os.fspath(path)} holds complex values ({dtype}), but {writer} images need real "
            "values. Write the patches with writer='geotiff' or writer='npz' (which keep complex "
            "values), or first save a real raster such as the amplitude (numpy.abs) or the "
            "intensity (numpy.abs(x) ** 2) and extract from that."
        )


def _default_image_bands(names: tuple[str, ...]) -> list[int]:
    lowered = [n.lower() for n in names]
    if all(c in lowered for c in ("red", "green", "blue")):
        return [lowered.index(c) + 1 for c in ("red", "green", "blue")]
    return [1, 2, 3] if len(names) >= 3 else [1]


class _Pool:
    """Runs writes inline (workers=1) or in a bounded executor (at most 2 x workers queued)."""

    def __init__(self, workers: int, kind: str):
        self.executor: Executor | None = None
        if workers > 1:
            factory = ThreadPoolExecutor if kind == "thread" else ProcessPoolExecutor
            self.executor = factory(max_workers=workers)
        self.pending: deque[Future] = deque()
        self.limit = 2 * max(workers, 1)

    def submit(self, fn: Any, *args: Any) -> None:
        if self.executor is None:
            fn(*args)
            return
        self.pending.append(self.executor.submit(fn, *args))
        while len(self.pending) > self.limit:
            self.pending.popleft().result()

    def close(self) -> None:
        if self.executor is None:
            return
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)


def extract_patches(
    path: PathLike,
    out_dir: PathLike,
    windows: Sequence[Window],
    *,
    writer: str = "geotiff",
    bands: raster.BandSelection = None,
    labels: Sequence[int] | None = None,
    splits: Sequence[str | None] | None = None,
    class_names: Mapping[int, str] | None = None,
    layout: str = "flat",
    scaling: Any = None,
    max_nodata_fraction: float = 0.5,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
    shard_size: int | None = None,
    jpeg_quality: int = 95,
    compress: str | None = None,
    fill: float | None = None,
    pool: str = "thread",
    num_threads: int | str = "ALL_CPUS",
) -> PatchIndex:
    """Write the patches of a raster to ``out_dir`` with an index; resumable and atomic.

    Output layout (``{ext}`` is ``tif``, ``png`` or ``jpg``)::

        out_dir/patches/{patch_id}.{ext}                 layout="flat"
        out_dir/{split}/{class_name}/{patch_id}.{ext}    layout="class_folders"
        out_dir/shards/shard_{k:05d}.npz                 writer="npz"
        out_dir/index.csv, index.geojson, index.json

    ``layout="class_folders"`` is what ``keras.utils.image_dataset_from_directory(out_dir /
    "train")`` reads. Patches labelled ``IGNORE_LABEL`` (-1) or with split None are skipped there
    and listed in the index with status ``skipped_label`` / ``skipped_split``.

    ``.npz`` shards are uncompressed ``np.savez`` archives holding ``ids``, ``labels`` (-1 when
    none), ``splits`` ("" for None) and ``windows`` ``(N, 4)`` as ``row_off, col_off, height,
    width``, and the pixels (channels-first, source dtype) in one of two layouts, whichever is
    smaller: ``images`` ``(N, bands, rows, cols)``, one patch after another; or, when windows
    overlap, ``piece_0``, ``piece_1``, ... ``(bands, rows, cols)`` rectangles that hold shared
    pixels once, with ``piece_origins`` ``(P, 2)`` (their ``row_off, col_off``) and ``piece_of``
    ``(N,)`` (each patch's piece). :func:`read_shard` returns ``images`` for both, and so do the
    loaders of :mod:`helpers.datasets`. Shard ``k`` holds the kept patches among windows
    ``k * shard_size`` to ``(k + 1) * shard_size - 1`` in row-major order, so a shard may hold
    fewer than ``shard_size`` patches.

    ``index.geojson`` holds the patch footprints in the raster's own CRS, named with a ``"crs"``
    member as GDAL writes it (QGIS and geopandas place it correctly): footprints stay exact
    rectangles on the pixel grid instead of reprojected approximations. This departs from RFC
    7946 (lon/lat only); reproject with ``geopandas.read_file(...).to_crs(4326)`` for web maps.

    Speed and memory: the source is streamed by :func:`iter_patches` (each block decoded once,
    GDAL's block cache capped at 64 MiB while streaming). Creating a GeoTIFF through GDAL costs
    more than reading the patch, so uncompressed per-patch GeoTIFFs are stamped from one
    GDAL-written, read-back-checked template (see ``_GeoTiffTemplate``; compressed ones, and
    ``pool="process"``, go through GDAL file by file); ``workers > 1`` writes files in parallel.
    The ``npz`` writer holds one shard of patches until it is complete and writes it from a
    background thread while the next strips are decoded (see ``_ShardWriter``); by default
    shards hold about ``SHARD_BYTES`` of pixels (64 MiB, e.g. 128 patches of 4 x 256 x 256
    uint16 side by side, or whole rows of overlapping ones), so memory stays flat in scene size
    (about two shards). With overlap, pieces write each pixel about once instead of once per
    patch: at half-patch stride a quarter of the bytes.

    Resuming: ``index.json`` with the run's ``config`` is written first. Calling again with the
    same configuration skips every patch whose final file (or shard) exists and writes the rest;
    the result is byte-identical to an uninterrupted run. A different configuration raises,
    naming the differing keys, unless ``overwrite=True`` (which deletes the previous outputs,
    and only those: see ``overwrite``).
    The source counts as the same only with the same name, size, modification time and first
    MiB: a scene edited (or copied) since the earlier run is a different configuration.
    One run at a time writes into a folder: a run holds ``out_dir/.extract_patches.lock``
    (its pid) and a second run into the same folder raises ``RuntimeError`` naming that pid
    (the lock of a killed run is taken over). Every file is written under a unique temporary
    name in its folder (``.{name}.{pid}.{random}.partial``) and renamed when complete;
    temporary files of killed runs are removed on the next run. Shards and index files are
    flushed to disk before the rename; patch files are not (it would cost more than writing
    them), so a resume checks each existing patch file (not empty, PNG/JPEG ending present,
    GeoTIFF pixels within the file) and each shard (readable), and writes damaged ones again
    with a warning naming them.

    Args:
        path: The source raster.
        out_dir: Output folder (created if missing).
        windows: Patch windows (e.g. from :func:`tile_windows`); labels/splits align with them.
        writer: ``"geotiff"`` (georeferenced, source dtype), ``"png"`` (lossless 8-bit),
            ``"jpeg"`` (lossy 8-bit) or ``"npz"`` (shards, fastest for training).
        bands: Bands to write (indices or names). Default: all for geotiff/npz; for png/jpeg
            red, green, blue by band description, else the first three (or the only band).
        labels: One int per window (1 positive, 0 negative, -1 ignore), or None.
        splits: One of "train"/"validation"/"test"/None per window, or None.
        class_names: Folder name per label for ``"class_folders"``; default
            ``{0: "negative", 1: "positive"}``. Each must be one plain folder name (no ``/``,
            ``\\``, NUL, not ``.``, ``..`` or empty).
        layout: ``"flat"`` or ``"class_folders"`` (png/jpeg/geotiff; needs labels and splits).
        scaling: png/jpeg only: ``(low, high)`` for all bands or ``{band: (low, high)}``, mapped
            linearly to 0-255 with clipping (:func:`scale_to_uint8`). None computes per-band
            2-98 % percentiles from one decimated read of the raster. The limits used are
            recorded in ``index.json`` under ``"scaling"``.
        max_nodata_fraction: Skip patches with a larger fraction of nodata pixels (a pixel is
            nodata when all bands equal the nodata value, any band is NaN or infinite, or it
            lies outside the raster). A warning says when every patch was skipped.
        overwrite: Delete the outputs of an earlier run of a different (or unknown)
            configuration and start again. Deleted are only files extract_patches writes: the
            index files, the files the earlier ``index.csv`` lists, files named like its
            outputs (``patches/{patch_id}.{ext}``, ``{split}/{class_name}/{patch_id}.{ext}``,
            ``shards/shard_NNNNN.npz``) and temporary files of killed runs; then the output
            folders left empty. Any other file (``test/test_model.py``, ``train/notes.md``)
            is kept, with a warning naming it.
        workers: Parallel writers for per-patch files (creating and closing a file dominates
            the cost of small patches). The ``npz`` writer always writes shards from one
            background thread and ignores it.
        progress: Show a tqdm progress bar.
        shard_size: Windows per ``.npz`` shard; None (default) sizes shards to about
            ``SHARD_BYTES`` of stored pixels, in whole rows of windows when they overlap.
        jpeg_quality: JPEG quality (1-95).
        compress: GeoTIFF compression of the patch files (e.g. ``"deflate"``); None (default)
            writes them uncompressed, which is fastest to write and to read back in training.
            The source's own encoding is not copied (a JPEG-YCbCr orthophoto gives plain RGB
            patches); ``"jpeg"`` on three uint8 bands writes YCbCr JPEG again.
        fill: Value for pixels outside the raster; defaults to the raster's nodata (else 0).
        pool: ``"thread"`` (default, measured faster: GDAL and Pillow release the GIL while
            encoding and writing) or ``"process"``.
        num_threads: ``GDAL_NUM_THREADS`` for reading the source.

    Returns:
        A :class:`PatchIndex`.

    Raises:
        FileNotFoundError, RasterError: the source cannot be opened.
        FileExistsError: ``out_dir`` holds another configuration's patches (or files
            extract_patches did not write) and not overwrite.
        RuntimeError: another extraction is writing to ``out_dir`` (it holds
            ``out_dir/.extract_patches.lock``).
        ValueError: bad arguments (each message names the argument).

    Warns:
        UserWarning: the raster has no CRS (patches are written, without georeferencing), or
            every patch read was skipped as nodata (nothing was written).
    """
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"out_dir {root} is a file; pass a folder for the patches.")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    busy = (
        f"another extraction is writing to {root} ({{holder}}); wait for it or choose another "
        f"out_dir. If none is running, delete {root / _LOCK_NAME}."
    )
    try:
        with lock_file(root / _LOCK_NAME, busy):
            return _extract_patches_locked(
                path, root, windows, writer=writer, bands=bands, labels=labels, splits=splits,
                class_names=class_names, layout=layout, scaling=scaling,
                max_nodata_fraction=max_nodata_fraction, overwrite=overwrite, workers=workers,
                progress=progress, shard_size=shard_size, jpeg_quality=jpeg_quality,
                compress=compress, fill=fill, pool=pool, num_threads=num_threads,
            )  # fmt: skip
    finally:
        if created and not any(root.iterdir()):
            root.rmdir()  # a call that failed before writing leaves no folder behind


def _extract_patches_locked(
    path: PathLike,
    out_dir: PathLike,
    windows: Sequence[Window],
    *,
    writer: str,
    bands: raster.BandSelection,
    labels: Sequence[int] | None,
    splits: Sequence[str | None] | None,
    class_names: Mapping[int, str] | None,
    layout: str,
    scaling: Any,
    max_nodata_fraction: float,
    overwrite: bool,
    workers: int,
    progress: bool,
    shard_size: int | None,
    jpeg_quality: int,
    compress: str | None,
    fill: float | None,
    pool: str,
    num_threads: int | str,
) -> PatchIndex:
    """:func:`extract_patches`, run while it holds the lock of ``out_dir``: one run at a time
    writes into a folder."""
    root = Path(out_dir)
    window_list = [_int_window(w, f"windows[{i}]") for i, w in enumerate(windows)]
    names_map = dict(DEFAULT_CLASS_NAMES if class_names is None else class_names)
    if not 0 <= max_nodata_fraction <= 1:
        raise ValueError(f"max_nodata_fraction must be in [0, 1], got {max_nodata_fraction}.")
    if (shard_size is not None and int(shard_size) < 1) or int(workers) < 1:
        raise ValueError(f"shard_size and workers must be >= 1, got {shard_size}, {workers}.")
    if pool not in ("thread", "process"):
        raise ValueError(f'pool={pool!r}: use "thread" or "process".')

    with raster.open_raster(path) as ds:
        profile, all_names = dict(ds.profile), raster._band_names(ds)
        height, width, crs, transform, nodata = ds.height, ds.width, ds.crs, ds.transform, ds.nodata
    _check_inputs(window_list, labels, splits, writer, layout, names_map, height, width, path)
    if crs is None:
        _warn_no_crs(path)
    image_writer = writer in ("png", "jpeg")
    if bands is None and image_writer:
        indexes = _default_image_bands(all_names)
    else:
        indexes = raster.resolve_bands(bands, all_names, path=path)
    if image_writer and len(indexes) not in (1, 3):
        raise ValueError(
            f"bands={bands!r} selects {len(indexes)} bands, but {writer} images hold 1 (grey) "
            "or 3 (RGB); pass three bands such as ('red', 'green', 'blue') or one."
        )
    if image_writer:
        _check_real_pixels(profile["dtype"], writer, path)
    band_names = [all_names[i - 1] for i in indexes]

    # Row-major order; labels and splits travel with their windows.
    order = sorted(range(len(window_list)),
                   key=lambda i: (window_list[i].row_off, window_list[i].col_off))  # fmt: skip
    ordered = [window_list[i] for i in order]
    row_labels = [None if labels is None else int(labels[i]) for i in order]
    row_splits = [None if splits is None else splits[i] for i in order]
    size_given = shard_size is not None
    if shard_size is None:
        shard_size = _default_shard_size(ordered, len(indexes), np.dtype(profile["dtype"]))

    config: dict[str, Any] = {
        "source": _source_identity(path),
        "windows": {
            "count": len(ordered),
            "sizes": sorted({(w.height, w.width) for w in ordered}),
            "sha256": _sha256_json([[w.row_off, w.col_off, w.height, w.width] for w in ordered]),
        },
        "labels": None if labels is None else _sha256_json(row_labels),
        "splits": None if splits is None else _sha256_json(row_splits),
        "class_names": {str(k): v for k, v in sorted(names_map.items())},
        "writer": writer,
        "layout": layout,
        "bands": band_names,
        "scaling": _jsonable(scaling) if image_writer else None,
        "max_nodata_fraction": float(max_nodata_fraction),
        "fill": fill,
        "shard_size": int(shard_size) if writer == "npz" else None,
        "jpeg_quality": int(jpeg_quality) if writer == "jpeg" else None,
        "compress": compress if writer == "geotiff" else None,
    }
    config = json.loads(json.dumps(config))  # the form it takes once read back from disk
    previous = _previous_config(root)
    if writer == "npz" and not size_given and not overwrite and previous:
        # The default shard size is an implementation choice, not part of the dataset: a
        # folder written with another default (an earlier version) is resumed with its own.
        if {**previous, "shard_size": None} == {**config, "shard_size": None}:
            shard_size = config["shard_size"] = previous["shard_size"]
    _prepare_out_dir(root, config, previous, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    _remove_partials(root)
    metadata: dict[str, Any] = {"config": config, "complete": False}
    atomic_write_text(root / "index.json", json.dumps(metadata, indent=2) + "\n")

    limits = _resolve_scaling(scaling, path, indexes, band_names) if image_writer else None
    ext = _EXTENSIONS[writer]

    # Plan every row: file name and a status known before reading (label/split skips, resume).
    files: list[str | None] = []
    status: list[str | None] = []
    for window, label, split in zip(ordered, row_labels, row_splits, strict=True):
        pid = patch_id(window)
        if writer == "npz":
            files.append(None)
            status.append(None)
        elif layout == "class_folders" and label == IGNORE_LABEL:
            files.append(None)
            status.append("skipped_label")
        elif layout == "class_folders" and split is None:
            files.append(None)
            status.append("skipped_split")
        else:
            folder = "patches" if layout == "flat" else f"{split}/{names_map[label]}"
            name = f"{folder}/{pid}.{ext}"
            files.append(name)
            status.append("written" if (root / name).exists() else None)
    shard_of = [i // int(shard_size) for i in range(len(ordered))]
    if writer == "npz":
        _resume_shards(root, ordered, int(shard_size), files, status)
    else:
        _redo_damaged_patches(root, files, status, writer)
    todo = [i for i, s in enumerate(status) if s is None]
    if len(todo) < len(ordered):
        log.info("%s: resuming, %d of %d patches left", root, len(todo), len(ordered))
    for folder in {Path(files[i]).parent for i in todo if files[i] is not None}:
        (root / folder).mkdir(parents=True, exist_ok=True)
    if writer == "npz":
        (root / "shards").mkdir(exist_ok=True)

    geotiff_profile = _patch_geotiff_profile(profile, len(indexes), compress)
    shard_remaining = {k: 0 for k in set(shard_of)}
    for i in todo:
        shard_remaining[shard_of[i]] += 1

    writes = _Pool(int(workers), pool)
    shards = None
    if writer == "npz":
        shards = _ShardWriter(root, ordered, row_labels, row_splits, int(shard_size))
    templates = _TemplateCache()
    bar = tqdm(total=len(todo), desc="patches", unit="patch", disable=not progress)
    try:
        by_window = {patch_id(ordered[i]): i for i in todo}
        for window, array in iter_patches(
            path, [ordered[i] for i in todo], bands=indexes, fill=fill, num_threads=num_threads
        ):
            i = by_window[patch_id(window)]
            fraction = _nodata_fraction(window, array, nodata, height, width)
            keep = fraction <= max_nodata_fraction
            if shards is not None:
                k = shard_of[i]
                files[i] = f"shards/{shards.name(k)}"
                status[i] = "written" if keep else "skipped_nodata"
                if keep:
                    shards.add(i, array)
                shard_remaining[k] -= 1
                if shard_remaining[k] == 0:
                    shards.finish(k, array)
            elif not keep:
                files[i], status[i] = None, "skipped_nodata"
            else:
                final = root / files[i]
                if writer == "geotiff":
                    patch = patch_profile(geotiff_profile, window, transform)
                    template = templates.get(patch, band_names, array) if pool == "thread" else None
                    writes.submit(_write_geotiff, final, array, patch, band_names, template)
                else:
                    image = scale_to_uint8(array, limits, nodata=nodata)
                    writes.submit(_write_image, final, image, writer, int(jpeg_quality))
                status[i] = "written"
            bar.update()
        if shards is not None:
            shards.wait()  # the last shard; raises if writing it failed
    finally:
        bar.close()
        writes.close()
        if shards is not None:
            shards.close()

    table = _index_table(ordered, transform, row_splits, row_labels, files, status, labels)
    _write_index(root, table, ordered, transform, crs)
    counts = {str(k): int(v) for k, v in sorted(table["status"].value_counts().items())}
    _warn_all_nodata(path, counts, nodata, max_nodata_fraction)
    metadata = {
        "config": config,
        "complete": True,
        "source": {
            "path": os.fspath(path),
            "crs": crs.to_string() if crs is not None else None,
            "transform": [float(v) for v in tuple(transform)[:6]],
            "width": width,
            "height": height,
            "dtype": profile["dtype"],
            "nodata": raster._json_number(nodata),
            "band_names": list(all_names),
        },
        "bands": band_names,
        "scaling": limits,
        "class_names": config["class_names"],
        "footprint_crs": "raster CRS (index.geojson 'crs' member)",
        "channels": "first: (bands, rows, cols); npz images (N, bands, rows, cols) or pieces",
        "counts": counts,
        "version": __version__,
    }
    atomic_write_text(root / "index.json", json.dumps(metadata, indent=2) + "\n")
    return PatchIndex(root, table, metadata)


def _default_shard_size(ordered: list[Window], bands: int, dtype: np.dtype) -> int:
    """Windows per shard so that a shard holds about :data:`SHARD_BYTES` of pixels.

    Memory then stays flat whatever the scene and patch size. Overlapping windows are stored
    as pieces (:func:`_shard_pieces`), which keep shared pixels once, so a shard takes as many
    more windows as they overlap, rounded to whole rows of windows: a shard of whole rows of
    a grid is one piece, and only the rows where two shards meet are stored twice.
    """
    first = ordered[0] if ordered else Window(0, 0, 1, 1)
    size = max(1, SHARD_BYTES // (bands * first.height * first.width * dtype.itemsize))
    found = _pieces_if_smaller(ordered)
    if found is None:
        return size
    stored = sum(p.height * p.width for p in found[0])
    size = int(size * len(ordered) * first.height * first.width / stored)
    per_row = sum(1 for w in ordered if w.row_off == first.row_off)
    if size >= per_row:
        size = round(size / per_row) * per_row
    return max(1, size)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _nonfinite_pixels(array: np.ndarray) -> np.ndarray | None:
    """``(rows, cols)`` True where any band of ``(bands, rows, cols)`` is NaN or infinite;
    None for integer arrays (which cannot hold such values)."""
    if not np.issubdtype(array.dtype, np.floating):
        return None
    return ~np.isfinite(array).all(axis=0)


def _nodata_fraction(
    window: Window, array: np.ndarray, nodata: float | None, height: int, width: int
) -> float:
    """Fraction of the patch that is nodata: every band equal to ``nodata``, any band NaN or
    infinite (a float raster without declared nodata often marks it with NaN), or (without
    ``nodata``, whose fill is flagged above) outside the raster."""
    if nodata is None:
        r0, r1, c0, c1 = _clip(window, height, width)  # outside pixels counted once, here
        missing = window.height * window.width - (r1 - r0) * (c1 - c0)
        rows = slice(r0 - window.row_off, r1 - window.row_off)
        cols = slice(c0 - window.col_off, c1 - window.col_off)
        nonfinite = _nonfinite_pixels(array[:, rows, cols])
        if nonfinite is not None:
            missing += np.count_nonzero(nonfinite)
    else:
        mask = _nodata_pixels(array, nodata)
        nonfinite = _nonfinite_pixels(array)
        missing = np.count_nonzero(mask if nonfinite is None else mask | nonfinite)
    return float(missing) / (window.height * window.width)


def _shard_pieces(windows: Sequence[Window]) -> tuple[list[Window], list[int]]:
    """Cover row-major windows of one size with a few rectangles that hold each pixel once.

    Overlapping patches (``stride < size``) share most of their pixels: at half-patch stride
    every pixel lies in four patches. A shard stores the rectangles ("pieces") instead, and a
    patch is a slice of its piece. Windows of one row that touch or overlap (column step at most
    the width) form a run; runs spanning the same columns in consecutive rows (row step at most
    the height) merge into one piece. So a regular grid over the whole width is one piece per
    shard, and every pixel of a piece lies in at least one window.

    Args:
        windows: Windows of one size, sorted by ``row_off`` then ``col_off``.

    Returns:
        ``(pieces, piece_of)``: the pieces as windows, and the piece index of every window.
    """
    h, w = windows[0].height, windows[0].width
    pieces: list[list[int]] = []  # [row_off, col_off, last row_off, col_end]
    piece_of: list[int] = []
    open_runs: dict[tuple[int, int], int] = {}  # (col_off, col_end) of the last row -> piece
    last_row: int | None = None
    i = 0
    while i < len(windows):
        row = windows[i].row_off
        j = i
        while j < len(windows) and windows[j].row_off == row:
            j += 1
        runs, start = [], i
        for m in range(i + 1, j + 1):
            if m == j or windows[m].col_off - windows[m - 1].col_off > w:
                runs.append((start, m))
                start = m
        follows = last_row is not None and row - last_row <= h
        now_open: dict[tuple[int, int], int] = {}
        for a, b in runs:
            cols = (windows[a].col_off, windows[b - 1].col_off + w)
            k = open_runs.get(cols) if follows else None
            if k is None:
                k = len(pieces)
                pieces.append([row, cols[0], row, cols[1]])
            else:
                pieces[k][2] = row
            now_open[cols] = k
            piece_of.extend([k] * (b - a))
        open_runs, last_row, i = now_open, row, j
    boxes = [Window(c0, r0, c1 - c0, r1 + h - r0) for r0, c0, r1, c1 in pieces]
    return boxes, piece_of


def _pieces_if_smaller(windows: Sequence[Window]) -> tuple[list[Window], list[int]] | None:
    """:func:`_shard_pieces` of ``windows`` when the pieces hold fewer pixels than the patches
    one by one (the windows overlap), else None."""
    if not windows or len({(w.height, w.width) for w in windows}) != 1:
        return None
    pieces, piece_of = _shard_pieces(windows)
    stored = sum(p.height * p.width for p in pieces)
    if stored < len(windows) * windows[0].height * windows[0].width:
        return pieces, piece_of
    return None


class _ShardWriter:
    """Collects the kept patches of each ``.npz`` shard and writes complete shards in the
    background.

    Two layouts, chosen per shard from its planned windows, whichever stores fewer pixels:

    * patches one by one (``images``), held as they come from :func:`iter_patches` (mostly
      views into its strips, no copy) and streamed into the file patch by patch by the writer;
    * pieces (:func:`_shard_pieces`) when the windows overlap: each kept patch is copied into
      its piece as it arrives, so shared pixels are written once (at half-patch stride, a
      quarter of the bytes) and no strip is held.

    When a shard is complete, one background thread writes it (CRC-32 and write release the
    GIL) while the main thread decodes the next strips. At most one shard is being written
    while the next one fills, so memory is about two shards whatever the scene's size. Shards
    complete in order (patches arrive row-major), and errors of the writer are raised in the
    main thread.
    """

    def __init__(self, root: Path, ordered: list[Window], labels: list, splits: list,
                 shard_size: int) -> None:  # fmt: skip
        self.root, self.ordered, self.labels, self.splits = root, ordered, labels, splits
        self.shard_size = shard_size
        self.shard: int | None = None
        self.rows: list[int] = []
        self.images: list[np.ndarray] = []
        self.pieces: list[Window] | None = None  # the current shard's pieces, if it uses them
        self.piece_of: list[int] = []
        self.buffers: dict[int, np.ndarray] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="npz-writer")
        self.pending: Future | None = None

    @staticmethod
    def name(k: int) -> str:
        return f"shard_{k:05d}.npz"

    def _start(self, k: int) -> None:
        planned = self.ordered[k * self.shard_size : (k + 1) * self.shard_size]
        self.shard, self.pieces, self.piece_of, self.buffers = k, None, [], {}
        found = _pieces_if_smaller(planned)
        if found is not None:
            self.pieces, self.piece_of = found

    def add(self, i: int, array: np.ndarray) -> None:
        k = i // self.shard_size
        if k != self.shard:
            self._start(k)
        if self.images and array.shape != self.images[0].shape:
            raise ValueError(
                f"patch {patch_id(self.ordered[i])} has shape {array.shape} but its shard "
                f"holds {self.images[0].shape}; npz shards need windows of one size. Use one "
                "size per extract_patches call."
            )
        self.rows.append(i)
        if self.pieces is None:
            self.images.append(array)
            return
        j = self.piece_of[i - k * self.shard_size]
        piece, window = self.pieces[j], self.ordered[i]
        if j not in self.buffers:
            self.buffers[j] = np.zeros((array.shape[0], piece.height, piece.width), array.dtype)
        r, c = window.row_off - piece.row_off, window.col_off - piece.col_off
        self.buffers[j][:, r : r + window.height, c : c + window.width] = array

    def finish(self, k: int, like: np.ndarray) -> None:
        """Hand shard ``k`` (the patches added since the last call) to the writer thread."""
        rows, ordered = self.rows, self.ordered
        offsets = [[ordered[i].row_off, ordered[i].col_off, ordered[i].height, ordered[i].width]
                   for i in rows]  # fmt: skip
        arrays: dict[str, Any] = {
            "ids": np.array([patch_id(ordered[i]) for i in rows], dtype=str),
            "labels": np.array(
                [-1 if self.labels[i] is None else self.labels[i] for i in rows], "int64"
            ),
            "splits": np.array([self.splits[i] or "" for i in rows], dtype=str),
            "windows": np.array(offsets, dtype="int64").reshape(-1, 4),
        }
        if self.shard == k and self.pieces is not None and self.buffers:
            # Only the pieces some kept patch lies in, numbered in order of first use.
            used = sorted(self.buffers)
            number = {j: n for n, j in enumerate(used)}
            pieces = [self.pieces[j] for j in used]
            arrays["piece_of"] = np.array(
                [number[self.piece_of[i - k * self.shard_size]] for i in rows], "int64"
            )
            arrays["piece_origins"] = np.array(
                [[p.row_off, p.col_off] for p in pieces], "int64"
            ).reshape(-1, 2)
            for n, j in enumerate(used):
                arrays[f"piece_{n}"] = self.buffers[j]
        else:
            arrays["images"] = self.images or np.empty((0, *like.shape), dtype=like.dtype)
        self.wait()  # at most one shard in flight: memory stays at about two shards
        final = self.root / "shards" / self.name(k)
        self.pending = self.executor.submit(_write_npz, final, arrays)
        self.rows, self.images, self.buffers, self.shard = [], [], {}, None

    def wait(self) -> None:
        """Wait for the shard being written; re-raise its error here."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Let the shard being written finish (its error, if any, is left to :meth:`wait`,
        which a successful run calls first) and stop the thread."""
        self.executor.shutdown(wait=True)


def read_shard(path: PathLike, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Read an ``.npz`` shard written by :func:`extract_patches`, whatever its layout.

    Args:
        path: The shard (``out_dir/shards/shard_*.npz``).
        keep: Boolean mask over the shard's patches; None reads them all.

    Returns:
        ``images`` ``(N, bands, rows, cols)`` in the source dtype, ``ids``, ``labels``,
        ``splits`` and ``windows`` ``(N, 4)`` (``row_off, col_off, height, width``) of the kept
        patches, in the shard's (row-major) order. Patches of a shard stored as pieces
        (overlapping windows) are sliced out of them here.

    Example:
        >>> shard = read_shard("outputs/patches/shards/shard_00000.npz")  # doctest: +SKIP
        >>> shard["images"].shape  # doctest: +SKIP
        (128, 4, 256, 256)
    """
    with np.load(path) as data:
        out = {key: data[key] for key in ("ids", "labels", "splits", "windows")}
        mask = np.ones(len(out["ids"]), bool) if keep is None else np.asarray(keep, bool)
        if mask.shape != out["ids"].shape:
            raise ValueError(
                f"keep has {mask.size} values but {path} holds {out['ids'].size} patches."
            )
        if "images" in data.files:
            out = {key: value[mask] for key, value in out.items()}
            out["images"] = data["images"][mask]
            return out
        h, w = (int(v) for v in out["windows"][0, 2:])  # a pieces shard is never empty
        out = {key: value[mask] for key, value in out.items()}
        piece_of, origins = data["piece_of"][mask], data["piece_origins"]
        images = None
        for j in np.unique(piece_of) if len(piece_of) else [0]:
            piece = data[f"piece_{j}"]  # only the pieces the kept patches lie in are read
            if images is None:
                images = np.empty((len(piece_of), piece.shape[0], h, w), piece.dtype)
            for n in np.flatnonzero(piece_of == j):
                r, c = out["windows"][n, :2] - origins[j]
                images[n] = piece[:, r : r + h, c : c + w]
        out["images"] = images
    return out


def window_table(windows: Sequence[Window], transform: Affine) -> pd.DataFrame:
    """One row per window: ``id``, ``row_off``, ``col_off``, ``height``, ``width`` and its
    bounds ``minx``, ``miny``, ``maxx``, ``maxy`` in the raster's CRS (the start of every
    patch index and tile table).

    Example:
        >>> from rasterio.transform import from_origin
        >>> window_table([Window(0, 0, 2, 2)], from_origin(500, 1000, 1, 1)).iloc[0].to_dict()
        {'id': 'r000000_c000000', 'row_off': 0, 'col_off': 0, 'height': 2, 'width': 2, \
'minx': 500.0, 'miny': 998.0, 'maxx': 502.0, 'maxy': 1000.0}
    """
    bounds = [window_bounds(w, transform) for w in windows]
    return pd.DataFrame(
        {
            "id": [patch_id(w) for w in windows],
            "row_off": [w.row_off for w in windows],
            "col_off": [w.col_off for w in windows],
            "height": [w.height for w in windows],
            "width": [w.width for w in windows],
            "minx": [b[0] for b in bounds],
            "miny": [b[1] for b in bounds],
            "maxx": [b[2] for b in bounds],
            "maxy": [b[3] for b in bounds],
        }
    )


def _index_table(
    ordered: list[Window],
    transform: Affine,
    splits: list[str | None],
    labels: list[int | None],
    files: list[str | None],
    status: list[str | None],
    given_labels: Sequence[int] | None,
) -> pd.DataFrame:
    table = window_table(ordered, transform)
    table["split"] = pd.array(splits, dtype="string")
    table["label"] = pd.array(
        labels if given_labels is not None else [None] * len(ordered), dtype="Int64"
    )
    table["file"] = files
    table["status"] = status
    return table[_INDEX_COLUMNS]
