"""Is the model better than the baseline? Say so loudly, record it, and stop maps from a bad model.

Every modelling notebook fits a cheap baseline (logistic regression on tile statistics or on
pixels) next to its network. A network that does not beat it -- too few epochs, patches too
small to see an object, labels that miss the imagery, a class too rare in the batches -- should
not go on to write maps. This module turns that comparison into code:

* :func:`compare_with_baseline` -- a :class:`BaselineVerdict`; warns
  (:class:`WorseThanBaselineWarning`) with both numbers and what to try when the model is not
  better by ``margin``.
* :func:`require_better_than_baseline` -- the same, but raises :class:`WorseThanBaselineError`
  unless ``allow=True`` (the error names the notebook parameter that overrides it).
* :meth:`BaselineVerdict.card_fields` / :func:`record_baseline_verdict` -- keep the verdict in
  the model card (:data:`CARD_FIELDS`: ``baseline_score``, ``beats_baseline`` ...);
  :func:`require_card_beats_baseline` checks a loaded card (notebooks 06-07).

Example:
    >>> verdict = compare_with_baseline(0.18, 0.04, metric="validation IoU", warn=False)
    >>> verdict.beats_baseline, verdict.card_fields()["baseline_score"]
    (True, 0.04)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOW_PARAMETER",
    "CARD_FIELDS",
    "BaselineVerdict",
    "WorseThanBaselineError",
    "WorseThanBaselineWarning",
    "compare_with_baseline",
    "record_baseline_verdict",
    "require_better_than_baseline",
    "require_card_beats_baseline",
    "verdict_from_card",
]

PathLike = str | os.PathLike

#: The notebook parameter that lets a model worse than its baseline go on.
ALLOW_PARAMETER = "ALLOW_WORSE_THAN_BASELINE"

#: Model card fields written by :meth:`BaselineVerdict.card_fields`.
CARD_FIELDS = (
    "baseline_metric",
    "baseline_score",
    "model_score",
    "baseline_margin",
    "baseline_higher_is_better",
    "beats_baseline",
)

_WHAT_TO_TRY = (
    "What to try: a larger training budget (more EPOCHS or MAX_MINUTES; check the stop "
    "report: was the metric still improving?); a larger tiling.patch_size so a patch holds "
    "whole objects with their surroundings; the labels (do the outlines fall on the objects in "
    "the imagery, same date, same CRS?); class balance (tiling.positive / tiling.negative, "
    "the share of positives per batch, a loss that weights the rare class)."
)


class WorseThanBaselineWarning(UserWarning):
    """The model is not better than its baseline (by the margin asked for)."""


class WorseThanBaselineError(RuntimeError):
    """A notebook refuses to go on with a model that is not better than its baseline."""


@dataclass(frozen=True)
class BaselineVerdict:
    """A model's score against its baseline's on the same data and metric.

    Attributes:
        metric: What the scores are, e.g. ``"validation IoU"``.
        model_score: The model's score.
        baseline_score: The baseline's score.
        margin: How much better the model must be to count as better.
        higher_is_better: False for losses and errors.
    """

    metric: str
    model_score: float
    baseline_score: float
    margin: float = 0.01
    higher_is_better: bool = True

    @property
    def beats_baseline(self) -> bool:
        """Whether the model is better than the baseline by more than ``margin``."""
        if self.higher_is_better:
            return self.model_score > self.baseline_score + self.margin
        return self.model_score < self.baseline_score - self.margin

    def message(self) -> str:
        """One paragraph: both numbers, the verdict and, for a model not better, what to try."""
        numbers = (
            f"{self.metric}: model {self.model_score:.4f}, baseline {self.baseline_score:.4f} "
            f"(margin {self.margin:g}, {'higher' if self.higher_is_better else 'lower'} is "
            "better)"
        )
        if self.beats_baseline:
            return f"The model beats the baseline. {numbers}."
        return f"THE MODEL IS NOT BETTER THAN THE BASELINE. {numbers}. {_WHAT_TO_TRY}"

    def card_fields(self) -> dict[str, Any]:
        """Fields for the model card: pass them on with ``save_with_card(..., **fields)``."""
        return {
            "baseline_metric": self.metric,
            "baseline_score": round(self.baseline_score, 6),
            "model_score": round(self.model_score, 6),
            "baseline_margin": self.margin,
            "baseline_higher_is_better": self.higher_is_better,
            "beats_baseline": self.beats_baseline,
        }


def _score(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        and not hasattr(value, "__float__")
    ):
        raise ValueError(f"{name}={value!r} must be a number (the metric's value).")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(
            f"{name}={value!r} is not a finite number: the metric was not computed (no "
            "validation data, or no positive pixels in it?). Check the validation split."
        )
    return number


def compare_with_baseline(
    model_score: float,
    baseline_score: float,
    *,
    metric: str = "validation score",
    margin: float = 0.01,
    higher_is_better: bool = True,
    warn: bool = True,
) -> BaselineVerdict:
    """Compare a model's score with its baseline's; warn loudly when it is not better.

    Args:
        model_score: The model's score on the validation split.
        baseline_score: The baseline's score on the same split and metric.
        metric: Name of the metric, used in the messages and the card.
        margin: The model must be better by more than this (absolute, in the metric's units).
        higher_is_better: False for losses and errors.
        warn: Emit :class:`WorseThanBaselineWarning` when the model is not better.

    Returns:
        The :class:`BaselineVerdict`.

    Raises:
        ValueError: A score is not a finite number, or ``margin`` is negative.
    """
    model_score = _score(model_score, "model_score")
    baseline_score = _score(baseline_score, "baseline_score")
    if _score(margin, "margin") < 0:
        raise ValueError(f"margin={margin!r} must be >= 0 (0: any improvement counts).")
    verdict = BaselineVerdict(str(metric), model_score, baseline_score, float(margin),
                              bool(higher_is_better))  # fmt: skip
    if warn and not verdict.beats_baseline:
        warnings.warn(verdict.message(), WorseThanBaselineWarning, stacklevel=2)
    return verdict


def _enforce(verdict: BaselineVerdict, allow: bool, parameter: str) -> BaselineVerdict:
    if verdict.beats_baseline:
        return verdict
    if allow:
        warnings.warn(
            f"{verdict.message()} Going on because {parameter} = True.",
            WorseThanBaselineWarning,
            stacklevel=3,
        )
        return verdict
    raise WorseThanBaselineError(
        f"{verdict.message()} Stopping here rather than making maps from this model. Retrain "
        f"it (notebook 05), or set {parameter} = True in the parameters cell to go on anyway."
    )


def require_better_than_baseline(
    model_score: float,
    baseline_score: float,
    *,
    metric: str = "validation score",
    margin: float = 0.01,
    higher_is_better: bool = True,
    allow: bool = False,
    parameter: str = ALLOW_PARAMETER,
) -> BaselineVerdict:
    """Like :func:`compare_with_baseline`, but stop with an error when the model is not better.

    Args:
        model_score, baseline_score, metric, margin, higher_is_better: As for
            :func:`compare_with_baseline`.
        allow: Go on with a warning instead of raising.
        parameter: The notebook parameter that sets ``allow``, named in the error.

    Returns:
        The :class:`BaselineVerdict` (the model is better, or ``allow`` is True).

    Raises:
        WorseThanBaselineError: The model is not better and ``allow`` is False.
        ValueError: A score is not a finite number.
    """
    verdict = compare_with_baseline(model_score, baseline_score, metric=metric, margin=margin,
                                    higher_is_better=higher_is_better, warn=False)  # fmt: skip
    return _enforce(verdict, allow, parameter)


def verdict_from_card(
    card: Mapping[str, Any], where: str = "the model card"
) -> BaselineVerdict | None:
    """The verdict stored in a model card, or None when the card has none (an older card).

    Raises:
        ValueError: The card has the fields but a value of the wrong type; names the key.
    """
    if "baseline_score" not in card and "beats_baseline" not in card:
        return None
    missing = [key for key in ("baseline_score", "model_score") if key not in card]
    if missing:
        raise ValueError(
            f"{where} has a baseline verdict without {missing}; write the card again with "
            "save_with_card(..., **verdict.card_fields())."
        )
    stored = card.get("beats_baseline")
    if stored is not None and not isinstance(stored, bool):
        raise ValueError(f"{where}: 'beats_baseline' must be true or false, got {stored!r}.")
    return BaselineVerdict(
        metric=str(card.get("baseline_metric", "validation score")),
        model_score=_score(card["model_score"], f"{where}: model_score"),
        baseline_score=_score(card["baseline_score"], f"{where}: baseline_score"),
        margin=_score(card.get("baseline_margin", 0.0), f"{where}: baseline_margin"),
        higher_is_better=bool(card.get("baseline_higher_is_better", True)),
    )


def require_card_beats_baseline(
    card: Mapping[str, Any], *, allow: bool = False, parameter: str = ALLOW_PARAMETER
) -> BaselineVerdict | None:
    """Stop (notebooks 06-07) when the loaded model's card says it does not beat its baseline.

    A card without a verdict (written before verdicts were recorded) passes with a warning.

    Returns:
        The card's :class:`BaselineVerdict`, or None for a card without one.

    Raises:
        WorseThanBaselineError: The card's model is not better and ``allow`` is False.
        ValueError: The card's verdict fields are malformed.
    """
    verdict = verdict_from_card(card)
    if verdict is None:
        warnings.warn(
            "The model card has no baseline verdict (baseline_score, beats_baseline): it was "
            "written before these were recorded, so nobody checked that the model beats its "
            "baseline. Run notebook 05 again to record them.",
            WorseThanBaselineWarning,
            stacklevel=2,
        )
        return None
    return _enforce(verdict, allow, parameter)


def record_baseline_verdict(model_path: PathLike, verdict: BaselineVerdict) -> Path:
    """Add the verdict's fields to the card of a saved model (rewritten atomically).

    Returns:
        The card's path.

    Raises:
        FileNotFoundError: The model has no card yet (save it with ``save_with_card`` first).
    """
    from helpers import models

    card = models.read_model_card(model_path)
    card.update(verdict.card_fields())
    return models.write_model_card(Path(model_path), **card)
