"""Hostile git trees for the revision reader (`connc.diff.revisions`), and the differential
checks that hold it to a checkout of the same commit.

A case is a seed: `case(base, seed)` draws one to four shapes from `SHAPES` (names with control
characters, non-UTF-8 bytes, names a case-insensitive file system folds together, leading
dashes, names of 255 bytes; empty files, files at a size limit and one byte over; one blob
under thousands of names; deep directories; symlinks, submodules (gitlinks), files and
directories where the layout expects others; `.gitattributes` in the root, in connections.d/
and above a repository in a subdirectory; the text mutations of `fuzzkit` applied to blobs)
and applies them to the fuzzer's valid repository, as paths and bytes. `commit` writes it
with `git fast-import`, which takes any path git can hold (a file system need not).

The checks, for each case:
  - `judged_alike`: validate on a real checkout (`git worktree`) and on the tree in memory
    give the same findings and summaries, except for the paths the tree names as skipped;
  - `run_diff`: `connc diff` between two cases, as users run it (a process of its own): exit
    0 or 1, no traceback, its time and peak memory (RSS) measured;
  - `reuse_alike`: HEAD judged with BASE's objects and judgements compares as judged alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fuzzkit

from connc import documents, process
from connc.diff import revisions
from connc.diff.compare import compare
from connc.diff.snapshot import snapshot
from connc.findings import printable
from connc.validate.run import Report, validate
from kit.build import GIT_IDENTITY, REPO_ROOT, TEST_KEY_FILE, sops_env

TODAY = dt.date(2026, 1, 1)
PREFIX = "ops/connc/"  # where a case in a subdirectory puts the repository

Entry = tuple[str, bytes]  # mode ("100644", "120000": a symlink's target, "160000": a commit id)
Tree = dict[bytes, Entry]  # path from the top -> entry


def base_tree(repo: Path) -> Tree:
    """The fuzzer's valid repository (`fuzzkit.build_base`), as paths and bytes."""
    tree: Tree = {}
    for relpath in fuzzkit.FILES:
        tree[relpath.encode()] = ("100644", (repo / relpath).read_bytes())
    return tree


def put(tree: Tree, path: bytes, entry: Entry | None) -> None:
    """`path` set to `entry` (None: removed), and whatever stood in its way: a file where one
    of its directories belongs, the files of a directory where it belongs."""
    parts = path.split(b"/")
    for depth in range(1, len(parts)):
        tree.pop(b"/".join(parts[:depth]), None)
    for other in [p for p in tree if p.startswith(path + b"/")]:
        del tree[other]
    if entry is None:
        tree.pop(path, None)
    else:
        tree[path] = entry


def _file(data: bytes) -> Entry:
    return ("100644", data)


_GITLINK = ("160000", b"1" * 40)
_SYMLINKS = [b"../members.yaml", b"members.yaml", str(TEST_KEY_FILE).encode(), b"/dev/zero",
             b"connections.d", b"..", b"."]
_LAYOUT = [b"connections.d", b"pipelines.d", b"members.yaml", b"connc.yaml", b".sops.yaml",
           b".gitattributes", b"connections.d/gl.sops.yaml", b"pipelines.d/ci.yaml",
           b"connections.d/.gitattributes"]
# Names a pull request can give a file: control characters, bytes that are no UTF-8, names
# that fold into another on macOS or Windows, leading dashes, the longest a file system takes.
_NAMES = [b"-rf.sops.yaml", b"--output=x.yaml", b"a\nb.sops.yaml", b"tab\t.yaml", b"\x1b[31m.yaml",
          b"\x7f.sops.yaml", b"\xff\xfe.sops.yaml", b"caf\xe9.yaml", b"\xc3(.sops.yaml",
          "\u212a8s.sops.yaml".encode(), b"GL.sops.yaml", b"gl.sops.yaml.", b"gl.sops.yaml ",
          "g\u200dl.sops.yaml".encode(), "ci\u0307.yaml".encode(), b"CI.yaml", b"Ci.YAML",
          b"x" * 245 + b".sops.yaml", b"a" * 250 + b".yaml", b".hidden.sops.yaml", b" .yaml",
          b"*.sops.yaml", b"[ab].yaml", b"\\.yaml", b"new.sops.yaml", b"ok-1.yaml", b"\"q\".yaml"]
_TOP_NAMES = [b"Members.yaml", b"CONNC.yaml", b".SOPS.yaml", b"Connections.d", b"pipelines.D",
              "members.yam\u006c\u200c".encode(), b".GitAttributes", b"connc.yaml.", b"-x"]
_ATTRIBUTE_LINES = [b"* ident", b"*.yaml text eol=lf", b"connections.d/* -text",
                    b"*.sops.yaml filter=lfs diff=lfs merge=lfs", b"[attr]m ident", b"* m",
                    b"** export-subst", b"\"connections.d/*\" binary", b"[", b"!* ident",
                    b"pipelines.d/** working-tree-encoding=UTF-16", b"# comment", b"",
                    b"*.yaml\x00 ident", b"\xff ident", b"* " + b"a" * 5000,
                    b"members.yaml -ident", b"* -text -eol -ident -filter -crlf"]


def _connection(tree: Tree) -> bytes:
    entry = tree.get(b"connections.d/gl.sops.yaml")
    return entry[1] if entry and entry[0] == "100644" else b"a: b\n"


def _odd_names(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    for _ in range(rng.randint(1, 6)):
        directory = rng.choice([b"connections.d/", b"pipelines.d/"])
        put(tree, directory + rng.choice(_NAMES), _file(rng.choice(
            [_connection(tree), b"", b"apiVersion: connc/v1\n"])))
    if rng.random() < 0.5:
        put(tree, rng.choice(_TOP_NAMES), _file(rng.choice([b"", _connection(tree)])))


def _empty(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    put(tree, rng.choice(_LAYOUT[2:] + [b"connections.d/new.sops.yaml"]), _file(b""))


def _at_limits(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    """Files of exactly the size the reader takes, and one byte more."""
    over = rng.choice([0, 1])
    limit = documents.MAX_FILE_BYTES
    path, size = rng.choice([
        (b"connections.d/big.sops.yaml", limit), (b"pipelines.d/big.yaml", limit),
        (b"members.yaml", limit), (b".gitattributes", limit),
        (b"connections.d/.gitattributes", limit),
        (b".sops.yaml", documents.MAX_SOPS_CONFIG_BYTES)])
    put(tree, path, _file(_filler(size + over)))
    if rng.random() < 0.5:  # the same bytes where another limit applies
        put(tree, rng.choice([b".sops.yaml", b"connections.d/same.sops.yaml"]),
            _file(_filler(size + over)))


def _filler(size: int) -> bytes:
    """`size` bytes of one YAML comment: quick to refuse or to read."""
    return (b"#" * (size - 1) + b"\n") if size else b""


def _one_blob_many_names(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    data = rng.choice([_connection(tree), b"", b"a: b\n"])
    many(tree, b"connections.d/c%05d.sops.yaml", rng.choice([100, 1000, 3000]), _file(data))


def many(tree: Tree, pattern: bytes, count: int, entry: Entry) -> None:
    """`count` new files in one directory (`put` for the first, which clears the way)."""
    put(tree, pattern % 0, entry)
    tree.update((pattern % n, entry) for n in range(1, count))


def _deep(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    """A deep directory where connc reads files, and in one of its directories."""
    depth = rng.choice([2, 50, 900, 1500])
    directory = rng.choice([b"connections.d/", b"pipelines.d/", b"", b"members.yaml/"])
    path = directory + b"/".join([b"d"] * depth) + b"/x.sops.yaml"
    if len(path) < 4000:  # what a checkout on Linux can write (PATH_MAX)
        put(tree, path, _file(_connection(tree)))


def _not_a_file(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    """A symlink, a submodule, a directory or a file where the layout has another."""
    path = rng.choice(_LAYOUT)
    kind = rng.choice(["symlink", "gitlink", "directory", "file", "directory of a link",
                       "directory of a submodule"])
    if kind == "symlink":
        put(tree, path, ("120000", rng.choice(_SYMLINKS)))
    elif kind == "gitlink":
        put(tree, path, _GITLINK)
    elif kind == "directory":
        put(tree, path + b"/inner.yaml", _file(b"a: b\n"))
    elif kind == "file":
        put(tree, path, _file(b"a: b\n"))
    elif kind == "directory of a link":
        put(tree, path + b"/link", ("120000", b"../members.yaml"))
    else:
        put(tree, path + b"/sub", _GITLINK)


def _gitattributes(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    lines = rng.sample(_ATTRIBUTE_LINES, rng.randint(1, 4))
    where = rng.choice([b"", b"connections.d/", b"pipelines.d/", b"connections.d/d/"])
    put(tree, where + b".gitattributes", _file(b"\n".join(lines) + b"\n"))


def _mutated(rng: random.Random, tree: Tree, prefix: bytes) -> None:
    """The text mutations of the suite's fuzzer (`fuzzkit`), applied to the blobs."""
    relpath = rng.choice(fuzzkit.FILES)
    entry = tree.get(relpath.encode())
    if entry is None or entry[0] != "100644":
        return
    op: dict[str, object] = rng.choice([
        {"op": "insert", "at": rng.random(), "text": rng.choice(fuzzkit._SPECIAL)},
        {"op": rng.choice(["drop-line", "dup-line", "indent-line"]), "at": rng.random(),
         "by": rng.randint(1, 5)},
        {"op": "truncate", "at": rng.random()},
        {"op": "flip", "what": rng.choice(["token", "password", "connc-seal", "mac", "enc"]),
         "at": rng.random()},
        {"op": "set", "path": rng.choice(fuzzkit._PATHS[fuzzkit._kind_of(relpath)]),
         "value": rng.choice(fuzzkit._WORDS)}])
    op["file"] = relpath
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"connc-reader-fuzz-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / relpath).parent.mkdir(parents=True)
    (scratch / relpath).write_bytes(entry[1])
    try:
        fuzzkit.apply(scratch, [op])
        put(tree, relpath.encode(), _file((scratch / relpath).read_bytes()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


SHAPES: dict[str, Callable[[random.Random, Tree, bytes], None]] = {
    "odd names": _odd_names, "empty files": _empty, "size limits": _at_limits,
    "one blob, many names": _one_blob_many_names, "deep directories": _deep,
    "not a file": _not_a_file, "gitattributes": _gitattributes, "mutated": _mutated,
}


@dataclasses.dataclass(frozen=True)
class Case:
    seed: int
    shapes: tuple[str, ...]
    prefix: str  # "" or PREFIX
    tree: Tree


def case(base: Tree, seed: int, shapes: tuple[str, ...] | None = None) -> Case:
    """The hostile tree of `seed`: one to four shapes applied to the valid repository, which
    sits in a subdirectory one time in four (then a `.gitattributes` may apply from above)."""
    rng = random.Random(seed)
    tree = dict(base)
    if shapes is None:
        shapes = tuple(rng.choice(list(SHAPES)) for _ in range(rng.randint(1, 4)))
    for shape in shapes:
        SHAPES[shape](rng, tree, b"")
    prefix = PREFIX if rng.random() < 0.25 else ""
    if prefix:
        tree = {prefix.encode() + path: entry for path, entry in tree.items()}
        for above in (b"", b"ops/"):
            if rng.random() < 0.5:
                put(tree, above + b".gitattributes", _file(rng.choice(_ATTRIBUTE_LINES) + b"\n"))
    return Case(seed, shapes, prefix, tree)


def valid(base: Tree, prefix: str) -> Tree:
    """The valid repository, where a case puts it."""
    return {prefix.encode() + path: entry for path, entry in base.items()}


# ---------------------------------------------------------------------------- git


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          env={**os.environ, **GIT_IDENTITY}, timeout=120, check=False)
    if done.returncode:
        raise RuntimeError(f"git {args[0]}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _quoted(path: bytes) -> bytes:
    """A path as fast-import reads it: C-style quoted, every odd byte in octal."""
    out = bytearray(b'"')
    for byte in path:
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def commit(repo: Path, tree: Tree, ref: str) -> str:
    """The tree committed as `ref` (each distinct content stored once), and its commit id."""
    stream = bytearray()
    marks: dict[bytes, int] = {}
    for mode, data in tree.values():
        if mode != "160000" and data not in marks:
            marks[data] = len(marks) + 1
            stream += b"blob\nmark :%d\ndata %d\n%s\n" % (marks[data], len(data), data)
    stream += (f"commit refs/heads/{ref}\ncommitter Fuzz <fuzz@example.com> 0 +0000\n"
               f"data 0\ndeleteall\n").encode()
    for path, (mode, data) in sorted(tree.items()):
        target = data if mode == "160000" else b":%d" % marks[data]
        stream += b"M " + mode.encode() + b" " + target + b" " + _quoted(path) + b"\n"
    git(repo, "fast-import", "--quiet", "--force", stdin=bytes(stream))
    return git(repo, "rev-parse", f"refs/heads/{ref}").decode().strip()


def read_tree(repo: Path, commit_id: str, prefix: str,
              previous: revisions.Tree | None = None) -> revisions.Tree:
    deadline = process.Deadline(revisions.TIMEOUT)
    return revisions.read_revision(repo, prefix, revisions.Revision(commit_id, commit_id),
                                   deadline, previous)


# ---------------------------------------------------------------------------- the checks


def _kept(relpath: str, skipped: dict[str, str]) -> bool:
    # A finding names its path as a message shows it (`printable`): so are the skipped ones.
    return not any(relpath in (path, shown) or relpath.startswith((f"{path}/", f"{shown}/"))
                   for path, shown in ((path, printable(path)) for path in skipped))


def judged(report: Report, skipped: dict[str, str]) -> dict[str, object]:
    """What validate said, less what concerns the paths a revision does not hold."""
    return {
        "findings": [f for f in report.findings if _kept(f.path, skipped)],
        "connections": [c for c in report.connections if _kept(c.relpath, skipped)],
        "pipelines": [p for p in report.pipelines if _kept(p.relpath, skipped)],
        "refused": {k: v for k, v in report.refused.items() if _kept(k, skipped)},
        "results": sorted(k for k in report.results if _kept(k, skipped)),
        "members": report.members if _kept("members.yaml", skipped) else None,
        "config": report.config if _kept("connc.yaml", skipped) else None,
        "admin_recipients": report.admin_recipients if _kept("connc.yaml", skipped) else None,
        "files": report.files if not skipped else None,
    }


def judged_alike(repo: Path, checkout: Path, commit_id: str,
                 prefix: str) -> tuple[dict[str, object], dict[str, object]] | None:
    """validate of a real checkout and of the tree in memory, as compared (None: git cannot
    check the commit out, so there is nothing to compare against)."""
    tree = read_tree(repo, commit_id, prefix)
    try:
        git(repo, "worktree", "add", "-q", "--detach", str(checkout), commit_id)
    except RuntimeError:
        shutil.rmtree(checkout, ignore_errors=True)
        git(repo, "worktree", "prune")
        return None
    try:
        root = checkout / prefix if prefix else checkout
        if not root.is_dir():
            root.mkdir(parents=True)  # what `connc diff --repo` would be pointed at
        on_disk = validate(root.resolve(), today=TODAY, across_files=False)
        in_memory = validate(tree.root, files=tree.files, today=TODAY, across_files=False)
        rewritten = _rewritten(tree, root)
    finally:
        git(repo, "worktree", "remove", "--force", str(checkout))
    # A file a .gitattributes makes git rewrite on checkout holds other bytes there: it is
    # not compared, and the rewrite must be what the reader reports (CONNC017).
    left_out = {**tree.skipped, **dict.fromkeys(rewritten, "rewritten on checkout")}
    flagged = not rewritten or any(f.code == "CONNC017" for f in in_memory.findings)
    return ({**judged(on_disk, left_out), "rewrites flagged": True},
            {**judged(in_memory, left_out), "rewrites flagged": flagged})


def _rewritten(tree: revisions.Tree, root: Path) -> list[str]:
    """The files read in memory whose checkout holds other bytes."""
    rewritten = []
    for relpath, oid in tree.identities.items():
        data = tree.files.settled_data().get(oid)
        path = root / relpath
        if data is not None and not path.is_symlink() and path.is_file() \
                and path.read_bytes() != data:
            rewritten.append(relpath)
    return rewritten


def reuse_alike(repo: Path, base_commit: str, head_commit: str, prefix: str) -> bool:
    """HEAD read with BASE's objects and judgements compares as HEAD read alone."""
    before_tree = read_tree(repo, base_commit, prefix)
    before = snapshot(before_tree.root, before_tree.skipped, files=before_tree.files,
                      identities=before_tree.identities, today=TODAY)
    reused = read_tree(repo, head_commit, prefix, before_tree)
    alone = read_tree(repo, head_commit, prefix)
    after_reused = snapshot(reused.root, reused.skipped, files=reused.files,
                            identities=reused.identities, today=TODAY, previous=before)
    after_alone = snapshot(alone.root, alone.skipped, files=alone.files, identities=None,
                           today=TODAY, previous=None)
    return list(compare(before, after_reused)) == list(compare(before, after_alone))


@dataclasses.dataclass(frozen=True)
class Run:
    code: int
    output: str
    seconds: float
    peak_rss: int  # bytes: the diff process' own peak (VmHWM), not its git processes'


# `python -m connc` that writes its peak resident memory to the file its first argument names.
# VmHWM is this process' own: getrusage's maxrss would also count the memory of the process
# it was forked from (the test's), which exec leaves in it.
_MEASURED = """
import atexit, runpy, sys
where = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(where, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
atexit.register(peak)
sys.argv[0] = "connc"
runpy.run_module("connc", run_name="__main__", alter_sys=True)
"""


def run_diff(repo: Path, base_commit: str, head_commit: str, prefix: str,
             seconds: float = 120.0) -> Run:
    """`python -m connc diff BASE HEAD` as users run it; its exit, output, time and peak RSS."""
    where = repo / prefix if prefix else repo
    where.mkdir(parents=True, exist_ok=True)
    peak = repo.parent / "peak-rss"
    peak.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURED, str(peak), "diff", base_commit, head_commit,
             "--repo", str(where), "--format", "json"], cwd=REPO_ROOT,
            env=sops_env(TEST_KEY_FILE), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=seconds, check=False)
    except subprocess.TimeoutExpired:
        return Run(-1, "did not finish", time.monotonic() - started, 0)
    kib = int(peak.read_text()) if peak.exists() else 0
    return Run(done.returncode, done.stdout.decode("utf-8", "replace"),
               time.monotonic() - started, kib * 1024)
