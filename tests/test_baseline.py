"""Model against baseline: loud warnings, a stop for notebooks 06-07, the verdict in the card."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from helpers import baseline, models

CARD = {
    "bands": ["blue", "green", "red", "nir"],
    "scaling": {"method": "linear", "scale": 1e-4},
    "tile_size": 64,
    "classes": {0: "background", 1: "building"},
    "decision_threshold": 0.5,
    "training_data": "test",
}


def test_a_model_below_its_baseline_gets_a_loud_warning_with_both_numbers():
    # The numbers measured on real data: 4 epochs gave IoU 0.01 against the baseline's 0.04.
    with pytest.warns(baseline.WorseThanBaselineWarning) as record:
        verdict = baseline.compare_with_baseline(0.01, 0.04, metric="validation IoU")
    message = str(record[0].message)
    assert not verdict.beats_baseline
    assert message.startswith("THE MODEL IS NOT BETTER THAN THE BASELINE")
    assert "model 0.0100, baseline 0.0400" in message and "validation IoU" in message
    for hint in ("EPOCHS", "MAX_MINUTES", "tiling.patch_size", "labels", "tiling.positive"):
        assert hint in message


def test_a_better_model_passes_silently_and_the_margin_counts():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = baseline.compare_with_baseline(0.18, 0.04, metric="validation IoU")
    assert verdict.beats_baseline and verdict.message().startswith("The model beats")
    with pytest.warns(baseline.WorseThanBaselineWarning):  # better, but not by the margin
        assert not baseline.compare_with_baseline(0.045, 0.04, margin=0.01).beats_baseline
    loss = baseline.compare_with_baseline(0.2, 0.5, higher_is_better=False, warn=False)
    assert loss.beats_baseline  # a lower loss is better
    assert baseline.compare_with_baseline(np.float32(0.5), 0.1, warn=False).beats_baseline


def test_require_better_than_baseline_stops_unless_allowed():
    with pytest.raises(baseline.WorseThanBaselineError) as info:
        baseline.require_better_than_baseline(0.01, 0.04, metric="validation IoU")
    text = str(info.value)
    assert "ALLOW_WORSE_THAN_BASELINE = True" in text and "0.0100" in text and "0.0400" in text
    with pytest.warns(baseline.WorseThanBaselineWarning, match="ALLOW_WORSE_THAN_BASELINE = True"):
        verdict = baseline.require_better_than_baseline(0.01, 0.04, allow=True)
    assert not verdict.beats_baseline
    assert baseline.require_better_than_baseline(0.3, 0.04).beats_baseline
    with pytest.raises(baseline.WorseThanBaselineError, match="MY_KNOB = True"):
        baseline.require_better_than_baseline(0.0, 0.5, parameter="MY_KNOB")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_score": float("nan"), "baseline_score": 0.1}, "model_score=nan is not a finite"),
        ({"model_score": 0.1, "baseline_score": "0.2"}, "baseline_score='0.2' must be a number"),
        ({"model_score": 0.1, "baseline_score": 0.2, "margin": -1}, "margin=-1 must be >= 0"),
    ],
)
def test_bad_scores_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        baseline.compare_with_baseline(**kwargs)


def test_the_verdict_travels_in_the_model_card(tmp_path):
    path = tmp_path / "settlement_unet.keras"
    worse = baseline.compare_with_baseline(0.01, 0.04, metric="validation IoU", warn=False)
    models.write_model_card(path, **CARD)
    baseline.record_baseline_verdict(path, worse)
    stored = json.loads(models.model_card_path(path).read_text())
    assert stored["beats_baseline"] is False and stored["baseline_score"] == 0.04
    assert stored["model_score"] == 0.01 and stored["baseline_metric"] == "validation IoU"
    assert set(baseline.CARD_FIELDS) <= set(stored)
    card = models.read_model_card(path)  # the card's own checks still pass
    assert card["classes"] == {0: "background", 1: "building"}
    assert baseline.verdict_from_card(card) == worse
    with pytest.raises(baseline.WorseThanBaselineError, match="ALLOW_WORSE_THAN_BASELINE"):
        baseline.require_card_beats_baseline(card)
    with pytest.warns(baseline.WorseThanBaselineWarning):
        assert baseline.require_card_beats_baseline(card, allow=True) == worse
    better = baseline.compare_with_baseline(0.18, 0.04, warn=False)
    good_card = models.read_model_card(
        models.write_model_card(path, **CARD, **better.card_fields())
    )
    assert baseline.require_card_beats_baseline(good_card).beats_baseline


def test_cards_without_or_with_a_broken_verdict():
    with pytest.warns(baseline.WorseThanBaselineWarning, match="no baseline verdict"):
        assert baseline.require_card_beats_baseline(CARD) is None
    with pytest.raises(ValueError, match="without \\['model_score'\\]"):
        baseline.verdict_from_card({**CARD, "baseline_score": 0.1})
    with pytest.raises(ValueError, match="'beats_baseline' must be true or false"):
        baseline.verdict_from_card(
            {**CARD, "baseline_score": 0.1, "model_score": 0.2, "beats_baseline": "yes"}
        )
    with pytest.raises(FileNotFoundError, match="No model card"):
        baseline.record_baseline_verdict(
            "nowhere/model.keras", baseline.compare_with_baseline(1, 0, warn=False)
        )
