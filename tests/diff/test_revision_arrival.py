"""A revision's connection and pipeline files are read from git in the background while
validate parses `.sops.yaml` (`revisions.Blobs.arrive`): whatever reads a byte still on its
way waits for it, a failure of that read is the run's failure (exit 2, never a finding of the
file), validate's workers are forked only once every byte is in, and whatever ends the run
early stops that git process.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from connc import process
from connc.diff import revisions
from connc.diff.run import _stopped_on_failure
from connc.errors import UsageError
from connc.validate.run import PARALLEL_THRESHOLD, validate
from kit.build import commit, connection, git, make_repo, pipeline
from kit.run import connc

DEADLINE = 60.0


def _read(repo: Path, revision: str = "HEAD") -> revisions.Tree:
    deadline = process.Deadline(DEADLINE)
    top, prefix = revisions.open_repository(repo, deadline)
    return revisions.read_revision(top, prefix, revisions.resolve(top, revision, deadline),
                                   deadline)


def _damage(repo: Path, relpath: str) -> None:
    """Cut the loose object of `relpath` short after its header: `cat-file --batch-check`
    still answers its size (it inflates the header only), `cat-file --batch` fails."""
    oid = git(repo, "rev-parse", f"HEAD:{relpath}").strip()
    path = repo / ".git" / "objects" / oid[:2] / oid[2:]
    whole = zlib.decompress(path.read_bytes())
    header, _, body = whole.partition(b"\0")
    path.chmod(0o644)
    path.write_bytes(zlib.compress(header + b"\0" + body[: len(body) // 2]))
    sized = subprocess.run(["git", "cat-file", "--batch-check"], cwd=repo, input=f"{oid}\n",
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert sized.split()[1:] == ["blob", str(len(body))]  # the damage shows only on reading


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", connections={"c": connection("c")},
                     pipelines={"p": pipeline("p", "c")}, encrypt_all=False)
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    return root


@pytest.mark.parametrize("relpath", ["connections.d/c.sops.yaml", "members.yaml"])
def test_a_damaged_object_is_the_runs_failure_not_a_finding(repo: Path,
                                                            relpath: str) -> None:
    # A connection file is read in the background, members.yaml at once: one answer.
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "pipelines.d" / "q.yaml").write_text((repo / "pipelines.d" / "p.yaml").read_text()
                                                 .replace("id: p", "id: q"))
    commit(repo, "head")
    _damage(repo, relpath)
    ran = connc("diff", base, "HEAD", "--repo", str(repo), "--format", "json", cwd=repo)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "git could not read revision" in ran.stderr
    assert "Traceback" not in ran.stderr and ran.stdout == ""


def test_an_object_missing_from_the_clone_is_the_runs_failure(repo: Path) -> None:
    # `ls-tree -l` says "BAD" for the size of a blob the clone does not hold (and exits 0).
    oid = git(repo, "rev-parse", "HEAD:connections.d/c.sops.yaml").strip()
    (repo / ".git" / "objects" / oid[:2] / oid[2:]).unlink()
    ran = connc("diff", "HEAD", "--repo", str(repo), "--format", "json", cwd=repo)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "an object is missing" in ran.stderr and "Traceback" not in ran.stderr


def test_the_workers_find_every_byte_of_a_revision(tmp_path: Path) -> None:
    # Enough files for validate's workers: they are forked once the background read is in,
    # and judge the revision exactly as the checkout.
    count = PARALLEL_THRESHOLD // 2 + 1
    root = make_repo(tmp_path / "repo", connections={
        f"c{i}": connection(f"c{i}", spec={"url": f"https://gitlab.example.com/g{i}"},
                            credential={"token": f"t{i}"}) for i in range(count)},
        pipelines={f"p{i}": pipeline(f"p{i}", f"c{i}", owner="bob" if i % 7 == 0 else "alice")
                   for i in range(count)}, encrypt_all=False)
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    tree = _read(root)
    today = dt.datetime.now(dt.UTC).date()
    read = validate(tree.root, files=tree.files, today=today, jobs=2)
    checkout = validate(root, today=today, jobs=2)
    assert read.files == checkout.files == 2 * count + 2  # and members.yaml, .sops.yaml
    assert [f.code for f in read.findings] == [f.code for f in checkout.findings]
    assert {"CONNC301", "CONNC401"} <= {f.code for f in read.findings}
    assert read.connections == checkout.connections and read.pipelines == checkout.pipelines


def test_a_read_that_fails_is_raised_where_its_bytes_are_waited_for(repo: Path) -> None:
    tree = _read(repo)
    files = revisions.Blobs(Path("/dev/null/connc-revision/x"))
    files.add("/dev/null/connc-revision/x/a.yaml", b"1" * 40, 3)

    def fails() -> None:
        raise UsageError("git could not read revision 'x': an object is missing")

    files.arrive(fails, process.Deadline(DEADLINE))
    with pytest.raises(UsageError, match="an object is missing"):
        files.read(Path("/dev/null/connc-revision/x/a.yaml"))
    assert tree.files.read(tree.root / "connections.d" / "c.sops.yaml")  # read whole


def test_a_read_that_outlasts_the_deadline_ends_the_wait(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(revisions, "_JOIN_SECONDS", 0.2)
    files = revisions.Blobs(tmp_path)
    release = threading.Event()

    def hangs() -> None:
        release.wait(30)

    files.arrive(hangs, process.Deadline(0.2))
    started = time.monotonic()
    try:
        with pytest.raises(process.DeadlineExceeded, match="reading a revision"):
            files.settle()
    finally:
        release.set()
    assert time.monotonic() - started < 10


def test_a_process_forked_while_bytes_arrive_never_reads_them_as_absent(tmp_path: Path) -> None:
    # validate settles before it forks; were a fork ever made first, its copy of the read is
    # no thread at all, and reading must be a bug (exit 3), never a file judged without bytes.
    files = revisions.Blobs(tmp_path)
    files.add(f"{tmp_path}/a.yaml", b"2" * 40, 3)
    release = threading.Event()

    def arrives_late() -> None:
        release.wait(30)
        files.fill(b"2" * 40, memoryview(b"a: 1"))

    files.arrive(arrives_late, process.Deadline(DEADLINE))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit code
        try:
            files.read(tmp_path / "a.yaml")
        except RuntimeError:
            os._exit(7)
        except BaseException:
            os._exit(8)
        os._exit(9)
    release.set()
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert files.read(tmp_path / "a.yaml") == b"a: 1"  # here, the read came in


def test_a_run_that_ends_early_stops_its_background_git() -> None:
    deadline = process.Deadline(DEADLINE)
    with pytest.raises(KeyboardInterrupt), _stopped_on_failure(deadline):
        raise KeyboardInterrupt
    assert deadline.cancel.is_set()
    quiet = process.Deadline(DEADLINE)
    with _stopped_on_failure(quiet):
        pass
    assert not quiet.cancel.is_set()


def _answer(objects: dict[bytes, bytes]) -> bytes:
    return b"".join(oid + b" blob %d\n" % len(data) + data + b"\n"
                    for oid, data in objects.items())


def _split(objects: dict[bytes, bytes], answer: bytes) -> dict[bytes, bytes]:
    return {oid: bytes(data) for oid, data in revisions._split_batch(
        answer, list(objects), {o: len(d) for o, d in objects.items()}, "git could not read")}


def test_the_batch_answer_is_cut_into_its_objects() -> None:
    objects = {b"a" * 40: b"x: 1\n", b"b" * 40: b"", b"c" * 40: b"\n" * 3000 + b"y\n",
               b"d" * 40: b"blob 3\n\n"}  # what looks like a header inside an object
    assert _split(objects, _answer(objects)) == objects


@pytest.mark.parametrize("damage", ["newline", "size", "cut", "longer", "missing", "type"])
def test_a_batch_answer_that_is_not_what_was_asked_is_refused(damage: str) -> None:
    objects = {b"a" * 40: b"x: 1\n", b"b" * 40: b"y: 2\n"}
    answer = _answer(objects)
    if damage == "newline":  # the byte after an object's data must end it
        answer = answer.replace(b"x: 1\n\n", b"x: 1\nZ", 1)
    elif damage == "size":
        answer = answer.replace(b"blob 5", b"blob 4", 1)
    elif damage == "cut":
        answer = answer[:-3]
    elif damage == "longer":
        answer += b"b" * 40 + b" blob 0\n\n"
    elif damage == "missing":
        answer = answer.replace(b"a" * 40 + b" blob 5\nx: 1\n\n", b"a" * 40 + b" missing\n")
    else:
        answer = answer.replace(b" blob 5", b" tree 5", 1)
    with pytest.raises(UsageError, match="git could not read"):
        _split(objects, answer)
