"""Tile classifiers: a ResNet50 backbone with the classic dense head, its preprocessing, and
the model card that travels with a saved model.

* :func:`build_resnet50_classifier` builds ``ResNet50 -> pooling -> Dense -> Dropout -> output``
  for any number of input bands. With more than three bands, the pretrained first convolution is
  widened (see "Band order" below).
* :func:`preprocess_for_imagenet` turns 0-255 images into what the ImageNet backbone expects.
* :func:`write_model_card` / :func:`read_model_card` keep bands, scaling, tile size, classes and
  the decision threshold in a JSON file next to the ``.keras`` file, so nobody has to guess how
  to feed the model later.

Band order (the one convention to remember):
    The ImageNet ResNet50 weights were trained on "caffe" preprocessed images: **BGR** channel
    order with the ImageNet channel means subtracted, no scaling. :func:`preprocess_for_imagenet`
    therefore returns channels in the order ``blue, green, red, <extra bands in given order>``,
    and :func:`build_resnet50_classifier` by default (``rgb_bands=(0, 1, 2)``) puts the
    pretrained B, G, R kernels of ``conv1_conv`` on input channels 0, 1, 2. Use the two together
    and the order is right; :func:`preprocessed_band_order` tells you the order to write in the
    model card.

The code uses only Keras 3 APIs (no ``tf.*``), so models build on the TensorFlow, JAX and
PyTorch backends.

Example:
    >>> from helpers import models
    >>> model = models.build_resnet50_classifier((64, 64, 4), weights=None, dense_units=32)
    >>> model.output_shape
    (None, 1)
"""

from __future__ import annotations

import json
import logging
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from helpers.files import atomic_write_text

__all__ = [
    "DICT_CARD_KEYS",
    "EXTRA_BAND_OFFSET",
    "IMAGENET_MEAN_BGR",
    "MODEL_CARD_KEYS",
    "build_resnet50_classifier",
    "load_with_card",
    "model_card_path",
    "preprocess_for_imagenet",
    "preprocessed_band_order",
    "read_model_card",
    "resolve_weights",
    "save_with_card",
    "scale_inputs",
    "write_model_card",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

# Where Keras keeps the ResNet50 "notop" ImageNet weights (same file and hash as
# keras.applications.ResNet50 uses). We download it ourselves so a failure can be caught and
# explained instead of surfacing deep inside the application constructor.
_RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
_RESNET50_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + _RESNET50_NOTOP_FILE
)
_RESNET50_NOTOP_HASH = "4d473c1dd8becc155b73f8504c6f6626"

#: Channel means that caffe-style preprocessing subtracts, in BGR order (0-255 scale).
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
#: Constant subtracted from bands that are not red, green or blue: the mean of the ImageNet
#: means, so an extra band sits around zero like the RGB channels do.
EXTRA_BAND_OFFSET = float(np.mean(IMAGENET_MEAN_BGR))

#: Keys every model card must have.
MODEL_CARD_KEYS = (
    "bands",
    "scaling",
    "tile_size",
    "classes",
    "decision_threshold",
    "training_data",
)
_CARD_SUFFIX = ".card.json"
_FIRST_CONV = "conv1_conv"
_POOLINGS = ("avg", "max", "flatten")


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def _imagenet_weights_path(require_pretrained: bool, cache_dir: PathLike | None) -> str | None:
    """Download (or find in the Keras cache) the ResNet50 no-top weights; None on failure."""
    if cache_dir is not None:
        # get_file silently switches to /tmp/.keras when the folder is not writable (or absent).
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    try:
        return keras.utils.get_file(
            _RESNET50_NOTOP_FILE,
            _RESNET50_NOTOP_URL,
            cache_subdir="models",
            file_hash=_RESNET50_NOTOP_HASH,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        )
    except Exception as exc:  # get_file raises a bare Exception on network errors
        reason = f"{type(exc).__name__}: {exc}"
        if require_pretrained:
            raise RuntimeError(
                f"ImageNet weights could not be downloaded ({reason}). Pass a local weights "
                "file with weights=PATH, or require_pretrained=False to train from scratch."
            ) from exc
        logger.warning(
            "ImageNet weights could not be downloaded (%s); training from scratch. Pass a local "
            "weights file with weights=PATH, or require_pretrained=True to make this an error.",
            reason,
        )
        return None


def resolve_weights(
    weights: str | os.PathLike | None,
    require_pretrained: bool = False,
    *,
    cache_dir: PathLike | None = None,
) -> str | None:
    """Turn a ``weights`` argument into the path of a ResNet50 no-top weights file, or None.

    ``"imagenet"`` downloads the Keras ImageNet file once (94 MB, checked against its hash) into
    ``cache_dir/models`` (default: the Keras cache, ``~/.keras`` or ``$KERAS_HOME``) and reuses it
    afterwards. When the download fails (offline, firewall), it logs a warning that says what to
    do and returns None, so the model trains from scratch -- unless ``require_pretrained``.

    Args:
        weights: ``"imagenet"``, None (random initialisation) or the path of a local file.
        require_pretrained: Raise instead of falling back when ``"imagenet"`` cannot be had.
        cache_dir: Where downloads are kept (the file lands in ``cache_dir/models``).

    Returns:
        The weights file's path, or None for random initialisation.

    Raises:
        FileNotFoundError: If ``weights`` is a path that does not exist.
        RuntimeError: If the download fails and ``require_pretrained`` is True.

    Example:
        >>> resolve_weights(None) is None
        True
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        return _imagenet_weights_path(require_pretrained, cache_dir)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights={str(weights)!r} is neither 'imagenet', None nor an existing file. Pass "
            "the path of a ResNet50 no-top weights file (.h5 or .weights.h5), 'imagenet' to "
            "download them, or None to train from scratch."
        )
    return str(path)


_resolve_weights = resolve_weights  # the name other helpers modules import


def _widen_first_conv(kernel: np.ndarray, channels: int, rgb_bands: Sequence[int]) -> np.ndarray:
    """Pretrained (kh, kw, 3, f) kernel -> (kh, kw, channels, f), see build_resnet50_classifier."""
    mean = kernel.mean(axis=2)
    wide = np.repeat((mean * (3.0 / channels))[:, :, None, :], channels, axis=2)
    for pretrained_channel, band in enumerate(rgb_bands):
        wide[:, :, band, :] = kernel[:, :, pretrained_channel, :]
    return wide.astype(kernel.dtype)


def _resnet50(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """``keras.applications.ResNet50`` without top; any band count (no 1-or-3-bands warning)."""
    with warnings.catch_warnings():
        # Expected here: extra bands are the point of this module.
        warnings.filterwarnings("ignore", message=".*usually expects 1 or 3 input channels.*")
        return keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape
        )


def _build_backbone(
    input_shape: tuple[int, int, int],
    weights_path: str | None,
    rgb_bands: Sequence[int],
) -> keras.Model:
    """A ResNet50 (no top) for ``input_shape``; pretrained weights adapted to extra bands."""
    rows, cols, channels = input_shape
    if channels == 3 or weights_path is None:
        # rgb_bands is a permutation of (0, 1, 2) here; reorder the first kernel if it is not
        # the identity, so the pretrained B, G, R kernels land on the requested channels.
        backbone = _resnet50(input_shape, weights_path)
        if weights_path is not None and tuple(rgb_bands) != (0, 1, 2):
            conv = backbone.get_layer(_FIRST_CONV)
            kernel, *rest = conv.get_weights()
            conv.set_weights([_widen_first_conv(kernel, 3, rgb_bands), *rest])
        return backbone

    pretrained = _resnet50((rows, cols, 3), weights_path)
    backbone = _resnet50(input_shape, None)
    for layer in backbone.layers:
        if not layer.weights:  # the input layer (auto-named) and weightless layers
            continue
        source = pretrained.get_layer(layer.name).get_weights()
        if layer.name == _FIRST_CONV:
            kernel, *rest = source
            source = [_widen_first_conv(kernel, channels, rgb_bands), *rest]
        layer.set_weights(source)
    del pretrained
    return backbone


def build_resnet50_classifier(
    input_shape: Sequence[int] = (128, 128, 3),
    *,
    weights: str | os.PathLike | None = None,
    freeze_layers: int = 60,
    pooling: str = "avg",
    dense_units: int = 1024,
    dropout: float = 0.5,
    num_classes: int = 1,
    rgb_bands: Sequence[int] = (0, 1, 2),
    require_pretrained: bool = False,
    cache_dir: PathLike | None = None,
    bn_momentum: float | None = None,
) -> keras.Model:
    """Build a tile classifier: ResNet50 backbone, pooling, ``Dense``, ``Dropout``, output.

    The backbone is a nested model named ``"resnet50"`` (``model.get_layer("resnet50")``).
    Its first ``freeze_layers`` layers (in ``backbone.layers`` order, the input layer counts)
    get ``trainable=False``; the rest stay trainable. A frozen ``BatchNormalization`` layer runs
    in inference mode (Keras 3 uses the moving statistics when ``trainable`` is False), so
    fine-tuning does not disturb the pretrained statistics of the frozen part.

    More than three bands: a 3-band backbone is loaded with the pretrained weights, then a
    backbone with ``C`` input channels gets every weight copied by layer name, except the first
    convolution (``conv1_conv``), whose kernel is widened: input channels ``rgb_bands`` receive
    the pretrained kernels of ImageNet channels 0, 1, 2 (**B, G, R**, the caffe order that
    :func:`preprocess_for_imagenet` produces) unchanged, and every other channel gets the mean
    of the three pretrained kernels times ``3 / C``. Keeping the RGB kernels exact keeps the
    pretrained RGB features; the ``3 / C`` factor keeps the extra bands' added response smaller
    than the RGB response (for a grey input, ``(C - 3) / C`` of it: a quarter with 4 bands),
    so first-layer activations stay on the scale the pretrained batch-norm statistics expect.

    Args:
        input_shape: ``(rows, cols, bands)``, channels last; rows and cols at least 32.
        weights: ``"imagenet"`` (downloaded once into the Keras cache), ``None`` (random
            initialisation), or the path of a local ResNet50 no-top weights file (``.h5``, e.g.
            the Keras ImageNet file copied by hand, or a ``.weights.h5`` saved from a 3-band
            backbone with ``backbone.save_weights``).
        freeze_layers: How many backbone layers, from the input, to freeze (0 freezes none).
        pooling: ``"avg"`` (global average), ``"max"`` (global max) or ``"flatten"``.
        dense_units: Units of the hidden ``Dense`` layer (ReLU).
        dropout: Dropout rate after the hidden layer, in ``[0, 1)``.
        num_classes: 1 for a binary classifier (one sigmoid unit), >= 2 for softmax.
        rgb_bands: Input channels that receive the pretrained B, G, R kernels, in that order.
            The default ``(0, 1, 2)`` matches :func:`preprocess_for_imagenet`.
        require_pretrained: With ``weights="imagenet"``, raise instead of falling back to random
            weights when the download fails. Ignored for other ``weights``.
        cache_dir: Download cache for ``"imagenet"`` (see :func:`resolve_weights`).
        bn_momentum: Momentum of the backbone's batch-normalization moving statistics (Keras
            uses 0.99). Training from scratch on a few thousand tiles gives only a few hundred
            steps, too few for 0.99: the moving statistics lag far behind the weights and
            validation predictions collapse to one class while training looks fine. 0.9 follows
            the weights within ~20 steps. None keeps the pretrained model's setting.

    Returns:
        An uncompiled ``keras.Model`` named ``"resnet50_classifier"`` mapping
        ``(batch, rows, cols, bands)`` to ``(batch, 1)`` probabilities (sigmoid) or
        ``(batch, num_classes)`` (softmax).

    Raises:
        ValueError: On an invalid shape, pooling, rate, class count, ``rgb_bands`` or
            ``freeze_layers``.
        FileNotFoundError: If ``weights`` is a path that does not exist.
        RuntimeError: If ``weights="imagenet"``, the download fails and ``require_pretrained``.

    Example:
        >>> model = build_resnet50_classifier((32, 32, 3), weights=None, dense_units=8)
        >>> model.get_layer("resnet50").layers[59].trainable
        False
    """
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "build_resnet50_classifier expects channels-last images; call "
            "keras.config.set_image_data_format('channels_last') first."
        )
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[0] < 32 or shape[1] < 32 or shape[2] < 1:
        raise ValueError(
            f"input_shape={tuple(input_shape)!r} must be (rows, cols, bands) with rows and cols "
            ">= 32 (ResNet50 downsamples 32 times) and at least one band."
        )
    channels = shape[2]
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling={pooling!r} must be one of {_POOLINGS}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be 1 (binary) or >= 2 (softmax).")
    if bn_momentum is not None and not 0.0 < bn_momentum < 1.0:
        raise ValueError(f"bn_momentum={bn_momentum!r} must be in (0, 1), e.g. 0.9, or None.")
    rgb = tuple(int(b) for b in rgb_bands)
    valid_rgb = len(rgb) == 3 and len(set(rgb)) == 3 and all(0 <= b < channels for b in rgb)
    if channels >= 3 and not valid_rgb:
        raise ValueError(
            f"rgb_bands={tuple(rgb_bands)!r} must name three different input channels in "
            f"[0, {channels}) that hold blue, green and red (ImageNet caffe order)."
        )

    weights_path = resolve_weights(weights, require_pretrained, cache_dir=cache_dir)
    if channels < 3 and weights_path is not None:
        raise ValueError(
            f"input_shape={shape!r} has {channels} band(s); pretrained weights need at least "
            "the three visible bands. Use weights=None or add the RGB bands."
        )
    backbone = _build_backbone(shape, weights_path, rgb)

    n_layers = len(backbone.layers)
    if not 0 <= freeze_layers <= n_layers:
        raise ValueError(
            f"freeze_layers={freeze_layers!r} must be between 0 and {n_layers} (the number of "
            "ResNet50 layers)."
        )
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= freeze_layers
        if bn_momentum is not None and isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(bn_momentum)

    inputs = keras.Input(shape=shape, name="image")
    x = backbone(inputs)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="head_pool")(x)
    else:
        x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = layers.Dense(num_classes, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet50_classifier")


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def _rgb_and_extra(band_order: Sequence[str]) -> tuple[list[int], list[int]]:
    names = [str(b).lower() for b in band_order]
    if len(set(names)) != len(names):
        raise ValueError(f"band_order={tuple(band_order)!r} names a band twice.")
    missing = [c for c in ("red", "green", "blue") if c not in names]
    if missing:
        raise ValueError(
            f"band_order={tuple(band_order)!r} lacks {missing}; the ImageNet backbone needs "
            "bands named 'red', 'green' and 'blue' (any order, extra bands allowed)."
        )
    rgb = [names.index(c) for c in ("red", "green", "blue")]
    extra = [i for i in range(len(names)) if i not in rgb]
    return rgb, extra


def preprocessed_band_order(
    band_order: Sequence[str] = ("red", "green", "blue"),
) -> tuple[str, ...]:
    """Channel order that :func:`preprocess_for_imagenet` returns for ``band_order``.

    Example:
        >>> preprocessed_band_order(("blue", "green", "red", "nir"))
        ('blue', 'green', 'red', 'nir')
    """
    rgb, extra = _rgb_and_extra(band_order)
    names = [str(band_order[i]) for i in reversed(rgb)]  # R, G, B -> B, G, R
    return (*names, *(str(band_order[i]) for i in extra))


def preprocess_for_imagenet(
    images_0_255: Any, band_order: Sequence[str] = ("red", "green", "blue")
) -> Any:
    """Preprocess 0-255 images for the ImageNet ResNet50 ("caffe" style).

    Red, green and blue go through ``keras.applications.resnet50.preprocess_input``: reordered to
    **BGR** and centred by subtracting the ImageNet channel means (103.939, 116.779, 123.68),
    with no scaling. Any other band (e.g. NIR) is centred by subtracting
    :data:`EXTRA_BAND_OFFSET` (the mean of those means, about 114.8) and appended after them,
    in the given order. The result matches ``rgb_bands=(0, 1, 2)`` in
    :func:`build_resnet50_classifier`.

    Why not ``x / 255``? The pretrained filters and batch-norm statistics were learned on
    inputs of roughly -124..+152. Values in 0..1 are ~100x smaller and all positive, so the
    first layers see almost constant input and the "pretrained" features are mostly lost; the
    model then trains like one from scratch, only slower. Rescale with 1/255 only for a model
    trained from scratch on that scaling (and record it in the model card).

    Args:
        images_0_255: Channels-last images ``(..., rows, cols, bands)`` with values in 0..255
            (stretch reflectance to 8-bit first). NumPy arrays or Keras/backend tensors.
        band_order: Name of each input band, e.g. ``("blue", "green", "red", "nir")``.

    Returns:
        float32 images, same shape, channels in :func:`preprocessed_band_order` order. A
        NumPy array for NumPy input, a backend tensor otherwise.

    Raises:
        ValueError: If ``band_order`` lacks red/green/blue, repeats a band, or its length
            differs from the number of bands.

    Example:
        >>> x = np.full((1, 32, 32, 4), 128, dtype=np.uint8)
        >>> preprocess_for_imagenet(x, ("blue", "green", "red", "nir"))[0, 0, 0].round(1)
        array([24.1, 11.2,  4.3, 13.2], dtype=float32)
    """
    rgb, extra = _rgb_and_extra(band_order)
    is_numpy = isinstance(images_0_255, np.ndarray | list | tuple)
    ops = keras.ops
    x = np.asarray(images_0_255, dtype="float32") if is_numpy else ops.cast(images_0_255, "float32")
    if x.shape[-1] != len(band_order):
        raise ValueError(
            f"images have {x.shape[-1]} bands but band_order={tuple(band_order)!r} names "
            f"{len(band_order)}; pass one name per band, in order."
        )
    if is_numpy:
        if x.size and float(x.max()) > 255.5:
            logger.warning(
                "preprocess_for_imagenet got values up to %.0f; it expects 0-255 images. Stretch "
                "reflectance to 8-bit first (e.g. percentile stretch).",
                float(x.max()),
            )
        rgb_part = keras.applications.resnet50.preprocess_input(x[..., rgb].copy())
        if not extra:
            return rgb_part.astype("float32")
        out = np.concatenate([rgb_part, x[..., extra] - EXTRA_BAND_OFFSET], axis=-1)
        return out.astype("float32")
    rgb_part = keras.applications.resnet50.preprocess_input(ops.take(x, rgb, axis=-1))
    if not extra:
        return rgb_part
    return ops.concatenate([rgb_part, ops.take(x, extra, axis=-1) - EXTRA_BAND_OFFSET], axis=-1)


# --------------------------------------------------------------------------------------------
# Input scaling recorded in the model card
# --------------------------------------------------------------------------------------------

SCALING_METHODS = ("linear", "uint8_stretch")
_AFTER_STRETCH = (None, "imagenet_caffe", "1/255")


def _check_scaling(scaling: Any, bands: Sequence[str], where: str) -> dict[str, Any]:
    """Validate a card's ``scaling`` (see :func:`scale_inputs`) and return it."""
    if not isinstance(scaling, Mapping) or scaling.get("method") not in SCALING_METHODS:
        raise ValueError(
            f"Model card {where}: 'scaling' must be a dict with 'method' in {SCALING_METHODS}, "
            f"got {scaling!r}. E.g. {{'method': 'linear', 'scale': 0.0001, 'offset': 0.0}}."
        )
    if scaling["method"] == "linear":
        for key in ("scale", "offset"):
            if not isinstance(scaling.get(key, 0.0), int | float):
                raise ValueError(f"Model card {where}: scaling[{key!r}] must be a number.")
        return dict(scaling)
    limits = scaling.get("limits")
    ok = isinstance(limits, Sequence) and len(limits) == len(bands)
    ok = ok and all(len(pair) == 2 and float(pair[1]) > float(pair[0]) for pair in limits)
    if not ok:
        raise ValueError(
            f"Model card {where}: scaling['limits'] must hold one (low, high) pair with "
            f"high > low per band ({len(bands)} bands: {list(bands)}), got {limits!r}."
        )
    if scaling.get("then") not in _AFTER_STRETCH:
        raise ValueError(
            f"Model card {where}: scaling['then'] must be one of {_AFTER_STRETCH}, got "
            f"{scaling.get('then')!r}."
        )
    return dict(scaling)


def scale_inputs(images: np.ndarray, card: Mapping[str, Any]) -> np.ndarray:
    """Turn raw raster values into what the model of ``card`` expects, exactly as in training.

    The card's ``scaling`` says how, so prediction code never guesses (and never rescales per
    batch, which would make the decision threshold meaningless):

    * ``{"method": "linear", "scale": s, "offset": o}``: ``x * s + o`` (e.g. ``s = 1e-4``
      turns reflectance x10000 into reflectance); the model does the rest.
    * ``{"method": "uint8_stretch", "limits": [[low, high], ...], "then": ...}``: each band
      mapped linearly from ``(low, high)`` to 0-255 and clipped, as
      :func:`helpers.tiling.scale_to_uint8` does, then ``"then"`` applied: ``None``,
      ``"1/255"`` (divide by 255) or ``"imagenet_caffe"`` (:func:`preprocess_for_imagenet`
      with the card's ``bands``).

    Args:
        images: Channels-last raw values ``(..., rows, cols, bands)``, bands in the card's order.
        card: A model card (:func:`read_model_card`) or any mapping with ``bands`` and
            ``scaling``.

    Returns:
        float32 array of the same shape.

    Raises:
        ValueError: If the band count differs from the card's, or the scaling is invalid.

    Example:
        >>> card = {"bands": ["red"], "scaling": {"method": "linear", "scale": 1e-4}}
        >>> scale_inputs(np.full((1, 2, 2, 1), 2500, np.uint16), card)[0, 0, 0]
        array([0.25], dtype=float32)
    """
    _validate_card(card, "given to scale_inputs", required=DICT_CARD_KEYS)
    bands = list(card["bands"])
    scaling = _check_scaling(card["scaling"], bands, "given to scale_inputs")
    x = np.asarray(images, dtype=np.float32)
    if x.shape[-1] != len(bands):
        raise ValueError(
            f"The images have {x.shape[-1]} band(s) (last axis), but the model card lists "
            f"{len(bands)}: {bands}. Read exactly these bands, in this order, and put them "
            "channels-last."
        )
    if scaling["method"] == "linear":
        scale = np.float32(scaling.get("scale", 1.0))
        offset = np.float32(scaling.get("offset", 0.0))
        return x * scale + offset
    limits = np.asarray(scaling["limits"], dtype=np.float32)
    low, high = limits[:, 0], limits[:, 1]
    x = np.clip((x - low) / (high - low), 0.0, 1.0) * np.float32(255.0)
    if scaling.get("then") == "1/255":
        return x / np.float32(255.0)
    if scaling.get("then") == "imagenet_caffe":
        return preprocess_for_imagenet(x, bands)
    return x


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------


def model_card_path(path: PathLike) -> Path:
    """Card path for a model path: ``model.keras`` -> ``model.card.json`` (cards pass through)."""
    path = Path(path)
    if path.name.endswith(_CARD_SUFFIX):
        return path
    return (
        path.with_name(path.stem + _CARD_SUFFIX)
        if path.suffix
        else path.with_name(path.name + _CARD_SUFFIX)
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: Keys a card given as a dict (to :func:`read_model_card` or prediction) must have; the
#: other :data:`MODEL_CARD_KEYS` are checked when present.
DICT_CARD_KEYS = ("bands", "scaling")


def _validate_card(
    card: Mapping[str, Any], where: str, required: Sequence[str] = MODEL_CARD_KEYS
) -> None:
    missing = [k for k in required if k not in card]
    if missing:
        raise ValueError(
            f"Model card {where} lacks required key(s) {missing}. Write it with "
            f"write_model_card(..., {', '.join(f'{k}=...' for k in missing)})."
        )
    bands = card["bands"]
    if isinstance(bands, str) or not bands or not all(isinstance(b, str) for b in bands):
        raise ValueError(
            f"Model card {where}: 'bands' must be a non-empty list of band names in model input "
            f"order, got {bands!r}."
        )
    threshold = card.get("decision_threshold", 0.5)
    if threshold is not None and (  # None: a softmax model, the most probable class wins
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.0 <= threshold <= 1.0
    ):
        raise ValueError(
            f"Model card {where}: 'decision_threshold' must be a number in [0, 1] (or null "
            f"for a K-class softmax model), got {threshold!r}."
        )
    _check_scaling(card["scaling"], bands, where)


def write_model_card(path: PathLike, **fields: Any) -> Path:
    """Write the model card (JSON) next to a saved model, atomically.

    Args:
        path: The model file (``model.keras`` -> ``model.card.json``) or the card path itself.
        **fields: At least :data:`MODEL_CARD_KEYS`: ``bands`` (names in model input order),
            ``scaling`` (a dict, see :func:`scale_inputs`), ``tile_size``, ``classes``
            (e.g. ``{0: "negative", 1: "positive"}``), ``decision_threshold`` and
            ``training_data``; extra fields (metrics, dates, ...) are kept as given.

    Returns:
        The card's path.

    Raises:
        ValueError: If a required key is missing or invalid.
        TypeError: If a value cannot be written as JSON.

    Example:
        >>> write_model_card(
        ...     "outputs/model.keras", bands=["blue", "green", "red", "nir"],
        ...     scaling={"method": "linear", "scale": 1e-4}, tile_size=64,
        ...     classes={0: "other", 1: "informal"},
        ...     decision_threshold=0.5, training_data="sample region 2021",
        ... )  # doctest: +SKIP
        PosixPath('outputs/model.card.json')
    """
    card_path = model_card_path(path)
    ordered = {k: fields[k] for k in MODEL_CARD_KEYS if k in fields}
    ordered.update({k: v for k, v in fields.items() if k not in ordered})
    if isinstance(ordered.get("bands"), tuple):
        ordered["bands"] = list(ordered["bands"])
    _validate_card(ordered, f"for {card_path}")
    text = json.dumps(ordered, indent=2, default=_json_default) + "\n"
    return atomic_write_text(card_path, text)


def read_model_card(path: PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate a model card.

    Args:
        path: The model file (``model.keras``) or the card (``model.card.json``); or a card
            already in memory (a dict), which gets the same checks of the values, but needs
            only :data:`DICT_CARD_KEYS` (``bands`` and ``scaling``).

    Returns:
        The card as a dict (a copy for a dict); ``classes`` given as a mapping comes back with
        int keys (JSON stores them as strings).

    Raises:
        FileNotFoundError: If the card does not exist.
        ValueError: If it is not JSON or a required key is missing or invalid.
    """
    if isinstance(path, Mapping):
        card = dict(path)
        _validate_card(card, "given as a dict", required=DICT_CARD_KEYS)
        return _int_class_keys(card)
    card_path = model_card_path(path)
    if not card_path.is_file():
        raise FileNotFoundError(
            f"No model card at {card_path}. Write one after saving the model with "
            "helpers.models.write_model_card(model_path, ...)."
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(
            f"Model card {card_path} is not valid JSON ({exc}); rewrite it with write_model_card."
        ) from exc
    if not isinstance(card, dict):
        raise ValueError(f"Model card {card_path} must hold a JSON object; rewrite it.")
    _validate_card(card, str(card_path))
    return _int_class_keys(card)


def _int_class_keys(card: dict[str, Any]) -> dict[str, Any]:
    classes = card.get("classes")
    if isinstance(classes, Mapping) and all(str(k).lstrip("-").isdigit() for k in classes):
        card["classes"] = {int(k): v for k, v in classes.items()}
    return card


# --------------------------------------------------------------------------------------------
# Saving and loading a model with its card
# --------------------------------------------------------------------------------------------


def _check_card_fits_model(card: Mapping[str, Any], model: keras.Model, where: str) -> None:
    shape = tuple(model.inputs[0].shape[1:]) if model.inputs else None
    if not shape or len(shape) != 3:
        return  # not an image model with a fixed input: nothing to compare
    rows, cols, channels = shape
    if channels is not None and channels != len(card["bands"]):
        raise ValueError(
            f"The model card {where} lists {len(card['bands'])} band(s) {list(card['bands'])}, "
            f"but the model takes {channels}. The card belongs to another model: save the model "
            "and its card together with save_with_card."
        )
    tile = card["tile_size"]
    if rows is not None and isinstance(tile, int) and tile != rows:
        raise ValueError(
            f"The model card {where} says tile_size={tile}, but the model takes {rows} x {cols} "
            "pixels. Fix the card (or save the model again with save_with_card)."
        )


def save_with_card(
    model: keras.Model, path: PathLike, *, overwrite: bool = False, **card: Any
) -> Path:
    """Save ``model`` as ``.keras`` and its model card next to it, each file atomically.

    The model is written under a temporary name and renamed, so an interrupted save never
    leaves a broken ``model.keras``; the card is checked against the model first (band count,
    tile size), so a mismatch is caught at saving time, not months later.

    Args:
        model: The trained model.
        path: Target file, ending in ``.keras``.
        overwrite: Replace an existing model (and card).
        **card: The card's fields (see :func:`write_model_card`).

    Returns:
        The model's path; the card is at :func:`model_card_path`.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is False.
        ValueError: If ``path`` does not end in ``.keras`` or the card does not fit the model.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"path={str(path)!r} must end in '.keras' (the Keras 3 format).")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or choose another name."
        )
    fields = dict(card)
    if isinstance(fields.get("bands"), tuple):
        fields["bands"] = list(fields["bands"])
    _validate_card(fields, f"for {path}")
    _check_card_fits_model(fields, model, f"for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_model_card(path, **fields)
    return path


def load_with_card(path: PathLike, *, compile: bool = True) -> tuple[keras.Model, dict[str, Any]]:
    """Load a ``.keras`` model and its card, and check that they belong together.

    Args:
        path: The model file.
        compile: Passed to ``keras.models.load_model``.

    Returns:
        ``(model, card)``.

    Raises:
        FileNotFoundError: If the model or its card is missing.
        ValueError: If the card is invalid or does not fit the model, or the model file
            exists but is not a readable Keras model (corrupt or truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No model at {path}. Train and save one first (notebook 03 writes it)."
        )
    card = read_model_card(path)
    # The course's serializable objects (schedules, optimizers, losses, metrics) register
    # themselves on import; import them so any saved model of the course loads as it is.
    import importlib

    for module in ("helpers.training", "helpers.losses", "helpers.datasets"):
        importlib.import_module(module)
    model = _load_keras_file(path, compile=compile)
    _check_card_fits_model(card, model, str(model_card_path(path)))
    return model, card


def _load_keras_file(path: Path, *, compile: bool) -> keras.Model:
    """``keras.models.load_model``, with a clear error for a file that exists but is broken.

    Keras answers a corrupt or truncated ``.keras`` file (not a readable zip) with "File not
    found", which sends people looking for a file that is right there.
    """

    def broken(reason: str) -> ValueError:
        return ValueError(
            f"{path} exists but is not a readable Keras model (corrupt or truncated?): {reason}. "
            "Copy or download it again, or save the model again with save_with_card."
        )

    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        raise broken(f"a .keras file is a zip archive, but these {size} bytes are not one")
    try:
        return keras.models.load_model(path, compile=compile)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise broken(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        if "File not found" not in str(exc):
            raise  # e.g. an unknown layer: Keras's message says what is missing
        raise broken(str(exc)) from exc
