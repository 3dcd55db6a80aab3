"""Input pipelines for patch (tile) classification: shards or class folders in, ``tf.data`` out.

Two sources, one shape of output -- batches of ``(images, labels)`` with images float32
channels-last ``(batch, rows, cols, bands)`` and labels float32 ``(batch, 1)`` (0 or 1), ready
for a model that ends in ``Dense(1, activation="sigmoid")``:

* :func:`from_shards` reads the ``.npz`` shards that :func:`helpers.tiling.extract_patches`
  writes with ``writer="npz"`` (all bands, source dtype; the fast path). :func:`load_shards`
  gives the same data as NumPy arrays.
* :func:`from_class_folders` reads the PNG/JPEG ``split/class_name/`` folders written with
  ``layout="class_folders"`` through ``keras.utils.image_dataset_from_directory``.

:func:`augmentation` builds the data augmentation as Keras preprocessing layers, and
:func:`class_weights` balances the loss when one class is rare.

Example:
    >>> from helpers import datasets
    >>> train = datasets.from_shards(
    ...     "outputs/patches", split="train", augment=datasets.augmentation(seed=0)
    ... )  # doctest: +SKIP
    >>> images, labels = next(iter(train))  # doctest: +SKIP
    >>> images.shape, labels.shape  # doctest: +SKIP
    (TensorShape([32, 64, 64, 4]), TensorShape([32, 1]))

Conventions:

* Shards store ``(N, bands, rows, cols)`` as rasterio reads; the move to channels-last happens
  once, in :func:`load_shards`, with :func:`helpers.raster.to_channels_last`.
* Label ``-1`` (:data:`helpers.labels.IGNORE_LABEL`) and patches without a split never reach a
  pipeline.
* Everything random is seeded: the same arguments give the same batches, epoch after epoch
  in the same order of epochs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from helpers import raster, tiling
from helpers.labels import IGNORE_LABEL, IGNORE_VALUE
from helpers.splits import DEFAULT_NAMES as SPLITS

__all__ = [
    "RandomRotate90",
    "augmentation",
    "class_weights",
    "from_arrays",
    "from_class_folders",
    "from_shards",
    "load_shards",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
BandsLike = int | str | Sequence[int | str] | None


# --------------------------------------------------------------------------------------------
# Shards -> arrays
# --------------------------------------------------------------------------------------------


def _stored_band_names(root: Path) -> list[str] | None:
    """Band names of the shards, in stored order, from ``index.json`` (None if unknown)."""
    try:
        meta = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names = meta.get("bands") or meta.get("config", {}).get("bands")
    return [str(n) for n in names] if names else None


def _band_positions(bands: BandsLike, names: list[str] | None, count: int, root: Path) -> list:
    """``bands`` (0-based positions and/or names) -> 0-based positions in the stored order."""
    if bands is None:
        return list(range(count))
    items = [bands] if isinstance(bands, int | str) else list(bands)
    if not items:
        raise ValueError(f"bands=[] selects nothing in {root}; pass None for all bands.")
    lower = [n.lower() for n in names] if names else []
    positions = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer | str):
            raise TypeError(f"bands items must be ints (0-based) or band names, got {item!r}.")
        if isinstance(item, str):
            if item.lower() not in lower:
                known = ", ".join(names) if names else "none recorded in index.json"
                raise ValueError(
                    f"band {item!r} is not in the shards of {root} (bands: {known}); use one "
                    "of those names or a 0-based position."
                )
            positions.append(lower.index(item.lower()))
        else:
            if not 0 <= int(item) < count:
                raise ValueError(
                    f"band position {item} is out of range for the {count} stored bands of "
                    f"{root}; positions are 0-based (0 to {count - 1})."
                )
            positions.append(int(item))
    return positions


def load_shards(
    out_dir: PathLike, *, split: str, bands: BandsLike = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read the labelled patches of one split from ``.npz`` shards as channels-last float32.

    Args:
        out_dir: Folder written by ``tiling.extract_patches(..., writer="npz")`` (holds
            ``shards/`` and ``index.json``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        bands: Bands to keep, in the order given: 0-based positions in the stored order and/or
            band names recorded in ``index.json`` (case-insensitive), e.g. ``["red", "nir"]``.
            None keeps all.

    Returns:
        ``(images, labels)``: images ``(N, rows, cols, bands)`` float32 in the stored units (no
        scaling), labels ``(N,)`` int64 of 0/1, in the shards' row-major patch order. Patches
        with label -1 (ignore) or another split are left out.

    Raises:
        FileNotFoundError: ``out_dir`` has no shards or no index.
        ValueError: unknown split, bad bands, no labelled patch in the split, or only one
            class in it.

    Example:
        >>> images, labels = load_shards("outputs/patches", split="train")  # doctest: +SKIP
    """
    root = Path(out_dir)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split; use one of {', '.join(SPLITS)}.")
    shard_paths = sorted((root / "shards").glob("shard_*.npz"))
    if not shard_paths or not (root / "index.json").exists():
        raise FileNotFoundError(
            f"{root} holds no .npz shards with an index (shards/shard_*.npz + index.json); "
            'write them with tiling.extract_patches(..., writer="npz"), or read PNG class '
            "folders with from_class_folders."
        )
    images, labels, counts = [], [], {}
    for path in shard_paths:
        with np.load(path) as data:
            shard_splits, shard_labels = data["splits"], data["labels"]
        labelled = shard_labels != IGNORE_LABEL
        for name in np.unique(shard_splits[labelled]):
            counts[str(name)] = counts.get(str(name), 0) + int(
                (labelled & (shard_splits == name)).sum()
            )
        keep = labelled & (shard_splits == split)
        if keep.any():
            images.append(tiling.read_shard(path, keep)["images"])
            labels.append(shard_labels[keep])
    if not images:
        found = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k) or "none"
        raise ValueError(
            f"split {split!r} has no labelled patches in {root} (labelled patches per split: "
            f"{found}); pass splits= (and labels=) to extract_patches or choose another split."
        )
    stacked = np.concatenate(images)
    positions = _band_positions(bands, _stored_band_names(root), stacked.shape[1], root)
    # The one explicit conversion: (N, bands, rows, cols) source dtype -> (N, rows, cols, bands)
    # float32, contiguous so tf.data does not copy again.
    array = np.ascontiguousarray(raster.to_channels_last(stacked[:, positions]), dtype=np.float32)
    label_array = np.concatenate(labels).astype(np.int64)
    classes = np.unique(label_array)
    if len(classes) < 2:
        raise ValueError(
            f"split {split!r} in {root} holds only class {int(classes[0])} "
            f"({len(label_array)} patches); a classifier needs both 0 and 1 in it. Label "
            "patches of the other class or change the split."
        )
    log.info("%s: %s split, %d patches, %d bands", root, split, len(array), array.shape[-1])
    return array, label_array


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------


def _finish(
    dataset: tf.data.Dataset,
    augment: keras.Layer | None,
    deterministic: bool,
    *,
    pairs: bool = False,
) -> tf.data.Dataset:
    """Map ``augment`` over batches (training mode) and prefetch.

    Keras's random layers advance a shared seed state on every call, so calls running in
    parallel race for it and the draws change from run to run (measured). Deterministic
    pipelines therefore augment one batch at a time (each call is vectorised over the batch
    and uses TensorFlow's thread pool); ``deterministic=False`` maps with
    ``num_parallel_calls=tf.data.AUTOTUNE`` for the last bit of speed.
    """
    if augment is not None:

        def apply(x, y):
            if pairs:  # a joint augmentation moves images and masks together
                return augment(x, y, training=True)
            return augment(x, training=True), y

        if deterministic:
            dataset = dataset.map(apply)
        else:
            dataset = dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return dataset.prefetch(tf.data.AUTOTUNE)


def from_shards(
    out_dir: PathLike,
    *,
    split: str,
    batch_size: int = 32,
    bands: BandsLike = None,
    scale: float = 1 / 10000,
    augment: keras.Layer | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: bool = True,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline over one split of ``.npz`` shards.

    Order of the steps: arrays (:func:`load_shards`, times ``scale``) -> ``cache`` ->
    ``shuffle`` -> ``batch`` -> ``augment`` (on batches) -> ``prefetch``. Caching comes before
    augmentation so every epoch sees new random variants.

    Args:
        out_dir: Folder written by ``tiling.extract_patches(..., writer="npz")``.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        batch_size: Patches per batch (the last batch may be smaller).
        bands: Bands to keep (see :func:`load_shards`).
        scale: Factor applied to the stored values; ``1/10000`` turns the sample scenes'
            reflectance x10000 into reflectance (0-1).
        augment: A layer or ``keras.Sequential`` (e.g. :func:`augmentation`) applied to the
            images in training mode; None for no augmentation (validation, test).
        shuffle: Shuffle the patches (reshuffled every epoch); None means True for ``"train"``
            only.
        seed: Seed of the shuffle. Give the augmentation its own seed.
        cache: Cache the scaled arrays in the pipeline.
        deterministic: Same batches on every run (augmentation applied one batch at a time).
            False augments batches in parallel (``num_parallel_calls=tf.data.AUTOTUNE``),
            which is faster but draws different random variants on each run.

    Returns:
        A dataset of ``(images, labels)``: float32 ``(batch, rows, cols, bands)`` and float32
        ``(batch, 1)``.

    Raises:
        FileNotFoundError, ValueError: see :func:`load_shards`; also a non-positive
            ``batch_size``.

    Example:
        >>> val = from_shards("outputs/patches", split="validation")  # doctest: +SKIP
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    images, labels = load_shards(out_dir, split=split, bands=bands)
    images *= np.float32(scale)  # in place: load_shards returned a fresh array
    targets = labels.astype(np.float32)[:, np.newaxis]
    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if cache:
        dataset = dataset.cache()
    if split == "train" if shuffle is None else shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size))
    return _finish(dataset, augment, deterministic)


def from_class_folders(
    folder: PathLike,
    *,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    seed: int = 0,
    shuffle: bool | None = None,
    augment: keras.Layer | None = None,
    scale: float | None = 1 / 255,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline over one split's class folders (``folder/class_name/*.png``).

    Wraps ``keras.utils.image_dataset_from_directory``: the class folders, sorted by name,
    become labels 0, 1, ... K-1. Two folders give binary labels (``label_mode="binary"``:
    ``negative`` < ``positive`` with the default names of :func:`helpers.tiling.extract_patches`),
    for a sigmoid output; three or more give integer labels (``label_mode="int"``) for a softmax
    output trained with sparse categorical cross-entropy.

    Args:
        folder: One split's folder, e.g. ``outputs/patches_png/train``.
        image_size: ``(rows, cols)`` (or one int) the images are resized to; pass the patch
            size to keep pixels as written.
        batch_size: Images per batch.
        seed: Seed of the shuffle.
        shuffle: Shuffle (every epoch); None means True when the folder is named ``train``.
        augment: Layer applied to the (scaled) images in training mode, or None.
        scale: Factor applied to the 0-255 pixel values (default ``1/255`` -> 0-1, the range
            :func:`augmentation` assumes); None keeps 0-255.
        deterministic: See :func:`from_shards`.

    Returns:
        A dataset of ``(images, labels)``: float32 ``(batch, rows, cols, 3)`` (1 channel for
        grey images) and, with two classes, float32 ``(batch, 1)``; with K > 2 classes int32
        ``(batch,)`` in ``0 .. K-1``. ``dataset.class_names`` is kept.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: ``folder`` holds fewer than two class folders, or its images differ in
            size.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a folder; write class folders with tiling.extract_patches(..., "
            'writer="png", layout="class_folders") and pass one split\'s folder (e.g. .../train).'
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(
            f"{root} holds {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); a "
            "classifier needs at least two (e.g. negative/ and positive/, or one folder per "
            "land-cover class). Check that the split has patches of every class."
        )
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    files = [p for p in sorted(root.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    color_mode = "rgb"
    if files:
        from PIL import Image  # reads headers only: grey or colour, and each image's size

        with Image.open(files[0]) as image:
            color_mode = "grayscale" if image.mode in ("L", "I", "I;16") else "rgb"
            first_size = image.size
        for path in files[1:]:
            with Image.open(path) as image:
                if image.size != first_size:
                    # Keras would silently resize every image to image_size, so tiles of
                    # different ground sizes would be mixed as if they were alike.
                    raise ValueError(
                        f"{root} mixes image sizes: {files[0].relative_to(root)} is "
                        f"{first_size[0]} x {first_size[1]} px but {path.relative_to(root)} is "
                        f"{image.size[0]} x {image.size[1]} px. Write all tiles with one patch "
                        "size (tiling.extract_patches with one window size)."
                    )
    dataset = keras.utils.image_dataset_from_directory(
        root,
        label_mode="binary" if len(classes) == 2 else "int",
        class_names=classes,
        color_mode=color_mode,
        image_size=size,
        batch_size=int(batch_size),
        shuffle=root.name == "train" if shuffle is None else bool(shuffle),
        seed=seed,
        verbose=False,
    )
    names = dataset.class_names
    if scale is not None:
        factor = np.float32(scale)
        dataset = dataset.map(lambda x, y: (x * factor, y), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = _finish(dataset, augment, deterministic)
    dataset.class_names = names
    return dataset


def _class_count(labels: np.ndarray, num_classes: int | None, what: str) -> int:
    """K for integer ``labels``: ``num_classes`` if given, else 2 for 0/1 labels, else max + 1."""
    values = np.unique(labels)
    if values.size and not np.all(np.mod(values, 1) == 0):
        raise ValueError(
            f"{what} must be integer class codes 0 .. K-1, found {values[:5].tolist()}."
        )
    if num_classes is None:
        num_classes = max(2, int(values.max()) + 1) if values.size else 2
    if isinstance(num_classes, bool) or int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r} must be >= 2 (2 is the binary case).")
    bad = sorted(set(values.tolist()) - set(range(int(num_classes))))
    if bad:
        hint = " Drop ignored patches (label -1) first, e.g. with load_shards." if -1 in bad else ""
        raise ValueError(
            f"{what} hold values {bad}; with {int(num_classes)} classes the labels must be 0 .. "
            f"{int(num_classes) - 1}.{hint}"
        )
    return int(num_classes)


def _targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Binary: float32 ``(N, 1)`` for a sigmoid unit; K > 2: int32 ``(N,)`` for softmax."""
    if num_classes == 2:
        return labels.astype(np.float32)[:, np.newaxis]
    return labels.astype(np.int32)


def from_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 32,
    augment: keras.Layer | None = None,
    balanced: bool = False,
    positive_fraction: float = 0.5,
    shuffle: bool = True,
    seed: int = 0,
    deterministic: bool = True,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline over images already in memory (e.g. scaled for a model).

    With ``balanced=True`` batches are drawn from the positives with probability
    ``positive_fraction`` and from the negatives otherwise
    (``tf.data.Dataset.sample_from_datasets``), each class reshuffled and repeated on its own:
    the rare class is seen far more often than its share, and every negative is still used over
    the epochs -- an alternative to :func:`class_weights`. The result is infinite: pass
    ``steps_per_epoch`` to ``fit``. Keep ``positive_fraction`` below 0.5 when hard negatives
    (look-alikes of the positive class) are rare too: they need to be seen often enough. With
    K > 2 classes, ``balanced=True`` draws every class equally often (``positive_fraction`` is
    not used).

    Args:
        images: ``(N, rows, cols, bands)`` channels-last, as the model takes them.
        labels: ``(N,)`` class codes: 0/1, or 0 .. K-1 for K classes.
        batch_size: Images per batch.
        augment: A layer applied to each batch in training mode (see :func:`augmentation`).
        balanced: Draw the classes in fixed proportions (infinite dataset) instead of one pass
            per epoch.
        positive_fraction: With ``balanced`` and two classes, the expected share of positives
            per batch.
        shuffle: Shuffle (reshuffled every epoch); ignored when ``balanced``, which always
            shuffles.
        seed: Seed of the shuffles and of the class sampling.
        deterministic: See :func:`from_shards`.
        num_classes: K; None means 2 for 0/1 labels, else the largest label + 1. Pass it for a
            split that may lack the last classes.

    Returns:
        A dataset of ``(images float32, labels)``: with two classes labels are float32
        ``(batch, 1)`` (a sigmoid unit and binary cross-entropy); with K > 2 they are int32
        ``(batch,)`` (softmax and sparse categorical cross-entropy).

    Raises:
        ValueError: If the arrays are empty or do not match, labels are not in 0 .. K-1, or
            ``balanced`` is asked for while a class has no tile.

    Example:
        >>> x = np.zeros((4, 32, 32, 3), "float32"); y = np.array([0, 1, 0, 0])
        >>> batch, target = next(iter(from_arrays(x, y, batch_size=4, balanced=True)))
        >>> tuple(batch.shape), float(target.numpy().mean()) > 0
        ((4, 32, 32, 3), True)
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty (N, rows, cols, bands) array, got shape {images.shape}; "
            "an empty split means no patch of it was labelled (check the split and thresholds)."
        )
    if labels.shape != (len(images),):
        raise ValueError(f"labels has shape {labels.shape}; expected ({len(images)},).")
    k = _class_count(labels, num_classes, "labels")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"positive_fraction={positive_fraction} must be in (0, 1).")
    targets = _targets(labels, k)
    if balanced:
        counts = {c: int((labels == c).sum()) for c in range(k)}
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise ValueError(
                f"balanced=True needs tiles of {'both classes' if k == 2 else 'every class'}; "
                f"class(es) {empty} have none "
                f"(counts per class: {counts}). Check the labels, or use balanced=False."
            )
        order = (1, 0) if k == 2 else tuple(range(k))
        parts = []
        for offset, value in enumerate(order):
            pick = labels == value
            part = tf.data.Dataset.from_tensor_slices((images[pick], targets[pick])).cache()
            parts.append(part.shuffle(int(pick.sum()), seed=seed + offset).repeat())
        if k == 2:
            weights = [float(positive_fraction), 1.0 - float(positive_fraction)]
        else:
            weights = [1.0 / k] * k
        dataset = tf.data.Dataset.sample_from_datasets(parts, weights=weights, seed=seed)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((images, targets)).cache()
        if shuffle:
            dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return _finish(dataset.batch(int(batch_size)), augment, deterministic)


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="helpers")
class RandomRotate90(layers.Layer):
    """Rotate each image by a random multiple of 90 degrees (0, 90, 180 or 270).

    Exact: pixels are moved, never interpolated, so values (and their histogram) are kept, which
    matters for reflectance. Satellite tiles have no "up", so all four rotations are equally
    valid. Square images get a rotation drawn per image; non-square images (where 90 degrees
    would change the shape) get 0 or 180 degrees per image. Backend-agnostic (``keras.ops``,
    ``keras.random`` with a ``SeedGenerator``); identity when ``training`` is False.

    Args:
        seed: Seed of the draws.

    Example:
        >>> layer = RandomRotate90(seed=0)
        >>> layer(np.zeros((2, 8, 8, 4), "float32")).shape
        TensorShape([2, 8, 8, 4])
    """

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, inputs, training=True):
        if not training:
            return inputs
        x = keras.ops.convert_to_tensor(inputs)
        unbatched = len(x.shape) == 3
        if unbatched:
            x = keras.ops.expand_dims(x, 0)
        rows, cols = x.shape[1], x.shape[2]
        square = rows is not None and rows == cols
        k = keras.random.randint(
            (keras.ops.shape(x)[0],), 0, 4 if square else 2, seed=self.seed_generator
        )
        k = keras.ops.reshape(k if square else 2 * k, (-1, 1, 1, 1))
        half = keras.ops.flip(keras.ops.flip(x, axis=1), axis=2)  # 180 degrees
        out = keras.ops.where(keras.ops.equal(k, 2), half, x)
        if square:
            transposed = keras.ops.transpose(x, (0, 2, 1, 3))
            out = keras.ops.where(keras.ops.equal(k, 1), keras.ops.flip(transposed, axis=1), out)
            out = keras.ops.where(keras.ops.equal(k, 3), keras.ops.flip(transposed, axis=2), out)
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def _check_strengths(**strengths: float) -> None:
    """Augmentation strengths are fractions in [0, 1); 0 turns a transform off."""
    for name, value in strengths.items():
        if not 0 <= value < 1:
            raise ValueError(f"{name}={value} must be in [0, 1); 0 turns it off.")


def augmentation(
    *,
    flips: bool = True,
    rotate90: bool = True,
    rotation: float = 0.0,
    zoom: float = 0.0,
    translation: float = 0.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> keras.Sequential:
    """Data augmentation for overhead imagery as Keras 3 preprocessing layers.

    Put it in a ``tf.data`` pipeline (``from_shards(..., augment=...)``) or at the start of a
    model; it is active only in training. Use these layers, not the deprecated
    ``ImageDataGenerator``. Flips and 90-degree rotations are exact (no interpolation), so they
    are on by default; the others resample pixels and are off unless asked for.

    Args:
        flips: Random horizontal and vertical flips.
        rotate90: Random rotation by a multiple of 90 degrees (:class:`RandomRotate90`).
        rotation: Further random rotation, as a fraction of a full turn (0.05 = +-18 degrees).
        zoom: Random zoom in/out as a fraction of the size (0.1 = +-10 %).
        translation: Random shift as a fraction of the size.
        brightness: Random brightness shift as a fraction of ``value_range``.
        contrast: Random contrast factor (0.2 = x0.8 to x1.2), values clipped to ``value_range``.
        seed: Seed; each layer gets its own (``seed``, ``seed + 1`` ...).
        value_range: The range of the images' values, for brightness and contrast: (0, 1) for
            reflectance; about (-125, 155) for ImageNet ("caffe") preprocessed images.

    Returns:
        A ``keras.Sequential`` named ``"augmentation"`` with a layer for each non-zero setting
        (no layers means identity).

    Example:
        >>> aug = augmentation(rotation=0.05, seed=1)
        >>> [layer.name for layer in aug.layers]
        ['random_flip', 'random_rotate90', 'random_rotation']
    """
    _check_strengths(rotation=rotation, zoom=zoom, translation=translation,
                     brightness=brightness, contrast=contrast)  # fmt: skip
    seeds = iter(range(seed, seed + 7))
    steps: list[layers.Layer] = []
    if flips:
        steps.append(layers.RandomFlip("horizontal_and_vertical", seed=next(seeds),
                                       name="random_flip"))  # fmt: skip
    if rotate90:
        steps.append(RandomRotate90(seed=next(seeds), name="random_rotate90"))
    if rotation:
        steps.append(layers.RandomRotation(rotation, seed=next(seeds), name="random_rotation"))
    if zoom:
        steps.append(layers.RandomZoom(zoom, seed=next(seeds), name="random_zoom"))
    if translation:
        steps.append(layers.RandomTranslation(translation, translation, seed=next(seeds),
                                              name="random_translation"))  # fmt: skip
    if brightness:
        steps.append(layers.RandomBrightness(brightness, value_range=value_range, seed=next(seeds),
                                             name="random_brightness"))  # fmt: skip
    if contrast:
        steps.append(layers.RandomContrast(contrast, value_range=value_range, seed=next(seeds),
                                           name="random_contrast"))  # fmt: skip
    return keras.Sequential(steps, name="augmentation")


# --------------------------------------------------------------------------------------------
# Class balance
# --------------------------------------------------------------------------------------------


def class_weights(
    labels: Sequence[int] | np.ndarray, *, num_classes: int | None = None
) -> dict[int, float]:
    """Balanced class weights for ``model.fit(class_weight=...)``: ``n / (K * count)``.

    Args:
        labels: Class codes of the training patches: 0/1 (e.g. from :func:`load_shards`), or
            0 .. K-1 for K classes.
        num_classes: K; None means 2 for 0/1 labels, else the largest label + 1.

    Returns:
        ``{0: w0, 1: w1, ...}``; rare classes get the larger weights, and the weighted counts
        are equal (``w_k * n_k == n / K`` for every class).

    Raises:
        ValueError: a class is absent, or a label outside 0 .. K-1 (ignore labels -1 first).

    Example:
        >>> class_weights([0, 0, 0, 1])
        {0: 0.6666666666666666, 1: 2.0}
        >>> class_weights([0, 1, 2, 2])
        {0: 1.3333333333333333, 1: 1.3333333333333333, 2: 0.6666666666666666}
    """
    array = np.asarray(labels).ravel()
    k = _class_count(array, num_classes, "labels")
    counts = {c: int((array == c).sum()) for c in range(k)}
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        raise ValueError(
            f"class {missing[0]} is absent from the {len(array)} labels; a classifier "
            f"needs examples of all {k} classes. Label some or change the split."
        )
    return {c: len(array) / (k * n) for c, n in counts.items()}


# --------------------------------------------------------------------------------------------
# Segmentation: image and mask shards -> (images, masks) pipelines, joint augmentation
# --------------------------------------------------------------------------------------------

__all__ += [
    "JointAugmentation",
    "from_shard_pairs",
    "joint_augmentation",
    "load_shard_pairs",
    "pairs_from_arrays",
]

# index.json "source" keys that must agree for image and mask windows to cover the same ground.
_GRID_KEYS = ("crs", "transform", "width", "height")


def _read_split(root: Path, split: str | None, what: str) -> dict[str, np.ndarray]:
    """Concatenate ``images``, ``ids`` and ``splits`` of ``root``'s shards (``split`` only, or
    all patches if None)."""
    shard_paths = sorted((root / "shards").glob("shard_*.npz"))
    if not shard_paths:
        raise FileNotFoundError(
            f"{what} folder {root} holds no .npz shards (shards/shard_*.npz); write them with "
            'tiling.extract_patches(..., writer="npz").'
        )
    parts: dict[str, list[np.ndarray]] = {"images": [], "ids": [], "splits": []}
    for path in shard_paths:
        keep = None
        if split is not None:
            with np.load(path) as data:
                keep = data["splits"] == split
        shard = tiling.read_shard(path, keep)
        for key in parts:
            parts[key].append(shard[key])
    return {key: np.concatenate(value) for key, value in parts.items()}


def _source_grid(root: Path) -> dict[str, Any] | None:
    try:
        source = json.loads((root / "index.json").read_text(encoding="utf-8")).get("source", {})
    except (OSError, ValueError):
        return None
    grid = {key: source.get(key) for key in _GRID_KEYS}
    return grid if all(value is not None for value in grid.values()) else None


def load_shard_pairs(
    image_dir: PathLike, mask_dir: PathLike, *, split: str, bands: BandsLike = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of image shards and the aligned mask shards as channels-last arrays.

    Both folders come from :func:`helpers.tiling.extract_patches` with ``writer="npz"``, the
    same windows and the same ``splits``: one run on the scene, one on a mask raster of the
    same grid (e.g. from :func:`helpers.labels.rasterize_mask`). Patches are matched by patch
    id. Every image patch of the split needs its mask patch: extract the mask with
    ``max_nodata_fraction=1.0`` so that mostly-ignored masks are not skipped. Patch labels
    (tile classes) play no part here: every patch of the split is used.

    Args:
        image_dir: Folder of the image shards (``shards/`` and ``index.json``).
        mask_dir: Folder of the mask shards (one band of class codes, 255 = ignore).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        bands: Image bands to keep (see :func:`load_shards`).

    Returns:
        ``(images, masks)``: images float32 ``(N, rows, cols, bands)`` in stored units, masks
        ``(N, rows, cols, 1)`` in the mask's stored dtype, in the image shards' order.

    Raises:
        FileNotFoundError: A folder holds no shards.
        ValueError: Unknown split, no patch in the split, the two sources lie on different
            grids, an image patch without a mask patch, a split or size mismatch, or a mask
            with more than one band.

    Example:
        >>> images, masks = load_shard_pairs(
        ...     "patches/scene_npz", "patches/mask_npz", split="train"
        ... )  # doctest: +SKIP
    """
    image_root, mask_root = Path(image_dir), Path(mask_dir)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split; use one of {', '.join(SPLITS)}.")
    image_grid, mask_grid = _source_grid(image_root), _source_grid(mask_root)
    if image_grid and mask_grid:
        differ = [k for k in _GRID_KEYS if image_grid[k] != mask_grid[k]]
        if differ:
            raise ValueError(
                f"The images in {image_root} and the masks in {mask_root} come from rasters on "
                f"different grids ({', '.join(differ)} differ), so the same window covers "
                "different ground. Rasterize the mask on the scene's grid (e.g. "
                "labels.rasterize_mask with the scene's shape and transform) and extract again."
            )
    images = _read_split(image_root, split, "Image")
    if not len(images["ids"]):
        raise ValueError(
            f"split {split!r} has no patches in {image_root}; pass splits= to "
            "extract_patches or choose another split."
        )
    masks = _read_split(mask_root, None, "Mask")
    if masks["images"].shape[1] != 1:
        raise ValueError(
            f"The mask shards in {mask_root} hold {masks['images'].shape[1]} bands; a mask has "
            "one band of class codes. Extract it with bands=[1] (or the band you need)."
        )
    position = {str(pid): i for i, pid in enumerate(masks["ids"])}
    missing = [str(pid) for pid in images["ids"] if str(pid) not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(images['ids'])} {split!r} image patches in "
            f"{image_root} have no mask patch in {mask_root} (e.g. {', '.join(missing[:3])}). "
            "Extract the mask with the same windows and max_nodata_fraction=1.0, so that no "
            "mask patch is skipped."
        )
    order = np.array([position[str(pid)] for pid in images["ids"]], dtype=np.int64)
    mask_splits = masks["splits"][order]
    wrong = (mask_splits != split) & (mask_splits != "")
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        raise ValueError(
            f"Patch {images['ids'][first]} is in split {split!r} in {image_root} but in "
            f"{mask_splits[first]!r} in {mask_root}; extract both with the same splits (or the "
            "mask with none)."
        )
    mask_array = masks["images"][order]
    if mask_array.shape[2:] != images["images"].shape[2:]:
        raise ValueError(
            f"Image patches in {image_root} are {images['images'].shape[2:]} pixels but mask "
            f"patches in {mask_root} are {mask_array.shape[2:]}; extract both with the same "
            "windows."
        )
    positions = _band_positions(
        bands, _stored_band_names(image_root), images["images"].shape[1], image_root
    )
    image_array = np.ascontiguousarray(
        raster.to_channels_last(images["images"][:, positions]), dtype=np.float32
    )
    mask_array = np.ascontiguousarray(raster.to_channels_last(mask_array))
    log.info("%s + %s: %s split, %d patch pairs", image_root, mask_root, split, len(image_array))
    return image_array, mask_array


def from_shard_pairs(
    image_dir: PathLike,
    mask_dir: PathLike,
    *,
    split: str,
    batch_size: int = 16,
    bands: BandsLike = None,
    scale: float = 1 / 10000,
    augment: JointAugmentation | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: bool = True,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of ``(images, masks)`` batches for a segmentation model.

    Order of the steps: arrays (:func:`load_shard_pairs`, images times ``scale``) -> ``cache``
    -> ``shuffle`` -> ``batch`` -> ``augment`` -> ``prefetch``, as in :func:`from_shards`.
    The whole split is held in memory.

    Args:
        image_dir: Folder of the image shards.
        mask_dir: Folder of the mask shards, extracted with the same windows.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        batch_size: Patches per batch (the last batch may be smaller).
        bands: Image bands to keep (see :func:`load_shards`).
        scale: Factor applied to the image values (``1/10000``: reflectance x10000 -> 0-1).
        augment: A :class:`JointAugmentation` (see :func:`joint_augmentation`), applied to
            images and masks together; None for none (validation, test).
        shuffle: Shuffle (every epoch); None means True for ``"train"`` only.
        seed: Seed of the shuffle. Give the augmentation its own seed.
        cache: Cache the arrays in the pipeline.
        deterministic: Same batches on every run; False augments batches in parallel.

    Returns:
        A dataset of ``(images, masks)``: float32 ``(batch, rows, cols, bands)`` and
        ``(batch, rows, cols, 1)`` masks in their stored dtype (255 = ignore), ready for
        ``model.fit`` with a loss of :mod:`helpers.losses`.

    Raises:
        FileNotFoundError, ValueError: See :func:`load_shard_pairs`; also a non-positive
            ``batch_size`` or an ``augment`` that is not a :class:`JointAugmentation`.

    Example:
        >>> train = from_shard_pairs(
        ...     "patches/scene_npz", "patches/mask_npz", split="train",
        ...     augment=joint_augmentation(seed=1),
        ... )  # doctest: +SKIP
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if augment is not None and not isinstance(augment, JointAugmentation):
        raise ValueError(
            f"augment={type(augment).__name__} transforms images only; a segmentation "
            "pipeline needs the same transform on the masks. Use joint_augmentation(...)."
        )
    images, masks = load_shard_pairs(image_dir, mask_dir, split=split, bands=bands)
    images *= np.float32(scale)  # in place: a fresh array
    return pairs_from_arrays(
        images, masks, batch_size=batch_size, augment=augment,
        shuffle=split == "train" if shuffle is None else shuffle, seed=seed, cache=cache,
        deterministic=deterministic,
    )  # fmt: skip


def pairs_from_arrays(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    batch_size: int = 16,
    augment: keras.Layer | None = None,
    shuffle: bool = False,
    repeat: bool = False,
    seed: int = 0,
    cache: bool = True,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of ``(images, masks)`` batches from arrays already in memory.

    Order: cache -> shuffle (every epoch) -> repeat -> batch -> ``augment`` (a
    :func:`joint_augmentation`, called as ``augment(images, masks, training=True)``) ->
    prefetch. Use it when the images are scaled for a model first (``models.scale_inputs``) or
    when several shard folders are stacked (e.g. two dates).

    Args:
        images: ``(N, rows, cols, bands)`` float32, channels-last.
        masks: ``(N, rows, cols, 1)`` class codes.
        batch_size: Pairs per batch.
        augment: Joint augmentation applied to each batch, or None.
        shuffle: Shuffle the pairs (reshuffled every epoch).
        repeat: Repeat forever (pass ``steps_per_epoch`` to ``fit``).
        seed: Seed of the shuffle.
        cache: Cache the pairs in the pipeline.
        deterministic: See :func:`from_shards`.

    Raises:
        ValueError: If the arrays are empty or their counts differ, or ``batch_size`` < 1.
    """
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError(
            f"images ({len(images)}) and masks ({len(masks)}) must be non-empty and pair up one "
            "to one; an empty split means no patch of it was written."
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return _finish(dataset.batch(int(batch_size)), augment, deterministic, pairs=True)


@keras.saving.register_keras_serializable(package="helpers")
class JointAugmentation(layers.Layer):
    """Random augmentation applied identically to images and their masks.

    Called as ``images, masks = layer(images, masks, training=True)``. Geometric changes
    (flips, 90-degree rotations, small rotations, zoom) are drawn once per image and applied
    to both; radiometric changes (brightness, contrast) touch the images only. Flips and
    90-degree rotations move pixels exactly. Small rotations and zoom resample: images
    bilinearly with reflected borders, masks with nearest neighbour, so no class code is ever
    blended, and mask pixels brought in from outside the patch get ``ignore_value`` (the
    losses of :mod:`helpers.losses` skip them). Identity when ``training`` is False.

    The rotation and zoom are one affine transform through ``keras.ops.image.affine_transform``
    (rather than ``RandomRotation`` / ``RandomZoom``) so that one draw can be applied with two
    interpolations, which the layers take a dict input for only in recent Keras versions.

    Args:
        flips: Random horizontal and vertical flips.
        rotate90: Random rotation by a multiple of 90 degrees (:class:`RandomRotate90`).
        rotation: Further random rotation, as a fraction of a full turn (0.05 = +-18 degrees).
        zoom: Random scale factor in ``[1 - zoom, 1 + zoom]`` (above 1 zooms out).
        brightness: Random brightness shift, fraction of the 0-1 value range (images only).
        contrast: Random contrast factor (0.2 = x0.8 to x1.2), values clipped to 0-1 (images
            only).
        ignore_value: Mask value for pixels brought in from outside the patch.
        seed: Seed; each step gets its own (``seed``, ``seed + 1`` ...).
        **kwargs: Passed to ``keras.layers.Layer`` (e.g. ``name``).
    """

    def __init__(
        self,
        *,
        flips: bool = True,
        rotate90: bool = True,
        rotation: float = 0.0,
        zoom: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        ignore_value: int = IGNORE_VALUE,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        _check_strengths(rotation=rotation, zoom=zoom, brightness=brightness, contrast=contrast)
        self.flips, self.rotate90 = bool(flips), bool(rotate90)
        self.rotation, self.zoom = float(rotation), float(zoom)
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.ignore_value, self.seed = int(ignore_value), int(seed)
        self._flip = (layers.RandomFlip("horizontal_and_vertical", seed=seed)
                      if flips else None)  # fmt: skip
        self._rotate90 = RandomRotate90(seed=seed + 1) if rotate90 else None
        self._affine_seed = keras.random.SeedGenerator(seed + 2) if rotation or zoom else None
        self._brightness = (layers.RandomBrightness(brightness, value_range=(0, 1), seed=seed + 3)
                            if brightness else None)  # fmt: skip
        self._contrast = (layers.RandomContrast(contrast, value_range=(0, 1), seed=seed + 4)
                          if contrast else None)  # fmt: skip

    def _affine(self, images):
        """One random rotation-and-zoom about the patch centre per image, as the (batch, 8)
        output-to-input matrices that ``affine_transform`` expects."""
        ops = keras.ops
        n = ops.shape(images)[0]
        rows, cols = ops.shape(images)[1], ops.shape(images)[2]
        angle = keras.random.uniform((n,), -self.rotation, self.rotation,
                                     seed=self._affine_seed) * (2 * np.pi)  # fmt: skip
        scale = keras.random.uniform((n,), 1 - self.zoom, 1 + self.zoom, seed=self._affine_seed)
        cx = (ops.cast(cols, "float32") - 1) / 2
        cy = (ops.cast(rows, "float32") - 1) / 2
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        zeros = ops.zeros_like(cos)
        return ops.stack([cos, -sin, cx - cos * cx + sin * cy,
                          sin, cos, cy - sin * cx - cos * cy, zeros, zeros], axis=1)  # fmt: skip

    def call(self, images, masks, training=True):
        if not training:
            return images, masks
        ops = keras.ops
        images = ops.cast(images, "float32")
        mask_dtype = keras.backend.standardize_dtype(masks.dtype)
        unbatched_mask = len(masks.shape) == len(images.shape) - 1
        masks = ops.cast(masks[..., None] if unbatched_mask else masks, "float32")
        bands = images.shape[-1]
        if self._flip is not None or self._rotate90 is not None:
            # One tensor, so both see the same draw; flips and rot90 only move pixels.
            stack = ops.concatenate([images, masks], axis=-1)
            if self._flip is not None:
                stack = self._flip(stack, training=True)
            if self._rotate90 is not None:
                stack = self._rotate90(stack, training=True)
            images, masks = stack[..., :bands], stack[..., bands:]
        if self._affine_seed is not None:
            transform = self._affine(images)
            images = ops.image.affine_transform(images, transform, interpolation="bilinear",
                                                fill_mode="reflect")  # fmt: skip
            masks = ops.image.affine_transform(masks, transform, interpolation="nearest",
                                               fill_mode="constant",
                                               fill_value=float(self.ignore_value))  # fmt: skip
        if self._brightness is not None:
            images = self._brightness(images, training=True)
        if self._contrast is not None:
            images = self._contrast(images, training=True)
        masks = ops.cast(ops.round(masks), mask_dtype)
        return images, masks[..., 0] if unbatched_mask else masks

    def build(self, images_shape, masks_shape=None):
        # Nothing to create: the random layers inside hold only seed states.
        self.built = True

    def compute_output_shape(self, images_shape, masks_shape):
        return images_shape, masks_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "flips": self.flips,
            "rotate90": self.rotate90,
            "rotation": self.rotation,
            "zoom": self.zoom,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "ignore_value": self.ignore_value,
            "seed": self.seed,
        }


def joint_augmentation(
    *,
    flips: bool = True,
    rotate90: bool = True,
    rotation: float = 0.0,
    zoom: float = 0.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    seed: int = 0,
) -> JointAugmentation:
    """Data augmentation for image/mask pairs: the same geometric transform on both.

    The segmentation counterpart of :func:`augmentation`. Flips and 90-degree rotations are
    exact and on by default; rotation and zoom resample (masks by nearest neighbour) and are
    off unless asked for; brightness and contrast change the images only.

    Args:
        flips: Random horizontal and vertical flips.
        rotate90: Random rotation by a multiple of 90 degrees.
        rotation: Further random rotation, as a fraction of a full turn (0.05 = +-18 degrees).
        zoom: Random zoom in/out as a fraction of the size (0.1 = +-10 %).
        brightness: Random brightness shift as a fraction of the 0-1 value range.
        contrast: Random contrast factor (0.2 = x0.8 to x1.2), values clipped to 0-1.
        seed: Seed; the same seed gives the same transforms.

    Returns:
        A :class:`JointAugmentation` layer: ``images, masks = aug(images, masks,
        training=True)``; pass it to :func:`from_shard_pairs` as ``augment``.

    Raises:
        ValueError: A setting outside ``[0, 1)``.

    Example:
        >>> aug = joint_augmentation(rotation=0.05, seed=1)
        >>> x, y = aug(np.zeros((2, 8, 8, 4), "float32"), np.zeros((2, 8, 8, 1), "uint8"))
        >>> x.shape, y.dtype
        (TensorShape([2, 8, 8, 4]), tf.uint8)
    """
    return JointAugmentation(
        flips=flips, rotate90=rotate90, rotation=rotation, zoom=zoom, brightness=brightness,
        contrast=contrast, seed=seed, name="joint_augmentation",
    )  # fmt: skip
