"""render.bundle: the bundle appears whole or not at all, with private modes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from connc.errors import ExitCode, RenderError, UsageError
from connc.render import bundle
from connc.render.bundle import MANIFEST, MARKER, BundleFiles, commit


def _files(marker: str) -> BundleFiles:
    files = BundleFiles()
    files.add("env", f"export X={marker}\n")
    files.add("git/askpass", "#!/bin/sh\n", executable=True)
    files.add("kube/config", "apiVersion: v1\n")
    listed = sorted([*files.files, MANIFEST])
    files.add(MANIFEST, json.dumps({"kind": MARKER, "marker": marker, "files": listed}))
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
    with pytest.raises(UsageError, match="No space left on device") as refused:
        commit(out, _files("new"))
    assert refused.value.exit_code == ExitCode.USAGE  # the environment's fault, not the files'

    assert not out.exists()
    assert _leftovers(out) == []


def test_a_full_disk_keeps_the_previous_bundle(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    commit(out, _files("old"))
    monkeypatch.setattr(bundle.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    with pytest.raises(UsageError):
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


def test_the_manifest_is_written_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A SIGKILL can stop a render after any file: whichever secret made it to disk, the list
    # of files by which the next render or clean recognises the staging directory is there.
    written: list[str] = []
    real_write = bundle._write

    def recording(staging: Path, relpath: str, content: bytes, mode: int) -> None:
        written.append(relpath)
        real_write(staging, relpath, content, mode)

    monkeypatch.setattr(bundle, "_write", recording)
    commit(tmp_path / "out", _files("m"))
    assert written[0] == MANIFEST and sorted(written) == sorted(_files("m").files)


def test_replacing_returns_the_previous_bundle_still_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert commit(out, _files("old")) is None
    previous = commit(out, _files("new"))
    assert previous is not None and previous.name.startswith(".out.connc-old-")
    assert json.loads((previous / MANIFEST).read_text())["marker"] == "old"
    assert bundle.leftovers(out) == [previous]  # found by the next render or clean if killed
    bundle.delete(previous, bundle.inspect(previous))
    assert _leftovers(out) == []
    assert json.loads((out / MANIFEST).read_text())["marker"] == "new"


def test_delete_removes_only_what_the_manifest_lists(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit(out, _files("m"))
    (tmp_path / "outside").write_text("keep\n")
    listing = bundle.inspect(out)
    # Swapped after the check: a file added, a directory replaced by a symlink out of it.
    (out / "kube/config").unlink()
    (out / "kube").rmdir()
    (out / "kube").symlink_to(tmp_path)
    with pytest.raises(OSError):
        bundle.delete(out, listing)
    assert (tmp_path / "outside").read_text() == "keep\n"


def test_the_refresh_helpers_files_are_part_of_a_bundle(tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = _files("m")
    files.files.pop(MANIFEST)
    files.add("github/gh.json", "{}")
    files.add(MANIFEST, json.dumps({"kind": MARKER, "files": sorted([*files.files, MANIFEST])}))
    commit(out, files)
    for name in ("github/gh.lock", "github/gh.json.new"):
        fd = os.open(out / name, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    listing = bundle.inspect(out)
    assert listing.token_states == ["github/gh.json", "github/gh.json.new"]
    bundle.delete(out, listing)
    assert not out.exists()


def test_a_staging_directory_a_running_render_holds_is_not_swept(tmp_path: Path) -> None:
    from connc.render.clean import sweep

    out = tmp_path / "out"
    staging = tmp_path / ".out.connc-running0"
    staging.mkdir(mode=0o700)
    lock = bundle.claim(staging)  # what commit holds from mkdtemp to the rename
    assert lock is not None
    try:
        assert list(sweep(out, quick=True)) == []
        assert staging.is_dir()
    finally:
        os.close(lock)
    assert list(sweep(out, quick=True)) == [
        f"connc: removed {staging} (left by a render that did not finish)"]
    assert not staging.exists()


@pytest.mark.parametrize("change", ["group-readable", "foreign-file", "not-listed-dir",
                                    "no-manifest"])
def test_inspect_refuses_anything_but_a_bundle(tmp_path: Path, change: str) -> None:
    out = tmp_path / "out"
    commit(out, _files("m"))
    if change == "group-readable":
        os.chmod(out, 0o750)
    elif change == "foreign-file":
        os.chown(out / "env", 12345, -1) if os.geteuid() == 0 else os.chmod(out / "env", 0o640)
    elif change == "not-listed-dir":
        (out / "extra").mkdir(mode=0o700)
    else:
        (out / MANIFEST).unlink()
    with pytest.raises(bundle.NotABundle):
        bundle.inspect(out)
    assert not bundle.is_previous_bundle(out)
    with pytest.raises(RenderError, match="not empty nor a previous connc bundle"):
        bundle.check_target(out)
