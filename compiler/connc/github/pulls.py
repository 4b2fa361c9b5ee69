"""Pull requests, their reviews and commits (what `connc approvals` reads), with a token
(GITHUB_TOKEN) sent to the API only."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any, TypeGuard

from connc import http
from connc.errors import GitHubError
from connc.github.redaction import what_github_said
from connc.github.transport import MAX_PAGES, REPOSITORY, BearerAuth, Client
from connc.secrets import Secret

_SHA = re.compile(r"[0-9a-f]{40}")
# "List commits on a pull request" lists at most 250 commits; the pull request's `commits`
# says how many it has.
COMMITS_LISTED = 250


@dataclasses.dataclass(frozen=True)
class Account:
    """A GitHub account: the id is its identity; the login can be renamed, and a login given
    up can be registered again by someone else."""

    login: str
    id: int


@dataclasses.dataclass(frozen=True)
class PullRequest:
    number: int
    author: Account
    head_sha: str
    base_ref: str  # the branch it would merge into
    commits: int  # how many it has (GitHub lists at most COMMITS_LISTED)


@dataclasses.dataclass(frozen=True)
class Review:
    account: Account
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
    commit_id: str


@dataclasses.dataclass(frozen=True)
class Commit:
    """A commit of a pull request, as GitHub attributes it: `author` and `committer` are the
    accounts of the commit's emails (None: no account, or an answer connc cannot read), and
    `verified` says whether GitHub verified its signature (against the committer)."""

    sha: str
    author: Account | None
    committer: Account | None
    verified: bool
    reason: str  # GitHub's word for the verification: valid, unsigned, unknown_key, ...


class PullRequests:
    """Pull requests, their reviews and commits in one repository, read with a token
    (GITHUB_TOKEN). The token is sent to `api_url` only: pagination follows a `Link` only to
    the same API."""

    def __init__(self, api_url: str, repository: str, token: Secret, *, timeout: float = 10.0,
                 max_attempts: int = 3, max_wait: float = 30.0,
                 sleep: Callable[[float], None] = http.pause,
                 clock: Callable[[], float] = time.time) -> None:
        if not REPOSITORY.fullmatch(repository):
            raise GitHubError(f"the repository must be owner/name, not {repository!r}")
        self.repository = repository
        self._token = token
        self._client_args = (api_url, timeout, max_attempts, max_wait, sleep, clock)

    def pull_request(self, number: int) -> PullRequest:
        client = self._client(number)
        data = self._get(client, f"/repos/{self.repository}/pulls/{number}", "read it")
        data = data if isinstance(data, dict) else {}
        author = _account(data.get("user"))
        head = _field(data, "head", "sha")
        base = _field(data, "base", "ref")
        commits = data.get("commits")
        if author is None or not isinstance(head, str) or not _SHA.fullmatch(head) \
                or not isinstance(base, str) or not _is_count(commits):
            raise GitHubError(f"{client.subject}: GitHub's answer has no author, head commit, "
                              f"base branch or commit count (not a GitHub API?)")
        return PullRequest(number, author, head, base, commits)

    def reviews(self, number: int) -> list[Review]:
        """Every review, oldest first; a review by a deleted account (user: null) is left out:
        it speaks for nobody."""
        found = self._list(number, "reviews", "list its reviews")
        return [review for review in map(_review, found) if review is not None]

    def commits(self, number: int) -> list[Commit]:
        """The commits GitHub lists (at most COMMITS_LISTED), oldest first. An entry connc
        cannot read is kept, attributed to nobody and unverified: it must count against
        whoever relies on the list."""
        return [_commit(item) for item in self._list(number, "commits", "list its commits")]

    def _list(self, number: int, what: str, action: str) -> list[Any]:
        """The items of a paginated list, following GitHub's `Link` headers."""
        client = self._client(number)
        path: str | None = f"/repos/{self.repository}/pulls/{number}/{what}?per_page=100"
        found: list[Any] = []
        pages = 0
        while path is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise GitHubError(f"{client.subject}: more than {MAX_PAGES} pages of {what}")
            response = self._send(client, path, action)
            data = response.json()
            if not isinstance(data, list):
                raise GitHubError(f"{client.subject}: GitHub's list of {what} is not a list "
                                  f"(not a GitHub API?)")
            found.extend(data)
            path = client.next_page(response)
        return found

    def _client(self, number: int) -> Client:
        api_url, timeout, attempts, max_wait, sleep, clock = self._client_args
        return Client(api_url, f"pull request {number} of {self.repository}", timeout,
                       attempts, max_wait, sleep, clock)

    def _get(self, client: Client, path: str, what: str) -> Any:
        return self._send(client, path, what).json()  # JSON: `_send` checked it

    def _send(self, client: Client, path: str, what: str) -> http.Answer:
        auth = BearerAuth(self._token.reveal)
        response = client.send("GET", path, auth, None, what=what)
        status = response.status
        if status == 200:
            if response.json() is None:
                raise GitHubError(f"{client.subject}: GitHub's answer is not JSON "
                                  f"(not a GitHub API?)")
            return response
        said = what_github_said(response, auth.secrets_sent())
        if status == 401:
            raise GitHubError(f"{client.subject}: GitHub refused the token in GITHUB_TOKEN "
                              f"(HTTP 401){said}")
        if status == 403:
            raise GitHubError(f"{client.subject}: the token may not {what} (HTTP 403){said}; "
                              f"the workflow needs `permissions: pull-requests: read`")
        if status == 404:
            raise GitHubError(f"{client.subject}: not found (HTTP 404) at {client.display_url}"
                              f"{said}; check the number, GITHUB_REPOSITORY, and that the "
                              f"token can see the repository")
        raise client.unexpected(response, what, said)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field(data: dict[str, Any], *keys: str) -> object:
    value: object = data
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _account(user: object) -> Account | None:
    """GitHub's `simple-user`: an account has a login and a positive integer id."""
    if not isinstance(user, dict):
        return None
    login, uid = user.get("login"), user.get("id")
    if not isinstance(login, str) or not login or not _is_count(uid) or uid == 0:
        return None
    return Account(login, uid)


def _review(item: object) -> Review | None:
    if not isinstance(item, dict):
        return None
    account = _account(item.get("user"))
    state, commit = item.get("state"), item.get("commit_id")
    if account is None or not isinstance(state, str) or not isinstance(commit, str):
        return None  # a review by a deleted account (user: null) speaks for nobody
    return Review(account, state, commit)


def _commit(item: object) -> Commit:
    data = item if isinstance(item, dict) else {}
    sha = data.get("sha")
    verification = _field(data, "commit", "verification")
    verification = verification if isinstance(verification, dict) else {}
    reason = verification.get("reason")
    return Commit(sha if isinstance(sha, str) else "", _account(data.get("author")),
                  _account(data.get("committer")), verification.get("verified") is True,
                  reason if isinstance(reason, str) else "")
