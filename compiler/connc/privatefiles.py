"""Files that may hold a secret, written (and read back) the one way connc does it.

- private from the first byte: created with their mode (0600 unless said), never widened by a
  umask and never briefly readable by others; the mode then set exactly;
- never through a symlink (O_NOFOLLOW), so a link planted where the file goes is refused,
  not followed to wherever it points;
- durable before they count: flushed and fsync'd before they are renamed into place;
- whole or not at all: `create` removes what it began when it fails; `replace` writes a
  temporary file beside the target and renames it over the target, so a reader sees the old
  file or the new one, and a failure leaves the old one as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600


def create(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """A new file (O_EXCL: FileExistsError if anything, a symlink included, is there)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        _fill(descriptor, data)
        os.chmod(path, mode)  # a umask may have narrowed it: set exactly
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def replace(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """`path` replaced by a file holding `data`, atomically (or created if missing)."""
    # mkstemp: O_EXCL | O_NOFOLLOW, mode 0600, a name no one else can have taken.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        _fill(descriptor, data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of such a file, never through a symlink."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read(limit)


def _fill(descriptor: int, data: bytes) -> None:
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
