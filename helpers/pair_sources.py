"""Image/mask pair datasets: folders of PNG or GeoTIFF images and their masks, as a region.

Cloud and land-cover benchmarks often come as pairs of files, georeferenced or not::

    pairs:
      images: ../data/clouds/images/*.png   # a folder or a glob
      masks: ../data/clouds/masks/*.png     # matched to the images by file name (stem)
      classes: {0: clear, 1: cloud, 2: shadow}
      ignore: [255]
      bands: [red, green, blue]             # optional: band roles in file order
      target: cloud                         # optional: the class of the binary steps
      split: {validation: 0.2, test: 0.2, seed: 42}

:func:`parse_pairs` reads the section and matches the files, :func:`check_pairs` opens every
pair (same size, one-band masks, codes within the class table and ``ignore``, a common band
count, images at least a patch wide), :func:`split_by_image` assigns whole images to train,
validation and test (patches of one image never land in two splits: they share pixels and
scenery), and :func:`pair_patches` cuts aligned image and mask patches per split.

Example:
    >>> split_by_image(["a", "b", "c", "d", "e"], seed=0)  # doctest: +SKIP
    {'a': 'train', 'b': 'train', 'c': 'test', 'd': 'train', 'e': 'validation'}
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from helpers.label_rasters import LabelRasterError, parse_class_table, parse_ignore
from helpers.labels import IGNORE_VALUE

__all__ = [
    "PairSource",
    "PairSourceError",
    "check_pairs",
    "mask_to_indices",
    "pair_patches",
    "parse_pairs",
    "read_image",
    "read_mask",
    "split_by_image",
]

PathLike = str | os.PathLike
PAIR_KEYS = ("images", "masks", "classes", "ignore", "bands", "target", "split")
SPLIT_KEYS = ("validation", "test", "seed")
SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
SPLITS = ("train", "validation", "test")


class PairSourceError(ValueError):
    """An image/mask pair source is unusable; the message names the key, the file and the fix."""


@dataclass(frozen=True)
class PairSource:
    """Matched image and mask files and how to read them.

    Attributes:
        images, masks: The files, matched by stem, sorted by stem.
        classes: Mask code -> class name, in the order of the class indices ``0 .. K-1``.
        ignore: Mask codes that are no label.
        bands: Band roles in file order, or None (then ``band_1`` ...).
        target: The class of the binary steps.
        validation, test: Fractions of the images in each split.
        seed: Seed of the split.
    """

    images: tuple[Path, ...]
    masks: tuple[Path, ...]
    classes: dict[int, str]
    ignore: tuple[int, ...] = ()
    bands: tuple[str, ...] | None = None
    target: str = ""
    validation: float = 0.2
    test: float = 0.2
    seed: int = 42

    @property
    def names(self) -> list[str]:
        """Class names in index order."""
        return list(self.classes.values())

    @property
    def stems(self) -> list[str]:
        """The pairs' common file names without suffix."""
        return [p.stem for p in self.images]

    def splits(self) -> dict[str, str]:
        """Stem -> split of every pair (see :func:`split_by_image`)."""
        return split_by_image(
            self.stems, validation=self.validation, test=self.test, seed=self.seed
        )


def _fail(where: str, message: str) -> PairSourceError:
    return PairSourceError(f"{where}: {message}")


def _files(value: Any, base: Path, where: str) -> list[Path]:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(where, f"expected a folder or a glob such as images/*.png, got {value!r}.")
    text = os.path.expanduser(str(value))
    pattern = text if os.path.isabs(text) else str(base / text)
    if os.path.isdir(pattern):
        files = [p for p in Path(pattern).iterdir() if p.suffix.lower() in SUFFIXES]
    else:
        files = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    if not files:
        raise _fail(
            where,
            f"no image file matches {pattern} (PNG, GeoTIFF or JPEG); check the folder or glob "
            "(relative paths start at the config's folder).",
        )
    return sorted(Path(os.path.abspath(p)) for p in files)


def _by_stem(files: list[Path], where: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in files:
        if path.stem in out:
            raise _fail(
                where, f"{out[path.stem].name} and {path.name} have the same name; keep one."
            )
        out[path.stem] = path
    return out


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _fail(where, f"expected a fraction of the images between 0 and 1, got {value!r}.")
    return float(value)


def parse_pairs(section: Mapping[str, Any], base: Path, config: PathLike) -> PairSource:
    """Read a ``pairs`` section and match images to masks by stem.

    Raises:
        PairSourceError: An unknown key, no files, an image without mask, a bad class table,
            split or band list; the message names ``config`` and the key.
    """
    if not isinstance(section, Mapping):
        raise _fail(f"{config}: pairs", f"expected a mapping of {', '.join(PAIR_KEYS)}.")
    unknown = [k for k in section if k not in PAIR_KEYS]
    if unknown:
        raise _fail(f"{config}: pairs.{unknown[0]}", f"unknown key; valid: {', '.join(PAIR_KEYS)}.")
    for key in ("images", "masks", "classes"):
        if key not in section:
            raise _fail(f"{config}: pairs.{key}", "missing (see regions/template.yaml).")
    images = _by_stem(
        _files(section["images"], base, f"{config}: pairs.images"), f"{config}: pairs.images"
    )
    masks = _by_stem(
        _files(section["masks"], base, f"{config}: pairs.masks"), f"{config}: pairs.masks"
    )
    lonely = [images[s].name for s in images if s not in masks]
    if lonely:
        raise _fail(
            f"{config}: pairs.masks",
            f"no mask for {len(lonely)} image(s), e.g. {', '.join(lonely[:3])}: masks are matched "
            "to images by file name without suffix (image scene_01.png, mask scene_01.png or "
            "scene_01.tif). Add the masks or move those images out.",
        )
    try:
        classes = parse_class_table(section["classes"], f"{config}: pairs.classes")
        ignore = parse_ignore(section.get("ignore"), classes, f"{config}: pairs.ignore")
    except LabelRasterError as exc:
        raise PairSourceError(str(exc)) from exc
    bands = section.get("bands")
    if bands is not None and (
        not isinstance(bands, list) or not all(isinstance(b, str) for b in bands)
    ):
        raise _fail(f"{config}: pairs.bands", f"expected a list of band names, got {bands!r}.")
    target = section.get("target", list(classes.values())[-1])
    if str(target) not in classes.values():
        raise _fail(
            f"{config}: pairs.target", f"{target!r} is not one of {list(classes.values())}."
        )
    split = section.get("split") or {}
    if not isinstance(split, Mapping) or any(k not in SPLIT_KEYS for k in split):
        raise _fail(
            f"{config}: pairs.split",
            f"expected a mapping of {', '.join(SPLIT_KEYS)}, got {split!r}.",
        )
    validation = _fraction(split.get("validation", 0.2), f"{config}: pairs.split.validation")
    test = _fraction(split.get("test", 0.2), f"{config}: pairs.split.test")
    if validation + test >= 1:
        raise _fail(f"{config}: pairs.split", "validation + test must leave images for training.")
    seed = split.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(f"{config}: pairs.split.seed", f"expected an integer >= 0, got {seed!r}.")
    stems = sorted(images)
    return PairSource(
        images=tuple(images[s] for s in stems),
        masks=tuple(masks[s] for s in stems),
        classes=classes,
        ignore=ignore,
        bands=None if bands is None else tuple(b.lower() for b in bands),
        target=str(target),
        validation=validation,
        test=test,
        seed=seed,
    )


def _open(path: PathLike):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def read_image(path: PathLike) -> np.ndarray:
    """An image file as ``(bands, rows, cols)``; georeferencing is not needed."""
    with _open(path) as src:
        return src.read()


def read_mask(path: PathLike) -> np.ndarray:
    """A one-band mask file as ``(rows, cols)``.

    Raises:
        PairSourceError: The mask has several bands (an RGB-coloured mask).
    """
    with _open(path) as src:
        if src.count != 1:
            raise _fail(
                str(path),
                f"a mask needs one band of class codes, this one has {src.count} (an RGB-coloured "
                "mask?); save it as a one-band (greyscale or palette) PNG or GeoTIFF of codes.",
            )
        return src.read(1)


def check_pairs(
    source: PairSource, patch_size: int, config: PathLike = "config"
) -> tuple[str, ...]:
    """Open every pair and check that they fit together; return the band names.

    Raises:
        PairSourceError: A mask of another size than its image, a mask code that is neither a
            class nor ignored, images with different band counts, a band list of another
            length, or an image smaller than ``patch_size``; the message names the file.
    """
    allowed = set(source.classes) | set(source.ignore)
    counts = {}
    for image, mask_path in zip(source.images, source.masks, strict=True):
        with _open(image) as src:
            counts[image.name], shape = src.count, src.shape
        mask = read_mask(mask_path)
        if mask.shape != shape:
            raise _fail(
                f"{config}: pairs.masks",
                f"{mask_path.name} is {mask.shape[1]} x {mask.shape[0]} px but its image "
                f"{image.name} is {shape[1]} x {shape[0]} px; a mask must cover its image pixel "
                "for pixel.",
            )
        extra = sorted(set(np.unique(mask).tolist()) - allowed)
        if extra:
            raise _fail(
                f"{config}: pairs.classes",
                f"{mask_path.name} holds code(s) {extra[:10]} that are neither classes "
                f"{list(source.classes)} nor ignored {list(source.ignore)}; add them to "
                "pairs.classes or pairs.ignore.",
            )
        if min(shape) < patch_size:
            raise _fail(
                f"{config}: tiling.patch_size",
                f"{patch_size} px is larger than {image.name} ({shape[1]} x {shape[0]} px); use a "
                f"patch_size of at most {min(shape)}.",
            )
    if len(set(counts.values())) > 1:
        raise _fail(f"{config}: pairs.images", f"the images have different band counts: {counts}.")
    count = next(iter(counts.values()))
    if source.bands is not None and len(source.bands) != count:
        raise _fail(
            f"{config}: pairs.bands",
            f"lists {len(source.bands)} band(s) {list(source.bands)} but the images have {count}; "
            "list one name per band, in file order.",
        )
    return source.bands or tuple(f"band_{i}" for i in range(1, count + 1))


def split_by_image(
    stems: Sequence[str], *, validation: float = 0.2, test: float = 0.2, seed: int = 42
) -> dict[str, str]:
    """Assign whole images to train, validation and test, at random (seeded).

    Each non-zero fraction gets at least one image when there are at least three, so that
    every split exists; the rest goes to training.
    """
    order = sorted(stems)
    rng = np.random.default_rng(seed)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    n = len(order)
    counts = [round(validation * n), round(test * n)]
    if n >= 3:
        counts = [
            max(c, 1) if f > 0 else c for c, f in zip(counts, (validation, test), strict=True)
        ]
    n_val, n_test = counts
    out = dict.fromkeys(shuffled[:n_test], "test")
    out |= dict.fromkeys(shuffled[n_test : n_test + n_val], "validation")
    out |= dict.fromkeys(shuffled[n_test + n_val :], "train")
    return {s: out[s] for s in order}


def mask_to_indices(mask: np.ndarray, source: PairSource) -> np.ndarray:
    """Mask codes as class indices 0 .. K-1 (uint8), 255 for ignored and unlisted codes."""
    out = np.full(mask.shape, IGNORE_VALUE, dtype=np.uint8)
    for index, code in enumerate(source.classes):
        out[mask == code] = index
    return out


def pair_patches(
    source: PairSource, patch_size: int, stride: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Image and mask patches per split, cut on the same windows of each image.

    Returns:
        ``{split: (images (n, patch, patch, bands) in stored units, masks (n, patch, patch, 1)
        uint8 class indices 0 .. K-1, 255 ignored)}``; a split without images has ``n = 0``.
    """
    from helpers.tiling import tile_windows

    assignment = source.splits()
    parts: dict[str, tuple[list, list]] = {s: ([], []) for s in SPLITS}
    count = None
    for image_path, mask_path in zip(source.images, source.masks, strict=True):
        image = read_image(image_path)
        count = image.shape[0]
        mask = mask_to_indices(read_mask(mask_path), source)
        images, masks = parts[assignment[image_path.stem]]
        for w in tile_windows(image.shape[1], image.shape[2], patch_size, stride=stride):
            rows = slice(int(w.row_off), int(w.row_off + w.height))
            cols = slice(int(w.col_off), int(w.col_off + w.width))
            images.append(np.moveaxis(image[:, rows, cols], 0, -1))
            masks.append(mask[rows, cols, None])
    out = {}
    for split, (images, masks) in parts.items():
        if images:
            out[split] = (np.stack(images), np.stack(masks))
        else:
            empty = np.zeros((0, patch_size, patch_size, count or 1))
            out[split] = (empty, np.zeros((0, patch_size, patch_size, 1), np.uint8))
    return out


def summary(source: PairSource, name: str, config: PathLike | None, outputs: PathLike) -> str:
    """A few lines describing a pair region, for the top of a notebook."""
    counts = {s: 0 for s in SPLITS}
    for split in source.splits().values():
        counts[split] += 1
    return "\n".join(
        [
            f"region {name!r} ({config}): {len(source.images)} image/mask pairs "
            f"({', '.join(f'{n} {s}' for s, n in counts.items())}), split by image",
            f"  classes: {source.classes}, ignored codes {list(source.ignore)}, "
            f"target {source.target!r}",
            f"  images from {source.images[0].parent}, masks from {source.masks[0].parent}",
            f"  outputs under {outputs}",
        ]
    )
