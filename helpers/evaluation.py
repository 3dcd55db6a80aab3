"""Scores for binary classifiers, and choosing the decision threshold for a purpose.

scikit-learn computes the curves (``roc_curve``, ``precision_recall_curve``) and draws them
(``ConfusionMatrixDisplay``, ``RocCurveDisplay``, ``PrecisionRecallDisplay``); the course uses
those directly. What it lacks is small and used in several notebooks:

* :func:`binary_scores` -- confusion counts, precision, recall, F1 and F-beta at one threshold,
  as one flat dict (a table row);
* :func:`choose_threshold` -- the threshold that maximises F-beta, from the precision-recall
  curve (every distinct score is a candidate, no grid).

F-beta weighs recall ``beta`` times as much as precision: ``beta = 2`` when a missed settlement
costs more than a false alarm (a survey that will be checked on the ground), ``beta = 0.5``
when false alarms cost more (an indicator that is published as is).

Example:
    >>> y = [0, 0, 1, 1]; p = [0.1, 0.6, 0.4, 0.9]
    >>> binary_scores(y, p, threshold=0.5)["f1"]
    0.5
    >>> choose_threshold(y, p, beta=2.0)
    (0.25, 0.9091)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["binary_scores", "choose_threshold", "statistics_baseline", "tile_statistics"]


def _check(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray):
    y = np.asarray(y_true).ravel()
    p = np.asarray(scores, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {p.size}; pass one per tile.")
    if y.size == 0:
        raise ValueError("y_true is empty: nothing to score (is the split empty?).")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold 0/1 labels, found {sorted(set(y.tolist()))}.")
    if not np.isfinite(p).all():
        raise ValueError("scores contain NaN or infinity; check the model's predictions.")
    return y.astype(int), p


def binary_scores(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    *,
    beta: float = 1.0,
) -> dict[str, float]:
    """Confusion counts and scores of ``scores >= threshold`` against ``y_true``.

    Args:
        y_true: 0/1 labels.
        scores: Predicted probabilities (or any score where larger means positive).
        threshold: Decision threshold; a tile is positive when its score is >= threshold.
        beta: The beta of the F-beta score in the result (``fbeta``).

    Returns:
        ``{"threshold", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "fbeta",
        "accuracy", "n"}``; a score whose denominator is zero is 0.0.

    Raises:
        ValueError: On mismatched, empty or non-binary input, or a non-positive beta.
    """
    if not beta > 0:
        raise ValueError(f"beta={beta} must be positive.")
    y, p = _check(y_true, scores)
    predicted = p >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0

    def f(b: float) -> float:
        denominator = b * b * precision + recall
        return (1 + b * b) * precision * recall / denominator if denominator else 0.0

    return {
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": precision, "recall": recall, "f1": f(1.0), "fbeta": f(float(beta)),
        "accuracy": (tp + tn) / y.size, "n": int(y.size),
    }  # fmt: skip


def choose_threshold(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    beta: float = 1.0,
) -> tuple[float, float]:
    """The decision threshold that maximises F-beta on these labels (use validation data).

    Every distinct score is a candidate (``sklearn.metrics.precision_recall_curve``). Often a
    whole interval of thresholds gives the best score (always, when the classes are perfectly
    separated); the middle of that interval is returned, rather than an end of it, so that new
    data with slightly shifted scores falls on the same side.

    Args:
        y_true: 0/1 labels with at least one positive.
        scores: Predicted probabilities.
        beta: Recall is ``beta`` times as important as precision.

    Returns:
        ``(threshold, fbeta)``: ``scores >= threshold`` reproduces the optimum; the score is
        rounded to 4 decimals.

    Raises:
        ValueError: On bad input, or labels without a positive (no threshold can find one).
    """
    if not beta > 0:
        raise ValueError(f"beta={beta} must be positive.")
    y, p = _check(y_true, scores)
    if not y.any():
        raise ValueError(
            "y_true has no positive tile, so no threshold can be chosen; use a split that holds "
            "both classes (e.g. a larger validation area)."
        )
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    b2 = beta * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        fbeta = np.where(
            b2 * precision + recall > 0,
            (1 + b2) * precision * recall / (b2 * precision + recall),
            0.0,
        )
    best = np.flatnonzero(fbeta == fbeta.max())[-1]
    low = best
    while low > 0 and fbeta[low - 1] == fbeta[best]:
        low -= 1
    # Thresholds in (thresholds[low - 1], thresholds[best]] all flag the same tiles as some
    # candidate in [low, best]: take the middle of that interval.
    threshold = (thresholds[low - 1] + thresholds[best]) / 2 if low > 0 else thresholds[best]
    return float(threshold), round(float(fbeta[best]), 4)


def tile_statistics(images: np.ndarray) -> np.ndarray:
    """Per-band mean and standard deviation of each tile: ``(N, rows, cols, bands)`` -> ``(N, 2B)``.

    The features of the simplest tile baseline: colour and a crude measure of texture.
    Nodata is not treated specially; leave out tiles that are mostly nodata first.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(
            f"images must be channels-last tiles (N, rows, cols, bands), got shape {images.shape}."
        )
    return np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2))], axis=1)


def statistics_baseline(images: np.ndarray, labels: np.ndarray) -> Pipeline:
    """Fit the baseline every tile classifier must beat: logistic regression on tile statistics.

    Standardised :func:`tile_statistics` features, ``LogisticRegression`` with balanced class
    weights (rare classes count as much as common ones). Deterministic. Works for two classes
    (0/1) and for K classes (codes 0 .. K-1: a multinomial logistic regression).

    Args:
        images: ``(N, rows, cols, bands)`` training tiles.
        labels: ``(N,)`` class codes.

    Returns:
        A fitted scikit-learn pipeline; ``predict_proba(tile_statistics(x))`` gives ``(N, K)``
        class probabilities (``[:, 1]`` scores the positive class of a binary task), and
        ``predict`` the most probable class.

    Raises:
        ValueError: If the labels hold one class only.
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "statistics_baseline needs tiles of at least two classes (both classes of a binary "
            f"task); the labels hold only {sorted(set(labels.tolist()))}."
        )
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000)
    )
    return model.fit(tile_statistics(images), labels)
