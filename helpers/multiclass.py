"""Scores and figures for K-class tile classifiers (land-cover classes, a softmax output).

The binary tools of :mod:`helpers.evaluation` answer "how good is the positive class at this
threshold"; with K classes there is no threshold (the most probable class wins), and the
questions become per class: which classes are found (recall), which are trusted (precision),
and which are confused with which (the K x K confusion matrix).

* :func:`classifier_head`: output units, activation and loss for K classes (a sigmoid unit
  for two, softmax with sparse categorical cross-entropy for more).
* :func:`predicted_classes`: softmax probabilities ``(N, K)`` -> class codes ``(N,)``.
* :func:`per_class_scores`: precision, recall, F1 and support of each class, as a table.
* :func:`summary_scores`: overall accuracy, macro-F1 (each class counts the same, the score to
  choose models by when classes are unbalanced) and weighted F1.
* :func:`confusion_matrices`: counts and row-normalised (recall on the diagonal).
* :func:`plot_confusion_matrix` and :func:`plot_error_gallery`: figures, returned.

Example:
    >>> y_true, y_pred = [0, 1, 2, 2], [0, 2, 2, 2]
    >>> summary_scores(y_true, y_pred, 3)["accuracy"]
    0.75
    >>> confusion_matrices(y_true, y_pred, 3)[0].tolist()
    [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

__all__ = [
    "classifier_head",
    "confusion_matrices",
    "per_class_scores",
    "plot_confusion_matrix",
    "plot_error_gallery",
    "predicted_classes",
    "summary_scores",
]

ClassNames = Mapping[int, str] | Sequence[str]


def _names(class_names: ClassNames, num_classes: int | None = None) -> list[str]:
    """``{code: name}`` or a list -> names in code order; checks codes 0 .. K-1."""
    if isinstance(class_names, Mapping):
        codes = sorted(int(c) for c in class_names)
        if codes != list(range(len(codes))):
            raise ValueError(
                f"class_names has codes {codes}; expected 0 .. K-1 ({{0: 'name', 1: ...}})."
            )
        names = [str(class_names[c] if c in class_names else class_names[str(c)]) for c in codes]
    else:
        names = [str(n) for n in class_names]
    if len(names) < 2 or (num_classes is not None and len(names) != num_classes):
        want = f"{num_classes}" if num_classes is not None else "at least 2"
        raise ValueError(f"class_names has {len(names)} name(s) ({names}); expected {want}.")
    return names


def _codes(y: Sequence[int] | np.ndarray, num_classes: int, what: str) -> np.ndarray:
    array = np.asarray(y).ravel()
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        bad = sorted(set(array[(array < 0) | (array >= num_classes)].tolist()))
        raise ValueError(
            f"{what} holds {bad}, outside the class codes 0 .. {num_classes - 1}; drop ignored "
            "tiles (-1) first, or pass the right number of classes."
        )
    return array.astype(np.int64)


def classifier_head(num_classes: int) -> dict[str, Any]:
    """The output of a classifier for ``num_classes`` classes, and the loss that goes with it.

    Two classes keep the binary set-up (one sigmoid unit, binary cross-entropy, float 0/1
    labels ``(batch, 1)``, a decision threshold to choose); K > 2 classes get K softmax units
    and sparse categorical cross-entropy on integer labels ``(batch,)`` (the labels
    :func:`helpers.datasets.from_arrays` gives), the most probable class winning.

    Args:
        num_classes: K, at least 2.

    Returns:
        ``{"units", "activation", "loss", "binary"}``; ``units`` is the ``num_classes``
        argument of :func:`helpers.models.build_resnet50_classifier`.

    Raises:
        ValueError: ``num_classes`` below 2.

    Example:
        >>> classifier_head(10)["loss"]
        'sparse_categorical_crossentropy'
    """
    if isinstance(num_classes, bool) or int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r} must be >= 2 (2 is the binary case).")
    if int(num_classes) == 2:
        return {"units": 1, "activation": "sigmoid", "loss": "binary_crossentropy", "binary": True}
    return {
        "units": int(num_classes),
        "activation": "softmax",
        "loss": "sparse_categorical_crossentropy",
        "binary": False,
    }


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class of each tile: ``(N, K)`` softmax output -> ``(N,)`` int64.

    Raises:
        ValueError: ``probabilities`` is not ``(N, K)`` with K >= 2 (a sigmoid output
            ``(N, 1)`` needs a threshold instead: :func:`helpers.evaluation.choose_threshold`).
    """
    array = np.asarray(probabilities)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(
            f"probabilities has shape {array.shape}; expected (N, K) with K >= 2 (softmax). A "
            "binary (N, 1) output needs a threshold: see evaluation.choose_threshold."
        )
    return array.argmax(axis=1).astype(np.int64)


def per_class_scores(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, class_names: ClassNames
) -> pd.DataFrame:
    """Precision, recall, F1 and support (true tiles) of every class.

    Args:
        y_true: True class codes ``0 .. K-1``.
        y_pred: Predicted class codes (e.g. :func:`predicted_classes`).
        class_names: ``{code: name}`` or names in code order; K is their number.

    Returns:
        A table indexed by class name with ``precision``, ``recall``, ``f1`` and ``support``.
        A class never predicted has precision 0 (not undefined); one absent from ``y_true``
        has recall 0 and support 0.

    Raises:
        ValueError: Codes outside ``0 .. K-1``, or arrays of different lengths.
    """
    names = _names(class_names)
    k = len(names)
    truth, pred = _codes(y_true, k, "y_true"), _codes(y_pred, k, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has {truth.size} tiles but y_pred has {pred.size}.")
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, pred, labels=list(range(k)), zero_division=0
    )
    table = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index(names, name="class"),
    )
    return table


def summary_scores(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> dict[str, float]:
    """Overall accuracy, macro-F1 and support-weighted F1 over ``num_classes`` classes.

    Macro-F1 averages the per-class F1 with equal weight: a rare class that is never found
    costs as much as a common one, where accuracy hides it.

    Returns:
        ``{"accuracy", "macro_f1", "weighted_f1", "tiles"}``.

    Raises:
        ValueError: Codes outside ``0 .. num_classes - 1``.
    """
    truth = _codes(y_true, num_classes, "y_true")
    pred = _codes(y_pred, num_classes, "y_pred")
    labels = list(range(num_classes))
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(
            f1_score(truth, pred, labels=labels, average="weighted", zero_division=0)
        ),
        "tiles": int(truth.size),
    }


def confusion_matrices(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The K x K confusion matrix: rows are true classes, columns predicted classes.

    Returns:
        ``(counts, normalised)``: int64 counts, and each row divided by its total (the share
        of a true class predicted as each class; recall on the diagonal). Rows of classes
        absent from ``y_true`` are 0.

    Raises:
        ValueError: Codes outside ``0 .. num_classes - 1``.
    """
    truth = _codes(y_true, num_classes, "y_true")
    pred = _codes(y_pred, num_classes, "y_pred")
    counts = confusion_matrix(truth, pred, labels=list(range(num_classes))).astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return counts, normalised


def plot_confusion_matrix(
    counts: np.ndarray,
    class_names: ClassNames,
    *,
    normalize: bool = True,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Draw a confusion matrix: colour by row share (or count), each cell annotated.

    Args:
        counts: K x K counts from :func:`confusion_matrices`.
        class_names: Names in code order (or ``{code: name}``).
        normalize: Colour and label cells by their share of the row (true class); counts
            otherwise.
        title: Figure title; a default says what the colours mean.
        ax: Axes to draw on; a new figure when None.

    Returns:
        The figure.
    """
    counts = np.asarray(counts)
    names = _names(class_names, counts.shape[0])
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    values = shares if normalize else counts
    if ax is None:
        side = 2.5 + 0.55 * len(names)
        _, ax = plt.subplots(figsize=(side + 1.5, side), layout="constrained")
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.figure.colorbar(image, ax=ax, label="share of the true class" if normalize else "tiles")
    for (row, col), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        dark = value > (0.5 if normalize else values.max() / 2)
        ax.text(col, row, text, ha="center", va="center", fontsize=7,
                color="white" if dark else "black")  # fmt: skip
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    default = "Confusion matrix (rows sum to 1)" if normalize else "Confusion matrix"
    ax.set(xlabel="predicted class", ylabel="true class", title=title or default)
    return ax.figure


def plot_error_gallery(
    images: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: ClassNames,
    *,
    per_class: int = 4,
    view: Sequence[int] = (0, 1, 2),
    title: str | None = None,
) -> plt.Figure:
    """One row per true class: its misclassified tiles, the most confident mistakes first.

    Args:
        images: ``(N, rows, cols, bands)`` tiles, any units; shown stretched between the 2nd
            and 98th percentile of all ``images`` in the ``view`` bands.
        y_true: True class codes.
        probabilities: ``(N, K)`` softmax output.
        class_names: Names in code order (or ``{code: name}``).
        per_class: Tiles shown per class (columns).
        view: Band positions shown as red, green, blue (one position: grey).
        title: Figure title; a default counts the errors.

    Returns:
        The figure; each tile is titled with the predicted class and its probability.

    Raises:
        ValueError: Shapes that do not match, or codes outside ``0 .. K-1``.
    """
    probs = np.asarray(probabilities)
    predicted = predicted_classes(probs)
    names = _names(class_names, probs.shape[1])
    truth = _codes(y_true, len(names), "y_true")
    images = np.asarray(images)
    if not len(images) == len(truth) == len(probs):
        raise ValueError(
            f"images ({len(images)}), y_true ({len(truth)}) and probabilities ({len(probs)}) "
            "must hold the same tiles."
        )
    view = list(view)
    low, high = np.percentile(images[..., view], [2, 98]) if len(images) else (0.0, 1.0)
    size = (1.6 * per_class + 1.2, 1.6 * len(names))
    fig, axes = plt.subplots(
        len(names), per_class, figsize=size, squeeze=False, layout="constrained"
    )
    for code, row in enumerate(axes):
        wrong = np.flatnonzero((truth == code) & (predicted != code))
        wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:per_class]
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(names[code], fontsize=8)
        if len(wrong) == 0:
            row[0].text(0.5, 0.5, "no errors", ha="center", va="center", transform=row[0].transAxes)
        for ax, i in zip(row, wrong, strict=False):
            tile = np.clip((images[i][..., view] - low) / max(high - low, 1e-12), 0, 1)
            ax.imshow(tile.squeeze(), cmap="gray")
            ax.set_title(f"{names[predicted[i]]}\np = {probs[i, predicted[i]]:.2f}", fontsize=7)
    errors = int((truth != predicted).sum())
    fig.suptitle(title or f"Errors per true class (rows), predicted class above each tile: "
                 f"{errors} of {len(truth)} tiles wrong")  # fmt: skip
    return fig
