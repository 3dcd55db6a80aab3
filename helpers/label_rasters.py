"""Label rasters: a land-cover map of class codes as the labels of a region.

A region config can name a GeoTIFF of class codes instead of vector polygons::

    labels:
      raster: ../data/landcover.tif      # any CRS: reprojected onto the imagery (nearest)
      classes: {1: water, 2: trees, 5: built-up}
      ignore: [0, 255]                   # codes that are no label (masked in the loss)
      target: built-up                   # the class of the binary notebooks

:func:`parse_label_raster` reads that section, :func:`check_label_raster` checks the file
against a scene (it exists, has a CRS, overlaps the scene, the listed codes occur, no unlisted
code), and :func:`class_mask` puts the codes on the scene's grid with nearest-neighbour
resampling when grid or CRS differ, as class indices ``0 .. K-1`` in the order of the class
table and :data:`helpers.labels.IGNORE_VALUE` for ignored codes and pixels outside the map.
:func:`target_mask` gives the binary mask of the target class, and :func:`tile_labels_from_mask`
positive / negative / ignore per window, with the same thresholds as the vector labels.

Example:
    >>> source = LabelRaster(Path("landcover.tif"), {1: "water", 5: "built-up"}, (0,), "built-up")
    >>> source.names, source.target_index
    (['water', 'built-up'], 1)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.warp
from rasterio.enums import Resampling
from rasterio.windows import Window

from helpers.labels import IGNORE_LABEL, IGNORE_VALUE

__all__ = [
    "LabelRaster",
    "LabelRasterError",
    "check_label_raster",
    "class_mask",
    "parse_class_table",
    "parse_label_raster",
    "target_mask",
    "tile_fractions_from_mask",
    "tile_labels_from_mask",
]

PathLike = str | os.PathLike
#: Keys of a ``labels`` section that holds a label raster.
RASTER_KEYS = ("raster", "classes", "ignore", "target")
_OUTSIDE = -1  # reprojected pixels that the label raster does not cover


class LabelRasterError(ValueError):
    """A label raster or its config section is unusable; the message names the key and the fix."""


@dataclass(frozen=True)
class LabelRaster:
    """A GeoTIFF of class codes and how to read it.

    Attributes:
        path: The GeoTIFF.
        classes: Class code -> name, in the order of the class indices ``0 .. K-1``.
        ignore: Codes that are no label.
        target: Name of the class the binary tasks look for (None: no binary task).
    """

    path: Path
    classes: dict[int, str]
    ignore: tuple[int, ...] = ()
    target: str | None = None

    @property
    def names(self) -> list[str]:
        """Class names in index order."""
        return list(self.classes.values())

    @property
    def target_index(self) -> int | None:
        """Index of the target class in :attr:`names`, or None without a target."""
        return None if self.target is None else self.names.index(self.target)

    @property
    def target_code(self) -> int | None:
        """Code of the target class in the raster, or None without a target."""
        return None if self.target is None else list(self.classes)[self.target_index]


def _fail(where: str, message: str) -> LabelRasterError:
    return LabelRasterError(f"{where}: {message}")


def parse_class_table(value: Any, where: str) -> dict[int, str]:
    """A ``{code: name}`` table with integer codes 0-254 and distinct text names.

    Raises:
        LabelRasterError: Not a mapping, a code that is not an integer in 0-254, or a name
            given twice; ``where`` (e.g. ``"region.yaml: labels.classes"``) starts the message.
    """
    if not isinstance(value, Mapping) or not value:
        raise _fail(
            where, f"expected 'code: name' entries, e.g. {{1: water, 2: trees}}, got {value!r}."
        )
    table: dict[int, str] = {}
    for code, name in value.items():
        try:
            number = int(code)
        except (TypeError, ValueError):
            number = None
        if isinstance(code, bool) or number is None or number != code and str(number) != str(code):
            raise _fail(where, f"the code {code!r} is not an integer; write codes as numbers.")
        if not 0 <= number < IGNORE_VALUE:
            raise _fail(
                where,
                f"the code {number} is outside 0-{IGNORE_VALUE - 1} ({IGNORE_VALUE} means "
                "'no label'); recode the raster or list the code under 'ignore'.",
            )
        if not isinstance(name, str) or not name.strip():
            raise _fail(where, f"the name of code {number} is {name!r}; give each class a name.")
        table[number] = name.strip()
    names = list(table.values())
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(where, f"the name(s) {twice} are given to several codes; names must differ.")
    return dict(sorted(table.items()))


def parse_ignore(value: Any, classes: Mapping[int, str], where: str) -> tuple[int, ...]:
    """The ``ignore`` codes: integers, none of them a class code."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise _fail(where, f"expected a list of integer codes, e.g. [0, 255], got {value!r}.")
    both = sorted(set(items) & set(classes))
    if both:
        raise _fail(where, f"code(s) {both} are also classes; a code is either a class or ignored.")
    return tuple(sorted(set(items)))


def parse_label_raster(section: Mapping[str, Any], base: Path, config: PathLike) -> LabelRaster:
    """Read a ``labels`` section with a ``raster`` key (paths relative to ``base``).

    Raises:
        LabelRasterError: An unknown key, a bad class table or ignore list, or a target that is
            not one of the classes; the message names ``config`` and the key.
    """
    unknown = [k for k in section if k not in RASTER_KEYS]
    if unknown:
        raise _fail(
            f"{config}: labels.{unknown[0]}",
            f"not used with labels.raster; valid keys: {', '.join(RASTER_KEYS)}.",
        )
    value = section["raster"]
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(f"{config}: labels.raster", f"expected the path of a GeoTIFF, got {value!r}.")
    path = Path(os.path.expanduser(str(value)))
    path = path if path.is_absolute() else (base / path).resolve()
    classes = parse_class_table(section.get("classes"), f"{config}: labels.classes")
    ignore = parse_ignore(section.get("ignore"), classes, f"{config}: labels.ignore")
    target = section.get("target")
    if target is not None and str(target) not in classes.values():
        raise _fail(
            f"{config}: labels.target",
            f"{target!r} is not one of the classes {list(classes.values())}; name one of them.",
        )
    return LabelRaster(path, classes, ignore, None if target is None else str(target))


def _scene_grid(scene: PathLike) -> tuple[Any, Any, tuple[int, int], Any]:
    with rasterio.open(scene) as src:
        return src.crs, src.transform, (src.height, src.width), src.bounds


def check_label_raster(source: LabelRaster, scene: PathLike, config: PathLike = "config") -> None:
    """Check that the label raster can label ``scene``; errors start with ``config`` and the key.

    Raises:
        FileNotFoundError: The file does not exist.
        LabelRasterError: It has no CRS, misses the scene, a listed code never occurs in the
            part over the scene, or codes occur that are neither classes nor ignored.
    """
    where = f"{config}: labels.raster"
    if not source.path.exists():
        raise FileNotFoundError(
            f"{where}: {source.path} does not exist; check the path (relative paths start at "
            "the config's folder)."
        )
    crs, _, _, bounds = _scene_grid(scene)
    with rasterio.open(source.path) as src:
        if src.crs is None:
            raise _fail(
                where,
                f"{source.path} has no CRS, so it cannot be placed on the imagery; assign one "
                f"with `gdal_edit.py -a_srs EPSG:XXXX {source.path}`.",
            )
        label_bounds = rasterio.warp.transform_bounds(src.crs, crs, *src.bounds)
    left, bottom, right, top = label_bounds
    if left >= bounds.right or right <= bounds.left or bottom >= bounds.top or top <= bounds.bottom:
        raise _fail(
            where,
            f"{source.path.name} ({', '.join(f'{v:.1f}' for v in label_bounds)} in the scene's "
            f"CRS) does not overlap the scene {Path(scene).name} "
            f"({', '.join(f'{v:.1f}' for v in bounds)}); is it the map of another place?",
        )
    codes = _codes_on_scene(source, scene)
    found = set(np.unique(codes[codes != _OUTSIDE]).tolist())
    unlisted = sorted(found - set(source.classes) - set(source.ignore))
    if unlisted:
        raise _fail(
            where,
            f"{source.path.name} holds code(s) {unlisted[:20]} that are neither in labels.classes "
            "nor in labels.ignore; add each to one of them.",
        )
    missing = [f"{c} ({n})" for c, n in source.classes.items() if c not in found]
    if missing:
        raise _fail(
            f"{config}: labels.classes",
            f"{', '.join(missing)} never occur in {source.path.name} over the scene; its codes "
            f"there are {sorted(found)}. Remove those classes or fix their codes.",
        )


def _codes_on_scene(source: LabelRaster, scene: PathLike) -> np.ndarray:
    """The raster's codes on the scene's grid (int32), :data:`_OUTSIDE` where it has none."""
    crs, transform, shape, bounds = _scene_grid(scene)
    with rasterio.open(source.path) as src:
        nodata = src.nodata
        if src.crs == crs and src.transform == transform and src.shape == shape:
            codes = src.read(1).astype(np.int32)
            if nodata is not None:
                codes[src.read(1) == nodata] = _OUTSIDE
            return codes
        codes = np.full(shape, _OUTSIDE, dtype=np.int32)
        window = _window_under(src, crs, bounds)  # a land-cover map may cover a continent
        if window is None:
            return codes
        rasterio.warp.reproject(
            source=src.read(1, window=window).astype(np.int32),
            destination=codes,
            src_transform=src.window_transform(window),
            src_crs=src.crs,
            src_nodata=_OUTSIDE if nodata is None else int(nodata),
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=_OUTSIDE,
            resampling=Resampling.nearest,
        )
    if nodata is not None:
        codes[codes == int(nodata)] = _OUTSIDE
    return codes


def _window_under(src: Any, crs: Any, bounds: Any) -> Window | None:
    """The window of ``src`` under the scene's ``bounds`` (in ``crs``), a pixel wider on each
    side; None when they do not overlap."""
    left, bottom, right, top = rasterio.warp.transform_bounds(crs, src.crs, *bounds)
    window = src.window(left, bottom, right, top)
    col0, row0 = math.floor(window.col_off) - 1, math.floor(window.row_off) - 1
    col1 = math.ceil(window.col_off + window.width) + 1
    row1 = math.ceil(window.row_off + window.height) + 1
    col0, row0, col1, row1 = max(col0, 0), max(row0, 0), min(col1, src.width), min(row1, src.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def class_mask(source: LabelRaster, scene: PathLike) -> np.ndarray:
    """The class indices ``0 .. K-1`` (uint8) of every pixel of ``scene``.

    Codes are put on the scene's grid (nearest neighbour when grid or CRS differ); ignored
    codes, unlisted codes, the raster's nodata and pixels outside it become
    :data:`helpers.labels.IGNORE_VALUE`.
    """
    codes = _codes_on_scene(source, scene)
    mask = np.full(codes.shape, IGNORE_VALUE, dtype=np.uint8)
    for index, code in enumerate(source.classes):
        mask[codes == code] = index
    return mask


def target_mask(source: LabelRaster, mask: np.ndarray) -> np.ndarray:
    """Binary mask of the target class from a :func:`class_mask` (ignored pixels stay 255).

    Raises:
        LabelRasterError: The source has no target.
    """
    if source.target_index is None:
        raise _fail("labels.target", "not set; name the class the binary notebooks look for.")
    binary = (mask == source.target_index).astype(np.uint8)
    binary[mask == IGNORE_VALUE] = IGNORE_VALUE
    return binary


def tile_fractions_from_mask(
    mask: np.ndarray, windows: Sequence[Window], value: int = 1
) -> np.ndarray:
    """The fraction of each window's pixels that are ``value`` (pixels outside the mask count as
    not ``value``)."""
    table = np.pad((mask == value).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    height, width = mask.shape
    out = np.zeros(len(windows), dtype=np.float64)
    for i, w in enumerate(windows):
        r0, c0 = max(int(w.row_off), 0), max(int(w.col_off), 0)
        r1, c1 = min(int(w.row_off + w.height), height), min(int(w.col_off + w.width), width)
        if r1 > r0 and c1 > c0:
            count = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
            out[i] = count / (int(w.height) * int(w.width))
    return out


def tile_labels_from_mask(
    mask: np.ndarray,
    windows: Sequence[Window],
    *,
    positive: float = 0.5,
    negative: float = 0.05,
    max_ignored: float = 0.5,
) -> np.ndarray:
    """Per-window labels from a binary mask: 1 at least ``positive`` target, 0 at most
    ``negative``, :data:`helpers.labels.IGNORE_LABEL` in between (the vector labels' rule) and
    where more than ``max_ignored`` of the window is ignored (255): unknown is not negative."""
    fractions = tile_fractions_from_mask(mask, windows)
    ignored = tile_fractions_from_mask(mask, windows, value=IGNORE_VALUE)
    labels = np.full(len(windows), IGNORE_LABEL, dtype=np.int64)
    labels[fractions >= positive - 1e-9] = 1
    labels[(fractions <= negative + 1e-9) & (ignored <= max_ignored)] = 0
    return labels
