"""Tests for helpers.evaluation against scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, fbeta_score, precision_score, recall_score

from helpers import evaluation


def _random(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    p = np.clip(0.5 * y + rng.normal(0.3, 0.2, n), 0, 1)
    return y, p


@pytest.mark.parametrize("threshold, beta", [(0.5, 1.0), (0.3, 2.0), (0.7, 0.5)])
def test_binary_scores_match_sklearn(threshold, beta):
    y, p = _random()
    scores = evaluation.binary_scores(y, p, threshold, beta=beta)
    predicted = p >= threshold
    tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()
    assert (scores["tp"], scores["fp"], scores["fn"], scores["tn"]) == (tp, fp, fn, tn)
    assert scores["precision"] == pytest.approx(precision_score(y, predicted))
    assert scores["recall"] == pytest.approx(recall_score(y, predicted))
    assert scores["f1"] == pytest.approx(f1_score(y, predicted))
    assert scores["fbeta"] == pytest.approx(fbeta_score(y, predicted, beta=beta))
    assert scores["n"] == len(y)


def test_binary_scores_with_no_predicted_positive_are_zero_not_nan():
    scores = evaluation.binary_scores([0, 1, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert scores["precision"] == 0.0 and scores["f1"] == 0.0 and scores["accuracy"] == 1 / 3


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_choose_threshold_is_the_brute_force_optimum(beta):
    y, p = _random(seed=3)
    threshold, best = evaluation.choose_threshold(y, p, beta=beta)
    brute = max(fbeta_score(y, p >= t, beta=beta) for t in np.unique(p))
    assert best == pytest.approx(brute, abs=1e-4)
    assert fbeta_score(y, p >= threshold, beta=beta) == pytest.approx(brute, abs=1e-4)


def test_recall_heavy_beta_lowers_the_threshold():
    y, p = _random(seed=5)
    low, _ = evaluation.choose_threshold(y, p, beta=4.0)
    high, _ = evaluation.choose_threshold(y, p, beta=0.25)
    assert low < high


def test_bad_input():
    with pytest.raises(ValueError, match="no positive"):
        evaluation.choose_threshold([0, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="one per tile"):
        evaluation.binary_scores([0, 1], [0.2])
    with pytest.raises(ValueError, match="empty"):
        evaluation.binary_scores([], [])
    with pytest.raises(ValueError, match="0/1"):
        evaluation.binary_scores([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        evaluation.binary_scores([0, 1], [0.1, np.nan])


def test_statistics_baseline_separates_bright_tiles_and_refuses_one_class():
    rng = np.random.default_rng(0)
    images = rng.normal(0.1, 0.01, size=(40, 8, 8, 3)).astype("float32")
    labels = np.arange(40) % 2
    images[labels == 1] += 0.05  # positives are brighter
    features = evaluation.tile_statistics(images)
    assert features.shape == (40, 6)
    np.testing.assert_allclose(features[0, :3], images[0].mean(axis=(0, 1)), rtol=1e-5)
    baseline = evaluation.statistics_baseline(images, labels)
    scores = baseline.predict_proba(features)[:, 1]
    assert evaluation.binary_scores(labels, scores)["f1"] == 1.0
    with pytest.raises(ValueError, match="both classes"):
        evaluation.statistics_baseline(images, np.zeros(40))
    with pytest.raises(ValueError, match="channels-last"):
        evaluation.tile_statistics(images[0])


def test_statistics_baseline_k_classes():
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 4
    images = rng.normal(0.1, 0.01, size=(60, 8, 8, 3)).astype("float32")
    images[..., 0] += 0.05 * (labels[:, None, None] % 2)  # class bit 0 -> red brighter
    images[..., 2] += 0.05 * (labels[:, None, None] // 2)  # class bit 1 -> blue brighter
    baseline = evaluation.statistics_baseline(images, labels)
    probabilities = baseline.predict_proba(evaluation.tile_statistics(images))
    assert probabilities.shape == (60, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.95


def test_choose_threshold_takes_the_middle_of_a_perfect_gap():
    y = [0, 0, 0, 1, 1]
    threshold, best = evaluation.choose_threshold(y, [0.1, 0.2, 0.3, 0.8, 0.9])
    assert best == 1.0 and threshold == pytest.approx(0.55)
