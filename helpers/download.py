"""Download data files into a cache, through a registry of known files and their SHA-256 hashes.

Every dataset the course downloads is listed in :data:`REGISTRY` with its URL, mirrors and
SHA-256 hash. :func:`fetch` gets a registry file into the cache folder; :func:`download_file`
does the same for any URL. Both:

* show a progress bar (``progress=True``);
* resume an interrupted download where the server supports HTTP range requests (the partial
  file ``.{name}.download`` is kept next to the target and continued on the next try or the next
  call), and start again cleanly where it does not;
* write the final file atomically: it appears under its name only when complete and its hash
  matches; a mismatch deletes the download;
* say clearly what to do when the machine is offline: which URL failed, why, and where to put
  the file by hand.

The cache folder is, in order: the ``cache_dir=`` argument, the ``SATCOURSE_DATA`` environment
variable, or the operating system's user cache folder (``~/.cache/satcourse`` on Linux).

Downloads go through :class:`ResumableDownloader` (also usable as a `pooch
<https://www.fatiando.org/pooch/>`_ downloader), which resumes over HTTP range requests. A resume
sends ``If-Range`` with the ETag (or Last-Modified date) of the first answer, kept beside the
partial file, so a file that changed on the server in between is downloaded again from the start
instead of being spliced from two versions. Nothing is created in the cache folder before the
first bytes arrive, so a download killed early leaves no empty files behind.

Example::

    from helpers import download

    path = download.fetch("EuroSAT.zip")  # ~90 MB, once; later calls return the cached file
    archive_root = download.extract_zip(path, path.with_suffix(""))
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import stat
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pooch
import requests
import urllib3
from tqdm.auto import tqdm

__all__ = [
    "DATA_ENV",
    "REGISTRY",
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "RegistryEntry",
    "ResumableDownloader",
    "default_cache_dir",
    "download_file",
    "extract_zip",
    "fetch",
    "file_sha256",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Environment variable that moves the download cache (e.g. to a bigger disk or a Drive folder).
DATA_ENV = "SATCOURSE_DATA"

_USER_AGENT = "satellite-dl-course (+https://github.com/satellite-dl-course/satellite-dl-course)"


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable file: where it comes from and what its bytes must hash to.

    Attributes:
        name: File name in the cache folder.
        url: Primary download URL.
        sha256: SHA-256 hex digest of the file (lower case).
        size: Size in bytes, for messages (None if unknown).
        mirrors: Further URLs serving the same bytes, tried in order when the primary fails.
        description: One line saying what the file is, with its citation.
    """

    name: str
    url: str
    sha256: str
    size: int | None = None
    mirrors: tuple[str, ...] = ()
    description: str = ""

    @property
    def urls(self) -> tuple[str, ...]:
        """The primary URL followed by the mirrors."""
        return (self.url, *self.mirrors)


# The EuroSAT archives (Helber et al. 2019, MIT licence). The original host (madm.dfki.de) has
# been unreliable (expired certificates, HTTP 403), so the primary URL is TorchGeo's mirror on
# Hugging Face at a pinned revision; the bytes are the same (the published MD5s of both match),
# and the SHA-256s are those TensorFlow Datasets records for the original files.
_EUROSAT_HF = "https://huggingface.co/datasets/torchgeo/eurosat/resolve"

#: The registry of files :func:`fetch` knows, by file name.
REGISTRY: dict[str, RegistryEntry] = {
    entry.name: entry
    for entry in (
        RegistryEntry(
            name="EuroSAT.zip",
            url=f"{_EUROSAT_HF}/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
            sha256="8ebea626349354c5328b142b96d0430e647051f26efc2dc974c843f25ecf70bd",
            size=94_280_567,
            mirrors=("https://madm.dfki.de/files/sentinel/EuroSAT.zip",),
            description=(
                "EuroSAT RGB: 27,000 Sentinel-2 tiles of 64x64 px as JPEG in 10 land-cover "
                "classes (Helber et al. 2019, IEEE JSTARS 12(7))."
            ),
        ),
        RegistryEntry(
            name="EuroSATallBands.zip",
            url=f"{_EUROSAT_HF}/06fd1b090bceecc0ce724cd21578ba7a6664fe8d/EuroSATallBands.zip",
            sha256="751f070f9bffa2eed48b24ca2dd0b02959280c08837e8c9a5532a67ba611df59",
            size=2_067_725_275,
            mirrors=("https://madm.dfki.de/files/sentinel/EuroSATallBands.zip",),
            description=(
                "EuroSAT MS: the same 27,000 tiles with all 13 Sentinel-2 bands as GeoTIFF "
                "(Helber et al. 2019, IEEE JSTARS 12(7))."
            ),
        ),
    )
}


class DownloadError(OSError):
    """A download failed; the message names the URL, the reason and what to do."""


class OfflineError(DownloadError):
    """The server could not be reached at all (no network, DNS failure, connection refused)."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected SHA-256 hash; it was deleted."""


class ArchiveError(DownloadError):
    """An archive cannot be read (truncated, corrupt or not a zip file)."""


def default_cache_dir(cache_dir: PathLike | None = None) -> Path:
    """The folder downloads are cached in.

    Args:
        cache_dir: An explicit folder; wins over everything else.

    Returns:
        ``cache_dir`` if given, else ``$SATCOURSE_DATA`` if set, else the user cache folder
        (``pooch.os_cache("satcourse")``, e.g. ``~/.cache/satcourse`` on Linux). The folder is
        not created here.

    Example:
        >>> os.environ["SATCOURSE_DATA"] = "/data/satcourse"  # doctest: +SKIP
        >>> default_cache_dir()  # doctest: +SKIP
        PosixPath('/data/satcourse')
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(pooch.os_cache("satcourse"))


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file (what a registry entry's ``sha256`` holds).

    Example:
        >>> file_sha256("EuroSAT.zip")  # doctest: +SKIP
        '8ebea626349354c5328b142b96d0430e647051f26efc2dc974c843f25ecf70bd'
    """
    return pooch.file_hash(os.fspath(path), alg="sha256")


def _size_text(size: int | None) -> str:
    if size is None:
        return "unknown size"
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 3)
    return f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def _by_hand(url: str, target: Path, sha256: str | None) -> str:
    check = f" Its SHA-256 must be {sha256}." if sha256 else ""
    return (
        f"To work offline, download {url} by hand (browser, wget or curl) on a connected "
        f"machine and save it as {target}; the next call uses it without downloading.{check}"
    )


def _total_from_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(start, total)`` from a ``Content-Range: bytes a-b/total`` (or ``bytes */total``)."""
    if not value:
        return None, None
    match = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value)
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _validator_path(partial: Path) -> Path:
    """Where the version (ETag or Last-Modified) of a partial download's bytes is kept."""
    return partial.with_name(partial.name + ".version")


def _validator(response: requests.Response) -> str | None:
    """The response's strong ETag, else its Last-Modified date: what ``If-Range`` accepts."""
    etag = response.headers.get("ETag", "").strip()
    if etag and not etag.startswith("W/"):  # weak ETags are not allowed in If-Range
        return etag
    return response.headers.get("Last-Modified", "").strip() or None


def _read_validator(partial: Path) -> str | None:
    try:
        return _validator_path(partial).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _write_validator(partial: Path, validator: str | None) -> None:
    path = _validator_path(partial)
    if validator is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(validator, encoding="utf-8")


def _discard_partial(partial: Path) -> None:
    """Delete a partial download and the version stored beside it."""
    partial.unlink(missing_ok=True)
    _validator_path(partial).unlink(missing_ok=True)


class _Interrupted(Exception):
    """The server closed the connection before sending the whole file."""


def _iter_chunks(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """Body bytes as they arrive, so bytes received before a dropped connection are kept.

    ``iter_content`` fills a whole chunk before yielding and loses it when the connection
    breaks; ``read1`` (urllib3 2) returns whatever has arrived.
    """
    raw = response.raw
    if not hasattr(raw, "read1"):  # urllib3 1.x: smaller chunks lose less on a break
        yield from response.iter_content(chunk_size=min(chunk_size, 1 << 16))
        return
    while True:
        chunk = raw.read1(chunk_size, decode_content=True)
        if not chunk:
            return
        yield chunk


class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes over HTTP.

    Bytes go to a partial file (``.{target name}.download`` next to the final target) that
    survives failures. On each try the downloader asks for the remaining bytes with
    ``Range: bytes=N-``: a ``206 Partial Content`` answer is appended, a ``200`` answer (server
    without range support) restarts the file from zero. The ETag (or Last-Modified date) of
    the answer that started the file is kept beside it (``.version``) and sent as ``If-Range``,
    so a server whose file changed in between answers ``200`` with the new file, which restarts
    the download: a resumed file is never spliced from two versions (a ``206`` whose ETag
    differs from the stored one also restarts). The partial file is created at the first bytes
    received, not before. Connection errors and truncated
    transfers are retried ``retries`` times, waiting ``retry_wait * attempt`` seconds. When the
    file is complete it is moved onto ``output_file`` (pooch then checks the hash and moves it
    into place).

    Args:
        target: The final path of the file, used for the partial file's name and in messages.
            Defaults to ``output_file``.
        sha256: The expected hash, only quoted in the offline message.
        progress: Show a tqdm progress bar in bytes.
        retries: Further tries after a failed one (connection lost, truncated transfer, HTTP
            5xx).
        timeout: Seconds to wait for the server to connect or to send the next bytes.
        retry_wait: Base wait in seconds between tries.
        chunk_size: Bytes read and written at a time.
        session: A :class:`requests.Session` to use (e.g. with proxies or authentication).

    Example:
        >>> downloader = ResumableDownloader(target=Path("cache/file.zip"))  # doctest: +SKIP
        >>> pooch.retrieve(url, known_hash=None, downloader=downloader)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        target: PathLike | None = None,
        sha256: str | None = None,
        progress: bool = True,
        retries: int = 3,
        timeout: float = 30.0,
        retry_wait: float = 1.0,
        chunk_size: int = 1 << 20,
        session: requests.Session | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}.")
        self.target = Path(target) if target is not None else None
        self.sha256 = sha256
        self.progress = progress
        self.retries = int(retries)
        self.timeout = timeout
        self.retry_wait = retry_wait
        self.chunk_size = int(chunk_size)
        self.session = session

    def partial_path(self, output_file: PathLike) -> Path:
        """Where the bytes of an unfinished download are kept."""
        final = self.target if self.target is not None else Path(output_file)
        return final.with_name(f".{final.name}.download")

    def __call__(
        self,
        url: str,
        output_file: PathLike,
        pooch_instance: Any = None,
        check_only: bool = False,
    ) -> bool | None:
        """Download ``url`` into ``output_file`` (see the class docstring)."""
        if check_only:
            with self._session() as session:
                try:
                    response = session.head(url, timeout=self.timeout, allow_redirects=True)
                except requests.RequestException:
                    return False
                return response.status_code == 200
        partial = self.download_partial(url, output_file)
        os.replace(partial, output_file)
        _validator_path(partial).unlink(missing_ok=True)
        return None

    def _session(self) -> contextlib.AbstractContextManager[requests.Session]:
        if self.session is not None:
            return contextlib.nullcontext(self.session)
        return requests.Session()

    def download_partial(self, url: str, output_file: PathLike) -> Path:
        """Download ``url`` completely into :meth:`partial_path` and return that path.

        Nothing is moved into place: the caller checks the bytes (e.g. their hash) and moves
        the partial file onto its final name. The file's version (ETag or Last-Modified) is
        kept beside it (``.version`` suffix) while it is unfinished; delete it together with
        the partial file.

        Raises:
            OfflineError: The server cannot be reached.
            DownloadError: HTTP error, or the transfer stopped ``retries + 1`` times (the
                partial file is kept for the next call to resume).
        """
        with self._session() as session:
            return self._download(session, url, Path(output_file))

    def _download(self, session: requests.Session, url: str, output_file: Path) -> Path:
        partial = self.partial_path(output_file)
        partial.parent.mkdir(parents=True, exist_ok=True)
        target = self.target if self.target is not None else output_file
        attempt = 0
        while True:
            try:
                self._try_once(session, url, partial)
                break
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if (status is not None and status < 500) or attempt >= self.retries:
                    raise DownloadError(
                        f"Download of {url} failed: the server answered HTTP {status} "
                        f"({exc}). Check that the URL is right (a moved file gives 404); "
                        "a mirror may have it. " + _by_hand(url, target, self.sha256)
                    ) from exc
                error: Exception = exc
            except (requests.ConnectionError, requests.Timeout, _Interrupted) as exc:
                if attempt >= self.retries:
                    raise self._failure(url, target, partial, exc) from exc
                error = exc
            attempt += 1
            log.warning(
                "Download of %s failed (%s); try %d of %d.",
                url,
                error,
                attempt + 1,
                self.retries + 1,
            )
            time.sleep(self.retry_wait * attempt)
        return partial

    def _failure(self, url: str, target: Path, partial: Path, exc: Exception) -> DownloadError:
        have = partial.stat().st_size if partial.exists() else 0
        if have == 0 and isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return OfflineError(
                f"Cannot reach the server for {url}: {exc}. This machine seems to be offline, "
                "or the server (or a proxy/firewall) refuses the connection. Check the "
                "connection and run the same call again. " + _by_hand(url, target, self.sha256)
            )
        return DownloadError(
            f"Download of {url} was interrupted after {_size_text(have)} ({exc}), "
            f"{self.retries + 1} tries. The bytes received are kept in {partial}: run the same "
            "call again to resume where it stopped. " + _by_hand(url, target, self.sha256)
        )

    def _try_once(self, session: requests.Session, url: str, partial: Path) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        stored = _read_validator(partial) if have else None
        if have:
            headers["Range"] = f"bytes={have}-"
            if stored:
                # The server sends the rest only if the file is unchanged, else all of it (200).
                headers["If-Range"] = stored
        with session.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416 and have:
                # The partial file is as long as (or longer than) the remote file.
                _, total = _total_from_content_range(response.headers.get("Content-Range"))
                if total == have:
                    return
                log.info("Partial download of %s does not fit the remote file; restarting.", url)
                _discard_partial(partial)
                return self._try_once(session, url, partial)  # now without a Range header
            response.raise_for_status()
            start, total = 0, None
            validator = _validator(response)
            if response.status_code == 206:
                start, total = _total_from_content_range(response.headers.get("Content-Range"))
                changed = stored is not None and validator is not None and validator != stored
                if start != have or changed:
                    log.info("Server sent bytes from %s, not %d; restarting %s.", start, have, url)
                    _discard_partial(partial)
                    return self._try_once(session, url, partial)  # now without a Range header
                validator = None  # the stored one still holds
            else:
                if have:
                    log.info(
                        "%s changed or does not support resuming (HTTP %d); restarting.",
                        url,
                        response.status_code,
                    )
                have = 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            self._write_body(response, partial, have, total, validator)
        size = partial.stat().st_size if partial.exists() else 0
        if total is not None and size < total:
            raise _Interrupted(f"received {size} of {total} bytes")

    def _write_body(
        self,
        response: requests.Response,
        partial: Path,
        have: int,
        total: int | None,
        validator: str | None,
    ) -> None:
        """Append (``have`` > 0) or write the body to ``partial``, opened at the first bytes.

        A fresh download (``have == 0``) stores ``validator`` beside the partial file just before
        its first bytes, so a later resume can ask for the rest of the same version.
        """
        name = (self.target or partial).name.lstrip(".")
        try:
            with (
                contextlib.ExitStack() as stack,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=name,
                    disable=not self.progress,
                ) as bar,
            ):
                file = None
                for chunk in _iter_chunks(response, self.chunk_size):
                    if file is None:
                        if not have:
                            _write_validator(partial, validator)
                        file = stack.enter_context(open(partial, "ab" if have else "wb"))
                    file.write(chunk)
                    file.flush()  # bytes received survive a killed process, for the resume
                    bar.update(len(chunk))
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise _Interrupted(str(exc)) from exc
        if file is None and not have:
            _discard_partial(partial)  # bytes of an older version must not be resumed
            if total in (None, 0):
                partial.touch()  # an empty file is a complete download


def _move_verified(partial: Path, target: Path, url: str, sha256: str | None) -> None:
    """Rename a complete download onto ``target`` if it hashes to ``sha256``, else delete it."""
    got = file_sha256(partial)
    if sha256 is not None and got != sha256:
        _discard_partial(partial)
        raise ChecksumError(
            f"The file downloaded from {url} has SHA-256 {got}, but {sha256} was expected; it "
            f"was deleted and {target} was not written. Run again (the transfer may have been "
            "corrupted); if it happens again, the server holds a different version of the "
            "file: update the registry hash (or pass sha256=... for a file you trust)."
        )
    if sha256 is None:
        log.info("Downloaded %s (SHA-256 %s); pass sha256=... to pin it.", target, got)
    os.replace(partial, target)
    _validator_path(partial).unlink(missing_ok=True)


def _fetch_to_cache(
    name: str,
    cache: Path,
    urls: Sequence[str],
    sha256: str | None,
    *,
    progress: bool,
    retries: int,
    timeout: float,
    retry_wait: float,
    overwrite: bool,
) -> Path:
    """Fetch ``name`` into ``cache`` from the first of ``urls`` that works.

    A cached file is kept when it matches ``sha256`` (or no hash is given). Otherwise the bytes
    go to the downloader's partial file (nothing is created in ``cache`` before the first bytes
    arrive), are checked, and only then renamed onto ``cache / name``.
    """
    target = cache / name
    if overwrite:
        target.unlink(missing_ok=True)
    if target.is_file() and (sha256 is None or file_sha256(target) == sha256):
        return target
    errors: list[str] = []
    for i, url in enumerate(urls):
        downloader = ResumableDownloader(
            target=target,
            sha256=sha256,
            progress=progress,
            retries=retries,
            timeout=timeout,
            retry_wait=retry_wait,
        )
        try:
            partial = downloader.download_partial(url, target)
            _move_verified(partial, target, url, sha256)
            return target
        except ChecksumError:
            raise  # another mirror serves the same bytes; the message says what to do
        except DownloadError as exc:
            errors.append(f"{url}: {exc}")
            if i + 1 < len(urls):
                log.warning("Download from %s failed; trying the mirror %s.", url, urls[i + 1])
                continue
            if len(urls) == 1:
                raise
            kind = OfflineError if isinstance(exc, OfflineError) else DownloadError
            raise kind(
                f"None of the {len(urls)} URLs for {name} worked:\n- " + "\n- ".join(errors)
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def download_file(
    url: str,
    path: PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
    retry_wait: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Download ``url`` to ``path`` with resume, an atomic final file and an optional hash check.

    An existing ``path`` is kept (and not downloaded again) when it matches ``sha256`` or no
    hash is given; a file with another hash is downloaded again (it is a cache, not the user's
    work).

    Args:
        url: HTTP(S) URL of the file.
        path: Where the file goes; its folder is created.
        sha256: Expected SHA-256 hex digest; None skips the check (the hash is logged so it can
            be pinned).
        progress: Show a progress bar.
        retries: Further tries after a failure, each resuming where the last stopped.
        timeout: Seconds to wait for the server.
        retry_wait: Base wait in seconds between tries.
        overwrite: Download again even if ``path`` exists and matches.

    Returns:
        ``path``.

    Raises:
        OfflineError: The server cannot be reached; the message says where to put the file by
            hand.
        DownloadError: HTTP error or an interrupted transfer (the partial file is kept to
            resume).
        ChecksumError: The download does not match ``sha256`` (it is deleted).

    Example:
        >>> download_file(url, "cache/a.zip", sha256=known_sha256)  # doctest: +SKIP
    """
    path = Path(path)
    return _fetch_to_cache(
        path.name,
        path.parent,
        [url],
        sha256.lower() if sha256 else None,
        progress=progress,
        retries=retries,
        timeout=timeout,
        retry_wait=retry_wait,
        overwrite=overwrite,
    )


def fetch(
    name: str,
    *,
    cache_dir: PathLike | None = None,
    url: str | None = None,
    sha256: str | None = None,
    verify: bool = True,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
    retry_wait: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Get a registry file into the cache folder (downloading it only if missing or changed).

    Args:
        name: A key of :data:`REGISTRY`, e.g. ``"EuroSAT.zip"``.
        cache_dir: Cache folder; see :func:`default_cache_dir`.
        url: Download from this URL instead of the registry's URL and mirrors (a local copy,
            a company mirror). The registry hash is still checked unless ``sha256`` or
            ``verify`` say otherwise.
        sha256: Expected hash instead of the registry's.
        verify: False skips the hash check (for a file you trust whose hash differs).
        progress, retries, timeout, retry_wait, overwrite: See :func:`download_file`.

    Returns:
        The path of the verified file in the cache folder.

    Raises:
        KeyError: ``name`` is not in the registry (the message lists the known names).
        OfflineError, DownloadError, ChecksumError: See :func:`download_file`.

    Example:
        >>> archive = fetch("EuroSAT.zip", cache_dir="data/downloads")  # doctest: +SKIP
    """
    if name not in REGISTRY:
        raise KeyError(
            f"{name!r} is not in the download registry; known files: "
            f"{', '.join(sorted(REGISTRY))}. Use download_file(url, path) for other files."
        )
    entry = REGISTRY[name]
    urls = (url,) if url else entry.urls
    expected = (sha256 or entry.sha256).lower() if verify else None
    cache = default_cache_dir(cache_dir)
    log.info("%s (%s) -> %s", name, _size_text(entry.size), cache)
    return _fetch_to_cache(
        name,
        cache,
        urls,
        expected,
        progress=progress,
        retries=retries,
        timeout=timeout,
        retry_wait=retry_wait,
        overwrite=overwrite,
    )


def _member_parts(name: str) -> tuple[str, ...]:
    """The path parts ``zipfile.extract`` uses for a member name (no '..', '.' or drive)."""
    return tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", ".", ".."))


def _check_member_paths(members: Sequence[zipfile.ZipInfo]) -> None:
    """Raise if a member lies under another member that is a file or a symbolic link.

    Such an archive cannot be extracted (``zipfile`` writes the link as a file, then fails on
    the member below it); it is corrupt or not the archive that was expected.
    """
    not_folders = {
        _member_parts(m.filename): stat.S_ISLNK(m.external_attr >> 16)
        for m in members
        if not m.is_dir()
    }
    for member in members:
        parts = _member_parts(member.filename)
        for end in range(1, len(parts)):
            if parts[:end] in not_folders:
                kind = "a symbolic link" if not_folders[parts[:end]] else "a file"
                raise zipfile.BadZipFile(
                    f"member {member.filename!r} goes through {'/'.join(parts[:end])!r}, which "
                    f"the archive holds as {kind}, not a folder"
                )


def _extract_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path) -> None:
    """Extract one member (``extract`` strips absolute paths and '..'), naming it on failure."""
    try:
        zf.extract(member, folder)
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        # Two members claim the same path as a file and as a folder.
        raise zipfile.BadZipFile(
            f"member {member.filename!r} clashes with another member ({exc.strerror})"
        ) from exc


def extract_zip(
    archive: PathLike,
    destination: PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Extract a zip archive into ``destination`` atomically.

    Members are extracted into a temporary folder next to ``destination``, each checked against
    its CRC-32, and the folder is renamed to ``destination`` only when everything was extracted:
    a corrupt or truncated archive leaves nothing behind.

    Args:
        archive: The zip file.
        destination: The folder to create; it holds the archive's members.
        overwrite: Replace an existing ``destination``; otherwise it is an error.
        progress: Show a progress bar over members.

    Returns:
        ``destination``.

    Raises:
        FileNotFoundError: ``archive`` does not exist.
        FileExistsError: ``destination`` exists and ``overwrite`` is False.
        ArchiveError: The archive is corrupt, truncated or not a zip file, or a member lies
            under another member that is a file or a symbolic link (the message names the
            archive and the member). Nothing is extracted; the archive is left for the caller
            to delete.

    Example:
        >>> extract_zip("cache/EuroSAT.zip", "cache/EuroSAT")  # doctest: +SKIP
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise FileNotFoundError(f"Archive not found: {archive}. Download it first.")
    if destination.exists() and not overwrite:
        raise FileExistsError(
            f"{destination} already exists; pass overwrite=True to extract {archive.name} again."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{destination.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    tmp = destination.with_name(stem + ".partial")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_member_paths(members)
            for member in tqdm(
                members, desc=f"extract {archive.name}", unit="file", disable=not progress
            ):
                _extract_member(zf, member, tmp)
        tmp.mkdir(exist_ok=True)  # an empty archive still gives a folder
        if destination.exists():
            old = destination.with_name(stem + ".old")
            os.replace(destination, old)
            os.replace(tmp, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, destination)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise ArchiveError(
            f"{archive} is not a readable zip archive ({type(exc).__name__}: {exc}); nothing "
            f"was extracted to {destination}. The download is probably truncated or corrupt: "
            "delete it and download again."
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return destination
