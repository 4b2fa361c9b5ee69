"""Git plumbing for `connc diff`: a revision's connc files, read from git's objects.

A revision is written from `ls-tree` + `cat-file --batch` into a temp dir, so the user's
working tree and index are never touched. It is laid out as its work tree would be (`.git`
marks the top), with the `.gitattributes` that apply to connc files, from the top down: the
temp dir is then read exactly as a checkout is. Symlinks and submodules are not written: a
revision is read as data only. Names in doubt (`repository.in_doubt`: one file on a
case-insensitive file system) are listed whatever their case, and not written, since the
temp dir's file system may be such a one. What was not written is reported by the caller.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

from connc import process, repository
from connc.errors import UsageError
from connc.findings import printable

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


def write_revision(top: Path, prefix: str, revision: Revision,
                   dest: Path) -> tuple[Path, dict[str, str]]:
    """Write the revision's connc files under `dest`; returns where the repository's root is
    in it, and the paths not written (from that root), and why."""
    assert revision.commit is not None
    error = f"git could not read revision {printable(revision.name or '')!r}"
    records = list(_ls_tree(top, revision.commit, [prefix] if prefix else [], error,
                            recursive=False))
    # Every top-level entry that is, or folds to, a name connc reads: `Connections.d/` too.
    top_names = [relpath.rsplit("/", 1)[-1] for _meta, relpath in records]
    wanted = [prefix + name for name in top_names
              if repository.reads("", repository.fold(name))]
    wanted += [posixpath.join(directory, repository.GITATTRIBUTES)
               for directory in _parents(prefix)]
    listed = list(_ls_tree(top, revision.commit, wanted, error, recursive=True)) if wanted else []
    # Paths from the repository's root, as validate names them: `../.gitattributes` above it.
    entries = [(meta, posixpath.relpath(relpath, prefix.rstrip("/") or "."), relpath)
               for meta, relpath in listed]
    doubtful = _in_doubt(top_names, [shown for _meta, shown, _relpath in entries])
    skipped = dict.fromkeys(doubtful, repository.NAME_IN_DOUBT)
    blobs = []
    for (mode, kind, oid), shown, relpath in entries:
        if any(shown == doubt or shown.startswith(f"{doubt}/") for doubt in doubtful):
            continue
        if kind != b"blob" or mode == b"120000" or {"", ".", ".."} & set(relpath.split("/")):
            # Symlinks and submodules are not followed: a revision is read as data only.
            skipped[shown] = "a symlink" if mode == b"120000" else "not a regular file"
        else:
            blobs.append((relpath, oid))
    dest.mkdir(parents=True)
    (dest / ".git").mkdir()  # the work tree's top, as the checkout's `.git` marks it
    root = dest / prefix if prefix else dest
    if blobs:
        contents = _git(["cat-file", "--batch"], top, error,
                        stdin=b"".join(oid + b"\n" for _, oid in blobs))
        for (relpath, _oid), data in zip(blobs, _batch_contents(contents, error), strict=True):
            target = dest / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root, skipped


def _ls_tree(top: Path, commit: str, paths: list[str], error: str, *,
             recursive: bool) -> Iterable[tuple[tuple[bytes, bytes, bytes], str]]:
    """(mode, type, object id) and path from the work tree's top, of each entry listed."""
    listing = _git(["ls-tree", *(["-r"] if recursive else []), "-z", commit, "--", *paths],
                   top, error)
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


@dataclasses.dataclass(frozen=True)
class CommitEmails:
    """A commit and the emails it records for its author and its committer (as written, no
    .mailmap applied)."""

    sha: str
    author: str
    committer: str


def shallow(top: Path) -> bool:
    """Whether the clone is shallow: its history may stop short of a commit it names."""
    out = _git(["rev-parse", "--is-shallow-repository"], top, "git could not read the clone")
    return out.strip() == b"true"


def commits_between(top: Path, base: str, head: str, limit: int) -> list[CommitEmails] | None:
    """The commits HEAD has and BASE has not (`git rev-list BASE..HEAD`), oldest first; None
    when there are more than `limit`. In a shallow clone (`shallow`) the list can leave out
    commits below its cut."""
    error = "git could not list the commits between BASE and HEAD"
    out = _git(["-c", "log.showSignature=false", "log", "--reverse", "-z",
                f"--max-count={limit + 1}", "--format=%H%x00%ae%x00%ce", f"{base}..{head}",
                "--"], top, error)
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
