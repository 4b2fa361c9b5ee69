"""The diff's newest paths, tried as an attacker with a branch and no key: a revision's files
read in the background (`revisions.Blobs.arrive`), and stopped by an interrupt; the rules one
side takes from the other; grants built by copies; the credential index built lazily. Each
holds the fast path to what the plain one answers."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import scopekit
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from connc import process
from connc.diff import revisions
from connc.diff.compare import compare
from connc.diff.run import diff
from connc.diff.snapshot import Snapshot, snapshot
from connc.repository import ConnectionSummary, PipelineSummary
from connc.scope import (
    GrantTable,
)
from connc.validate.run import validate
from kit.build import (
    REPO_ROOT,
    TEST_RECIPIENT,
    commit,
    connection,
    git,
    make_repo,
    pipeline,
    pipeline_added,
    sops_env,
    sops_rules,
    write,
)
from kit.run import popen

DEADLINE = 60.0


def _tree(top: Path, prefix: str = "", revision: str = "HEAD") -> revisions.Tree:
    deadline = process.Deadline(DEADLINE)
    found_top, found_prefix = revisions.open_repository(top / prefix if prefix else top,
                                                        deadline)
    return revisions.read_revision(found_top, found_prefix,
                                   revisions.resolve(found_top, revision, deadline), deadline)


def test_a_revision_whose_background_read_comes_last_is_judged_as_its_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every object read in the background arrives only after validate has asked for it: a
    # file judged before its bytes came (read as absent, empty or over its limit) would
    # judge otherwise than the checkout. Below a prefix, with one blob at a top-level name
    # and in connections.d (read at once), a case variant, one over its limit.
    top = tmp_path / "top"
    root = make_repo(top / "ops" / "connc", connections={
        "alices": connection("alices"),
        "teams": connection("teams", owner="bob", visibility="custom",
                            members=["team:platform"])},
        pipelines={"a": pipeline("a", "alices", "teams", teams=["platform"])},
        encrypt_all=False)
    shared = (root / "members.yaml").read_bytes()
    (root / "connections.d" / "members.sops.yaml").write_bytes(shared)
    (root / "pipelines.d" / "A.yaml").write_bytes((root / "pipelines.d" / "a.yaml").read_bytes())
    (root / "pipelines.d" / "big.yaml").write_bytes(b"#" * (1024 * 1024 + 1))
    write(root, "connections.d/notes.txt", {"a": 1})
    git(top, "init", "-q", "-b", "main")
    commit(top, "base")
    real = revisions._cat
    late: list[int] = []

    def arrives_late(top_: Path, oids: list[bytes], *rest: object) -> None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)
            late.append(len(oids))
        real(top_, oids, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(revisions, "_cat", arrives_late)
    today = dt.date(2026, 1, 1)
    tree = _tree(top, "ops/connc")
    in_memory = validate(tree.root, files=tree.files, today=today, across_files=False)
    on_disk = validate(root, today=today, across_files=False)
    assert late and late[0] >= 4  # the connection and pipeline files came in the background
    assert [(f.path, f.line, f.code) for f in in_memory.findings] \
        == [(f.path, f.line, f.code) for f in on_disk.findings]
    assert in_memory.refused.keys() == on_disk.refused.keys()
    assert in_memory.connections == on_disk.connections
    assert in_memory.pipelines == on_disk.pipelines


_SLOW_GIT = """#!/bin/sh
# The second `cat-file --batch` of the run (BASE's files read in the background) hangs.
case "$*" in
  *"cat-file --batch --buffer"*)
    echo $$ >> "$CONNC_TEST_MARK"
    if [ "$(wc -l < "$CONNC_TEST_MARK")" -eq 2 ]; then exec sleep 120; fi ;;
esac
exec {git} "$@"
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie is dead: only its parent's reap is left


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_a_revision_is_read_in_the_background_stops_its_git(
        tmp_path: Path, signum: int) -> None:
    root = pipeline_added(tmp_path / "repo")
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(_SLOW_GIT.format(git=shutil.which("git")))
    wrapper.chmod(0o755)
    mark = tmp_path / "mark"
    mark.touch()
    env = {**sops_env(), "PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}",
           "CONNC_TEST_MARK": str(mark)}
    proc = popen("diff", "main~1", "main", "--repo", str(root), key=None, env=env,
                 cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if len(mark.read_text().split()) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        pids = [int(pid) for pid in mark.read_text().split()]
        assert len(pids) == 2, proc.communicate(timeout=60)
        time.sleep(0.5)  # the main thread goes on, then waits for the bytes
        assert proc.poll() is None
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and out == ""
    for _ in range(100):
        if _gone(pids[1]):
            break
        time.sleep(0.05)
    assert _gone(pids[1]), "the background git outlived connc"


def test_every_object_of_a_long_list_arrives_in_the_background(tmp_path: Path) -> None:
    # The ids go to `cat-file --batch` through a pipe far smaller than the list, written
    # without blocking while its answers stream back: none may be lost or read twice.
    root = make_repo(tmp_path / "repo", connections={"c": connection("c")},
                     pipelines={"p": pipeline("p", "c")}, encrypt_all=False)
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    deadline = process.Deadline(DEADLINE)
    top, _prefix = revisions.open_repository(root, deadline)
    oids = [line.split()[2].encode() for line in git(root, "ls-tree", "-r", "HEAD").splitlines()]
    files = revisions.Blobs(Path("/dev/null/connc-revision/x"))
    sizes = {oid: int(git(root, "cat-file", "-s", oid.decode())) for oid in oids}
    for index, oid in enumerate(oids):
        files.add(f"/dev/null/connc-revision/x/{index}", oid, sizes[oid])
    order = oids * (30_000 // len(oids))  # about 1.2 MB of ids, each object many times
    files.arrive(lambda: revisions._cat(top, order, sizes, files, "reading", deadline), deadline)
    for index, oid in enumerate(oids):
        assert files.read(Path(f"/dev/null/connc-revision/x/{index}")) \
            == git(root, "cat-file", "blob", oid.decode()).encode()


_OWNERS = st.sampled_from(["a", "b"])


@st.composite
def _estates(draw: st.DrawFn) -> tuple[list[ConnectionSummary], list[PipelineSummary]]:
    # Few ids, so that the edges come often: a pipeline id twice, a connection id twice, a
    # public connection used (and so "uses", not only EVERYONE's "may"), a use of a
    # connection the pipeline may use anyway, a use denied, a use of a missing connection.
    refs = st.sampled_from(["user:a", "user:b", "team:t", "pipeline:p0", "pipeline:p1"])
    connections = [scopekit.connection(draw(st.sampled_from(["c0", "c1", "c2"])), draw(_OWNERS),
                               draw(st.sampled_from(["private", "public", "custom"])),
                               draw(st.lists(refs, max_size=3)))
                   for _ in range(draw(st.integers(0, 5)))]
    pipelines = [scopekit.pipeline(draw(st.sampled_from(["p0", "p1"])), draw(_OWNERS),
                           draw(st.lists(st.just("t"), max_size=1)),
                           draw(st.lists(st.sampled_from(["c0", "c1", "c2", "c9"]), max_size=3)))
                 for _ in range(draw(st.integers(0, 5)))]
    return connections, pipelines


@given(_estates())
@settings(max_examples=500, deadline=None)
def test_grants_of_ids_seen_twice_are_decide_for_each(
        drawn: tuple[list[ConnectionSummary], list[PipelineSummary]]) -> None:
    """Each pair is what `decide` says of the connection read last under its id; of two
    pipelines under one id, a use is the last one's that uses it, else "may" when either
    may use it. A public connection is EVERYONE's "may" and a use of it is "uses"."""
    assert scopekit.granted(*drawn) == scopekit.decided(*drawn)


def _side(connections: dict[str, ConnectionSummary]) -> Snapshot:
    return Snapshot(connections=connections, pipelines={}, grants=GrantTable([], []),
                    members=None,
                    config=None, rules=None, principals={}, unread={}, doubtful={}, files=0)


_BLOCKS = st.frozensets(st.sampled_from([b"k1", b"k2", b"k3", b"d1", b"d2", b"d3"]),
                        max_size=3)


@st.composite
def _two_sides(draw: st.DrawFn) -> tuple[Snapshot, Snapshot]:
    base = {cid: scopekit.connection(cid, draw(_OWNERS), "private", [], blocks=draw(_BLOCKS))
            for cid in draw(st.lists(st.sampled_from(["c0", "c1", "c2", "c3"]), unique=True))}
    head: dict[str, ConnectionSummary] = {}
    for cid in ["c0", "c1", "c2", "c3", "c4", "c5"]:
        kept = draw(st.sampled_from(["same object", "new", "gone"]))
        if kept == "same object" and cid in base:
            head[cid] = base[cid]  # judged once for both sides: one object
        elif kept == "new":
            head[cid] = scopekit.connection(cid, draw(_OWNERS), "private", [], blocks=draw(_BLOCKS))
    return _side(base), _side(head)


@given(_two_sides())
@settings(max_examples=500, deadline=None)
def test_every_block_seen_under_another_id_at_base_is_a_copy_or_a_move(
        sides: tuple[Snapshot, Snapshot]) -> None:
    base, head = sides
    expected = set()
    for cid, new in head.connections.items():
        old = base.connections.get(cid)
        own = old.wrapped_keys | old.ciphertexts if old is not None else frozenset()
        arrived = (new.wrapped_keys | new.ciphertexts) - own
        for source, held in base.connections.items():
            if source != cid and arrived & (held.wrapped_keys | held.ciphertexts):
                expected.add(("copied here" if source in head.connections else "moved here",
                              cid, source, base.connections[source].owner))
    rows = {(row.change, row.values["connection"], row.values["from"], row.approvers[0][5:])
            for row in compare(base, head) if row.section == "credentials"
            and row.change in ("copied here", "moved here")}
    assert rows == expected


_OTHER_RECIPIENT = "age12mu0ua5xj6snwj4w899x4gr50wxfcvy6d0sl2gnc3c9jyftrxq7qwx5ltr"


def _many_rules(*recipients: str) -> str:
    """A .sops.yaml of enough rules to be matched as one set (`sops.rules._RuleSet`)."""
    rules = [{"path_regex": f"^other{index}/.*$", "age": TEST_RECIPIENT} for index in range(19)]
    rules.append(sops_rules(*recipients)["creation_rules"][0])
    return yaml.safe_dump({"creation_rules": rules})


def _symlinked_copy(root: Path) -> None:
    (root / "rules.yaml").write_bytes((root / ".sops.yaml").read_bytes())
    (root / ".sops.yaml").unlink()
    (root / ".sops.yaml").symlink_to("rules.yaml")


RULE_EDITS = {
    "a recipient added": lambda root: (root / ".sops.yaml").write_text(
        _many_rules(TEST_RECIPIENT, _OTHER_RECIPIENT)),
    "the first rule sends connections elsewhere": lambda root: (root / ".sops.yaml").write_text(
        _many_rules().replace("^other0/.*$", "^connections/.*$")),
    "a comment only": lambda root: (root / ".sops.yaml").write_text(_many_rules() + "# x\n"),
    "connc.yaml only": lambda root: write(root, "connc.yaml", {
        "apiVersion": "connc/v1", "kind": "Config", "expiryWarningDays": 400}),
    "a pipeline only": lambda root: write(root, "pipelines.d/q.yaml", pipeline("q", "c")),
    "a symlink to the same bytes": _symlinked_copy,
    "beside a name one with it on macOS": lambda root: shutil.copy(root / ".sops.yaml",
                                                                  root / ".SOPS.yaml"),
}


@pytest.mark.parametrize("edit", list(RULE_EDITS))
def test_rules_taken_from_base_never_hide_what_changed(tmp_path: Path, edit: str) -> None:
    # HEAD takes BASE's rules (one object: compare skips them) only when it read the same
    # .sops.yaml; whatever else changed, the rows are those of both sides judged afresh.
    root = make_repo(tmp_path / "repo", connections={"c": connection("c")},
                     pipelines={"p": pipeline("p", "c")})
    (root / ".sops.yaml").write_text(_many_rules())
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    RULE_EDITS[edit](root)
    commit(root, edit)
    reused = diff(root, "main~1", "main")
    today = dt.datetime.now(dt.UTC).date()
    fresh = [snapshot(tree.root, tree.skipped, files=tree.files, today=today)
             for tree in (_tree(root, revision="main~1"), _tree(root, revision="main"))]
    assert list(reused.changes) == compare(*fresh)
    shared = reused.head_side.rules is reused.base_side.rules
    assert shared == (edit == "a pipeline only")
    policy = {row.change for row in reused.changes if row.values.get("file") == ".sops.yaml"}
    if edit == "a recipient added":
        assert "recipient added" in policy
    if edit == "the first rule sends connections elsewhere":
        assert "path_regex changed" in policy
    if edit in ("a symlink to the same bytes", "beside a name one with it on macOS"):
        assert reused.head_side.rules is None and reused.widened
