"""Tests for helpers.eurosat: a tiny fake EuroSAT zip served from 127.0.0.1.

The real archive is never downloaded; the fake one has EuroSAT's layout (``2750/<Class>/
<Class>_<n>.jpg``) with three classes of two 8x8 JPEGs each.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import download
from helpers.download import ArchiveError, ChecksumError, DownloadError, OfflineError
from helpers.eurosat import EUROSAT_CLASSES, EUROSAT_MS_BANDS, fetch_eurosat, find_class_root

CLASSES = ("AnnualCrop", "Forest", "SeaLake")


def fake_eurosat_zip(prefix: str = "2750", suffix: str = ".jpg") -> bytes:
    """EuroSAT's layout in miniature: ``prefix/<Class>/<Class>_<n><suffix>``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for c, name in enumerate(CLASSES):
            for n in (1, 2):
                if suffix == ".jpg":
                    pixels = np.full((8, 8, 3), 40 * c + n, dtype="uint8")
                    image = io.BytesIO()
                    Image.fromarray(pixels).save(image, format="JPEG")
                    data = image.getvalue()
                else:
                    data = b"II*\x00fake tiff " + bytes([c, n])
                zf.writestr(f"{prefix}/{name}/{name}_{n}{suffix}", data)
    return buffer.getvalue()


ZIP = fake_eurosat_zip()
ZIP_SHA = hashlib.sha256(ZIP).hexdigest()


def leftovers(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def served(local_http_server) -> tuple[Path, str]:
    root, base = local_http_server
    (root / "EuroSAT.zip").write_bytes(ZIP)
    return root, base + "EuroSAT.zip"


def test_fetch_eurosat_returns_class_folder_root(served, tmp_path: Path) -> None:
    _, url = served
    root = fetch_eurosat("rgb", cache_dir=tmp_path, url=url, sha256=ZIP_SHA, progress=False)
    assert root == tmp_path / "eurosat_rgb" / "2750"
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASSES)
    assert (tmp_path / "EuroSAT.zip").read_bytes() == ZIP
    assert leftovers(tmp_path) == []


def test_class_root_holds_readable_images_per_class(served, tmp_path: Path) -> None:
    # The layout keras.utils.image_dataset_from_directory reads: root/<class>/<image>; the
    # Keras reader itself is not imported here (TensorFlow's import alone takes many seconds).
    _, url = served
    root = fetch_eurosat(cache_dir=tmp_path, url=url, sha256=ZIP_SHA, progress=False)
    for label, name in enumerate(sorted(CLASSES)):
        images = sorted((root / name).iterdir())
        assert [p.name for p in images] == [f"{name}_1.jpg", f"{name}_2.jpg"]
        with Image.open(images[0]) as image:
            assert image.mode == "RGB" and image.size == (8, 8)
            assert abs(int(np.asarray(image).mean()) - (40 * label + 1)) <= 2


def test_second_call_uses_cache_and_env_override(served, monkeypatch, tmp_path: Path) -> None:
    served_root, url = served
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "env"))
    first = fetch_eurosat(url=url, sha256=ZIP_SHA, progress=False)
    assert first.is_relative_to(tmp_path / "env")
    (served_root / "EuroSAT.zip").unlink()  # the server no longer has it
    assert fetch_eurosat(url=url, sha256=ZIP_SHA, progress=False) == first


def test_keep_archive_false_frees_the_zip(served, tmp_path: Path) -> None:
    _, url = served
    root = fetch_eurosat(
        cache_dir=tmp_path, url=url, sha256=ZIP_SHA, keep_archive=False, progress=False
    )
    assert root.is_dir()
    assert not (tmp_path / "EuroSAT.zip").exists()


def test_registry_hash_is_checked_when_only_the_url_changes(served, tmp_path: Path) -> None:
    _, url = served
    with pytest.raises(ChecksumError, match=download.REGISTRY["EuroSAT.zip"].sha256):
        fetch_eurosat(cache_dir=tmp_path, url=url, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no zip, no folder, no partials


def test_verify_false_accepts_a_trusted_mirror(served, tmp_path: Path) -> None:
    _, url = served
    root = fetch_eurosat(cache_dir=tmp_path, url=url, verify=False, progress=False)
    assert root.name == "2750"


def test_ms_kind_finds_the_nested_tif_root(local_http_server, tmp_path: Path) -> None:
    served_root, base = local_http_server
    data = fake_eurosat_zip("ds/images/remote_sensing/otherDatasets/sentinel_2/tif", ".tif")
    (served_root / "EuroSATallBands.zip").write_bytes(data)
    root = fetch_eurosat(
        "ms",
        cache_dir=tmp_path,
        url=base + "EuroSATallBands.zip",
        sha256=hashlib.sha256(data).hexdigest(),
        progress=False,
    )
    assert root == tmp_path / "eurosat_ms" / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
    assert len(EUROSAT_MS_BANDS) == 13 and EUROSAT_MS_BANDS[-1] == "B8A"


def test_corrupt_zip_is_deleted_and_nothing_extracted(local_http_server, tmp_path: Path) -> None:
    served_root, base = local_http_server
    broken = ZIP[: len(ZIP) // 2]  # a truncated archive whose hash we were told
    (served_root / "EuroSAT.zip").write_bytes(broken)
    with pytest.raises(ArchiveError, match="downloads it again"):
        fetch_eurosat(
            cache_dir=tmp_path,
            url=base + "EuroSAT.zip",
            sha256=hashlib.sha256(broken).hexdigest(),
            progress=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_zip_member_through_symlink_is_deleted_so_next_call_downloads_again(
    local_http_server, tmp_path: Path
) -> None:
    served_root, base = local_http_server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("2750/Forest")
        link.create_system = 3  # Unix mode bits: a symbolic link
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/tmp")
        zf.writestr("2750/Forest/Forest_1.jpg", b"not reached")
    (served_root / "EuroSAT.zip").write_bytes(buffer.getvalue())
    kwargs = {"cache_dir": tmp_path, "url": base + "EuroSAT.zip", "progress": False}
    with pytest.raises(ArchiveError, match="downloads it again") as info:
        fetch_eurosat(verify=False, **kwargs)
    assert str(tmp_path / "EuroSAT.zip") in str(info.value)
    assert "2750/Forest/Forest_1.jpg" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the bad archive is not cached

    (served_root / "EuroSAT.zip").write_bytes(ZIP)  # the server now sends the right file
    root = fetch_eurosat(sha256=ZIP_SHA, **kwargs)
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASSES)


def test_offline_message_says_where_to_put_the_zip(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/EuroSAT.zip"
    with pytest.raises(OfflineError) as info:
        fetch_eurosat(cache_dir=tmp_path, url=url, retries=0, progress=False)
    message = str(info.value)
    assert url in message
    assert str(tmp_path / "EuroSAT.zip") in message
    assert download.REGISTRY["EuroSAT.zip"].sha256 in message
    assert not (tmp_path / "eurosat_rgb").exists()


def test_manually_placed_zip_is_used_offline(tmp_path: Path) -> None:
    (tmp_path / "EuroSAT.zip").write_bytes(ZIP)  # what the offline message asks users to do
    root = fetch_eurosat(cache_dir=tmp_path, url="http://127.0.0.1:9/none", sha256=ZIP_SHA,
                         progress=False)  # fmt: skip
    assert root.name == "2750"


class _DroppingRangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload with ``Range`` support; the first answer stops after ``cut`` bytes."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        requested = self.headers.get("Range")
        server.ranges_seen.append(requested)
        start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1)) if requested else 0
        body = server.payload[start:]
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(body)))
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/"
                             f"{len(server.payload)}")  # fmt: skip
        self.end_headers()
        cut, server.cut = server.cut, None
        self.wfile.write(body if cut is None else body[:cut])


@pytest.fixture
def dropping_server() -> Iterator[tuple[Any, str]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DroppingRangeHandler)
    server.payload, server.cut, server.ranges_seen = ZIP, len(ZIP) // 3, []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/EuroSAT.zip"
    finally:
        server.shutdown()
        server.server_close()


def test_interrupted_download_then_resume(dropping_server, tmp_path: Path) -> None:
    server, url = dropping_server
    kwargs = {"cache_dir": tmp_path, "url": url, "sha256": ZIP_SHA, "progress": False}
    with pytest.raises(DownloadError, match="resume"):
        fetch_eurosat(retries=0, **kwargs)
    assert not (tmp_path / "EuroSAT.zip").exists()
    assert not (tmp_path / "eurosat_rgb").exists()
    assert (tmp_path / ".EuroSAT.zip.download").stat().st_size == len(ZIP) // 3

    root = fetch_eurosat(retries=0, **kwargs)
    assert server.ranges_seen == [None, f"bytes={len(ZIP) // 3}-"]
    assert (tmp_path / "EuroSAT.zip").read_bytes() == ZIP
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASSES)
    assert leftovers(tmp_path) == []


def test_unknown_kind_and_missing_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rgb"):
        fetch_eurosat("hyperspectral", cache_dir=tmp_path)
    (tmp_path / "empty" / "only_one").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="EuroSAT layout"):
        find_class_root(tmp_path / "empty")
    assert len(EUROSAT_CLASSES) == 10
