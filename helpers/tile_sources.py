"""Tile datasets in class folders as a region: ``tiles:`` in a region config.

Many labelled datasets come as separate image tiles sorted into one folder per class (EuroSAT,
UC Merced, a land-cover set of your own), not as a scene with vector labels. A region config
with a ``tiles`` section reads such a folder::

    tiles:
      folder: ../data/eurosat_rgb          # one sub-folder per class
      classes: [AnnualCrop, Forest, ...]   # optional: order and subset; default: sorted folders
      bands: [red, green, blue]            # optional band roles; default from the band count
      target: land cover                   # optional: what the classes are (titles, cards)
      split: {validation: 0.15, test: 0.15, seed: 42}   # random, stratified by class

Tiles are JPEG, PNG or GeoTIFF, any band count, georeferenced or not; all must share one size
and band count. Tiles are separate images, so they are split at random (stratified by class)
rather than by spatial blocks. Such a region has no scene: notebooks 03 and 04 (tile
classification) run on it; the scene notebooks stop at their first use of a scene with an error
saying so.

Example:
    >>> region = load_region("regions/eurosat.yaml")  # doctest: +SKIP
    >>> splits = region.tiles.load_splits()  # doctest: +SKIP
    >>> images, labels = splits["train"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "TileSource", "parse_tiles", "tile_region"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
_KEYS = ("folder", "classes", "bands", "target", "split")
_SPLIT_KEYS = ("validation", "test", "seed")
_DEFAULT_SPLIT = {"validation": 0.15, "test": 0.15, "seed": 42}
_SCENE_SECTIONS = ("imagery", "sample", "labels", "aoi")
_SCENE_NOTEBOOKS = "02 and 05-08"
_PIL_DTYPES = {"I": "int32", "F": "float32"}  # other modes: 8-bit, or 16-bit for I;16*


def _fail(config: Any, key: str, message: str) -> ValueError:
    from helpers.regions import RegionConfigError  # imported here: regions imports this module

    return RegionConfigError(f"{config}: {key}: {message}")


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _open_tiff(path: Path):
    """Open a GeoTIFF tile; tiles without georeferencing are expected, so no warning."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _header(path: Path) -> tuple[int, int, int, str, bool]:
    """``(rows, cols, bands, dtype, georeferenced)`` of one tile, from its header only."""
    if _is_tiff(path):
        with _open_tiff(path) as src:
            georeferenced = src.crs is not None and not src.transform.is_identity
            return src.height, src.width, src.count, src.dtypes[0], georeferenced
    from PIL import Image

    with Image.open(path) as image:
        bands = len(image.getbands()) if image.mode != "P" else 3
        dtype = _PIL_DTYPES.get(image.mode, "uint16" if image.mode.startswith("I;16") else "uint8")
        return image.height, image.width, bands, dtype, False


def read_tile(path: Path) -> np.ndarray:
    """One tile as a channels-last ``(rows, cols, bands)`` array in its stored dtype."""
    if _is_tiff(path):
        with _open_tiff(path) as src:
            return np.moveaxis(src.read(), 0, -1)
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB") if image.mode == "P" else image)
    return array[..., np.newaxis] if array.ndim == 2 else array


@dataclass(frozen=True)
class TileSource:
    """A class-folder tile dataset, checked.

    Attributes:
        folder: The folder holding one sub-folder per class.
        classes: Class names in label order (label ``i`` is ``classes[i]``).
        files: Tile files per class, sorted by name.
        bands: Band roles in file order.
        tile_shape: ``(rows, cols)`` of every tile.
        dtype: Stored data type of the tiles.
        georeferenced: Whether the (GeoTIFF) tiles carry a CRS and transform.
        target: What the classes are (e.g. ``"land cover"``), for titles and cards.
        validation, test: Shares of each class's tiles held out.
        seed: Seed of the split.
    """

    folder: Path
    classes: tuple[str, ...]
    files: dict[str, tuple[Path, ...]]
    bands: tuple[str, ...]
    tile_shape: tuple[int, int]
    dtype: str
    georeferenced: bool
    target: str
    validation: float
    test: float
    seed: int

    @property
    def class_names(self) -> dict[int, str]:
        """``{label: class name}``, labels ``0 .. K-1``."""
        return dict(enumerate(self.classes))

    def load(self) -> tuple[np.ndarray, np.ndarray, list[Path]]:
        """Every tile: ``(images, labels, paths)``.

        Images are ``(N, rows, cols, bands)`` in the stored dtype, labels ``(N,)`` int64 codes.
        """
        paths = [p for name in self.classes for p in self.files[name]]
        labels = np.concatenate(
            [np.full(len(self.files[name]), code) for code, name in enumerate(self.classes)]
        ).astype(np.int64)
        images = np.stack([read_tile(p) for p in paths])
        return images, labels, paths

    def assign_splits(self, labels: np.ndarray) -> np.ndarray:
        """Split name per tile: a seeded random split within each class (stratified).

        Each class gives ``round(share * n)`` tiles to validation and test (at least one each
        when the share is positive and the class has three tiles or more); the rest train, and
        at least one tile of every class trains.
        """
        labels = np.asarray(labels)
        out = np.full(len(labels), "train", dtype=object)
        rng = np.random.default_rng(self.seed)
        for code in range(len(self.classes)):
            members = rng.permutation(np.flatnonzero(labels == code))
            n = len(members)
            n_val, n_test = (
                max(int(share > 0 and n >= 3), round(share * n))
                for share in (self.validation, self.test)
            )
            n_val = min(n_val, max(n - 1, 0))  # keep a training tile of every class
            n_test = min(n_test, max(n - 1 - n_val, 0))
            out[members[:n_val]] = "validation"
            out[members[n_val : n_val + n_test]] = "test"
        return out.astype(str)

    def load_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train" | "validation" | "test": (images, labels)}`` with :meth:`assign_splits`."""
        images, labels, _ = self.load()
        assignment = self.assign_splits(labels)
        return {
            name: (images[assignment == name], labels[assignment == name])
            for name in ("train", "validation", "test")
        }

    def scaling_limits(self, images: np.ndarray) -> list[list[float]]:
        """Per-band ``[low, high]`` for a stretch to 0-255: the full range of 8-bit tiles, else
        the 2nd and 98th percentiles of ``images`` (the training tiles)."""
        if self.dtype == "uint8":
            return [[0.0, 255.0] for _ in self.bands]
        flat = np.asarray(images, dtype=np.float64).reshape(-1, len(self.bands))
        low, high = np.percentile(flat, [2, 98], axis=0)
        return [[float(a), float(max(b, a + 1e-6))] for a, b in zip(low, high, strict=True)]

    def summary(self, name: str, config: Any, outputs_root: Path) -> str:
        """A few lines describing the dataset, for the top of a notebook."""
        counts = ", ".join(f"{c} {len(self.files[c])}" for c in self.classes)
        rows, cols = self.tile_shape
        return "\n".join(
            [
                f"region {name!r} ({config}): class-folder tiles in {self.folder}, no scene",
                f"  tiles: {sum(len(f) for f in self.files.values())} of {rows} x {cols} px, "
                f"{len(self.bands)} band(s) {list(self.bands)}, {self.dtype}"
                + (", georeferenced" if self.georeferenced else ""),
                f"  {len(self.classes)} classes of {self.target}: {counts}",
                f"  split: validation {self.validation:.0%}, test {self.test:.0%} of each class "
                f"(seed {self.seed})",
                f"  outputs under {outputs_root}",
            ]
        )


def _class_folders(section: Mapping[str, Any], folder: Path, config: Any) -> list[str]:
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = section.get("classes")
    if classes is None:
        classes = found
    elif not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise _fail(config, "tiles.classes", f"expected a list of folder names, got {classes!r}.")
    missing = [c for c in classes if c not in found]
    if missing:
        raise _fail(
            config,
            "tiles.classes",
            f"no folder {missing} in {folder} (its folders: {', '.join(found) or 'none'}); "
            "list class folder names exactly as they are spelt.",
        )
    if len(set(classes)) != len(classes):
        raise _fail(config, "tiles.classes", f"a class is listed twice in {classes}.")
    if len(classes) < 2:
        raise _fail(
            config,
            "tiles.folder" if section.get("classes") is None else "tiles.classes",
            f"{len(classes)} class folder(s) ({', '.join(classes) or 'none'}) in {folder}; a "
            "classifier needs at least two: put one sub-folder per class there.",
        )
    return list(classes)


def _split(section: Mapping[str, Any], config: Any) -> dict[str, Any]:
    split = section.get("split") or {}
    if not isinstance(split, Mapping):
        raise _fail(config, "tiles.split", f"expected e.g. {_DEFAULT_SPLIT}, got {split!r}.")
    unknown = sorted(set(split) - set(_SPLIT_KEYS))
    if unknown:
        raise _fail(config, f"tiles.split.{unknown[0]}", f"unknown key; use {_SPLIT_KEYS}.")
    out = {**_DEFAULT_SPLIT, **split}
    for key in ("validation", "test"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise _fail(config, f"tiles.split.{key}", f"expected a share in [0, 1), got {value!r}.")
    if out["validation"] + out["test"] >= 1:
        raise _fail(
            config,
            "tiles.split",
            f"validation ({out['validation']}) + test ({out['test']}) leave no training tiles; "
            "keep their sum below 1 (e.g. 0.15 and 0.15).",
        )
    seed = out["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(config, "tiles.split.seed", f"expected an integer >= 0, got {seed!r}.")
    return out


def _check_headers(files: Mapping[str, Sequence[Path]], config: Any) -> tuple:
    """One size, band count and dtype for all tiles; returns ``(rows, cols, bands, dtype, geo)``."""
    first = None
    for paths in files.values():
        for path in paths:
            try:
                header = _header(path)
            except Exception as exc:  # PIL and rasterio raise their own errors
                raise _fail(
                    config,
                    "tiles.folder",
                    f"cannot read {path} ({exc}); replace or remove it (JPEG, PNG or GeoTIFF).",
                ) from exc
            if first is None:
                first = (path, header)
            elif header[:4] != first[1][:4]:
                (rows, cols, bands, dtype), ref = header[:4], first[1][:4]
                raise _fail(
                    config,
                    "tiles.folder",
                    f"tiles differ: {first[0]} is {ref[0]} x {ref[1]} px, {ref[2]} band(s), "
                    f"{ref[3]} but {path} is {rows} x {cols} px, {bands} band(s), {dtype}. "
                    "All tiles need one size, band count and data type: resample or remove "
                    "the odd ones.",
                )
    return first[1]


def parse_tiles(section: Any, base: Path, config: Any, *, check_files: bool = True) -> TileSource:
    """Read and check the ``tiles`` section of a region config.

    Args:
        section: The section's mapping (keys ``folder``, ``classes``, ``bands``, ``target``,
            ``split``).
        base: Folder that relative paths are relative to (the config's folder).
        config: The config's path, for messages.
        check_files: Open every tile's header to check formats, size and band count.

    Returns:
        The :class:`TileSource`.

    Raises:
        RegionConfigError: A key is unknown or invalid, the folder is missing, it holds fewer
            than two class folders with images, a tile cannot be read, or tiles differ in size,
            band count or dtype; the message names the key and the fix.
    """
    if not isinstance(section, Mapping):
        raise _fail(config, "tiles", f"expected a mapping with 'folder', got {section!r}.")
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise _fail(config, f"tiles.{unknown[0]}", f"unknown key; the keys are {list(_KEYS)}.")
    value = section.get("folder")
    if not isinstance(value, str) or not value.strip():
        raise _fail(config, "tiles.folder", f"expected the folder of class folders, got {value!r}.")
    folder = Path(value).expanduser()
    folder = folder if folder.is_absolute() else (base / folder).resolve()
    if not folder.is_dir():
        raise _fail(config, "tiles.folder", f"{folder} is not a folder; check the path.")
    classes = _class_folders(section, folder, config)
    files = {name: tuple(_image_files(folder / name)) for name in classes}
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise _fail(
            config,
            "tiles.folder",
            f"class folder(s) {empty} in {folder} hold no tile ({', '.join(IMAGE_SUFFIXES)}); "
            "add tiles or leave the class out with tiles.classes.",
        )
    split = _split(section, config)
    first = next(iter(files.values()))[0]
    rows, cols, count, dtype, geo = _check_headers(files, config) if check_files else _header(first)
    bands = section.get("bands")
    if bands is None:
        bands = ["red", "green", "blue"] if count == 3 else [f"band_{i + 1}" for i in range(count)]
    elif not isinstance(bands, list) or not all(isinstance(b, str) for b in bands):
        raise _fail(config, "tiles.bands", f"expected a list of band names, got {bands!r}.")
    if len(bands) != count:
        raise _fail(
            config,
            "tiles.bands",
            f"{len(bands)} name(s) {bands} for tiles with {count} band(s) ({first}); give one "
            "name per band, in file order.",
        )
    target = section.get("target", classes[1] if len(classes) == 2 else "land cover")
    if not isinstance(target, str) or not target.strip():
        raise _fail(config, "tiles.target", f"expected a name, e.g. 'land cover', got {target!r}.")
    return TileSource(
        folder=folder,
        classes=tuple(classes),
        files=files,
        bands=tuple(b.lower() for b in bands),
        tile_shape=(rows, cols),
        dtype=dtype,
        georeferenced=geo,
        target=target,
        validation=float(split["validation"]),
        test=float(split["test"]),
        seed=int(split["seed"]),
    )


class _NoScenes(tuple):
    """The dates of a tile region: empty, and indexing it says why there is no scene."""

    message = ""

    def __getitem__(self, index):
        raise LookupError(self.message)


class _NoSceneFiles(dict):
    """The scenes of a tile region: empty, and asking for one says why there is none."""

    message = ""

    def __missing__(self, key):
        raise LookupError(self.message)


def _training(data: Mapping[str, Any], base: Path, config: Any) -> tuple[int, str | None]:
    from helpers import regions

    training = {"seed": 42, "weights": None, **(data.get("training") or {})}
    seed = regions._int(training["seed"], "training.seed", config, minimum=0)
    weights = training["weights"]
    if weights is not None and weights != "imagenet":
        weights = str(regions._path(weights, base, "training.weights", config))
    return seed, weights


def tile_region(
    data: Mapping[str, Any], config: Path, base: Path, name: str, outputs: Any, check_files: bool
):
    """Build the :class:`helpers.regions.Region` of a config with a ``tiles`` section.

    The region has no dates, scenes or vector labels: ``region.dates[0]`` and
    ``region.scenes[date]`` raise a ``LookupError`` that says so, which is where the scene
    notebooks stop. ``region.tiles`` is the :class:`TileSource`; ``tiling.tile_size`` is the
    tiles' size.

    Raises:
        RegionConfigError: See :func:`parse_tiles`; also a scene section (``imagery``,
            ``sample``, ``labels``, ``aoi``) next to ``tiles``, or a ``tiling.tile_size`` other
            than the tiles' size.
    """
    from helpers import regions

    clash = [key for key in _SCENE_SECTIONS if key in data]
    if clash:
        raise _fail(
            config,
            clash[0],
            "a region with 'tiles' (class-folder tiles) has no scene or vector labels; remove "
            f"'{clash[0]}', or write a second config for the scene.",
        )
    source = parse_tiles(data["tiles"], base, config, check_files=check_files)
    rows = source.tile_shape[0]
    given = (data.get("tiling") or {}).get("tile_size")
    if given is not None and given != rows:
        raise _fail(
            config,
            "tiling.tile_size",
            f"{given} differs from the tiles' size ({rows} px); remove it (tiles are used whole).",
        )
    tiling = regions.Tiling(**{**regions.DEFAULT_TILING, "tile_size": rows, "tile_stride": rows})
    seed, weights = _training(data, base, config)
    message = (
        f"{config}: region {name!r} is a class-folder tile dataset (tiles.folder) with no scene; "
        f"notebooks 03 and 04 run on it, notebooks {_SCENE_NOTEBOOKS} need a scene (a config "
        "with 'imagery' and 'labels')."
    )
    dates, scenes = _NoScenes(), _NoSceneFiles()
    dates.message = scenes.message = message
    return regions.Region(
        name=name,
        config=config,
        dates=dates,
        scenes=scenes,
        band_names=source.bands,
        scale=None,
        nodata=None,
        labels={},
        label_layer=None,
        class_property=None,
        target=source.target,
        target_values=tuple(source.classes),
        aoi=None,
        tiling=tiling,
        seed=seed,
        weights=weights,
        outputs=outputs,
        description=str(data.get("description") or ""),
        tiles=source,
    )
