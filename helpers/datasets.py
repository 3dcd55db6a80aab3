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

from helpers import raster
from helpers.labels import IGNORE_LABEL
from helpers.splits import DEFAULT_NAMES as SPLITS

__all__ = [
    "RandomRotate90",
    "augmentation",
    "class_weights",
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
                images.append(data["images"][keep])
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
    dataset: tf.data.Dataset, augment: keras.Layer | None, deterministic: bool
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

    Wraps ``keras.utils.image_dataset_from_directory(..., label_mode="binary")``: the two class
    folders, sorted by name, become labels 0 and 1 (``negative`` < ``positive`` with the
    default names of :func:`helpers.tiling.extract_patches`).

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
        grey images) and float32 ``(batch, 1)``. ``dataset.class_names`` is kept.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: ``folder`` does not hold exactly two class folders.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a folder; write class folders with tiling.extract_patches(..., "
            'writer="png", layout="class_folders") and pass one split\'s folder (e.g. .../train).'
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) != 2:
        raise ValueError(
            f"{root} holds {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); a "
            "binary classifier needs exactly two (e.g. negative/ and positive/). Check that "
            "the split has patches of both classes."
        )
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    first = next(
        (p for p in sorted(root.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg")), None
    )
    color_mode = "rgb"
    if first is not None:
        from PIL import Image  # only to see whether the images are grey

        with Image.open(first) as image:
            color_mode = "grayscale" if image.mode in ("L", "I", "I;16") else "rgb"
    dataset = keras.utils.image_dataset_from_directory(
        root,
        label_mode="binary",
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
        brightness: Random brightness shift as a fraction of the 0-1 value range (images must
            be scaled to 0-1, e.g. reflectance).
        contrast: Random contrast factor (0.2 = x0.8 to x1.2), values clipped to 0-1.
        seed: Seed; each layer gets its own (``seed``, ``seed + 1`` ...).

    Returns:
        A ``keras.Sequential`` named ``"augmentation"`` with a layer for each non-zero setting
        (no layers means identity).

    Example:
        >>> aug = augmentation(rotation=0.05, seed=1)
        >>> [layer.name for layer in aug.layers]
        ['random_flip', 'random_rotate90', 'random_rotation']
    """
    for name, value in [("rotation", rotation), ("zoom", zoom), ("translation", translation),
                        ("brightness", brightness), ("contrast", contrast)]:  # fmt: skip
        if not 0 <= value < 1:
            raise ValueError(f"{name}={value} must be in [0, 1); 0 turns it off.")
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
        steps.append(layers.RandomBrightness(brightness, value_range=(0, 1), seed=next(seeds),
                                             name="random_brightness"))  # fmt: skip
    if contrast:
        steps.append(layers.RandomContrast(contrast, value_range=(0, 1), seed=next(seeds),
                                           name="random_contrast"))  # fmt: skip
    return keras.Sequential(steps, name="augmentation")


# --------------------------------------------------------------------------------------------
# Class balance
# --------------------------------------------------------------------------------------------


def class_weights(labels: Sequence[int] | np.ndarray) -> dict[int, float]:
    """Balanced class weights for ``model.fit(class_weight=...)``: ``n / (2 * count)``.

    Args:
        labels: 0/1 labels of the training patches (e.g. from :func:`load_shards`).

    Returns:
        ``{0: w0, 1: w1}``; the rare class gets the larger weight, and the weighted counts are
        equal (``w0 * n0 == w1 * n1 == n / 2``).

    Raises:
        ValueError: a class is absent, or a label other than 0/1 (ignore labels -1 first).

    Example:
        >>> class_weights([0, 0, 0, 1])
        {0: 0.6666666666666666, 1: 2.0}
    """
    array = np.asarray(labels).ravel()
    unknown = sorted(set(np.unique(array).tolist()) - {0, 1})
    if unknown:
        raise ValueError(
            f"labels hold values {unknown}; class_weights expects 0/1 labels. Drop ignored "
            "patches (label -1) first, e.g. with load_shards."
        )
    counts = {k: int((array == k).sum()) for k in (0, 1)}
    missing = [k for k, c in counts.items() if c == 0]
    if missing:
        raise ValueError(
            f"class {missing[0]} is absent from the {len(array)} labels; a binary classifier "
            "needs examples of both classes. Label some or change the split."
        )
    return {k: len(array) / (2 * c) for k, c in counts.items()}
