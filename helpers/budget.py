"""Training within a budget: stop on a wall-clock limit, and say in one line why training stopped.

A fixed number of epochs is a guess that is wrong for most regions: too few and the model is
worse than a baseline, too many and the run wastes an afternoon. The course instead trains up to
a budget (epochs and/or minutes) and stops early once the validation metric stops improving,
keeping the weights of the best epoch. Two callbacks make that readable:

* :class:`TimeBudget` -- stops ``fit`` before the next epoch would end past ``max_minutes``
  (estimated from the epochs so far), or mid-epoch once the budget is spent.
* :class:`StopReport` -- after ``fit``, holds one line in :attr:`StopReport.summary`: how many
  epochs ran, why training stopped (``patience``, ``budget epochs``, ``budget minutes``) and the
  best epoch with its score.

:func:`budget_callbacks` (also as ``helpers.training.budget_callbacks``) puts them together
with early stopping; :func:`stop_summary` reads the report.

Example:
    >>> budget = TimeBudget(max_minutes=30)
    >>> budget.max_seconds
    1800.0
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

__all__ = ["STOP_REASONS", "StopReport", "TimeBudget", "budget_callbacks", "stop_summary"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Why a run stopped, as :attr:`StopReport.reason` gives it.
STOP_REASONS = ("patience", "budget epochs", "budget minutes", "stopped by another callback")


class TimeBudget(keras.callbacks.Callback):
    """Stop training when the wall-clock budget is spent (``model.stop_training = True``).

    After each epoch it estimates the next epoch's duration as the mean of the epochs so far and
    stops when that epoch would end past the budget, so a run ends within ``max_minutes``
    (give or take the validation pass). A single epoch longer than the whole budget is cut
    after the batch that spends it.

    Args:
        max_minutes: The budget in minutes (> 0), counted from the start of ``fit``.
        clock: Seconds from an arbitrary origin (default :func:`time.monotonic`); tests pass a
            fake clock.

    Attributes:
        stopped_epoch: 0-based epoch after which the budget stopped training, or None.
        elapsed_seconds: Seconds from the start of ``fit`` to its last epoch's end.

    Raises:
        ValueError: ``max_minutes`` is not a positive number.
    """

    def __init__(self, max_minutes: float, *, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        if isinstance(max_minutes, bool) or not isinstance(max_minutes, int | float):
            raise ValueError(f"max_minutes={max_minutes!r} must be a number of minutes, e.g. 30.")
        if not max_minutes > 0:
            raise ValueError(
                f"max_minutes={max_minutes} must be positive (e.g. 30); use max_minutes=None in "
                "budget_callbacks for no time limit."
            )
        self.max_seconds = float(max_minutes) * 60.0
        self.clock = clock
        self.stopped_epoch: int | None = None
        self.elapsed_seconds = 0.0
        self._start = 0.0
        self._durations: list[float] = []
        self._epoch_start = 0.0
        self._spent = False

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self._durations = []
        self.stopped_epoch = None
        self.elapsed_seconds = 0.0
        self._spent = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        if self.clock() - self._start >= self.max_seconds:
            self._spent = True
            self.model.stop_training = True  # the epoch ends here; validation still runs

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self._durations.append(now - self._epoch_start)
        self.elapsed_seconds = now - self._start
        next_end = self.elapsed_seconds + float(np.mean(self._durations))
        if self._spent or next_end > self.max_seconds:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class StopReport(keras.callbacks.Callback):
    """Record why ``fit`` stopped and which epoch was best; read :attr:`summary` afterwards.

    Put it after the ``EarlyStopping`` and :class:`TimeBudget` callbacks it reads.

    Args:
        early_stopping: The run's early stopping callback (its ``monitor``, ``patience``,
            ``stopped_epoch``, ``best_epoch`` and ``best``).
        time_budget: The run's :class:`TimeBudget`, if any.
        clock: As for :class:`TimeBudget`.

    Attributes:
        reason: One of :data:`STOP_REASONS` (None before ``fit`` ends).
        epochs_run: Epochs that ran in this ``fit``.
        best_epoch: 1-based epoch of the best ``monitor`` value (None without a value).
        best: That value.
        summary: The one-line report (also logged at INFO level).
    """

    def __init__(
        self,
        early_stopping: keras.callbacks.EarlyStopping,
        time_budget: TimeBudget | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.early_stopping = early_stopping
        self.time_budget = time_budget
        self.clock = clock
        self.reason: str | None = None
        self.epochs_run = 0
        self.best_epoch: int | None = None
        self.best: float | None = None
        self.summary = "Training has not run yet."
        self._start = 0.0
        self._first_epoch = 0

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self.epochs_run = 0
        self._first_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
        self.epochs_run += 1

    def on_train_end(self, logs=None):
        early = self.early_stopping
        planned = int(self.params.get("epochs") or 0) - int(self._first_epoch or 0)
        if early.stopped_epoch > 0:
            self.reason = "patience"
        elif self.time_budget is not None and self.time_budget.stopped_epoch is not None:
            self.reason = "budget minutes"
        elif self.epochs_run >= planned:
            self.reason = "budget epochs"
        else:
            self.reason = "stopped by another callback"
        self.best = None if early.best is None else float(early.best)
        self.best_epoch = None if self.best is None else int(early.best_epoch) + 1
        self.summary = self._line(planned, (self.clock() - self._start) / 60.0)
        log.info("%s", self.summary)

    def _line(self, planned: int, minutes: float) -> str:
        early = self.early_stopping
        why = {
            "patience": f"no better {early.monitor} for {early.patience} epochs",
            "budget epochs": f"all {planned} epochs of the budget ran",
            "budget minutes": (
                f"the time budget of {self.time_budget.max_seconds / 60:g} min was spent"
                if self.time_budget is not None
                else ""
            ),
            "stopped by another callback": "another callback set model.stop_training",
        }[self.reason]
        head = (
            f"Stopped after {self.epochs_run} of {planned} epochs ({minutes:.1f} min): "
            f"{self.reason} ({why})."
        )
        if self.best_epoch is None:
            return f"{head} {early.monitor} was never logged: pass validation_data to fit."
        line = (
            f"{head} Best epoch {self.best_epoch}: {early.monitor} {self.best:.4f}, its weights "
            "restored."
        )
        last = (self._first_epoch or 0) + self.epochs_run
        if self.reason != "patience" and last - self.best_epoch < early.patience:
            line += (
                f" {early.monitor} was still improving: a larger budget (more epochs or "
                "minutes) may give a better model."
            )
        return line


def budget_callbacks(
    out_dir: PathLike | None = None,
    *,
    monitor: str = "val_loss",
    mode: str = "min",
    patience: int = 5,
    max_minutes: float | None = None,
    min_delta: float = 0.0,
    tensorboard: bool = False,
    checkpoint_name: str = "best.keras",
    clock: Any = None,
) -> list[keras.callbacks.Callback]:
    """Callbacks to train within a budget, stop early on ``monitor`` and report why it stopped.

    The budget of epochs is ``fit``'s ``epochs``; ``max_minutes`` adds one of wall-clock time
    (:class:`~helpers.budget.TimeBudget`). Early stopping ends the run after ``patience`` epochs
    without an improvement of ``monitor`` by more than ``min_delta``; whichever comes first
    ends it, and the weights of the best epoch are restored in every case. Afterwards
    :func:`stop_summary` (or the last callback's ``summary``) says in one line why training
    stopped (``patience``, ``budget epochs``, ``budget minutes``) and which epoch was best, and
    adds a hint when the metric was still improving at the end of the budget.

    Args:
        out_dir: With a folder, :func:`helpers.training.standard_callbacks` too (best
            checkpoint, CSV log, TensorBoard when ``tensorboard``), writing there; None:
            nothing is written.
        monitor: A metric logged with validation data, e.g. ``"val_iou"`` or ``"val_loss"``.
        mode: ``"max"`` when larger ``monitor`` is better, ``"min"`` for losses.
        patience: Epochs without improvement before stopping (>= 1).
        max_minutes: Wall-clock budget in minutes, or None for none.
        min_delta: Smallest change of ``monitor`` that counts as an improvement.
        tensorboard: With ``out_dir``, add TensorBoard when it is installed.
        checkpoint_name: With ``out_dir``, the best model's file name (``.keras``).
        clock: Seconds-returning function for the time budget and report (tests); default
            :func:`time.monotonic`.

    Returns:
        A list for ``model.fit(..., callbacks=...)``; its last item is the
        :class:`~helpers.budget.StopReport`.

    Raises:
        ValueError: On a bad ``mode``, ``patience``, ``min_delta``, ``max_minutes`` or
            ``checkpoint_name``.

    Example:
        >>> callbacks = budget_callbacks(monitor="val_iou", mode="max", patience=5,
        ...                              max_minutes=20)
        >>> [type(c).__name__ for c in callbacks]
        ['EarlyStopping', 'TimeBudget', 'StopReport']
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r} must be 'max' (bigger is better) or 'min'.")
    if isinstance(patience, bool) or int(patience) != patience or patience < 1:
        raise ValueError(f"patience={patience!r} must be a whole number of epochs >= 1.")
    if not min_delta >= 0:
        raise ValueError(f"min_delta={min_delta!r} must be >= 0 (0: any improvement counts).")
    timing = {} if clock is None else {"clock": clock}
    early = keras.callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=int(patience), min_delta=float(min_delta),
        restore_best_weights=True,
    )  # fmt: skip
    callbacks: list[keras.callbacks.Callback] = [early]
    if out_dir is not None:  # the standard set, with this early stopping (it has min_delta)
        from helpers.training import standard_callbacks  # training imports this module

        callbacks = [
            early if isinstance(c, keras.callbacks.EarlyStopping) else c
            for c in standard_callbacks(
                out_dir, monitor=monitor, mode=mode, patience=int(patience),
                tensorboard=tensorboard, checkpoint_name=checkpoint_name,
            )
        ]  # fmt: skip
    budget = None if max_minutes is None else TimeBudget(max_minutes, **timing)
    if budget is not None:
        callbacks.append(budget)
    callbacks.append(StopReport(early, budget, **timing))
    return callbacks


def stop_summary(callbacks: Sequence[keras.callbacks.Callback]) -> str:
    """The one-line report of the :class:`~helpers.budget.StopReport` among ``callbacks``.

    Raises:
        ValueError: ``callbacks`` holds no ``StopReport`` (build them with
            :func:`budget_callbacks`).
    """
    for callback in callbacks:
        if isinstance(callback, StopReport):
            return callback.summary
    raise ValueError(
        "callbacks holds no StopReport: build the list with training.budget_callbacks(...)."
    )
