"""A local fake of the GitHub REST API parts connc uses for `github-app` connections.

It is strict where GitHub is strict, so that a client bug shows up here rather than in a
pipeline: the JWT is verified (RS256 signature, integer `iat`/`exp`, `iss`, the 10-minute
window), the installation id and the requested scope are checked against the installation's
grant, and the standard headers are required.

It also serves the pull-request reads `connc approvals` makes ("Get a pull request", "List
reviews for a pull request" and "List commits on a pull request"), paginated the way GitHub
paginates: see `add_pull`, `add_review` and `add_commit`. Accounts have a login and a numeric
id, as on GitHub: a login can be renamed and then registered again by someone else
(`rename_user`), while the id stays with the account.

And what `connc check --reach` reads of an installation ("Get an installation for the
authenticated app", "List repositories accessible to the app installation", "List branches"),
paginated the same way: see `reach_endpoint`, `default_branches` and `branches`.

Use it with `from kit.servers.github_fake import github_api  # noqa: F401`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from kit.keys import key_pem, rsa_key

DOCS = "https://docs.github.com/rest"
_LEVELS = {"read": 1, "write": 2, "admin": 3}
_MINT_PATH = re.compile(r"^/app/installations/(\d+)/access_tokens$")
# The pull-request endpoints follow, for paths, fields, states and the Link header:
# https://docs.github.com/rest/pulls/pulls#get-a-pull-request,
# https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request,
# https://docs.github.com/rest/pulls/pulls#list-commits-on-a-pull-request and
# https://docs.github.com/rest/using-the-rest-api/using-pagination-in-the-rest-api.
# A pull number that is not all digits matches no route, so it is a 404 as on GitHub.
_PULL_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)(/reviews|/commits)?$")
# The form GitHub's own `Link` URLs take ("Using pagination in the REST API" shows
# /repositories/1300192/issues?page=2): served so that a client following `Link` works and
# one that rebuilds /repos/{owner}/{repo} URLs by hand is not the only thing tested.
_PULL_BY_ID_PATH = re.compile(r"^/repositories/(\d+)/pulls/(\d+)(/reviews|/commits)?$")

DEFAULT_PULL_REPO = "octo-org/connections"
# GitHub's review states ("List reviews for a pull request"). PENDING is a draft only its
# author sees: the fake stores it but never lists it, as GitHub does for everyone else.
REVIEW_STATES = frozenset({"APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"})
# "Lists a maximum of 250 commits for a pull request": the rest are not listed at all, while
# the pull request's `commits` count says how many there are.
COMMITS_LISTED = 250
# The `reason` of a commit's `verification` ("Signature verification object"); only `valid`
# comes with `verified: true`.
VERIFICATION_REASONS = frozenset({
    "expired_key", "not_signing_key", "gpgverify_error", "gpgverify_unavailable", "unsigned",
    "unknown_signature_type", "no_user", "unverified_email", "bad_email", "unknown_key",
    "malformed_signature", "invalid", "valid"})
# add_commit's defaults: the pull request's author, and a committer who is the commit's author.
# "@" cannot start a GitHub login, so neither can be mistaken for one.
PULL_AUTHOR, SAME_AS_AUTHOR = "@pull-author", "@same-as-author"
_PER_PAGE_DEFAULT = 30  # the documented default of per_page
_PER_PAGE_MAX = 100  # the documented maximum; a larger value gets 100 a page, not an error
_UNICORN_HTML = ("<!DOCTYPE html>\n<html><head><title>Unicorn! &middot; GitHub</title></head>"
                 "<body><p>No server is currently available to service your request.</p>"
                 "</body></html>\n")


def _rsa_key(slot: int) -> tuple[str, str, str]:
    """(PKCS#1 PEM, PKCS#8 PEM, public PEM) of the kit's RSA key in slot 10 + `slot` (slots
    from 10: never the key a test makes with `rsa_key()`)."""
    key = rsa_key(10 + slot)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key_pem(key, serialization.PrivateFormat.TraditionalOpenSSL), key_pem(key), public


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str  # without any /api/v3 prefix, without the query string
    headers: dict[str, str]
    body: bytes
    query: str = ""  # the raw query string, without "?"

    @property
    def params(self) -> dict[str, str]:
        """The query parameters; the last one wins when repeated, as on GitHub."""
        return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))


@dataclasses.dataclass
class Review:
    id: int
    login: str  # as it was when the review was submitted; GitHub shows the account's login now
    user_id: int
    state: str  # one of REVIEW_STATES, or PENDING (stored, never listed)
    commit_id: str  # the head the review was submitted against
    submitted_at: dt.datetime
    body: str


@dataclasses.dataclass
class Commit:
    sha: str
    author_id: int | None  # the account the author's email belongs to; None: no account
    committer_id: int | None
    author_email: str
    committer_email: str
    reason: str  # GitHub's verification reason; `valid` is the one verified signature
    date: dt.datetime
    parent: str | None  # None only for a commit with no parent

    @property
    def verified(self) -> bool:
        return self.reason == "valid"


@dataclasses.dataclass
class PullRequest:
    repo: str  # "owner/name" as given to add_pull
    repo_id: int
    number: int
    author: str
    author_id: int
    head_sha: str
    head_ref: str
    base_sha: str
    base_ref: str
    state: str = "open"  # "open" or "closed", as GitHub spells them
    reviews: list[Review] = dataclasses.field(default_factory=list)
    commits: list[Commit] = dataclasses.field(default_factory=list)  # oldest first


@dataclasses.dataclass
class MintRecord:
    token: str
    installation_id: int
    repositories: list[str] | None  # as requested; None when the body had none
    permissions: dict[str, str] | None  # as requested; None when the body had none
    body: dict[str, Any]  # the JSON body as received
    jwt: str
    jwt_header: dict[str, Any]
    jwt_claims: dict[str, Any]
    expires_at: dt.datetime


@dataclasses.dataclass
class _Injected:
    status: int
    headers: dict[str, str]
    body: bytes


class FakeGitHub:
    """State and knobs of one fake GitHub; the `github_api` fixture gives a fresh one per test."""

    def __init__(self) -> None:
        self.app_id = "424242"
        self.client_id = "Iv23liFakeClientId01"
        self.installation_id = 55501
        self.owner = "octo-org"
        self.private_key_pem_pkcs1, self.private_key_pem_pkcs8, self.public_key_pem = _rsa_key(0)
        self.private_key_pem = self.private_key_pem_pkcs1  # GitHub hands out PKCS#1
        # What the installation was granted; a mint may ask for a subset, never more.
        self.repositories: list[str] = ["app", "infra", "docs"]
        self.permissions: dict[str, str] = {
            "contents": "write", "metadata": "read", "pull_requests": "write", "packages": "read",
        }
        # The installation as `connc check --reach` reads it (see `reach_endpoint`).
        self.repository_selection = "all"
        self.default_branches: dict[str, str] = {}  # repository name -> branch; else "main"
        self.branches: dict[str, list[str]] = {}  # repository name -> branch names; else [main]
        self.listing_failure: int | None = None  # answer /installation/repositories with it
        self.clock_offset = 0.0  # seconds GitHub's clock is ahead of this machine's
        # A token that may read every pull request of the fake (think: the workflow's
        # GITHUB_TOKEN); live installation tokens minted here work too, within their grant.
        self.repo_token = "ghs_" + base64.b32encode(secrets.token_bytes(25)).decode().rstrip("=")
        self.minted: list[MintRecord] = []
        self.revoked: list[str] = []
        self.requests: list[RecordedRequest] = []
        self._injected: list[_Injected] = []
        self._queued_tokens: list[str] = []
        self._tokens: dict[str, MintRecord] = {}
        self._pulls: dict[tuple[str, int], PullRequest] = {}  # key: ("owner/name".lower(), number)
        self._repo_ids: dict[str, int] = {}  # "owner/name".lower() -> repository id
        self._account_ids: dict[str, int] = {}  # login (lower case) -> account id
        self._logins: dict[int, str] = {}  # account id -> its login now
        self._review_ids = 80_000_000
        # Reviews and commits are stamped one second apart from a day ago: strictly increasing
        # and in the past, so ordering by time and "not in the future" checks both hold.
        self._event_clock = self.now_dt().replace(microsecond=0) - dt.timedelta(days=1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- knobs ---------------------------------------------------------------------------

    @property
    def ghes_url(self) -> str:
        """The same fake, addressed the way GitHub Enterprise Server is (…/api/v3)."""
        return self.url + "/api/v3"

    @property
    def other_private_key_pem(self) -> str:
        """A valid RSA key that is not this App's (its JWTs fail the signature check)."""
        return _rsa_key(1)[0]

    def fail_next(self, status: int, headers: dict[str, str] | None = None,
                  body: dict[str, Any] | str | bytes | None = None, times: int = 1) -> None:
        """Answer the next `times` requests, whatever they are, with this response.
        body: dict → JSON; str/bytes → sent as is; None → GitHub-style {"message": reason}."""
        if body is None:
            body = {"message": HTTPStatus(status).phrase, "documentation_url": DOCS}
        raw = json.dumps(body).encode() if isinstance(body, dict) else (
            body.encode() if isinstance(body, str) else body)
        with self._lock:
            self._injected.extend(_Injected(status, dict(headers or {}), raw) for _ in range(times))

    def non_json_next(self, status: int = 200, body: str | bytes = _UNICORN_HTML,
                      times: int = 1) -> None:
        """Answer the next `times` requests with an HTML page, as GitHub's front end does when
        the API behind it is down (a 200 whose body is not JSON is the case a client forgets)."""
        self.fail_next(status, {"Content-Type": "text/html; charset=utf-8"}, body, times)

    def add_user(self, login: str, user_id: int | None = None) -> int:
        """Register an account (GitHub logins are unique, compared case-insensitively) and
        return its id; any login used elsewhere is registered on first use."""
        with self._lock:
            if login.lower() in self._account_ids:
                raise ValueError(f"the login {login!r} is taken")
            return self._register_locked(login, user_id)

    def user_id(self, login: str) -> int:
        """The id of the account that has `login` now (registered on first use)."""
        with self._lock:
            return self._account_locked(login)

    def rename_user(self, login: str, new_login: str) -> None:
        """The account keeps its id, reviews and commits; `login` is free to register again."""
        with self._lock:
            if new_login.lower() in self._account_ids:
                raise ValueError(f"the login {new_login!r} is taken")
            user_id = self._account_ids.pop(login.lower())
            self._account_ids[new_login.lower()] = user_id
            self._logins[user_id] = new_login

    def add_pull(self, repo: str = DEFAULT_PULL_REPO, number: int = 1, author: str = "octo-author",
                 head_sha: str | None = None, *, head_ref: str = "change", base_ref: str = "main",
                 base_sha: str | None = None, state: str = "open",
                 reason: str = "unsigned") -> None:
        """Open pull request `number` in `repo` ("owner/name") with one commit, `head_sha`,
        authored and committed by `author` and signed as `reason` says (`valid`: a signature
        GitHub verified); shas default to random ones."""
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repo must be owner/name, not {repo!r}")
        if state not in ("open", "closed"):
            raise ValueError(f"state must be open or closed, not {state!r}")
        with self._lock:
            key = (repo.lower(), number)
            if key in self._pulls:
                raise ValueError(f"{repo}#{number} exists already")
            repo_id = self._repo_ids.setdefault(repo.lower(), 2000 + len(self._repo_ids))
            base = base_sha or secrets.token_hex(20)
            pull = PullRequest(repo, repo_id, number, author, self._account_locked(author), "",
                               head_ref, base, base_ref, state)
            self._pulls[key] = pull
            self._push_locked(pull, head_sha, PULL_AUTHOR, SAME_AS_AUTHOR, reason, None)

    def add_commit(self, repo: str, number: int, sha: str | None = None, *,
                   author: str | None = PULL_AUTHOR, committer: str | None = SAME_AS_AUTHOR,
                   reason: str = "unsigned", email: str | None = None) -> str:
        """Push one commit to the pull's branch (it becomes the head) and return its sha.
        `author`/`committer`: the accounts GitHub maps the commit's emails to, None when an
        email belongs to no account (then `email` is the one in the commit); `reason`: the
        signature's verification, one of GitHub's reasons (`valid` is verified)."""
        with self._lock:
            pull = self._pull_locked(repo, number)
            return self._push_locked(pull, sha, author, committer, reason, email)

    def add_review(self, repo: str, number: int, login: str, state: str,
                   commit_id: str | None = None, *, body: str = "") -> None:
        """Submit a review; commit_id defaults to the pull's head now, as GitHub records it."""
        if state not in REVIEW_STATES and state != "PENDING":
            raise ValueError(f"state must be one of {sorted(REVIEW_STATES)} or PENDING, "
                             f"not {state!r}")
        with self._lock:
            pull = self._pull_locked(repo, number)
            self._review_ids += 1
            self._event_clock += dt.timedelta(seconds=1)
            pull.reviews.append(Review(self._review_ids, login, self._account_locked(login),
                                       state, commit_id or pull.head_sha, self._event_clock,
                                       body))

    def dismiss_review(self, repo: str, number: int, review_id: int) -> None:
        """Dismiss a review: GitHub changes that review's state, it adds no new one."""
        with self._lock:
            for review in self._pull_locked(repo, number).reviews:
                if review.id == review_id:
                    review.state = "DISMISSED"
                    return
        raise KeyError(f"no review {review_id} on {repo}#{number}")

    def set_head(self, repo: str, number: int, sha: str) -> None:
        """A new push to the pull's branch: an unsigned commit by the pull's author. Earlier
        reviews keep the commit_id they had."""
        self.add_commit(repo, number, sha)

    def set_pull_state(self, repo: str, number: int, state: str) -> None:
        if state not in ("open", "closed"):
            raise ValueError(f"state must be open or closed, not {state!r}")
        with self._lock:
            self._pull_locked(repo, number).state = state

    def pull(self, repo: str, number: int) -> PullRequest:
        """The stored pull request, for assertions (a copy: changing it changes nothing)."""
        with self._lock:
            return copy.deepcopy(self._pull_locked(repo, number))

    def _pull_locked(self, repo: str, number: int) -> PullRequest:
        try:
            return self._pulls[(repo.lower(), number)]
        except KeyError:
            raise KeyError(f"no pull request {repo}#{number}: add_pull it first") from None

    def _register_locked(self, login: str, user_id: int | None) -> int:
        if user_id is None:
            user_id = 7000 + len(self._logins)
            while user_id in self._logins:
                user_id += 1
        elif user_id <= 0 or user_id in self._logins:
            raise ValueError(f"the account id {user_id} is taken or not positive")
        self._account_ids[login.lower()] = user_id
        self._logins[user_id] = login
        return user_id

    def _account_locked(self, login: str) -> int:
        found = self._account_ids.get(login.lower())
        return found if found is not None else self._register_locked(login, None)

    def _push_locked(self, pull: PullRequest, sha: str | None, author: str | None,
                     committer: str | None, reason: str, email: str | None) -> str:
        if reason not in VERIFICATION_REASONS:
            raise ValueError(f"reason must be one of {sorted(VERIFICATION_REASONS)}, "
                             f"not {reason!r}")
        if author == PULL_AUTHOR:
            author = self._logins[pull.author_id]
        if committer == SAME_AS_AUTHOR:
            committer = author
        author_id = None if author is None else self._account_locked(author)
        committer_id = None if committer is None else self._account_locked(committer)
        self._event_clock += dt.timedelta(seconds=1)
        commit = Commit(sha or secrets.token_hex(20), author_id, committer_id,
                        self._email(author_id, email), self._email(committer_id, email), reason,
                        self._event_clock, pull.head_sha or pull.base_sha)
        pull.commits.append(commit)
        pull.head_sha = commit.sha
        return commit.sha

    def _email(self, user_id: int | None, email: str | None) -> str:
        if user_id is None:
            return email or "someone@example.invalid"
        # GitHub's no-reply address of an account: it maps back to the account by its id.
        return f"{user_id}+{self._logins[user_id]}@users.noreply.github.com"

    def queue_token(self, token: str) -> None:
        """Make the next mint issue exactly this token (e.g. a canary) instead of a random one."""
        with self._lock:
            self._queued_tokens.append(token)

    def is_live(self, token: str) -> bool:
        with self._lock:
            record = self._tokens.get(token)
            return record is not None and token not in self.revoked \
                and record.expires_at > self.now_dt()

    def now(self) -> float:
        return time.time() + self.clock_offset

    def now_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    # --- server --------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            github = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (called from server threads) --------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        path, _, query = path.partition("?")
        prefix = ""
        if path.startswith("/api/v3/"):
            prefix, path = "/api/v3", path[len("/api/v3"):]
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, body, query))
            injected = self._injected.pop(0) if self._injected else None
        if injected is not None:
            return injected.status, injected.headers, injected.body

        lower = {k.lower(): v for k, v in headers.items()}
        if not lower.get("user-agent"):  # GitHub refuses requests without one
            return _error(403, "Request forbidden by administrative rules. Please make sure "
                               "your request has a User-Agent header")
        if lower.get("accept") != "application/vnd.github+json" \
                or lower.get("x-github-api-version") != "2022-11-28":
            return _error(400, "connc must send Accept: application/vnd.github+json and "
                               "X-GitHub-Api-Version: 2022-11-28")
        if method == "GET" and (_PULL_PATH.match(path) or _PULL_BY_ID_PATH.match(path)):
            return self._pull_endpoint(self.url + prefix, path, query,
                                       lower.get("authorization", ""))

        bearer = lower.get("authorization", "")
        bearer = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else ""

        match = _MINT_PATH.match(path)
        if method == "POST" and match:
            return self._mint(int(match.group(1)), bearer, body)
        if method == "GET" and path == "/app":
            claims_or_error = self._verify_jwt(bearer)
            if isinstance(claims_or_error, tuple):
                return claims_or_error
            return _json(200, {"id": int(self.app_id), "client_id": self.client_id,
                               "slug": "connc-fake", "name": "connc fake App"})
        if method == "DELETE" and path == "/installation/token":
            with self._lock:
                if not self._live_locked(bearer):
                    return _error(401, "Bad credentials")
                self.revoked.append(bearer)
            return 204, {}, b""
        if method == "GET":
            answer = self.reach_endpoint(self.url + prefix, path, query, bearer)
            if answer is not None:
                return answer
        return _error(404, "Not Found")

    def reach_endpoint(self, api: str, path: str, query: str, bearer: str
                       ) -> tuple[int, dict[str, str], bytes] | None:
        """The reads of `connc check --reach` (see `_reach_endpoint`), or None."""
        return _reach_endpoint(self, api, path, query, bearer)

    def _pull_endpoint(self, api: str, path: str, query: str, authorization: str
                       ) -> tuple[int, dict[str, str], bytes]:
        """GET a pull request, its reviews or its commits, by /repos/{owner}/{repo} or
        /repositories/{id}."""
        # GitHub takes both schemes for installation tokens ("Authenticating to the REST API").
        scheme, _, token = authorization.partition(" ")
        token = token.strip() if scheme.lower() in ("bearer", "token") else ""
        by_name = _PULL_PATH.match(path)
        with self._lock:
            if by_name:
                repo_key = f"{by_name.group(1)}/{by_name.group(2)}".lower()
                number, listing = int(by_name.group(3)), by_name.group(4)
            else:
                by_id = _PULL_BY_ID_PATH.match(path)
                assert by_id is not None
                repo_id = int(by_id.group(1))
                repo_key = next((k for k, v in self._repo_ids.items() if v == repo_id), "")
                number, listing = int(by_id.group(2)), by_id.group(3)
            refused = self._refuse_repo_read_locked(token, repo_key)
            if refused is not None:
                return refused
            pull = self._pulls.get((repo_key, number))
            if pull is None:
                return _error(404, "Not Found")
            if not listing:
                return _json(200, self._pull_json(api, pull))
            if listing == "/reviews":
                # GitHub lists reviews oldest first ("returns in chronological order").
                listed = [self._review_json(api, pull, r) for r in pull.reviews
                          if r.state != "PENDING"]
            else:
                listed = [self._commit_json(api, pull, c)
                          for c in pull.commits[:COMMITS_LISTED]]
            link_base = f"{api}/repositories/{pull.repo_id}/pulls/{pull.number}{listing}"
        page, link = _paginate(listed, query, link_base)
        status, headers, payload = _json(200, page)
        if link:
            headers["Link"] = link
        return status, headers, payload

    def _refuse_repo_read_locked(self, token: str, repo_key: str
                                 ) -> tuple[int, dict[str, str], bytes] | None:
        """None when `token` may read pull requests of `repo_key`, else GitHub's answer."""
        # Bytes: compare_digest refuses str with non-ASCII, and a header may carry any.
        if token and secrets.compare_digest(token.encode(), self.repo_token.encode()):
            return None
        if not token or not self._live_locked(token):
            # No token is a 401 here too, so a client that drops the header fails with a clear
            # message. GitHub itself takes such a request as anonymous and, the repository
            # being private, answers 404.
            return _error(401, "Bad credentials")
        record = self._tokens[token]
        owner, _, name = repo_key.partition("/")
        allowed = record.repositories if record.repositories is not None else self.repositories
        if owner != self.owner.lower() or name not in [r.lower() for r in allowed]:
            return _error(404, "Not Found")  # GitHub hides what a token cannot see
        granted = record.permissions if record.permissions is not None else self.permissions
        if _LEVELS.get(granted.get("pull_requests", ""), 0) < _LEVELS["read"]:
            return _error(403, "Resource not accessible by integration")
        return None

    def _user_json(self, api: str, login: str | None = None, *, uid: int | None = None
                   ) -> dict[str, Any]:
        """GitHub's `simple-user`, of the account with this login or id."""
        if uid is None:
            assert login is not None
            uid = self._account_locked(login)
        login = self._logins[uid]
        return {"login": login, "id": uid, "node_id": f"U_fake{uid}",
                "type": "Bot" if login.endswith("[bot]") else "User", "site_admin": False,
                "url": f"{api}/users/{urllib.parse.quote(login)}"}

    def _pull_json(self, api: str, pull: PullRequest) -> dict[str, Any]:
        """The fields of GitHub's `pull-request` schema a reviewer check can need."""
        owner, _, name = pull.repo.partition("/")
        repo = {"id": pull.repo_id, "name": name, "full_name": pull.repo, "private": True,
                "owner": self._user_json(api, owner)}
        url = f"{api}/repos/{pull.repo}/pulls/{pull.number}"
        return {
            "url": url, "id": 900_000 + pull.repo_id * 1000 + pull.number,
            "node_id": f"PR_fake{pull.repo_id}_{pull.number}", "number": pull.number,
            "html_url": f"https://github.com/{pull.repo}/pull/{pull.number}",
            "state": pull.state, "locked": False, "draft": False, "title": f"Change {pull.number}",
            "body": None, "user": self._user_json(api, uid=pull.author_id),
            "author_association": "MEMBER", "merged": False, "merged_at": None,
            "closed_at": None, "merge_commit_sha": None,
            "head": {"label": f"{owner}:{pull.head_ref}", "ref": pull.head_ref,
                     "sha": pull.head_sha, "user": self._user_json(api, owner), "repo": repo},
            "base": {"label": f"{owner}:{pull.base_ref}", "ref": pull.base_ref,
                     "sha": pull.base_sha, "user": self._user_json(api, owner), "repo": repo},
            "review_comments_url": f"{url}/comments", "commits_url": f"{url}/commits",
            "commits": len(pull.commits),
        }

    def _review_json(self, api: str, pull: PullRequest, review: Review) -> dict[str, Any]:
        """GitHub's `pull-request-review` schema."""
        html = f"https://github.com/{pull.repo}/pull/{pull.number}"
        return {
            "id": review.id, "node_id": f"PRR_fake{review.id}",
            "user": self._user_json(api, uid=review.user_id), "body": review.body,
            "state": review.state, "commit_id": review.commit_id,
            "submitted_at": review.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "author_association": "MEMBER",
            "html_url": f"{html}#pullrequestreview-{review.id}",
            "pull_request_url": f"{api}/repos/{pull.repo}/pulls/{pull.number}",
            "_links": {"html": {"href": f"{html}#pullrequestreview-{review.id}"},
                       "pull_request": {"href": f"{api}/repos/{pull.repo}/pulls/{pull.number}"}},
        }

    def _commit_json(self, api: str, pull: PullRequest, commit: Commit) -> dict[str, Any]:
        """An item of "List commits on a pull request" (GitHub's `commit` schema). `author` and
        `committer` are the accounts of the commit's emails, null for an email no account has;
        `verification` says whether GitHub verified the signature, which it checks against the
        committer."""
        repo_url = f"{api}/repos/{pull.repo}"
        stamp = commit.date.strftime("%Y-%m-%dT%H:%M:%SZ")
        people = {role: {"name": self._logins[uid] if uid is not None else "Someone",
                         "email": email, "date": stamp}
                  for role, uid, email in (("author", commit.author_id, commit.author_email),
                                           ("committer", commit.committer_id,
                                            commit.committer_email))}
        tree = hashlib.sha1(commit.sha.encode()).hexdigest()  # noqa: S324 - a made-up id
        message = f"Change {commit.sha[:7]}"
        signed = commit.reason != "unsigned"
        payload = (f"tree {tree}\n" + (f"parent {commit.parent}\n" if commit.parent else "")
                   + "".join(f"{role} {who['name']} <{who['email']}> "
                             f"{int(commit.date.timestamp())} +0000\n"
                             for role, who in people.items())
                   + f"\n{message}\n")
        signature = ("-----BEGIN PGP SIGNATURE-----\n\n"
                     + base64.b64encode(hashlib.sha256(payload.encode()).digest()).decode()
                     + "\n-----END PGP SIGNATURE-----\n")
        return {
            "url": f"{repo_url}/commits/{commit.sha}", "sha": commit.sha,
            "node_id": f"C_fake{commit.sha[:12]}",
            "html_url": f"https://github.com/{pull.repo}/commit/{commit.sha}",
            "comments_url": f"{repo_url}/commits/{commit.sha}/comments",
            "commit": {
                "url": f"{repo_url}/git/commits/{commit.sha}",
                "author": people["author"], "committer": people["committer"],
                "message": message,
                "tree": {"url": f"{repo_url}/git/trees/{tree}", "sha": tree},
                "comment_count": 0,
                "verification": {"verified": commit.verified, "reason": commit.reason,
                                 "signature": signature if signed else None,
                                 "payload": payload if signed else None,
                                 "verified_at": stamp if commit.verified else None},
            },
            "author": None if commit.author_id is None
            else self._user_json(api, uid=commit.author_id),
            "committer": None if commit.committer_id is None
            else self._user_json(api, uid=commit.committer_id),
            "parents": [] if commit.parent is None else [{
                "url": f"{repo_url}/commits/{commit.parent}", "sha": commit.parent,
                "html_url": f"https://github.com/{pull.repo}/commit/{commit.parent}"}],
        }

    def _live_locked(self, token: str) -> bool:
        record = self._tokens.get(token)
        return record is not None and token not in self.revoked and record.expires_at > self.now_dt()

    def _verify_jwt(self, token: str) -> dict[str, Any] | tuple[int, dict[str, str], bytes]:
        """The claims, or GitHub's 401 answer."""
        import jwt

        undecodable = _error(401, "A JSON web token could not be decoded")
        if not token:
            return _error(401, "Requires authentication")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key_pem, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False, "verify_iss": False})
        except jwt.PyJWTError:
            return undecodable
        if header.get("alg") != "RS256":
            return undecodable
        iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
        if not isinstance(iat, int) or isinstance(iat, bool):
            return _error(401, "'Issued at' claim ('iat') must be an Integer representing the "
                               "time that the assertion was issued.")
        if not isinstance(exp, int) or isinstance(exp, bool):
            return _error(401, "'Expiration time' claim ('exp') must be a numeric value "
                               "representing the future time at which the assertion expires.")
        now = self.now()
        if iat > now:
            return _error(401, "'Issued at' claim ('iat') must be an Integer representing the "
                               "time that the assertion was issued.")
        if exp > iat + 600:
            return _error(401, "'Expiration time' claim ('exp') is too far in the future.")
        if exp <= now:
            return _error(401, "'Expiration time' claim ('exp') must be a numeric value "
                               "representing the future time at which the assertion expires.")
        if not isinstance(iss, str) or iss not in (self.app_id, self.client_id):
            return undecodable
        return {"header": header, "claims": claims}

    def _mint(self, installation_id: int, bearer: str, raw: bytes
              ) -> tuple[int, dict[str, str], bytes]:
        verified = self._verify_jwt(bearer)
        if isinstance(verified, tuple):
            return verified
        if installation_id != self.installation_id:
            return _error(404, "Not Found")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return _error(400, "Problems parsing JSON")
        if not isinstance(body, dict):
            return _error(400, "Problems parsing JSON")
        repositories = body.get("repositories")
        permissions = body.get("permissions")
        if repositories is not None and (not isinstance(repositories, list) or not all(
                isinstance(r, str) for r in repositories)):
            return _error(422, "Invalid request.")
        if permissions is not None and (not isinstance(permissions, dict) or not all(
                isinstance(v, str) for v in permissions.values())):
            return _error(422, "Invalid request.")
        if repositories is not None and any(r not in self.repositories for r in repositories):
            return _error(422, "There is at least one repository that does not exist or is not "
                               "accessible to the parent installation.")
        if permissions is not None and any(
                _LEVELS.get(level, 99) > _LEVELS.get(self.permissions.get(name, ""), 0)
                for name, level in permissions.items()):
            return _error(422, "The permissions requested are not granted to this installation.")

        with self._lock:
            token = self._queued_tokens.pop(0) if self._queued_tokens else \
                "ghs_" + base64.b32encode(secrets.token_bytes(25)).decode().rstrip("=")
            expires_at = (self.now_dt() + dt.timedelta(hours=1)).replace(microsecond=0)
            record = MintRecord(token, installation_id, repositories, permissions, body, bearer,
                                verified["header"], verified["claims"], expires_at)
            self.minted.append(record)
            self._tokens[token] = record
        answer: dict[str, Any] = {
            "token": token,
            "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": permissions if permissions is not None else dict(self.permissions),
            "repository_selection": "selected" if repositories is not None else "all",
        }
        if repositories is not None:
            answer["repositories"] = [self._repo(name) for name in repositories]
        return _json(201, answer)

    def _repo(self, name: str) -> dict[str, Any]:
        index = self.repositories.index(name) if name in self.repositories else 0
        return {"id": 1000 + index, "name": name, "full_name": f"{self.owner}/{name}",
                "private": True}


# --- what `connc check --reach` reads: the installation, its repositories, their branches ------
# Shapes from https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app,
# https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation
# and https://docs.github.com/rest/branches/branches#list-branches ("Contents" read needed).

_INSTALLATION_PATH = re.compile(r"^/app/installations/(\d+)$")
_BRANCHES_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/branches$")


def _reach_endpoint(fake: FakeGitHub, api: str, path: str, query: str, bearer: str
                    ) -> tuple[int, dict[str, str], bytes] | None:
    """A GET of the installation (JWT), its repositories or a repository's branches (an
    installation token); None for any other path."""
    installation = _INSTALLATION_PATH.match(path)
    if installation:
        verified = fake._verify_jwt(bearer)
        if isinstance(verified, tuple):
            return verified
        if int(installation.group(1)) != fake.installation_id:
            return _error(404, "Not Found")
        return _json(200, _installation_json(fake, api))
    branches = _BRANCHES_PATH.match(path)
    if path != "/installation/repositories" and not branches:
        return None
    with fake._lock:
        if not fake._live_locked(bearer):
            return _error(401, "Bad credentials")
        record = fake._tokens[bearer]
        selected = record.repositories or fake.repositories
        granted = record.permissions if record.permissions is not None else fake.permissions
    if branches is None and fake.listing_failure is not None:
        return _error(fake.listing_failure, HTTPStatus(fake.listing_failure).phrase)
    if branches is None:
        repos = [_repository_json(fake, api, name) for name in selected]
        page, link = _paginate(repos, query, f"{api}/installation/repositories")
        body: Any = {"total_count": len(repos), "repositories": page,
                     "repository_selection": "selected" if record.repositories
                     else fake.repository_selection}
    else:
        owner, name = branches.group(1), branches.group(2)
        if owner.lower() != fake.owner.lower() or name not in selected:
            return _error(404, "Not Found")
        if _LEVELS.get(granted.get("contents", ""), 0) < _LEVELS["read"]:
            return _error(403, "Resource not accessible by integration")
        names = fake.branches.get(name, [fake.default_branches.get(name, "main")])
        listed = [{"name": branch, "commit": {"sha": "0" * 40,
                                              "url": f"{api}/repos/{owner}/{name}/commits/"
                                                     f"{'0' * 40}"},
                   "protected": False} for branch in names]
        page, link = _paginate(listed, query, f"{api}/repos/{owner}/{name}/branches")
        body = page
    status, headers, payload = _json(200, body)
    if link:
        headers["Link"] = link
    return status, headers, payload


def _installation_json(fake: FakeGitHub, api: str) -> dict[str, Any]:
    return {"id": fake.installation_id, "app_id": int(fake.app_id), "app_slug": "connc-fake",
            "account": {"login": fake.owner, "id": 6000, "type": "Organization"},
            "repository_selection": fake.repository_selection,
            "access_tokens_url": f"{api}/app/installations/{fake.installation_id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"https://github.com/organizations/{fake.owner}/settings/installations/"
                        f"{fake.installation_id}",
            "target_type": "Organization", "permissions": dict(fake.permissions),
            "events": [], "suspended_at": None}


def _repository_json(fake: FakeGitHub, api: str, name: str) -> dict[str, Any]:
    return {**fake._repo(name), "node_id": f"R_fake{name}",
            "owner": {"login": fake.owner, "type": "Organization"},
            "html_url": f"https://github.com/{fake.owner}/{name}",
            "url": f"{api}/repos/{fake.owner}/{name}",
            "default_branch": fake.default_branches.get(name, "main"), "archived": False,
            "visibility": "private"}


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    server_version = "GitHub.com"
    sys_version = ""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.github.handle(self.command, self.path,
                                                      dict(self.headers.items()), body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if status != 204:
            self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


def _paginate(items: list[Any], query: str, link_base: str) -> tuple[list[Any], str]:
    """One page of `items` and its `Link` header ("" when there is none), as GitHub pages:
    per_page (default 30, larger values capped at 100) and page (default 1) in the query;
    `Link` carries prev/next/last/first absolute URLs, omitting prev and first on the first
    page, next and last on the last, and the whole header when everything fits on one page
    ("Using pagination in the REST API"). A value that is not a positive integer is taken as
    absent: what GitHub does with one is not documented."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    per_page = min(_positive_int(params.get("per_page")) or _PER_PAGE_DEFAULT, _PER_PAGE_MAX)
    page = _positive_int(params.get("page")) or 1
    last = max(1, -(-len(items) // per_page))
    # Other parameters are carried into the links as sent; page goes last, as GitHub puts it.
    kept = [(k, v) for k, v in pairs if k != "page"]

    def url(number: int) -> str:
        return f"{link_base}?{urllib.parse.urlencode([*kept, ('page', str(number))])}"

    rels: list[tuple[str, int]] = []
    if page > 1:
        rels.append(("prev", page - 1))
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    if page > 1:
        rels.append(("first", 1))
    link = ", ".join(f'<{url(number)}>; rel="{rel}"' for rel, number in rels)
    return items[(page - 1) * per_page:page * per_page], link


def _positive_int(value: str | None) -> int | None:
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value) or None


def _json(status: int, payload: dict[str, Any] | list[Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(payload).encode()


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"message": message, "documentation_url": DOCS})


@contextlib.contextmanager
def unresponsive_server() -> Iterator[str]:
    """A loopback URL that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def github_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    # A proxy from the environment must not intercept loopback traffic.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with FakeGitHub() as fake:
        yield fake
