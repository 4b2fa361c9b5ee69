"""A connection repository: where it keeps its files, which of them connc reads, what an id
is, and the in-memory model of each file that the checks, `access` and `diff` share.

No command reads a file outside this layout (README.md, Guarantees): every path comes from
`connection_path` / `pipeline_path` of a checked id, from `list_files`, or is one of the
top-level files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import unicodedata
from collections.abc import Collection
from pathlib import Path

from connc.errors import UsageError
from connc.findings import Finding, finding, printable, suggest

CONNECTIONS_DIR = "connections.d"
PIPELINES_DIR = "pipelines.d"
MEMBERS_FILE = "members.yaml"
CONFIG_FILE = "connc.yaml"
SOPS_CONFIG = ".sops.yaml"
GITATTRIBUTES = ".gitattributes"
CONNECTION_SUFFIX = ".sops.yaml"
PIPELINE_SUFFIX = ".yaml"
# The top-level files connc reads, and with its two directories, everything it reads.
TOP_FILES = (MEMBERS_FILE, CONFIG_FILE, SOPS_CONFIG)
LAYOUT = (CONNECTIONS_DIR, PIPELINES_DIR, *TOP_FILES)
# The file name suffix of each kind that lives one file per id.
SUFFIXES = {"Connection": CONNECTION_SUFFIX, "Pipeline": PIPELINE_SUFFIX}

ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_ID = re.compile(ID_PATTERN)


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def check_id(value: str, what: str = "id") -> str:
    """An id given on the command line, or a usage error (exit 2) before anything is read."""
    if not is_id(value):
        raise UsageError(f"{what} {printable(value)!r} is not valid: an id is 1-63 lowercase "
                         f"letters, digits and dashes, starting and ending with a letter or digit")
    return value


def stem(relpath: str, suffix: str) -> str:
    name = relpath.rsplit("/", 1)[-1]
    return name.removesuffix(suffix)


def connection_path(connection_id: str) -> str:
    """The file of a connection: only ever for an id, so never a path out of the layout."""
    return f"{CONNECTIONS_DIR}/{check_id(connection_id, 'connection')}{CONNECTION_SUFFIX}"


def pipeline_path(pipeline_id: str) -> str:
    return f"{PIPELINES_DIR}/{check_id(pipeline_id, 'pipeline')}{PIPELINE_SUFFIX}"


def read_by_render(relpath: str) -> bool:
    """Whether `relpath` is a file some render could read: a top-level file, or a connection
    or pipeline file by its name (an other name in connections.d/ is read by nothing)."""
    if relpath in (MEMBERS_FILE, CONFIG_FILE, SOPS_CONFIG):
        return True
    directory, _, name = relpath.partition("/")
    suffix = {CONNECTIONS_DIR: CONNECTION_SUFFIX, PIPELINES_DIR: PIPELINE_SUFFIX}.get(directory)
    return suffix is not None and "/" not in name and name.endswith(suffix)


def find_root(repo: str | os.PathLike[str] | None = None) -> Path:
    """The connection repository: `repo` itself when given (`--repo`), else the first directory
    with connc's layout from the current directory up, as git finds its own — never above the
    top of the git repository the search started in (a parent repository is another one)."""
    if repo is not None:
        _refuse_link_in_work_tree(Path(os.path.abspath(repo)))
        root = Path(repo).resolve()
        if not root.is_dir():
            raise UsageError(f"{repo} is not a directory")
        if not has_layout(root):
            raise UsageError(f"{repo} is not a connection repository: it has none of "
                             f"{CONNECTIONS_DIR}/, {PIPELINES_DIR}/, {MEMBERS_FILE}")
        return root
    try:
        start = working_directory()
    except OSError:  # the current directory was removed
        raise UsageError("the current directory does not exist; pass --repo DIR") from None
    _refuse_link_in_work_tree(start)
    start = start.resolve()
    for candidate in (start, *start.parents):
        if has_layout(candidate):
            _check_found(candidate, above=candidate != start)
            return candidate
        if (candidate / ".git").exists():
            raise UsageError(f"not in a connection repository: neither {start} nor a directory "
                             f"above it up to {candidate} (the top of its git repository) has "
                             f"{CONNECTIONS_DIR}/, {PIPELINES_DIR}/ or {MEMBERS_FILE}; start one "
                             f"with `connc init`, or pass --repo DIR")
    raise UsageError(f"not in a connection repository: neither {start} nor a directory above "
                     f"it has {CONNECTIONS_DIR}/, {PIPELINES_DIR}/ or {MEMBERS_FILE}; start one "
                     f"with `connc init`, or pass --repo DIR")


def working_directory() -> Path:
    """The current directory as the shell that started connc names it (`$PWD`, which keeps
    the symlinks `cd` went through), when that names it; else as the system does."""
    current = Path.cwd()
    logical = os.environ.get("PWD")
    if logical and os.path.isabs(logical):
        with contextlib.suppress(OSError):
            if os.path.samefile(logical, current):
                return Path(os.path.normpath(logical))
    return current


def _refuse_link_in_work_tree(named: Path) -> None:
    """A repository reached through a symlink inside a git work tree is refused. A pull
    request can make `infra/` a link to a copy elsewhere in the repository: review of the
    path (`connc diff`, which reads the path at each revision) then sees a symlink, while a
    checkout followed would render whatever the copy holds. A link above every work tree (a
    home directory's `~/src`) is the machine's own, and is followed."""
    path = Path(named.anchor)
    for part in named.parts[1:]:
        path = path / part
        if path.is_symlink() and any((above / ".git").exists() for above in path.parents):
            raise UsageError(f"{printable(str(named))} is reached through {printable(str(path))}, "
                             f"a symlink inside a git work tree: render would read where it "
                             f"points, which review of the path does not; name the directory "
                             f"itself (--repo)")


def _check_found(root: Path, *, above: bool) -> None:
    """A root found by the search is not a shared directory, nor, above the one connc was
    started in, another user's: in `/tmp` (world-writable and sticky), or in a directory
    another user owns, connc's layout may be someone else's — whose `.sops.yaml` would take
    the secrets typed here (git refuses such a repository too). The directory connc is
    started in may be another user's (a CI container's root user in the runner's checkout),
    or world-writable without the sticky bit (GitLab's docker executor checks out with umask
    0000): being there is choosing it; `--repo` chooses any."""
    try:
        status = root.stat()
    except OSError:
        return
    shared = stat.S_IWOTH | stat.S_ISVTX
    if status.st_mode & shared == shared:
        why = "a directory every user may write to (as /tmp is)"
    elif above and status.st_uid not in (os.geteuid(), 0):
        why = "owned by another user"
    else:
        return
    raise UsageError(f"found connc's layout in {root}, which is {why}: it may be someone "
                     f"else's, so connc does not use it; if it is your repository, pass "
                     f"--repo {root}")


def has_layout(directory: Path) -> bool:
    return any((directory / name).exists()
               for name in (CONNECTIONS_DIR, PIPELINES_DIR, MEMBERS_FILE))


class Files:
    """Where connc reads a repository's files from: the file system (`DISK`). Every question
    the reading path asks of a file goes through here, so that `connc diff` can read a git
    revision from its objects in memory (`diff.revisions.Blobs`) with the very code that
    reads a checkout: one reader, whatever holds the bytes. Paths are the ones a checkout
    would have (`root / relpath`); nothing here follows a symlink unless it says so."""

    def lexists(self, path: Path) -> bool:
        """Present: a dangling symlink too (it is reported as one, not as a missing file)."""
        return os.path.lexists(path)

    def is_symlink(self, path: Path) -> bool:
        return path.is_symlink()

    def is_file(self, path: Path) -> bool:
        """A regular file, following a symlink (callers check for one first)."""
        return path.is_file()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def names(self, path: Path) -> list[str]:
        """The names in a directory; OSError when it cannot be listed."""
        return os.listdir(path)

    def entries(self, path: Path) -> list[tuple[str, bool]]:
        """Each name in a directory, sorted, and whether it is a regular file and no symlink
        (one system call each, cached by scandir); OSError when it cannot be listed."""
        with os.scandir(path) as scan:
            return sorted((entry.name, entry.is_file(follow_symlinks=False)) for entry in scan)

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def settle(self) -> None:
        """Every byte readable without waiting, here and in a process forked from here
        (validate's workers): bytes still arriving (a revision read in the background) are
        waited for, and a failure to read them raised. Nothing to wait for on disk."""


DISK = Files()


@dataclasses.dataclass
class Listing:
    connections: list[str]
    pipelines: list[str]
    findings: list[Finding]


def list_files(root: Path, files: Files = DISK) -> Listing:
    """The connection and pipeline files to read, and findings about the layout: misnamed
    files, symlinks, non-files, and names in doubt (`names_in_doubt`), which are not read."""
    top = _entries(root, files)
    doubtful = in_doubt("", top)
    found = [_name_finding(relpath, why) for relpath, why in doubtful.items()]
    connections, found_c = _list(root, CONNECTIONS_DIR, CONNECTION_SUFFIX, top, doubtful, files)
    pipelines, found_p = _list(root, PIPELINES_DIR, PIPELINE_SUFFIX, top, doubtful, files)
    return Listing(connections, pipelines, found + found_c + found_p)


def present(path: Path, files: Files = DISK) -> bool:
    # A dangling symlink is present: it is reported as one, not as a missing file.
    return files.lexists(path)


def ids(root: Path, kind: str) -> list[str]:
    """The ids of the repository's `kind` ("connection" or "pipeline") files, sorted."""
    listing = list_files(root)
    if kind == "connection":
        return sorted(stem(p, CONNECTION_SUFFIX) for p in listing.connections)
    return sorted(stem(p, PIPELINE_SUFFIX) for p in listing.pipelines)


def existing(root: Path, kind: str, given: str, *, hint: str = "") -> str:
    """The file of the `kind` ("connection" or "pipeline") that the id `given` names. A usage
    error (exit 2) for an invalid id, and for one without a file: "no KIND `ID`; did you mean
    `X`?" and `hint`. The id is checked once here; the repository is listed only on a miss."""
    check_id(given, kind)
    relpath = f"{CONNECTIONS_DIR}/{given}{CONNECTION_SUFFIX}" if kind == "connection" \
        else f"{PIPELINES_DIR}/{given}{PIPELINE_SUFFIX}"
    if not present(root / relpath):
        raise UsageError(f"no {kind} `{given}`{suggest(given, ids(root, kind))}{hint}",
                         path=relpath)
    return relpath


_SYMLINK = ("is a symlink (or is reached through one); connc follows none: a link can point "
            "outside the repository, or at a file no review of this path covers")


def inside(root: Path, relpath: str, files: Files = DISK) -> Finding | None:
    """A finding when `relpath` is, or is reached through, a symlink, or is not a regular file.

    `root` is resolved (`find_root`); every component below it is checked, so a symlinked
    `connections.d/` is refused as surely as a symlinked file.
    """
    path = root
    for part in relpath.split("/"):
        path = path / part
        if files.is_symlink(path):
            return finding(relpath, 1, 1, "CONNC007", f"the file {_SYMLINK}")
    if not files.is_file(path):
        # Never open it: a FIFO would block the run, a device could be anything.
        kind = "a directory" if files.is_dir(path) else "not a regular file"
        return finding(relpath, 1, 1, "CONNC008", f"{kind} where connc expects {_expected(relpath)}")
    return None


def _expected(relpath: str) -> str:
    if relpath.startswith(f"{CONNECTIONS_DIR}/"):
        return "a connection file"
    if relpath.startswith(f"{PIPELINES_DIR}/"):
        return "a pipeline file"
    return f"the file {relpath}"


def _list(root: Path, directory: str, suffix: str, top: list[str],
          doubtful: dict[str, str], files: Files) -> tuple[list[str], list[Finding]]:
    # Only by its exact name: on a case-insensitive file system `root / directory` would also
    # open `Connections.d/`, which is in doubt (reported once, by the caller) or absent.
    if directory not in top or directory in doubtful:
        return [], []
    base = root / directory
    if files.is_symlink(base):
        return [], [finding(directory, 1, 1, "CONNC007",
                            f"{directory}/ {_SYMLINK}; connc reads no file in it")]
    if not files.is_dir(base):  # a file (or a dangling link) where the directory belongs
        return [], [finding(directory, 1, 1, "CONNC008",
                            f"{directory} must be a directory; connc reads no file in it")]
    listed, found = [], []
    entries = files.entries(base)
    doubtful_here = in_doubt(directory, [name for name, _regular in entries])
    found += [_name_finding(relpath, why) for relpath, why in doubtful_here.items()]
    # The directory is no symlink (above), so an entry that is a regular file and no symlink
    # needs no further check: only the rare others do.
    for name, regular in entries:
        relpath = f"{directory}/{name}"
        if name.startswith(".") or relpath in doubtful_here:
            continue
        if not name.endswith(suffix):
            found.append(finding(relpath, 1, 1, "CONNC012",
                                 f"files in {directory}/ are named <id>{suffix}; connc does not "
                                 f"read this one"))
            continue
        problem = None if regular else inside(root, relpath, files)
        if problem:
            found.append(problem)
            continue
        listed.append(relpath)
    return listed, found


# ---------------------------------------------------------------------------- names
# A case-insensitive or Unicode-normalising file system (APFS and HFS+ on macOS, NTFS on
# Windows, ext4 with casefolding) opens `members.yaml` for `Members.yaml`, `\u212a8s.yaml`
# (KELVIN SIGN) for `k8s.yaml`, and keeps one file of two such names. There, a name that is
# not exactly one connc reads, or two names of one file, make render read bytes that review
# (`connc diff`, git on Linux) read under another name. Such names are refused everywhere.

# How `connc diff` names the doubt, in a row.
NAME_IN_DOUBT = "its name is another file's on a case-insensitive file system"

# Format characters HFS+ leaves out when it compares names (the ones git ignores for the same
# reason when it guards `.git`).
_IGNORED_IN_NAMES = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                   *range(0x206A, 0x2070), 0xFEFF])


def fold(name: str) -> str:
    """`name` as such a file system compares it: one Unicode form (NFD), case folded both
    ways (NTFS upper-cases, APFS folds), HFS+'s ignored characters dropped, and the trailing
    dots and spaces Windows drops. Folding more than one system does only refuses more."""
    if not name.isascii():
        name = unicodedata.normalize("NFD", name.translate(_IGNORED_IN_NAMES))
        name = unicodedata.normalize("NFD", name.upper().casefold())
    return name.lower().rstrip(". ")


def reads(directory: str, name: str) -> bool:
    """Whether connc (or git, for `.gitattributes`) reads a file so named in `directory`."""
    if name == GITATTRIBUTES:
        return True
    if not directory:
        return name in LAYOUT
    suffix = CONNECTION_SUFFIX if directory == CONNECTIONS_DIR else PIPELINE_SUFFIX
    return name.endswith(suffix) and is_id(name[: -len(suffix)])


def in_doubt(directory: str, names: Collection[str]) -> dict[str, str]:
    """The names of `directory` ("": the top level) that are in doubt, as relpath -> why."""
    folded: dict[str, list[str]] = {}
    for name in names:
        if name.isascii() and name.islower() and name[-1] not in ". ":
            continue  # its own fold: only another name can fold to it (the common case)
        key = fold(name)
        if key != name and reads(directory, key):
            folded.setdefault(key, []).append(name)
    if not folded:
        return {}
    present_names = set(names)
    prefix = f"{directory}/" if directory else ""
    doubtful = {}
    for key, variants in folded.items():
        group = sorted(variants) + ([key] if key in present_names else [])
        for name in group:
            others = [other for other in group if other != name]
            why = (f"`{_shown(name)}` and {', '.join(f'`{_shown(o)}`' for o in others)} are one "
                   f"file on a case-insensitive or Unicode-normalising file system (macOS, "
                   f"Windows), where connc may read either and not the one review read; keep "
                   f"only `{key}`") if others else (
                   f"`{_shown(name)}` is `{key}` on a case-insensitive or Unicode-normalising "
                   f"file system (macOS, Windows), so connc would read it there, while review "
                   f"(git, `connc diff`) reads another name; rename it `{key}`")
            doubtful[prefix + name] = why
    return doubtful


def _shown(name: str) -> str:
    # Non-ASCII as escapes: a KELVIN SIGN must not look like the K it stands in for.
    return printable(name.encode("ascii", "backslashreplace").decode("ascii"))


def _name_finding(relpath: str, why: str) -> Finding:
    return finding(relpath, 1, 1, "CONNC016", why)


def _entries(root: Path, files: Files = DISK) -> list[str]:
    try:
        return files.names(root)
    except OSError:
        return []


def names_in_doubt(root: Path) -> list[Finding]:
    """Findings for the names in doubt, from the names alone (render's check: no file is
    opened or stat'ed; validate gets the same findings from `list_files`)."""
    top = _entries(root)
    doubtful = in_doubt("", top)
    for directory in (CONNECTIONS_DIR, PIPELINES_DIR):
        if directory in top and directory not in doubtful \
                and not (root / directory).is_symlink():  # refused when read; never listed
            doubtful.update(in_doubt(directory, _entries(root / directory)))
    return [_name_finding(relpath, why) for relpath, why in doubtful.items()]


# ---------------------------------------------------------------------------- the model
# What the per-file checks keep of each valid file, for the checks across files, `access`
# and `diff`. Picklable: validate's worker processes send them back.

Pos = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class ConnectionSummary:
    relpath: str
    id: str
    id_pos: Pos
    owner: str
    owner_pos: Pos
    visibility: str
    members: tuple[tuple[str, Pos], ...]
    type: str
    spec: tuple[tuple[str, str], ...]  # (field, canonical JSON value), as the seal records it
    sealed: bool  # its credential holds a seal (the key name is plaintext)
    recipients: frozenset[str]
    sops_pos: Pos
    wrapped_keys: frozenset[bytes]  # fingerprints of decoded bytes (`sops.metadata.fingerprint`)
    ciphertexts: frozenset[bytes]
    credential_pos: Pos
    lastmodified: str | None = None  # sops' timestamp of the credential block (UTC, RFC 3339)
    expires: str | None = None  # metadata.expiresAt, the day (YYYY-MM-DD)
    secretless: bool = False  # stores no secret: its credential is its seal (`policy.secretless`)


@dataclasses.dataclass(frozen=True)
class UseSummary:
    connection: str
    pos: Pos
    github_options: tuple[tuple[str, Pos], ...]  # options that only github-app accepts
    repositories: tuple[str, ...] | None  # the token's narrowing, as declared
    permissions: tuple[tuple[str, str], ...] | None
    refresh: bool


@dataclasses.dataclass(frozen=True)
class PipelineSummary:
    relpath: str
    id: str
    id_pos: Pos
    owner: str
    owner_pos: Pos
    teams: tuple[tuple[str, Pos], ...]
    recipients: frozenset[str]
    uses: tuple[UseSummary, ...]
