"""Training recipes for the course's models: callbacks, learning-rate schedules and tests.

* :func:`standard_callbacks` -- best checkpoint by a validation metric, early stopping, CSV log
  and (with TensorFlow installed) TensorBoard, all writing under one folder.
* :func:`budget_callbacks` / :func:`stop_summary` -- train within a budget of epochs and/or
  minutes, stop early on a validation metric, keep the best weights, and say in one line why
  training stopped (:class:`~helpers.budget.TimeBudget`, :class:`~helpers.budget.StopReport`).
* :class:`OneCycle` -- the one-cycle learning-rate schedule (warm up, then anneal).
* :class:`DiscriminativeSGD` -- SGD with momentum whose learning rate is multiplied per layer
  group (small steps for early, generic layers; full steps for the new head).
* :func:`lr_range_test` / :func:`suggest_learning_rate` -- the learning-rate range test: train a
  few hundred steps with an exponentially growing rate, read the rate off the loss curve.
* :func:`set_trainable` -- freeze or unfreeze backbone layers between the phases of fine-tuning.

Everything uses Keras 3 APIs only (``keras.ops``, no ``tf.*``), so it works on the TensorFlow,
JAX and PyTorch backends; the schedule and the optimizer are registered as serializable, so a
saved ``.keras`` model reloads with ``keras.models.load_model`` and no extra arguments.

Example:
    >>> steps = 10 * 30  # epochs x steps per epoch
    >>> schedule = OneCycle(max_learning_rate=0.05, total_steps=steps)
    >>> round(float(schedule(0)), 4), round(float(schedule(steps * 0.3)), 4)
    (0.002, 0.05)
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from helpers.budget import StopReport, TimeBudget, budget_callbacks, stop_summary

__all__ = [
    "DiscriminativeSGD",
    "OneCycle",
    "StopReport",
    "TimeBudget",
    "budget_callbacks",
    "history_frame",
    "lr_range_test",
    "set_trainable",
    "standard_callbacks",
    "stop_summary",
    "suggest_learning_rate",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------


def standard_callbacks(
    out_dir: PathLike,
    *,
    monitor: str = "val_auc",
    mode: str = "max",
    patience: int = 4,
    tensorboard: bool = True,
    checkpoint_name: str = "best.keras",
) -> list[keras.callbacks.Callback]:
    """The callbacks every training run in the course uses, writing under ``out_dir``.

    * ``ModelCheckpoint`` keeps ``out_dir/checkpoint_name``: the model of the best epoch by
      ``monitor`` (not the last one, which may already be overfitting).
    * ``EarlyStopping`` stops after ``patience`` epochs without improvement and restores the best
      weights, so the model in memory equals the checkpoint.
    * ``CSVLogger`` appends one row per epoch to ``out_dir/log.csv`` (open it in any spreadsheet).
    * ``TensorBoard`` writes ``out_dir/tensorboard`` (``tensorboard --logdir ...``); skipped with
      a log message when TensorBoard is not installed (e.g. a JAX-only environment).

    Args:
        out_dir: Folder for the checkpoint and logs (created).
        monitor: A metric logged by ``fit`` with validation data, e.g. ``"val_auc"`` or
            ``"val_loss"``.
        mode: ``"max"`` when larger ``monitor`` is better (AUC, F1), ``"min"`` for losses.
        patience: Epochs without improvement before stopping.
        tensorboard: Add the TensorBoard callback when it is available.
        checkpoint_name: File name of the best model (must end in ``.keras``).

    Returns:
        A list to pass as ``model.fit(..., callbacks=...)``.

    Raises:
        ValueError: On a bad ``mode``, ``patience`` or ``checkpoint_name``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r} must be 'max' (bigger is better) or 'min'.")
    if int(patience) < 1:
        raise ValueError(f"patience={patience} must be at least 1 epoch.")
    if not str(checkpoint_name).endswith(".keras"):
        raise ValueError(f"checkpoint_name={checkpoint_name!r} must end in '.keras'.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ModelCheckpoint(
            out / checkpoint_name, monitor=monitor, mode=mode, save_best_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=int(patience), restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(out / "log.csv"),
    ]
    if tensorboard:
        try:
            import tensorboard  # noqa: F401  (the callback needs the package at runtime)

            callbacks.append(keras.callbacks.TensorBoard(out / "tensorboard"))
        except ImportError:
            log.info("TensorBoard is not installed; logging to %s only.", out / "log.csv")
    return callbacks


def history_frame(*histories: keras.callbacks.History | dict) -> pd.DataFrame:
    """Concatenate ``fit`` histories (e.g. the two phases of fine-tuning) into one table.

    Returns:
        One row per epoch, numbered from 1 across all histories, with a ``phase`` column
        (1, 2, ...) and one column per logged metric.
    """
    frames = []
    for phase, history in enumerate(histories, start=1):
        logs = history.history if hasattr(history, "history") else history
        frame = pd.DataFrame(logs)
        frame.insert(0, "phase", phase)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table.index = pd.RangeIndex(1, len(table) + 1, name="epoch")
    return table


# --------------------------------------------------------------------------------------------
# Schedules and optimizers
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="satcourse")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate: warm up to a peak, then anneal far below the start.

    The rate rises along a half cosine from ``max_learning_rate / div_factor`` to
    ``max_learning_rate`` during the first ``warmup_fraction`` of ``total_steps``, then falls
    along a half cosine to ``max_learning_rate / final_div_factor`` (L. N. Smith and N. Topin,
    "Super-convergence", 2017, arXiv:1708.07120). The high middle part explores; the long low
    tail settles into a minimum, which usually gives better results in fewer epochs than a
    constant rate. Steps beyond ``total_steps`` keep the final rate.

    Args:
        max_learning_rate: The peak rate (e.g. from :func:`lr_range_test`).
        total_steps: Optimizer steps of the whole run (epochs x steps per epoch).
        warmup_fraction: Share of the steps spent warming up, in (0, 1).
        div_factor: Start rate is ``max_learning_rate / div_factor``.
        final_div_factor: Final rate is ``max_learning_rate / final_div_factor``.
    """

    def __init__(
        self,
        max_learning_rate: float,
        total_steps: int,
        warmup_fraction: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        if not max_learning_rate > 0:
            raise ValueError(f"max_learning_rate={max_learning_rate} must be positive.")
        if int(total_steps) < 2:
            raise ValueError(f"total_steps={total_steps} must be at least 2.")
        if not 0 < warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={warmup_fraction} must be in (0, 1).")
        if div_factor < 1 or final_div_factor < 1:
            raise ValueError("div_factor and final_div_factor must be >= 1.")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.max_learning_rate
        start, end = peak / self.div_factor, peak / self.final_div_factor
        warmup = max(1.0, round(self.total_steps * self.warmup_fraction))
        anneal = max(1.0, self.total_steps - warmup)
        up = ops.clip(step / warmup, 0.0, 1.0)
        down = ops.clip((step - warmup) / anneal, 0.0, 1.0)
        rising = start + (peak - start) * (1.0 - ops.cos(math.pi * up)) / 2.0
        falling = end + (peak - end) * (1.0 + ops.cos(math.pi * down)) / 2.0
        return ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


@keras.saving.register_keras_serializable(package="satcourse")
class DiscriminativeSGD(keras.optimizers.SGD):
    """SGD (with momentum) whose learning rate is scaled per group of layers.

    Fine-tuning a pretrained network, the first layers hold generic features (edges, colours)
    worth keeping, the last ones task-specific features, and the new head nothing yet. So the
    early layers get a small fraction of the rate and the head the full rate ("discriminative
    learning rates", J. Howard and S. Ruder, ULMFiT, 2018, arXiv:1801.06146).

    Keras optimizers have one learning rate; this one multiplies it, for each variable, by the
    factor of the first pattern in ``multipliers`` that matches the variable's path (e.g.
    ``"conv2_block1_1_conv/kernel"``; ``re.search``), and by 1 for variables no pattern matches.
    Everything else (momentum, Nesterov, schedules, clipping, weight decay) is plain ``SGD``.

    Args:
        learning_rate: Base rate or schedule (the head's rate).
        multipliers: ``[(pattern, factor), ...]`` or a ``{pattern: factor}`` dict, checked in
            order. E.g. for ResNet50 ``{"^conv[12]_": 0.01, "^conv3_": 0.1, "^conv4_": 0.3}``.
        momentum, nesterov, **kwargs: As for ``keras.optimizers.SGD``.

    Example:
        >>> opt = DiscriminativeSGD(0.01, momentum=0.9, multipliers={"^conv1_": 0.1})
        >>> opt.multipliers
        [['^conv1_', 0.1]]
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        multipliers: dict[str, float] | Sequence[Sequence[Any]] | None = None,
        name: str = "discriminative_sgd",
        **kwargs: Any,
    ):
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs
        )
        pairs = list(multipliers.items()) if isinstance(multipliers, dict) else multipliers or []
        self.multipliers: list[list[Any]] = []
        for pair in pairs:
            pattern, factor = pair
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"multipliers: {pattern!r} is not a regular expression: {exc}"
                ) from exc
            if not float(factor) >= 0:
                raise ValueError(f"multipliers: factor {factor!r} for {pattern!r} must be >= 0.")
            self.multipliers.append([str(pattern), float(factor)])
        self._factors: list[float] = []

    def factor_for(self, path: str) -> float:
        """The multiplier applied to the variable with this path."""
        for pattern, factor in self.multipliers:
            if re.search(pattern, path):
                return factor
        return 1.0

    def build(self, variables):
        super().build(variables)
        # Indexed like the optimizer's own slots (``_get_variable_index``).
        self._factors = [self.factor_for(v.path) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factors[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, ops.multiply(learning_rate, factor))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["multipliers"] = [list(pair) for pair in self.multipliers]
        return config


def set_trainable(
    model: keras.Model, trainable: bool, *, layers: Iterable[str] | int | None = None
):
    """Freeze or unfreeze layers (phases of fine-tuning); recompile the model afterwards.

    Args:
        model: A model or a nested backbone (e.g. ``model.get_layer("resnet50")``).
        trainable: The new ``trainable`` flag.
        layers: Which layers: ``None`` for all; an int ``n`` for the first ``n`` layers (the
            classic "freeze the first N"); or layer names.

    Returns:
        The number of layers changed.

    Raises:
        ValueError: If a named layer does not exist.

    Note:
        A ``BatchNormalization`` layer with ``trainable=False`` runs in inference mode in Keras 3
        (it uses its moving statistics and does not update them), which is what fine-tuning
        wants for frozen pretrained layers.
    """
    if layers is None:
        chosen = list(model.layers)
    elif isinstance(layers, int):
        chosen = list(model.layers[: max(0, layers)])
    else:
        names = list(layers)
        known = {layer.name: layer for layer in model.layers}
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(f"set_trainable: {model.name!r} has no layer(s) {missing}.")
        chosen = [known[n] for n in names]
    for layer in chosen:
        layer.trainable = trainable
    return len(chosen)


# --------------------------------------------------------------------------------------------
# Learning-rate range test
# --------------------------------------------------------------------------------------------


class _RangeTestCallback(keras.callbacks.Callback):
    def __init__(self, rates: np.ndarray, divergence: float, beta: float = 0.9):
        super().__init__()
        self.rates = rates
        self.divergence = divergence
        self.beta = beta
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._mean = 0.0
        self._average = 0.0
        self._best = np.inf

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = float(self.rates[len(self.losses)])

    def on_train_batch_end(self, batch, logs=None):
        # Keras reports the running mean over the epoch; recover this batch's loss from it.
        mean = float(logs["loss"])
        n = len(self.losses)
        loss = mean * (n + 1) - self._mean * n
        self._mean = mean
        self.losses.append(loss)
        # Divergence is judged on the smoothed loss: single batches are too noisy for it.
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smoothed = self._average / (1 - self.beta ** (n + 1))  # bias-corrected
        self.smoothed.append(smoothed)
        self._best = min(self._best, smoothed)
        if not np.isfinite(loss) or (n >= 10 and smoothed > self.divergence * self._best):
            self.model.stop_training = True
        if len(self.losses) >= len(self.rates):
            self.model.stop_training = True


def lr_range_test(
    model: keras.Model,
    dataset: Any,
    *,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    steps: int = 100,
    divergence: float = 4.0,
) -> pd.DataFrame:
    """Learning-rate range test (L. N. Smith, "Cyclical learning rates", 2017, arXiv:1506.01186).

    Trains ``model`` (compiled; its optimizer is used) for up to ``steps`` batches while the
    learning rate grows exponentially from ``min_lr`` to ``max_lr``, recording each batch's loss;
    stops early when the loss diverges (non-finite, or the smoothed loss above ``divergence``
    times its lowest value).
    The weights and optimizer state are restored afterwards, so the model is as before.

    Read the plot of loss against rate (log scale): the loss falls, flattens and explodes. A good
    maximum rate for one-cycle is somewhat below the bottom of the valley;
    :func:`suggest_learning_rate` picks one.

    Args:
        model: A compiled model.
        dataset: Training batches (a ``tf.data.Dataset`` or anything ``fit`` accepts), repeated
            if shorter than ``steps``.
        min_lr, max_lr: The range of rates, ``0 < min_lr < max_lr``.
        steps: Number of batches (rates) to try.
        divergence: Stop when the smoothed loss exceeds this multiple of its lowest value.

    Returns:
        A DataFrame with columns ``learning_rate``, ``loss`` and ``smoothed_loss``
        (exponential moving average, bias-corrected), one row per batch trained.

    Raises:
        ValueError: On an invalid range or step count, an uncompiled model, or an optimizer
            with a learning-rate schedule.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"Need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}.")
    if int(steps) < 5:
        raise ValueError(f"steps={steps} is too few for a range test; use 50 or more.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("lr_range_test needs a compiled model: call model.compile(...) first.")
    rates = np.geomspace(min_lr, max_lr, int(steps))
    optimizer = model.optimizer
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        raise ValueError(
            "lr_range_test sets the learning rate batch by batch; compile the model with a "
            "constant learning rate (e.g. SGD(1e-3, momentum=0.9)), not a schedule."
        )
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    saved_weights = [np.array(w) for w in model.get_weights()]
    saved_optimizer = [np.array(v) for v in optimizer.variables]
    saved_rate = float(optimizer.learning_rate)
    callback = _RangeTestCallback(rates, divergence)
    try:
        if hasattr(dataset, "repeat"):
            dataset = dataset.repeat()
        model.fit(
            dataset,
            epochs=1,
            steps_per_epoch=int(steps),
            callbacks=[callback],
            verbose=0,
            shuffle=False,
        )
    finally:
        model.set_weights(saved_weights)
        for variable, value in zip(optimizer.variables, saved_optimizer, strict=True):
            variable.assign(value)
        optimizer.learning_rate = saved_rate
    losses = np.asarray(callback.losses, dtype=float)
    return pd.DataFrame(
        {
            "learning_rate": rates[: len(losses)],
            "loss": losses,
            "smoothed_loss": np.asarray(callback.smoothed, dtype=float),
        }
    )


def suggest_learning_rate(result: pd.DataFrame, *, divisor: float = 10.0) -> float:
    """A maximum learning rate from a range test: the rate of the lowest smoothed loss / divisor.

    Dividing by 10 stays clear of the unstable edge where the loss starts to explode (the
    lowest point is already close to it); a common rule of thumb for one-cycle.

    Raises:
        ValueError: If the result holds too few points to read a minimum from.
    """
    if len(result) < 5:
        raise ValueError(
            f"The range test stopped after {len(result)} batches, too few to read; lower min_lr "
            "or check the data (the loss may be NaN from the first batch)."
        )
    best = int(np.nanargmin(result["smoothed_loss"].to_numpy()))
    return float(result["learning_rate"].iloc[best] / divisor)
