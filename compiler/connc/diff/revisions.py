"""Git plumbing for `connc diff`: a revision's connc files, read from git's objects.

A revision is written from `ls-tree` + `cat-file --batch` into a temp dir, so the user's
working tree and index are never touched. It is laid out as its work tree would be (`.git`
marks the top), with the `.gitattributes` that apply to connc files, from the top down: the
temp dir is then read exactly as a checkout is. Symlinks and submodules are not written: a
revision is read as data only. Names in doubt (`repository.in_doubt`: one file on a
case-insensitive file system) are listed whatever their case, and not written, since the
temp dir's file system may be such a one. What was not written is reported by the caller.

A pull request controls the blobs, and git stores 200 MB of zeros in 200 KB: so no blob is
read before its size is known (`cat-file --batch-check`). One over the size limit of its
file is never read: it is written as a sparse file of its size, which the reader refuses
without reading it (CONNC006, as validate refuses it in a checkout). The rest is streamed
from `cat-file --batch` to the files (memory: one chunk), and all of it together is bounded
(`MAX_REVISION_BYTES`). Every git process of a diff shares one deadline.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from connc import documents, process, repository
from connc.errors import UsageError
from connc.findings import printable

# Seconds for every git process of one diff together: a few listings and reads of small files.
TIMEOUT = 300.0
# What the files of one revision may hold together. 10,000 connection files are about 40 MB;
# without a bound, a pull request of 10,000 names for one 1 MiB blob of zeros (a few KB in
# git) would have 10 GB written here.
MAX_REVISION_BYTES = 256 * 1024 * 1024
_MAX_HEADER = 1024  # "<oid> <type> <size>\n" of cat-file


@dataclasses.dataclass(frozen=True)
class Revision:
    name: str | None  # None: the working tree
    commit: str | None


def _git(args: list[str], cwd: Path, error: str, deadline: process.Deadline, *,
         stdin: bytes | None = None, show_stderr: bool = False,
         sink: Callable[[bytes], None] | None = None) -> bytes:
    """Run git; on failure raise `error` (git's stderr only when asked: it names no contents).
    `sink`: stdout goes there as it arrives, instead of being returned."""
    command = ["git", "--no-pager", "--literal-pathspecs", "-c", "core.quotepath=off", *args]
    try:
        done = process.Process(command, cwd=cwd, stdin=stdin, env=_git_env()).wait(
            deadline.remaining(), sink=sink)
    except process.Timeout:
        raise deadline.exceeded(f"{error}: git") from None
    except process.TooMuchOutput as too_much:
        raise UsageError(f"{error}: {too_much.message}") from None
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


def open_repository(repo: Path, deadline: process.Deadline) -> tuple[Path, str]:
    """The git work tree holding `repo`, and `repo`'s path inside it ("" or "dir/")."""
    if not repo.is_dir():
        raise UsageError(f"{repo} is not a directory")
    out = _git(["rev-parse", "--show-toplevel"], repo, f"{repo} is not in a git work tree",
               deadline, show_stderr=True)
    top = Path(os.fsdecode(out.rstrip(b"\n"))).resolve()
    prefix = repo.resolve().relative_to(top).as_posix()
    return top, "" if prefix == "." else f"{prefix}/"


def resolve(top: Path, revision: str, deadline: process.Deadline) -> Revision:
    """The commit a revision names; a usage error when it names none."""
    # A leading "-" would be read as an option; git has no other use for it in a revision.
    if not revision or revision.startswith("-"):
        raise UsageError(f"bad revision {printable(revision)!r}")
    out = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
               f"unknown revision {printable(revision)!r}: not a commit in {top}", deadline)
    return Revision(revision, out.decode().strip())


def write_revision(top: Path, prefix: str, revision: Revision, dest: Path,
                   deadline: process.Deadline) -> tuple[Path, dict[str, str]]:
    """Write the revision's connc files under `dest`; returns where the repository's root is
    in it, and the paths not written (from that root), and why."""
    assert revision.commit is not None
    error = f"git could not read revision {printable(revision.name or '')!r}"
    records = list(_ls_tree(top, revision.commit, [prefix] if prefix else [], error, deadline,
                            recursive=False))
    # Every top-level entry that is, or folds to, a name connc reads: `Connections.d/` too.
    top_names = [relpath.rsplit("/", 1)[-1] for _meta, relpath in records]
    wanted = [prefix + name for name in top_names
              if repository.reads("", repository.fold(name))]
    wanted += [posixpath.join(directory, repository.GITATTRIBUTES)
               for directory in _parents(prefix)]
    listed = list(_ls_tree(top, revision.commit, wanted, error, deadline, recursive=True)) \
        if wanted else []
    # Paths from the repository's root, as validate names them: `../.gitattributes` above it.
    entries = [(meta, posixpath.relpath(relpath, prefix.rstrip("/") or "."), relpath)
               for meta, relpath in listed]
    doubtful = _in_doubt(top_names, [shown for _meta, shown, _relpath in entries])
    skipped = dict.fromkeys(doubtful, repository.NAME_IN_DOUBT)
    blobs: dict[bytes, list[str]] = {}  # object id -> the paths (from the top) it is written to
    for (mode, kind, oid), shown, relpath in entries:
        if any(shown == doubt or shown.startswith(f"{doubt}/") for doubt in doubtful):
            continue
        if kind != b"blob" or mode == b"120000" or {"", ".", ".."} & set(relpath.split("/")):
            # Symlinks and submodules are not followed: a revision is read as data only.
            skipped[shown] = "a symlink" if mode == b"120000" else "not a regular file"
        else:
            blobs.setdefault(oid, []).append(relpath)
    dest.mkdir(parents=True)
    (dest / ".git").mkdir()  # the work tree's top, as the checkout's `.git` marks it
    root = dest / prefix if prefix else dest
    if blobs:
        _write_blobs(top, dest, prefix, blobs, error, deadline)
    root.mkdir(parents=True, exist_ok=True)
    return root, skipped


def _write_blobs(top: Path, dest: Path, prefix: str, blobs: dict[bytes, list[str]],
                 error: str, deadline: process.Deadline) -> None:
    """Each blob at its paths: sizes first; one over its file's limit as a sparse file of
    that size (never read); the others streamed from git to their files."""
    sizes = _sizes(top, list(blobs), error, deadline)
    total = sum(sizes[oid] for oid, paths in blobs.items() for path in paths
                if sizes[oid] <= _limit(path, prefix))
    if total > MAX_REVISION_BYTES:
        raise UsageError(f"{error}: its connc files hold {total} bytes together; connc reads "
                         f"at most {MAX_REVISION_BYTES} bytes of a revision")
    wanted: dict[bytes, list[Path]] = {}
    for oid, paths in blobs.items():
        for relpath in paths:
            target = dest / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            if sizes[oid] > _limit(relpath, prefix):
                with open(target, "wb") as file:
                    file.truncate(sizes[oid])  # a hole: the reader stats it, refuses, reads none
            else:
                wanted.setdefault(oid, []).append(target)
    if wanted:
        writer = _BatchWriter(wanted, sizes, error)
        _git(["cat-file", "--batch"], top, error, deadline,
             stdin=b"".join(oid + b"\n" for oid in wanted), sink=writer.feed)
        writer.finish()


def _limit(relpath: str, prefix: str) -> int:
    """The size over which the reader refuses the file (documents, gitattributes)."""
    if relpath == prefix + repository.SOPS_CONFIG:
        return documents.MAX_SOPS_CONFIG_BYTES
    return documents.MAX_FILE_BYTES


def _sizes(top: Path, oids: list[bytes], error: str,
           deadline: process.Deadline) -> dict[bytes, int]:
    """Each blob's size, from `cat-file --batch-check` (no blob is read)."""
    out = _git(["cat-file", "--batch-check"], top, error, deadline,
               stdin=b"".join(oid + b"\n" for oid in oids))
    sizes = {}
    for line in out.splitlines():
        fields = line.split(b" ")
        if len(fields) != 3 or fields[1] != b"blob" or not fields[2].isdigit():
            raise UsageError(f"{error}: an object is missing")  # "<oid> missing": a damaged clone
        sizes[fields[0]] = int(fields[2])
    if set(sizes) != set(oids):
        raise UsageError(f"{error}: an object is missing")
    return sizes


class _BatchWriter:
    """`git cat-file --batch` output ("<oid> <type> <size>\\n<data>\\n" per object), written
    to each object's files as it arrives: memory holds one chunk, never a blob."""

    def __init__(self, targets: dict[bytes, list[Path]], sizes: dict[bytes, int],
                 error: str) -> None:
        self._order = list(targets)
        self._targets, self._sizes, self._error = targets, sizes, error
        self._header = bytearray()
        self._files: list[BinaryIO] = []
        self._left = -1  # bytes of the current object still to come; -1: reading a header
        self._done = 0

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._left < 0:
                end = bytes(view[:_MAX_HEADER]).find(b"\n")
                if end < 0:
                    self._header += view
                    view = view[len(view):]
                    if len(self._header) > _MAX_HEADER:
                        raise UsageError(f"{self._error}: git's answer is not understood")
                    continue
                self._header += view[:end]
                view = view[end + 1:]
                self._start(bytes(self._header))
                self._header.clear()
            elif self._left > 0:
                part = view[:self._left]
                for file in self._files:
                    file.write(part)
                self._left -= len(part)
                view = view[len(part):]
            else:  # the newline after an object's data
                view = view[1:]
                self._close()

    def _start(self, header: bytes) -> None:
        fields = header.split(b" ")
        expected = self._order[self._done] if self._done < len(self._order) else None
        if expected is None or len(fields) != 3 or fields[0] != expected \
                or fields[2] != str(self._sizes[expected]).encode():
            raise UsageError(f"{self._error}: an object is missing or changed while read")
        self._files = [open(path, "wb") for path in self._targets[expected]]  # noqa: SIM115
        self._left = self._sizes[expected]

    def _close(self) -> None:
        for file in self._files:
            file.close()
        self._files, self._left = [], -1
        self._done += 1

    def finish(self) -> None:
        for file in self._files:
            file.close()
        if self._done != len(self._order):
            raise UsageError(f"{self._error}: an object is missing")


def _ls_tree(top: Path, commit: str, paths: list[str], error: str,
             deadline: process.Deadline, *,
             recursive: bool) -> Iterable[tuple[tuple[bytes, bytes, bytes], str]]:
    """(mode, type, object id) and path from the work tree's top, of each entry listed."""
    listing = _git(["ls-tree", *(["-r"] if recursive else []), "-z", commit, "--", *paths],
                   top, error, deadline)
    for record in filter(None, listing.split(b"\0")):
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid = meta.split(b" ")
        yield (mode, kind, oid), os.fsdecode(raw_path)


def _parents(prefix: str) -> list[str]:
    """The directories above the repository's root, up to the work tree's top ("")."""
    parts = prefix.rstrip("/").split("/") if prefix else []
    return ["/".join(parts[:depth]) for depth in range(len(parts))]


def _in_doubt(top_names: list[str], relpaths: list[str]) -> list[str]:
    """Names in doubt at the top and in the connc directories, as `validate` finds them."""
    doubtful = list(repository.in_doubt("", top_names))
    for directory in (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR):
        names = {relpath.split("/")[1] for relpath in relpaths
                 if relpath.startswith(f"{directory}/")}
        doubtful += repository.in_doubt(directory, names)
    return doubtful
@dataclasses.dataclass(frozen=True)
class CommitEmails:
    """A commit and the emails it records for its author and its committer (as written, no
    .mailmap applied)."""

    sha: str
    author: str
    committer: str


def shallow(top: Path, deadline: process.Deadline) -> bool:
    """Whether the clone is shallow: its history may stop short of a commit it names."""
    out = _git(["rev-parse", "--is-shallow-repository"], top, "git could not read the clone",
               deadline)
    return out.strip() == b"true"


def commits_between(top: Path, base: str, head: str, limit: int,
                    deadline: process.Deadline) -> list[CommitEmails] | None:
    """The commits HEAD has and BASE has not (`git rev-list BASE..HEAD`), oldest first; None
    when there are more than `limit`. In a shallow clone (`shallow`) the list can leave out
    commits below its cut."""
    error = "git could not list the commits between BASE and HEAD"
    out = _git(["-c", "log.showSignature=false", "log", "--reverse", "-z",
                f"--max-count={limit + 1}", "--format=%H%x00%ae%x00%ce", f"{base}..{head}",
                "--"], top, error, deadline)
    fields = out.split(b"\0")
    if fields[-1] == b"":
        fields.pop()
    if len(fields) % 3:
        raise UsageError(f"{error}: git's answer is not the list asked for")
    # --max-count applies before --reverse: limit + 1 commits means there are more.
    if len(fields) > 3 * limit:
        return None
    return [CommitEmails(*(os.fsdecode(field) for field in fields[i:i + 3]))
            for i in range(0, len(fields), 3)]
