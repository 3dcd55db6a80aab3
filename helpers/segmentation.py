"""Segmentation models: the classic U-Net and a U-Net with a (pretrained) ResNet50 encoder.

Both map ``(batch, rows, cols, bands)`` images to per-pixel probabilities of the same size:
one sigmoid channel for a binary mask (``num_classes=1``), or ``num_classes`` softmax channels.
Train them with the masked losses of :mod:`helpers.losses`, which skip pixels marked 255.

* :func:`build_unet` is the U-Net of Ronneberger et al. (2015), built from scratch: an encoder
  of two 3x3 convolutions and a 2x2 max-pool per level, a bottleneck, and a decoder that
  upsamples, concatenates the encoder features of the same size (the skip connections) and
  convolves twice again. Any number of bands.
* :func:`build_resnet50_unet` swaps the encoder for ResNet50, optionally with ImageNet weights
  (widened for extra bands exactly as :func:`helpers.models.build_resnet50_classifier` does).
  Feed it images preprocessed as for the classifier
  (:func:`helpers.models.preprocess_for_imagenet`) when the weights are pretrained.

Only Keras 3 APIs are used, so the models build on any backend.

Example:
    >>> from helpers import segmentation
    >>> model = segmentation.build_unet((64, 64, 4), depth=3, filters=16)
    >>> model.output_shape
    (None, 64, 64, 1)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
from keras import layers

from helpers.models import _build_backbone, _resolve_weights

__all__ = ["RESNET50_SKIPS", "build_resnet50_unet", "build_unet"]

#: ResNet50 layers whose outputs feed the decoder, from fine to coarse: strides 2, 4, 8, 16
#: (the bottleneck, ``conv5_block3_out``, has stride 32).
RESNET50_SKIPS = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out")
_RESNET50_BOTTOM = "conv5_block3_out"
_UPSAMPLING = ("transpose", "bilinear")


def _check_shape(input_shape: Sequence[int | None], factor: int, argument: str) -> tuple:
    shape = tuple(None if s is None else int(s) for s in input_shape)
    if len(shape) != 3 or shape[2] is None or shape[2] < 1:
        raise ValueError(
            f"input_shape={tuple(input_shape)!r} must be (rows, cols, bands), channels last, "
            "with at least one band."
        )
    bad = [s for s in shape[:2] if s is not None and (s < factor or s % factor)]
    if bad:
        raise ValueError(
            f"input_shape={shape!r}: rows and cols must be multiples of {factor} "
            f"({argument}), got {bad}. Crop or pad the patches, e.g. to "
            f"{max(factor, (bad[0] // factor) * factor)}, or lower the depth."
        )
    return shape


def _conv_block(x, filters: int, batch_norm: bool, name: str, bn_momentum: float = 0.99):
    """Two 3x3 convolutions, each followed by batch normalisation (optional) and ReLU."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)  # fmt: skip
        if batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _up(x, filters: int, upsampling: str, name: str):
    """Double the resolution: a 2x2 transposed convolution, or bilinear upsampling + 3x3 conv."""
    if upsampling == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
    return layers.Conv2D(filters, 3, padding="same", name=f"{name}_up")(x)


def _head(x, num_classes: int):
    """1x1 convolution to class probabilities, float32 even under mixed precision."""
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Conv2D(num_classes, 1, activation=activation, dtype="float32",
                         name="predictions")(x)  # fmt: skip


def _check_momentum(bn_momentum: float | None) -> None:
    if bn_momentum is not None and not 0.0 < bn_momentum < 1.0:
        raise ValueError(f"bn_momentum={bn_momentum!r} must be in (0, 1), e.g. 0.9.")


def _check_common(num_classes: int, upsampling: str) -> None:
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "The segmentation models expect channels-last images; call "
            "keras.config.set_image_data_format('channels_last') first."
        )
    if isinstance(num_classes, bool) or int(num_classes) < 1:
        raise ValueError(f"num_classes={num_classes!r} must be 1 (binary) or >= 2 (softmax).")
    if upsampling not in _UPSAMPLING:
        raise ValueError(f"upsampling={upsampling!r} must be one of {_UPSAMPLING}.")


def build_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    depth: int = 4,
    filters: int = 32,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    bn_momentum: float = 0.99,
    name: str = "unet",
) -> keras.Model:
    """Build the classic U-Net.

    Level ``i`` (0 to ``depth - 1``) of the encoder has ``filters * 2**i`` filters and ends with
    a 2x2 max-pool; the bottleneck has ``filters * 2**depth``; the decoder mirrors the encoder,
    concatenating the encoder output of the same level after each upsampling. Convolutions are
    "same"-padded, so the output has the input's size (the original paper used "valid"
    convolutions and cropped the skips).

    Args:
        input_shape: ``(rows, cols, bands)``; rows and cols multiples of ``2**depth``, or None
            for any size (checked when the model is called).
        num_classes: 1 for a binary mask (one sigmoid channel), >= 2 for softmax over classes.
        depth: Number of max-pool levels (>= 1); the receptive field grows with it.
        filters: Filters of the first level (>= 1), doubled at every level.
        batch_norm: Batch normalisation after every convolution (then without bias).
        dropout: Dropout rate after the bottleneck, in ``[0, 1)`` (the original U-Net drops
            out at the end of the contracting path).
        upsampling: ``"transpose"`` (2x2 transposed convolution, as in the paper) or
            ``"bilinear"`` (bilinear upsampling then a 3x3 convolution; no checkerboard
            artefacts).
        bn_momentum: Momentum of the batch-normalization moving statistics (0.99 is Keras'
            default). A short training run from scratch (a few hundred steps) needs 0.9: with
            0.99 the moving statistics lag behind the weights and validation predictions
            collapse while the training scores look fine.
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` from ``(batch, rows, cols, bands)`` to ``(batch, rows,
        cols, max(num_classes, 1))`` probabilities; the last layer is named ``"predictions"``.

    Raises:
        ValueError: On a shape not divisible by ``2**depth`` or another invalid argument.

    Example:
        >>> model = build_unet((128, 128, 4))  # 4 levels, 32 to 256 filters, 512 at the bottom
        >>> model.get_layer("bottleneck_conv1").filters
        512
    """
    _check_common(num_classes, upsampling)
    if isinstance(depth, bool) or int(depth) < 1:
        raise ValueError(f"depth={depth!r} must be an int >= 1.")
    if isinstance(filters, bool) or int(filters) < 1:
        raise ValueError(f"filters={filters!r} must be an int >= 1.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
    _check_momentum(bn_momentum)
    shape = _check_shape(input_shape, 2**depth, f"depth={depth} halves them {depth} times")

    inputs = keras.Input(shape=shape, name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = _conv_block(x, filters * 2**level, batch_norm, f"down{level}", bn_momentum)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
    x = _conv_block(x, filters * 2**depth, batch_norm, "bottleneck", bn_momentum)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        x = _up(x, filters * 2**level, upsampling, f"up{level}")
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _conv_block(x, filters * 2**level, batch_norm, f"up{level}", bn_momentum)
    return keras.Model(inputs, _head(x, num_classes), name=name)


def build_resnet50_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    weights: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    require_pretrained: bool = False,
    decoder_filters: Sequence[int] = (256, 128, 64, 32, 16),
    rgb_bands: Sequence[int] = (0, 1, 2),
    upsampling: str = "transpose",
    bn_momentum: float | None = None,
    name: str = "resnet50_unet",
) -> keras.Model:
    """Build a U-Net whose encoder is ResNet50 (optionally ImageNet-pretrained).

    The encoder is a nested model named ``"resnet50_encoder"`` with five outputs: the
    activations of :data:`RESNET50_SKIPS` (strides 2, 4, 8, 16) and the last block (stride 32).
    The decoder upsamples five times; after each of the first four it concatenates the skip of
    the same size, and every step ends with two 3x3 convolutions (batch norm, ReLU) with
    ``decoder_filters[i]`` filters. With more than three bands, pretrained weights are widened
    as in :func:`helpers.models.build_resnet50_classifier`: ``rgb_bands`` keep the B, G, R
    kernels, other bands get their scaled mean.

    Args:
        input_shape: ``(rows, cols, bands)``; rows and cols multiples of 32 (ResNet50
            downsamples 32 times), or None.
        num_classes: 1 for a binary mask (sigmoid), >= 2 for softmax.
        weights: ``"imagenet"`` (downloaded once into the Keras cache; without network a
            warning and random weights unless ``require_pretrained``), None (random), or the
            path of a ResNet50 no-top weights file.
        freeze_encoder: Make the whole encoder untrainable (its batch norm then runs in
            inference mode); train the decoder first, then unfreeze to fine-tune.
        require_pretrained: With ``weights="imagenet"``, raise instead of falling back to
            random weights when the download fails.
        decoder_filters: Filters of the five decoder steps, coarse to fine.
        rgb_bands: Input channels that receive the pretrained B, G, R kernels, in that order.
        upsampling: ``"transpose"`` or ``"bilinear"`` (see :func:`build_unet`).
        bn_momentum: Momentum of every batch-normalization layer, encoder and decoder (see
            :func:`build_unet`; 0.9 when training from scratch). None keeps the encoder's
            setting and gives the decoder Keras' 0.99.
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` from ``(batch, rows, cols, bands)`` to ``(batch, rows,
        cols, num_classes)`` probabilities.

    Raises:
        ValueError: On a shape not divisible by 32, fewer than three bands with pretrained
            weights, bad ``rgb_bands`` or ``decoder_filters``.
        FileNotFoundError: If ``weights`` is a path that does not exist.
        RuntimeError: If ``weights="imagenet"``, the download fails and ``require_pretrained``.

    Example:
        >>> model = build_resnet50_unet((64, 64, 4), weights=None)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    _check_common(num_classes, upsampling)
    _check_momentum(bn_momentum)
    shape = _check_shape(input_shape, 32, "ResNet50 halves them 5 times")
    channels = shape[2]
    decoder = tuple(int(f) for f in decoder_filters)
    if len(decoder) != 5 or min(decoder) < 1:
        raise ValueError(
            f"decoder_filters={tuple(decoder_filters)!r} must be five positive ints, one per "
            "decoder step from stride 32 to full resolution."
        )
    rgb = tuple(int(b) for b in rgb_bands)
    valid_rgb = len(set(rgb)) == 3 == len(rgb) and all(0 <= b < channels for b in rgb)
    if channels >= 3 and not valid_rgb:
        raise ValueError(
            f"rgb_bands={tuple(rgb_bands)!r} must name three different input channels in "
            f"[0, {channels}) that hold blue, green and red (ImageNet caffe order)."
        )
    weights_path = _resolve_weights(weights, require_pretrained)
    if channels < 3 and weights_path is not None:
        raise ValueError(
            f"input_shape={shape!r} has {channels} band(s); pretrained weights need at least "
            "the three visible bands. Use weights=None or add the RGB bands."
        )

    backbone = _build_backbone(shape, weights_path, rgb)
    outputs = [backbone.get_layer(n).output for n in (*RESNET50_SKIPS, _RESNET50_BOTTOM)]
    encoder = keras.Model(backbone.inputs, outputs, name="resnet50_encoder")
    encoder.trainable = not freeze_encoder
    if bn_momentum is not None:
        for layer in encoder.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = float(bn_momentum)

    inputs = keras.Input(shape=shape, name="image")
    *skips, x = encoder(inputs)
    for step, step_filters in enumerate(decoder):
        x = _up(x, step_filters, upsampling, f"decoder{step}")
        if step < len(skips):
            skip = skips[len(skips) - 1 - step]
            x = layers.Concatenate(name=f"decoder{step}_concat")([x, skip])
        x = _conv_block(x, step_filters, True, f"decoder{step}",
                        0.99 if bn_momentum is None else bn_momentum)  # fmt: skip
    return keras.Model(inputs, _head(x, num_classes), name=name)
