"""EuroSAT, a public benchmark for classifying Sentinel-2 tiles (Helber et al. 2019).

EuroSAT holds 27,000 Sentinel-2 tiles of 64 x 64 pixels (10 m) in ten land-use and land-cover
classes, stored one folder per class. Two versions exist:

* ``kind="rgb"``: JPEG images of the red, green and blue bands (~90 MB download). The class
  folder root is read directly by ``keras.utils.image_dataset_from_directory``.
* ``kind="ms"``: GeoTIFFs with all 13 bands (~2 GB download), top-of-atmosphere reflectance
  (Level-1C), in the band order of :data:`EUROSAT_MS_BANDS`.

:func:`fetch_eurosat` downloads the archive through the hashed registry of
:mod:`helpers.download` (cache folder, ``SATCOURSE_DATA`` override, resume, SHA-256 check),
extracts it atomically and returns the folder that holds the class folders::

    import keras
    from helpers.eurosat import fetch_eurosat

    root = fetch_eurosat("rgb")
    train, val = keras.utils.image_dataset_from_directory(
        root, image_size=(64, 64), validation_split=0.2, subset="both", seed=42
    )

Reference: P. Helber, B. Bischke, A. Dengel, D. Borth. EuroSAT: A Novel Dataset and Deep
Learning Benchmark for Land Use and Land Cover Classification. IEEE Journal of Selected Topics
in Applied Earth Observations and Remote Sensing 12(7), 2217-2226, 2019. Licence: MIT.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from helpers.download import ArchiveError, default_cache_dir, extract_zip, fetch

__all__ = [
    "EUROSAT_CLASSES",
    "EUROSAT_KINDS",
    "EUROSAT_MS_BANDS",
    "fetch_eurosat",
    "find_class_root",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: The ten classes, in the alphabetical order class-folder readers give them labels 0-9.
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)

#: Band order of the multispectral GeoTIFFs: B8A is the last band, not the ninth (see
#: github.com/phelber/EuroSAT issue 7 and the matching TorchGeo fix).
EUROSAT_MS_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip

#: kind -> (registry file name, extraction folder name, image file suffixes).
EUROSAT_KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "rgb": ("EuroSAT.zip", "eurosat_rgb", (".jpg", ".jpeg", ".png")),
    "ms": ("EuroSATallBands.zip", "eurosat_ms", (".tif", ".tiff")),
}


def _has_images(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return any(p.is_file() and p.suffix.lower() in suffixes for p in folder.iterdir())


def find_class_root(folder: PathLike, suffixes: tuple[str, ...] = (".jpg", ".tif")) -> Path:
    """The shallowest folder under ``folder`` whose subfolders hold the images, one per class.

    EuroSAT's archives nest their class folders (``2750/`` in the RGB zip,
    ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/`` in the MS zip; mirrors differ),
    so the root is searched for rather than hard-coded: breadth-first, in sorted order, the first
    folder with at least two subfolders that directly contain image files.

    Args:
        folder: Where an archive was extracted.
        suffixes: Image file suffixes (lower case) that count.

    Returns:
        The class-folder root.

    Raises:
        FileNotFoundError: No such folder exists under ``folder``.

    Example:
        >>> find_class_root("cache/eurosat_rgb", (".jpg",))  # doctest: +SKIP
        PosixPath('cache/eurosat_rgb/2750')
    """
    folder = Path(folder)
    queue = [folder]
    while queue:
        current = queue.pop(0)
        subfolders = sorted(p for p in current.iterdir() if p.is_dir())
        if sum(_has_images(p, suffixes) for p in subfolders) >= 2:
            return current
        queue.extend(subfolders)
    raise FileNotFoundError(
        f"No class folders with {'/'.join(suffixes)} images found under {folder}. The archive "
        "does not have the EuroSAT layout (class_name/image files): check the URL, or delete "
        f"{folder} and call fetch_eurosat again."
    )


def fetch_eurosat(
    kind: str = "rgb",
    cache_dir: PathLike | None = None,
    url: str | None = None,
    *,
    sha256: str | None = None,
    verify: bool = True,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
    retry_wait: float = 1.0,
    keep_archive: bool = True,
    overwrite: bool = False,
) -> Path:
    """Download and extract EuroSAT (once) and return its class-folder root.

    The archive is fetched into the cache folder through :func:`helpers.download.fetch` and
    extracted into ``<cache>/eurosat_rgb`` (or ``eurosat_ms``) atomically, so an interrupted or
    failed extraction leaves nothing behind. When that folder exists, nothing is downloaded.

    Args:
        kind: ``"rgb"`` (JPEG, ~90 MB) or ``"ms"`` (13-band GeoTIFF, ~2 GB).
        cache_dir: Cache folder; default ``$SATCOURSE_DATA`` or the user cache folder
            (see :func:`helpers.download.default_cache_dir`).
        url: Download from this URL instead of the registry's (a mirror or a local server).
        sha256: Expected SHA-256 of the archive instead of the registry's.
        verify: False skips the hash check (a mirror whose file you trust but whose bytes
            differ).
        progress: Show progress bars for the download and the extraction.
        retries: Further download tries after a failure, each resuming where the last stopped.
        timeout: Seconds to wait for the server.
        retry_wait: Base wait in seconds between tries.
        keep_archive: Keep the zip in the cache after extraction (False frees the space).
        overwrite: Download and extract again even if the data is already there.

    Returns:
        The folder holding one subfolder per class (``AnnualCrop/``, ``Forest/``, ...), ready
        for ``keras.utils.image_dataset_from_directory`` (RGB) or a GeoTIFF reader (MS).

    Raises:
        ValueError: Unknown ``kind``.
        helpers.download.OfflineError: No connection; the message says where to put the zip by
            hand.
        helpers.download.DownloadError: HTTP error or an interrupted download (run again to
            resume).
        helpers.download.ChecksumError: The download does not match the registry hash.
        helpers.download.ArchiveError: The archive is corrupt; it is deleted from the cache.

    Example:
        >>> root = fetch_eurosat("rgb")  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
        ['AnnualCrop', 'Forest']
    """
    key = str(kind).lower()
    if key not in EUROSAT_KINDS:
        raise ValueError(
            f"kind={kind!r} is not a EuroSAT version; use one of {list(EUROSAT_KINDS)}."
        )
    name, folder_name, suffixes = EUROSAT_KINDS[key]
    cache = default_cache_dir(cache_dir)
    extracted = cache / folder_name
    if extracted.is_dir() and not overwrite:
        log.info("EuroSAT %s already extracted in %s", key, extracted)
        return find_class_root(extracted, suffixes)
    archive = fetch(
        name,
        cache_dir=cache,
        url=url,
        sha256=sha256,
        verify=verify,
        progress=progress,
        retries=retries,
        timeout=timeout,
        retry_wait=retry_wait,
        overwrite=overwrite,
    )
    try:
        extract_zip(archive, extracted, overwrite=overwrite, progress=progress)
    except ArchiveError as exc:
        # A verified archive cannot be corrupt; this one came unchecked (verify=False) or from a
        # bad mirror. Delete it so the next call downloads a fresh copy.
        archive.unlink(missing_ok=True)
        raise ArchiveError(
            f"The EuroSAT archive {archive} (from {url or 'the registry'}) cannot be extracted "
            f"({exc.__cause__ or exc}); nothing was extracted and the archive was deleted from the "
            "cache, so the next call downloads it again. If this repeats, the server sends a "
            "broken file: try another mirror with url=... and keep verify=True."
        ) from exc
    if not keep_archive:
        archive.unlink(missing_ok=True)
    try:
        return find_class_root(extracted, suffixes)
    except FileNotFoundError:
        shutil.rmtree(extracted, ignore_errors=True)  # do not leave a useless extraction behind
        raise
