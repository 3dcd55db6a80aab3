"""Tests for helpers.splits: spatial block splits without leakage, and the reports."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from helpers import splits
from helpers.labels import IGNORE_LABEL

NAMES = ("train", "validation", "test")


def grid(height: int, width: int, size: int, stride: int) -> list[Window]:
    """A plain patch grid (no edge handling): every full window at multiples of ``stride``."""
    return [
        Window(col, row, size, size)
        for row in range(0, height - size + 1, stride)
        for col in range(0, width - size + 1, stride)
    ]


def as_array(windows: list[Window]) -> np.ndarray:
    return np.array([(w.row_off, w.col_off, w.height, w.width) for w in windows], dtype=np.int64)


def too_close(boxes: np.ndarray, buffer: int) -> np.ndarray:
    """Brute force, all pairs: window i grown by ``buffer`` px on every side overlaps window j."""
    r, c, h, w = (boxes[:, k] for k in range(4))
    rows = (r[:, None] - buffer < r[None, :] + h[None, :]) & (
        r[None, :] < r[:, None] + h[:, None] + buffer
    )
    cols = (c[:, None] - buffer < c[None, :] + w[None, :]) & (
        c[None, :] < c[:, None] + w[:, None] + buffer
    )
    return rows & cols


@st.composite
def grids(draw):
    size = draw(st.integers(4, 24))
    stride = draw(st.integers(max(3, size // 3), size + 6))  # overlapping, touching and gaps
    block_size = draw(st.integers(4, 48))
    buffer = draw(st.integers(0, 6))
    # A scene of whole blocks, or with a partial block at the right/bottom edge.
    extra = st.one_of(st.just(0), st.integers(0, block_size - 1))
    height = draw(st.integers(1, 4)) * block_size + draw(extra)
    width = draw(st.integers(2, 5)) * block_size + draw(extra)
    height, width = min(max(height, size), 160), min(max(width, size), 160)
    seed = draw(st.integers(0, 2**16))
    return height, width, size, stride, block_size, buffer, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids())
def test_spatial_block_split_never_leaks(case):
    height, width, size, stride, block_size, buffer, seed = case
    windows = grid(height, width, size, stride)
    boxes = as_array(windows)
    centres = (2 * boxes[:, :2] + boxes[:, 2:]) // (2 * block_size)
    n_blocks = len({tuple(b) for b in centres.tolist()})
    try:
        result = splits.spatial_block_split(
            windows, block_size=block_size, buffer=buffer, seed=seed
        )
    except ValueError as error:
        if n_blocks < 3:
            assert "minimum block count: 3" in str(error)
        else:
            assert "dropped every patch" in str(error)
            # Whole blocks with room for a patch away from every border never lose them all.
            roomy = block_size >= 2 * size + 2 * buffer + stride
            assert not (roomy and height % block_size == 0 and width % block_size == 0)
        return
    assert n_blocks >= 3
    assert len(result) == len(windows)
    assert set(result) <= {*NAMES, None}
    assert all(name in result for name in NAMES)  # every split keeps patches

    close = too_close(boxes, buffer)
    labels = np.array([s or "" for s in result], dtype=object)
    kept = labels != ""
    different = labels[:, None] != labels[None, :]
    assert not (close & different & kept[:, None] & kept[None, :]).any()
    # Dropped windows were dropped for a reason: each one is too close to a kept window.
    assert (close[~kept][:, kept].any(axis=1)).all()
    assert splits.leakage_report(windows, result, buffer=buffer)["leaking_pairs"] == 0


def test_split_is_deterministic_by_seed():
    windows = grid(256, 256, 32, 16)
    first = splits.spatial_block_split(windows, block_size=64, seed=7, buffer=4)
    again = splits.spatial_block_split(windows, block_size=64, seed=7, buffer=4)
    other = splits.spatial_block_split(windows, block_size=64, seed=8, buffer=4)
    assert first == again
    assert first != other


def test_fractions_are_honoured_by_block_count():
    windows = grid(256, 256, 16, 16)  # 16 x 16 patches, 4 per 32 px block, no overlap
    result = splits.spatial_block_split(windows, block_size=32, fractions=(0.6, 0.2, 0.2))
    assert None not in result  # no overlap and no buffer: nothing to drop
    shares = np.array([result.count(name) for name in NAMES]) / len(windows)
    np.testing.assert_allclose(shares, [0.6, 0.2, 0.2], atol=1 / 64)  # within one block of 64


def test_zero_fraction_leaves_a_split_empty():
    windows = grid(128, 128, 16, 16)
    result = splits.spatial_block_split(windows, block_size=32, fractions=(0.8, 0.2, 0.0))
    assert result.count("test") == 0 and result.count("validation") > 0


def test_too_few_blocks_is_a_clear_error():
    windows = grid(64, 64, 16, 8)
    with pytest.raises(
        ValueError, match="Only 1 block.*minimum block count: 3.*smaller block_size"
    ):
        splits.spatial_block_split(windows, block_size=64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"block_size": 0},
        {"block_size": 32, "buffer": -1},
        {"block_size": 32, "fractions": (0.5, 0.2, 0.2)},
        {"block_size": 32, "fractions": (0.8, 0.2)},
        {"block_size": 32, "names": ("a", "a", "b")},
    ],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        splits.spatial_block_split(grid(64, 64, 16, 16), **kwargs)


def test_random_split_leaks_and_spatial_split_does_not():
    windows = grid(256, 256, 32, 16)  # half-overlapping patches
    leaky = splits.leakage_report(windows, splits.random_split(windows, seed=0))
    safe = splits.leakage_report(windows, splits.spatial_block_split(windows, block_size=64))
    assert leaky["leaking_pairs"] > 100
    assert leaky["seen_in_train"]["validation"] > 0.8
    assert leaky["seen_in_train"]["test"] > 0.8
    assert safe["leaking_pairs"] == 0
    assert safe["seen_in_train"] == {"validation": 0.0, "test": 0.0}
    assert safe["dropped"] > 0


def test_random_split_sizes_and_determinism():
    windows = grid(128, 128, 16, 16)
    result = splits.random_split(windows, seed=3)
    assert [result.count(n) for n in NAMES] == [45, 10, 9]  # 64 * (0.7, 0.15, 0.15), rounded
    assert result == splits.random_split(windows, seed=3)


def test_leakage_report_on_a_hand_made_pair():
    windows = [Window(0, 0, 8, 8), Window(4, 0, 8, 8), Window(16, 0, 8, 8), Window(30, 0, 4, 4)]
    report = splits.leakage_report(windows, ["train", "test", "validation", None])
    assert report["leaking_pairs"] == 1
    assert report["leaking_pairs_by_split"] == {"test/train": 1}
    assert report["seen_in_train"] == {"test": 0.5, "validation": 0.0}
    assert report["patches"] == {"train": 1, "test": 1, "validation": 1}
    assert report["dropped"] == 1
    # Adjacent patches share no pixel, but they are within a 1-pixel buffer.
    adjacent = [Window(0, 0, 8, 8), Window(8, 0, 8, 8)]
    assert splits.leakage_report(adjacent, ["train", "test"])["leaking_pairs"] == 0
    assert splits.leakage_report(adjacent, ["train", "test"], buffer=1)["leaking_pairs"] == 1


def test_split_summary_counts_classes_per_split():
    result = ["train", "train", "train", "validation", "test", "test", None, None]
    patch_labels = [1, 0, IGNORE_LABEL, 0, 1, 1, 0, IGNORE_LABEL]
    summary = splits.split_summary(result, patch_labels, {0: "other", 1: "settlement"})
    assert list(summary.index) == ["train", "validation", "test", "dropped"]
    assert list(summary.columns) == ["other", "settlement", "ignored", "patches", "positive_rate"]
    assert summary.loc["train"].tolist() == [1, 1, 1, 3, 0.5]
    assert summary.loc["validation", "positive_rate"] == 0.0
    assert summary.loc["test", "positive_rate"] == 1.0
    assert summary.loc["dropped", ["other", "ignored", "patches"]].tolist() == [1, 1, 2]
    with pytest.raises(ValueError, match=r"without a class name: \[2\]"):
        splits.split_summary(["train"], [2])
    with pytest.raises(ValueError, match="aligned"):
        splits.split_summary(["train"], [0, 1])
