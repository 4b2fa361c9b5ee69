"""connc.privatefiles: private from creation, no symlink followed, whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from connc import privatefiles


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_create_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        privatefiles.create(tmp_path / "a", b"secret")
        privatefiles.create(tmp_path / "b", b"x", 0o700)
    finally:
        os.umask(old)
    assert (tmp_path / "a").read_bytes() == b"secret"
    assert _mode(tmp_path / "a") == 0o600
    assert _mode(tmp_path / "b") == 0o700


def test_create_sets_the_mode_exactly_under_a_narrow_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        privatefiles.create(tmp_path / "script", b"#!/bin/sh\n", 0o700)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "script") == 0o700


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        privatefiles.create(path, b"new")
    assert path.read_bytes() == b"old"


def test_create_follows_no_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(FileExistsError):
        privatefiles.create(tmp_path / "link", b"secret")
    assert not target.exists()


def test_create_removes_what_it_began_on_failure(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        privatefiles.create(tmp_path / "partial", b"secret")
    assert list(tmp_path.iterdir()) == []


def test_replace_keeps_the_old_file_on_failure(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def fail(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        privatefiles.replace(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_replace_swaps_the_file_and_sets_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.sops.yaml"
    path.write_bytes(b"old")
    path.chmod(0o644)
    before = path.stat().st_ino
    privatefiles.replace(path, b"new", 0o640)
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o640
    assert path.stat().st_ino != before  # renamed into place, not rewritten
    privatefiles.replace(tmp_path / "fresh", b"x")
    assert _mode(tmp_path / "fresh") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sops.yaml", "fresh"]


def test_replace_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(target)
    privatefiles.replace(link, b"new")
    assert target.read_bytes() == b"keep"
    assert not link.is_symlink() and link.read_bytes() == b"new"
