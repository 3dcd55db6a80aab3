"""Losses and metrics for segmentation masks with an "ignore" value.

Masks are integer class codes per pixel: ``0`` and ``1`` for a binary mask (e.g. settlement /
not settlement), ``0 .. C-1`` for ``C`` classes, and :data:`helpers.labels.IGNORE_VALUE`
(255) where the class is unknown (nodata, unlabelled, outside the scene). Ignored pixels count
for nothing: they are left out of the value of every loss and metric here, and they get an
exact zero gradient, so the model is neither rewarded nor punished for what it predicts there.

Every loss and metric looks at the number of channels of the prediction:

* 1 channel: a binary model (sigmoid output, as :func:`helpers.segmentation.build_unet` builds
  with ``num_classes=1``). Targets are 0/1.
* ``C >= 2`` channels: a multi-class model (softmax output); targets are sparse class codes
  ``0 .. C-1`` (not one-hot).

Targets may be ``(batch, rows, cols)`` or ``(batch, rows, cols, 1)``, any integer or float
dtype. Losses average over all valid pixels of the batch (not per image, so an image with few
valid pixels weighs less) and return 0 for a batch where every pixel is ignored.

Losses: :class:`MaskedCrossentropy`, :class:`MaskedDice`, :class:`MaskedCrossentropyDice`,
:class:`MaskedFocal`. Metrics (streaming confusion matrix over the epoch):
:class:`MaskedIoU`, :class:`MaskedF1`.

All are written with ``keras.ops`` only (any Keras backend) and registered as Keras
serializable objects, so a saved model loads with ``keras.models.load_model("model.keras")``
and no ``custom_objects`` once this module is imported.

Example:
    >>> import keras
    >>> from helpers import losses, segmentation
    >>> model = segmentation.build_unet((64, 64, 4), depth=2, filters=8)
    >>> model.compile(
    ...     optimizer="adam",
    ...     loss=losses.MaskedCrossentropyDice(),
    ...     metrics=[losses.MaskedIoU(class_id=1), losses.MaskedF1(class_id=1)],
    ... )
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from helpers.labels import IGNORE_VALUE

__all__ = [
    "MaskedCrossentropy",
    "MaskedCrossentropyDice",
    "MaskedDice",
    "MaskedF1",
    "MaskedFocal",
    "MaskedIoU",
]

_PACKAGE = "satcourse"
_EPSILON = 1e-7


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _check_ignore_value(ignore_value: int) -> int:
    if isinstance(ignore_value, bool) or not isinstance(ignore_value, int | np.integer):
        raise TypeError(
            f"ignore_value={ignore_value!r} must be an int (the mask value of unknown pixels, "
            f"{IGNORE_VALUE} by default)."
        )
    return int(ignore_value)


def _prepare(
    y_true: Any, y_pred: Any, ignore_value: int, from_logits: bool
) -> tuple[Any, Any, Any, int]:
    """Align targets with predictions.

    Returns ``(codes, probs, valid, channels)``: ``codes`` int32 ``(batch, rows, cols)`` with
    ignored pixels set to 0 (so no ignore value ever reaches a log or a one-hot), ``probs``
    float32 ``(batch, rows, cols, channels)`` probabilities, ``valid`` float32 ``(batch, rows,
    cols)``: 1 where the target is known, 0 where ignored.
    """
    y_pred = ops.cast(y_pred, "float32")
    channels = y_pred.shape[-1]
    if channels is None:
        raise ValueError(
            "The prediction's last axis (channels) must have a known size: 1 for a sigmoid "
            "output, the number of classes for a softmax output."
        )
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    valid_bool = ops.not_equal(y_true, ops.cast(ignore_value, y_true.dtype))
    codes = ops.where(valid_bool, ops.cast(y_true, "int32"), 0)
    if from_logits:
        probs = ops.sigmoid(y_pred) if channels == 1 else ops.softmax(y_pred, axis=-1)
    else:
        probs = y_pred
    return codes, probs, ops.cast(valid_bool, "float32"), int(channels)


def _masked_mean(values: Any, valid: Any) -> Any:
    """Mean of ``values`` over valid pixels; 0 (not NaN) when there is none."""
    return ops.sum(values * valid) / ops.maximum(ops.sum(valid), 1.0)


def _crossentropy_map(codes: Any, probs: Any, logits: Any, channels: int) -> Any:
    """Per-pixel cross-entropy ``(batch, rows, cols)``; ``logits`` is None for probabilities."""
    if channels == 1:
        target = ops.expand_dims(ops.cast(codes, "float32"), -1)
        output = probs if logits is None else logits
        return ops.binary_crossentropy(target, output, from_logits=logits is not None)[..., 0]
    output = probs if logits is None else logits
    return ops.sparse_categorical_crossentropy(codes, output, from_logits=logits is not None)


def _dice_loss(codes: Any, probs: Any, valid: Any, channels: int, smooth: float) -> Any:
    """``1 - soft Dice`` over the valid pixels of the batch (mean over classes if C >= 2)."""
    if channels == 1:
        target = ops.cast(codes, "float32")[..., None]
    else:
        target = ops.one_hot(codes, channels, dtype="float32")
    weight = valid[..., None]
    axes = tuple(range(len(probs.shape) - 1))  # all but the channel axis
    intersection = ops.sum(probs * target * weight, axis=axes)
    total = ops.sum((probs + target) * weight, axis=axes)
    dice = (2.0 * intersection + smooth) / ops.maximum(total + smooth, _EPSILON)
    loss = 1.0 - ops.mean(dice)
    # smooth=0 and no valid pixel would give 1 - 0; the rule is "all ignored -> 0".
    return ops.where(ops.sum(valid) > 0, loss, 0.0)


class _MaskedLoss(keras.losses.Loss):
    """Base: the subclass returns one scalar per batch (already averaged over valid pixels)."""

    def __init__(
        self,
        *,
        ignore_value: int = IGNORE_VALUE,
        from_logits: bool = False,
        name: str | None = None,
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_value = _check_ignore_value(ignore_value)
        self.from_logits = bool(from_logits)

    def _inputs(self, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any, Any, int]:
        codes, probs, valid, channels = _prepare(
            y_true, y_pred, self.ignore_value, self.from_logits
        )
        logits = ops.cast(y_pred, "float32") if self.from_logits else None
        return codes, probs, logits, valid, channels

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "ignore_value": self.ignore_value,
            "from_logits": self.from_logits,
        }


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedCrossentropy(_MaskedLoss):
    """Cross-entropy averaged over the pixels whose target is not ``ignore_value``.

    Binary cross-entropy for a 1-channel (sigmoid) prediction, sparse categorical
    cross-entropy for ``C >= 2`` channels (softmax).

    Args:
        ignore_value: Mask value of pixels to leave out (default 255).
        from_logits: True if the model outputs logits (no sigmoid/softmax).
        name: Name of the loss.
        reduction: Keras reduction; the value is already one number per batch.
        dtype: Dtype of the computation (Keras' default if None).

    Example:
        >>> loss = MaskedCrossentropy()
        >>> float(loss(np.array([[[1, 255]]]), np.array([[[[0.5], [0.9]]]])))  # log(2)
        0.6931...
    """

    def __init__(self, *, name: str = "masked_crossentropy", **kwargs: Any):
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        codes, probs, logits, valid, channels = self._inputs(y_true, y_pred)
        return _masked_mean(_crossentropy_map(codes, probs, logits, channels), valid)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedDice(_MaskedLoss):
    """Soft Dice loss, ``1 - (2 |P * T| + s) / (|P| + |T| + s)``, over the valid pixels.

    Sums run over all valid pixels of the batch (not image by image), which keeps images
    without any positive pixel from dominating. With ``C >= 2`` channels the loss is the mean
    over classes of the per-class Dice loss (targets one-hot encoded). Dice cares about
    overlap, not about pixel counts, so it suits rare classes; pair it with cross-entropy
    (:class:`MaskedCrossentropyDice`) for smooth, well-calibrated training.

    Args:
        smooth: ``s``, added to numerator and denominator (>= 0): a class absent from both
            target and prediction scores a perfect Dice instead of 0/0.
        ignore_value: Mask value of pixels to leave out (default 255).
        from_logits: True if the model outputs logits.
        name: Name of the loss.
        **kwargs: ``reduction`` and ``dtype`` as in ``keras.losses.Loss``.

    Example:
        >>> loss = MaskedDice(smooth=0.0)
        >>> round(float(loss(np.array([[[1, 0]]]), np.array([[[[1.0], [1.0]]]]))), 4)  # 1 - 2/3
        0.3333
    """

    def __init__(self, *, smooth: float = 1.0, name: str = "masked_dice", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        if not smooth >= 0:
            raise ValueError(f"smooth={smooth!r} must be >= 0 (1.0 is the usual choice).")
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        codes, probs, _, valid, channels = self._inputs(y_true, y_pred)
        return _dice_loss(codes, probs, valid, channels, self.smooth)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedCrossentropyDice(_MaskedLoss):
    """``crossentropy_weight * cross-entropy + dice_weight * Dice loss``, ignored pixels out.

    The usual default for segmentation: cross-entropy gives every pixel a smooth gradient,
    Dice keeps a rare class from being drowned by the background.

    Args:
        crossentropy_weight: Weight of :class:`MaskedCrossentropy`.
        dice_weight: Weight of :class:`MaskedDice`.
        smooth: Dice smoothing (see :class:`MaskedDice`).
        ignore_value: Mask value of pixels to leave out (default 255).
        from_logits: True if the model outputs logits.
        name: Name of the loss.
        **kwargs: ``reduction`` and ``dtype`` as in ``keras.losses.Loss``.

    Example:
        >>> loss = MaskedCrossentropyDice(dice_weight=0.5)
    """

    def __init__(
        self,
        *,
        crossentropy_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "masked_crossentropy_dice",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        for label, value in (("crossentropy_weight", crossentropy_weight),
                             ("dice_weight", dice_weight), ("smooth", smooth)):  # fmt: skip
            if not value >= 0:
                raise ValueError(f"{label}={value!r} must be >= 0.")
        self.crossentropy_weight = float(crossentropy_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        codes, probs, logits, valid, channels = self._inputs(y_true, y_pred)
        crossentropy = _masked_mean(_crossentropy_map(codes, probs, logits, channels), valid)
        dice = _dice_loss(codes, probs, valid, channels, self.smooth)
        return self.crossentropy_weight * crossentropy + self.dice_weight * dice

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "crossentropy_weight": self.crossentropy_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedFocal(_MaskedLoss):
    """Focal loss (Lin et al. 2017), averaged over the valid pixels.

    ``-alpha_t (1 - p_t)^gamma log(p_t)``, where ``p_t`` is the predicted probability of the
    true class: well-classified pixels (``p_t`` near 1) are down-weighted, so training
    concentrates on the hard ones. ``gamma = 0`` and ``alpha = None`` give the cross-entropy.

    Args:
        gamma: Focusing parameter (>= 0; 2 in the paper).
        alpha: Binary only: weight of the positive class (``1 - alpha`` for the negative one),
            e.g. 0.25 as in the paper; None weighs both classes 1. Must be None for
            multi-class predictions.
        ignore_value: Mask value of pixels to leave out (default 255).
        from_logits: True if the model outputs logits.
        name: Name of the loss.
        **kwargs: ``reduction`` and ``dtype`` as in ``keras.losses.Loss``.

    Example:
        >>> loss = MaskedFocal(gamma=2.0)
        >>> round(float(loss(np.array([[[1]]]), np.array([[[[0.5]]]]))), 4)  # 0.25 * log(2)
        0.1733
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        name: str = "masked_focal",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        if not gamma >= 0:
            raise ValueError(f"gamma={gamma!r} must be >= 0 (0 gives the cross-entropy).")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha={alpha!r} must be in [0, 1], or None for no weighting.")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        codes, probs, logits, valid, channels = self._inputs(y_true, y_pred)
        crossentropy = _crossentropy_map(codes, probs, logits, channels)  # -log(p_t)
        if channels == 1:
            target = ops.cast(codes, "float32")
            p = probs[..., 0]
            p_t = target * p + (1.0 - target) * (1.0 - p)
        else:
            p_t = ops.sum(probs * ops.one_hot(codes, channels, dtype="float32"), axis=-1)
        # Lower bound: the gradient of x**gamma is infinite at 0 when gamma < 1.
        modulator = ops.power(ops.clip(1.0 - p_t, _EPSILON, 1.0), self.gamma)
        values = modulator * crossentropy
        if self.alpha is not None:
            if channels != 1:
                raise ValueError(
                    f"alpha={self.alpha} weighs the positive class of a binary (1-channel) "
                    f"prediction, but this one has {channels} channels; use alpha=None."
                )
            target = ops.cast(codes, "float32")
            values = values * (target * self.alpha + (1.0 - target) * (1.0 - self.alpha))
        return _masked_mean(values, valid)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


class _ConfusionMatrixMetric(keras.metrics.Metric):
    """Streaming ``num_classes x num_classes`` confusion matrix (rows: truth, cols: prediction)
    over the valid pixels; subclasses turn it into a score."""

    _short_name = "score"

    def __init__(
        self,
        num_classes: int = 2,
        class_id: int | None = None,
        *,
        threshold: float = 0.5,
        ignore_value: int = IGNORE_VALUE,
        name: str | None = None,
        dtype: Any = None,
    ):
        if isinstance(num_classes, bool) or int(num_classes) < 2:
            raise ValueError(
                f"num_classes={num_classes!r} must be >= 2 (2 for a binary mask: background "
                "and foreground)."
            )
        num_classes = int(num_classes)
        if class_id is not None and not 0 <= int(class_id) < num_classes:
            raise ValueError(
                f"class_id={class_id!r} must be in [0, {num_classes}) or None for the mean over "
                "classes."
            )
        if not 0 < threshold < 1:
            raise ValueError(f"threshold={threshold!r} must be in (0, 1).")
        if name is None:
            name = self._short_name if class_id is None else f"{self._short_name}_{class_id}"
        super().__init__(name=name, dtype=dtype)
        self.num_classes = num_classes
        self.class_id = None if class_id is None else int(class_id)
        self.threshold = float(threshold)
        self.ignore_value = _check_ignore_value(ignore_value)
        # int64 counts stay exact however many pixels an epoch has.
        self.confusion_matrix = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="int64",
            name="confusion_matrix",
        )  # fmt: skip

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add a batch: ``y_true`` class codes, ``y_pred`` probabilities (or scores).

        ``sample_weight`` is not supported (ignored pixels are the mask value), so it must be
        None.
        """
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} does not take sample_weight; mark pixels to leave out "
                f"with the mask value {self.ignore_value} instead."
            )
        codes, probs, valid, channels = _prepare(y_true, y_pred, self.ignore_value, False)
        n = self.num_classes
        if channels == 1:
            if n != 2:
                raise ValueError(
                    f"A 1-channel (binary) prediction has 2 classes, but num_classes={n}."
                )
            predicted = ops.cast(probs[..., 0] >= self.threshold, "int32")
        else:
            if channels != n:
                raise ValueError(
                    f"The prediction has {channels} channels but num_classes={n}; they must match."
                )
            predicted = ops.cast(ops.argmax(probs, axis=-1), "int32")
        # Out-of-range codes and ignored pixels go to one extra bin, dropped below.
        in_range = (valid > 0) & (codes >= 0) & (codes < n)
        index = ops.where(in_range, codes * n + predicted, n * n)
        # segment_sum with a fixed number of bins traces under jax.jit (bincount's length is
        # data-dependent there).
        flat = ops.reshape(index, (-1,))
        counts = ops.segment_sum(ops.ones_like(flat), flat, num_segments=n * n + 1)
        batch = ops.reshape(ops.cast(counts[: n * n], "int64"), (n, n))
        self.confusion_matrix.assign_add(batch)

    def reset_state(self) -> None:
        self.confusion_matrix.assign(ops.zeros((self.num_classes,) * 2, dtype="int64"))

    def _scores(self, matrix: Any) -> tuple[Any, Any]:
        """Per-class ``(numerator, denominator)``, float32."""
        raise NotImplementedError

    def result(self) -> Any:
        numerator, denominator = self._scores(ops.cast(self.confusion_matrix, "float32"))
        if self.class_id is not None:
            return ops.divide_no_nan(numerator[self.class_id], denominator[self.class_id])
        # Mean over the classes that occur (in truth or prediction); 0 before any data.
        present = ops.cast(denominator > 0, "float32")
        per_class = ops.divide_no_nan(numerator, denominator)
        return ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))

    def per_class(self) -> np.ndarray:
        """Score of every class as a NumPy array; NaN for a class absent from truth and
        prediction."""
        numerator, denominator = self._scores(ops.cast(self.confusion_matrix, "float32"))
        numerator = ops.convert_to_numpy(numerator).astype(np.float64)
        denominator = ops.convert_to_numpy(denominator).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / denominator, np.nan)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "class_id": self.class_id,
            "threshold": self.threshold,
            "ignore_value": self.ignore_value,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedIoU(_ConfusionMatrixMetric):
    """Intersection over union ``TP / (TP + FP + FN)`` from a streaming confusion matrix.

    Counts accumulate over all batches until ``reset_state`` (Keras resets every epoch), so
    the value is the IoU of the whole epoch, not a mean of per-batch values. Pixels whose
    target is ``ignore_value`` are not counted.

    Args:
        num_classes: Number of classes; 2 for a binary (1-channel sigmoid) model.
        class_id: Report this class's IoU (e.g. 1, the foreground of a binary mask); None
            reports the mean over the classes present in truth or prediction (mean IoU).
        threshold: Binary only: probability from which a pixel is predicted as class 1.
        ignore_value: Mask value of pixels to leave out (default 255).
        name: Metric name; default ``"iou"`` or ``"iou_<class_id>"``.
        dtype: Dtype of the result.

    Example:
        >>> metric = MaskedIoU(class_id=1)
        >>> metric.update_state(np.array([[[1, 1, 0, 255]]]), np.array([[[[0.9], [0.2], [0.7],
        ...                                                                  [0.9]]]]))
        >>> float(metric.result())  # TP 1, FN 1, FP 1
        0.3333...
    """

    _short_name = "iou"

    def _scores(self, matrix: Any) -> tuple[Any, Any]:
        true_positives = ops.diagonal(matrix)
        return true_positives, ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - true_positives


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedF1(_ConfusionMatrixMetric):
    """F1 score (= Dice coefficient) ``2 TP / (2 TP + FP + FN)`` from a streaming confusion
    matrix; arguments as for :class:`MaskedIoU` (default name ``"f1"`` or ``"f1_<class_id>"``).

    Example:
        >>> metric = MaskedF1(class_id=1)
        >>> metric.update_state(np.array([[[1, 1, 0]]]), np.array([[[[0.9], [0.2], [0.7]]]]))
        >>> float(metric.result())  # 2 / (2 + 1 + 1)
        0.5
    """

    _short_name = "f1"

    def _scores(self, matrix: Any) -> tuple[Any, Any]:
        true_positives = ops.diagonal(matrix)
        return 2.0 * true_positives, ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1)
