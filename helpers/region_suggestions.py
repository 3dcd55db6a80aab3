"""The "suggestions" section of ``python -m helpers.regions FILE`` (``make region``).

After a config passes its checks, the labels of its first date are measured and the report
suggests tiling sizes and thresholds, and notebook 07's cleaning, that fit this region's
objects, next to the config's values; and it warns, naming ``tiling.positive`` and a value
that works, when a split of the classification tiles would get too few positive tiles.

Example:
    >>> from helpers.regions import load_region  # doctest: +SKIP
    >>> print(suggestions_report(load_region("regions/sample.yaml")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from helpers import labels, raster, splits, tiling
from helpers import object_sizes as _sizes
from helpers import suggestions as _suggest
from helpers.cleaning_suggestions import suggest_cleaning

__all__ = ["suggestion_lines", "suggestions_report"]

#: Above this many pixels of labelled area the cleaning search (several morphology passes over
#: the whole mask) is left to the notebook, on a crop.
MAX_CLEANING_PIXELS = 50_000_000


def _tile_check(region: Any, info: Any, outlines: Any, min_positives: int) -> list[str]:
    """Positive classification tiles per split with the config's thresholds (notebook 03)."""
    config = region.tiling
    grid = tiling.tile_windows(info.height, info.width, config.tile_size, stride=config.tile_stride)
    windows = region.windows_in_aoi(grid, region.scenes[region.dates[0]])
    fractions = labels.tile_label_fractions(windows, info.transform, outlines)
    try:
        assignment = splits.spatial_block_split(
            windows, block_size=config.block_size, seed=region.seed
        )
    except ValueError as exc:
        return [f"WARNING tiling.block_size: the tiles cannot be split: {exc}"]
    counts = _suggest.positive_tile_counts(fractions, assignment, positive=config.positive)
    lines = [
        f"  positive tiles per split with tiling.positive {config.positive:g}: "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
    ]
    problems = _suggest.positive_tile_problems(
        fractions, assignment, positive=config.positive, negative=config.negative,
        min_positives=min_positives,
    )  # fmt: skip
    return lines + [f"WARNING {problem}" for problem in problems]


def suggestion_lines(region: Any, *, min_positives: int = 10) -> list[str]:
    """The report's lines for a loaded :class:`helpers.regions.Region` (files checked).

    Raises:
        OSError, ValueError: The scene or labels cannot be read (the config check reads them
            first, so this is rare).
    """
    if not region.dates or getattr(region, "label_raster", None) is not None:
        why = "its labels are a label raster" if region.dates else "it has no scene"
        return [f"suggestions: sizes are suggested from vector labels on a scene, and {why}; "
                "none for this region."]  # fmt: skip
    date = region.dates[0]
    info = raster.describe(region.scenes[date])
    outlines = region.read_labels(date, crs=info.crs)
    config = region.tiling
    mask, _ = _sizes.rasterize_objects(
        outlines, info.transform, shape=(info.height, info.width), margin=config.tile_size
    )
    sizes = _sizes.object_sizes(mask)
    if sizes.empty:
        return [f"suggestions: no {region.target} object of {date} covers a pixel centre."]
    sized = _suggest.suggest_sizes(sizes, (info.height, info.width))
    thresholds = _suggest.suggest_tile_thresholds(mask, config.tile_size)
    pixel_m2 = abs(info.transform.a * info.transform.e - info.transform.b * info.transform.d)
    if mask.size <= MAX_CLEANING_PIXELS:
        cleaning = suggest_cleaning(mask, pixel_area_m2=pixel_m2).describe()
    else:
        cleaning = (f"the labels span {mask.size / 1e6:.0f} Mpx; run "
                    "cleaning_suggestions.suggest_cleaning on a crop of them")  # fmt: skip
    lines = [
        f"suggestions for {region.name} (from {len(sizes)} {region.target} objects of {date}: "
        f"median {sized.typical_extent_px:.0f} px across, 75 % up to "
        f"{sized.large_extent_px:.0f} px; scene {info.width} x {info.height} px):"
    ]
    for key, value in sized.as_tiling().items():
        now = getattr(config, key)
        lines.append(f"  tiling.{key}: {value}" + ("" if now == value else f"  (config: {now})"))
    for key in ("positive", "negative"):
        value, now = getattr(thresholds, key), getattr(config, key)
        lines.append(
            f"  tiling.{key}: {value:g}" + ("" if now == value else f"  (config: {now:g})")
        )
    lines.append(
        f"    a {config.tile_size} px tile centred on the median object is "
        f"{thresholds.median_fraction:.0%} covered"
    )
    lines.append(f"  notebook 07: {cleaning}")
    lines += [f"  note: {note}" for note in sized.notes]
    return lines + _tile_check(region, info, outlines, min_positives)


def suggestions_report(region: Any, *, min_positives: int = 10) -> str:
    """:func:`suggestion_lines` as text; a failure becomes one line instead of an exception,
    so the suggestions never change the outcome of the config check."""
    try:
        return "\n".join(suggestion_lines(region, min_positives=min_positives))
    except (OSError, ValueError) as exc:
        return f"suggestions unavailable: {exc}"
