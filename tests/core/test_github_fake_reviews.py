"""The fake GitHub's pull-request endpoints (tests/kit/servers/github_fake.py), driven with plain
`requests`: `connc approvals` is only as well tested as this fake is faithful. Shapes follow
GitHub's REST reference: "Get a pull request", "List reviews for a pull request", "List
commits on a pull request" (with its "Signature verification object"), and pagination."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import jwt
import pytest
import requests
from urllib3.util import SKIP_HEADER

from kit.servers.github_fake import (  # noqa: F401
    COMMITS_LISTED,
    DEFAULT_PULL_REPO,
    FakeGitHub,
    github_api,
    unresponsive_server,
)

REPO = DEFAULT_PULL_REPO
HEAD = "a" * 40
NEW_HEAD = "b" * 40


def headers(token: str | None, scheme: str = "Bearer") -> dict[str, str]:
    answer = {"User-Agent": "connc-test", "Accept": "application/vnd.github+json",
              "X-GitHub-Api-Version": "2022-11-28"}
    if token is not None:
        answer["Authorization"] = f"{scheme} {token}"
    return answer


def get(url: str, token: str | None, **kwargs: Any) -> requests.Response:
    extra = kwargs.pop("headers", {})
    return requests.get(url, headers={**headers(token), **extra}, timeout=5, **kwargs)


def reviews_url(fake: FakeGitHub, number: int = 7, repo: str = REPO) -> str:
    return f"{fake.url}/repos/{repo}/pulls/{number}/reviews"


def commits_url(fake: FakeGitHub, number: int = 7, repo: str = REPO) -> str:
    return f"{fake.url}/repos/{repo}/pulls/{number}/commits"


# --- get a pull request ------------------------------------------------------------------------


def test_get_pull_has_githubs_shape(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD, head_ref="rotate-npm", base_ref="main")
    answer = get(f"{github_api.url}/repos/{REPO}/pulls/7", github_api.repo_token)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "Link" not in answer.headers
    pull = answer.json()
    assert pull["number"] == 7
    assert pull["state"] == "open"
    assert pull["user"]["login"] == "alice"
    assert pull["head"]["sha"] == HEAD and pull["head"]["ref"] == "rotate-npm"
    assert pull["base"]["ref"] == "main" and len(pull["base"]["sha"]) == 40
    assert pull["base"]["repo"]["full_name"] == REPO
    assert pull["url"] == f"{github_api.url}/repos/{REPO}/pulls/7"


def test_set_head_and_state_show_in_the_pull(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.set_head(REPO, 7, NEW_HEAD)
    github_api.set_pull_state(REPO, 7, "closed")
    pull = get(f"{github_api.url}/repos/{REPO}/pulls/7", github_api.repo_token).json()
    assert (pull["head"]["sha"], pull["state"]) == (NEW_HEAD, "closed")
    assert github_api.pull(REPO, 7).head_sha == NEW_HEAD


@pytest.mark.parametrize("path", [
    f"/repos/{REPO}/pulls/8", f"/repos/{REPO}/pulls/8/reviews", f"/repos/{REPO}/pulls/8/commits",
    "/repos/octo-org/elsewhere/pulls/7", "/repos/octo-org/elsewhere/pulls/7/reviews",
    f"/repos/{REPO}/pulls/seven", f"/repos/{REPO}/pulls/7/reviews/",
    f"/repos/{REPO}/pulls/7/commits/", "/repositories/1/pulls/7", "/repositories/1/pulls/7/commits",
])
def test_unknown_pull_or_repository_is_404(github_api: FakeGitHub, path: str) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    answer = get(github_api.url + path, github_api.repo_token)
    assert answer.status_code == 404
    assert answer.json()["message"] == "Not Found"


def test_owner_and_repository_names_are_case_insensitive(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    answer = get(f"{github_api.url}/repos/{REPO.upper()}/pulls/7", github_api.repo_token)
    assert answer.status_code == 200


# --- list reviews ------------------------------------------------------------------------------


def test_reviews_in_chronological_order_with_githubs_shape(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.add_review(REPO, 7, "bob", "CHANGES_REQUESTED", HEAD, body="npm scope is wrong")
    github_api.add_review(REPO, 7, "carol", "COMMENTED", HEAD)
    github_api.set_head(REPO, 7, NEW_HEAD)
    github_api.add_review(REPO, 7, "bob", "APPROVED")  # commit_id: the head at review time
    github_api.add_review(REPO, 7, "dave", "PENDING")  # a draft: nobody else sees it

    answer = get(reviews_url(github_api), github_api.repo_token)
    assert answer.status_code == 200
    assert "Link" not in answer.headers  # one page: GitHub omits the header
    reviews = answer.json()
    assert [(r["user"]["login"], r["state"], r["commit_id"]) for r in reviews] == [
        ("bob", "CHANGES_REQUESTED", HEAD), ("carol", "COMMENTED", HEAD),
        ("bob", "APPROVED", NEW_HEAD)]
    assert reviews[0]["body"] == "npm scope is wrong"
    ids = [r["id"] for r in reviews]
    assert ids == sorted(ids) and len(set(ids)) == 3
    stamps = [dt.datetime.strptime(r["submitted_at"], "%Y-%m-%dT%H:%M:%SZ") for r in reviews]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert stamps[-1].replace(tzinfo=dt.UTC) <= dt.datetime.now(dt.UTC)
    assert {"id", "user", "state", "commit_id", "submitted_at", "body"} <= set(reviews[0])


def test_dismissing_changes_the_reviews_state(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.add_review(REPO, 7, "bob", "APPROVED", HEAD)
    review_id = github_api.pull(REPO, 7).reviews[0].id
    github_api.dismiss_review(REPO, 7, review_id)
    reviews = get(reviews_url(github_api), github_api.repo_token).json()
    assert [(r["id"], r["state"]) for r in reviews] == [(review_id, "DISMISSED")]


def test_knobs_refuse_what_github_cannot_hold(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    with pytest.raises(ValueError, match="state must be one of"):
        github_api.add_review(REPO, 7, "bob", "LGTM", HEAD)
    with pytest.raises(ValueError, match="exists already"):
        github_api.add_pull(REPO, 7, "alice", HEAD)
    with pytest.raises(KeyError, match="add_pull it first"):
        github_api.add_review(REPO, 8, "bob", "APPROVED", HEAD)


def test_no_reviews_is_an_empty_list(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    answer = get(reviews_url(github_api), github_api.repo_token)
    assert (answer.status_code, answer.json(), answer.headers.get("Link")) == (200, [], None)


def test_reviews_carry_the_accounts_id(github_api: FakeGitHub) -> None:
    bob = github_api.add_user("bobm", 583231)
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.add_review(REPO, 7, "BobM", "APPROVED", HEAD)  # logins: any letter case
    [review] = get(reviews_url(github_api), github_api.repo_token).json()
    assert review["user"] == {**review["user"], "login": "bobm", "id": bob, "type": "User"}


def test_a_renamed_login_keeps_its_id_and_can_be_registered_again(
        github_api: FakeGitHub) -> None:
    bob = github_api.add_user("bobm")
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.add_review(REPO, 7, "bobm", "APPROVED", HEAD)
    github_api.rename_user("bobm", "bob-moved")
    github_api.add_review(REPO, 7, "bobm", "APPROVED", HEAD)  # someone else took the login
    reviews = get(reviews_url(github_api), github_api.repo_token).json()
    assert [(r["user"]["login"], r["user"]["id"]) for r in reviews] == [
        ("bob-moved", bob), ("bobm", github_api.user_id("bobm"))]
    assert github_api.user_id("bobm") != bob
    with pytest.raises(ValueError, match="is taken"):
        github_api.add_user("BOB-MOVED")
    with pytest.raises(ValueError, match="is taken"):
        github_api.add_user("newcomer", bob)
    with pytest.raises(ValueError, match="is taken"):
        github_api.rename_user("bob-moved", "BOBM")
    assert github_api.user_id("bob-moved") == bob  # a refused rename changes nothing


# --- list commits --------------------------------------------------------------------------------


def test_commits_have_githubs_shape(github_api: FakeGitHub) -> None:
    alice = github_api.add_user("achen")
    github_api.add_pull(REPO, 7, "achen", HEAD, base_sha="c" * 40, reason="valid")
    pull = get(f"{github_api.url}/repos/{REPO}/pulls/7", github_api.repo_token).json()
    assert (pull["commits"], pull["commits_url"]) == (1, commits_url(github_api))

    answer = get(commits_url(github_api), github_api.repo_token)
    assert answer.status_code == 200 and "Link" not in answer.headers
    [commit] = answer.json()
    assert commit["sha"] == HEAD
    assert commit["parents"][0]["sha"] == "c" * 40  # the first commit sits on the base
    assert (commit["author"]["login"], commit["author"]["id"]) == ("achen", alice)
    assert (commit["committer"]["login"], commit["committer"]["id"]) == ("achen", alice)
    assert commit["commit"]["author"]["email"] == f"{alice}+achen@users.noreply.github.com"
    dt.datetime.strptime(commit["commit"]["author"]["date"], "%Y-%m-%dT%H:%M:%SZ")
    verification = commit["commit"]["verification"]
    assert set(verification) == {"verified", "reason", "signature", "payload", "verified_at"}
    assert (verification["verified"], verification["reason"]) == (True, "valid")
    assert verification["signature"].startswith("-----BEGIN PGP SIGNATURE-----")
    assert verification["payload"].startswith("tree ")
    assert f"\nauthor achen <{alice}+achen" in verification["payload"]
    assert {"url", "html_url", "comments_url", "node_id"} <= set(commit)
    assert {"message", "tree", "url", "comment_count"} <= set(commit["commit"])


def test_a_push_moves_the_head_and_lists_oldest_first(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD, reason="valid")
    # An unsigned commit by someone else, then one claiming alice's email but signed by
    # mallory: GitHub checks a signature against the committer, not the author.
    pushed = github_api.add_commit(REPO, 7, author="mallory")
    borrowed = github_api.add_commit(REPO, 7, NEW_HEAD, author="achen", committer="mallory",
                                     reason="valid")
    stray = github_api.add_commit(REPO, 7, author=None, email="ci@example.com",
                                  reason="no_user")
    assert (borrowed, github_api.pull(REPO, 7).head_sha) == (NEW_HEAD, stray)

    commits = get(commits_url(github_api), github_api.repo_token).json()
    assert [c["sha"] for c in commits] == [HEAD, pushed, NEW_HEAD, stray]
    assert [c["parents"][0]["sha"] for c in commits[1:]] == [HEAD, pushed, NEW_HEAD]
    assert [(c["commit"]["verification"]["reason"], c["commit"]["verification"]["signature"]
             is None) for c in commits] == [
        ("valid", False), ("unsigned", True), ("valid", False), ("no_user", False)]
    assert [c["commit"]["verification"]["verified"] for c in commits] == [
        True, False, True, False]
    assert [(c["author"] or {}).get("login") for c in commits] == [
        "achen", "mallory", "achen", None]
    assert [(c["committer"] or {}).get("login") for c in commits] == [
        "achen", "mallory", "mallory", None]
    assert commits[3]["commit"]["author"]["email"] == "ci@example.com"
    assert commits[1]["commit"]["verification"]["payload"] is None
    pull = get(f"{github_api.url}/repos/{REPO}/pulls/7", github_api.repo_token).json()
    assert (pull["head"]["sha"], pull["commits"]) == (stray, 4)


def test_set_head_is_an_unsigned_push_by_the_author(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD, reason="valid")
    github_api.set_head(REPO, 7, NEW_HEAD)
    last = get(commits_url(github_api), github_api.repo_token).json()[-1]
    assert (last["sha"], last["author"]["login"]) == (NEW_HEAD, "achen")
    assert last["commit"]["verification"]["reason"] == "unsigned"


def test_at_most_250_commits_are_listed(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD)
    for _ in range(COMMITS_LISTED + 49):
        github_api.add_commit(REPO, 7)
    pages: list[requests.Response] = []
    url: str | None = commits_url(github_api) + "?per_page=100"
    while url is not None:
        pages.append(get(url, github_api.repo_token))
        url = pages[-1].links.get("next", {}).get("url")
    assert [len(p.json()) for p in pages] == [100, 100, 50]
    repo_id = github_api.pull(REPO, 7).repo_id
    assert pages[0].links["next"]["url"] == (
        f"{github_api.url}/repositories/{repo_id}/pulls/7/commits?per_page=100&page=2")
    listed = [c["sha"] for p in pages for c in p.json()]
    assert listed == [c.sha for c in github_api.pull(REPO, 7).commits[:COMMITS_LISTED]]
    pull = get(f"{github_api.url}/repos/{REPO}/pulls/7", github_api.repo_token).json()
    assert pull["commits"] == 300 and pull["head"]["sha"] not in listed


def test_commit_knobs_refuse_what_github_cannot_hold(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "achen", HEAD)
    with pytest.raises(ValueError, match="reason must be one of"):
        github_api.add_commit(REPO, 7, reason="signed")
    with pytest.raises(KeyError, match="add_pull it first"):
        github_api.add_commit(REPO, 8)


# --- pagination --------------------------------------------------------------------------------


def add_reviews(fake: FakeGitHub, count: int, number: int = 7) -> None:
    fake.add_pull(REPO, number, "alice", HEAD)
    for index in range(count):
        fake.add_review(REPO, number, f"reviewer-{index}", "COMMENTED", HEAD)


def test_250_reviews_at_100_a_page_follow_the_link_header(github_api: FakeGitHub) -> None:
    add_reviews(github_api, 250)
    repo_id = github_api.pull(REPO, 7).repo_id
    by_id = f"{github_api.url}/repositories/{repo_id}/pulls/7/reviews"

    pages: list[requests.Response] = []
    url: str | None = reviews_url(github_api) + "?per_page=100"
    while url is not None:
        pages.append(get(url, github_api.repo_token))
        url = pages[-1].links.get("next", {}).get("url")

    assert [p.status_code for p in pages] == [200, 200, 200]
    assert [len(p.json()) for p in pages] == [100, 100, 50]
    logins = [r["user"]["login"] for p in pages for r in p.json()]
    assert logins == [f"reviewer-{i}" for i in range(250)]  # chronological across pages

    links = [{rel: value["url"] for rel, value in p.links.items()} for p in pages]
    assert links[0] == {"next": f"{by_id}?per_page=100&page=2",
                        "last": f"{by_id}?per_page=100&page=3"}
    assert links[1] == {"prev": f"{by_id}?per_page=100&page=1",
                        "next": f"{by_id}?per_page=100&page=3",
                        "last": f"{by_id}?per_page=100&page=3",
                        "first": f"{by_id}?per_page=100&page=1"}
    assert links[2] == {"prev": f"{by_id}?per_page=100&page=2",
                        "first": f"{by_id}?per_page=100&page=1"}
    # The raw header keeps GitHub's order: prev, next, last, first.
    assert [part.split("; ")[1] for part in pages[1].headers["Link"].split(", ")] == [
        'rel="prev"', 'rel="next"', 'rel="last"', 'rel="first"']

    reads = [r for r in github_api.requests if r.path.endswith("/reviews")]
    assert [(r.path, r.query) for r in reads] == [
        (f"/repos/{REPO}/pulls/7/reviews", "per_page=100"),
        (f"/repositories/{repo_id}/pulls/7/reviews", "per_page=100&page=2"),
        (f"/repositories/{repo_id}/pulls/7/reviews", "per_page=100&page=3")]
    assert [r.params.get("page", "1") for r in reads] == ["1", "2", "3"]


def test_default_page_size_is_30(github_api: FakeGitHub) -> None:
    add_reviews(github_api, 61)
    first = get(reviews_url(github_api), github_api.repo_token)
    assert len(first.json()) == 30
    assert first.links["last"]["url"].endswith("/reviews?page=3")
    third = get(first.links["last"]["url"], github_api.repo_token)
    assert [r["user"]["login"] for r in third.json()] == ["reviewer-60"]


@pytest.mark.parametrize(("query", "size"), [
    ("per_page=1000", 100), ("per_page=0", 30), ("per_page=abc", 30), ("per_page=-5", 30),
    ("per_page=7&page=0", 7), ("per_page=%C2%B2", 30),
])
def test_out_of_range_page_parameters(github_api: FakeGitHub, query: str, size: int) -> None:
    add_reviews(github_api, 150)
    answer = get(f"{reviews_url(github_api)}?{query}", github_api.repo_token)
    assert answer.status_code == 200
    assert len(answer.json()) == size
    assert "prev" not in answer.links


def test_a_page_past_the_end_is_empty(github_api: FakeGitHub) -> None:
    add_reviews(github_api, 5)
    answer = get(reviews_url(github_api) + "?per_page=2&page=9", github_api.repo_token)
    assert answer.json() == []
    assert set(answer.links) == {"prev", "first"}


def test_links_keep_the_ghes_prefix(github_api: FakeGitHub) -> None:
    add_reviews(github_api, 3)
    answer = get(f"{github_api.ghes_url}/repos/{REPO}/pulls/7/reviews?per_page=2",
                 github_api.repo_token)
    repo_id = github_api.pull(REPO, 7).repo_id
    assert answer.links["next"]["url"] == (
        f"{github_api.ghes_url}/repositories/{repo_id}/pulls/7/reviews?per_page=2&page=2")
    assert len(get(answer.links["next"]["url"], github_api.repo_token).json()) == 1
    assert github_api.requests[-1].path == f"/repositories/{repo_id}/pulls/7/reviews"


# --- authentication and headers ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "token", "bearer"])
def test_both_token_schemes_are_accepted(github_api: FakeGitHub, scheme: str) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    answer = requests.get(reviews_url(github_api), headers=headers(github_api.repo_token, scheme),
                          timeout=5)
    assert answer.status_code == 200


@pytest.mark.parametrize("authorization", [
    None, "Bearer ", "Bearer ghs_wrong", "Basic dXNlcjpwYXNz", "token ghs_wrong",
    "Bearer ghs_\u00e9t\u00e9",
])
@pytest.mark.parametrize("tail", ["", "/reviews", "/commits"])
def test_missing_or_wrong_token_is_401(github_api: FakeGitHub, authorization: str | None,
                                       tail: str) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    sent = headers(None)
    if authorization is not None:
        sent["Authorization"] = authorization
    # Also for a pull that does not exist: GitHub checks credentials before looking.
    for number in (7, 8):
        answer = requests.get(f"{github_api.url}/repos/{REPO}/pulls/{number}{tail}",
                              headers=sent, timeout=5)
        assert answer.status_code == 401
        assert answer.json()["message"] == "Bad credentials"


def mint(fake: FakeGitHub, body: dict[str, Any]) -> str:
    now = int(time.time())
    app_jwt = jwt.encode({"iat": now - 60, "exp": now + 540, "iss": fake.app_id},
                         fake.private_key_pem, algorithm="RS256")
    answer = requests.post(f"{fake.url}/app/installations/{fake.installation_id}/access_tokens",
                           json=body, headers=headers(app_jwt), timeout=5)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def test_installation_tokens_read_within_their_grant(github_api: FakeGitHub) -> None:
    github_api.add_pull("octo-org/app", 3, "alice", HEAD)
    github_api.add_pull(REPO, 7, "alice", HEAD)  # a repository the installation does not have
    url = f"{github_api.url}/repos/octo-org/app/pulls/3/reviews"

    readable = mint(github_api, {"permissions": {"pull_requests": "read"}})
    assert get(url, readable).status_code == 200
    assert get(reviews_url(github_api), readable).status_code == 404

    no_pulls = mint(github_api, {"permissions": {"contents": "read"}})
    forbidden = get(url, no_pulls)
    assert forbidden.status_code == 403
    assert forbidden.json()["message"] == "Resource not accessible by integration"

    other_repo = mint(github_api, {"repositories": ["infra"]})
    assert get(url, other_repo).status_code == 404

    revoked = requests.delete(f"{github_api.url}/installation/token", headers=headers(readable),
                              timeout=5)
    assert revoked.status_code == 204
    assert get(url, readable).status_code == 401


@pytest.mark.parametrize(("drop", "status"), [
    ("User-Agent", 403), ("Accept", 400), ("X-GitHub-Api-Version", 400)])
def test_standard_headers_are_required(github_api: FakeGitHub, drop: str, status: int) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    # None drops a header of requests'; urllib3 would put its own User-Agent back but for
    # SKIP_HEADER.
    answer = get(reviews_url(github_api), github_api.repo_token,
                 headers={drop: SKIP_HEADER if drop == "User-Agent" else None})
    assert answer.status_code == status
    assert drop not in github_api.requests[-1].headers


def test_an_old_api_version_is_refused(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    answer = get(reviews_url(github_api), github_api.repo_token,
                 headers={"X-GitHub-Api-Version": "2021-01-01"})
    assert answer.status_code == 400


# --- failures a client must survive --------------------------------------------------------------


def test_fail_next_502_then_normal_service(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.add_review(REPO, 7, "bob", "APPROVED", HEAD)
    github_api.fail_next(502)
    failed = get(reviews_url(github_api), github_api.repo_token)
    assert failed.status_code == 502
    assert failed.json()["message"] == "Bad Gateway"
    assert len(get(reviews_url(github_api), github_api.repo_token).json()) == 1
    assert len(github_api.requests) == 2  # the failed request is recorded too


def test_a_200_that_is_not_json(github_api: FakeGitHub) -> None:
    github_api.add_pull(REPO, 7, "alice", HEAD)
    github_api.non_json_next()
    answer = get(reviews_url(github_api), github_api.repo_token)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        answer.json()

    github_api.fail_next(200, body='[{"id": 1, "state": "APPR')  # cut short
    with pytest.raises(ValueError):
        get(reviews_url(github_api), github_api.repo_token).json()
    assert get(reviews_url(github_api), github_api.repo_token).json() == []


def test_a_server_that_never_answers_times_out() -> None:
    with unresponsive_server() as url:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{url}/repos/{REPO}/pulls/7/reviews", headers=headers("x"),
                         timeout=0.2)
    assert time.monotonic() - started < 2
