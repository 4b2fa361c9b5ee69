"""render.bundle: the bundle appears whole or not at all, with private modes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from connc.errors import RenderError
from connc.render import bundle
from connc.render.bundle import MANIFEST, MARKER, BundleFiles, commit


def _files(marker: str) -> BundleFiles:
    files = BundleFiles()
    files.add("env", f"export X={marker}\n")
    files.add("git/askpass", "#!/bin/sh\n", executable=True)
    files.add("kube/config", "apiVersion: v1\n")
    files.add(MANIFEST, json.dumps({"kind": MARKER, "marker": marker}))
    return files


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_a_full_disk_leaves_no_bundle_and_no_staging(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_disk(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the third file does not fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(bundle.os, "fsync", full_disk)
    with pytest.raises(RenderError, match="No space left on device"):
        commit(out, _files("new"))
    assert not out.exists()
    assert _leftovers(out) == []


def test_a_full_disk_keeps_the_previous_bundle(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    commit(out, _files("old"))
    monkeypatch.setattr(bundle.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    with pytest.raises(RenderError):
        commit(out, _files("new"))
    assert json.loads((out / MANIFEST).read_text())["marker"] == "old"
    assert _leftovers(out) == []


def test_an_interrupt_while_writing_leaves_no_staging(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        commit(out, _files("new"))
    assert not out.exists()
    assert _leftovers(out) == []


def test_modes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit(out, _files("m"))
    assert out.stat().st_mode & 0o777 == 0o700
    assert (out / "git").stat().st_mode & 0o777 == 0o700
    assert (out / "env").stat().st_mode & 0o777 == 0o600
    assert (out / "git/askpass").stat().st_mode & 0o777 == 0o700
