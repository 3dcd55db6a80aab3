"""Tests for helpers.download: resume, atomic files, hashes, mirrors, offline messages, zips.

Every download goes to a server on 127.0.0.1 started by the test; nothing leaves the machine.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import io
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import download
from helpers.download import (
    ArchiveError,
    ChecksumError,
    DownloadError,
    OfflineError,
    RegistryEntry,
    default_cache_dir,
    download_file,
    extract_zip,
    fetch,
    file_sha256,
)

PAYLOAD = bytes(range(256)) * 40  # 10 240 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``server.root``; honours ``Range: bytes=a-b`` when ``server.ranges``.

    ``server.cut_after`` (bytes, used once) sends a full Content-Length but closes the
    connection after that many body bytes, like a dropped connection. ``server.versions``
    (``"etag"`` or ``"last-modified"``) sends that validator and honours ``If-Range`` (a stale
    one gets the whole file, 200); ``server.if_ranges`` logs the ``If-Range`` headers.
    ``server.hang_after`` (bytes) sends that many body bytes, then waits for ``server.release``.
    """

    def log_message(self, *args: Any) -> None:
        pass

    def _respond(self, body_wanted: bool) -> None:
        server = self.server
        server.log.append((self.command, self.path, self.headers.get("Range")))
        path = server.root / self.path.lstrip("/").split("?")[0]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        requested = self.headers.get("Range")
        version = _version(path, data, server.versions)
        server.if_ranges.append(self.headers.get("If-Range"))
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != version:
            requested = None  # the file changed: send all of it
        if requested and server.ranges:
            first, last = re.fullmatch(r"bytes=(\d*)-(\d*)", requested.strip()).groups()
            start = int(first) if first else len(data) - int(last)
            end = min(int(last), len(data) - 1) if first and last else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if server.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        if version is not None:
            self.send_header("ETag" if server.versions == "etag" else "Last-Modified", version)
        self.end_headers()
        if not body_wanted:
            return
        if server.hang_after is not None:
            self.wfile.write(body[: server.hang_after])
            self.wfile.flush()
            server.release.wait(timeout=30)
            return
        cut, server.cut_after = server.cut_after, None
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()

    def do_GET(self) -> None:
        self._respond(True)

    def do_HEAD(self) -> None:
        self._respond(False)


def _version(path: Path, data: bytes, versions: str | None) -> str | None:
    """The ETag or Last-Modified value the test server gives ``path``."""
    if versions == "etag":
        return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
    if versions == "last-modified":
        return email.utils.formatdate(path.stat().st_mtime, usegmt=True)
    return None


@contextmanager
def serve(
    root: Path, *, ranges: bool = True, versions: str | None = None
) -> Iterator[tuple[Any, str]]:
    """Run a range-capable file server for ``root``; yield ``(server, base_url)``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.root, server.ranges, server.cut_after, server.log = root, ranges, None, []
    server.versions, server.if_ranges = versions, []
    server.hang_after, server.release = None, threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    return root


@pytest.fixture
def server(files: Path) -> Iterator[tuple[Any, str]]:
    with serve(files) as running:
        yield running


def refused_url(name: str = "data.bin") -> str:
    """A URL on a local port nobody listens on (connection refused, like being offline)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files the downloader may have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name)


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


def test_download_writes_verified_file_and_nothing_else(server, tmp_path: Path) -> None:
    _, base = server
    cache = tmp_path / "cache"
    path = download_file(base + "data.bin", cache / "data.bin", sha256=PAYLOAD_SHA, progress=False)
    assert path == cache / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert leftovers(cache) == []


def test_cached_file_is_not_downloaded_again(server, tmp_path: Path) -> None:
    srv, base = server
    target = tmp_path / "cache" / "data.bin"
    download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False)
    requests_before = len(srv.log)
    download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False)
    assert len(srv.log) == requests_before
    download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False, overwrite=True)
    assert len(srv.log) == requests_before + 1


def test_interrupted_download_keeps_partial_and_resumes_with_range(server, tmp_path: Path) -> None:
    srv, base = server
    target = tmp_path / "cache" / "data.bin"
    srv.cut_after = 4000
    with pytest.raises(DownloadError, match="interrupted") as info:
        download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False, retries=0)
    assert not isinstance(info.value, OfflineError)
    assert "run the same call again to resume" in str(info.value)
    assert not target.exists()  # never half-written under the final name
    partial = target.with_name(".data.bin.download")
    assert partial.stat().st_size == 4000

    download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False, retries=0)
    assert target.read_bytes() == PAYLOAD
    assert srv.log[-1] == ("GET", "/data.bin", "bytes=4000-")
    assert leftovers(target.parent) == []


def test_retries_resume_within_one_call(server, tmp_path: Path) -> None:
    srv, base = server
    srv.cut_after = 1234
    target = tmp_path / "data.bin"
    download_file(base + "data.bin", target, progress=False, retries=2, retry_wait=0)
    assert target.read_bytes() == PAYLOAD
    assert [entry[2] for entry in srv.log] == [None, "bytes=1234-"]


def test_server_without_range_support_restarts_cleanly(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "data.bin"
    partial = target.with_name(".data.bin.download")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"stale bytes from an earlier try")
    with serve(files, ranges=False) as (srv, base):
        download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert srv.log[0][2] is not None  # it asked to resume, got 200 and started again
    assert not partial.exists()


def test_complete_partial_is_finished_without_new_bytes(server, tmp_path: Path) -> None:
    srv, base = server
    target = tmp_path / "data.bin"
    target.with_name(".data.bin.download").write_bytes(PAYLOAD)  # all bytes, move never done
    download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert srv.log == [("GET", "/data.bin", f"bytes={len(PAYLOAD)}-")]  # answered 416


def test_hash_mismatch_deletes_download(server, tmp_path: Path) -> None:
    _, base = server
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=PAYLOAD_SHA) as info:
        download_file(base + "data.bin", cache / "data.bin", sha256=wrong, progress=False)
    assert wrong in str(info.value) and base + "data.bin" in str(info.value)
    assert not (cache / "data.bin").exists()
    assert leftovers(cache) == []


def test_offline_message_names_url_error_and_manual_path(tmp_path: Path) -> None:
    url = refused_url()
    target = tmp_path / "cache" / "data.bin"
    with pytest.raises(OfflineError) as info:
        download_file(url, target, sha256=PAYLOAD_SHA, progress=False, retries=1, retry_wait=0)
    message = str(info.value)
    assert url in message
    assert "offline" in message
    assert "Connection refused" in message or "refused" in message.lower()
    assert str(target) in message and PAYLOAD_SHA in message  # where to put it by hand
    assert not target.exists()


def test_http_404_is_not_retried_and_named(server, tmp_path: Path) -> None:
    srv, base = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(base + "missing.bin", tmp_path / "missing.bin", progress=False, retries=3)
    assert len(srv.log) == 1


@pytest.mark.parametrize("versions", ["etag", "last-modified"])
def test_resume_after_remote_change_restarts_instead_of_splicing(
    files: Path, tmp_path: Path, versions: str
) -> None:
    target = tmp_path / "cache" / "data.bin"
    with serve(files, versions=versions) as (srv, base):
        srv.cut_after = 4000
        with pytest.raises(DownloadError, match="interrupted"):
            download_file(base + "data.bin", target, progress=False, retries=0)
        first_version = _version(files / "data.bin", PAYLOAD, versions)
        changed = PAYLOAD[::-1]  # same length, other bytes: a new version of the file
        (files / "data.bin").write_bytes(changed)
        os.utime(files / "data.bin", (time.time() + 100, time.time() + 100))

        download_file(base + "data.bin", target, progress=False, retries=0)  # no hash to catch it
    assert srv.log[-1] == ("GET", "/data.bin", "bytes=4000-")
    assert srv.if_ranges[-1] == first_version  # resume only if it is the same version
    assert target.read_bytes() == changed  # not PAYLOAD[:4000] + changed[4000:]
    assert leftovers(target.parent) == []


def test_resume_of_unchanged_file_sends_if_range_and_appends(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    with serve(files, versions="etag") as (srv, base):
        srv.cut_after = 3000
        download_file(base + "data.bin", target, progress=False, retries=1, retry_wait=0)
    assert target.read_bytes() == PAYLOAD
    assert [entry[2] for entry in srv.log] == [None, "bytes=3000-"]
    assert srv.if_ranges == [None, _version(files / "data.bin", PAYLOAD, "etag")]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("sent", [0, 4000])
def test_killed_download_leaves_no_empty_file(files: Path, tmp_path: Path, sent: int) -> None:
    """A process killed mid-download leaves only the resumable bytes, never an empty file."""
    cache = tmp_path / "cache"
    target = cache / "data.bin"
    partial = cache / ".data.bin.download"
    code = (
        "import sys; from helpers.download import download_file; "
        "download_file(sys.argv[1], sys.argv[2], progress=False, retries=0, timeout=60)"
    )
    repo = Path(__file__).resolve().parents[1]
    with serve(files, versions="etag") as (srv, base):
        srv.hang_after = sent
        env = {**os.environ, "PYTHONPATH": str(repo)}
        process = subprocess.Popen(
            [sys.executable, "-c", code, base + "data.bin", str(target)], cwd=repo, env=env
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if (partial.stat().st_size if partial.exists() else 0) >= sent and srv.log:
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # let the client act on what it received
            assert process.poll() is None, "the download ended instead of hanging"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        srv.release.set()
        srv.hang_after = None
        left = {p.name: p.stat().st_size for p in cache.iterdir()} if cache.exists() else {}
        assert all(size > 0 for size in left.values()), left
        assert set(left) <= {".data.bin.download", ".data.bin.download.version"}
        assert (partial.stat().st_size if partial.exists() else 0) == sent

        download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False, retries=0)
    assert target.read_bytes() == PAYLOAD
    assert leftovers(cache) == []


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=len(PAYLOAD) - 1))
def test_resume_from_any_cut_reproduces_the_file(server, tmp_path_factory, cut: int) -> None:
    srv, base = server
    target = tmp_path_factory.mktemp("resume") / "data.bin"
    srv.cut_after = cut
    download_file(base + "data.bin", target, sha256=PAYLOAD_SHA, progress=False, retry_wait=0)
    assert file_sha256(target) == PAYLOAD_SHA


# --------------------------------------------------------------------------------------------
# Registry and cache folder
# --------------------------------------------------------------------------------------------


def test_cache_dir_argument_then_environment_then_user_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "from_env"))
    assert default_cache_dir() == tmp_path / "from_env"
    assert default_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv(download.DATA_ENV)
    assert "satcourse" in str(default_cache_dir())


def test_registry_entries_are_pinned() -> None:
    for name, entry in download.REGISTRY.items():
        assert entry.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert all(url.startswith("https://") for url in entry.urls)


def test_fetch_uses_env_cache_and_falls_back_to_mirror(server, monkeypatch, tmp_path: Path) -> None:
    _, base = server
    entry = RegistryEntry("data.bin", refused_url(), PAYLOAD_SHA, mirrors=(base + "data.bin",))
    monkeypatch.setitem(download.REGISTRY, "data.bin", entry)
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "env_cache"))
    path = fetch("data.bin", progress=False, retries=0)
    assert path == tmp_path / "env_cache" / "data.bin"
    assert path.read_bytes() == PAYLOAD


def test_fetch_all_urls_failing_lists_each(monkeypatch, tmp_path: Path) -> None:
    first, second = refused_url(), refused_url("other.bin")
    entry = RegistryEntry("data.bin", first, PAYLOAD_SHA, mirrors=(second,))
    monkeypatch.setitem(download.REGISTRY, "data.bin", entry)
    with pytest.raises(OfflineError) as info:
        fetch("data.bin", cache_dir=tmp_path, progress=False, retries=0)
    assert first in str(info.value) and second in str(info.value)


def test_fetch_url_override_keeps_registry_hash(server, monkeypatch, tmp_path: Path) -> None:
    _, base = server
    entry = RegistryEntry("data.bin", refused_url(), "f" * 64)
    monkeypatch.setitem(download.REGISTRY, "data.bin", entry)
    with pytest.raises(ChecksumError):
        fetch("data.bin", cache_dir=tmp_path, url=base + "data.bin", progress=False)
    path = fetch("data.bin", cache_dir=tmp_path, url=base + "data.bin", sha256=PAYLOAD_SHA,
                 progress=False)  # fmt: skip
    assert path.read_bytes() == PAYLOAD


def test_fetch_unknown_name_lists_registry() -> None:
    with pytest.raises(KeyError, match="EuroSAT.zip"):
        fetch("nope.zip")


# --------------------------------------------------------------------------------------------
# Zip extraction
# --------------------------------------------------------------------------------------------


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_extract_zip_creates_destination(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip({"top/x.txt": b"x", "top/sub/y.txt": b"y"}))
    out = extract_zip(archive, tmp_path / "out", progress=False)
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"y"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        extract_zip(archive, out, progress=False)
    extract_zip(archive, out, overwrite=True, progress=False)
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "not_a_zip"])
def test_corrupt_zip_raises_and_leaves_nothing(tmp_path: Path, damage: str) -> None:
    data = bytearray(make_zip({"a.txt": b"A" * 500, "b.txt": b"B" * 500}, zipfile.ZIP_STORED))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":
        data[data.index(b"B" * 500) + 10] ^= 0xFF  # CRC-32 of b.txt no longer matches
    else:
        data = bytearray(b"<html>Service unavailable</html>")
    archive = tmp_path / "a.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="download again") as info:
        extract_zip(archive, tmp_path / "out", progress=False)
    assert str(archive) in str(info.value)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def zip_with_link_member() -> bytes:
    """A zip whose ``top/link`` is a symbolic link and whose ``top/link/x.txt`` goes through it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("top/link")
        link.create_system = 3  # Unix, so the mode bits below are read
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
        zf.writestr("top/link/x.txt", b"x")
    return buffer.getvalue()


def test_member_through_symlink_raises_archive_error(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_with_link_member())
    with pytest.raises(ArchiveError, match="download again") as info:
        extract_zip(archive, tmp_path / "out", progress=False)
    message = str(info.value)
    assert str(archive) in message and "top/link/x.txt" in message and "symbolic link" in message
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_member_clashing_with_a_file_raises_archive_error(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip({"data": b"a file", "data/": b""}))  # a file and a folder
    with pytest.raises(ArchiveError, match="data/") as info:
        extract_zip(archive, tmp_path / "out", progress=False)
    assert str(archive) in str(info.value)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []
