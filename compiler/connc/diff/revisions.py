"""Git plumbing for `connc diff`: a revision's connc files, read from git's objects.

A revision is read from `ls-tree` + `cat-file --batch` into memory (`Blobs`), so the user's
working tree and index are never touched and nothing of it is written out. It is held as its
work tree would be (`.git` marks the top), with the `.gitattributes` that apply to connc files,
from the top down, and read by the one reader exactly as a checkout is: its directories (a
submodule's empty one too) and symlinks are there, a symlink is never followed and a submodule
never read. Names in doubt (`repository.in_doubt`: one file on a case-insensitive file system)
are listed whatever their case and held too: the reader refuses them (CONNC016) without
reading them, as it does in a checkout. A directory of the repository's own path (`--repo`
below the work tree's top) that a revision holds as a symlink or submodule, or beside a case
variant of its name, puts the revision in doubt. What is never read is reported by the
caller (`Tree.skipped`).

A pull request controls the blobs, and git stores 200 MB of zeros in 200 KB: so no blob is
read before its size is known (`ls-tree -l`, from the objects' headers). One over the size
limit of its file is never read: it is held by its size, which the reader refuses without
asking for its bytes (CONNC006, as validate refuses it in a checkout). The others are read
once each, and all of them together are bounded (`MAX_REVISION_BYTES`). Every git process
of a diff shares one deadline.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import posixpath
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from connc import documents, process, repository
from connc.errors import UsageError
from connc.findings import printable

# Seconds for every git process of one diff together: a few listings and reads of small files.
TIMEOUT = 300.0
# What the files of one revision may hold together. 10,000 connection files are about 40 MB;
# without a bound, a pull request of 10,000 names for one 1 MiB blob of zeros (a few KB in
# git) would have 10 GB written here.
MAX_REVISION_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Revision:
    name: str | None  # None: the working tree
    commit: str | None


def _git(args: list[str], cwd: Path, error: str, deadline: process.Deadline, *,
         stdin: bytes | None = None, show_stderr: bool = False,
         limit: int = process.OUTPUT_LIMIT, spooled: bool = False) -> bytes:
    """Run git; on failure raise `error` (git's stderr only when asked: it names no contents).
    `limit`, `spooled`: its stdout's bound, and where it goes (`process.Process`)."""
    command = ["git", "--no-pager", "--literal-pathspecs", "-c", "core.quotepath=off", *args]
    env = _git_env()
    if spooled:  # its bound, RLIMIT_FSIZE, is every file's: a trace log would outgrow it
        env.update(_UNTRACED)
    try:
        done = process.Process(command, cwd=cwd, stdin=stdin, env=env, limit=limit,
                               spooled=spooled).wait(deadline.remaining(),
                                                     cancel=deadline.cancel)
    except process.Timeout:
        raise deadline.exceeded(f"{error}: git") from None
    except process.Cancelled:  # the run stopped while a revision was read in the background
        raise UsageError(f"{error}: the run was stopped") from None
    except process.TooMuchOutput as too_much:
        raise UsageError(f"{error}: {too_much.message}") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"{error} ({printable(detail[0])})" if show_stderr and detail
                         else error)
    return done.stdout


# git's trace2 logs (`trace2.normalTarget` and the others, in the system or global config of
# a runner with git telemetry) are files git appends to while it runs; these turn them off.
_UNTRACED = {"GIT_TRACE2": "0", "GIT_TRACE2_PERF": "0", "GIT_TRACE2_EVENT": "0"}


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
    prefix = _as_named(Path(os.path.abspath(repo)), top)
    return top, "" if prefix == "." else f"{prefix}/"


def _as_named(path: Path, top: Path) -> str:
    """`path` from the work tree's top as it is named: a symlink in the work tree is not
    followed. render follows it in its checkout, to whatever a revision puts there, so the
    diff reads the path itself at each revision (`_prefix_in_doubt`) — followed in the
    working tree, a pull request that makes `infra` a link to a copy elsewhere had the copy
    compared with itself, and no row."""
    for above in (path, *path.parents):
        if above.resolve() == top:  # where the work tree starts, however it was reached
            return path.relative_to(above).as_posix()
    return path.resolve().relative_to(top).as_posix()


def resolve(top: Path, revision: str, deadline: process.Deadline) -> Revision:
    """The commit a revision names; a usage error when it names none."""
    # A leading "-" would be read as an option; git has no other use for it in a revision.
    if not revision or revision.startswith("-"):
        raise UsageError(f"bad revision {printable(revision)!r}")
    out = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
               f"unknown revision {printable(revision)!r}: not a commit in {top}", deadline)
    return Revision(revision, out.decode().strip())


@dataclasses.dataclass(frozen=True)
class Tree:
    """A revision's connc files as a checkout would hold them: `root` is where the
    repository's root would be (a path that exists nowhere: every question goes to `files`),
    `skipped` the paths never read, symlinks and submodules (from that root), and why;
    `identities` what each file held is, by its object id."""

    root: Path
    files: Blobs
    skipped: dict[str, str]
    # relpath (from the root) -> object id of each file held: two of one id hold one content
    identities: dict[str, bytes]


class Blobs(repository.Files):
    """A revision's files, answered from git's objects in memory as the file system answers
    for a checkout (`repository.Files`): regular files, directories (empty ones too: a
    submodule's), symlinks (present, never followed), and a `.git` at the work tree's top. A
    blob over its file's size limit, or that the reader never opens, has its size and no
    bytes: the reader refuses it by its size and never asks for them."""

    def __init__(self, top: Path) -> None:
        # Held by their paths as text: a path is hashed as such in one step, a `Path` is not.
        self._top = str(top)
        self._blobs: dict[str, bytes] = {}  # path -> object id
        # object id -> its bytes, a view of git's answer (None: not read)
        self._data: dict[bytes, memoryview | None] = {}
        self._sizes: dict[bytes, int] = {}
        self._children: dict[str, set[str]] = {}  # directory -> the names in it
        self._links: set[str] = set()  # symlinks: present, never followed
        self._arrival: _Arrival | None = None  # objects still being read in the background
        self.directory(f"{self._top}/.git")  # the work tree's top, as a checkout's marks it

    def directory(self, path: str) -> set[str]:
        """The names in the directory `path`, which is held from now on, with its parents up
        to the top."""
        names = self._children.get(path)
        if names is None:
            names = self._children[path] = set()
            # Up to the first parent already held: a loop, since a pull request sets the depth.
            child = path
            while child != self._top:
                parent, _, name = child.rpartition("/")
                if not parent:
                    break
                held = parent in self._children
                self._children.setdefault(parent, set()).add(name)
                if held:
                    break
                child = parent
        return names

    def add(self, path: str, oid: bytes, size: int) -> None:
        self._blobs[path] = oid
        self._sizes[oid] = size
        self._data.setdefault(oid, None)
        parent, _, name = path.rpartition("/")
        # Most files are in a directory already held: one lookup (a revision is 12,000 files).
        (self._children.get(parent) or self.directory(parent)).add(name)

    def symlink(self, path: str) -> None:
        self._links.add(path)
        parent, _, name = path.rpartition("/")
        self.directory(parent).add(name)

    def fill(self, oid: bytes, data: memoryview) -> None:
        self._data[oid] = data

    def settled_data(self) -> Mapping[bytes, memoryview | None]:
        """object id -> its bytes, when they were read (None: not read)."""
        self.settle()
        return self._data

    def arrive(self, read: Callable[[], None], deadline: process.Deadline) -> None:
        """Fill objects with `read` in a thread of its own, while the caller goes on
        (validate parses `.sops.yaml` meanwhile); whatever asks for bytes still arriving
        waits for them (`settle`)."""
        self._arrival = _Arrival(read, deadline)

    def settle(self) -> None:
        if self._arrival is not None:
            self._arrival.wait()
            self._arrival = None  # before any fork: a worker finds every byte here

    def lexists(self, path: Path) -> bool:
        name = str(path)
        return name in self._blobs or name in self._children or name in self._links

    def is_symlink(self, path: Path) -> bool:
        return str(path) in self._links

    def is_file(self, path: Path) -> bool:
        return str(path) in self._blobs

    def is_dir(self, path: Path) -> bool:
        return str(path) in self._children

    def names(self, path: Path) -> list[str]:
        names = self._children.get(str(path))
        if names is None:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        return sorted(names)

    def entries(self, path: Path) -> list[tuple[str, bool]]:
        directory = str(path)
        return [(name, f"{directory}/{name}" in self._blobs) for name in self.names(path)]

    def size(self, path: Path) -> int:
        return self._sizes[self._oid(path)]

    def read(self, path: Path) -> bytes:
        oid = self._oid(path)
        data = self._data[oid]
        if data is None and self._arrival is not None:
            self.settle()
            data = self._data[oid]
        if data is None:  # over its limit: the reader refuses it by its size first
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
        return bytes(data)

    def _oid(self, path: Path) -> bytes:
        oid = self._blobs.get(str(path))
        if oid is None:
            error = errno.EISDIR if str(path) in self._children else errno.ENOENT
            raise OSError(error, os.strerror(error), str(path))
        return oid


class _Arrival:
    """A read of objects in a thread of its own, waited for once (`wait`), which raises
    whatever stopped it. It ends by itself: its git process has the run's deadline, and the
    run's interrupt kills it (`diff.run`)."""

    def __init__(self, read: Callable[[], None], deadline: process.Deadline) -> None:
        self._deadline = deadline
        self._failure: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(read,),
                                        name="connc-revision-read", daemon=True)
        self._thread.start()

    def _run(self, read: Callable[[], None]) -> None:
        try:
            read()
            self._done = True
        except BaseException as failure:  # raised in the thread that waits for it
            self._failure = failure

    def wait(self) -> None:
        # The git process ends at the deadline; the thread a moment later.
        self._thread.join(self._deadline.remaining() + _JOIN_SECONDS)
        if self._thread.is_alive():
            raise self._deadline.exceeded("reading a revision: git")
        if self._failure is not None:
            raise self._failure
        if not self._done:  # a process forked while the read went on: a bug, never a finding
            raise RuntimeError("a revision's objects were read in part")


_JOIN_SECONDS = 5.0


# Where a revision's work tree would be: a path that cannot exist (/dev/null is no directory),
# so that nothing of it could ever be found on disk by mistake.
_NOWHERE = Path("/dev/null/connc-revision")


def read_revision(top: Path, prefix: str, revision: Revision, deadline: process.Deadline,
                  previous: Tree | None = None) -> Tree:
    """The revision's connc files, read from git's objects into memory; an object `previous`
    (the other side) already holds is taken from there: one object id, one content."""
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
    entries = [(meta, _from_root(relpath, prefix), relpath) for meta, relpath in listed]
    skipped: dict[str, str] = {}
    # The repository's own directory, as a checkout may make it (a symlink lists nothing).
    skipped.update(_prefix_in_doubt(top, prefix, revision.commit, error, deadline))
    blobs: dict[bytes, list[str]] = {}  # object id -> its paths (from the top)
    sizes: dict[bytes, int] = {}
    identities: dict[str, bytes] = {}
    dest = _NOWHERE / (revision.commit or "")
    files = Blobs(dest)
    for (mode, kind, oid, size), shown, relpath in entries:
        if {"", ".", ".."} & set(relpath.split("/")):
            skipped[shown] = "not a regular file"
        elif kind in (b"tree", b"commit"):
            # A directory in a checkout (a submodule's is empty there), held as one so that
            # whatever is read of it reads as in a checkout; a submodule is never followed.
            files.directory(f"{dest}/{relpath}")
            if kind == b"commit":
                skipped[shown] = "not a regular file"
        elif mode == b"120000":
            files.symlink(f"{dest}/{relpath}")  # held as a link, never followed
            skipped[shown] = "a symlink"
        elif kind == b"blob" and size is not None:
            blobs.setdefault(oid, []).append(relpath)
            sizes[oid] = size
            identities[shown] = oid
        else:
            skipped[shown] = "not a regular file"
    root = dest / prefix if prefix else dest
    files.directory(str(root))  # a directory even when it holds nothing connc reads
    if blobs:
        _read_blobs(top, dest, prefix, blobs, sizes, files, error, deadline,
                    previous.files if previous is not None else None)
    return Tree(root, files, skipped, identities)


def _read_blobs(top: Path, dest: Path, prefix: str, blobs: dict[bytes, list[str]],
                sizes: dict[bytes, int], files: Blobs, error: str, deadline: process.Deadline,
                held: Blobs | None) -> None:
    """Each blob at its paths, by the sizes the listing gave: one over its file's limit is
    never read (held by its size); the others streamed from git, each object once (or taken
    from `held`)."""
    # At how many of its paths the reader opens each object (0: held by its size only).
    opened: dict[bytes, int] = {}
    total = 0
    for oid, paths in blobs.items():
        size = sizes[oid]
        opened[oid] = count = sum([size <= _limit(path, prefix) for path in paths])
        total += size * count
    if total > MAX_REVISION_BYTES:
        raise UsageError(f"{error}: its connc files hold {total} bytes together; connc reads "
                         f"at most {MAX_REVISION_BYTES} bytes of a revision")
    first: list[bytes] = []  # read now: what validate reads before the files (.sops.yaml)
    later: list[bytes] = []  # connection and pipeline files: read while it does
    top_of = str(dest)
    taken = held.settled_data() if held is not None else {}
    for oid, paths in blobs.items():
        for relpath in paths:
            files.add(f"{top_of}/{relpath}", oid, sizes[oid])
        data = taken.get(oid)
        if data is not None:
            files.fill(oid, data)
        elif opened[oid]:
            in_directory = all(relpath.startswith(prefix) and relpath[len(prefix):]
                               .startswith(_CONNC_DIRECTORY_PREFIXES) for relpath in paths)
            (later if in_directory else first).append(oid)
    _cat(top, first, sizes, files, error, deadline)
    if later:
        files.arrive(lambda: _cat(top, later, sizes, files, error, deadline), deadline)


def _cat(top: Path, oids: list[bytes], sizes: dict[bytes, int], files: Blobs, error: str,
         deadline: process.Deadline) -> None:
    """The objects' bytes into `files`, from one `cat-file --batch` whose answer is exactly
    as long as the listing's sizes say (its bound: git is stopped at one byte more)."""
    if oids:
        expected = sum(len(_header(oid, sizes[oid])) + sizes[oid] + 1 for oid in oids)
        out = _git(["cat-file", "--batch", "--buffer"], top, error, deadline,
                   stdin=b"".join(oid + b"\n" for oid in oids), limit=expected, spooled=True)
        for oid, data in _split_batch(out, oids, sizes, error):
            files.fill(oid, data)


def _limit(relpath: str, prefix: str) -> int:
    """The size over which the reader refuses the file (documents, gitattributes); -1 for a
    file it never opens: below a directory of connc's own files (`connections.d/old/x`), or
    in one that is none (`members.yaml/x`). Such a file is held by its size, never read."""
    if relpath == prefix + repository.SOPS_CONFIG:
        return documents.MAX_SOPS_CONFIG_BYTES
    directory = relpath[len(prefix):].rpartition("/")[0]
    if relpath.startswith(prefix) and directory not in ("", *_CONNC_DIRECTORIES):
        return -1
    return documents.MAX_FILE_BYTES


_CONNC_DIRECTORIES = (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR)
_CONNC_DIRECTORY_PREFIXES = tuple(f"{directory}/" for directory in _CONNC_DIRECTORIES)


def _header(oid: bytes, size: int) -> bytes:
    return b"%s blob %d\n" % (oid, size)


def _split_batch(out: bytes, oids: list[bytes], sizes: dict[bytes, int],
                 error: str) -> Iterator[tuple[bytes, memoryview]]:
    """Each object of `git cat-file --batch`'s answer ("<oid> <type> <size>\\n<data>\\n" per
    object), in the order asked, as a view of the answer (nothing copied); every header
    must be the one the listing's size gives, every object end with its newline, and the
    answer with the last of them."""
    view = memoryview(out)
    pos = 0
    for oid in oids:
        header = _header(oid, sizes[oid])
        start = pos + len(header)
        if out[pos:start] != header:  # "<oid> missing", another type or size: never guessed
            raise UsageError(f"{error}: an object is missing or changed while read")
        stop = start + sizes[oid]
        if out[stop:stop + 1] != b"\n":
            raise UsageError(f"{error}: git's answer is not understood")
        yield oid, view[start:stop]
        pos = stop + 1
    if pos != len(out):
        raise UsageError(f"{error}: git's answer is not understood")


def _ls_tree(top: Path, commit: str, paths: list[str], error: str,
             deadline: process.Deadline, *,
             recursive: bool) -> Iterable[tuple[tuple[bytes, bytes, bytes, int | None], str]]:
    """(mode, type, object id, size) and path from the work tree's top, of each entry listed;
    the size of a blob (none of a directory or submodule), read from its object's header:
    no blob is read to list it."""
    # -t: the directories too, of which a checkout holds every one, empty or not.
    listing = _git(["ls-tree", *(["-r", "-t"] if recursive else []), "-l", "-z", commit, "--",
                    *paths], top, error, deadline)
    for record in filter(None, listing.split(b"\0")):
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid, size = meta.split()
        if size.isdigit():
            yield (mode, kind, oid, int(size)), os.fsdecode(raw_path)
        elif size == b"-" and kind != b"blob":
            yield (mode, kind, oid, None), os.fsdecode(raw_path)
        else:  # "BAD": the object is not in the clone (a damaged or partial one)
            raise UsageError(f"{error}: an object is missing")


def _prefix_in_doubt(top: Path, prefix: str, commit: str, error: str,
                     deadline: process.Deadline) -> dict[str, str]:
    """{the path from the root: why} of the first directory of `prefix` that a checkout of
    the revision may make another: one the revision holds as a symlink, a submodule or a
    file (a checkout follows the link, fills the submodule), or beside a name that is one
    with it on a case-insensitive file system (`Infra/` merges into `infra/` on macOS and
    Windows runners). render would read a repository no review has seen."""
    parts = prefix.rstrip("/").split("/") if prefix else []
    for depth, name in enumerate(parts):
        parent = "/".join(parts[:depth])
        entries = {relpath.rsplit("/", 1)[-1]: (mode, kind) for (mode, kind, _oid, _size), relpath
                   in _ls_tree(top, commit, [f"{parent}/"] if parent else [], error, deadline,
                               recursive=False)}
        variants = sorted(other for other in entries
                          if other != name and repository.fold(other) == repository.fold(name))
        if variants:
            return {_from_root(posixpath.join(parent, variants[0]), prefix):
                    repository.NAME_IN_DOUBT}
        if name not in entries:
            return {}  # absent at this revision: so is the repository
        mode, kind = entries[name]
        if kind != b"tree":
            why = "a symlink" if mode == b"120000" else \
                "a submodule" if kind == b"commit" else "not a directory"
            return {_from_root(posixpath.join(parent, name), prefix): why}
    return {}


def _from_root(relpath: str, prefix: str) -> str:
    """A path from the work tree's top as validate names it, from the repository's root:
    `../.gitattributes` above it."""
    if relpath.startswith(prefix):
        return relpath[len(prefix):]
    return posixpath.relpath(relpath, prefix.rstrip("/"))


def _parents(prefix: str) -> list[str]:
    """The directories above the repository's root, up to the work tree's top ("")."""
    parts = prefix.rstrip("/").split("/") if prefix else []
    return ["/".join(parts[:depth]) for depth in range(len(parts))]


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
