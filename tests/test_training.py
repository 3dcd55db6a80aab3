"""Tests for helpers.training: schedules, the layer-wise optimizer, the range test, callbacks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import training


def _tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, activation="relu", name="early")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs)


def _data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")
    return x, y


def test_one_cycle_shape():
    schedule = training.OneCycle(0.1, total_steps=100, warmup_fraction=0.3)
    rates = np.array([float(schedule(step)) for step in range(0, 121)])
    assert rates[0] == pytest.approx(0.1 / 25)
    assert rates.argmax() == 30 and rates.max() == pytest.approx(0.1)
    assert np.all(np.diff(rates[:31]) > 0) and np.all(np.diff(rates[30:101]) < 0)
    assert rates[100] == pytest.approx(0.1 / 1e4) and rates[120] == pytest.approx(rates[100])
    again = training.OneCycle.from_config(schedule.get_config())
    assert float(again(55)) == pytest.approx(float(schedule(55)))
    with pytest.raises(ValueError, match="warmup_fraction"):
        training.OneCycle(0.1, total_steps=10, warmup_fraction=1.0)


def test_discriminative_sgd_scales_each_group():
    """One step with momentum 0: each variable moves by lr x factor x gradient."""
    x, y = _data()
    plain, scaled = _tiny_model(), _tiny_model()
    scaled.set_weights(plain.get_weights())
    plain.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    multipliers = {"^early/": 0.25, "^head/bias": 0.0}
    opt = training.DiscriminativeSGD(0.1, multipliers=multipliers)
    scaled.compile(opt, "binary_crossentropy")
    before = [np.array(w) for w in plain.get_weights()]
    plain.train_on_batch(x, y)
    scaled.train_on_batch(x, y)
    for var, start, moved_plain, moved_scaled in zip(
        plain.trainable_variables, before, plain.get_weights(), scaled.get_weights(), strict=True
    ):
        factor = opt.factor_for(var.path)
        np.testing.assert_allclose(
            moved_scaled - start, factor * (moved_plain - start), rtol=1e-4, atol=1e-7
        )
    assert opt.factor_for("early/kernel") == 0.25 and opt.factor_for("head/kernel") == 1.0


def test_discriminative_sgd_saves_and_reloads(tmp_path):
    x, y = _data()
    model = _tiny_model()
    model.compile(
        training.DiscriminativeSGD(
            training.OneCycle(0.05, total_steps=20), momentum=0.9, multipliers={"early": 0.1}
        ),
        "binary_crossentropy",
    )
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, training.DiscriminativeSGD)
    assert loaded.optimizer.multipliers == [["early", 0.1]]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # training continues after loading


def test_discriminative_sgd_rejects_bad_patterns():
    with pytest.raises(ValueError, match="regular expression"):
        training.DiscriminativeSGD(0.1, multipliers={"conv(": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        training.DiscriminativeSGD(0.1, multipliers={"conv": -1})


def test_lr_range_test_restores_the_model_and_finds_a_valley():
    x, y = _data(256)
    model = _tiny_model()
    model.compile(keras.optimizers.SGD(1e-3, momentum=0.9), "binary_crossentropy")
    before = [np.array(w) for w in model.get_weights()]
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    result = training.lr_range_test(model, dataset, min_lr=1e-4, max_lr=100.0, steps=80)
    for start, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(start, now)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert int(model.optimizer.iterations) == 0
    assert list(result.columns) == ["learning_rate", "loss", "smoothed_loss"]
    assert np.all(np.diff(result.learning_rate) > 0)
    assert len(result) < 80  # a rate of 100 diverges: the test stops early
    suggestion = training.suggest_learning_rate(result)
    assert 1e-4 < suggestion < 10.0


def test_lr_range_test_bad_input():
    model = _tiny_model()
    with pytest.raises(ValueError, match="compiled"):
        training.lr_range_test(model, None)
    model.compile(keras.optimizers.SGD(training.OneCycle(0.1, 10)), "binary_crossentropy")
    with pytest.raises(ValueError, match="schedule"):
        training.lr_range_test(model, None)
    with pytest.raises(ValueError, match="min_lr"):
        training.lr_range_test(model, None, min_lr=1.0, max_lr=0.1)


def test_standard_callbacks_keep_the_best_epoch(tmp_path):
    x, y = _data(128)
    model = _tiny_model()
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", metrics=["auc"])
    callbacks = training.standard_callbacks(tmp_path, monitor="val_loss", mode="min", patience=2)
    history = model.fit(
        x, y, validation_data=(x, y), epochs=3, batch_size=32, verbose=0, callbacks=callbacks
    )
    assert (tmp_path / "best.keras").is_file()
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert len(log) == 1 + len(history.history["loss"]) and "val_loss" in log[0]
    best = keras.models.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(
        best.evaluate(x, y, verbose=0)[0], min(history.history["val_loss"]), rtol=1e-5
    )
    table = training.history_frame(history, history)
    assert list(table.phase) == [1] * 3 + [2] * 3 and table.index[0] == 1
    with pytest.raises(ValueError, match="mode"):
        training.standard_callbacks(tmp_path, mode="best")


def test_set_trainable_first_n_and_by_name():
    model = _tiny_model()
    assert training.set_trainable(model, False, layers=2) == 2
    assert [layer.trainable for layer in model.layers] == [False, False, True]
    training.set_trainable(model, True)
    training.set_trainable(model, False, layers=["head"])
    assert [layer.name for layer in model.layers if not layer.trainable] == ["head"]
    with pytest.raises(ValueError, match="no layer"):
        training.set_trainable(model, False, layers=["nope"])


# ------------------------------------------------------------------------ training within a budget


class _Script(keras.callbacks.Callback):
    """Write a scripted ``val_score`` into each epoch's logs (so the stopping rule is exact),
    remember each epoch's weights, and advance a fake clock by ``minutes`` per epoch."""

    def __init__(self, scores, clock=None, minutes=0.0, batch_minutes=0.0):
        super().__init__()
        self.scores, self.clock, self.minutes, self.batch_minutes = (
            scores,
            clock,
            minutes,
            batch_minutes,
        )
        self.weights: list[list[np.ndarray]] = []

    def on_train_batch_end(self, batch, logs=None):
        if self.clock is not None:
            self.clock.now += self.batch_minutes * 60

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = self.scores[epoch]
        self.weights.append([np.array(w) for w in self.model.get_weights()])
        if self.clock is not None:
            self.clock.now += self.minutes * 60


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _fit(callbacks, epochs, script):
    x, y = _data()
    model = _tiny_model()
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    history = model.fit(
        x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[script, *callbacks]
    )
    return model, history


def test_budget_callbacks_stop_on_patience_and_restore_the_best_epoch():
    scores = [0.1, 0.3, 0.2, 0.25, 0.28, 0.9, 0.9]
    callbacks = training.budget_callbacks(monitor="val_score", mode="max", patience=3)
    script = _Script(scores)
    model, history = _fit(callbacks, 7, script)
    assert len(history.history["loss"]) == 5  # epochs 3, 4, 5 are no better than epoch 2
    for restored, best in zip(model.get_weights(), script.weights[1], strict=True):
        np.testing.assert_array_equal(restored, best)  # epoch 2's weights, not the last ones
    report = callbacks[-1]
    assert (report.reason, report.best_epoch, report.epochs_run) == ("patience", 2, 5)
    summary = training.stop_summary(callbacks)
    assert summary.startswith("Stopped after 5 of 7 epochs")
    assert "patience (no better val_score for 3 epochs)" in summary
    assert "Best epoch 2: val_score 0.3000" in summary and "still improving" not in summary


def test_budget_callbacks_say_when_the_epoch_budget_ends_a_run_that_still_improves():
    callbacks = training.budget_callbacks(monitor="val_score", mode="max", patience=2)
    _, history = _fit(callbacks, 4, _Script([0.1, 0.2, 0.3, 0.4]))
    assert len(history.history["loss"]) == 4
    summary = training.stop_summary(callbacks)
    assert "budget epochs (all 4 epochs of the budget ran)" in summary
    assert "Best epoch 4" in summary and "still improving" in summary


def test_time_budget_stops_before_the_next_epoch_would_overrun():
    clock = _Clock()
    callbacks = training.budget_callbacks(
        monitor="val_score", mode="max", patience=5, max_minutes=10, clock=clock
    )
    script = _Script([0.5, 0.4, 0.6, 0.7, 0.8], clock=clock, minutes=4)
    model, history = _fit(callbacks, 5, script)
    # 4 min per epoch: after epoch 2 (8 min) a third would end at 12 min > 10.
    assert len(history.history["loss"]) == 2
    budget, report = callbacks[-2], callbacks[-1]
    assert isinstance(budget, training.TimeBudget) and budget.stopped_epoch == 1
    assert report.reason == "budget minutes" and report.best_epoch == 1
    assert "the time budget of 10 min was spent" in report.summary
    for restored, best in zip(model.get_weights(), script.weights[0], strict=True):
        np.testing.assert_array_equal(restored, best)


def test_time_budget_cuts_an_epoch_longer_than_the_budget():
    clock = _Clock()
    callbacks = training.budget_callbacks(
        monitor="val_score", mode="max", max_minutes=1, clock=clock
    )
    script = _Script([0.5, 0.6], clock=clock, batch_minutes=0.5)  # 4 batches: 2 min an epoch
    _, history = _fit(callbacks, 2, script)
    assert len(history.history["loss"]) == 1 and callbacks[-1].reason == "budget minutes"


def test_budget_callbacks_with_a_folder_write_the_checkpoint_and_log(tmp_path):
    x, y = _data(128)
    model = _tiny_model()
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    callbacks = training.budget_callbacks(
        tmp_path, monitor="val_loss", mode="min", patience=2, min_delta=0.5
    )
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds == ["ModelCheckpoint", "EarlyStopping", "CSVLogger", "StopReport"]
    history = model.fit(x, y, validation_data=(x, y), epochs=6, batch_size=32, verbose=0,
                        callbacks=callbacks)  # fmt: skip
    # No epoch improves val_loss by 0.5: patience stops after epoch 3.
    assert len(history.history["loss"]) == 3 and callbacks[-1].reason == "patience"
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "log.csv").is_file()


def test_budget_callbacks_bad_input():
    with pytest.raises(ValueError, match="max_minutes=0 must be positive"):
        training.budget_callbacks(max_minutes=0)
    with pytest.raises(ValueError, match="patience=0"):
        training.budget_callbacks(patience=0)
    with pytest.raises(ValueError, match="mode='best'"):
        training.budget_callbacks(mode="best")
    with pytest.raises(ValueError, match="budget_callbacks"):
        training.stop_summary([keras.callbacks.EarlyStopping()])
    report = training.budget_callbacks()[-1]
    assert report.summary == "Training has not run yet."


def test_the_report_says_when_the_metric_was_never_logged():
    callbacks = training.budget_callbacks(monitor="val_iou", mode="max", patience=2)
    with pytest.warns(UserWarning, match="val_iou"):  # Keras: the metric is not available
        _fit(callbacks, 2, _Script([0.1, 0.2]))
    summary = training.stop_summary(callbacks)
    assert "budget epochs" in summary and "val_iou was never logged" in summary
