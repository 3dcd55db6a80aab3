"""Tests for helpers.losses: masked segmentation losses and confusion-matrix metrics."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, jaccard_score

from helpers import losses
from helpers.labels import IGNORE_VALUE

LOSSES = [
    losses.MaskedCrossentropy,
    losses.MaskedDice,
    losses.MaskedCrossentropyDice,
    losses.MaskedFocal,
]


def value(loss, y_true, y_pred) -> float:
    return float(keras.ops.convert_to_numpy(loss(y_true, np.asarray(y_pred, "float32"))))


def value_and_gradient(loss, y_true, y_pred) -> tuple[float, np.ndarray]:
    """Loss and d loss / d y_pred (TensorFlow backend, the one the course runs on)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient helper written for the TensorFlow backend")
    import tensorflow as tf

    x = tf.Variable(np.asarray(y_pred, "float32"))
    with tf.GradientTape() as tape:
        out = loss(y_true, x)
    return float(out), tape.gradient(out, x).numpy()


def random_case(rng, shape=(2, 6, 5), channels=1, ignore_fraction=0.3):
    """Class codes with ~30 % ignored pixels and matching probabilities."""
    classes = 2 if channels == 1 else channels
    y_true = rng.integers(0, classes, size=shape).astype("int32")
    y_true[rng.random(shape) < ignore_fraction] = IGNORE_VALUE
    if channels == 1:
        y_pred = rng.uniform(0.05, 0.95, size=(*shape, 1))
    else:
        y_pred = rng.dirichlet(np.ones(channels), size=shape)
    return y_true, y_pred.astype("float32")


# --------------------------------------------------------------------------------------------
# Values against hand-computed cases
# --------------------------------------------------------------------------------------------


def test_binary_crossentropy_skips_ignored_pixels():
    y_true = np.array([[[1, 0, 255]]])
    y_pred = np.array([[[[0.8], [0.3], [0.01]]]])
    want = (-math.log(0.8) - math.log(0.7)) / 2  # the ignored pixel would add -log(0.99 or .01)
    assert value(losses.MaskedCrossentropy(), y_true, y_pred) == pytest.approx(want, rel=1e-5)
    # targets with a trailing channel axis, float dtype: same value
    y_true_4d = y_true[..., None].astype("float32")
    assert value(losses.MaskedCrossentropy(), y_true_4d, y_pred) == pytest.approx(want, rel=1e-5)


def test_sparse_crossentropy_multiclass():
    y_true = np.array([[[2, 0, 255, 1]]])
    y_pred = np.array([[[[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0], [0.2, 0.5, 0.3]]]])
    want = -(math.log(0.7) + math.log(0.6) + math.log(0.5)) / 3
    assert value(losses.MaskedCrossentropy(), y_true, y_pred) == pytest.approx(want, rel=1e-5)


def test_dice_binary_and_multiclass_by_hand():
    # valid pixels: targets 1, 1, 0 with p 0.9, 0.4, 0.2 -> intersection 1.3, |P| 1.5, |T| 2
    y_true = np.array([[[1, 1], [0, 255]]])
    y_pred = np.array([[[[0.9], [0.4]], [[0.2], [0.7]]]])
    want = 1 - (2 * 1.3 + 1) / (1.5 + 2 + 1)
    assert value(losses.MaskedDice(), y_true, y_pred) == pytest.approx(want, rel=1e-5)
    want_hard = 1 - 2 * 1.3 / 3.5
    assert value(losses.MaskedDice(smooth=0), y_true, y_pred) == pytest.approx(want_hard, 1e-5)
    # Two classes as softmax: mean of the per-class Dice losses (smooth 0).
    y2 = np.array([[[1, 0, 255]]])
    p2 = np.array([[[[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]]])
    dice0 = 2 * 0.6 / (0.2 + 0.6 + 1)  # class 0: target only at pixel 1
    dice1 = 2 * 0.8 / (0.8 + 0.4 + 1)
    want2 = 1 - (dice0 + dice1) / 2
    assert value(losses.MaskedDice(smooth=0), y2, p2) == pytest.approx(want2, rel=1e-5)


def test_crossentropy_dice_is_the_weighted_sum():
    y_true, y_pred = random_case(np.random.default_rng(0), channels=3)
    ce = value(losses.MaskedCrossentropy(), y_true, y_pred)
    dice = value(losses.MaskedDice(smooth=0.5), y_true, y_pred)
    combined = losses.MaskedCrossentropyDice(crossentropy_weight=2, dice_weight=0.5, smooth=0.5)
    assert value(combined, y_true, y_pred) == pytest.approx(2 * ce + 0.5 * dice, rel=1e-5)


def test_focal_by_hand():
    y_true = np.array([[[1, 0, 255]]])
    y_pred = np.array([[[[0.8], [0.4], [0.5]]]])
    # p_t = 0.8 and 0.6; alpha_t = 0.25 (positive) and 0.75 (negative)
    want = (0.25 * 0.2**2 * -math.log(0.8) + 0.75 * 0.4**2 * -math.log(0.6)) / 2
    loss = losses.MaskedFocal(gamma=2, alpha=0.25)
    assert value(loss, y_true, y_pred) == pytest.approx(want, rel=1e-5)
    y3 = np.array([[[2, 255]]])
    p3 = np.array([[[[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]]])
    assert value(losses.MaskedFocal(gamma=1), y3, p3) == pytest.approx(0.3 * -math.log(0.7), 1e-5)


@pytest.mark.parametrize("channels", [1, 4])
def test_focal_with_gamma_zero_is_crossentropy(channels):
    y_true, y_pred = random_case(np.random.default_rng(1), channels=channels)
    focal = value(losses.MaskedFocal(gamma=0), y_true, y_pred)
    assert focal == pytest.approx(value(losses.MaskedCrossentropy(), y_true, y_pred), rel=1e-5)


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("channels", [1, 3])
def test_from_logits_matches_probabilities(loss_class, channels):
    rng = np.random.default_rng(2)
    y_true, _ = random_case(rng, channels=channels)
    logits = rng.normal(0, 2, size=(*y_true.shape, channels)).astype("float32")
    probs = keras.ops.convert_to_numpy(
        keras.ops.sigmoid(logits) if channels == 1 else keras.ops.softmax(logits)
    )
    from_logits = value(loss_class(from_logits=True), y_true, logits)
    assert from_logits == pytest.approx(value(loss_class(), y_true, probs), rel=1e-4)


# --------------------------------------------------------------------------------------------
# Ignored pixels: no value, no gradient; all ignored -> 0
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("channels", [1, 3])
def test_ignored_pixels_change_neither_loss_nor_gradient(loss_class, channels):
    rng = np.random.default_rng(3)
    y_true, y_pred = random_case(rng, channels=channels)
    ignored = y_true == IGNORE_VALUE
    assert ignored.any() and (~ignored).any()
    other = y_pred.copy()
    _, replacement = random_case(rng, channels=channels)
    other[ignored] = replacement[ignored]  # anything at all where the target is unknown
    loss = loss_class()
    a, grad_a = value_and_gradient(loss, y_true, y_pred)
    b, grad_b = value_and_gradient(loss, y_true, other)
    assert a == pytest.approx(b, rel=1e-6) and a > 0
    assert np.all(grad_a[ignored] == 0) and np.all(grad_b[ignored] == 0)
    np.testing.assert_allclose(grad_a[~ignored], grad_b[~ignored], rtol=1e-5, atol=1e-8)
    assert np.abs(grad_a[~ignored]).sum() > 0


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("channels", [1, 3])
def test_all_ignored_batch_gives_zero_not_nan(loss_class, channels):
    y_true = np.full((2, 4, 4), IGNORE_VALUE)
    _, y_pred = random_case(np.random.default_rng(4), shape=(2, 4, 4), channels=channels)
    out, grad = value_and_gradient(loss_class(smooth=0) if "Dice" in loss_class.__name__
                                   else loss_class(), y_true, y_pred)  # fmt: skip
    assert out == 0.0
    assert np.all(grad == 0)


def test_custom_ignore_value():
    y_true = np.array([[[1, 0, 9]]])
    y_pred = np.array([[[[0.8], [0.3], [0.5]]]])
    want = (-math.log(0.8) - math.log(0.7)) / 2
    assert value(losses.MaskedCrossentropy(ignore_value=9), y_true, y_pred) == pytest.approx(
        want, rel=1e-5
    )


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    channels=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_loss_equals_loss_on_the_valid_pixels_alone(batch, rows, cols, channels, seed):
    """The rule for all shapes: a loss over a batch with ignored pixels equals the same loss
    over just its valid pixels (laid out as one row), since values average over valid pixels
    of the whole batch."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = random_case(rng, shape=(batch, rows, cols), channels=channels)
    valid = y_true != IGNORE_VALUE
    for loss in (losses.MaskedCrossentropyDice(), losses.MaskedFocal()):
        full = value(loss, y_true, y_pred)
        if not valid.any():
            assert full == 0.0
            continue
        alone = value(loss, y_true[valid][None, None], y_pred[valid][None, None])
        assert full == pytest.approx(alone, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def reference_scores(y_true, y_pred, num_classes, threshold=0.5):
    """Per-class IoU and F1 with scikit-learn, on the valid pixels."""
    valid = y_true != IGNORE_VALUE
    if y_pred.shape[-1] == 1:
        predicted = (y_pred[..., 0] >= threshold).astype(int)
    else:
        predicted = y_pred.argmax(-1)
    labels = list(range(num_classes))
    kwargs = dict(labels=labels, average=None, zero_division=0)  # every class occurs here
    return (
        jaccard_score(y_true[valid], predicted[valid], **kwargs),
        f1_score(y_true[valid], predicted[valid], **kwargs),
    )


@pytest.mark.parametrize("channels", [1, 4])
def test_metrics_stream_over_batches_and_match_scikit_learn(channels):
    rng = np.random.default_rng(5)
    n = 2 if channels == 1 else channels
    batches = [random_case(rng, shape=(3, 8, 8), channels=channels) for _ in range(3)]
    iou, f1 = losses.MaskedIoU(n), losses.MaskedF1(n)
    per_class_iou = [losses.MaskedIoU(n, class_id=k) for k in range(n)]
    for y_true, y_pred in batches:
        for metric in (iou, f1, *per_class_iou):
            metric.update_state(y_true, y_pred)
    y_true = np.concatenate([b[0] for b in batches])
    y_pred = np.concatenate([b[1] for b in batches])
    want_iou, want_f1 = reference_scores(y_true, y_pred, n)
    np.testing.assert_allclose(iou.per_class(), want_iou, rtol=1e-6)
    np.testing.assert_allclose(f1.per_class(), want_f1, rtol=1e-6)
    assert float(iou.result()) == pytest.approx(np.nanmean(want_iou), rel=1e-5)
    assert float(f1.result()) == pytest.approx(np.nanmean(want_f1), rel=1e-5)
    for k, metric in enumerate(per_class_iou):
        assert float(metric.result()) == pytest.approx(want_iou[k], rel=1e-5)
    iou.reset_state()
    assert float(iou.result()) == 0.0


def test_binary_metric_threshold_and_ignored_pixels():
    y_true = np.array([[[1, 1, 0, 0, 255, 255]]])
    y_pred = np.array([[[[0.9], [0.4], [0.3], [0.6], [0.99], [0.01]]]])
    low = losses.MaskedIoU(class_id=1, threshold=0.35)
    high = losses.MaskedIoU(class_id=1, threshold=0.5)
    low.update_state(y_true, y_pred)
    high.update_state(y_true, y_pred)
    assert float(low.result()) == pytest.approx(2 / 3)  # TP 2, FP 1 (0.6), FN 0
    assert float(high.result()) == pytest.approx(1 / 3)  # TP 1, FP 1, FN 1
    f1 = losses.MaskedF1(class_id=1)
    f1.update_state(y_true, y_pred)
    assert float(f1.result()) == pytest.approx(0.5)
    assert low.name == "iou_1" and losses.MaskedF1().name == "f1"


def test_metric_absent_class_is_nan_per_class_and_left_out_of_mean():
    metric = losses.MaskedIoU(3)
    y_true = np.array([[[0, 0, 1]]])
    y_pred = np.array([[[[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0]]]])
    metric.update_state(y_true, y_pred)
    per_class = metric.per_class()
    assert per_class[:2].tolist() == [1.0, 1.0] and np.isnan(per_class[2])
    assert float(metric.result()) == 1.0


def test_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="num_classes=1"):
        losses.MaskedIoU(1)
    with pytest.raises(ValueError, match="class_id=2"):
        losses.MaskedF1(2, class_id=2)
    metric = losses.MaskedIoU(3)
    with pytest.raises(ValueError, match="2 channels but num_classes=3"):
        metric.update_state(np.zeros((1, 2, 2)), np.full((1, 2, 2, 2), 0.5))
    with pytest.raises(ValueError, match="sample_weight"):
        metric.update_state(np.zeros((1, 2, 2)), np.full((1, 2, 2, 3), 0.3), np.ones(1))
    with pytest.raises(ValueError, match="alpha=0.25"):
        losses.MaskedFocal(alpha=0.25)(np.zeros((1, 2, 2)), np.full((1, 2, 2, 3), 0.3))
    with pytest.raises(ValueError, match="gamma=-1"):
        losses.MaskedFocal(gamma=-1)
    with pytest.raises(TypeError, match="ignore_value"):
        losses.MaskedDice(ignore_value=255.0)


# --------------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        losses.MaskedCrossentropy(ignore_value=7, from_logits=True),
        losses.MaskedDice(smooth=0.5),
        losses.MaskedCrossentropyDice(crossentropy_weight=0.3, dice_weight=2.0),
        losses.MaskedFocal(gamma=1.5, alpha=0.3),
        losses.MaskedIoU(3, class_id=2, ignore_value=9),
        losses.MaskedF1(threshold=0.3, name="f1_settlement"),
    ],
    ids=lambda obj: type(obj).__name__,
)
def test_serialize_deserialize_keeps_the_configuration(obj):
    config = keras.saving.serialize_keras_object(obj)
    assert config["registered_name"] == f"satcourse>{type(obj).__name__}"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()


def test_saved_model_loads_without_custom_objects_and_trains(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="adam",
        loss=losses.MaskedCrossentropyDice(dice_weight=0.5),
        metrics=[losses.MaskedIoU(class_id=1), losses.MaskedF1(class_id=1)],
    )
    rng = np.random.default_rng(6)
    images = rng.random((4, 8, 8, 2), dtype=np.float32)
    masks = (images[..., :1] > 0.5).astype("uint8")
    masks[:, :2] = IGNORE_VALUE
    model.fit(images, masks, epochs=1, batch_size=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = keras.models.load_model(path, compile=True)
    assert isinstance(loaded.loss, losses.MaskedCrossentropyDice)
    assert loaded.loss.dice_weight == 0.5
    before = model.evaluate(images, masks, verbose=0, return_dict=True)
    after = loaded.evaluate(images, masks, verbose=0, return_dict=True)
    assert set(after) == {"loss", "iou_1", "f1_1"}
    for key, got in after.items():
        assert got == pytest.approx(before[key], rel=1e-5)
    history = loaded.fit(images, masks, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


JAX_FIT = """
import keras, numpy as np
from helpers import losses
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8, 2))
outputs = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs)
model = keras.Model(inputs, outputs)
metrics = [losses.MaskedIoU(num_classes=3), losses.MaskedF1(num_classes=3)]
model.compile(optimizer="adam", loss=losses.MaskedCrossentropy(), metrics=metrics)
rng = np.random.default_rng(0)
images = rng.random((4, 8, 8, 2), dtype=np.float32)
masks = rng.integers(0, 3, (4, 8, 8, 1)).astype("uint8")
masks[:, :2] = 255
history = model.fit(images, masks, epochs=1, batch_size=2, verbose=0)
print(keras.backend.backend(), sorted(history.history))
"""


def test_metrics_train_under_jax_jit(tmp_path):
    """The masked metrics trace under jax.jit, the fastest Keras backend on a GPU (bincount's
    data-dependent length did not)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax", reason="JAX is installed with the dev extras on Python 3.11+")
    script = tmp_path / "fit_on_jax.py"
    script.write_text(JAX_FIT)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "jax"
    assert "'iou'" in done.stdout and "'f1'" in done.stdout, done.stdout
