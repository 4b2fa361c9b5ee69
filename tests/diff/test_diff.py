"""`connc diff`: real git repositories in tmp, changed the way a pull request changes them.

One base repository is built and committed per module (sops encryption is the slow part) and
copied for each test; each test changes files, commits or not, and diffs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connc.diff.compare import Change, Diff
from connc.diff.report import _code
from connc.diff.run import diff as run_diff
from connc.errors import UsageError
from connc.process import Deadline
from connc.sops import binary
from kit.build import (
    MEMBERS,
    REPO_ROOT,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    commit,
    connection,
    git,
    make_repo,
    pipeline,
    replace,
    sops_rules,
    write,
)
from kit.keys import new_age_key
from kit.run import connc, in_process

ALICES = "connections.d/alices.sops.yaml"
TEAM = "connections.d/team.sops.yaml"
OPEN = "connections.d/open.sops.yaml"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    members = {**MEMBERS, "users": {**MEMBERS["users"], "carol": {}}}
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("HOME", str(home))
        patch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        repo = make_repo(tmp_path_factory.mktemp("template") / "repo", members=members,
                         connections={
            "alices": connection("alices", spec={"url": "https://g.example.com/a"}),
            "team": connection("team", owner="bob", visibility="custom",
                               members=["team:platform"], spec={"url": "https://g.example.com/t"}),
            "open": connection("open", visibility="public", spec={"url": "https://g.example.com/o"}),
        }, pipelines={
            "a": pipeline("a", "alices", "team", teams=["platform"]),
            "c": pipeline("c", "open", owner="carol"),
        })
        git(repo, "init", "-q", "-b", "main")
        commit(repo, "base")
        yield repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "repo", symlinks=True))


def diff(repo: Path, base: str, head: str | None = None, *, unread: bool = False) -> Diff:
    """`connc.diff.diff`, asserting that the test's edits left every file readable."""
    result = run_diff(repo, base, head)
    assert unread or not any(c.section == "unread" for c in result.changes), result.changes
    return result


def rows(changes: list[Change], section: str) -> list[tuple[str, dict[str, str], bool]]:
    return [(c.change, c.values, c.widens) for c in changes if c.section == section]


def run(repo: Path, *args: str) -> tuple[int, str]:
    """`connc diff` keyless, as a pull request's check runs it: its verdict and report."""
    code, stdout, stderr = in_process("diff", "--repo", repo, *args, key=None)
    assert code in (0, 1), stderr  # not an error (2) or a bug (3) in place of a verdict
    return code, stdout


# ---------------------------------------------------------------------------- verdicts


def test_no_change_exits_0(repo: Path) -> None:
    code, out = run(repo, "main")
    assert code == 0
    assert out.splitlines()[2] == "**No access widened**: nothing that affects access changed."
    code, out = run(repo, "main", "main", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["widened"] is False
    assert all(rows == [] for rows in data["changes"].values())


def test_a_used_grant_added_widens(repo: Path) -> None:
    replace(repo, "pipelines.d/a.yaml", "- connection: team\n",
            "- connection: team\n- connection: open\n")
    head = commit(repo)
    result = diff(repo, "main~1", "main")
    assert result.head.commit == head and result.widened
    assert rows(result.changes, "grants") == [
        ("changed", {"pipeline": "a", "connection": "open", "before": "may", "after": "uses"},
         True)]
    code, out = run(repo, "main~1", "main")
    assert code == 1
    assert "**⚠️ Access widened**: 1 of 1 change widens access (marked ⚠️)." in out
    assert "| ⚠️ | changed | `a` | `open` | `may` | `uses` |" in out


def test_a_grant_removed_does_not_widen(repo: Path) -> None:
    replace(repo, "pipelines.d/a.yaml", "- connection: alices\n", "")
    commit(repo)
    code, out = run(repo, "main~1", "--format", "json")
    assert code == 0
    assert json.loads(out)["changes"]["grants"] == [
        {"change": "changed", "widens": False, "pipeline": "a", "connection": "alices",
         "before": "uses", "after": "may", "approvers": [], "reseal": False}]


def test_private_to_custom_to_public(repo: Path) -> None:
    replace(repo, ALICES, "visibility: private",
            "visibility: custom\n    members:\n        - user:carol")
    commit(repo, "custom")
    replace(repo, ALICES, "visibility: custom", "visibility: public")
    commit(repo, "public")
    first = diff(repo, "main~2", "main~1")
    assert rows(first.changes, "scopes") == [
        ("visibility widened", {"connection": "alices", "before": "private", "after": "custom"},
         True),
        ("member added", {"connection": "alices", "before": "", "after": "user:carol"}, True)]
    assert rows(first.changes, "grants") == [
        ("added", {"pipeline": "c", "connection": "alices", "before": "", "after": "may"}, True)]
    second = diff(repo, "main~1", "main")
    # The member stays listed; it no longer counts once the scope is public.
    assert rows(second.changes, "scopes") == [
        ("visibility widened", {"connection": "alices", "before": "custom", "after": "public"},
         True)]
    # Public: one grant to every pipeline (`*`), not one row per pipeline.
    assert rows(second.changes, "grants") == [
        ("added", {"pipeline": "*", "connection": "alices", "before": "", "after": "may"}, True)]
    code, out = run(repo, "main~2", "main")
    assert code == 1
    assert "| ⚠️ | visibility widened | `alices` | `private` | `public` |" in out


def test_narrowing_does_not_widen(repo: Path) -> None:
    replace(repo, TEAM, "visibility: custom", "visibility: private")
    commit(repo)
    result = diff(repo, "main~1", "main")
    assert not result.widened
    assert rows(result.changes, "scopes") == [
        ("visibility narrowed", {"connection": "team", "before": "custom", "after": "private"},
         False)]
    # Pipeline a (alice) still lists `team` (bob's, now private): render refuses it.
    assert rows(result.changes, "grants") == [
        ("changed", {"pipeline": "a", "connection": "team", "before": "uses",
                     "after": "denied"}, False)]
    assert run(repo, "main~1", "main")[0] == 0


def test_owner_and_members_added(repo: Path) -> None:
    replace(repo, OPEN, "owner: alice", "owner: bob")
    replace(repo, TEAM, "- team:platform", "- team:platform\n        - user:carol")
    replace(repo, "members.yaml", "    - bob\n", "    - bob\n    - carol\n")
    replace(repo, "pipelines.d/c.yaml", "owner: carol", "owner: carol\n  teams:\n  - platform")
    commit(repo)
    result = diff(repo, "main~1", "main")
    assert rows(result.changes, "scopes") == [
        ("owner changed", {"connection": "open", "before": "alice", "after": "bob"}, True),
        ("member added", {"connection": "team", "before": "", "after": "user:carol"}, True)]
    assert rows(result.changes, "teams") == [
        ("member added", {"team": "platform", "user": "carol"}, True)]
    assert rows(result.changes, "claims") == [
        ("team added", {"pipeline": "c", "before": "", "after": "platform"}, True)]
    assert ("added", {"pipeline": "c", "connection": "team", "before": "", "after": "may"},
            True) in rows(result.changes, "grants")


def test_a_recipient_added_by_updatekeys(repo: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _key, carol_key = new_age_key(tmp_path)
    write(repo, ".sops.yaml", sops_rules(TEST_RECIPIENT, carol_key))
    replace(repo, "members.yaml", "carol: {}", f"carol:\n    recipients:\n    - {carol_key}")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    for relpath in (OPEN, TEAM, ALICES):  # the rule covers all: a file left alone is refused
        binary.update_keys(repo, relpath, deadline=Deadline(60))
    commit(repo)
    result = diff(repo, "main~1", "main")
    assert rows(result.changes, "recipients") == [
        ("added", {"connection": "alices", "recipient": f"age:{carol_key}",
                   "principal": "user:carol"}, True),
        ("added", {"connection": "open", "recipient": f"age:{carol_key}",
                   "principal": "user:carol"}, True),
        ("added", {"connection": "team", "recipient": f"age:{carol_key}",
                   "principal": "user:carol"}, True)]
    assert result.widened
    # And back: removing the recipient narrows.
    write(repo, ".sops.yaml", sops_rules(TEST_RECIPIENT))
    for relpath in (OPEN, TEAM, ALICES):
        binary.update_keys(repo, relpath, deadline=Deadline(60))
    back = diff(repo, "main")
    assert rows(back.changes, "recipients") == [
        ("removed", {"connection": "alices", "recipient": f"age:{carol_key}",
                     "principal": "user:carol"}, False),
        ("removed", {"connection": "open", "recipient": f"age:{carol_key}",
                     "principal": "user:carol"}, False),
        ("removed", {"connection": "team", "recipient": f"age:{carol_key}",
                     "principal": "user:carol"}, False)]
    assert not back.widened


def test_connections_and_pipelines_added_and_removed(repo: Path) -> None:
    (repo / OPEN).unlink()
    write(repo, "pipelines.d/b.yaml", pipeline("b", owner="bob"))
    commit(repo)
    result = diff(repo, "main~1", "main")
    assert rows(result.changes, "connections") == [
        ("removed", {"connection": "open", "type": "gitlab", "owner": "alice",
                     "visibility": "public"}, False)]
    # A new pipeline claims its owner's identity (docs/diff.md): it widens, bob consents.
    assert rows(result.changes, "pipelines") == [
        ("added", {"pipeline": "b", "owner": "bob", "teams": ""}, True)]
    [added] = [c for c in result.changes if c.section == "pipelines"]
    assert added.approvers == ("user:bob",)
    # b may use bob's `team`: its grant is what widens.
    assert [(g["pipeline"], g["connection"], w) for _c, g, w in rows(result.changes, "grants")
            if w] == [("b", "team", True)]
    reverse = diff(repo, "main", "main~1")
    assert ("added", {"connection": "open", "type": "gitlab", "owner": "alice",
                      "visibility": "public"}, True) in rows(reverse.changes, "connections")


def test_a_new_pipeline_does_not_list_every_public_connection(repo: Path) -> None:
    write(repo, "pipelines.d/d.yaml", pipeline("d", "open", owner="carol"))
    result = diff(repo, "main")
    assert rows(result.changes, "grants") == [
        ("added", {"pipeline": "d", "connection": "open", "before": "", "after": "uses"}, True)]


# ---------------------------------------------------------------------------- working tree


def test_working_tree_when_head_is_omitted(repo: Path) -> None:
    replace(repo, "pipelines.d/c.yaml", "- connection: open", "- connection: open\n- connection: team")
    status = git(repo, "status", "--porcelain")
    index = (repo / ".git" / "index").read_bytes()
    result = diff(repo, "main")
    assert result.head.commit is None
    # c (carol) is not in `team`'s scope: listed, but denied, so nothing widens.
    assert rows(result.changes, "grants") == [
        ("added", {"pipeline": "c", "connection": "team", "before": "", "after": "denied"},
         False)]
    code, out = run(repo, "main")
    assert code == 0 and "→ the working tree" in out.splitlines()[0]
    assert rows(diff(repo, "main", "main").changes, "grants") == []  # HEAD given: committed
    # Neither the working tree nor the index was touched.
    assert git(repo, "status", "--porcelain") == status
    assert (repo / ".git" / "index").read_bytes() == index


def test_a_subdirectory_repository(tmp_path: Path, template: Path) -> None:
    outer = tmp_path / "outer"
    shutil.copytree(template, outer / "infra" / "connections", symlinks=True,
                    ignore=shutil.ignore_patterns(".git"))
    git(outer, "init", "-q", "-b", "main")
    commit(outer, "base")
    sub = outer / "infra" / "connections"
    replace(sub, ALICES, "visibility: private", "visibility: public")
    result = diff(sub, "main")
    assert [c.change for c in result.changes if c.section == "scopes"] == ["visibility widened"]


def test_hook_environment_does_not_redirect_git(repo: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A pre-commit hook exports these for its own repository.
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere" / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "elsewhere" / "index"))
    assert diff(repo, "main").changes == []


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("revision", ["no-such-branch", "main:members.yaml", "--output=x"])
def test_bad_revision_exits_2(repo: Path, revision: str) -> None:
    proc = connc("diff", "--repo", str(repo), "--", revision, key=None, cwd=REPO_ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("connc: error: ")
    assert "revision" in proc.stderr and "fatal" not in proc.stderr
    assert not (repo / "x").exists()


def test_not_a_git_repository_exits_2(tmp_path: Path) -> None:
    plain = make_repo(tmp_path / "plain", encrypt_all=False)
    proc = connc("diff", "--repo", str(plain), "main", key=None, cwd=REPO_ROOT)
    assert proc.returncode == 2 and "is not in a git work tree" in proc.stderr


def test_not_a_connection_repository(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "README").write_text("hello\n")
    git(other, "init", "-q", "-b", "main")
    commit(other, "base")
    with pytest.raises(UsageError, match="not a connection repository at either revision"):
        diff(other, "main")


# ---------------------------------------------------------------------------- unreadable files


def test_a_file_render_refuses_at_the_head_needs_an_admin(repo: Path) -> None:
    write(repo, TEAM, "apiVersion: connc/v1\nkind: Connection\nmetadata: [unclosed\n")
    commit(repo, "broken")
    broken = diff(repo, "main~1", "main", unread=True)
    # Render refuses it, so it is compared as absent (its grant and the connection are
    # removed); but review could not judge it, so the verdict fails closed until an admin
    # does: a file diff cannot read is never passed over.
    assert rows(broken.changes, "unread") == [
        ("refused", {"file": TEAM, "at": "head", "why": "CONNC001 at line 4"}, True)]
    assert [c.approvers for c in broken.changes if c.section == "unread"] == [("admins",)]
    assert ("removed", {"pipeline": "a", "connection": "team", "before": "uses",
                        "after": ""}, False) in rows(broken.changes, "grants")
    assert [c for c, _v, _w in rows(broken.changes, "connections")] == ["removed"]
    assert broken.widened
    # The change that repairs it shows its access as added: the verdict fails closed.
    git(repo, "checkout", "-q", "main~1", "--", TEAM)
    repaired = diff(repo, "main", unread=True)
    assert repaired.widened
    assert rows(repaired.changes, "unread") == [
        ("refused", {"file": TEAM, "at": "base", "why": "CONNC001 at line 4"}, False)]
    code, out = run(repo, "main")
    assert code == 1 and "### Files render refuses" in out


def test_a_file_no_render_reads_is_listed_without_widening(repo: Path) -> None:
    write(repo, "connections.d/README.md", "notes\n")
    commit(repo, "notes")
    result = diff(repo, "main~1", "main", unread=True)
    assert rows(result.changes, "unread") == [
        ("refused", {"file": "connections.d/README.md", "at": "head", "why": "CONNC012 at line 1"},
         False)]
    assert not result.widened


def test_a_symlink_in_a_revision_is_not_followed(repo: Path) -> None:
    (repo / "pipelines.d" / "link.yaml").symlink_to("/etc/passwd")
    commit(repo)
    result = diff(repo, "main", "main", unread=True)
    # Never read, and at the head it fails the verdict closed: no consent makes it safe.
    assert rows(result.changes, "integrity") == [
        ("a symlink", {"file": "pipelines.d/link.yaml", "at": "head"}, True),
        ("a symlink", {"file": "pipelines.d/link.yaml", "at": "base"}, False)]
    assert result.widened


# ---------------------------------------------------------------------------- output


def test_markdown_sections_only_for_what_changed(repo: Path) -> None:
    replace(repo, OPEN, "owner: alice", "owner: bob")
    code, out = run(repo, "main")
    headings = [line for line in out.splitlines() if line.startswith("#")]
    assert headings == ["## connc diff: `main` (" + git(repo, "rev-parse", "main")[:12]
                        + ") → the working tree", "### Consent needed",
                        "### Connection scopes and owners"]
    assert code == 1


def test_json_has_every_section(repo: Path) -> None:
    data: dict[str, Any] = json.loads(run(repo, "main", "--format", "json")[1])
    assert list(data["changes"]) == ["grants", "scopes", "specs", "narrowing", "recipients",
                                     "keys", "teams", "users", "claims", "connections",
                                     "credentials", "pipelines", "policy", "integrity",
                                     "unread"]
    assert data["base"]["revision"] == "main" and data["head"] == {"revision": None,
                                                                    "commit": None}


@pytest.mark.parametrize(("value", "cell"), [
    ("team:platform", "`team:platform`"),
    ("a|b", "`a\\|b`"),
    ("x`y", "``x`y``"),
    ("`x", "`` `x ``"),
    ("line\nbreak", "`line\N{REPLACEMENT CHARACTER}break`"),
    ("", "—"),
])
def test_cells_are_safe_code_spans(value: str, cell: str) -> None:
    assert _code(value) == cell
