"""A bundle directory that appears whole or not at all, and the one test of what is a bundle.

Files are collected in memory, written into a fresh directory beside OUT (same filesystem),
and that directory is renamed into place. Any failure, including an interrupt, removes it.
A SIGKILL or a power loss cannot: the staging directory (or the previous bundle, mid-way
through being replaced) stays beside OUT, and the next render or `connc clean` of OUT removes
it (`leftovers`, `inspect`).

Nothing is ever deleted on the strength of a name or a `manifest.json` alone, since a pull
request can add both to a checkout: `inspect` accepts only a directory that has exactly a
bundle's layout and modes, and `delete` removes only the files its manifest lists.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

from connc import privatefiles
from connc.errors import RenderError, UsageError

MARKER = "connc-bundle"
MANIFEST = "manifest.json"
FILE_MODE = 0o600
EXEC_MODE = 0o700
DIR_MODE = 0o700
_MANIFEST_MAX_BYTES = 1024 * 1024
# A GitHub token's state (`render.github_tokens`), and the files the refresh helper adds
# beside one (`render.refresh`): its lock, and the state it is replacing.
_TOKEN_STATE = re.compile(r"github/[^/]+\.json")
_HELPER_SUFFIXES = (".lock", ".json.new")


def token_state(connection_id: str) -> str:
    """Where a bundle keeps a GitHub token's state."""
    return f"github/{connection_id}.json"
# tempfile.mkdtemp's names: the prefix, then 8 characters of this alphabet.
_RANDOM = "[a-z0-9_]{8}"


class BundleFiles:
    """relative path -> (content, mode), filled by the writers."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}

    def add(self, relpath: str, content: bytes | str, *, executable: bool = False) -> None:
        if relpath in self.files:
            raise RenderError(f"two writers produced {relpath}")  # a bug, never user input
        data = content.encode() if isinstance(content, str) else content
        self.files[relpath] = (data, EXEC_MODE if executable else FILE_MODE)


class NotABundle(RenderError):
    """A directory that is not exactly a connc bundle; the message says why."""


@dataclasses.dataclass(frozen=True)
class Listing:
    """What `delete` may remove from a directory `inspect` accepted."""

    files: tuple[str, ...]  # present files: those the manifest lists, and the helper's
    dirs: tuple[str, ...]  # subdirectories, deepest first

    @property
    def token_states(self) -> list[str]:
        """The GitHub tokens' state files (`render.github_tokens`), and a refresh helper's
        unfinished replacement of one (which holds a token too)."""
        return [f for f in self.files if _TOKEN_STATE.fullmatch(f.removesuffix(".new"))]


def inspect(directory: Path, *, leftover: bool = False) -> Listing:
    """What `directory` holds, once it is shown to be exactly a connc bundle; else NotABundle.

    A bundle is a real directory (not a symlink), 0700 and ours; a `manifest.json` of ours
    (0600) whose `files` are plain relative paths; nothing else in it but those files (some may
    be missing) and the refresh helper's lock and temporary file beside a token's state; every
    file regular, ours, 0600 or 0700; every subdirectory 0700, ours, and on the way to a
    listed file. `leftover`: also accept what a render killed before its manifest was complete
    leaves (an empty directory, or one holding only `manifest.json`): it holds no secret,
    since the manifest is written first.
    """
    _check_private(directory, "", os.lstat(directory), DIR_MODE, is_dir=True)
    names = os.listdir(directory)
    if leftover and names in ([], [MANIFEST]):
        if names:
            _check_private(directory, MANIFEST, os.lstat(directory / MANIFEST), FILE_MODE)
        return Listing(tuple(names), ())
    listed = _listed_files(directory)
    allowed = set(listed) | {f.removesuffix(".json") + suffix for f in listed
                             if _TOKEN_STATE.fullmatch(f) for suffix in _HELPER_SUFFIXES}
    parents = {str(p) for f in listed for p in PurePosixPath(f).parents if str(p) != "."}
    files: list[str] = []
    dirs: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(directory / rel) as entries:
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    if sub not in parents:
                        raise NotABundle(f"{_shown(sub)}/ holds no file its manifest lists")
                    _check_private(directory, sub, info, DIR_MODE, is_dir=True)
                    dirs.append(sub)
                    pending.append(sub)
                elif stat.S_ISREG(info.st_mode):
                    if sub not in allowed:
                        raise NotABundle(f"{_shown(sub)} is not listed in its {MANIFEST}")
                    _check_private(directory, sub, info, FILE_MODE, EXEC_MODE)
                    files.append(sub)
                else:
                    raise NotABundle(f"{_shown(sub)} is a symlink or a special file")
    dirs.sort(key=lambda d: d.count("/"), reverse=True)
    return Listing(tuple(sorted(files)), tuple(dirs))


def _check_private(directory: Path, rel: str, info: os.stat_result, *modes: int,
                   is_dir: bool = False) -> None:
    what = _shown(rel or str(directory))
    if stat.S_ISLNK(info.st_mode):
        raise NotABundle(f"{what} is a symlink")
    if not (stat.S_ISDIR if is_dir else stat.S_ISREG)(info.st_mode):
        raise NotABundle(f"{what} is not a {'directory' if is_dir else 'regular file'}")
    if info.st_uid != os.geteuid():
        raise NotABundle(f"{what} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) not in modes:
        raise NotABundle(f"{what} has mode {stat.S_IMODE(info.st_mode):04o}, which connc never "
                         f"gives")


def _listed_files(directory: Path) -> list[str]:
    path = directory / MANIFEST
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise NotABundle(f"it has no {MANIFEST}") from None
    _check_private(directory, MANIFEST, info, FILE_MODE)
    if info.st_size > _MANIFEST_MAX_BYTES:
        raise NotABundle(f"its {MANIFEST} is larger than any connc writes")
    try:
        manifest = json.loads(privatefiles.read(path, _MANIFEST_MAX_BYTES))
    except (OSError, ValueError):
        raise NotABundle(f"its {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MARKER:
        raise NotABundle(f"its {MANIFEST} is not a connc bundle's")
    files = manifest.get("files")
    if not isinstance(files, list) or MANIFEST not in files or not all(
            isinstance(f, str) and _plain_relpath(f) for f in files):
        raise NotABundle(f"its {MANIFEST} does not list the bundle's files as connc does")
    return [str(f) for f in files]


def _plain_relpath(text: str) -> bool:
    path = PurePosixPath(text)
    return (str(path) == text and not path.is_absolute() and text.isprintable()
            and all(part not in ("", ".", "..") for part in path.parts))


def _shown(text: str) -> str:
    from connc.findings import printable

    return printable(text, 200)


def is_previous_bundle(out: Path) -> bool:
    try:
        inspect(out)
    except (NotABundle, OSError):
        return False
    return True


def check_target(out: Path) -> None:
    """Refuse an OUT that is neither absent, empty, nor a previous bundle; and one that cannot
    be made (under a file, a name too long, a file system that refuses it): an environment
    error, exit 2, found before anything is decrypted or minted."""
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        _check_creatable(out)
        return
    except OSError as error:
        raise _cannot_make(out, error) from None
    if not stat.S_ISDIR(info.st_mode):  # a symlink too: the bundle must be where OUT says
        raise RenderError(f"{out} exists and is not a directory; choose another --out")
    try:
        empty = not any(out.iterdir())
    except OSError as error:
        raise _cannot_make(out, error) from None
    if empty:
        return
    try:
        inspect(out)
    except NotABundle as why:
        raise RenderError(f"{out} exists and is not empty nor a previous connc bundle "
                          f"({why.message}); refusing to replace it") from None


def _check_creatable(out: Path) -> None:
    """Make OUT's parent and a staging directory in it, as `commit` will (then remove the
    staging directory): only the file system knows whether it allows them (/proc, a name
    longer than it takes, a read-only mount; root passes every permission test)."""
    import tempfile

    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.connc-", dir=out.parent))
    except OSError as error:
        raise _cannot_make(out, error) from None


def _cannot_make(out: Path, error: OSError) -> UsageError:
    return UsageError(f"the bundle cannot be made at {_shown(str(out))}: {error.strerror}; "
                      f"choose another --out")


def commit(out: Path, files: BundleFiles) -> Path | None:
    """Write every file into a temp dir beside `out`, then rename it into place.

    Returns the previous bundle when one was replaced: renamed to `.OUT.connc-old-*`, it still
    holds its tokens, which the caller revokes before deleting it (`clean.discard`). A file
    system that refuses (full, read-only, ...) is an environment error: exit 2.
    """
    import tempfile

    check_target(out)
    staging: Path | None = None
    lock = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.connc-", dir=out.parent))
        # Held until the rename: the sweep of another render or clean of OUT skips a staging
        # directory that is locked, so it never deletes one being written. A SIGKILL drops it.
        lock = claim(staging)
        os.chmod(staging, DIR_MODE)
        # The manifest first: whatever a SIGKILL leaves here, if it holds a secret it also
        # holds the list of files by which the next render or clean recognises it.
        order = sorted(files.files, key=lambda relpath: (relpath != MANIFEST, relpath))
        for relpath in order:
            content, mode = files.files[relpath]
            _write(staging, relpath, content, mode)
        return _swap_into_place(staging, out)
    except OSError as exc:
        raise UsageError(f"cannot write the bundle in {_shown(str(out.parent))}: "
                         f"{exc.strerror}") from None
    finally:
        if staging is not None and staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)  # ours, made just now
        if lock is not None:
            os.close(lock)


def _write(staging: Path, relpath: str, content: bytes, mode: int) -> None:
    path = staging / relpath
    for parent in reversed(path.relative_to(staging).parents[:-1]):
        (staging / parent).mkdir(mode=DIR_MODE, exist_ok=True)
    privatefiles.create(path, content, mode)


def _swap_into_place(staging: Path, out: Path) -> Path | None:
    if not out.exists():
        os.rename(staging, out)
        return None
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(staging, out)
        return None
    import tempfile

    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.connc-old-", dir=out.parent))
    retired.rmdir()
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(retired, out)  # put the previous bundle back
        raise
    return retired


def leftovers(out: Path) -> list[Path]:
    """Directories beside `out` named as a render of `out` names its staging directory or
    the previous bundle it is replacing. The name proves nothing: `inspect` them."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.connc-(?:old-)?{_RANDOM}")
    try:
        with os.scandir(out.parent) as entries:
            return sorted(out.parent / e.name for e in entries if pattern.fullmatch(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def claim(directory: Path) -> int | None:
    """An open, exclusively locked descriptor of `directory`, or None if a running render
    holds its lock. Raises NotABundle for a symlink or a non-directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotABundle(f"{directory} is a symlink or not a directory") from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        pass  # a filesystem without locks: no concurrent render to protect from anyway
    return fd


def delete(directory: Path, listing: Listing) -> None:
    """Remove what `inspect` listed, then the directories it named, then `directory`.

    File by file, through descriptors opened without following symlinks: a directory that
    changed since `inspect` (a file added, a subdirectory swapped for a symlink) makes an
    rmdir fail; nothing outside the bundle is ever reached.
    """
    tree: _Tree = {}
    for rel in listing.dirs:
        _node(tree, rel.split("/"))
    for rel in listing.files:
        *parents, name = rel.split("/")
        _node(tree, parents)[name] = None
    top = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _delete_in(top, tree)
    finally:
        os.close(top)
    try:
        os.rmdir(directory)
    except OSError as error:
        if error.errno == errno.ENOTEMPTY:
            raise NotABundle(f"{directory} was left: it holds files connc did not "
                             f"write") from None
        raise


_Tree = dict[str, "_Tree | None"]  # a directory: name -> subdirectory, or None for a file


def _node(tree: _Tree, parts: list[str]) -> _Tree:
    for part in parts:
        child = tree.setdefault(part, {})
        assert child is not None  # inspect lists no path both as a file and a directory
        tree = child
    return tree


def _delete_in(fd: int, tree: _Tree) -> None:
    for name, subtree in tree.items():
        try:
            if subtree is None:
                os.unlink(name, dir_fd=fd)
                continue
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                _delete_in(child, subtree)
            finally:
                os.close(child)
            os.rmdir(name, dir_fd=fd)
        except FileNotFoundError:
            continue  # a file a killed render never got to write


def private_parent(pipeline_id: str) -> Path:
    """A new directory in the system temp dir, 0700 from its creation (mkdtemp), for the
    default OUT. It is removed at exit if no bundle went into it (a refused render)."""
    import atexit
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix=f"connc-{pipeline_id}-"))
    atexit.register(_rmdir_quietly, parent)
    return parent


def remove_private_parent(out: Path) -> None:
    """After `connc clean`: the directory `private_parent` made for OUT, if it is empty."""
    parent = out.parent
    if not re.fullmatch(rf"connc-{re.escape(out.name)}-{_RANDOM}", parent.name):
        return
    try:
        info = os.lstat(parent)
    except OSError:
        return
    if (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and stat.S_IMODE(info.st_mode) == DIR_MODE):
        _rmdir_quietly(parent)  # an rmdir: never anything it holds


def _rmdir_quietly(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
