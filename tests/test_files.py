"""Atomic writes: the target appears complete or not at all; an old target survives failures."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from helpers.files import (
    atomic_path,
    atomic_write_text,
    is_stale_partial,
    lock_file,
    partial_path,
    remove_stale_partials,
)


def test_atomic_write_text_creates_folders_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "index.json"
    assert atomic_write_text(target, '{"a": 1}\n') == target
    assert target.read_text() == '{"a": 1}\n'
    assert [p.name for p in target.parent.iterdir()] == ["index.json"]
    # the usual file mode, not the 0600 a mkstemp file would keep
    assert target.stat().st_mode & stat.S_IRGRP


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_names_are_unique_and_name_their_process(tmp_path):
    first, second = partial_path(tmp_path / "a.tif"), partial_path(tmp_path / "a.tif")
    assert first != second
    assert first.parent == tmp_path
    assert first.name.startswith(f".a.tif.{os.getpid()}.") and first.name.endswith(".partial")


def test_only_the_temporary_files_of_gone_writers_are_stale(tmp_path):
    target = tmp_path / "a.tif"
    live = partial_path(target)  # this process: still writing
    stale = target.with_name(f".a.tif.{dead_pid()}.0123456789ab.partial")
    old_style = target.with_name(".a.tif.partial")
    other = target.with_name(".b.tif.999999999.0123456789ab.partial")
    for path in (live, stale, old_style, other, target):
        path.write_bytes(b"x")
    assert not is_stale_partial(live) and not is_stale_partial(target)
    assert is_stale_partial(stale) and is_stale_partial(old_style)
    assert sorted(remove_stale_partials(target)) == sorted([stale, old_style])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, other, target)
    )


def test_the_file_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    atomic_write_text(tmp_path / "index.json", "{}\n")
    assert events[:2] == ["fsync", "replace"]
    assert (tmp_path / "index.json").read_text() == "{}\n"


def test_a_lock_file_admits_one_process_and_is_taken_over_from_a_gone_one(tmp_path):
    lock, busy = tmp_path / ".lock", "busy: {holder}"
    with lock_file(lock, busy):
        assert lock.read_text() == f"{os.getpid()}@{socket.gethostname()}\n"
        with pytest.raises(RuntimeError, match=f"busy: pid {os.getpid()}$"):
            with lock_file(lock, busy):
                pass
    assert not lock.exists()
    lock.write_text("123@elsewhere\n")  # cannot tell whether it runs: refused
    with pytest.raises(RuntimeError, match="busy: pid 123 on elsewhere"):
        with lock_file(lock, busy):
            pass
    lock.write_text(f"{dead_pid()}@{socket.gethostname()}\n")
    with lock_file(lock, busy):
        assert lock.read_text().startswith(f"{os.getpid()}@")
    assert not lock.exists()
