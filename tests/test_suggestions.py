"""Tiling defaults from the objects' sizes, and the positive-tile check per split."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.transform import from_origin

from helpers import labels, splits, tiling
from helpers.object_sizes import object_sizes, rasterize_objects
from helpers.suggestions import (
    FewPositiveTilesWarning,
    centred_tile_fractions,
    positive_tile_counts,
    positive_tile_problems,
    require_positive_tiles,
    round_down,
    suggest_sizes,
    suggest_tile_thresholds,
    warn_if_few_positive_tiles,
)

PIXEL = 0.5  # metres


def _buildings(spacing: int = 24, side: int = 8, extent: int = 256) -> list[shapely.Polygon]:
    """Square buildings of ``side`` px every ``spacing`` px, in pixel units."""
    starts = range(4, extent - side, spacing)
    return [shapely.box(c, r, c + side, r + side) for r in starts for c in starts]


def test_round_down_keeps_the_threshold_reachable():
    assert round_down(0.137) == 0.13 and round_down(0.21) == 0.21 and round_down(0.0123) == 0.012
    assert round_down(0.5) == 0.5 and round_down(0) == 0.0


def test_centred_tiles_count_the_object_and_its_neighbours():
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:20, 10:20] = True  # alone
    mask[60:70, 60:70] = mask[60:70, 75:85] = True  # two, 5 px apart
    fractions = centred_tile_fractions(mask, 32)
    assert fractions[0] == pytest.approx(100 / 1024)
    # Centred on (64, 64): cols 48-79 hold the first and half the second (5 of 10 columns).
    assert fractions[1] == pytest.approx(150 / 1024) and fractions[2] > 100 / 1024
    edge = np.zeros((40, 40), dtype=bool)
    edge[:4, :4] = True  # half of the tile lies outside the mask: uncovered
    assert centred_tile_fractions(edge, 8)[0] == pytest.approx(16 / 64)


def test_thresholds_for_buildings_that_fill_a_fifth_of_a_tile_at_most():
    polygons = _buildings()
    suggestion = suggest_tile_thresholds(polygons, 32, transform=Affine.identity())
    # A 32 px tile centred on an 8 x 8 building also catches parts of its neighbours.
    mask, _ = rasterize_objects(polygons, Affine.identity(), margin=32)
    expected = np.median(centred_tile_fractions(mask, 32))
    assert suggestion.median_fraction == pytest.approx(expected) and expected < 0.25
    assert suggestion.positive == round_down(expected) and 0 < suggestion.negative
    assert suggestion.negative < suggestion.positive < 0.5
    assert suggestion.objects == len(polygons)
    assert "tiling.positive" in suggestion.describe()
    # Real tiles on the grid reach the suggested value: the config would give positives.
    windows = tiling.tile_windows(256, 256, 32, stride=16)
    fractions = labels.tile_label_fractions(windows, Affine.identity(), polygons)
    assert (fractions >= suggestion.positive).sum() > 0 and (fractions >= 0.5).sum() == 0
    big = np.ones((200, 200), dtype=bool)  # objects larger than tiles: the usual 0.5 / 0.05
    assert (
        suggest_tile_thresholds(big, 32).positive,
        suggest_tile_thresholds(big, 32).negative,
    ) == (
        0.5,
        0.05,
    )
    with pytest.raises(ValueError, match="transform"):
        suggest_tile_thresholds(polygons, 32)
    with pytest.raises(ValueError, match="no object"):
        suggest_tile_thresholds(np.zeros((10, 10), bool), 8)


def test_too_few_positive_tiles_are_named_with_a_value_that_works():
    polygons = _buildings()
    windows = tiling.tile_windows(256, 256, 32, stride=16)
    fractions = labels.tile_label_fractions(windows, Affine.identity(), polygons)
    assignment = splits.spatial_block_split(windows, block_size=64, seed=1)
    counts = positive_tile_counts(fractions, assignment, positive=0.5)
    assert counts == {"train": 0, "validation": 0, "test": 0}
    (problem,) = positive_tile_problems(fractions, assignment, positive=0.5, negative=0.05)
    assert problem.startswith("tiling.positive = 0.5 gives train 0, validation 0, test 0")
    suggested = float(problem.split("Set tiling.positive: ")[1].split(" ")[0])
    enough = positive_tile_counts(fractions, assignment, positive=suggested)
    assert min(enough.values()) >= 10 and suggested > 0.05
    assert positive_tile_problems(fractions, assignment, positive=suggested, negative=0.05) == []
    with pytest.warns(FewPositiveTilesWarning, match="tiling.positive"):
        assert (
            warn_if_few_positive_tiles(fractions, assignment, positive=0.5, negative=0.05) == counts
        )
    with pytest.raises(ValueError, match=f"Set tiling.positive: {suggested:g}"):
        require_positive_tiles(fractions, assignment, positive=0.5, negative=0.05)
    few = np.array([0.6] * 12 + [0.6] * 3 + [0.3] * 9 + [0.6] * 12)  # validation: 3 positives
    few_splits = ["train"] * 12 + ["validation"] * 12 + ["test"] * 12
    with pytest.warns(FewPositiveTilesWarning, match="Set tiling.positive: 0.3"):
        counts = require_positive_tiles(few, few_splits, positive=0.5, negative=0.05)
    assert counts == {"train": 12, "validation": 3, "test": 12}
    assert (
        require_positive_tiles(fractions, assignment, positive=suggested, negative=0.05) == enough
    )


def test_a_split_without_labelled_tiles_is_named():
    fractions = np.array([0.6] * 12 + [0.0] * 12 + [0.3, 0.0])
    assignment = ["train"] * 12 + ["validation"] * 12 + ["test", None]
    (problem,) = positive_tile_problems(fractions, assignment, positive=0.5, negative=0.05)
    assert "fewer than 10 in validation, test" in problem
    assert "validation, test hold(s) fewer than 10 tiles" in problem and "block_size" in problem
    with pytest.raises(ValueError, match="aligned"):
        positive_tile_counts(fractions, assignment[:-1], positive=0.5)


def test_sizes_for_buildings_and_for_a_small_scene():
    mask, _ = rasterize_objects(_buildings(spacing=40, side=12, extent=2000), Affine.identity())
    sizes = object_sizes(mask)
    suggestion = suggest_sizes(sizes, (2000, 2000))
    assert suggestion.patch_size == 64  # 4 x 12 px = 48, raised to the 64 px minimum
    assert suggestion.tile_size == 32 and suggestion.stride == 32 and suggestion.tile_stride == 16
    assert suggestion.block_size == 4 * 64 and not suggestion.notes
    sizes_larger = sizes.assign(extent_px=sizes.extent_px * 3)  # 36 px objects
    larger = suggest_sizes(sizes_larger, (2000, 2000))
    assert larger.patch_size == 144 and larger.tile_size == 64 and larger.block_size == 576
    for value in larger.as_tiling().values():
        assert value % 8 == 0
    small = suggest_sizes(sizes_larger, (300, 400))  # few blocks: smaller patches, noted
    assert small.block_size >= 2 * small.patch_size and small.patch_size < 144
    assert small.block_size * 3 <= 400 and "too few" in small.notes[0]
    settlements = suggest_sizes(sizes.assign(extent_px=300), (2048, 2048))
    assert settlements.as_tiling() == {"patch_size": 128, "stride": 64, "tile_size": 64,
                                       "tile_stride": 32, "block_size": 512}  # fmt: skip
    assert "are large" in settlements.notes[0]  # the sample region's own config
    with pytest.raises(ValueError, match="no object"):
        suggest_sizes(sizes.iloc[:0], (100, 100))


def test_pixel_units_from_a_real_grid_match_the_identity_case():
    transform = from_origin(500_000.0, 4_000_000.0, PIXEL, PIXEL)
    polygons = [shapely.affinity.affine_transform(p, transform.to_shapely()) for p in _buildings()]
    on_grid = suggest_tile_thresholds(polygons, 32, transform=transform)
    in_pixels = suggest_tile_thresholds(_buildings(), 32, transform=Affine.identity())
    assert on_grid == in_pixels
