"""Atomic writes: the target appears complete or not at all; an old target survives failures."""

from __future__ import annotations

import stat

import pytest

from helpers.files import atomic_path, atomic_write_text


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
