"""Read GeoTIFFs and turn their bands into pictures and spectral indices.

Everything here speaks rasterio's language: arrays are ``(bands, rows, cols)``, windows are
:class:`rasterio.windows.Window`, georeferencing is an :class:`affine.Affine` transform plus a
:class:`rasterio.crs.CRS`. Bands can be chosen by 1-based index (as in GDAL and rasterio) or by
name (the band descriptions written in the file, such as ``"red"`` or ``"nir"``).

Typical use in a notebook::

    from helpers import raster

    info = raster.describe("data/generated/sample/scene_2021.tif")
    print(info)
    image, transform = raster.read_decimated(info.path, max_size=1024, masked=True)
    rgb = raster.percentile_stretch(raster.composite(image, info.band_names))
    ndvi = raster.spectral_index(image, info.band_names, "ndvi")

Conventions chosen here:

* Invalid pixels (the file's nodata value, masked cells, NaN) become ``nan`` in every float result
  (stretches, indices). Matplotlib draws ``nan`` as transparent, so no separate mask is needed.
* Errors name the file or argument at fault and say what to do about it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from helpers.files import atomic_path

#: What rasterio raises when GDAL fails; the two classes are unrelated before rasterio 1.4.
RASTERIO_ERRORS = (RasterioError, RasterioIOError)

__all__ = [
    "SPECTRAL_INDICES",
    "MissingCRSError",
    "RasterError",
    "RasterInfo",
    "composite",
    "crs_units",
    "describe",
    "ensure_crs",
    "file_not_found",
    "normalized_difference",
    "open_raster",
    "percentile_stretch",
    "read",
    "read_decimated",
    "resolve_bands",
    "scene_percentiles",
    "spectral_index",
    "to_channels_first",
    "to_channels_last",
    "valid_mask",
    "write_like",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
BandSelection = int | str | Sequence[int | str] | None
WindowLike = Window | tuple[tuple[int, int], tuple[int, int]]

#: Spectral indices known to :func:`spectral_index`: name -> (band_a, band_b, description).
#: Each index is the normalized difference ``(a - b) / (a + b)``.
SPECTRAL_INDICES: dict[str, tuple[str, str, str]] = {
    "ndvi": (
        "nir",
        "red",
        "Normalized Difference Vegetation Index (Rouse et al. 1974): green vegetation is high "
        "(about 0.3-0.9), bare soil and built-up areas near 0, water negative.",
    ),
    "ndwi": (
        "green",
        "nir",
        "Normalized Difference Water Index (McFeeters 1996): open water is positive, "
        "vegetation and soil negative.",
    ),
    "gndvi": (
        "nir",
        "green",
        "Green NDVI (Gitelson et al. 1996): like NDVI but with the green band, more sensitive "
        "to chlorophyll content.",
    ),
}

# Units pyproj reports for the first axis of a CRS, shortened for labels.
_UNIT_ABBREVIATIONS = {
    "metre": "m",
    "meter": "m",
    "degree": "°",
    "US survey foot": "ftUS",
    "foot": "ft",
}


class RasterError(ValueError):
    """A file or array cannot be used as a raster the way the caller asked."""


class MissingCRSError(RasterError):
    """A raster has no coordinate reference system, but the operation needs one."""


# --------------------------------------------------------------------------------------------
# Opening and describing
# --------------------------------------------------------------------------------------------


def _is_remote(path: str) -> bool:
    # GDAL virtual file systems and URLs cannot be checked with os.path.exists.
    return path.startswith("/vsi") or "://" in path


def _missing_crs_message(path: str) -> str:
    return (
        f"{path} has no coordinate reference system (CRS), so its pixels cannot be placed on "
        "the map. Assign the CRS the data was produced in, for example on the command line "
        f"with `rio edit-info --crs EPSG:32633 {path}` (use your data's EPSG code), or by "
        "passing crs=... in the profile when writing the file with rasterio."
    )


def file_not_found(path: PathLike, kind: str = "File") -> FileNotFoundError:
    """The error for a missing input file, saying how to get it (generated data) or what to check.

    Args:
        path: The missing path.
        kind: What it should have been, e.g. "Raster file" or "Vector file".
    """
    name = os.fspath(path)
    message = f"{kind} not found: {name}."
    if "data/generated" in Path(name).as_posix():
        message += (
            " This file is generated, not stored in git: run `make data` or "
            "`python -m helpers.sample_data` from the repository root first."
        )
    else:
        message += " Check the path (it is relative to the current working directory)."
    return FileNotFoundError(message)


def open_raster(path: PathLike, *, require_crs: bool = False) -> DatasetReader:
    """Open a raster for reading, with errors that say what went wrong and how to fix it.

    This is the one entry point every reader in this module uses. The returned dataset is a
    context manager, so prefer ``with open_raster(path) as ds: ...``.

    Args:
        path: A GeoTIFF (or any GDAL-readable raster), a URL or a GDAL ``/vsi...`` path.
        require_crs: Raise :class:`MissingCRSError` if the raster has no CRS.

    Returns:
        An open :class:`rasterio.io.DatasetReader`.

    Raises:
        FileNotFoundError: The file does not exist. Under ``data/generated`` the message says
            how to generate the sample data.
        RasterError: GDAL cannot read the file as a raster (a text file, a GeoJSON ...).
        MissingCRSError: ``require_crs`` is true and the raster has no CRS.

    Example:
        >>> with open_raster("scene.tif", require_crs=True) as ds:  # doctest: +SKIP
        ...     print(ds.crs, ds.res)
    """
    name = os.fspath(path)
    if not _is_remote(name) and not os.path.exists(name):
        raise file_not_found(name, "Raster file")
    if os.path.isdir(name):
        raise RasterError(f"{name} is a folder, not a raster file: pass the path of a .tif file.")
    try:
        dataset = rasterio.open(name)
    except RASTERIO_ERRORS as exc:
        raise RasterError(
            f"GDAL cannot read {name} as a raster ({exc}). Pass a GeoTIFF or another raster "
            "format; vector files such as .geojson or .gpkg hold geometries, not pixels, and "
            "are read with json/shapely instead."
        ) from exc
    if dataset.count == 0:
        dataset.close()
        raise RasterError(
            f"{name} opens with GDAL but holds no raster bands (a vector-only file?). "
            "Pass a raster file such as a GeoTIFF."
        )
    if require_crs and dataset.crs is None:
        dataset.close()
        raise MissingCRSError(_missing_crs_message(name))
    return dataset


def crs_units(crs: CRS | str | None) -> str | None:
    """Name of the unit of a CRS's first axis, such as ``"metre"`` or ``"degree"``.

    Args:
        crs: A rasterio CRS, anything ``CRS.from_user_input`` accepts, or None.

    Returns:
        The unit name as pyproj spells it, or None when ``crs`` is None.
    """
    if crs is None:
        return None
    import pyproj

    crs = CRS.from_user_input(crs)
    axes = pyproj.CRS.from_wkt(crs.to_wkt()).axis_info
    return axes[0].unit_name if axes else None


@dataclass(frozen=True)
class RasterInfo:
    """What a notebook needs to know about a raster before reading its pixels.

    Build it with :func:`describe`. ``print(info)`` gives an aligned ``key: value`` summary;
    :meth:`to_dict` gives a JSON-serialisable dict.
    """

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    resolution: tuple[float, float]
    bounds: BoundingBox
    nodata: float | None
    band_names: tuple[str, ...]
    block_shapes: tuple[tuple[int, int], ...]
    compression: str | None
    overviews: list[int] = field(default_factory=list)
    crs_units: str | None = None
    area_km2: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (CRS as a string, transform as its 6 coefficients)."""
        return {
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": self.dtype,
            "crs": self.crs.to_string() if self.crs is not None else None,
            "transform": [float(v) for v in tuple(self.transform)[:6]],
            "resolution": [float(v) for v in self.resolution],
            "bounds": {k: float(v) for k, v in self.bounds._asdict().items()},
            "nodata": _json_number(self.nodata),
            "band_names": list(self.band_names),
            "block_shapes": [list(shape) for shape in self.block_shapes],
            "compression": self.compression,
            "overviews": list(self.overviews),
            "crs_units": self.crs_units,
            "area_km2": self.area_km2,
        }

    def __str__(self) -> str:
        units = _UNIT_ABBREVIATIONS.get(self.crs_units or "", self.crs_units or "CRS units")
        b = self.bounds
        rows = [
            ("path", str(self.path)),
            ("size", f"{self.width} x {self.height} px (width x height), {self.count} band(s)"),
            ("bands", ", ".join(f"{i}={n}" for i, n in enumerate(self.band_names, start=1))),
            ("dtype", self.dtype),
            ("nodata", str(self.nodata)),
            ("crs", self.crs.to_string() if self.crs is not None else "None (not georeferenced)"),
            ("crs_units", str(self.crs_units)),
            ("resolution", f"{self.resolution[0]:.12g} x {self.resolution[1]:.12g} {units}"),
            (
                "bounds",
                f"left={b.left:.12g} bottom={b.bottom:.12g} right={b.right:.12g} top={b.top:.12g}",
            ),
            ("transform", " ".join(f"{v:.12g}" for v in tuple(self.transform)[:6])),
        ]
        if self.area_km2 is not None:
            rows.append(("area_km2", f"{self.area_km2:.3f}"))
        rows += [
            ("blocks", ", ".join(f"{h}x{w}" for h, w in sorted(set(self.block_shapes)))),
            ("compression", str(self.compression)),
            ("overviews", ", ".join(map(str, self.overviews)) or "none"),
        ]
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key.ljust(width)} : {value}" for key, value in rows)


def _json_number(value: float | None) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value


def _band_names(dataset: DatasetReader) -> tuple[str, ...]:
    return tuple(
        (desc.strip() if desc and desc.strip() else f"band_{i}")
        for i, desc in enumerate(dataset.descriptions, start=1)
    )


def describe(path: PathLike) -> RasterInfo:
    """Summarise a raster's size, bands, georeferencing and storage layout without reading pixels.

    Args:
        path: Path of the raster.

    Returns:
        A :class:`RasterInfo`. ``area_km2`` is set only for projected CRSs in metres.

    Raises:
        FileNotFoundError, RasterError: see :func:`open_raster`.

    Example:
        >>> info = describe("data/generated/sample/scene_2021.tif")  # doctest: +SKIP
        >>> info.band_names, info.resolution  # doctest: +SKIP
        (('blue', 'green', 'red', 'nir'), (1.0, 1.0))
    """
    with open_raster(path) as ds:
        units = crs_units(ds.crs)
        area = None
        if ds.crs is not None and ds.crs.is_projected and units in ("metre", "meter"):
            area = round(ds.width * ds.height * abs(ds.res[0] * ds.res[1]) / 1e6, 6)
        compression = ds.compression.name.lower() if ds.compression is not None else None
        return RasterInfo(
            path=Path(os.fspath(path)),
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            crs=ds.crs,
            transform=ds.transform,
            resolution=(float(ds.res[0]), float(ds.res[1])),
            bounds=ds.bounds,
            nodata=ds.nodata,
            band_names=_band_names(ds),
            block_shapes=tuple(tuple(shape) for shape in ds.block_shapes),
            compression=compression,
            overviews=list(ds.overviews(1)),
            crs_units=units,
            area_km2=area,
        )


# --------------------------------------------------------------------------------------------
# Choosing bands and reading
# --------------------------------------------------------------------------------------------


def _choices(band_names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in enumerate(band_names, start=1))


def resolve_bands(
    bands: BandSelection,
    band_names: Sequence[str],
    *,
    path: PathLike | None = None,
    argument: str = "bands",
) -> list[int]:
    """Turn a band selection into 1-based band indices.

    Args:
        bands: None (all bands), a 1-based index, a band name (case-insensitive), or a
            sequence mixing both, e.g. ``["red", "green", 2]``.
        band_names: Names of the bands in order, such as ``RasterInfo.band_names``.
        path: The file the bands belong to, used in error messages.
        argument: The argument name to use in error messages.

    Returns:
        1-based band indices in the order requested.

    Raises:
        RasterError: An index is out of range or a name is unknown; the message lists the valid
            choices.
        TypeError: An element is neither an int nor a str.

    Example:
        >>> resolve_bands(["nir", "Red", 3], ("blue", "green", "red", "nir"))
        [4, 3, 3]
    """
    names = [str(n) for n in band_names]
    if bands is None:
        return list(range(1, len(names) + 1))
    items = [bands] if isinstance(bands, (str, int, np.integer)) else list(bands)
    if not items:
        raise RasterError(f"{argument} is empty: pass None for all bands or at least one band.")
    where = f" for {Path(os.fspath(path)).name}" if path is not None else ""
    which = f"{Path(os.fspath(path)).name}, which has" if path is not None else "an array with"
    lookup = {n.lower(): i for i, n in reversed(list(enumerate(names, start=1)))}
    indices = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise TypeError(f"{argument} must hold band indices or names, got the boolean {item}.")
        if isinstance(item, (int, np.integer)):
            if not 1 <= int(item) <= len(names):
                raise RasterError(
                    f"{argument}: band {int(item)} is out of range for {which} {len(names)} "
                    f"bands ({_choices(names)}). Band indices start at 1, as in GDAL and rasterio."
                )
            indices.append(int(item))
        elif isinstance(item, str):
            key = item.strip().lower()
            if key not in lookup:
                raise RasterError(
                    f"{argument}: no band named {item!r}{where}; the bands are "
                    f"{_choices(names)}. Pass one of these names or a 1-based index."
                )
            indices.append(lookup[key])
        else:
            raise TypeError(
                f"{argument} must hold 1-based ints or band names, got {type(item).__name__} "
                f"{item!r}."
            )
    return indices


def _as_window(window: WindowLike | None, dataset: DatasetReader) -> Window | None:
    if window is None:
        return None
    if not isinstance(window, Window):
        try:
            (row0, row1), (col0, col1) = window
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "window must be a rasterio Window or ((row_start, row_stop), (col_start, "
                f"col_stop)), got {window!r}."
            ) from exc
        window = Window.from_slices((row0, row1), (col0, col1))
    full = Window(0, 0, dataset.width, dataset.height)
    inside = (
        window.col_off >= 0
        and window.row_off >= 0
        and window.width > 0
        and window.height > 0
        and window.col_off + window.width <= full.width
        and window.row_off + window.height <= full.height
    )
    if not inside:
        raise RasterError(
            f"window {window} does not lie inside {dataset.name} ({dataset.height} rows x "
            f"{dataset.width} cols). Clip it first with window.intersection(Window(0, 0, "
            f"{dataset.width}, {dataset.height})) or use rasterio.windows.from_bounds."
        )
    return window


def _gdal_reason(exc: BaseException) -> str:
    """GDAL's own message behind rasterio's "Read failed. See previous exception"."""
    cause = exc.__cause__ or exc.__context__
    return str(cause) if cause is not None else str(exc)


def _read_failed(path: PathLike, window: Window | None, exc: RasterioError) -> RasterioIOError:
    """A read error that names the file and the window, and what usually causes it."""
    where = "the whole raster" if window is None else f"window {window}"
    return RasterioIOError(
        f"Reading {where} of {os.fspath(path)} failed ({_gdal_reason(exc)}). The file opens but "
        "its pixel data cannot be read: it is probably truncated or corrupt (an interrupted "
        "download or copy). Download or copy it again; `gdalinfo -checksum` on it shows "
        "whether every block reads."
    )


def _write_failed(path: PathLike, exc: RasterioError) -> RasterioIOError:
    """A write error that names the output file and asks about the disk."""
    return RasterioIOError(
        f"Writing {os.fspath(path)} failed ({_gdal_reason(exc)}); nothing was written under "
        "that name. Is the disk full (or over a quota or file-size limit)? Free space on that "
        "disk or write to another folder, then run again."
    )


def read(
    path: PathLike,
    bands: BandSelection = None,
    window: WindowLike | None = None,
    *,
    masked: bool = False,
) -> np.ndarray:
    """Read bands of a raster at full resolution.

    Args:
        path: Path of the raster.
        bands: Bands to read, see :func:`resolve_bands` (None reads all).
        window: A :class:`rasterio.windows.Window` or ``((row_start, row_stop), (col_start,
            col_stop))``; None reads the whole raster.
        masked: Return a :class:`numpy.ma.MaskedArray` with nodata pixels masked.

    Returns:
        An array of shape ``(bands, rows, cols)`` in the file's dtype (always 3-D, even for
        one band).

    Raises:
        FileNotFoundError, RasterError: see :func:`open_raster`; also a band out of range or
            a window outside the raster.

    Example:
        >>> red_nir = read("scene.tif", ["red", "nir"], ((0, 256), (0, 256)))  # doctest: +SKIP
        >>> red_nir.shape  # doctest: +SKIP
        (2, 256, 256)
    """
    with open_raster(path) as ds:
        indexes = resolve_bands(bands, _band_names(ds), path=path)
        window = _as_window(window, ds)
        try:
            return ds.read(indexes, window=window, masked=masked)
        except RASTERIO_ERRORS as exc:
            raise _read_failed(path, window, exc) from exc


def read_decimated(
    path: PathLike,
    max_size: int = 1024,
    bands: BandSelection = None,
    *,
    masked: bool = False,
    resampling: str | Resampling = "average",
) -> tuple[np.ndarray, Affine]:
    """Read a whole raster shrunk so its longer side is at most ``max_size`` pixels.

    The read asks GDAL for a smaller ``out_shape``, so GDAL serves it from the file's
    overviews where they exist: a 10 000 x 10 000 scene is never loaded at full resolution
    just to be plotted. The returned transform describes the coarser grid, so plots keep the
    geographic extent.

    Args:
        path: Path of the raster.
        max_size: Largest allowed width or height of the result, in pixels.
        bands: Bands to read, see :func:`resolve_bands`.
        masked: Return a masked array with nodata masked.
        resampling: A :class:`rasterio.enums.Resampling` or its name ("average", "nearest",
            ...). Use "nearest" or "mode" for class maps.

    Returns:
        ``(array, transform)``: the ``(bands, rows, cols)`` array and its :class:`Affine`.
        Rasters already small enough are read as they are, with their own transform.

    Raises:
        FileNotFoundError, RasterError: see :func:`open_raster`; ValueError for a bad
            ``max_size`` or resampling name.
    """
    if int(max_size) < 1:
        raise ValueError(f"max_size must be a positive number of pixels, got {max_size}.")
    if isinstance(resampling, str):
        try:
            resampling = Resampling[resampling.lower()]
        except KeyError:
            valid = ", ".join(r.name for r in Resampling if r.value <= 14)
            raise ValueError(
                f"resampling={resampling!r} is not a rasterio resampling method; use one of "
                f"{valid}."
            ) from None
    with open_raster(path) as ds:
        indexes = resolve_bands(bands, _band_names(ds), path=path)
        scale = max(ds.width, ds.height) / int(max_size)
        out_h = max(1, math.ceil(ds.height / max(scale, 1)))
        out_w = max(1, math.ceil(ds.width / max(scale, 1)))
        try:
            if scale <= 1:
                return ds.read(indexes, masked=masked), ds.transform
            array = ds.read(
                indexes,
                out_shape=(len(indexes), out_h, out_w),
                resampling=resampling,
                masked=masked,
            )
        except RASTERIO_ERRORS as exc:
            raise _read_failed(path, None, exc) from exc
        # Same origin, pixels sx by sy times larger (written out: the Affine operators differ
        # between affine 2 and 3).
        t, sx, sy = ds.transform, ds.width / out_w, ds.height / out_h
        transform = Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)
        return array, transform


# --------------------------------------------------------------------------------------------
# Masks, stretches, composites and indices
# --------------------------------------------------------------------------------------------


def _invalid(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """Element-wise invalid mask: masked, equal to nodata, or nan."""
    data = np.ma.getdata(array)
    invalid = np.array(np.ma.getmaskarray(array), copy=True)
    if nodata is not None:
        if isinstance(nodata, float) and math.isnan(nodata):
            pass  # covered by the nan check below
        else:
            invalid |= data == nodata
    if np.issubdtype(data.dtype, np.floating):
        invalid |= np.isnan(data)
    return invalid


def valid_mask(array: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """Pixels where every band holds real data.

    Args:
        array: ``(bands, rows, cols)`` or ``(rows, cols)``, plain or masked.
        nodata: The nodata value (e.g. ``RasterInfo.nodata``); None checks only masks and nan.

    Returns:
        Boolean ``(rows, cols)``: True where no band is nodata, masked or nan.

    Raises:
        RasterError: ``array`` is not 2-D or 3-D.
    """
    _check_ndim(array, (2, 3), "array", "(bands, rows, cols) or (rows, cols)")
    invalid = _invalid(array, nodata)
    if invalid.ndim == 3:
        invalid = invalid.any(axis=0)
    return ~invalid


def percentile_stretch(
    array: np.ndarray,
    low: float = 2.0,
    high: float = 98.0,
    *,
    nodata: float | None = None,
    per_band: bool = True,
    limits: Sequence[Sequence[float]] | None = None,
) -> np.ndarray:
    """Linearly stretch values so the ``low``-``high`` percentile range fills ``[0, 1]``.

    Satellite reflectance rarely uses the full dtype range, so a plain ``array / array.max()``
    looks dark. Clipping the darkest and brightest 2 % gives a picture with contrast.

    Percentiles are computed over valid pixels only: nodata, masked and nan values are ignored.
    Invalid pixels come out as ``nan`` (drawn transparent by matplotlib). A band whose valid
    pixels are all equal comes out as 0.

    Args:
        array: ``(bands, rows, cols)`` or ``(rows, cols)``, any numeric dtype, plain or masked.
        low: Lower percentile, mapped to 0.
        high: Upper percentile, mapped to 1.
        nodata: Value marking invalid pixels (e.g. ``RasterInfo.nodata``).
        per_band: Stretch each band on its own (default; balances colours) or all bands with
            one shared range (keeps relative brightness between bands).
        limits: One ``(value_low, value_high)`` per band to use instead of this array's own
            percentiles, e.g. from :func:`scene_percentiles`, so that patches, zooms or dates
            share one stretch and the same reflectance keeps the same colour.

    Returns:
        float32 array of the same shape, values in ``[0, 1]`` or nan.

    Raises:
        ValueError: ``low``/``high`` are not ``0 <= low < high <= 100``.
        RasterError: ``array`` is not 2-D or 3-D.

    Example:
        >>> rgb = percentile_stretch(composite(image, names), nodata=0)  # doctest: +SKIP
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"Need 0 <= low < high <= 100, got low={low}, high={high}.")
    _check_ndim(array, (2, 3), "array", "(bands, rows, cols) or (rows, cols)")
    data = np.ma.getdata(array).astype(np.float32)
    invalid = _invalid(array, nodata)
    data[invalid] = np.nan
    stack = data if data.ndim == 3 else data[np.newaxis]
    out = np.full(stack.shape, np.nan, dtype=np.float32)
    if limits is not None and len(limits) != stack.shape[0]:
        raise ValueError(f"limits has {len(limits)} (low, high) pairs for {stack.shape[0]} bands")
    per_band = per_band or limits is not None
    groups = [[i] for i in range(stack.shape[0])] if per_band else [list(range(stack.shape[0]))]
    for group in groups:
        values = stack[group]
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        if limits is not None:
            lo, hi = (float(v) for v in limits[group[0]])
        else:
            lo, hi = np.percentile(finite, [low, high])
        if hi > lo:
            out[group] = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
        else:
            out[group] = np.where(np.isfinite(values), 0.0, np.nan)
    return out if data.ndim == 3 else out[0]


#: :func:`scene_percentiles` reads a raster without overviews whole (decimated) up to this many
#: pixels; a larger one is sampled in a regular grid of windows instead.
PERCENTILE_FULL_READ_PIXELS = 4096 * 4096
#: Side, in pixels, of each window :func:`scene_percentiles` samples.
PERCENTILE_SAMPLE_WINDOW = 64


def _finite_values(band: np.ndarray) -> np.ndarray:
    """The unmasked, finite values of a (masked) band, flattened."""
    values = np.ma.compressed(band) if np.ma.isMaskedArray(band) else np.ravel(band)
    if np.issubdtype(values.dtype, np.floating):
        values = values[np.isfinite(values)]
    return values


def _sample_windows(height: int, width: int, max_size: int) -> list[Window]:
    """A regular grid of about ``(max_size / PERCENTILE_SAMPLE_WINDOW)**2`` windows of
    ``PERCENTILE_SAMPLE_WINDOW`` pixels, spread evenly from edge to edge: about ``max_size**2``
    pixels in all, the same windows every time."""
    side_r = min(PERCENTILE_SAMPLE_WINDOW, height)
    side_c = min(PERCENTILE_SAMPLE_WINDOW, width)
    per_axis = max(1, math.ceil(int(max_size) / PERCENTILE_SAMPLE_WINDOW))
    rows = np.unique(np.linspace(0, height - side_r, per_axis).round().astype(int))
    cols = np.unique(np.linspace(0, width - side_c, per_axis).round().astype(int))
    return [Window(int(c), int(r), side_c, side_r) for r in rows for c in cols]


def _sampled_values(path: PathLike, indexes: list[int], max_size: int) -> list[np.ndarray] | None:
    """Valid values per band from a grid of windows, for a large raster without overviews
    (a decimated read of it would decode every pixel); None for any other raster."""
    with open_raster(path) as ds:
        if ds.overviews(indexes[0]) or ds.width * ds.height <= PERCENTILE_FULL_READ_PIXELS:
            return None
        windows = _sample_windows(ds.height, ds.width, max_size)
        log.info(
            "%s: %d x %d px without overviews; percentiles from %d windows of %d px",
            path, ds.width, ds.height, len(windows), PERCENTILE_SAMPLE_WINDOW,
        )  # fmt: skip
        parts = [ds.read(indexes, window=w, masked=True) for w in windows]
    values = [np.concatenate([_finite_values(p[b]) for p in parts]) for b in range(len(indexes))]
    if any(v.size == 0 for v in values):
        return None  # the samples missed the data: read it all rather than fail
    return values


def scene_percentiles(
    path: PathLike,
    bands: BandSelection = None,
    low: float = 2.0,
    high: float = 98.0,
    *,
    max_size: int = 1024,
) -> dict[str, list[float]]:
    """Per-band percentiles of a whole raster, from a decimated (overview) read or a sample.

    The stretch limits of a scene: pass ``list(limits.values())`` to
    :func:`percentile_stretch` to draw patches or zooms with the scene's colours, or record them
    as the scaling of 8-bit patches. Nodata, NaN and infinite values are ignored (a float
    raster without a declared nodata value often marks nodata with NaN).

    Rasters with at most ``max_size`` pixels a side are read whole (exact percentiles); larger
    ones are read decimated to ``max_size`` (from their overviews where they have some). A
    raster without overviews and larger than :data:`PERCENTILE_FULL_READ_PIXELS` is sampled
    instead: a regular grid of :data:`PERCENTILE_SAMPLE_WINDOW`-pixel windows, about
    ``max_size**2`` pixels in all (deterministic), since a decimated read would decode it whole.

    Args:
        path: The raster.
        bands: Bands to measure (names or 1-based indices; None: all).
        low: Lower percentile.
        high: Upper percentile.
        max_size: Longest side of the decimated read (the sample holds about its square).

    Returns:
        ``{band name: [value at low, value at high]}`` in band order; ``high`` is nudged above
        ``low`` for a constant band.

    Raises:
        ValueError: a band holds only nodata (or non-finite values).
    """
    with open_raster(path) as ds:
        names = _band_names(ds)
    indexes = resolve_bands(bands, names, path=path)
    samples = _sampled_values(path, indexes, max_size)
    if samples is None:
        image, _ = read_decimated(path, max_size=max_size, bands=indexes, masked=True)
        samples = [_finite_values(band) for band in image]
    limits = {}
    for index, values in zip(indexes, samples, strict=True):
        if values.size == 0:
            raise ValueError(
                f"band {names[index - 1]!r} of {path} holds only nodata (or NaN/infinite "
                "values): no percentiles to compute; give (low, high) values yourself (limits= "
                "for a stretch, scaling= for 8-bit patches)."
            )
        lo, hi = (float(v) for v in np.percentile(values, [low, high]))
        limits[names[index - 1]] = [lo, hi if hi > lo else lo + 1.0]
    return limits


def composite(
    array: np.ndarray,
    band_names: Sequence[str],
    bands: Sequence[int | str] = ("red", "green", "blue"),
) -> np.ndarray:
    """Pick and order bands for a colour picture.

    Args:
        array: ``(bands, rows, cols)`` holding the bands named in ``band_names``.
        band_names: Names of the bands of ``array`` in order.
        bands: Bands to show as red, green, blue: names or 1-based indices. True colour is
            ``("red", "green", "blue")``; the classic false colour is ``("nir", "red", "green")``
            (vegetation turns red).

    Returns:
        ``(len(bands), rows, cols)``, same dtype (masks kept).

    Raises:
        RasterError: wrong ``ndim``, ``band_names`` not matching ``array``, or unknown bands.
    """
    _check_ndim(array, (3,), "array", "(bands, rows, cols)")
    if len(band_names) != array.shape[0]:
        raise RasterError(
            f"band_names has {len(band_names)} names but array has {array.shape[0]} bands; "
            "pass the names of exactly the bands in the array (e.g. RasterInfo.band_names)."
        )
    indices = resolve_bands(list(bands), band_names)
    return array[[i - 1 for i in indices]]


def normalized_difference(
    a: np.ndarray, b: np.ndarray, *, nodata: float | None = None
) -> np.ndarray:
    """Compute ``(a - b) / (a + b)`` safely.

    The arithmetic is done in float64, so unsigned integer bands cannot wrap around
    (``uint16`` 100 - 200 would otherwise be 65 436).

    Args:
        a: First band, any shape and numeric dtype, plain or masked.
        b: Second band, same shape as ``a``.
        nodata: Value marking invalid pixels in either input.

    Returns:
        float32 array in ``[-1, 1]`` for non-negative inputs; nan where ``a + b == 0`` or either
        input is invalid (nodata, masked or nan).

    Raises:
        ValueError: ``a`` and ``b`` have different shapes.
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"a and b must have the same shape, got {np.shape(a)} and {np.shape(b)}; pass two "
            "single bands of the same image, e.g. image[3] and image[2]."
        )
    fa = np.ma.getdata(a).astype(np.float64)
    fb = np.ma.getdata(b).astype(np.float64)
    total = fa + fb
    invalid = _invalid(a, nodata) | _invalid(b, nodata) | (total == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = (fa - fb) / total
    result[invalid] = np.nan
    return result.astype(np.float32)


def spectral_index(
    array: np.ndarray,
    band_names: Sequence[str],
    name: str,
    *,
    nodata: float | None = None,
) -> np.ndarray:
    """Compute a named normalized-difference index from a multi-band array.

    Args:
        array: ``(bands, rows, cols)``, plain or masked.
        band_names: Names of the bands of ``array`` in order.
        name: A key of :data:`SPECTRAL_INDICES` (case-insensitive): "ndvi", "ndwi", "gndvi".
        nodata: Value marking invalid pixels.

    Returns:
        float32 ``(rows, cols)``; nan where invalid.

    Raises:
        RasterError: unknown index name (lists the known ones) or a band the index needs is
            missing (names it and lists the bands available); wrong ``ndim``.

    Example:
        >>> ndvi = spectral_index(image, ("blue", "green", "red", "nir"), "ndvi")  # doctest: +SKIP
    """
    key = name.strip().lower()
    if key not in SPECTRAL_INDICES:
        raise RasterError(
            f"Unknown spectral index {name!r}; known indices are "
            f"{', '.join(sorted(SPECTRAL_INDICES))}. Add (band_a, band_b, description) to "
            "SPECTRAL_INDICES for another normalized difference."
        )
    _check_ndim(array, (3,), "array", "(bands, rows, cols)")
    if len(band_names) != array.shape[0]:
        raise RasterError(
            f"band_names has {len(band_names)} names but array has {array.shape[0]} bands; "
            "pass the names of exactly the bands in the array."
        )
    band_a, band_b, _ = SPECTRAL_INDICES[key]
    lookup = {str(n).lower(): i for i, n in enumerate(band_names)}
    for band in (band_a, band_b):
        if band not in lookup:
            raise RasterError(
                f"{key} needs a band named {band!r}, but the bands are "
                f"{', '.join(map(str, band_names))}. Read a file that has it, or name the bands "
                "(band descriptions) so they can be found."
            )
    return normalized_difference(array[lookup[band_a]], array[lookup[band_b]], nodata=nodata)


# --------------------------------------------------------------------------------------------
# Axis order for Keras
# --------------------------------------------------------------------------------------------


def _check_ndim(array: Any, allowed: Iterable[int], argument: str, layout: str) -> None:
    allowed = tuple(allowed)
    ndim = np.ndim(array)
    if ndim not in allowed:
        raise RasterError(
            f"{argument} must be {layout} ({' or '.join(map(str, allowed))}-D), got shape "
            f"{np.shape(array)} ({ndim}-D)."
        )


def to_channels_last(array: np.ndarray) -> np.ndarray:
    """Move the band axis last: rasterio's ``(C, H, W)`` to Keras's ``(H, W, C)``.

    Also accepts a batch ``(N, C, H, W)`` -> ``(N, H, W, C)``. A 2-D ``(H, W)`` band gets a
    channel axis: ``(H, W, 1)``. Returns a view where possible (no copy).

    Raises:
        RasterError: ``array`` is not 2-, 3- or 4-D.

    Example:
        >>> to_channels_last(np.zeros((4, 32, 16))).shape
        (32, 16, 4)
    """
    _check_ndim(array, (2, 3, 4), "array", "(C, H, W), a batch (N, C, H, W) or a band (H, W)")
    if np.ndim(array) == 2:
        return array[..., np.newaxis]
    return np.moveaxis(array, -3, -1)


def to_channels_first(array: np.ndarray) -> np.ndarray:
    """Move the band axis first: Keras's ``(H, W, C)`` to rasterio's ``(C, H, W)``.

    Also accepts a batch ``(N, H, W, C)`` -> ``(N, C, H, W)``. A 2-D ``(H, W)`` band gets a
    band axis: ``(1, H, W)``, ready for ``dataset.write``.

    Raises:
        RasterError: ``array`` is not 2-, 3- or 4-D.

    Example:
        >>> to_channels_first(np.zeros((32, 16, 4))).shape
        (4, 32, 16)
    """
    _check_ndim(array, (2, 3, 4), "array", "(H, W, C), a batch (N, H, W, C) or a band (H, W)")
    if np.ndim(array) == 2:
        return array[np.newaxis]
    return np.moveaxis(array, -1, -3)


def ensure_crs(crs: CRS | str | None, path: PathLike | str = "this raster") -> CRS:
    """Return ``crs``, or raise :class:`MissingCRSError` naming ``path`` when it is None.

    For functions that need georeferencing (plots in map units, vector overlays, exports).
    """
    if crs is None:
        raise MissingCRSError(_missing_crs_message(os.fspath(path)))
    return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)


def write_like(
    path: PathLike,
    array: np.ndarray,
    like: PathLike,
    *,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    colormap: dict[int, tuple[int, ...]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an array as a GeoTIFF on the grid of another raster (same CRS and transform).

    The file is tiled (256 x 256) and DEFLATE-compressed, written to a temporary name in the same
    folder, read back block by block, and renamed only when complete and readable, so neither a
    crash nor a failed write (a full disk, which GDAL reports only on stderr) leaves a
    half-written file under ``path``.

    Args:
        path: The GeoTIFF to write.
        array: ``(bands, rows, cols)`` or ``(rows, cols)``, the same rows and cols as ``like``.
        like: The raster whose CRS and transform the new file takes.
        nodata: Nodata value of the new file (None: no nodata).
        descriptions: One name per band.
        colormap: A colour table for a single-band ``uint8`` file ({value: (r, g, b[, a])}).
        overwrite: Replace an existing file; otherwise an existing ``path`` is an error.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: the array's shape does not match ``like``.
        rasterio.errors.RasterioIOError: Writing failed (a full disk?); the message names
            ``path``, and nothing is left under that name.

    Example:
        >>> mask = (ndvi > 0.4).astype("uint8")  # doctest: +SKIP
        >>> write_like("vegetation.tif", mask, "scene.tif", nodata=255)  # doctest: +SKIP
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it or choose another path"
        )
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[np.newaxis]
    _check_ndim(data, (3,), "array", "(bands, rows, cols) or (rows, cols)")
    with open_raster(like) as src:
        if data.shape[1:] != (src.height, src.width):
            raise ValueError(
                f"array has {data.shape[1]} rows x {data.shape[2]} cols but {like} is "
                f"{src.height} x {src.width}; write_like needs the same grid"
            )
        crs, transform = src.crs, src.transform
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": data.shape[1] >= 256 and data.shape[2] >= 256,
    }
    if profile["tiled"]:
        profile.update(blockxsize=256, blockysize=256)
    try:
        with atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(data)
                for i, name in enumerate(descriptions or [], start=1):
                    dst.set_band_description(i, name)
                if colormap is not None:
                    dst.write_colormap(1, colormap)
            _read_back(tmp)
    except RASTERIO_ERRORS as exc:  # GDAL reports ENOSPC only on stderr: "Write failed"
        raise _write_failed(path, exc) from exc
    return path


def _read_back(path: PathLike) -> None:
    """Read every block of a GeoTIFF just written, raising RasterioIOError if one is missing.

    A write that fails while GDAL flushes the file on closing (a full disk) is only reported
    on stderr and leaves a truncated file; reading it back is what notices.
    """
    with rasterio.open(path) as ds:
        for _, window in ds.block_windows(1):
            ds.read(window=window)
