"""A revision is read from git's objects in memory (`revisions.Blobs`), never written out: it
must be judged exactly as a checkout of the same commit is, whatever the commit holds, and a
file that holds the same bytes on both sides of a diff is judged once — which must give the
rows judging it twice gives.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from connc import process
from connc.diff import revisions
from connc.diff.compare import compare
from connc.diff.snapshot import snapshot
from connc.validate.run import Report, validate
from kit.build import MEMBERS, commit, connection, git, make_repo, pipeline, replace, write

DEADLINE = 60.0


def _tree(repo: Path, revision: str = "HEAD", previous: revisions.Tree | None = None,
          prefix: str = "") -> revisions.Tree:
    deadline = process.Deadline(DEADLINE)
    top, found_prefix = revisions.open_repository(repo / prefix if prefix else repo, deadline)
    return revisions.read_revision(top, found_prefix, revisions.resolve(top, revision, deadline),
                                   deadline, previous)


def _checkout(repo: Path, dest: Path, revision: str = "HEAD") -> Path:
    """A real checkout of the revision (`git worktree`), as render would read it."""
    git(repo, "worktree", "add", "-q", "--detach", str(dest), revision)
    return dest


def _judged(report: Report) -> tuple[object, ...]:
    return (report.findings, report.files, report.connections, report.pipelines,
            report.refused, report.members, report.config, report.admin_recipients,
            sorted(report.results))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", connections={
        "alices": connection("alices"),
        "teams": connection("teams", owner="bob", visibility="custom",
                            members=["team:platform"]),
    }, pipelines={"a": pipeline("a", "alices", "teams", teams=["platform"])})
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    return root


def _hostile(root: Path) -> None:
    """What a pull request can put in a revision: a misnamed file, a file over the size
    limit, a file that is not a connection, an attribute that rewrites on checkout, the
    same blob under two names."""
    write(root, "connections.d/notes.txt", {"a": 1})
    (root / "pipelines.d" / "big.yaml").write_bytes(b"#" * (1024 * 1024 + 1))
    (root / "pipelines.d" / "b.yaml").write_text("apiVersion: connc/v1\n")
    (root / ".gitattributes").write_text("pipelines.d/*.yaml ident\n")
    (root / "connections.d" / "copy.sops.yaml").write_bytes(
        (root / "connections.d" / "alices.sops.yaml").read_bytes())


@pytest.mark.parametrize("hostile", [False, True])
def test_a_revision_in_memory_is_judged_as_its_checkout(repo: Path, tmp_path: Path,
                                                        hostile: bool) -> None:
    if hostile:
        _hostile(repo)
        commit(repo, "hostile")
    today = dt.date(2026, 1, 1)
    tree = _tree(repo)
    checkout = _checkout(repo, tmp_path / "checkout")
    on_disk = validate(checkout, today=today, across_files=False)
    in_memory = validate(tree.root, files=tree.files, today=today, across_files=False)
    assert tree.skipped == {}
    assert set(in_memory.findings) ^ set(on_disk.findings) == set()
    assert _judged(in_memory) == _judged(on_disk)
    assert not hostile or len(on_disk.findings) > 3


def test_what_a_revision_does_not_read_is_in_doubt(repo: Path) -> None:
    """A symlink is never read in memory: `skipped` names it. Names one file on macOS are
    held, and refused unread by the reader as in a checkout (CONNC016). Diff puts all three
    in doubt (fails closed) instead of reading them."""
    (repo / "pipelines.d" / "B.yaml").write_text("a: 1\n")
    (repo / "pipelines.d" / "b.yaml").write_text("a: 1\n")
    os.symlink("../members.yaml", repo / "pipelines.d" / "link.yaml")
    commit(repo, "not held")
    tree = _tree(repo)
    assert set(tree.skipped) == {"pipelines.d/link.yaml"}
    assert not tree.files.is_file(tree.root / "pipelines.d" / "link.yaml")
    side = snapshot(tree.root, tree.skipped, files=tree.files, identities=tree.identities)
    assert set(side.doubtful) == {"pipelines.d/B.yaml", "pipelines.d/b.yaml",
                                  "pipelines.d/link.yaml"}


def test_a_repository_in_a_subdirectory_sees_the_gitattributes_above_it(tmp_path: Path) -> None:
    top = tmp_path / "top"
    root = make_repo(top / "ops" / "connc", connections={"alices": connection("alices")},
                     pipelines={"a": pipeline("a", "alices")})
    (top / ".gitattributes").write_text("*.yaml ident\n")
    git(top, "init", "-q", "-b", "main")
    commit(top, "base")
    tree = _tree(top, prefix="ops/connc")
    in_memory = validate(tree.root, files=tree.files, across_files=False)
    on_disk = validate(root, across_files=False)
    assert [f.code for f in in_memory.findings] == [f.code for f in on_disk.findings]
    assert "CONNC017" in {f.code for f in in_memory.findings}
    assert in_memory.findings[0].path.startswith("../../")


def test_nothing_of_a_revision_is_on_disk(repo: Path) -> None:
    tree = _tree(repo)
    assert not tree.root.exists() and not any(tree.root.parents[0].iterdir()
                                              if tree.root.parents[0].is_dir() else ())
    assert tree.files.is_dir(tree.root) and tree.files.is_file(tree.root / "members.yaml")
    with pytest.raises(OSError):
        tree.files.read(tree.root / "connections.d")
    with pytest.raises(OSError):
        tree.files.names(tree.root / "members.yaml")


def _changes(repo: Path, reuse: bool) -> list[object]:
    today = dt.date(2026, 1, 1)
    base_tree = _tree(repo, "main~1")
    before = snapshot(base_tree.root, base_tree.skipped, files=base_tree.files,
                      identities=base_tree.identities, today=today)
    head_tree = _tree(repo, "main", base_tree if reuse else None)
    after = snapshot(head_tree.root, head_tree.skipped, files=head_tree.files,
                     identities=head_tree.identities if reuse else None, today=today,
                     previous=before if reuse else None)
    return list(compare(before, after))


EDITS = {
    "an endpoint and a member": lambda root: (
        replace(root, "connections.d/teams.sops.yaml", "team:platform", "user:carol")),
    "who decrypts (.sops.yaml)": lambda root: (
        (root / ".sops.yaml").write_text((root / ".sops.yaml").read_text() + "# edited\n")),
    "the policy (connc.yaml)": lambda root: write(root, "connc.yaml", {
        "apiVersion": "connc/v1", "kind": "Config", "expiryWarningDays": 400}),
    "a team": lambda root: write(root, "members.yaml", {
        **MEMBERS, "teams": {"platform": {"members": ["alice", "bob"]}}}),
    "a file moved": lambda root: (root / "connections.d" / "alices.sops.yaml").rename(
        root / "connections.d" / "moved.sops.yaml"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_judging_a_file_once_for_both_sides_gives_the_same_rows(repo: Path, edit: str) -> None:
    EDITS[edit](repo)
    commit(repo, edit)
    assert _changes(repo, reuse=True) == _changes(repo, reuse=False)


def test_git_is_asked_for_an_object_once_per_diff(repo: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """HEAD takes what BASE already read: a pull request of one file reads one object."""
    replace(repo, "connections.d/teams.sops.yaml", "team:platform", "user:carol")
    commit(repo, "one file")
    base_tree = _tree(repo, "main~1")
    asked: list[bytes] = []
    real = revisions._git

    def counting(args: list[str], *rest: object, stdin: bytes | None = None,
                 **options: object) -> bytes:
        if args[:2] == ["cat-file", "--batch"]:
            asked.extend(filter(None, (stdin or b"").split(b"\n")))
        return real(args, *rest, stdin=stdin, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(revisions, "_git", counting)
    head_tree = _tree(repo, "main", base_tree)
    assert asked == [head_tree.identities["connections.d/teams.sops.yaml"]]
    assert head_tree.files.read(head_tree.root / "members.yaml") \
        == base_tree.files.read(base_tree.root / "members.yaml")
