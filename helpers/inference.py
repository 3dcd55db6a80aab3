"""Run a trained model over a whole scene and write georeferenced predictions.

Two sweeps, both streaming (memory stays bounded whatever the scene size):

* :func:`predict` -- a **segmentation** model (``(n, rows, cols, bands) -> (n, rows, cols, k)``)
  is run on overlapping patches; the patch predictions are blended with a smooth window and
  written, one column chunk at a time and a band of rows at a time within it, to a tiled,
  compressed (ZSTD by default) GeoTIFF on the scene's grid: probabilities (float32, NaN
  nodata), classes (uint8, 255 nodata) or both. Memory depends on the chunk and patch sizes,
  not the scene's.
* :func:`predict_tile_grid` -- a **tile classifier** (``(n, t, t, bands) -> (n, 1)`` or
  ``(n, k)``) is swept over the scene; the result is a coarse probability grid whose cells are
  ``stride x stride`` scene pixels, each holding the mean probability of the tiles covering it,
  plus (``return_tiles=True``) the per-tile table.

The model card (:func:`helpers.models.read_model_card`) tells both functions which raster bands
to read (by band description), how to scale them (:func:`helpers.models.scale_inputs`, the
scaling used in training -- never rescaled per batch), the patch size and the decision threshold.

Example:
    >>> import keras
    >>> from helpers import inference
    >>> model = keras.saving.load_model("outputs/unet.keras")  # doctest: +SKIP
    >>> inference.predict(
    ...     model, "data/generated/sample/scene_2021.tif", "outputs/landcover.tif",
    ...     card="outputs/unet.card.json", output="both",
    ... )  # doctest: +SKIP
    (PosixPath('outputs/landcover_prob.tif'), PosixPath('outputs/landcover_class.tif'))

Why blending: a fully convolutional model sees less context at a patch's border than at its
centre, so predictions near patch edges are worse. Overlapping patches weighted by a window that
is high in the middle and low at the edges (``blend="smooth"``) hide the seams that plain
averaging (``blend="average"``) or side-by-side patches leave. At the scene's border there is
no neighbour to hand over to, so there the window stays at full weight: every pixel is defined.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from rasterio.windows import Window
from tqdm.auto import tqdm

from helpers import raster, tiling
from helpers.files import atomic_path, partial_path, remove_stale_partials, replace_durably
from helpers.models import _check_scaling, read_model_card, scale_inputs
from helpers.plain_outputs import plain_images

__all__ = [
    "BLEND_MODES",
    "OUTPUTS",
    "blend_weights",
    "output_paths",
    "predict",
    "predict_tile_grid",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
#: A Keras model or any callable from a float32 channels-last batch to its predictions.
Model = Callable[[np.ndarray], Any]

BLEND_MODES = ("smooth", "average")
OUTPUTS = ("probabilities", "classes", "both")
#: Nodata of the class raster (as :data:`helpers.labels.IGNORE_VALUE`).
CLASS_NODATA = 255
#: Rows of an output block; output rows are flushed in multiples of this.
OUTPUT_BLOCK = 256
#: Smallest weight of the smooth window (relative to its centre): weights never reach zero.
SMOOTH_FLOOR = 1e-3
#: Batches read and scaled ahead of the model, in a background thread.
PREFETCH_BATCHES = 2
#: Bands of output rows queued for the writer thread (each ``patch + 256`` rows at most).
WRITES_IN_FLIGHT = 2
#: Batches of predictions queued for the blending thread.
BLENDS_IN_FLIGHT = 2
#: Default output columns predicted at a time (:func:`predict`'s ``chunk_size``): with the
#: patch size it bounds every buffer, whatever the scene's width and height. A multiple of the
#: output block (and of the usual 256- or 512-pixel input blocks), so reads and writes stay
#: aligned to whole blocks.
CHUNK_SIZE = 2048
#: GDAL block cache while predicting: what is read or written once needs no big cache (see
#: :data:`helpers.tiling._STREAM_CACHE_BYTES`); written blocks are compressed as they leave it.
_CACHE_BYTES = tiling._STREAM_CACHE_BYTES


# --------------------------------------------------------------------------------------------
# Shared pieces: card, bands, the model call
# --------------------------------------------------------------------------------------------


def _load_card(card: Mapping[str, Any] | PathLike | None) -> dict[str, Any] | None:
    if card is None:
        return None
    return read_model_card(card)  # a dict is checked like a file, needing bands and scaling


def _model_bands(
    dataset: Any, path: PathLike, card: Mapping[str, Any] | None, bands: Any
) -> list[int]:
    """1-based raster band indices in model input order."""
    names = raster._band_names(dataset)
    wanted = list(card["bands"]) if card is not None else None
    if bands is not None:
        indexes = raster.resolve_bands(bands, names, path=path)
        if wanted is not None and len(indexes) != len(wanted):
            raise raster.RasterError(
                f"bands={bands!r} selects {len(indexes)} band(s) of {path}, but the model card "
                f"lists {len(wanted)}: {wanted}. Pass one raster band per model band, in the "
                "card's order."
            )
        return indexes
    if wanted is None:
        raise ValueError(
            "bands is required without a model card: pass the raster bands to feed the model, "
            f"in model input order (names or 1-based indices of {list(names)}), or card=..."
        )
    named = any(d and d.strip() for d in dataset.descriptions)
    if named:
        lookup = {n.lower(): i for i, n in reversed(list(enumerate(names, start=1)))}
        missing = [b for b in wanted if b.lower() not in lookup]
        if missing:
            raise raster.RasterError(
                f"The model card's bands {wanted} do not all exist in {path}, whose bands are "
                f"{list(names)} (missing: {missing}). Predict on a raster with these bands, or "
                "pass bands=[...] naming the raster band to use for each model band."
            )
        return [lookup[b.lower()] for b in wanted]
    if dataset.count == len(wanted):
        warnings.warn(
            f"{path} has no band names (descriptions); assuming its {dataset.count} bands are "
            f"the model card's {wanted} in that order. Name the bands, or pass bands=..., to "
            "make this explicit.",
            UserWarning,
            stacklevel=3,
        )
        return list(range(1, dataset.count + 1))
    raise raster.RasterError(
        f"The model card lists bands {wanted}, but {path} has {dataset.count} unnamed band(s) "
        f"{list(names)}, so they cannot be matched. Pass bands=[...] (1-based indices in the "
        "card's order) or write band descriptions into the raster."
    )


def _forward(model: Model, x: np.ndarray) -> np.ndarray:
    """Run the model on one batch and return float32 numpy predictions."""
    if hasattr(model, "predict_on_batch"):  # a Keras model: its compiled predict step
        y = model.predict_on_batch(x)
    else:
        y = model(x)
    return np.asarray(y, dtype=np.float32)


def _nodata_mask(array: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """``(rows, cols)`` True where every band of the channels-last ``array`` equals ``nodata``;
    None when no pixel does (the common case, which then costs blending and writing nothing)."""
    if nodata is None:
        return None
    mask = tiling._nodata_pixels(array.transpose(2, 0, 1), nodata)
    return mask if mask.any() else None


def _to_model_inputs(patches: Sequence[np.ndarray], card: Mapping[str, Any] | None) -> np.ndarray:
    """Channels-last patches -> one float32 batch, scaled as the card says.

    The patches come channels-last from :func:`helpers.tiling.iter_patches`, so each is copied
    into the batch row by row, not transposed.
    """
    rows, cols, bands = patches[0].shape
    x = np.empty((len(patches), rows, cols, bands), dtype=np.float32)
    for i, patch in enumerate(patches):
        x[i] = patch  # and cast to float32
    return _scale_batch(x, card)


def _scale_batch(x: np.ndarray, card: Mapping[str, Any] | None) -> np.ndarray:
    """Scale the float32 raw values ``x`` ``(n, rows, cols, bands)`` as the card says.

    A linear scaling runs in place: the same float32 arithmetic as
    :func:`helpers.models.scale_inputs` (``x * scale + offset``), so the same values bit for
    bit, without a second batch-sized array.
    """
    if card is None:
        return x
    if len(card["bands"]) == x.shape[-1]:
        scaling = _check_scaling(card["scaling"], list(card["bands"]), "given to predict")
        if scaling["method"] == "linear":
            np.multiply(x, np.float32(scaling.get("scale", 1.0)), out=x)
            return np.add(x, np.float32(scaling.get("offset", 0.0)), out=x)
    return scale_inputs(x, card)  # other scalings; a band count that differs is an error there


def _class_names(card: Mapping[str, Any] | None, k: int) -> list[str] | None:
    """Names of the ``k`` output channels from the card's ``classes``, if they match."""
    classes = card.get("classes") if card is not None else None
    if isinstance(classes, Mapping) and len(classes) == k:
        return [str(classes[key]) for key in sorted(classes, key=_sort_key)]
    if isinstance(classes, Sequence) and not isinstance(classes, str) and len(classes) == k:
        return [str(c) for c in classes]
    return None


def _sort_key(key: Any) -> tuple[int, Any]:
    try:
        return 0, int(key)
    except (TypeError, ValueError):
        return 1, str(key)


def _probability_descriptions(card: Mapping[str, Any] | None, k: int) -> list[str]:
    names = _class_names(card, k)
    if names is None and k == 1:
        binary = _class_names(card, 2)
        return [f"probability_{binary[1]}" if binary else "probability"]
    if names is None:
        return [f"probability_{i}" for i in range(k)]
    return [f"probability_{n}" for n in names]


def _class_values(card: Mapping[str, Any] | None, k: int) -> np.ndarray:
    """Value written to the class raster for each output channel (argmax index)."""
    classes = card.get("classes") if card is not None else None
    values = np.arange(k)
    if k > 1 and isinstance(classes, Mapping) and len(classes) == k:
        try:
            values = np.array(sorted(int(key) for key in classes))
        except (TypeError, ValueError):
            values = np.arange(k)
    if values.min() < 0 or values.max() >= CLASS_NODATA:
        raise ValueError(
            f"class values {values.tolist()} do not fit the uint8 class raster (0-254, "
            f"{CLASS_NODATA} is nodata); use class ids 0-254 in the model card."
        )
    return values.astype(np.uint8)


def _names_failed_writes(func: Callable[..., Any]) -> Callable[..., Any]:
    """Make a failed write of ``func``'s output name it, and never leave it truncated.

    GDAL reports a full disk only on stderr, so rasterio raises a bare "Write failed"; and a
    write that fails while GDAL flushes the file on closing raises nothing at all. The wrapped
    function's ``out_path`` (and ``output``) say which files it writes: a "Write failed" error
    becomes one naming them and asking about the disk, and after a successful call each file
    is read back block by block; one that cannot be read is deleted, with the same error.
    """
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        out_path = bound.arguments["out_path"]
        try:
            result = func(*args, **kwargs)
        except rasterio.errors.RasterioIOError as exc:
            if not str(exc).startswith("Write failed"):
                raise
            raise raster._write_failed(out_path, exc) from exc
        paths = output_paths(out_path, bound.arguments.get("output", "probabilities"))
        for path in paths:
            try:
                raster._read_back(path)
            except raster.RASTERIO_ERRORS as exc:
                for written in paths:  # a pair goes as a pair
                    written.unlink(missing_ok=True)
                raise raster._write_failed(path, exc) from exc
        return result

    return wrapper


def _check_overwrite(paths: Sequence[Path], overwrite: bool) -> None:
    for path in paths:
        _check_not_a_folder(path)
        remove_stale_partials(path)  # temporary files of a run that was killed
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} exists; pass overwrite=True to replace it or choose another out_path."
            )


#: Tag of the probability file of an ``output="both"`` pair (value ``"probabilities"``); the
#: class map is the file :func:`output_paths` names beside it.
PAIR_TAG = "output_pair"


def _is_half_pair(paths: Sequence[Path]) -> bool:
    """Whether ``paths`` (probabilities, classes) is a pair a run stopped renaming: the
    probability file, tagged as half of a pair, without the class map."""
    if len(paths) != 2 or paths[1].exists() or not paths[0].is_file():
        return False
    try:
        with rasterio.open(paths[0]) as ds:
            return ds.tags().get(PAIR_TAG) == "probabilities"
    except raster.RASTERIO_ERRORS:
        return False


def _check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse existing outputs unless ``overwrite``; a half-written pair is redone, warned."""
    if not overwrite and _is_half_pair(paths):
        warnings.warn(
            f"{paths[0]} has no {paths[1].name} beside it: an earlier run stopped between "
            "writing the two files of output='both'. Predicting both again.",
            UserWarning,
            stacklevel=3,
        )
        overwrite = True
    _check_overwrite(paths, overwrite)


@contextmanager
def _staged_outputs(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Unique temporary files for ``paths``, renamed onto them (flushed to disk first) when the
    block succeeds; on any error, or an interrupt, they are deleted.

    A pair (``output="both"``) is renamed probabilities first and class map last, after any
    old class map is deleted. So a class map always has its own probabilities beside it, and
    a run stopped between the renames leaves a probability file alone, tagged
    (:data:`PAIR_TAG`) as half of a pair, which the next run redoes
    (:func:`_check_outputs`) instead of refusing.
    """
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmps = [partial_path(path) for path in paths]
    try:
        yield tmps
        if len(paths) == 2:
            paths[1].unlink(missing_ok=True)
        for tmp, path in zip(tmps, paths, strict=True):
            replace_durably(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)  # gone after a rename; a half-written file otherwise


#: Compression of predict's outputs. ZSTD at level 1, without a predictor, is the cheapest
#: compression that still pays: on a trained U-Net's 2048 x 2048 probability map, 0.03 CPU-s
#: for 13.9 MiB (of 16), against 0.075 s and 12.3 MiB with the floating-point predictor and
#: 0.32 s and 12.2 MiB for DEFLATE with it. On a CPU the model loses whatever the writer
#: takes; on a GPU the writer bounds the throughput. GDAL (QGIS, rasterio, GeoPandas) reads
#: ZSTD; ``compress="deflate"`` (with the predictor, the smallest files) serves older tools.
OUTPUT_COMPRESS = "zstd"
_COMPRESSIONS = ("zstd", "deflate", "lzw", "none")


def _output_profile(
    height: int, width: int, count: int, dtype: str, nodata: float, crs: Any,
    transform: Affine, compress: str = OUTPUT_COMPRESS,
) -> dict[str, Any]:  # fmt: skip
    profile: dict[str, Any] = {
        "driver": "GTiff", "height": height, "width": width, "count": count, "dtype": dtype,
        "crs": crs, "transform": transform, "nodata": nodata, "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    if compress != "none":
        predictor = 3 if dtype == "float32" and compress != "zstd" else 1
        profile.update(compress=compress, predictor=predictor)
        if compress == "zstd":
            profile["zstd_level"] = 1
    if height >= OUTPUT_BLOCK and width >= OUTPUT_BLOCK:
        profile.update(tiled=True, blockxsize=OUTPUT_BLOCK, blockysize=OUTPUT_BLOCK)
    return profile


def _warn_no_crs(path: PathLike) -> None:
    warnings.warn(
        f"{path} has no coordinate reference system (CRS): predicting anyway, but the outputs "
        "keep only its pixel transform and cannot be placed on a map in a CRS. Assign the CRS "
        "of the data (e.g. `rio edit-info --crs EPSG:32633 scene.tif`) to georeference them.",
        UserWarning,
        stacklevel=3,
    )


def _classify(
    probs: np.ndarray, threshold: float, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Classes of ``(k, rows, cols)`` probabilities, and where they are undefined.

    Returns ``(classes, undefined)``: uint8 classes (``probability >= threshold`` for one
    channel, else the argmax channel's class value) with :data:`CLASS_NODATA` where any
    channel is NaN (a diverged model, or NaN pixels in the scene), and that boolean mask.
    Without it NaN would become a real class: ``NaN >= threshold`` is False (class 0), and
    ``argmax`` picks the first NaN channel.
    """
    undefined = np.isnan(probs).any(axis=0)
    if probs.shape[0] == 1:
        classes = (probs[0] >= np.float32(threshold)).astype(np.uint8)
    else:
        classes = values[np.argmax(probs, axis=0)]  # a new uint8 array
    if undefined.any():
        classes[undefined] = CLASS_NODATA
    return classes, undefined


def _warn_nan_classes(count: int, scene: PathLike) -> None:
    warnings.warn(
        f"{count} pixel(s) of {scene} got NaN probabilities (a model that diverged, or NaN "
        "pixels in a float scene without a declared nodata value): they are written as class "
        f"{CLASS_NODATA} (nodata), not as a class. Check the model's outputs on a few patches, "
        "or declare the scene's nodata (e.g. `rio edit-info --nodata nan scene.tif`).",
        UserWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------------------------
# Segmentation: blended overlapping patches
# --------------------------------------------------------------------------------------------


def blend_weights(
    size: int,
    blend: str = "smooth",
    *,
    at_start: bool = False,
    at_end: bool = False,
) -> np.ndarray:
    """One axis of the blending window for a patch of ``size`` pixels.

    ``"smooth"`` is a raised sine (Hann) window, ``sin^2(pi (i + 0.5) / size)``, floored at
    :data:`SMOOTH_FLOOR` so it never reaches zero; on a side that touches the scene's border
    (``at_start``/``at_end``) the half towards that border stays at 1, because no neighbouring
    patch takes over there. ``"average"`` is all ones (plain averaging). The 2-D weight of a patch
    is the outer product of its row and column windows.

    Args:
        size: Patch size along the axis.
        blend: ``"smooth"`` or ``"average"``.
        at_start: The patch starts at the scene's first row/column.
        at_end: The patch ends at (or past) the scene's last row/column.

    Returns:
        float32 ``(size,)`` weights in ``(0, 1]``.

    Example:
        >>> [round(float(w), 3) for w in blend_weights(4)]
        [0.146, 0.854, 0.854, 0.146]
        >>> [round(float(w), 3) for w in blend_weights(4, at_start=True)]
        [1.0, 1.0, 0.854, 0.146]
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend={blend!r}: use one of {', '.join(BLEND_MODES)}.")
    if blend == "average":
        return np.ones(size, dtype=np.float32)
    i = np.arange(size, dtype=np.float64)
    w = np.maximum(np.sin(np.pi * (i + 0.5) / size) ** 2, SMOOTH_FLOOR)
    half = (size + 1) // 2
    if at_start:
        w[:half] = 1.0
    if at_end:
        w[size - half :] = 1.0
    return w.astype(np.float32)


def _check_not_a_folder(out_path: PathLike) -> None:
    """Refuse a folder as ``out_path`` before any work (it used to fail after predicting)."""
    path = Path(out_path)
    if path.is_dir():
        raise IsADirectoryError(
            f"out_path={os.fspath(out_path)!r} is a folder; pass the path of the GeoTIFF to "
            f"write, e.g. {os.fspath(path / 'prediction.tif')!r}."
        )


def output_paths(out_path: PathLike, output: str = "probabilities") -> tuple[Path, ...]:
    """The file(s) :func:`predict` writes for ``out_path`` and ``output``.

    ``"probabilities"`` and ``"classes"`` write ``out_path`` itself; ``"both"`` writes
    ``<stem>_prob<suffix>`` and ``<stem>_class<suffix>`` next to it (``out_path`` itself is not
    written).

    Raises:
        ValueError: An unknown ``output``.
        IsADirectoryError: ``out_path`` is an existing folder, not a file path.

    Example:
        >>> [p.name for p in output_paths("out/landcover.tif", "both")]
        ['landcover_prob.tif', 'landcover_class.tif']
    """
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}: use one of {', '.join(OUTPUTS)}.")
    _check_not_a_folder(out_path)
    path = Path(out_path)
    if output != "both":
        return (path,)
    suffix = path.suffix or ".tif"
    stem = path.stem if path.suffix else path.name
    return (path.with_name(f"{stem}_prob{suffix}"), path.with_name(f"{stem}_class{suffix}"))


def _patch_windows(height: int, width: int, patch: int, stride: int) -> list[Window]:
    """Full-size windows in row-major order; along an axis shorter than ``patch`` there is one
    window from 0 that extends past the scene (read, then mirror-padded)."""
    return tiling.tile_windows(max(height, patch), max(width, patch), patch, stride, edge="shift")


class _RowAccumulator:
    """Weighted sums for a band of output rows of one column chunk; finished rows go to ``flush``.

    Holds ``patch + OUTPUT_BLOCK`` rows of ``(k + 1)`` float32 values (sums and weights) plus a
    nodata mask for each column of the chunk ``[col0, col1)``, whatever the scene's size. The
    weights are summed patch by patch, in the same order as the predictions: a constant
    prediction then comes out exactly constant, and probabilities never exceed 1 by rounding.
    """

    def __init__(self, k: int, patch: int, height: int, col0: int, col1: int,
                 flush: Callable) -> None:  # fmt: skip
        rows = min(height, patch + OUTPUT_BLOCK)
        self.sums = np.zeros((k, rows, col1 - col0), dtype=np.float32)
        self.weights = np.zeros((rows, col1 - col0), dtype=np.float32)
        self.nodata = np.zeros((rows, col1 - col0), dtype=bool)
        self.start, self.col0, self.height, self.flush_rows = 0, col0, height, flush
        self._product = np.empty((k, patch, patch), dtype=np.float32)  # reused by every add
        self._spare: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # written buffers

    def add(self, r0: int, c0: int, pred: np.ndarray, weight: np.ndarray,
            nodata: np.ndarray | None) -> None:  # fmt: skip
        """Add ``pred`` ``(k, h, w)`` weighted by ``weight`` ``(h, w)`` at scene row/col;
        ``nodata`` is its ``(h, w)`` mask, None when no pixel is nodata."""
        h, w = weight.shape
        rows = slice(r0 - self.start, r0 - self.start + h)
        cols = slice(c0 - self.col0, c0 - self.col0 + w)
        sums = self.sums[:, rows, cols]
        np.add(sums, np.multiply(pred, weight, out=self._product[:, :h, :w]), out=sums)
        self.weights[rows, cols] += weight
        if nodata is not None:  # a pixel's mask is the same in every patch: set it once seen
            self.nodata[rows, cols] = nodata

    def advance(self, next_row: int) -> None:
        """No later patch starts above ``next_row``: flush finished rows in whole blocks."""
        stop = next_row // OUTPUT_BLOCK * OUTPUT_BLOCK
        if stop > self.start:
            self._flush(stop - self.start)

    def finish(self) -> None:
        if self.height > self.start:
            self._flush(self.height - self.start)

    def _flush(self, n: int) -> None:
        # The flushed rows go to the writer as they are (no copy): the rows still being summed
        # move to other buffers, which the writer never sees. The writer hands the flushed
        # buffers back once written (``release``), and later flushes reuse them: fresh ones
        # would be faulted in by the kernel, page by page, every time.
        sums, weights, nodata = self.sums, self.weights, self.nodata
        keep = sums.shape[1] - n
        if self._spare:
            self.sums, self.weights, self.nodata = self._spare.pop()
            self.sums[:, keep:] = 0
            self.weights[keep:] = 0
            self.nodata[keep:] = False
        else:
            self.sums, self.weights = np.zeros_like(sums), np.zeros_like(weights)
            self.nodata = np.zeros_like(nodata)
        self.sums[:, :keep] = sums[:, n:]
        self.weights[:keep] = weights[n:]
        self.nodata[:keep] = nodata[n:]

        def release() -> None:
            self._spare.append((sums, weights, nodata))

        self.flush_rows(self.start, self.col0, sums[:, :n], weights[:n], nodata[:n], release)
        self.start += n


class _Carry:
    """The parts of patch predictions that reach past a column chunk, kept for the next chunk.

    A first-in, first-out queue in an unnamed temporary file (gone when closed): one chunk
    puts the right-hand parts of its patches in the (row-major) order it adds them, the next
    chunk takes them back in the same order, so memory holds one entry at a time however tall
    the scene is.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="inference-carry-")
        self._entries: deque[tuple[Window, tuple[int, ...], bool]] = deque()
        self._reading = False

    def put(self, window: Window, pred: np.ndarray, nodata: np.ndarray | None) -> None:
        """Queue ``pred`` ``(k, h, w)`` and its nodata mask ``(h, w)`` (or None) for ``window``."""
        pred = np.ascontiguousarray(pred, dtype=np.float32)
        self._file.write(pred.data)
        if nodata is not None:
            self._file.write(np.ascontiguousarray(nodata, dtype=bool).data)
        self._entries.append((window, pred.shape, nodata is not None))

    def next_row(self) -> int | None:
        """``row_off`` of the next entry, None when all are taken."""
        return self._entries[0][0].row_off if self._entries else None

    def take(self) -> tuple[Window, np.ndarray, np.ndarray | None]:
        """The oldest entry: ``(window, pred, nodata)`` as put (read-only arrays)."""
        if not self._reading:
            self._file.seek(0)
            self._reading = True
        window, shape, masked = self._entries.popleft()
        count = math.prod(shape)
        pred = np.frombuffer(self._file.read(4 * count), np.float32).reshape(shape)
        nodata = None
        if masked:
            nodata = np.frombuffer(self._file.read(count // shape[0]), bool).reshape(shape[1:])
        return window, pred, nodata

    def close(self) -> None:
        self._file.close()


class _ChunkBlender:
    """Blend patch predictions into the scene, one column chunk at a time.

    Patches come chunk by chunk (the chunk of their first column), row-major within a chunk.
    Each adds its columns inside its chunk to that chunk's :class:`_RowAccumulator`; its
    columns past the chunk's right edge are carried (:class:`_Carry`) to the next chunk, where
    they are added at the same row-major place among that chunk's own patches. So every pixel
    sums the same terms in the same order as with one chunk spanning the scene: the result is
    identical, bit for bit, whatever the chunk size.
    """

    def __init__(self, k: int, patch: int, height: int, width: int, chunk: int,
                 weight_for: Callable[[Window], np.ndarray], flush: Callable) -> None:  # fmt: skip
        self.k, self.patch, self.height, self.flush = k, patch, height, flush
        self.chunk, self.weight_for = chunk, weight_for
        self.bounds = [(c, min(c + chunk, width)) for c in range(0, width, chunk)]
        self.index = -1
        self.accumulator: _RowAccumulator | None = None
        self.carry_in: _Carry | None = None
        self.carry_out: _Carry | None = None

    def add(self, window: Window, pred: np.ndarray, nodata: np.ndarray | None) -> None:
        """Add the prediction ``pred`` ``(k, h, w)`` of ``window`` (clipped to the scene) and
        its nodata mask (None: no nodata pixel)."""
        while self.index < window.col_off // self.chunk:
            self._next_chunk()
        self._add_carried(window.row_off)
        self._add(window, window.col_off, pred, nodata)

    def finish(self) -> None:
        """Add what is still carried and flush every remaining chunk."""
        while self.index < len(self.bounds):
            self._next_chunk()

    def close(self) -> None:
        for carry in (self.carry_in, self.carry_out):
            if carry is not None:
                carry.close()
        self.carry_in = self.carry_out = None

    def _add(self, window: Window, col: int, pred: np.ndarray,
             nodata: np.ndarray | None) -> None:  # fmt: skip
        """Add ``pred`` covering scene columns ``col`` onwards; carry what passes the chunk."""
        assert self.accumulator is not None
        self.accumulator.advance(window.row_off)
        h, w = pred.shape[1:]
        n = min(w, self.bounds[self.index][1] - col)
        skip = col - window.col_off  # columns of the patch left of ``col``
        weight = self.weight_for(window)[:h, skip : skip + n]
        inside = None if nodata is None else nodata[:, :n]
        self.accumulator.add(window.row_off, col, pred[:, :, :n], weight, inside)
        if n < w:
            if self.carry_out is None:
                self.carry_out = _Carry()
            self.carry_out.put(window, pred[:, :, n:], None if nodata is None else nodata[:, n:])

    def _add_carried(self, up_to_row: int | None) -> None:
        """Add carried patches starting at or above ``up_to_row`` (None: all of them)."""
        carry = self.carry_in
        if carry is None:
            return
        col = self.bounds[self.index][0]
        while (row := carry.next_row()) is not None and (up_to_row is None or row <= up_to_row):
            window, pred, nodata = carry.take()
            self._add(window, col, pred, nodata)

    def _next_chunk(self) -> None:
        if self.accumulator is not None:
            self._add_carried(None)
            self.accumulator.finish()
            self.accumulator = None
        if self.carry_in is not None:
            self.carry_in.close()
        self.carry_in, self.carry_out = self.carry_out, None
        self.index += 1
        if self.index < len(self.bounds):
            col0, col1 = self.bounds[self.index]
            self.accumulator = _RowAccumulator(self.k, self.patch, self.height, col0, col1,
                                               self.flush)  # fmt: skip


def _predict_batch(model: Model, x: np.ndarray, tta: bool) -> np.ndarray:
    """Predictions ``(n, rows, cols, k)``; with ``tta`` the mean over the 4 flips, un-flipped."""
    if not tta:
        return _check_dense_output(_forward(model, x), x)
    total = None
    for flip_rows in (False, True):
        for flip_cols in (False, True):
            axes = tuple(a for a, f in ((1, flip_rows), (2, flip_cols)) if f)
            xf = np.flip(x, axis=axes) if axes else x
            y = _check_dense_output(_forward(model, np.ascontiguousarray(xf)), x)
            y = np.flip(y, axis=axes) if axes else y
            total = y if total is None else total + y
    return total / np.float32(4.0)


def _check_dense_output(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    if y.ndim == 3 and y.shape == x.shape[:3]:
        y = y[..., np.newaxis]
    if y.ndim != 4 or y.shape[:3] != x.shape[:3]:
        raise ValueError(
            f"The model returned shape {y.shape} for a batch of shape {x.shape}; predict needs "
            "a per-pixel model: (n, rows, cols, bands) -> (n, rows, cols, k) with the same rows "
            "and cols. For a tile classifier ((n, k) outputs) use predict_tile_grid."
        )
    return y


@plain_images  # PNG and other plain images in; .png / .npy out (helpers.plain_outputs)
@_names_failed_writes
def predict(
    model: Model,
    scene: PathLike,
    out_path: PathLike,
    *,
    card: Mapping[str, Any] | PathLike | None = None,
    bands: raster.BandSelection = None,
    patch_size: int | None = None,
    stride: int | None = None,
    blend: str = "smooth",
    tta: bool = False,
    batch_size: int = 16,
    output: str = "probabilities",
    threshold: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int | None = None,
    compress: str = OUTPUT_COMPRESS,
) -> Path | tuple[Path, Path]:
    """Predict a whole scene with a per-pixel (segmentation) model, blending overlapping patches.

    The scene is predicted in column chunks of ``chunk_size`` pixels, left to right, each
    from top to bottom: the chunk is read in strips of patch rows
    (:func:`helpers.tiling.iter_patches`), patches are scaled as the card says and predicted in
    batches, each prediction is added into a band of output rows with its blending weight, and
    rows no later patch touches are divided by their total weight and written. The part of a
    patch that reaches into the next chunk is kept (in a temporary file) and added there, at the
    same place in the order, so the output does not depend on the chunk size, bit for bit.
    Reading and scaling run a thread ahead of the model, blending and writing two threads
    behind it (GDAL, NumPy and Keras release the GIL), so on a GPU they mostly hide behind the
    model; on a CPU that the model keeps busy they add their CPU time. Memory is a
    few bands of ``patch_size + 256`` rows of one chunk: it depends on neither the scene's width
    nor its height.

    Scenes smaller than ``patch_size`` (along either axis) are mirror-padded (symmetric) up to
    the patch size, predicted, and cropped back: a model built for fixed-size inputs still runs,
    and the padding copies real image content rather than nodata.

    Outputs are written under unique hidden temporary names next to them
    (``.{name}.{pid}.{random}.partial``) and renamed into place, flushed to disk, only when
    complete; on an error they are deleted, and the temporary files of a killed run are
    deleted by the next run. ``output="both"`` renames the probabilities first and the class
    map last (after deleting an old class map), so a class map is never left beside other
    probabilities or none; a run stopped between the two renames leaves the probability file
    alone (tagged ``output_pair=probabilities``), and the next run, even
    without ``overwrite``, predicts the pair again with a warning.

    Input pixels where every band equals the raster's nodata value are nodata in the outputs
    (NaN probabilities, class 255); the model still sees them inside patches (as scaled
    nodata values), as it saw them in training patches. Other pixels whose blended
    probabilities are NaN (a diverged model, or NaN in a float scene without a declared
    nodata value) are class 255 too, never a real class, with a warning counting them.

    Args:
        model: A Keras model (its ``predict_on_batch`` is used) or any callable mapping a
            float32 channels-last batch ``(n, rows, cols, bands)`` to ``(n, rows, cols, k)``
            (``(n, rows, cols)`` counts as ``k = 1``).
        scene: The raster to predict.
        out_path: The GeoTIFF to write (see :func:`output_paths` for ``output="both"``); a
            ``.png`` or ``.npy`` path writes that format (see :mod:`helpers.plain_outputs`).
        card: The model card (dict, or the model/card path for
            :func:`helpers.models.read_model_card`): its ``bands`` pick raster bands by name (by
            position, with a warning, when the raster has no band names and the count
            matches), its ``scaling`` is applied with :func:`helpers.models.scale_inputs`,
            ``tile_size`` is the default ``patch_size`` and ``decision_threshold`` the default
            ``threshold``. Without a card the raster values are passed as float32, unchanged.
        bands: Raster bands in model input order (names or 1-based indices). Required without a
            card; with a card it overrides the name lookup (one band per card band).
        patch_size: Square patch side in pixels; default the card's ``tile_size``.
        stride: Step between patches; default ``patch_size // 2``. ``stride < patch_size`` for
            ``blend="smooth"``; ``stride == patch_size`` (no overlap) only with
            ``"average"``.
        blend: ``"smooth"`` (window weights, see :func:`blend_weights`) or ``"average"``.
        tta: Test-time augmentation: average the predictions of the four flips (none, rows,
            columns, both), each flipped back; four times the model calls.
        batch_size: Patches per model call.
        output: ``"probabilities"`` (float32, one band per model output channel, nodata NaN),
            ``"classes"`` (uint8, nodata 255: the argmax channel, or ``probability >=
            threshold`` for a single channel) or ``"both"`` (two files).
        threshold: Decision threshold for single-channel class outputs; default the card's
            ``decision_threshold``, else 0.5.
        overwrite: Replace existing outputs; otherwise an existing output is an error (except
            the lone probability file of a half-written pair, see below).
        progress: Show a tqdm progress bar over patches.
        chunk_size: Output columns predicted at a time; default :data:`CHUNK_SIZE` (2048). It
            bounds memory and changes no output value. Rounded up to a multiple of 256 when
            the output is tiled (scenes of at least 256 x 256 pixels), so that chunks write
            whole output tiles.
        compress: Compression of the outputs: ``"zstd"`` (default, fast; see
            :data:`OUTPUT_COMPRESS`), ``"deflate"`` (for tools without ZSTD), ``"lzw"`` or
            ``"none"``. DEFLATE and LZW probabilities use the floating-point predictor.

    Returns:
        The path written, or ``(probabilities_path, classes_path)`` for ``output="both"``.
        Class values are the argmax channel index; when the card's ``classes`` is a mapping with
        one entry per channel, channel ``i`` is written as the ``i``-th smallest class id (so
        classes 1..7 stay 1..7). Band descriptions name the classes; the class file's tags map
        values to names.

    Raises:
        FileExistsError: An output exists and ``overwrite`` is False.
        FileNotFoundError, helpers.raster.RasterError: The scene cannot be read, or its bands do
            not match the model card (the message names both lists).
        ValueError: Bad arguments (stride, blend, output, threshold, ...) or a model output of
            the wrong shape.
        IsADirectoryError: ``out_path`` is a folder (checked before predicting).
        rasterio.errors.RasterioIOError: Writing an output failed (a full disk?); the message
            names it, and no truncated file is left under its name (each output is read back).

    Example:
        >>> predict(model, "scene.tif", "outputs/prob.tif", card="model.card.json",
        ...         stride=128)  # doctest: +SKIP
        PosixPath('outputs/prob.tif')
    """
    card = _load_card(card)
    if blend not in BLEND_MODES:
        raise ValueError(f"blend={blend!r}: use one of {', '.join(BLEND_MODES)}.")
    if compress not in _COMPRESSIONS:
        raise ValueError(f"compress={compress!r}: use one of {', '.join(_COMPRESSIONS)}.")
    paths = output_paths(out_path, output)
    if patch_size is None:
        if card is None or card.get("tile_size") is None:
            raise ValueError("patch_size is required without a model card (or card tile_size).")
        patch_size = card["tile_size"]
    patch = int(patch_size)
    if patch < 1:
        raise ValueError(f"patch_size must be a positive number of pixels, got {patch_size}.")
    stride = max(1, patch // 2) if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}.")
    if stride > patch:
        raise ValueError(
            f"stride={stride} is larger than patch_size={patch}: pixels between patches would "
            "never be predicted. Use stride <= patch_size (patch_size // 2 is a good default)."
        )
    if stride == patch and blend == "smooth":
        raise ValueError(
            f"stride={stride} equals patch_size={patch}, so patches do not overlap, and "
            'blend="smooth" needs overlap to hand over between patches. Use a smaller stride '
            '(e.g. patch_size // 2) or blend="average" for side-by-side patches.'
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    chunk = CHUNK_SIZE if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(
            f"chunk_size must be a positive number of columns, got {chunk_size}; leave it None "
            f"for the default ({CHUNK_SIZE})."
        )
    threshold_given = threshold is not None
    if threshold is None:
        threshold = card.get("decision_threshold", 0.5) if card is not None else 0.5
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
    _check_outputs(paths, overwrite)

    with raster.open_raster(scene) as ds:
        indexes = _model_bands(ds, scene, card, bands)
        height, width, crs, transform = ds.height, ds.width, ds.crs, ds.transform
        nodata = ds.nodata
    if crs is None:
        _warn_no_crs(scene)

    windows = _patch_windows(height, width, patch, stride)
    if height >= OUTPUT_BLOCK and width >= OUTPUT_BLOCK:  # a tiled output: write whole tiles
        chunk = -(-chunk // OUTPUT_BLOCK) * OUTPUT_BLOCK
    own: dict[int, list[Window]] = {}  # each chunk's patches: those starting in it
    for window in windows:
        own.setdefault(window.col_off // chunk, []).append(window)
    last_row = max(w.row_off for w in windows)
    last_col = max(w.col_off for w in windows)
    weight_cache: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}

    def weight_for(window: Window) -> np.ndarray:
        key = (window.row_off == 0, window.row_off == last_row,
               window.col_off == 0, window.col_off == last_col)  # fmt: skip
        if key not in weight_cache:
            rows = blend_weights(patch, blend, at_start=key[0], at_end=key[1])
            cols = blend_weights(patch, blend, at_start=key[2], at_end=key[3])
            weight_cache[key] = np.outer(rows, cols)
        return weight_cache[key]

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=_CACHE_BYTES))
        tmp_paths = stack.enter_context(_staged_outputs(paths))
        state: dict[str, Any] = {}  # class values, set when the outputs are opened

        def open_outputs(k: int) -> _ChunkBlender:
            if threshold_given and k > 1 and output != "probabilities":
                raise ValueError(
                    f"threshold={threshold} was given, but the model has {k} output channels: "
                    "classes are the argmax channel, a threshold applies only to a single "
                    "(sigmoid) channel. Leave threshold=None."
                )
            files: dict[str, Any] = {}
            descriptions = _probability_descriptions(card, k)
            tmp = iter(tmp_paths)
            if output in ("probabilities", "both"):
                profile = _output_profile(
                    height, width, k, "float32", float("nan"), crs, transform, compress
                )
                dst = stack.enter_context(rasterio.open(next(tmp), "w", **profile))
                dst.descriptions = tuple(descriptions)
                if output == "both":
                    dst.update_tags(**{PAIR_TAG: "probabilities"})  # see _staged_outputs
                files["prob"] = dst
            if output in ("classes", "both"):
                values = _class_values(card, k)
                profile = _output_profile(
                    height, width, 1, "uint8", CLASS_NODATA, crs, transform, compress
                )
                dst = stack.enter_context(rasterio.open(next(tmp), "w", **profile))
                dst.descriptions = ("class",)
                names = _class_names(card, max(k, 2))
                if names:
                    tag_values = [0, 1] if k == 1 else values.tolist()
                    tags = {f"class_{v}": n for v, n in zip(tag_values, names, strict=True)}
                    dst.update_tags(**tags)
                if k == 1:
                    dst.update_tags(decision_threshold=str(float(threshold)))
                files["class"] = dst
                state["values"] = values
                state["nan_pixels"] = 0  # valid input pixels whose probabilities are NaN

            # Writing (dividing, classifying, compressing) runs in a background thread, so
            # it overlaps with the model; at most WRITES_IN_FLIGHT bands of rows wait there.
            writer = stack.enter_context(ThreadPoolExecutor(1, "inference-write"))
            pending: deque = deque()
            state["pending"] = pending

            def write_rows(row0: int, col0: int, sums, weights, nodata_rows, release) -> None:
                # Every pixel lies in some patch and every weight is > 0 (blend_weights).
                probs = np.divide(sums, weights, out=sums)
                invalid = nodata_rows if nodata_rows.any() else None
                window = Window(col0, row0, weights.shape[1], weights.shape[0])
                if "class" in files:
                    classes, undefined = _classify(probs, float(threshold), state["values"])
                    if invalid is not None:
                        classes[invalid] = CLASS_NODATA
                        undefined &= ~invalid  # input nodata: expected, not counted
                    state["nan_pixels"] += int(np.count_nonzero(undefined))
                    files["class"].write(classes, 1, window=window)
                if "prob" in files:
                    if invalid is not None:
                        probs[:, invalid] = np.nan
                    files["prob"].write(probs, window=window)
                release()  # GDAL has copied the rows: the accumulator may reuse the buffers

            def flush(row0: int, col0: int, sums, weights, nodata_rows, release) -> None:
                while pending and (pending[0].done() or len(pending) >= WRITES_IN_FLIGHT):
                    pending.popleft().result()  # raises a failed write here
                # No copies: the accumulator hands over these rows and sums on in other buffers.
                args = (row0, col0, sums, weights, nodata_rows, release)
                pending.append(writer.submit(write_rows, *args))

            blender = _ChunkBlender(k, patch, height, width, chunk, weight_for, flush)
            stack.callback(blender.close)  # the carried predictions' temporary files
            return blender

        bar = stack.enter_context(
            tqdm(total=len(windows), desc="predict", unit="patch", disable=not progress)
        )

        def chunk_patches() -> Iterator[tuple[Window, np.ndarray]]:
            """``(window, array)`` chunk by chunk, each read in strips of the chunk's width."""
            for index in sorted(own):
                # Each patch is copied into its batch at once, so two strip buffers can take
                # turns (no fresh memory per strip).
                patches = tiling.iter_patches(scene, own[index], bands=indexes,
                                              channels_last=True,
                                              reuse_strips=True)  # fmt: skip
                with closing(patches):
                    yield from patches

        # A Keras model does not keep its input batch: each batch array goes back to a pool
        # once the model returns (unless the predictions are a view of it), and the next batch
        # is written into it. A fresh 16 MiB array per batch would cost page faults (kernel
        # time, on both cores) each time. Any other callable may keep its input, so it gets
        # fresh arrays.
        pool: list[np.ndarray] | None = [] if hasattr(model, "predict_on_batch") else None

        def inside(window: Window) -> tuple[int, int]:
            """Rows and columns of a patch inside the scene (less than the patch only when
            the scene is smaller than it)."""
            return min(patch, height - window.row_off), min(patch, width - window.col_off)

        def prepared() -> Iterator[tuple[list[Window], np.ndarray, list, np.ndarray]]:
            """Batches of (windows, scaled model inputs, nodata masks of the inside parts or
            None, the batch array to give back to the pool)."""
            # Batches run on across chunks: the model sees the same number of batches. Each
            # patch is copied into the batch as it comes.
            windows: list[Window] = []
            masks: list[np.ndarray | None] = []
            shape = (batch_size, patch, patch, len(indexes))
            for window, array in chunk_patches():
                if not windows:
                    buffer = pool.pop() if pool else np.empty(shape, dtype=np.float32)
                h, w = inside(window)
                region = array[:h, :w]
                masks.append(_nodata_mask(region, nodata))
                if (h, w) != (patch, patch):  # scene smaller than the patch: mirror-pad
                    region = np.pad(region, ((0, patch - h), (0, patch - w), (0, 0)), "symmetric")
                buffer[len(windows)] = region  # and cast to float32
                windows.append(window)
                if len(windows) == batch_size:
                    yield windows, _scale_batch(buffer, card), masks, buffer
                    windows, masks = [], []
            if windows:
                yield windows, _scale_batch(buffer[: len(windows)], card), masks, buffer

        def blend_batch(batch: list[Window], y: np.ndarray, masks: list) -> None:
            for window, pred, mask in zip(batch, y, masks, strict=True):
                h, w = inside(window)
                blender.add(window, np.moveaxis(pred[:h, :w], -1, 0), mask)

        # The main thread only runs the model: blending runs in one background thread (in
        # batch order, so the sums are the same), as reading does in another, and writing in
        # a third. On a CPU the model keeps both cores busy, and any work left between its
        # calls would leave them idle.
        blending = stack.enter_context(ThreadPoolExecutor(1, "inference-blend"))
        blends: deque = deque()
        blender: _ChunkBlender | None = None
        batches = stack.enter_context(closing(_prefetched(prepared(), PREFETCH_BATCHES)))
        for batch, x, masks, buffer in batches:
            y = _predict_batch(model, x, tta)
            if pool is not None and not np.may_share_memory(y, buffer):
                pool.append(buffer)  # the model is done with it, and y is not a view of it
            if blender is None:
                blender = open_outputs(y.shape[-1])
            elif y.shape[-1] != blender.k:
                raise ValueError(
                    f"The model returned {y.shape[-1]} channels after {blender.k} in an "
                    "earlier batch; it must be consistent."
                )
            while blends and (blends[0].done() or len(blends) >= BLENDS_IN_FLIGHT):
                blends.popleft().result()  # raises a failed blend here
            blends.append(blending.submit(blend_batch, batch, y, masks))
            bar.update(len(batch))
        for future in blends:
            future.result()
        assert blender is not None  # tile_windows always returns at least one window
        blender.finish()
        for future in state["pending"]:
            future.result()  # every band of rows written before the files close
    if state.get("nan_pixels"):
        _warn_nan_classes(state["nan_pixels"], scene)
    log.info("predicted %s -> %s", scene, ", ".join(map(str, paths)))
    return paths[0] if len(paths) == 1 else (paths[0], paths[1])


_END = object()


def _prefetched(items: Iterator, depth: int) -> Iterator:
    """Yield from ``items``, computed up to ``depth`` items ahead in one background thread.

    Reading (GDAL) and scaling (NumPy) release the GIL, so they overlap with the model, which
    releases it too. Errors in ``items`` are raised here; stopping early cancels what is queued
    and closes ``items``.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="inference-read") as pool:
        pending = deque(pool.submit(next, items, _END) for _ in range(max(1, depth)))
        try:
            while True:
                item = pending.popleft().result()
                if item is _END:
                    return
                pending.append(pool.submit(next, items, _END))
                yield item
        finally:
            for future in pending:
                future.cancel()
            close = getattr(items, "close", None)
            if close is not None:
                # In the worker thread too: rasterio's GDAL environment is per thread, and the
                # generator's open datasets must be closed where they were opened.
                pool.submit(close).result()


# --------------------------------------------------------------------------------------------
# Tile classifier: a probability grid
# --------------------------------------------------------------------------------------------


@_names_failed_writes
def predict_tile_grid(
    model: Model,
    scene: PathLike,
    out_path: PathLike,
    *,
    card: Mapping[str, Any] | PathLike,
    bands: raster.BandSelection = None,
    stride: int | None = None,
    batch_size: int = 64,
    max_nodata_fraction: float = 0.5,
    return_tiles: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path | tuple[Path, pd.DataFrame]:
    """Sweep a tile classifier over a scene and write a georeferenced probability grid.

    Tiles of the card's ``tile_size`` are taken every ``stride`` pixels
    (:func:`helpers.tiling.tile_windows` with ``edge="pad"``, so the tiles stay on the grid;
    the last ones stick out of the scene and their outside counts as nodata). The grid's cells
    are ``stride x stride`` scene pixels (its transform is the scene's, scaled by ``stride``);
    each cell holds the mean probability of all predicted tiles covering it. Tiles with more
    than ``max_nodata_fraction`` nodata pixels are skipped, and cells covered only by skipped
    tiles are nodata (NaN). The grid has ``ceil(height / stride)`` x ``ceil(width / stride)``
    cells; the last row/column of cells may reach past the scene's edge.

    Args:
        model: A Keras model or callable mapping ``(n, t, t, bands)`` float32 to ``(n, 1)``
            (sigmoid: probability of the positive class) or ``(n, k)`` (softmax).
        scene: The raster to sweep.
        out_path: The grid GeoTIFF (float32, one band per model output, nodata NaN).
        card: The model card (dict or path): ``bands``, ``scaling``, ``tile_size``, ``classes``.
        bands: Raster bands overriding the card's band-name lookup (see :func:`predict`).
        stride: Step between tiles; ``tile_size`` must be a multiple of it. Default
            ``tile_size // 2``.
        batch_size: Tiles per model call.
        max_nodata_fraction: Skip tiles with a larger fraction of nodata pixels.
        return_tiles: Also return the per-tile table.
        overwrite: Replace an existing ``out_path``.
        progress: Show a tqdm progress bar over tiles.

    Returns:
        ``out_path``, or ``(out_path, tiles)`` with ``return_tiles=True``: a DataFrame with one
        row per tile in row-major order: ``id``, ``row_off``, ``col_off``, ``height``,
        ``width``, ``minx``, ``miny``, ``maxx``, ``maxy`` (in the scene's CRS),
        ``nodata_fraction``, ``status`` (``"predicted"`` or ``"skipped_nodata"``) and the
        probabilities (``probability`` for one output, else ``probability_<class>``; NaN for
        skipped tiles).

    Raises:
        FileExistsError: ``out_path`` exists and ``overwrite`` is False.
        FileNotFoundError, helpers.raster.RasterError: The scene cannot be read or its bands do
            not match the card.
        ValueError: Bad ``stride``/``max_nodata_fraction``/``batch_size`` or model outputs
            that are not ``(n, 1)`` / ``(n, k)``.
        IsADirectoryError, rasterio.errors.RasterioIOError: As for :func:`predict`.

    Example:
        >>> grid, tiles = predict_tile_grid(model, "scene.tif", "outputs/grid.tif",
        ...                                 card="model.card.json", return_tiles=True,
        ...                                 )  # doctest: +SKIP
        >>> tiles.sort_values("probability").tail()  # doctest: +SKIP
    """
    card = _load_card(card)
    if card is None or card.get("tile_size") is None:
        raise ValueError("card must be a model card with a tile_size (the classifier's input).")
    tile = int(card["tile_size"])
    stride = max(1, tile // 2) if stride is None else int(stride)
    if stride < 1 or stride > tile or tile % stride:
        raise ValueError(
            f"stride={stride} must divide the card's tile_size={tile} (e.g. {tile // 2} or "
            f"{tile // 4}), so that grid cells of stride x stride pixels line up with the tiles."
        )
    if not 0.0 <= max_nodata_fraction <= 1.0:
        raise ValueError(f"max_nodata_fraction must be in [0, 1], got {max_nodata_fraction}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    out_path = Path(out_path)
    _check_overwrite([out_path], overwrite)
    with raster.open_raster(scene) as ds:
        indexes = _model_bands(ds, scene, card, bands)
        height, width, crs, transform = ds.height, ds.width, ds.crs, ds.transform
        nodata = ds.nodata
    if crs is None:
        _warn_no_crs(scene)

    windows = tiling.tile_windows(height, width, tile, stride, edge="pad")
    cells = (math.ceil(height / stride), math.ceil(width / stride))
    span = tile // stride
    ordered = sorted(windows, key=lambda w: (w.row_off, w.col_off))
    order = {(w.row_off, w.col_off): i for i, w in enumerate(ordered)}
    sums: np.ndarray | None = None  # (k, rows, cols) once k is known
    counts = np.zeros(cells, dtype=np.int32)
    fractions = [0.0] * len(ordered)
    probabilities: list[np.ndarray | None] = [None] * len(ordered)  # None: skipped

    def kept_batches() -> Iterator[tuple[list[Window], np.ndarray | None, int]]:
        """(windows, scaled inputs, tiles read) per batch of tiles that are not skipped."""
        batch: list[tuple[Window, np.ndarray]] = []
        seen = 0
        patches = tiling.iter_patches(scene, ordered, bands=indexes, channels_last=True)
        for window, array in patches:
            inside_rows = min(tile, height - window.row_off)
            inside_cols = min(tile, width - window.col_off)
            inside = array[:inside_rows, :inside_cols].transpose(2, 0, 1)
            missing = tiling._nodata_pixels(inside, nodata).sum()
            missing += tile * tile - inside_rows * inside_cols
            fraction = float(missing) / (tile * tile)
            fractions[order[(window.row_off, window.col_off)]] = fraction
            seen += 1
            if fraction <= max_nodata_fraction:
                batch.append((window, array))
            if len(batch) == batch_size:
                yield [w for w, _ in batch], _to_model_inputs([a for _, a in batch], card), seen
                batch, seen = [], 0
        if batch or seen:
            x = _to_model_inputs([a for _, a in batch], card) if batch else None
            yield [w for w, _ in batch], x, seen

    with ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(total=len(ordered), desc="tiles", unit="tile", disable=not progress)
        )
        batches = stack.enter_context(closing(_prefetched(kept_batches(), PREFETCH_BATCHES)))
        for batch, x, seen in batches:
            if x is not None:
                y = _forward(model, x)
                if y.ndim == 1:
                    y = y[:, np.newaxis]
                if y.ndim != 2 or y.shape[0] != len(batch):
                    raise ValueError(
                        f"The model returned shape {y.shape} for {len(batch)} tiles; a tile "
                        "classifier must return (n, 1) (sigmoid) or (n, k) (softmax). For "
                        "per-pixel models use predict."
                    )
                if sums is None:
                    sums = np.zeros((y.shape[1], *cells), dtype=np.float64)
                for window, p in zip(batch, y, strict=True):
                    r, c = window.row_off // stride, window.col_off // stride
                    sums[:, r : r + span, c : c + span] += p[:, None, None]
                    counts[r : r + span, c : c + span] += 1
                    probabilities[order[(window.row_off, window.col_off)]] = p
            bar.update(seen)

    k = sums.shape[0] if sums is not None else 1
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = (sums if sums is not None else np.zeros((1, *cells))) / counts
    grid = np.where(counts > 0, grid, np.nan).astype(np.float32)
    t = transform
    grid_transform = Affine(t.a * stride, t.b * stride, t.c, t.d * stride, t.e * stride, t.f)
    descriptions = _probability_descriptions(card, k)
    profile = _output_profile(cells[0], cells[1], k, "float32", float("nan"), crs, grid_transform)
    with rasterio.Env(GDAL_CACHEMAX=_CACHE_BYTES), atomic_path(out_path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(grid)
            dst.descriptions = tuple(descriptions)
            dst.update_tags(tile_size=str(tile), stride=str(stride),
                            max_nodata_fraction=str(max_nodata_fraction))  # fmt: skip
    log.info("tile grid of %s -> %s (%d x %d cells)", scene, out_path, *cells)
    if not return_tiles:
        return out_path

    columns = ["probability"] if k == 1 else descriptions
    probs = np.array(
        [p if p is not None else np.full(k, np.nan) for p in probabilities], dtype=np.float64
    ).reshape(len(ordered), k)
    table = tiling.window_table(ordered, transform)
    table["nodata_fraction"] = fractions
    table["status"] = ["predicted" if p is not None else "skipped_nodata" for p in probabilities]
    for i, name in enumerate(columns):
        table[name] = probs[:, i]
    return out_path, table
