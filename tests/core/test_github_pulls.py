"""connc.github.pulls.PullRequests (what `connc approvals` reads) against the local fake GitHub."""

from __future__ import annotations

import json
import traceback

import pytest

from connc.errors import GitHubError
from connc.github.pulls import COMMITS_LISTED, Account, Commit, PullRequests
from connc.secrets import Secret
from kit.servers.github_fake import DEFAULT_PULL_REPO as REPO
from kit.servers.github_fake import FakeGitHub, github_api  # noqa: F401

HEAD = "a" * 40


def pulls(fake: FakeGitHub, token: str | None = None, **kwargs: object) -> PullRequests:
    return PullRequests(fake.url, REPO, Secret(token or fake.repo_token),
                        sleep=lambda _seconds: None, **kwargs)  # type: ignore[arg-type]


def test_a_pull_request_its_author_by_id_and_its_commit_count(github_api: FakeGitHub) -> None:
    alice = github_api.add_user("achen")
    github_api.add_pull(REPO, 7, "achen", HEAD, base_ref="release")
    github_api.add_commit(REPO, 7)
    pull = pulls(github_api).pull_request(7)
    assert (pull.number, pull.author, pull.base_ref, pull.commits) == (
        7, Account("achen", alice), "release", 2)
    assert pull.head_sha == github_api.pull(REPO, 7).head_sha != HEAD


def test_commits_as_github_attributes_them(github_api: FakeGitHub) -> None:
    alice, mallory = github_api.add_user("achen"), github_api.add_user("mallory")
    github_api.add_pull(REPO, 7, "achen", HEAD, reason="valid")
    borrowed = github_api.add_commit(REPO, 7, author="achen", committer="mallory",
                                     reason="valid")
    stray = github_api.add_commit(REPO, 7, author=None, committer=None, reason="no_user")
    bad = github_api.add_commit(REPO, 7, reason="bad_email")
    assert pulls(github_api).commits(7) == [
        Commit(HEAD, Account("achen", alice), Account("achen", alice), True, "valid"),
        Commit(borrowed, Account("achen", alice), Account("mallory", mallory), True, "valid"),
        Commit(stray, None, None, False, "no_user"),
        Commit(bad, Account("achen", alice), Account("achen", alice), False, "bad_email"),
    ]


def test_commits_page_by_page_up_to_what_github_lists(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD)
    for _ in range(COMMITS_LISTED + 10):
        github_api.add_commit(REPO, 7)
    commits = pulls(github_api).commits(7)
    assert [c.sha for c in commits] == [
        c.sha for c in github_api.pull(REPO, 7).commits[:COMMITS_LISTED]]
    reads = [r for r in github_api.requests if r.path.endswith("/commits")]
    assert [r.params.get("page", "1") for r in reads] == ["1", "2", "3"]
    assert {r.params["per_page"] for r in reads} == {"100"}
    assert pulls(github_api).pull_request(7).commits == COMMITS_LISTED + 11


def test_reviews_carry_the_account_id(github_api: FakeGitHub) -> None:
    bob = github_api.add_user("bobm")
    github_api.add_pull(REPO, 7, "achen", HEAD)
    github_api.add_review(REPO, 7, "bobm", "APPROVED")
    github_api.rename_user("bobm", "bob-renamed")
    github_api.add_review(REPO, 7, "bobm", "COMMENTED")
    reviews = pulls(github_api).reviews(7)
    assert [(r.account, r.state) for r in reviews] == [
        (Account("bob-renamed", bob), "APPROVED"),
        (Account("bobm", github_api.user_id("bobm")), "COMMENTED")]


def entries(*items: object) -> str:
    return json.dumps(list(items))


def test_a_commit_connc_cannot_read_counts_for_nobody(github_api: FakeGitHub) -> None:
    # Never left out: a skipped entry could be the one unsigned commit.
    github_api.add_pull(REPO, 7, "achen", HEAD)
    account = {"login": "achen", "id": 7001}
    github_api.fail_next(200, {"Content-Type": "application/json"}, entries(
        "not an object",
        {"sha": "b" * 40, "author": account, "committer": account,
         "commit": {"verification": {"verified": "true", "reason": "valid"}}},
        {"sha": "c" * 40, "author": {"login": "achen", "id": True}, "committer": account,
         "commit": {"verification": {"verified": True, "reason": "valid"}}},
        {"sha": "d" * 40, "author": {"login": "", "id": 7001}, "committer": None,
         "commit": None}))
    assert pulls(github_api).commits(7) == [
        Commit("", None, None, False, ""),
        Commit("b" * 40, Account("achen", 7001), Account("achen", 7001), False, "valid"),
        Commit("c" * 40, None, Account("achen", 7001), True, "valid"),
        Commit("d" * 40, None, None, False, ""),
    ]


def test_a_review_by_a_deleted_account_is_left_out(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD)
    github_api.fail_next(200, {"Content-Type": "application/json"}, entries(
        {"user": None, "state": "APPROVED", "commit_id": HEAD},
        {"user": {"login": "bobm"}, "state": "APPROVED", "commit_id": HEAD},
        {"user": {"login": "bobm", "id": 9}, "state": "APPROVED", "commit_id": HEAD}))
    assert [r.account for r in pulls(github_api).reviews(7)] == [Account("bobm", 9)]


@pytest.mark.parametrize("answer", [
    {"user": {"login": "achen"}, "head": {"sha": HEAD}, "base": {"ref": "main"}, "commits": 1},
    {"user": {"login": "achen", "id": 1}, "head": {"sha": HEAD}, "base": {"ref": "main"}},
    {"user": {"login": "achen", "id": 1}, "head": {"sha": HEAD}, "base": {"ref": "main"},
     "commits": -1},
    {"user": {"login": "achen", "id": 1}, "head": {"sha": "HEAD"}, "base": {"ref": "main"},
     "commits": 1},
    {"user": {"login": "achen", "id": 1}, "head": {"sha": HEAD}, "commits": 1},
    ["not", "an", "object"],
])
def test_a_pull_request_answer_without_what_approvals_needs(github_api: FakeGitHub,
                                                            answer: object) -> None:
    github_api.fail_next(200, {"Content-Type": "application/json"}, json.dumps(answer))
    with pytest.raises(GitHubError, match="no author, head commit, base branch or commit count"):
        pulls(github_api).pull_request(7)


def test_a_next_page_on_another_host_is_not_followed(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD)
    github_api.fail_next(200, {"Content-Type": "application/json",
                               "Link": '<https://evil.example/next?page=2>; rel="next"'}, "[]")
    with pytest.raises(GitHubError, match="next page is not at"):
        pulls(github_api).commits(7)
    assert len(github_api.requests) == 1


def test_the_token_never_leaks_from_a_failure(github_api: FakeGitHub) -> None:
    canary = "ghs_CANARYpullsCANARY0123456789abcdefXYZ"
    github_api.add_pull(REPO, 7, "achen", HEAD)
    for status in (401, 403, 404, 422, 502):
        github_api.fail_next(status, body={"message": f"token {canary} refused"}, times=3)
        with pytest.raises(GitHubError) as caught:
            pulls(github_api, canary).commits(7)
        shown = str(caught.value) + "".join(traceback.format_exception(caught.value))
        assert canary not in shown, status
