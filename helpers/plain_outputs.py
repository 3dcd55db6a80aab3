"""Prediction on plain images: PNG (or any raster without georeferencing) in, PNG or NumPy out.

Cloud and land-cover benchmarks come as PNG image/mask pairs without a CRS or geotransform.
:func:`helpers.inference.predict` reads them like any raster; :func:`plain_images` (the
decorator on ``predict``) adds what such files need:

* rasterio's ``NotGeoreferencedWarning`` (two or three per call) is silenced: ``predict``
  says once that the input has no CRS, and a GeoTIFF output keeps the pixel grid, without CRS;
* an ``out_path`` ending in ``.png`` or ``.npy`` is predicted into a temporary GeoTIFF and then
  written in that format: classes as a one-band uint8 PNG (255: no prediction) or a
  ``(rows, cols)`` uint8 array; probabilities as a ``(bands, rows, cols)`` float32 array, or
  (one band only) a uint8 PNG of ``round(255 * p)`` with 0 where there is no prediction.

Example:
    >>> predict(model, "clouds/images/scene_01.png", "predictions/scene_01.png",
    ...         card=card, output="classes")  # doctest: +SKIP
    PosixPath('predictions/scene_01.png')
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from helpers.files import atomic_path

__all__ = ["PLAIN_SUFFIXES", "is_georeferenced", "plain_images", "write_plain"]

#: Output suffixes written without GDAL.
PLAIN_SUFFIXES = (".png", ".npy")


def is_georeferenced(path: Any) -> bool:
    """True when ``path`` is a raster file with a CRS; False for plain images (and non-files)."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as src:
                return src.crs is not None
        except rasterio.errors.RasterioIOError:
            return False


def write_plain(tif: Path, out_path: Path, kind: str) -> Path:
    """Write the GeoTIFF ``tif`` (a probability or class output of ``predict``) as ``out_path``.

    Args:
        tif: The GeoTIFF written by ``predict``.
        out_path: ``.png`` or ``.npy``.
        kind: ``"probabilities"`` or ``"classes"``.

    Raises:
        ValueError: Probabilities of several bands to a PNG (a PNG holds one probability band).
    """
    with rasterio.open(tif) as src:
        data = src.read()
    if out_path.suffix.lower() == ".npy":
        array = data[0] if kind == "classes" else data
        with atomic_path(out_path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array)
        return out_path
    if kind == "probabilities":
        if data.shape[0] != 1:
            raise ValueError(
                f"out_path={os.fspath(out_path)!r}: a PNG holds one probability band, the model "
                f"gives {data.shape[0]}; write .npy or .tif, or ask for output='classes'."
            )
        band = np.nan_to_num(data[0], nan=0.0)
        data = np.rint(np.clip(band, 0, 1) * 255).astype(np.uint8)[np.newaxis]
    from PIL import Image

    with atomic_path(out_path) as tmp:
        Image.fromarray(data[0].astype(np.uint8)).save(tmp, format="PNG")
    return out_path


def plain_images(predict: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``predict`` to take images without georeferencing and write PNG / NumPy."""
    signature = inspect.signature(predict)

    @functools.wraps(predict)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        out_path, output = Path(arguments["out_path"]), arguments["output"]
        plain_out = out_path.suffix.lower() in PLAIN_SUFFIXES
        if not plain_out and is_georeferenced(arguments["scene"]):
            return predict(*args, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            if not plain_out:  # a GeoTIFF of the pixel grid, without CRS
                return predict(*args, **kwargs)
            return _predict_plain(predict, arguments, out_path, output)

    return wrapper


def _predict_plain(predict: Callable[..., Any], arguments: dict, out_path: Path, output: str):
    """Predict into a temporary GeoTIFF next to ``out_path``, then write PNG or NumPy."""
    from helpers.inference import output_paths

    finals = output_paths(out_path, output)
    existing = [p for p in finals if p.exists()]
    if existing and not arguments["overwrite"]:
        raise FileExistsError(
            f"{existing[0]} exists; pass overwrite=True to replace it, or another out_path."
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{out_path.stem}.", dir=out_path.parent))
    try:
        tif = folder / f"{out_path.stem}.tif"
        predict(**(arguments | {"out_path": tif, "overwrite": True}))
        kinds = ("probabilities", "classes") if output == "both" else (output,)
        for temporary, final, kind in zip(output_paths(tif, output), finals, kinds, strict=True):
            write_plain(temporary, final, kind)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return finals if output == "both" else finals[0]
