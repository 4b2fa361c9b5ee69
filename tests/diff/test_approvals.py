"""`connc approvals`: consent from GitHub reviews (a local fake of the API) or --approved-by.

The estate (conftest.py): bob owns the cluster `k8s` (GitHub account bobm), alice the App and
npm (achen), carol is the admin (carold). A pull request redirects the cluster's server, which
needs bob's consent, and adds dave to a team, which needs an admin's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from estate import K8S
from pullrequest import NUMBER, approvals, github, verdict

from connc.diff.approvals import Accounts, Consent, _who, authorship
from connc.github.pulls import Account, Commit, PullRequest
from connc.schema.models import User
from kit.build import commit, git, replace
from kit.servers.github_fake import (  # noqa: F401
    DEFAULT_PULL_REPO,
    FakeGitHub,
    github_api,
    unresponsive_server,
)


@pytest.fixture
def change(estate: Path) -> tuple[Path, str, str]:
    """A pull request's commit: (repository, base sha, head sha)."""
    base = git(estate, "rev-parse", "HEAD").strip()
    replace(estate, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - alice")
    return estate, base, commit(estate, "redirect the cluster")


def test_approved_on_the_head_commit(github_api: FakeGitHub,
                                     change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, author="dave-o", head_sha=change[2])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "BobM", "APPROVED")  # any letter case
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change)
    assert ran.returncode == 0, ran.stderr
    assert verdict(ran) == {"user:bob": "bob", "admins": "carol"}


def test_an_approval_of_an_older_commit_does_not_count(github_api: FakeGitHub,
                                                       change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[1])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    github_api.set_head(DEFAULT_PULL_REPO, NUMBER, change[2])  # a push after the reviews
    ran = github(github_api, change)
    assert ran.returncode == 1
    assert verdict(ran) == {"user:bob": None, "admins": None}


def test_changes_requested_or_dismissed_withdraws(github_api: FakeGitHub,
                                                  change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[2])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "CHANGES_REQUESTED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    review = github_api.pull(DEFAULT_PULL_REPO, NUMBER).reviews[-1].id
    github_api.dismiss_review(DEFAULT_PULL_REPO, NUMBER, review)
    ran = github(github_api, change, "--format", "text")
    assert ran.returncode == 1
    assert "missing:" in ran.stdout and "bob [@bobm]" in ran.stdout
    assert "an admin (carol) [@carold]" in ran.stdout


def test_the_author_consents_by_authoring_signed_commits(
        github_api: FakeGitHub, change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, author="bobm", head_sha=change[2], reason="valid")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change)
    assert ran.returncode == 0 and verdict(ran)["user:bob"] == "bob"
    data = json.loads(ran.stdout)
    assert data["authorship"] == {
        "login": "bobm", "user": "bob", "counts": True,
        "why": "every commit (1) is @bobm's, signed and verified by GitHub"}
    assert [(c["by"], c["via"]) for c in data["consents"]] == [
        ("bob", "authorship"), ("carol", "approval")]


def test_reviews_are_read_page_by_page(github_api: FakeGitHub,
                                       change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[2])
    for index in range(230):
        github_api.add_review(DEFAULT_PULL_REPO, NUMBER, f"reviewer-{index}", "COMMENTED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change)
    assert ran.returncode == 0, ran.stdout
    pages = [r for r in github_api.requests if r.path.endswith("/reviews")]
    assert len(pages) == 3


def test_a_login_two_users_share_speaks_for_neither(github_api: FakeGitHub,
                                                    change: tuple[Path, str, str]) -> None:
    repo, base, _head = change
    git(repo, "checkout", "-q", base)
    replace(repo, "members.yaml", "github: carold", "github: bobm")  # CONNC214 at BASE
    shared_base = commit(repo, "carol's account is bob's")
    replace(repo, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    head = commit(repo, "redirect")
    github_api.add_pull(number=NUMBER, head_sha=head)
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    ran = github(github_api, (repo, shared_base, head))
    # members.yaml is refused at HEAD too (CONNC214), so an admin must also look at it.
    assert ran.returncode == 1 and verdict(ran) == {"user:bob": None, "admins": None}


def test_approved_by_names_users(change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    ran = approvals(repo, base, head, "--approved-by", "bob")
    assert ran.returncode == 1 and "an admin (carol)" in ran.stdout
    ran = approvals(repo, base, head, "--approved-by", "bob,carol")
    assert ran.returncode == 0, ran.stdout
    nothing = approvals(repo, head, head, "--approved-by", "nobody-at-all")
    assert nothing.returncode == 0 and "no consent is needed" in nothing.stdout


def test_an_admins_approval_stands_in_for_an_owner(github_api: FakeGitHub,
                                                   change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, author="dave-o", head_sha=change[2])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change, "--format", "text")
    assert ran.returncode == 0, ran.stdout
    assert "bob [@bobm], by carol (an admin's approval): 1 change" in ran.stdout
    assert "an admin (carol) [@carold], by carol (approval)" in ran.stdout
    ran = approvals(change[0], change[1], change[2], "--approved-by", "carol")
    assert ran.returncode == 0, ran.stdout


def test_an_admins_authorship_does_not_stand_in(github_api: FakeGitHub,
                                                change: tuple[Path, str, str]) -> None:
    # One admin alone must not redirect bob's cluster: authoring consents as carol only.
    github_api.add_pull(number=NUMBER, author="carold", head_sha=change[2], reason="valid")
    ran = github(github_api, change)
    assert ran.returncode == 1
    assert verdict(ran) == {"user:bob": None, "admins": "carol"}


def test_nobody_stays_unsatisfiable(github_api: FakeGitHub, estate: Path) -> None:
    base = git(estate, "rev-parse", "HEAD").strip()
    (estate / "pipelines.d" / "link.yaml").symlink_to("deploy.yaml")
    head = commit(estate, "a symlink")
    github_api.add_pull(number=NUMBER, author="carold", head_sha=head, reason="valid")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 1 and verdict(ran) == {"nobody": None}
    assert approvals(estate, base, head, "--approved-by", "carol,bob").returncode == 1


def test_more_commits_than_github_lists_authors_nothing(github_api: FakeGitHub,
                                                        change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, author="bobm", reason="valid")
    for _ in range(250):
        github_api.add_commit(DEFAULT_PULL_REPO, NUMBER, reason="valid")
    github_api.add_commit(DEFAULT_PULL_REPO, NUMBER, change[2], reason="valid")
    ran = github(github_api, change, "--format", "text")
    assert ran.returncode == 1
    assert ("authorship of @bobm does not count: the pull request has 252 commits and GitHub "
            "lists 250: the others cannot be checked") in ran.stdout
    assert len([r for r in github_api.requests if r.path.endswith("/commits")]) == 3


def test_a_user_the_pull_request_adds_needs_an_admin(github_api: FakeGitHub,
                                                     estate: Path) -> None:
    base = git(estate, "rev-parse", "HEAD").strip()
    replace(estate, "members.yaml", "users:\n", "users:\n  erin:\n    github: erin-x\n")
    replace(estate, "connections.d/reg.sops.yaml", "owner: bob", "owner: erin")
    head = commit(estate, "erin takes the registry")
    github_api.add_pull(number=NUMBER, author="erin-x", head_sha=head, reason="valid")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    ran = github(github_api, (estate, base, head), "--format", "text")
    assert ran.returncode == 1
    assert verdict(github(github_api, (estate, base, head))) == {
        "user:bob": "bob", "user:erin": None, "admins": None}
    assert "erin (no user at BASE: an admin's approval stands in): 1 change" in ran.stdout
    assert "@erin-x speaks for no user of members.yaml at BASE" in ran.stdout
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, (estate, base, head))
    assert ran.returncode == 0 and verdict(ran) == {
        "user:bob": "bob", "user:erin": "carol", "admins": "carol"}


# ---------------------------------------------------------------------------- merge queue


def merge_group(repo: Path, base: str, pull_head: str) -> tuple[str, str]:
    """The commit GitHub's merge queue builds: the pull request merged into `base`; and the
    group's branch (`merge_group.head_ref`)."""
    git(repo, "checkout", "-q", "--detach", base)
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #7", pull_head)
    return (git(repo, "rev-parse", "HEAD").strip(),
            f"refs/heads/gh-readonly-queue/main/pr-{NUMBER}-{base}")


def test_a_merge_group_is_judged_with_its_pull_requests_consent(
        github_api: FakeGitHub, change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    group, ref = merge_group(repo, base, head)
    github_api.add_pull(number=NUMBER, author="dave-o", head_sha=head)
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = approvals(repo, base, group, "--github-merge-group", ref, "--format", "text",
                    api=github_api.url, token=github_api.repo_token)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith(f"connc approvals: 2 of 2 consents given, from merge group "
                                 f"{ref} of pull request #7 (head {head[:12]}")


def test_a_merge_group_resolves_owners_on_the_branch_as_it_is_now(
        github_api: FakeGitHub, change: tuple[Path, str, str]) -> None:
    # Bob approved the redirect of his cluster; meanwhile the cluster went to dave. The
    # queue merges the redirect into dave's cluster: bob's word does not count for it.
    repo, base, head = change
    git(repo, "checkout", "-q", "--detach", base)
    replace(repo, K8S, "owner: bob", "owner: dave")
    moved = commit(repo, "the cluster goes to dave")
    group, ref = merge_group(repo, moved, head)
    github_api.add_pull(number=NUMBER, author="alice", head_sha=head)
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    assert github(github_api, change).returncode == 0  # the pull request's own check
    ran = approvals(repo, moved, group, "--github-merge-group", ref, "--format", "json",
                    api=github_api.url, token=github_api.repo_token)
    assert ran.returncode == 0, ran.stdout  # carol is an admin: her approval stands in
    assert verdict(ran) == {"user:dave": "carol", "admins": "carol"}
    github_api.dismiss_review(DEFAULT_PULL_REPO, NUMBER,
                              github_api.pull(DEFAULT_PULL_REPO, NUMBER).reviews[-1].id)
    ran = approvals(repo, moved, group, "--github-merge-group", ref, "--format", "json",
                    api=github_api.url, token=github_api.repo_token)
    assert ran.returncode == 1 and verdict(ran) == {"user:dave": None, "admins": None}


def test_a_merge_group_of_another_branch_exits_2(github_api: FakeGitHub,
                                                 change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    group, _ref = merge_group(repo, base, head)
    github_api.add_pull(number=NUMBER, head_sha=head, base_ref="release")
    ran = approvals(repo, base, group, "--github-merge-group",
                    f"refs/heads/gh-readonly-queue/main/pr-{NUMBER}-{base}",
                    api=github_api.url, token=github_api.repo_token)
    assert ran.returncode == 2 and "would merge into 'release'" in ran.stderr


# ---------------------------------------------------------------------------- errors: exit 2


@pytest.mark.parametrize("failure", ["404", "502", "not-json", "bad-token", "echo"])
def test_api_failures_exit_2(github_api: FakeGitHub, change: tuple[Path, str, str],
                             failure: str) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[2])
    token = None
    if failure == "echo":  # `github` asserts that the token is never printed
        github_api.fail_next(403, body={"message": f"{github_api.repo_token} may not"}, times=5)
    elif failure == "404":
        github_api.fail_next(404, times=5)
    elif failure == "502":
        github_api.fail_next(502, times=5)
    elif failure == "not-json":
        github_api.non_json_next(times=5)
    else:
        token = "ghs_" + "x" * 36
    ran = github(github_api, change, token=token)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and ran.stderr.startswith("connc: error: pull request 7 of ")
    assert "Traceback" not in ran.stderr
    if token:
        assert token not in ran.stderr


def test_an_api_that_never_answers_exits_2(change: tuple[Path, str, str]) -> None:
    with unresponsive_server() as url:
        repo, base, head = change
        ran = approvals(repo, base, head, "--github-pr", "7", "--timeout", "0.5", api=url,
                        token="ghs_" + "y" * 36)
    assert ran.returncode == 2 and "no answer within 0.5 s" in ran.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-revision", "HEAD", "--approved-by", "bob"], "unknown revision"),
    (["HEAD~1", "HEAD", "--github-pr", "seven"], "is not a valid integer"),
    (["HEAD~1", "HEAD", "--github-pr", "0"], "takes a pull request number"),
    (["HEAD~1", "HEAD"], "give one of --github-pr N, --github-merge-group REF, --gitlab-mr N or"),
    (["HEAD~1", "HEAD", "--github-pr", "7", "--approved-by", "bob"], "give one of"),
    (["HEAD~1", "HEAD", "--github-merge-group", "refs/heads/main"],
     "takes the merge queue's branch"),
    (["HEAD~1", "--github-pr", "7"], "give HEAD"),
])
def test_bad_input_exits_2(change: tuple[Path, str, str], args: list[str], message: str) -> None:
    ran = approvals(change[0], *args, api="http://127.0.0.1:9", token="ghs_" + "z" * 36)
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_head_must_be_the_pull_requests_head(github_api: FakeGitHub,
                                                 change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha="0" * 40)
    ran = github(github_api, change)
    assert ran.returncode == 2 and "reviews count on the head commit" in ran.stderr


def test_missing_environment_exits_2(change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    ran = approvals(repo, base, head, "--github-pr", "7")
    assert ran.returncode == 2 and "GITHUB_TOKEN" in ran.stderr


def test_a_base_without_members_exits_2(change: tuple[Path, str, str]) -> None:
    repo, _base, head = change
    git(repo, "checkout", "-q", "--orphan", "empty")
    git(repo, "rm", "-rq", "--cached", "members.yaml")
    (repo / "members.yaml").unlink()
    empty = commit(repo, "no members")
    ran = approvals(repo, empty, head, "--approved-by", "carol")
    assert ran.returncode == 2 and "no readable members.yaml" in ran.stderr


# ---------------------------------------------------------------------------- authorship, unit


ALICE, MALLORY = Account("achen", 7001), Account("mallory", 7002)


def pull_with(commits: int, head: str = "a" * 40) -> PullRequest:
    return PullRequest(NUMBER, ALICE, head, "main", commits)


@pytest.mark.parametrize(("commits", "listed", "why"), [
    (1, [Commit("a" * 40, ALICE, ALICE, True, "valid")], None),
    (2, [Commit("a" * 40, ALICE, ALICE, True, "valid")], "GitHub listed 1 commits of 2"),
    (1, [Commit("b" * 40, ALICE, ALICE, True, "valid")], "up to another head than aaaaaaaaaaaa"),
    (1, [Commit("a" * 40, Account("ACHEN", 7003), ALICE, True, "valid")],
     "commit aaaaaaaaaaaa is authored by @ACHEN"),
    (1, [Commit("a" * 40, ALICE, None, True, "valid")],
     "is committed by an email of no GitHub account"),
    (1, [Commit("a" * 40, ALICE, MALLORY, True, "valid")], "is committed by @mallory"),
    (1, [Commit("a" * 40, ALICE, ALICE, False, "unsigned")], "is not signed"),
    (1, [Commit("a" * 40, ALICE, ALICE, False, "")], "not verified by GitHub (no reason given)"),
    (1, [Commit("a" * 40, ALICE, ALICE, False, "bad\x1b[31m")], "by GitHub (bad"),
])
def test_authorship(commits: int, listed: list[Commit], why: str | None) -> None:
    decided = authorship(pull_with(commits), listed, "alice")
    assert decided.counts is (why is None), decided
    assert why is None or why in decided.why
    assert "\x1b" not in decided.why  # what GitHub sent is shown printable
    assert decided.user == "alice" and decided.login == "achen"


def test_authorship_of_no_user_of_base() -> None:
    decided = authorship(pull_with(1), [Commit("a" * 40, ALICE, ALICE, True, "valid")], None)
    assert not decided.counts and decided.why == "@achen speaks for no user of members.yaml at BASE"


def test_accounts_of_base_users() -> None:
    # Models take the YAML spelling only (`githubId`), as a file writes it.
    users = {name: User.model_validate(fields) for name, fields in {
        "alice": {"github": "achen", "githubId": 7001}, "bob": {"github": "bobm"},
        "carol": {"githubId": 7003}, "dave": {}, "erin": {"github": "BOBM"}}.items()}
    accounts = Accounts(users)
    assert accounts.speaks_for(Account("alice-renamed", 7001)) == "alice"  # by id
    assert accounts.speaks_for(Account("achen", 7999)) is None  # the login, registered again
    assert accounts.speaks_for(Account("bobm", 1)) is None  # bob and erin share it (CONNC214)
    assert accounts.speaks_for(Account("anyone", 7003)) == "carol"
    assert accounts.shown(["alice", "carol", "dave"]) == ("achen", "id 7003")
    assert _who(Consent("user:carol", ("carol",), ("id 7003",), (), None)) == "carol [id 7003]"
