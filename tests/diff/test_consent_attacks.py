"""Borrowed consent: an attacker with write access to a branch, and an account of their own,
tries to have `connc approvals` count someone else's consent (docs/approvals.md).

The estate (conftest.py): alice (GitHub account achen) owns the App `gh` and the npm index,
bob (bobm) the cluster and the registry, carol (carold) is the admin, dave (dave-o) is in the
team `data`. Mallory has write access to the repository and a GitHub account, `mallory`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from estate import GH, K8S, NPM
from pullrequest import NUMBER, approvals, github, verdict

from connc.diff.run import diff
from kit.build import REPO_ROOT, commit, git, replace
from kit.run import connc
from kit.servers.github_fake import DEFAULT_PULL_REPO as REPO
from kit.servers.github_fake import FakeGitHub, github_api  # noqa: F401

REDIRECT_APP = ("installationId: 42", "installationId: 42\n    apiUrl: https://evil.example/api")


def redirect_npm(estate: Path) -> tuple[str, str]:
    """alice's own pull request: her npm index moves. (base, head)"""
    base = git(estate, "rev-parse", "HEAD").strip()
    replace(estate, NPM, "url: https://npm.example.com/", "url: https://npm2.example.com/")
    return base, commit(estate, "move the npm index")


# ---------------------------------------------------------------------------- authorship


@pytest.mark.parametrize("pushed", [
    pytest.param({"author": "mallory"}, id="mallory-unsigned"),
    pytest.param({"author": "mallory", "reason": "valid"}, id="mallory-signed"),
    pytest.param({"author": "achen"}, id="as-alice-by-email-unsigned"),
    pytest.param({"author": "achen", "reason": "unknown_key"}, id="as-alice-unverified"),
    # GitHub verifies a signature against the committer: this is mallory's signature.
    pytest.param({"author": "achen", "committer": "mallory", "reason": "valid"},
                 id="as-alice-signed-by-mallory"),
    pytest.param({"author": None, "committer": None, "reason": "no_user",
                  "email": "alice@example.com"}, id="an-email-of-no-account"),
])
def test_a_commit_pushed_to_the_authors_branch_ends_authorship(
        github_api: FakeGitHub, estate: Path, pushed: dict[str, Any]) -> None:
    base, own = redirect_npm(estate)
    github_api.add_pull(number=NUMBER, author="achen", head_sha=own, reason="valid")
    ran = github(github_api, (estate, base, own), "--format", "text")
    assert ran.returncode == 0, ran.stdout + ran.stderr  # alice's signed commits are hers
    assert "authorship of @achen counts" in ran.stdout

    # Mallory pushes to alice's branch: alice's App now talks to mallory's host.
    replace(estate, GH, *REDIRECT_APP)
    head = commit(estate, "a commit alice did not write")
    github_api.add_commit(REPO, NUMBER, head, **pushed)
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert verdict(ran) == {"user:alice": None}
    assert json.loads(ran.stdout)["authorship"]["counts"] is False
    text = github(github_api, (estate, base, head), "--format", "text").stdout
    assert f"commit {head[:12]}" in text and "authorship of @achen does not count" in text


def test_an_unsigned_commit_of_the_author_needs_a_review(github_api: FakeGitHub,
                                                         estate: Path) -> None:
    base, head = redirect_npm(estate)
    github_api.add_pull(number=NUMBER, author="achen", head_sha=head)  # unsigned
    ran = github(github_api, (estate, base, head), "--format", "text")
    assert ran.returncode == 1
    assert "not signed" in ran.stdout
    # An admin's approval stands in for the owner who cannot consent by authoring.
    github_api.add_review(REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 0, ran.stdout
    assert verdict(ran) == {"user:alice": "carol"}


def test_the_authors_login_registered_again_authors_nothing(github_api: FakeGitHub,
                                                            estate: Path) -> None:
    alice = github_api.add_user("achen")
    replace(estate, "members.yaml", "github: achen", f"github: achen\n    githubId: {alice}")
    commit(estate, "alice's account by its id")
    base, head = redirect_npm(estate)
    github_api.rename_user("achen", "alice-chen")
    github_api.add_pull(number=NUMBER, author="achen", head_sha=head, reason="valid")
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 1 and verdict(ran) == {"user:alice": None}


# ---------------------------------------------------------------------------- accounts at BASE


def test_a_user_the_pull_request_adds_to_a_dangling_admin_name_consents_to_nothing(
        github_api: FakeGitHub, estate: Path) -> None:
    # BASE: connc.yaml still names carol an admin, but she is no user any more (CONNC215).
    replace(estate, "members.yaml", "  carol:\n    github: carold\n", "")
    base = commit(estate, "carol left")
    replace(estate, "members.yaml", "users:\n", "users:\n  carol:\n    github: mallory\n")
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - alice")
    head = commit(estate, "mallory is carol now")
    github_api.add_pull(number=NUMBER, author="mallory", head_sha=head, reason="valid")
    github_api.add_review(REPO, NUMBER, "mallory", "APPROVED")
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 1, ran.stdout
    assert verdict(ran) == {"admins": None}
    # Named directly, a user BASE does not have consents to nothing either.
    ran = approvals(estate, base, head, "--approved-by", "carol")
    assert ran.returncode == 1 and "no user at BASE: carol" in ran.stdout


def test_a_login_registered_again_by_someone_else_speaks_for_nobody(github_api: FakeGitHub,
                                                                    estate: Path) -> None:
    bob = github_api.add_user("bobm")
    replace(estate, "members.yaml", "github: bobm", f"github: bobm\n    githubId: {bob}")
    base = commit(estate, "bob's account by its id")
    replace(estate, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    head = commit(estate, "redirect the cluster")
    github_api.rename_user("bobm", "bob-renamed")  # bob renames his account...
    github_api.add_pull(number=NUMBER, author="dave-o", head_sha=head)
    github_api.add_review(REPO, NUMBER, "bobm", "APPROVED")  # ...mallory registers `bobm`
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 1 and verdict(ran) == {"user:bob": None}

    github_api.add_review(REPO, NUMBER, "bob-renamed", "APPROVED")  # bob, by his id
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 0 and verdict(ran) == {"user:bob": "bob"}


# ---------------------------------------------------------------------------- dangling names


def rows(estate: Path, section: str) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
    return [(c.change, c.values, c.approvers)
            for c in diff(estate, "main~1", "main").changes if c.section == section and c.widens]


@pytest.mark.parametrize(("user", "still"), [
    pytest.param("carol", "admin in connc.yaml", id="an-admin"),
    pytest.param("bob", "owner of connection k8s, owner of connection reg, owner of pipeline "
                 "build, member of team platform", id="an-owner"),
    pytest.param("dave", "member of team data", id="a-teams-only-member"),
])
def test_removing_a_user_still_named_needs_an_admin(estate: Path, user: str,
                                                    still: str) -> None:
    # The name is left dangling: a later pull request that adds a user of that name hands
    # them what the name holds, under a row that only says "user added".
    login = {"carol": "carold", "bob": "bobm", "dave": "dave-o"}[user]
    replace(estate, "members.yaml", f"  {user}:\n    github: {login}\n", "")
    commit(estate, f"remove {user}")
    assert rows(estate, "users") == [
        ("removed, still named", {"user": user, "before": login, "after": still}, ("admins",))]
    proc = connc("diff", "--repo", str(estate), "main~1", "main", key=None, cwd=REPO_ROOT)
    assert proc.returncode == 1, proc.stdout


def test_removing_a_user_named_nowhere_is_free(estate: Path) -> None:
    replace(estate, "members.yaml", "  dave:\n    github: dave-o\n", "")
    replace(estate, "members.yaml", "  data:\n    members:\n    - dave\n",
            "  data:\n    members: []\n")
    commit(estate, "dave left")
    result = diff(estate, "main~1", "main")
    assert not result.widened, result.changes
    assert [(c.change, c.values["user"]) for c in result.changes if c.section == "users"] == [
        ("removed", "dave")]


@pytest.mark.parametrize(("old", "new", "row"), [
    pytest.param("github: bobm", "github: bobm\n    githubId: 583231",
                 ("bobm", "bobm (id 583231)", True), id="id-added"),
    pytest.param("github: bobm\n    githubId: 583231", "github: bobm\n    githubId: 583239",
                 ("bobm (id 583231)", "bobm (id 583239)", True), id="id-changed"),
    # Back to the login: whoever registers `bobm` next would speak for bob.
    pytest.param("github: bobm\n    githubId: 583231", "github: bobm",
                 ("bobm (id 583231)", "bobm", True), id="id-removed"),
    # The id is what reviews are matched by: a renamed login changes nobody's consent.
    pytest.param("github: bobm\n    githubId: 583231", "github: bob-new\n    githubId: 583231",
                 ("bobm (id 583231)", "bob-new (id 583231)", False), id="login-renamed"),
    pytest.param("github: bobm\n    githubId: 583231", "name: Bob",
                 ("bobm (id 583231)", "", False), id="account-removed"),
])
def test_an_account_id_changed(estate: Path, old: str, new: str,
                               row: tuple[str, str, bool]) -> None:
    replace(estate, "members.yaml", "github: bobm", old)
    commit(estate, "before")
    replace(estate, "members.yaml", old, new)
    commit(estate, "after")
    before, after, widens = row
    [change] = [c for c in diff(estate, "main~1", "main").changes if c.section == "users"]
    assert (change.change, change.values, change.widens, change.approvers) == (
        "account changed", {"user": "bob", "before": before, "after": after}, widens,
        ("admins",) if widens else ())
