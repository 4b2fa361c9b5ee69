"""A bundle directory that appears whole or not at all.

Files are collected in memory, written into a fresh directory beside OUT (same filesystem),
and that directory is renamed into place. Any failure, including an interrupt, removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from connc.errors import RenderError

MARKER = "connc-bundle"
MANIFEST = "manifest.json"
FILE_MODE = 0o600
EXEC_MODE = 0o700
DIR_MODE = 0o700


class BundleFiles:
    """relative path -> (content, mode), filled by the writers."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}

    def add(self, relpath: str, content: bytes | str, *, executable: bool = False) -> None:
        if relpath in self.files:
            raise RenderError(f"two writers produced {relpath}")  # a bug, never user input
        data = content.encode() if isinstance(content, str) else content
        self.files[relpath] = (data, EXEC_MODE if executable else FILE_MODE)


def is_previous_bundle(out: Path) -> bool:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == MARKER


def check_target(out: Path) -> None:
    """Refuse an OUT that is neither absent, empty, nor a previous bundle."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RenderError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not is_previous_bundle(out):
        raise RenderError(f"{out} exists and is not empty nor a previous connc bundle; "
                          f"refusing to replace it")


def commit(out: Path, files: BundleFiles) -> None:
    """Write every file into a temp dir beside `out`, then rename it into place."""
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.connc-", dir=out.parent))
    try:
        os.chmod(staging, DIR_MODE)
        for relpath, (content, mode) in sorted(files.files.items()):
            _write(staging, relpath, content, mode)
        _swap_into_place(staging, out)
    except OSError as exc:
        raise RenderError(f"cannot write the bundle in {out.parent}: {exc.strerror}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write(staging: Path, relpath: str, content: bytes, mode: int) -> None:
    path = staging / relpath
    for parent in reversed(path.relative_to(staging).parents[:-1]):
        (staging / parent).mkdir(mode=DIR_MODE, exist_ok=True)
    # O_EXCL + mode at creation: the file is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)  # umask may have narrowed it further; set exactly


def _swap_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(staging, out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.connc-old-", dir=out.parent))
    retired.rmdir()
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(retired, out)  # put the previous bundle back
        raise
    shutil.rmtree(retired, ignore_errors=True)


def remove(out: Path) -> None:
    """`connc clean`: remove a bundle, refusing anything that is not one."""
    if not out.exists():
        return
    if not is_previous_bundle(out):
        raise RenderError(f"{out} is not a connc bundle (no {MANIFEST} of ours); not removing it")
    shutil.rmtree(out)
