"""Git plumbing for `connc diff`: a revision's connc files, read from git's objects.

A revision is written from `ls-tree` + `cat-file --batch` into a temp dir, so the user's
working tree and index are never touched. Symlinks and submodules are not written: a
revision is read as data only, and what was not written is reported by the caller.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from connc import process, repository
from connc.errors import UsageError
from connc.findings import printable

_FILES = (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR, repository.MEMBERS_FILE,
          repository.CONFIG_FILE, repository.SOPS_CONFIG)
_GIT_TIMEOUT_SECONDS = 120


@dataclasses.dataclass(frozen=True)
class Revision:
    name: str | None  # None: the working tree
    commit: str | None


def _git(args: list[str], cwd: Path, error: str, *, stdin: bytes | None = None,
         show_stderr: bool = False) -> bytes:
    """Run git; on failure raise `error` (git's stderr only when asked: it names no contents)."""
    command = ["git", "--no-pager", "--literal-pathspecs", "-c", "core.quotepath=off", *args]
    try:
        done = process.run(command, cwd=cwd, stdin=stdin, env=_git_env(),
                           timeout=_GIT_TIMEOUT_SECONDS)
    except process.Timeout:
        raise UsageError(f"{error}: git did not finish within {_GIT_TIMEOUT_SECONDS}s") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"{error} ({printable(detail[0])})" if show_stderr and detail
                         else error)
    return done.stdout


def _git_env() -> dict[str, str]:
    # A hook (pre-commit, `git rebase --exec`) exports GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE
    # for its own repository; they must not redirect the repository --repo names. The user's
    # config (safe.directory, for one) still applies.
    kept = ("GIT_EXEC_PATH", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
            "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") or k.startswith(kept)}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat", LC_ALL="C")
    return env


def open_repository(repo: Path) -> tuple[Path, str]:
    """The git work tree holding `repo`, and `repo`'s path inside it ("" or "dir/")."""
    if not repo.is_dir():
        raise UsageError(f"{repo} is not a directory")
    out = _git(["rev-parse", "--show-toplevel"], repo, f"{repo} is not in a git work tree",
               show_stderr=True)
    top = Path(os.fsdecode(out.rstrip(b"\n"))).resolve()
    prefix = repo.resolve().relative_to(top).as_posix()
    return top, "" if prefix == "." else f"{prefix}/"


def resolve(top: Path, revision: str) -> Revision:
    """The commit a revision names; a usage error when it names none."""
    # A leading "-" would be read as an option; git has no other use for it in a revision.
    if not revision or revision.startswith("-"):
        raise UsageError(f"bad revision {printable(revision)!r}")
    out = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
               f"unknown revision {printable(revision)!r}: not a commit in {top}")
    return Revision(revision, out.decode().strip())


def write_revision(top: Path, prefix: str, revision: Revision, dest: Path) -> dict[str, str]:
    """Write the revision's connc files into `dest`; returns the paths not written, and why."""
    assert revision.commit is not None
    error = f"git could not read revision {printable(revision.name or '')!r}"
    listing = _git(["ls-tree", "-r", "-z", revision.commit, "--",
                    *(prefix + name for name in _FILES)], top, error)
    blobs, skipped = [], {}
    for record in filter(None, listing.split(b"\0")):
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid = meta.split(b" ")
        relpath = os.fsdecode(raw_path)[len(prefix):]
        parts = relpath.split("/")
        if kind != b"blob" or mode == b"120000" or {"", ".", ".."} & set(parts):
            # Symlinks and submodules are not followed: a revision is read as data only.
            skipped[relpath] = "a symlink" if mode == b"120000" else "not a regular file"
        else:
            blobs.append((relpath, oid))
    dest.mkdir(parents=True)
    if blobs:
        contents = _git(["cat-file", "--batch"], top, error,
                        stdin=b"".join(oid + b"\n" for _, oid in blobs))
        for (relpath, _oid), data in zip(blobs, _batch_contents(contents, error), strict=True):
            target = dest / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return skipped


def _batch_contents(out: bytes, error: str) -> Iterable[bytes]:
    """The objects of `git cat-file --batch` output: "<oid> <type> <size>\\n<data>\\n" each."""
    position = 0
    while position < len(out):
        header_end = out.index(b"\n", position)
        header = out[position:header_end].split(b" ")
        if len(header) != 3:  # "<oid> missing": a damaged or incomplete clone
            raise UsageError(f"{error}: an object is missing")
        size = int(header[2])
        yield out[header_end + 1:header_end + 1 + size]
        position = header_end + 1 + size + 1
