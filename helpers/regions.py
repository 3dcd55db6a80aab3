"""Region configs: one YAML file says where a region's imagery, labels and outputs are.

Every notebook takes the path of a region config as its ``REGION`` parameter and derives the
rest from it: scenes per date, band roles, the vector labels and which class to look for, tiling
and split sizes, the seed, and where datasets, models, maps and figures go. The sample region is
one such config (``regions/sample.yaml``); ``regions/template.yaml`` is the commented starting
point for your own region.

:func:`load_region` reads and validates a config, so that mistakes surface at once with a
message naming the file, the key and the fix, rather than half-way through a training run:
unknown keys (with the closest valid name), wrong types, missing files, band lists that do not
match the raster, labels or an area of interest that miss the imagery, and target classes that
the label file does not contain.

Example:
    >>> region = load_region("regions/sample.yaml")  # doctest: +SKIP
    >>> region.dates, region.band_names  # doctest: +SKIP
    (('2021-06-15', '2024-06-20'), ('blue', 'green', 'red', 'nir'))
"""

from __future__ import annotations

import datetime as _dt
import difflib
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

from helpers import label_rasters as _label_rasters
from helpers import labels as _labels
from helpers import pair_sources as _pair_sources
from helpers import raster as _raster
from helpers import region_yaml as _region_yaml
from helpers import tile_sources as _tile_sources

__all__ = [
    "DEFAULT_TILING",
    "RGB",
    "Outputs",
    "Region",
    "RegionConfigError",
    "Tiling",
    "load_region",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
RGB = ("red", "green", "blue")

#: Tiling and split choices used when a config leaves them out.
DEFAULT_TILING: dict[str, Any] = {
    "patch_size": 128,  # segmentation patches (notebooks 02, 05)
    "stride": 64,
    "tile_size": 64,  # classification tiles (notebook 03)
    "tile_stride": 32,
    "block_size": 512,  # side of the spatial blocks assigned to train / validation / test
    "positive": 0.5,  # a tile at least this much covered by the target class is positive
    "negative": 0.05,  # ... at most this much is negative; in between it is ignored
    "max_nodata_fraction": 0.5,  # patches with more nodata than this are skipped
}
_TRAINING = {"seed": 42, "weights": None}
_OUTPUT_KINDS = ("datasets", "models", "figures", "maps", "predictions", "rois")

_SCHEMA: dict[str, Any] = {
    "name": None,
    "description": None,
    "sample": {"folder": None, "size": None, "seed": None},
    "imagery": {"scenes": None, "bands": None, "scale": None, "nodata": None, "sentinel2": None},
    "aoi": None,
    "labels": {
        "file": None,
        "files": None,
        "layer": None,
        "class_property": None,
        "target": None,
        "values": None,
        **dict.fromkeys(_label_rasters.RASTER_KEYS),
    },
    "pairs": dict.fromkeys(_pair_sources.PAIR_KEYS),
    "tiling": dict.fromkeys(DEFAULT_TILING),
    "training": dict.fromkeys(_TRAINING),
    "outputs": dict.fromkeys(("root", *_OUTPUT_KINDS)),
    "tiles": None,  # class-folder tiles: checked by helpers.tile_sources
}
_SENTINEL2_KEYS = ("dates", "max_cloud", "bands", "resolution", "url")


class RegionConfigError(ValueError):
    """A region config is invalid; the message names the file, the key and what to do."""


@dataclass(frozen=True)
class Tiling:
    """Patch, tile and split sizes in pixels, and the label thresholds."""

    patch_size: int
    stride: int
    tile_size: int
    tile_stride: int
    block_size: int
    positive: float
    negative: float
    max_nodata_fraction: float


@dataclass(frozen=True)
class Outputs:
    """Where a region's results go; every folder is created on first use by the notebooks."""

    root: Path
    datasets: Path
    models: Path
    figures: Path
    maps: Path
    predictions: Path
    rois: Path


@dataclass(frozen=True)
class Region:
    """Everything the notebooks need to know about a region, with paths resolved.

    Attributes:
        name: Short name, used in titles and output names.
        config: The YAML file the region was read from (None when built in code).
        dates: Acquisition dates, in the config's order (the first is the training date).
        scenes: GeoTIFF per date.
        band_names: Band roles in file order (``"blue"``, ``"red"``, ``"nir"``, ``"pan"`` ...).
        scale: Stored value times ``scale`` is reflectance; None when unknown.
        nodata: Nodata value of the scenes (from the config, else from the files).
        labels: Vector label file per date (dates without labels are absent).
        label_layer: Layer of the label files (GeoPackages with several layers).
        class_property: Attribute holding the class; None: every feature is the target class.
        target: Display name of the class the binary tasks look for.
        target_values: Values of ``class_property`` that count as the target class.
        aoi: Area of interest in EPSG:4326, or None for the whole scenes.
        tiling: Patch, tile and split sizes.
        seed: Seed of splits, sampling and weights.
        weights: Backbone weights for the ResNet50 models: None, ``"imagenet"`` or a file.
        outputs: Output folders.
        landcover, clouds, buildings: Extra rasters and vectors per date (the sample region has
            them; a region of your own usually does not).
        sentinel2: The Sentinel-2 query the scenes come from, if any (see :meth:`fetch_imagery`).
        description: The config's free-text description.
        sample_root: The folder of the generated sample region (sample configs only); open it
            with ``helpers.sample_data.load_sample_region`` for what only the sample has.
        tiles: The class-folder tile dataset of a ``tiles`` config
            (:class:`helpers.tile_sources.TileSource`; such a region has no scene), else None.
        label_raster: The label raster (``labels.raster``): ``labels`` then holds its path for
            every date, see :mod:`helpers.label_rasters`.
        pairs: The image/mask pairs (a ``pairs`` section instead of ``imagery``): no dates,
            scenes or georeferencing, see :mod:`helpers.pair_sources`.
    """

    name: str
    config: Path | None
    dates: tuple[str, ...]
    scenes: dict[str, Path]
    band_names: tuple[str, ...]
    scale: float | None
    nodata: float | None
    labels: dict[str, Path]
    label_layer: str | int | None
    class_property: str | None
    target: str
    target_values: tuple[Any, ...]
    aoi: Any
    tiling: Tiling
    seed: int
    weights: str | None
    outputs: Outputs
    landcover: dict[str, Path] = field(default_factory=dict)
    clouds: dict[str, Path] = field(default_factory=dict)
    buildings: dict[str, Path] = field(default_factory=dict)
    sentinel2: dict[str, Any] | None = None
    description: str = ""
    sample_root: Path | None = None
    tiles: Any = None
    label_raster: _label_rasters.LabelRaster | None = None
    pairs: _pair_sources.PairSource | None = None

    # ------------------------------------------------------------------ bands

    def band(self, role: str) -> int | None:
        """1-based index of the band with this role (case-insensitive), or None."""
        names = [n.lower() for n in self.band_names]
        return names.index(role.lower()) + 1 if role.lower() in names else None

    def band_indexes(self, roles: Sequence[str]) -> list[int]:
        """1-based positions of bands named by role, e.g. a model card's ``bands``.

        Files are read by position, since the config's band names need not be the file's band
        descriptions (a file without descriptions has ``band_1`` ...).

        Raises:
            RegionConfigError: A role is not one of the region's bands.
        """
        missing = [r for r in roles if self.band(r) is None]
        if missing:
            raise RegionConfigError(
                f"{self.config}: no band {missing} in region {self.name!r}, whose bands are "
                f"{list(self.band_names)}; a model trained on other bands cannot be applied here "
                "(or name the bands in imagery.bands)."
            )
        return [self.band(r) for r in roles]

    def has_bands(self, *roles: str) -> bool:
        """True if every role (e.g. ``"red", "nir"``) is one of the region's bands."""
        return all(self.band(r) is not None for r in roles)

    @property
    def rgb(self) -> list[int] | None:
        """1-based indices of red, green and blue, or None when the imagery lacks one of them."""
        return [self.band(r) for r in RGB] if self.has_bands(*RGB) else None

    @property
    def display_bands(self) -> list[int]:
        """Bands for a quick-look: natural colour when possible, else the first band (grey)."""
        return self.rgb or [1]

    # ------------------------------------------------------------------ labels and areas

    @property
    def classes(self) -> dict[int, str]:
        """Class index -> name of the segmentation masks: the class table of a label raster or
        of the pairs (indices 0 .. K-1 in code order), else :attr:`class_names`."""
        source = self.label_raster or self.pairs
        return dict(enumerate(source.names)) if source is not None else self.class_names

    @property
    def class_names(self) -> dict[int, str]:
        """Class names by label: binary (0 everything else, 1 the target), or the tiles' classes."""
        if self.tiles is not None:
            return self.tiles.class_names
        return {0: "other", 1: self.target}

    def read_labels(self, date: str, crs: CRS | str | None = None):
        """The target-class features of ``date``, reprojected to ``crs`` and repaired.

        Raises:
            KeyError: The region has no labels for ``date``.
            helpers.labels.VectorError: The file cannot be read (see ``labels.read_vectors``).
        """
        if date not in self.labels:
            raise KeyError(
                f"Region {self.name!r} has no labels for {date}; it has labels for "
                f"{', '.join(self.labels) or 'no date'} (labels.files in {self.config})."
            )
        if self.label_raster is not None:
            raise TypeError(
                f"Region {self.name!r} has a label raster, not vector labels: read it with "
                "helpers.label_rasters.class_mask(region.label_raster, scene)."
            )
        gdf = _labels.read_vectors(
            self.labels[date], crs=crs, layer=self.label_layer, class_property=self.class_property
        )
        if self.class_property is not None:
            keep = gdf[self.class_property].isin(list(self.target_values))
            gdf = gdf.loc[keep].copy()
            gdf.attrs["source"] = str(self.labels[date])
        return gdf

    def windows_in_aoi(self, windows: Sequence[Window], scene: PathLike) -> list[Window]:
        """Keep the windows that touch the area of interest (all of them without an AOI)."""
        if self.aoi is None:
            return list(windows)
        with rasterio.open(scene) as src:
            transform, crs = src.transform, src.crs
        aoi = _to_crs(self.aoi, crs)
        boxes = [shapely.box(*rasterio.windows.bounds(w, transform)) for w in windows]
        hit = shapely.intersects(np.array(boxes, dtype=object), aoi)
        return [w for w, keep in zip(windows, hit, strict=True) if keep]

    # ------------------------------------------------------------------ scaling and outputs

    def input_scaling(self, scene: PathLike | None = None) -> dict[str, Any]:
        """How raw values become model inputs, as a model-card ``scaling`` entry.

        With a known ``scale`` (reflectance), a linear scaling; otherwise each band is stretched
        from its whole-scene 2-98 % percentiles to 0-255 and divided by 255, which works for any
        dtype and sensor. The same dict goes into the model card, so prediction applies exactly
        this.
        """
        if self.scale is not None:
            return {"method": "linear", "scale": float(self.scale), "offset": 0.0}
        path = scene if scene is not None else self.scenes[self.dates[0]]
        limits = [list(map(float, v)) for v in _raster.scene_percentiles(path).values()]
        return {"method": "uint8_stretch", "limits": limits, "then": "1/255"}

    def figures_dir(self, notebook: str) -> Path:
        """Folder for the figures of one notebook (``outputs.figures / notebook``)."""
        return self.outputs.figures / notebook

    def fetch_imagery(self, *, overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
        """Download the Sentinel-2 scenes of the config's query where they are missing.

        Each date of ``imagery.sentinel2.dates`` (a date range ``"start/end"``) gives one scene,
        the best-ranked one of the STAC search over the AOI, written to ``scenes[date]``.

        Returns:
            The scene paths.

        Raises:
            RegionConfigError: The region has no Sentinel-2 query.
            helpers.download.OfflineError, helpers.stac.NoScenesFoundError: See
                :func:`helpers.stac.fetch_sentinel2`.
        """
        if self.sentinel2 is None:
            raise RegionConfigError(
                f"{self.config}: imagery.sentinel2 is not set; the scenes are local files."
            )
        from helpers import stac

        query = self.sentinel2
        for date, path in self.scenes.items():
            if path.exists() and not overwrite:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs = {k: query[k] for k in ("max_cloud", "resolution", "url") if k in query}
            stac.fetch_sentinel2(
                self.aoi,
                date,
                path,
                bands=list(query.get("bands", stac.DEFAULT_BANDS)),
                overwrite=overwrite,
                progress=progress,
                **kwargs,
            )
        return dict(self.scenes)

    def summary(self) -> str:
        """A few lines describing the region, for the top of a notebook."""
        if self.tiles is not None:
            return self.tiles.summary(self.name, self.config, self.outputs.root)
        if self.pairs is not None:
            return _pair_sources.summary(self.pairs, self.name, self.config, self.outputs.root)
        info = _raster.describe(self.scenes[self.dates[0]])
        label_files = dict.fromkeys(p.name for p in self.labels.values())
        lines = [
            f"region {self.name!r} ({self.config}): {len(self.dates)} date(s) "
            f"{', '.join(self.dates)}",
            f"  scenes: {info.width} x {info.height} px, {info.count} band(s) "
            f"{list(self.band_names)}, {info.dtype}, {info.resolution[0]:g} "
            f"{info.crs_units or 'units'} pixels, {info.crs.to_string() if info.crs else 'no CRS'}",
            f"  labels: {self.target!r} from {', '.join(label_files)}"
            + (
                f" where {self.class_property} in {list(self.target_values)}"
                if self.class_property
                else ""
            ),
            f"  outputs under {self.outputs.root}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- reading


def _fail(config: Path | str, key: str, message: str) -> RegionConfigError:
    where = f"{config}: {key}" if key else str(config)
    return RegionConfigError(f"{where}: {message}")


def _read_config(config: Path) -> _region_yaml.YamlDocument:
    """The config's YAML, read strictly (UTF-8, no key twice); missing files named with the fix."""
    if not config.exists():
        raise FileNotFoundError(
            f"Region config {config} does not exist. Copy regions/template.yaml next to it and "
            "fill it in, or pass the path of an existing config (e.g. ../regions/sample.yaml)."
        )
    try:
        return _region_yaml.read_yaml(config)
    except _region_yaml.ConfigYamlError as exc:
        raise RegionConfigError(str(exc)) from exc


#: Keys that hold names or class values: text (or numbers), never a YAML 1.1 boolean.
_TEXT_KEYS = (
    ("name",),
    ("description",),
    ("imagery", "bands"),
    ("labels", "layer"),
    ("labels", "class_property"),
    ("labels", "target"),
    ("labels", "values"),
)


def _check_yaml_booleans(booleans: Mapping[tuple, _region_yaml.YamlBoolean], config) -> None:
    """Refuse ``values: [yes]`` and the like: YAML 1.1 turns yes/no/on/off/true/false into
    booleans, so the class "yes" would silently become ``True`` and match nothing."""
    for path, found in booleans.items():
        key = next((k for k in _TEXT_KEYS if path[: len(k)] == k), None)
        if key is None:
            continue
        where = ".".join(map(str, key)) + "".join(f"[{i}]" for i in path[len(key) :])
        quoted = f"[{found.text!r}]" if len(path) > len(key) else repr(found.text)
        raise _fail(
            config,
            where,
            f"{found.text} (line {found.line}) was read as the boolean {found.value}, not the "
            f"text {found.text!r} (YAML reads unquoted yes/no/on/off/true/false as booleans); "
            f"quote it: {key[-1]}: {quoted}.",
        )


def _check_keys(section: Mapping[str, Any], schema: Mapping[str, Any], prefix: str, config) -> None:
    for key in section:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise _fail(
                config,
                f"{prefix}{key}",
                f"unknown key.{hint} Valid keys here: {', '.join(schema)}.",
            )
        if isinstance(schema[key], dict) and section[key] is not None:
            if not isinstance(section[key], Mapping):
                raise _fail(
                    config,
                    f"{prefix}{key}",
                    f"expected a mapping of {', '.join(schema[key])}, got "
                    f"{type(section[key]).__name__} {section[key]!r}.",
                )
            _check_keys(section[key], schema[key], f"{prefix}{key}.", config)


#: Levels of the course's U-Net (notebook 05's ``DEPTH``); the config has no depth key.
UNET_DEPTH = 3


def _check_tiling_fits(tiling: Tiling, config) -> None:
    """Sizes the models and the split can use.

    A segmentation patch is halved ``UNET_DEPTH`` times by the U-Net and joined back to its
    skip connections, so it must be a multiple of ``2**UNET_DEPTH`` (error). Spatial blocks
    narrower than two patches or tiles make the split drop most of them; the config still
    works, so that is a warning with a suggested value.
    """
    factor = 2**UNET_DEPTH
    size = tiling.patch_size
    if size % factor:
        fits = sorted({max(factor, size // factor * factor), (size // factor + 1) * factor})
        raise _fail(
            config,
            "tiling.patch_size",
            f"{size} is not a multiple of {factor} = 2**{UNET_DEPTH}: the course's U-Net "
            f"(depth {UNET_DEPTH}, notebook 05's DEPTH) halves each patch {UNET_DEPTH} times and "
            "joins the halves back to the full-size features, which only fits for multiples of "
            f"{factor}. Use {' or '.join(map(str, fits))} (a U-Net of depth 4 needs a multiple "
            "of 16, the ResNet50 encoder one of 32).",
        )
    key, widest = max((("patch_size", size), ("tile_size", tiling.tile_size)), key=lambda kv: kv[1])
    if tiling.block_size < 2 * widest:
        # stacklevel 3: the warning points at the caller of load_region
        warnings.warn(
            f"{config}: tiling.block_size: {tiling.block_size} px is less than twice "
            f"tiling.{key} ({widest} px): the split keeps whole blocks apart and drops the "
            "patches that straddle two blocks, which is most of them when blocks are not "
            f"several patches wide. Use a block_size of at least {2 * widest}, e.g. "
            f"{4 * widest}.",
            stacklevel=3,
        )


def _date(value: Any, key: str, config) -> str:
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.strftime("%Y-%m-%d")
    text = str(value)
    try:
        _dt.date.fromisoformat(text[:10])
    except ValueError as exc:
        raise _fail(config, key, f"{text!r} is not a date; write dates as YYYY-MM-DD.") from exc
    return text


def _path(value: Any, base: Path, key: str, config) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(config, key, f"expected a file path, got {value!r}.")
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else (base / path).resolve()


def _int(value: Any, key: str, config, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise _fail(config, key, f"expected an integer >= {minimum}, got {value!r}.")
    return int(value)


def _fraction(value: Any, key: str, config) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _fail(config, key, f"expected a number between 0 and 1, got {value!r}.")
    return float(value)


def _to_crs(geometry: Any, crs: CRS | None) -> Any:
    if crs is None:
        return geometry
    transformer = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def _read_aoi(value: Any, base: Path, config) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise _fail(
                config, "aoi", f"expected [west, south, east, north] in degrees, got {value!r}."
            )
        west, south, east, north = map(float, value)
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise _fail(
                config,
                "aoi",
                f"{value!r} is not a valid [west, south, east, north] box in longitude/latitude "
                "degrees (west < east, south < north).",
            )
        return shapely.box(west, south, east, north)
    path = _path(value, base, "aoi", config)
    if not path.exists():
        raise _fail(config, "aoi", f"the AOI file {path} does not exist.")
    gdf = _labels.read_vectors(path, crs="EPSG:4326")
    return shapely.union_all(gdf.geometry.to_numpy())


def _scene_footprint_lonlat(path: Path) -> Any:
    """A scene's footprint in EPSG:4326 (edges densified), or None when it has no CRS."""
    with rasterio.open(path) as src:
        if src.crs is None:
            return None
        box = shapely.box(*src.bounds)
        to_ll = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
        return shapely.transform(
            shapely.segmentize(box, max(src.bounds.right - src.bounds.left, 1) / 16),
            lambda xy: np.column_stack(to_ll.transform(*xy.T)),
        )


def _sample_parts(section: Mapping[str, Any], base: Path, config) -> dict[str, Any]:
    from helpers.sample_data import ensure_sample_region

    folder = _path(section.get("folder", "sample"), base, "sample.folder", config)
    size = _int(section.get("size", 2048), "sample.size", config, minimum=256)
    seed = _int(section.get("seed", 42), "sample.seed", config, minimum=0)
    sample = ensure_sample_region(folder, size=size, seed=seed, progress=False)
    return {
        "dates": tuple(sample.dates),
        "scenes": dict(sample.scenes),
        "labels": dict(sample.settlements),
        "landcover": dict(sample.landcover),
        "clouds": dict(sample.clouds),
        "buildings": dict(sample.buildings),
        "sample_root": sample.root,
        "target": "informal settlement",
        "seed": seed,
    }


def _imagery_parts(
    section: Mapping[str, Any], base: Path, outputs_root: Path, config
) -> dict[str, Any]:
    query = section.get("sentinel2")
    scenes_cfg = section.get("scenes")
    if query is not None:
        if not isinstance(query, Mapping) or "dates" not in query:
            raise _fail(
                config,
                "imagery.sentinel2",
                "expected a mapping with at least 'dates' (a list of 'start/end' ranges), e.g. "
                "{dates: ['2024-06-01/2024-08-31'], max_cloud: 20}.",
            )
        unknown = [k for k in query if k not in _SENTINEL2_KEYS]
        if unknown:
            raise _fail(
                config,
                f"imagery.sentinel2.{unknown[0]}",
                f"unknown key. Valid keys here: {', '.join(_SENTINEL2_KEYS)}.",
            )
        ranges = query["dates"] if isinstance(query["dates"], list) else [query["dates"]]
        scenes = {}
        for i, item in enumerate(ranges):
            text = str(item)
            _date(text.split("/")[0], f"imagery.sentinel2.dates[{i}]", config)
            scenes[text] = outputs_root / "imagery" / f"sentinel2_{text.replace('/', '_')}.tif"
        return {"scenes": scenes, "sentinel2": dict(query)}
    if not isinstance(scenes_cfg, Mapping) or not scenes_cfg:
        raise _fail(
            config,
            "imagery.scenes",
            "expected at least one 'date: path to a GeoTIFF' entry (or imagery.sentinel2 to "
            "download Sentinel-2 scenes, or a 'sample' section for the course's sample region).",
        )
    scenes = {}
    for key, value in scenes_cfg.items():
        date = _date(key, f"imagery.scenes.{key}", config)
        scenes[date] = _path(value, base, f"imagery.scenes.{date}", config)
    return {"scenes": scenes, "sentinel2": None}


def _label_files(section: Mapping[str, Any], dates: Sequence[str], base: Path, config):
    single, per_date = section.get("file"), section.get("files")
    if (single is None) == (per_date is None):
        raise _fail(
            config,
            "labels",
            "give either 'file' (one vector file for every date) or 'files' (date: file).",
        )
    if single is not None:
        path = _path(single, base, "labels.file", config)
        return dict.fromkeys(dates, path)
    if not isinstance(per_date, Mapping):
        raise _fail(
            config, "labels.files", f"expected 'date: vector file' entries, got {per_date!r}."
        )
    files = {}
    for key, value in per_date.items():
        date = _date(key, f"labels.files.{key}", config)
        if date not in dates:
            raise _fail(
                config,
                f"labels.files.{date}",
                f"no scene for this date; the scenes' dates are {', '.join(dates)}.",
            )
        files[date] = _path(value, base, f"labels.files.{date}", config)
    return files


def load_region(path: PathLike, *, check_files: bool = True, fetch: bool = False) -> Region:
    """Read and validate a region config.

    Relative paths in the file are relative to the file's folder. The sample region (a
    ``sample`` section) is generated when missing.

    Args:
        path: The YAML file, e.g. ``"../regions/sample.yaml"``.
        check_files: Open the scenes and labels and check that they fit together (band count,
            overlap, target classes present). Turn off only to inspect a config whose files are
            not there yet.
        fetch: Download missing Sentinel-2 scenes of an ``imagery.sentinel2`` query first.

    Returns:
        The :class:`Region`.

    Raises:
        FileNotFoundError: The config, a scene or a label file does not exist.
        IsADirectoryError: ``path`` is a folder.
        RegionConfigError: The config is invalid (also: not UTF-8, a key written twice, a
            class name YAML read as a boolean); the message names the key and the fix.
        helpers.labels.VectorError: A label file cannot be read or misses its date's scene;
            the message names the key.

    Warns:
        UserWarning: Spatial blocks less than two patches or tiles wide.
    """
    config = Path(os.fspath(path))
    document = _read_config(config)
    data = document.data
    if not isinstance(data, Mapping):
        raise RegionConfigError(f"{config}: expected a mapping of keys at the top, got {data!r}.")
    _check_keys(data, _SCHEMA, "", config)
    _check_yaml_booleans(document.booleans, config)
    base = config.resolve().parent
    name = str(data.get("name") or config.stem)

    outputs_cfg = data.get("outputs") or {}
    root = _path(outputs_cfg.get("root", f"../outputs/{name}"), base, "outputs.root", config)
    folders = {
        kind: _path(outputs_cfg[kind], base, f"outputs.{kind}", config)
        if outputs_cfg.get(kind)
        else root / kind
        for kind in _OUTPUT_KINDS
    }
    outputs = Outputs(root=root, **folders)

    if "tiles" in data:  # class-folder tiles, no scene: helpers/tile_sources.py
        return _tile_sources.tile_region(data, config, base, name, outputs, check_files)
    if sum(key in data for key in ("sample", "imagery", "pairs")) != 1:
        raise _fail(
            config,
            "",
            "give exactly one of 'imagery' (your scenes, or a Sentinel-2 query), 'sample' "
            "(the course's generated sample region), 'pairs' (image/mask files) and 'tiles' "
            "(class-folder tiles).",
        )
    labels_cfg = data.get("labels") or {}
    imagery_cfg = data.get("imagery") or {}
    extras: dict[str, Any] = {}
    if "pairs" in data:  # image/mask files: no scenes, no dates, their own masks
        if labels_cfg:
            raise _fail(config, "labels", "pairs bring their own masks; remove 'labels'.")
        extras["pairs"] = _pair_sources.parse_pairs(data["pairs"] or {}, base, config)
        scenes, sentinel2, dates, label_files = {}, None, (), {}
        target, default_seed = extras["pairs"].target, extras["pairs"].seed
    elif "sample" in data:
        parts = _sample_parts(data["sample"] or {}, base, config)
        dates = parts.pop("dates")
        scenes, label_files = parts.pop("scenes"), parts.pop("labels")
        target, default_seed = parts.pop("target"), parts.pop("seed")
        extras = parts
        sentinel2 = None
        if labels_cfg:
            raise _fail(
                config, "labels", "the sample region brings its own labels; remove 'labels'."
            )
    else:
        parts = _imagery_parts(imagery_cfg, base, root, config)
        scenes, sentinel2 = parts["scenes"], parts["sentinel2"]
        dates = tuple(scenes)
        if not labels_cfg:
            raise _fail(
                config,
                "labels",
                "missing: say which vector file holds the labels (labels.file) and which class "
                "to look for (labels.target).",
            )
        if "raster" in labels_cfg:  # a GeoTIFF of class codes (helpers.label_rasters)
            extras["label_raster"] = _label_rasters.parse_label_raster(labels_cfg, base, config)
            label_files = dict.fromkeys(dates, extras["label_raster"].path)
        else:
            label_files = _label_files(labels_cfg, dates, base, config)
        target = labels_cfg.get("target")
        if not isinstance(target, str) or not target.strip():
            raise _fail(
                config,
                "labels.target",
                "missing: the name of the class the models look for, e.g. 'informal settlement'.",
            )
        default_seed = _TRAINING["seed"]

    class_property = labels_cfg.get("class_property")
    values = labels_cfg.get("values")
    if values is None:
        values = [target]
    elif not isinstance(values, list) or not values:
        values = [values]
    if class_property is None and labels_cfg.get("values") is not None:
        raise _fail(
            config,
            "labels.values",
            "needs labels.class_property: the attribute whose values select the target class.",
        )

    tiling_cfg = {**DEFAULT_TILING, **(data.get("tiling") or {})}
    for key in ("patch_size", "stride", "tile_size", "tile_stride", "block_size"):
        tiling_cfg[key] = _int(tiling_cfg[key], f"tiling.{key}", config)
    for key in ("positive", "negative", "max_nodata_fraction"):
        tiling_cfg[key] = _fraction(tiling_cfg[key], f"tiling.{key}", config)
    for size, stride in (("patch_size", "stride"), ("tile_size", "tile_stride")):
        if tiling_cfg[stride] > tiling_cfg[size]:
            raise _fail(
                config,
                f"tiling.{stride}",
                f"{tiling_cfg[stride]} is larger than tiling.{size} ({tiling_cfg[size]}): "
                "pixels between patches would never be seen. Use a stride <= the size.",
            )
    if tiling_cfg["negative"] > tiling_cfg["positive"]:
        raise _fail(
            config,
            "tiling.negative",
            f"{tiling_cfg['negative']} is above tiling.positive ({tiling_cfg['positive']}).",
        )
    tiling = Tiling(**tiling_cfg)
    _check_tiling_fits(tiling, config)

    training_cfg = {**_TRAINING, "seed": default_seed, **(data.get("training") or {})}
    seed = _int(training_cfg["seed"], "training.seed", config, minimum=0)
    weights = training_cfg["weights"]
    if weights is not None and weights != "imagenet":
        weights = str(_path(weights, base, "training.weights", config))

    bands_cfg = imagery_cfg.get("bands")
    if bands_cfg is not None and (
        not isinstance(bands_cfg, list) or not all(isinstance(b, str) for b in bands_cfg)
    ):
        raise _fail(
            config,
            "imagery.bands",
            f"expected a list of band names in file order, got {bands_cfg!r}.",
        )
    scale = imagery_cfg.get("scale")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0
    ):
        raise _fail(
            config, "imagery.scale", f"expected a positive number (e.g. 0.0001), got {scale!r}."
        )
    if "sample" in data:
        scale = 1e-4  # the sample scenes store reflectance x 10 000, like Sentinel-2 L2A
    nodata = imagery_cfg.get("nodata")

    region_kwargs = dict(
        name=name,
        config=config,
        dates=tuple(dates),
        scenes=scenes,
        scale=None if scale is None else float(scale),
        labels=label_files,
        label_layer=labels_cfg.get("layer"),
        class_property=class_property,
        target=str(target),
        target_values=tuple(values),
        aoi=_read_aoi(data.get("aoi"), base, config),
        tiling=tiling,
        seed=seed,
        weights=weights,
        outputs=outputs,
        sentinel2=sentinel2,
        description=str(data.get("description") or ""),
        **extras,
    )
    if sentinel2 is not None and region_kwargs["aoi"] is None:
        raise _fail(config, "aoi", "imagery.sentinel2 needs an area of interest to search.")
    if fetch and sentinel2 is not None:
        Region(band_names=(), nodata=nodata, **region_kwargs).fetch_imagery()

    if "pairs" in data:
        pairs = extras["pairs"]
        names = _pair_sources.check_pairs(pairs, tiling.patch_size, config) if check_files else ()
        return Region(band_names=names or pairs.bands or (), nodata=nodata, **region_kwargs)
    if not check_files:
        names = tuple(b.lower() for b in bands_cfg) if bands_cfg else ()
        return Region(band_names=names, nodata=nodata, **region_kwargs)
    band_names, nodata = _check_scenes(scenes, bands_cfg, nodata, sentinel2, config)
    _check_sizes_fit_scene(tiling, scenes, config)
    region = Region(band_names=band_names, nodata=nodata, **region_kwargs)
    if region.label_raster is not None:
        for scene in scenes.values():
            _label_rasters.check_label_raster(region.label_raster, scene, config)
    else:
        _check_labels(region, config, "labels.files" if labels_cfg.get("files") else "labels.file")
    _check_aoi(region, config)
    return region


def _check_scenes(scenes, bands_cfg, nodata, sentinel2, config):
    counts, band_names = {}, None
    for date, path in scenes.items():
        if not path.exists():
            how = (
                "download it with load_region(..., fetch=True) or region.fetch_imagery()"
                if sentinel2 is not None
                else "check the path (relative paths start at the config's folder)"
            )
            raise FileNotFoundError(
                f"{config}: imagery.scenes.{date}: {path} does not exist; {how}."
            )
        info = _raster.describe(path)
        _check_georeferenced(info, f"imagery.scenes.{date}", config)
        counts[date] = info.count
        if band_names is None:
            band_names = tuple(n.lower() for n in info.band_names)
            if nodata is None:
                nodata = info.nodata
    if len(set(counts.values())) > 1:
        raise _fail(
            config,
            "imagery.scenes",
            f"the scenes have different band counts ({counts}); every date needs the same bands.",
        )
    count = next(iter(counts.values()))
    if bands_cfg is not None:
        if len(bands_cfg) != count:
            raise _fail(
                config,
                "imagery.bands",
                f"lists {len(bands_cfg)} band(s) {bands_cfg}, but the scenes have {count}; list "
                "one name per band, in file order.",
            )
        band_names = tuple(b.lower() for b in bands_cfg)
    return band_names, nodata


def _check_sizes_fit_scene(tiling: Tiling, scenes: Mapping[str, Path], config) -> None:
    """Refuse a patch or tile size larger than a side of the smallest scene, and a block size
    larger than the whole scene (one block: no spatial train / validation / test split)."""
    infos = {path: _raster.describe(path) for path in scenes.values()}
    path, info = min(infos.items(), key=lambda item: min(item[1].height, item[1].width))
    height, width = info.height, info.width
    scene = f"the scene {path.name} ({width} x {height} px)"
    for key, what in (("patch_size", "patch"), ("tile_size", "tile")):
        size = getattr(tiling, key)
        if size > min(height, width):
            raise _fail(
                config,
                f"tiling.{key}",
                f"{size} px is larger than {scene}: no {what} fits in it. Use a {key} of at most "
                f"{min(height, width)} px.",
            )
    if tiling.block_size > max(height, width):
        raise _fail(
            config,
            "tiling.block_size",
            f"{tiling.block_size} px is larger than {scene}: the whole scene is one block, so "
            "train, validation and test cannot be split by place. Use a block_size that cuts "
            f"the scene into several blocks (e.g. {max(max(height, width) // 4, 1)} px).",
        )


def _check_georeferenced(info: _raster.RasterInfo, key: str, config) -> None:
    """Refuse a scene without CRS or geotransform: patches, labels and maps need both."""
    if info.crs is None:
        raise _fail(
            config,
            key,
            f"{info.path} has no CRS (no georeferencing), so labels, the AOI and the maps "
            "cannot be placed on it. Assign the CRS its coordinates are in, e.g. "
            f"`gdal_edit.py -a_srs EPSG:XXXX {info.path}` (XXXX: your data's EPSG code, such "
            "as 32633 for UTM zone 33N), or export it again with a CRS from QGIS.",
        )
    if info.transform.is_identity:
        raise _fail(
            config,
            key,
            f"{info.path} has no geotransform (no georeferencing: its coordinates are pixel "
            "numbers), so labels and the AOI cannot be placed on it. Give it its corners, e.g. "
            f"`gdal_edit.py -a_ullr ULX ULY LRX LRY -a_srs EPSG:XXXX {info.path}`, or "
            "georeference it in QGIS (Raster > Georeferencer).",
        )


def _check_labels(region: Region, config, key: str = "labels.file") -> None:
    """Read each date's labels and check them against that date's own scene.

    Errors reading or placing a label file name the config and ``key`` (``labels.files`` gets
    the date appended).
    """
    for date, path in region.labels.items():
        where = f"{key}.{date}" if key == "labels.files" else key
        if not path.exists():
            raise FileNotFoundError(
                f"{config}: {where}: {path} does not exist; check the path (relative "
                "paths start at the config's folder)."
            )
        try:
            _check_label_file(region, path, region.scenes[date], config)
        except _labels.VectorError as exc:
            raise _labels.VectorError(f"{config}: {where}: {exc}") from exc


def _check_label_file(region: Region, path: Path, scene: Path, config) -> None:
    """The target classes occur in ``path`` and its target features touch ``scene``."""
    info = _raster.describe(scene)
    gdf = _labels.read_vectors(
        path, crs=info.crs, layer=region.label_layer, class_property=region.class_property
    )
    if region.class_property is not None:
        present = set(gdf[region.class_property].dropna().unique().tolist())
        missing = [v for v in region.target_values if v not in present]
        if len(missing) == len(region.target_values):
            found = ", ".join(map(repr, sorted(present, key=str)[:20]))
            raise _fail(
                config,
                "labels.values",
                f"none of {list(region.target_values)} occurs in {region.class_property!r} of "
                f"{path.name}; its values are {found}. Put the value(s) of your target class "
                "in labels.values.",
            )
        if missing:
            log.warning("%s: values %s do not occur in %s", config, missing, path.name)
        gdf = gdf.loc[gdf[region.class_property].isin(list(region.target_values))]
    _labels.check_overlap(gdf, info.bounds, crs=info.crs, raster_name=str(scene))


def _check_aoi(region: Region, config) -> None:
    if region.aoi is None or region.sentinel2 is not None:
        return
    lonlat = _scene_footprint_lonlat(region.scenes[region.dates[0]])
    if lonlat is None:
        raise _fail(config, "aoi", "the scenes have no CRS, so an AOI in degrees cannot be placed.")
    if not region.aoi.intersects(lonlat):
        bounds = ", ".join(f"{v:.5f}" for v in lonlat.bounds)
        raise _fail(
            config,
            "aoi",
            f"the area of interest {tuple(round(v, 5) for v in region.aoi.bounds)} lies outside "
            f"the imagery ({bounds} in longitude/latitude). Check the order: "
            "[west, south, east, north].",
        )


def _named(exc: BaseException, path: Path) -> str:
    """The error's message, starting with the config's path when the message lacks it."""
    message = str(exc)
    return message if str(path) in message else f"{path}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Check region configs from the command line: ``python -m helpers.regions FILE...``."""
    import argparse

    parser = argparse.ArgumentParser(description="Validate region config files.")
    parser.add_argument("configs", nargs="+", type=Path, help="YAML region configs")
    parser.add_argument(
        "--no-files", action="store_true", help="check the keys only, not the scenes and labels"
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.configs:
        try:
            region = load_region(path, check_files=not args.no_files)
        except (OSError, ValueError) as exc:
            print(f"INVALID {_named(exc, path)}")
            status = 1
        else:
            print(f"OK {region.summary() if not args.no_files else region.name}")
            if not args.no_files:  # sizes and thresholds that fit this region's objects
                from helpers.region_suggestions import suggestions_report

                print(suggestions_report(region))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
