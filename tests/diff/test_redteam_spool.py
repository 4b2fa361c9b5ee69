"""A revision's objects, read through a spooled `git cat-file --batch` (an anonymous file in
memory bounded by RLIMIT_FSIZE, `process.Process(spooled=True)`) and cut into views of the
answer (`revisions._split_batch`), tried as someone with a branch and no key, and at the
seams: review must read exactly the bytes a checkout of the same clone holds, each file its
own object's, and a git whose answer is not the one asked for is the run's failure (exit 2,
no traceback, never a finding), with no spool or git process left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connc import process
from connc.diff import revisions
from connc.diff.run import diff
from connc.errors import UsageError
from kit.build import commit, connection, git, make_repo, pipeline, pipeline_added, write
from kit.run import connc

DEADLINE = 60.0
_MIB = 1024 * 1024


def _tree(top: Path, revision: str = "HEAD") -> revisions.Tree:
    deadline = process.Deadline(DEADLINE)
    found_top, prefix = revisions.open_repository(top, deadline)
    return revisions.read_revision(found_top, prefix,
                                   revisions.resolve(found_top, revision, deadline), deadline)


def _spools() -> set[str]:
    """This process' descriptors of anonymous files (a spool left open is one of them)."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
                held.add(fd)
        except OSError:  # the listing's own descriptor, closed since
            continue
    return held


def _background_reads_ended(seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread.name == "connc-revision-read":
            thread.join(max(0.0, end - time.monotonic()))
            if thread.is_alive():
                return False
    return True


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """BASE (main~1) and HEAD (main): HEAD adds a pipeline. BASE's `.sops.yaml` and
    members.yaml are the run's first `cat-file` (read at once), its connection and pipeline
    files the second (in the background), HEAD's new pipeline the third."""
    return pipeline_added(tmp_path / "repo")


# A git whose N-th `cat-file --batch` of the run answers otherwise than asked.
_WRAPPER = """#!/bin/sh
case "$*" in
  *"cat-file --batch --buffer"*)
    echo $$ >> "{mark}"
    if [ "$(wc -l < "{mark}")" -eq {nth} ]; then {answer}; fi ;;
esac
exec {git} "$@"
"""

_ANSWERS = {
    "a byte longer": '{git} "$@"; printf x; exit 0',
    "a byte shorter": '{git} "$@" | head -c -1; exit 0',
    # RLIMIT_FSIZE stops it at one byte over: never the deadline, never connc's memory.
    "endless": '{git} "$@"; exec cat /dev/zero',
    "killed midway": '{git} "$@" | head -c 60; kill -9 $$',
    "empty": '{git} "$@" >/dev/null; exit 0',
    # As long as asked, each object whole, in another order: each file must get its own.
    "reordered": 'tac | {git} "$@"; exit 0',
}


def _git_answering(tmp_path: Path, nth: int, answer: str) -> Path:
    """A directory whose `git` answers the run's `nth` cat-file with the shell `answer`
    (`{git}`: the real one); each cat-file's pid is in `tmp_path / "cat-files"`."""
    real = shutil.which("git")
    assert real is not None
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir(exist_ok=True)
    mark = tmp_path / "cat-files"
    mark.write_text("")
    wrapper.write_text(_WRAPPER.format(mark=mark, nth=nth, git=real,
                                       answer=answer.format(git=real)))
    wrapper.chmod(0o755)
    return wrapper.parent


def _on_path(directory: Path) -> str:
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("nth", [1, 2], ids=["read-at-once", "read-in-background"])
@pytest.mark.parametrize("answer", list(_ANSWERS))
def test_a_git_that_answers_otherwise_than_asked_fails_the_run_and_leaves_nothing(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int,
        answer: str) -> None:
    monkeypatch.setenv("PATH", _on_path(_git_answering(tmp_path, nth, _ANSWERS[answer])))
    before = _spools()
    started = time.monotonic()
    with pytest.raises(UsageError) as failed:
        diff(repo, "main~1", "main")
    assert failed.value.exit_code == 2
    assert str(failed.value).startswith("git could not read revision 'main~1'")
    assert time.monotonic() - started < 20  # stopped, not waited out
    assert _background_reads_ended()
    assert _spools() == before
    pids = [int(pid) for pid in (tmp_path / "cat-files").read_text().split()]
    assert all(_gone(pid) for pid in pids)


def test_a_read_that_fails_is_exit_2_on_the_command_line(repo: Path, tmp_path: Path) -> None:
    path = _on_path(_git_answering(tmp_path, 2, _ANSWERS["a byte longer"]))
    ran = connc("diff", "main~1", "main", "--repo", str(repo), "--format", "json", key=None,
                env={**os.environ, "PATH": path}, cwd=repo)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and "Traceback" not in ran.stderr
    assert "git could not read revision 'main~1'" in ran.stderr


def test_a_too_long_answer_names_the_bound_it_passed(repo: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound of a revision's answer is its exact length, a few KB: "git wrote more than 0
    # MiB of output" is no bound a reader can make sense of.
    monkeypatch.setenv("PATH", _on_path(_git_answering(tmp_path, 1, _ANSWERS["a byte longer"])))
    with pytest.raises(UsageError) as failed:
        diff(repo, "main~1", "main")
    assert " 0 MiB" not in str(failed.value)
    assert "bytes of output" in str(failed.value)


def test_a_git_trace_log_does_not_stop_the_read(repo: Path, tmp_path: Path) -> None:
    # git's trace2 logs (system or global config: runners with git telemetry set one) are
    # files git writes while it answers, and RLIMIT_FSIZE, the spool's bound, bounds every
    # file the program writes: a log already longer than the answer stopped every diff
    # (SIGXFSZ, "git could not read revision", exit 2).
    plain = connc("diff", "main~1", "main", "--repo", str(repo), "--format", "json", key=None,
                  cwd=repo)
    assert plain.returncode == 1, plain.stderr  # the new pipeline's grant needs approval
    log = tmp_path / "git-trace.log"
    log.write_bytes(b"# earlier runs\n" * 10_000)
    config = Path(os.environ["GIT_CONFIG_GLOBAL"])
    config.write_text(f"[trace2]\n\tnormalTarget = {log}\n\tperfTarget = {log}\n"
                      f"\teventTarget = {log}\n")
    traced = connc("diff", "main~1", "main", "--repo", str(repo), "--format", "json",
                   key=None, cwd=repo)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout), \
        traced.stderr


_LIMITS_UNDER_A_LOW_DATA_LIMIT = """
import resource, sys
from pathlib import Path
from connc import process
low = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_DATA, (low, low))  # a hard limit: connc cannot raise it
running = process.Process(["sleep", "30"], limit=4096, spooled=True)
try:
    limits = Path(f"/proc/{running.pid}/limits").read_text()
finally:
    running.stop()
[row] = [row for row in limits.splitlines() if row.startswith("Max file size")]
print(row.split()[3])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit is Linux's")
def test_the_spools_bound_holds_where_the_memory_limit_cannot_be_raised() -> None:
    # A runner (a systemd unit's LimitDATA=, a container's ulimit) may hold connc to less
    # memory than MEMORY_LIMIT: setting RLIMIT_DATA fails (EPERM, raising a hard limit), and
    # that failure must not skip RLIMIT_FSIZE, the one bound of a spooled stdout (a program
    # that writes on would fill memory until the deadline).
    low = process.MEMORY_LIMIT - 64 * _MIB
    ran = subprocess.run([sys.executable, "-c", _LIMITS_UNDER_A_LOW_DATA_LIMIT, str(low)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "4097"


def test_an_interrupt_between_the_spawn_and_its_limits_leaves_no_spool_and_no_child(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A Ctrl-C lands between any two steps: right after the spawn, before the program is
    # bounded, the program and its spool are already connc's to end and close.
    started: list[int] = []
    real = process._limit_resources

    def interrupted(pid: int, memory: int, file_size: int | None) -> None:
        started.append(pid)
        real(pid, memory, file_size)
        raise KeyboardInterrupt

    monkeypatch.setattr(process, "_limit_resources", interrupted)
    before = _spools()
    with pytest.raises(KeyboardInterrupt):
        process.Process(["sleep", "30"], stdin=b"", limit=100, spooled=True)
    assert _spools() == before
    [pid] = started
    for _ in range(100):
        if _gone(pid):
            break
        time.sleep(0.05)
    assert _gone(pid), "the program outlived the interrupt"


def test_an_interrupt_while_bytes_arrive_closes_the_spool_and_ends_git(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # BASE's connection and pipeline files, read in the background, never come.
    monkeypatch.setenv("PATH", _on_path(_git_answering(tmp_path, 2, "exec sleep 60")))
    mark = tmp_path / "cat-files"

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    def when_git_hangs() -> None:  # then the main thread waits for its bytes: Ctrl-C
        for _ in range(600):
            if len(mark.read_text().split()) >= 2:
                time.sleep(0.3)
                break
            time.sleep(0.05)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)

    before = _spools()
    previous = signal.signal(signal.SIGALRM, interrupt)
    watcher = threading.Thread(target=when_git_hangs)
    try:
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            diff(repo, "main~1", "main")
    finally:
        watcher.join()
        signal.signal(signal.SIGALRM, previous)
    # Not `join`: one interrupted (Python 3.11) marks a thread still running as ended.
    pids = [int(pid) for pid in mark.read_text().split()]
    assert len(pids) == 2
    for _ in range(200):  # git sleeps for a minute: ended by the interrupt, or not at all
        if _spools() == before and all(_gone(pid) for pid in pids):
            break
        time.sleep(0.05)
    assert _spools() == before, "a spool outlived the run"
    assert all(_gone(pid) for pid in pids), "git outlived the run"


def _checkout(repo: Path, where: Path, revision: str = "HEAD") -> Path:
    """A fresh checkout of `revision` from the same clone: what render would read."""
    git(repo, "worktree", "add", "-q", "--detach", str(where), revision)
    return where


def _held(tree: revisions.Tree, checkout: Path) -> Iterator[tuple[str, bytes, bytes]]:
    for path in sorted(checkout.rglob("*")):
        relpath = path.relative_to(checkout).as_posix()
        if path.is_file() and not path.is_symlink() and relpath != ".git" \
                and tree.files.is_file(tree.root / relpath):
            yield relpath, tree.files.read(tree.root / relpath), path.read_bytes()


def test_objects_that_look_like_gits_answers_are_read_as_themselves(tmp_path: Path) -> None:
    # Cut by the listing's sizes, never by what the bytes say: files whose bytes are a
    # cat-file header (of the object after them), a whole answer, an empty object between
    # them, newlines only, and no newline at the end.
    root = make_repo(tmp_path / "repo", connections={"c": connection("c")},
                     pipelines={"p": pipeline("p", "c")}, encrypt_all=False)
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    oid = git(root, "rev-parse", "HEAD:pipelines.d/p.yaml").strip()
    size = len((root / "pipelines.d" / "p.yaml").read_bytes())
    forged = {
        "pipelines.d/a.yaml": f"{oid} blob {size}\n".encode(),
        "pipelines.d/b.yaml": f"{oid} blob {size}\n".encode()
        + (root / "pipelines.d" / "p.yaml").read_bytes() + b"\n",
        "pipelines.d/e.yaml": b"",
        "pipelines.d/n.yaml": b"\n" * 4097,
        "pipelines.d/z.yaml": f"{oid} missing\n{oid} blob 0\n".encode(),
        "connections.d/h.sops.yaml": f"{'0' * 40} blob 1".encode(),
    }
    for relpath, data in forged.items():
        write(root, relpath, data)
    commit(root, "forged")
    tree = _tree(root)
    held = list(_held(tree, _checkout(root, tmp_path / "checkout")))
    assert {relpath for relpath, _read, _on_disk in held} >= set(forged)
    for relpath, read, on_disk in held:
        assert read == on_disk, relpath


def test_one_object_at_many_paths_is_read_once_and_held_at_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One blob at 2,000 paths where the reader opens it, 10,000 where it never does, and
    # one over 1 MiB at `.sops.yaml` (read: its limit is 8 MiB) and at a connection's path
    # (held by its size: CONNC006, as in a checkout).
    root = make_repo(tmp_path / "repo", connections={"c": connection("c")},
                     pipelines={"p": pipeline("p", "c")}, encrypt_all=False)
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    big = b"creation_rules: []\n" + b"#" * (2 * _MIB)
    shared = git(root, "rev-parse", "HEAD:pipelines.d/p.yaml").strip()
    large, unread = _objects(root, big, b"# never opened\n")
    pipelines = "".join(f"100644 blob {shared}\tp{i}.yaml\n" for i in range(2000))
    old = "".join(f"100644 blob {unread}\tx{i}.yaml\n" for i in range(10_000))
    old_tree = _mktree(root, old)
    connections = _mktree(root, f"040000 tree {old_tree}\told\n"
                                f"100644 blob {large}\tbig.sops.yaml\n")
    top = _mktree(root, f"100644 blob {large}\t.sops.yaml\n"
                        f"040000 tree {connections}\tconnections.d\n"
                        f"040000 tree {_mktree(root, pipelines)}\tpipelines.d\n")
    head = git(root, "commit-tree", "-p", "HEAD", "-m", "many", top).strip()
    git(root, "update-ref", "refs/heads/main", head)
    asked: list[list[bytes]] = []
    real = revisions._cat

    def spied(top_: Path, oids: list[bytes], *rest: object) -> None:
        asked.append(list(oids))
        real(top_, oids, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(revisions, "_cat", spied)
    tree = _tree(root)
    read = [oid for oids in asked for oid in oids]
    assert sorted(read) == sorted({shared.encode(), large.encode()})  # each once
    expected = (root / "pipelines.d" / "p.yaml").read_bytes()
    assert all(tree.files.read(tree.root / f"pipelines.d/p{i}.yaml") == expected
               for i in range(0, 2000, 97))
    assert tree.files.read(tree.root / ".sops.yaml") == big
    assert tree.files.size(tree.root / "connections.d/big.sops.yaml") == len(big)
    with pytest.raises(OSError):  # never opened, never read
        tree.files.read(tree.root / "connections.d/old/x0.yaml")


def _objects(repo: Path, *contents: bytes) -> list[str]:
    return [subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data,
                           capture_output=True, check=True, timeout=60).stdout.decode().strip()
            for data in contents]


def _mktree(repo: Path, listing: str) -> str:
    return subprocess.run(["git", "mktree"], cwd=repo, input=listing.encode(),
                          capture_output=True, check=True, timeout=60).stdout.decode().strip()


@pytest.mark.parametrize("replacement", [b"", b"a: 1\n", b"apiVersion: x\n" * 500])
def test_a_replaced_object_is_read_as_a_checkout_of_the_clone_holds_it(
        repo: Path, tmp_path: Path, replacement: bytes) -> None:
    # `refs/replace/*` in the clone changes an object's size and bytes for every git command
    # (the listing's size and cat-file's answer alike, and a checkout): review and the
    # checkout render reads agree, whatever the size, and `GIT_NO_REPLACE_OBJECTS` in
    # connc's environment is no git setting of connc's (it is not passed on).
    oid = git(repo, "rev-parse", "HEAD:pipelines.d/p.yaml").strip()
    [other] = _objects(repo, replacement)
    git(repo, "replace", oid, other)
    checkout = _checkout(repo, tmp_path / "checkout")
    assert (checkout / "pipelines.d" / "p.yaml").read_bytes() == replacement
    for environment in ({}, {"GIT_NO_REPLACE_OBJECTS": "1"}):
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            tree = _tree(repo)
        assert tree.files.size(tree.root / "pipelines.d/p.yaml") == len(replacement)
        for relpath, read, on_disk in _held(tree, checkout):
            assert read == on_disk, relpath


def test_a_blob_listed_that_is_another_object_is_the_runs_failure(repo: Path,
                                                                  tmp_path: Path) -> None:
    # A tree whose file entry names a tree object (`git replace -f` of a blob, or a crafted
    # tree): the listing's size is the tree's, cat-file's header says `tree`. Never read as
    # a file's bytes: the run fails (a checkout fails too).
    oid = git(repo, "rev-parse", "HEAD:pipelines.d/p.yaml").strip()
    git(repo, "replace", "-f", oid, git(repo, "rev-parse", "HEAD:connections.d").strip())
    ran = connc("diff", "main~1", "main", "--repo", str(repo), "--format", "json", key=None,
                cwd=repo)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and "Traceback" not in ran.stderr
    assert "an object is missing or changed while read" in ran.stderr


def test_a_sha256_repository_is_read_as_its_checkout(tmp_path: Path) -> None:
    # Object ids of 64 digits: each header is the listing's, whatever the hash.
    root = make_repo(tmp_path / "repo", connections={"c": connection("c")},
                     pipelines={"p": pipeline("p", "c")}, encrypt_all=False)
    git(root, "init", "-q", "-b", "main", "--object-format=sha256")
    commit(root, "base")
    tree = _tree(root)
    held = list(_held(tree, root))
    assert len(held) == 4  # .sops.yaml, members.yaml, the connection, the pipeline
    for relpath, read, on_disk in held:
        assert read == on_disk, relpath



def test_a_damaged_pack_is_the_runs_failure_not_a_finding(repo: Path) -> None:
    # Packed, an object's header (and so the listing's size) reads whole while its data is
    # damaged: cat-file fails on it, in the background read, and no file is judged without
    # its bytes.
    git(repo, "gc", "-q")
    oid = git(repo, "rev-parse", "main~1:connections.d/c.sops.yaml").strip()
    [pack] = (repo / ".git" / "objects" / "pack").glob("*.pack")
    index = pack.with_suffix(".idx")
    rows = git(repo, "verify-pack", "-v", str(index)).splitlines()
    [row] = [row.split() for row in rows if row.startswith(oid)]
    size_in_pack, offset = int(row[3]), int(row[4])
    data = bytearray(pack.read_bytes())
    data[offset + size_in_pack // 2] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    ran = connc("diff", "main~1", "main", "--repo", str(repo), "--format", "json", key=None,
                cwd=repo)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and "Traceback" not in ran.stderr
    assert "git could not read revision 'main~1'" in ran.stderr


def test_a_partial_clone_is_read_as_the_whole_clone(repo: Path, tmp_path: Path) -> None:
    # Without its blobs (`--filter=blob:none`), the listing fetches each from the promisor
    # remote for its size; the spooled cat-file, whose files are bounded, then writes none.
    git(repo, "config", "uploadpack.allowFilter", "true")
    git(repo, "config", "uploadpack.allowAnySHA1InWant", "true")
    clone = tmp_path / "partial"
    git(tmp_path, "clone", "-q", "--no-checkout", "--filter=blob:none", f"file://{repo}",
        str(clone))
    missing = git(clone, "rev-list", "--objects", "--all", "--missing=print")
    assert missing.count("\n?") >= 4  # the blobs are not in the clone
    whole = connc("diff", "main~1", "main", "--repo", str(repo), "--format", "json", key=None,
                  cwd=repo)
    partial = connc("diff", "origin/main~1", "origin/main", "--repo", str(clone), "--format",
                    "json", key=None, cwd=clone)
    assert partial.returncode == whole.returncode == 1, partial.stderr
    assert json.loads(partial.stdout)["changes"] == json.loads(whole.stdout)["changes"]
