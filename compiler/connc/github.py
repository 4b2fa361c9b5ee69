"""The GitHub API client: App installation tokens (spec section 4.1), minted and revoked.

Requests go through `connc.http`; `jwt` and `cryptography` are imported inside the functions
that use them: the start-up time of `connc render` is a measured product metric, and most
renders mint nothing.

Every message raised from here is shown to the user, so none may contain the private key, the
JWT signed with it, or an installation token. Three habits keep it that way:
  * secrets travel as `Secret` and are revealed only where a request or a signature needs them;
  * a `GitHubError` is raised *outside* any `except` block, so it carries no `__context__`
    (a `JSONDecodeError` keeps the whole response body, which can hold a token);
  * text that GitHub sent back is shown only through `_safe_github_message`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from connc import __version__, http
from connc.errors import GitHubError
from connc.secrets import Secret

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = f"connc/{__version__}"

# GitHub refuses a JWT whose exp is more than 10 minutes after iat. Backdating iat by 60 s
# absorbs a runner clock that is a little ahead of GitHub's; 9 minutes keeps exp inside the
# 10-minute window even then.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 9 * 60
TOKEN_LIFETIME = dt.timedelta(hours=1)

_BACKOFF_BASE = 1.0  # seconds before the 2nd attempt; doubles per attempt
_BACKOFF_CAP = 16.0
_SECONDARY_RATE_LIMIT_WAIT = 60.0  # GitHub: without retry-after, "wait at least one minute"
_MESSAGE_CAP = 200

# Credentials that could show up in text GitHub echoes back: tokens (ghs_, ghp_, github_pat_),
# JWTs, and long base64 runs such as PEM lines.
_TOKEN_RE = re.compile(
    r"gh[pousr]_[A-Za-z0-9_]+|github_pat_[A-Za-z0-9_]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"
)
_CREDENTIAL_RE = re.compile(_TOKEN_RE.pattern + r"|[A-Za-z0-9+/=_-]{32,}")


@dataclasses.dataclass(frozen=True)
class InstallationToken:
    """A minted installation token. `repositories` is None when it covers all of them."""

    token: Secret
    expires_at: dt.datetime  # aware, UTC
    permissions: dict[str, str]
    repositories: list[str] | None


def issuer(spec: Mapping[str, Any]) -> str:
    """The JWT `iss` of a github-app spec (YAML spelling): the client ID, else the App ID."""
    return str(spec["clientId"]) if spec.get("clientId") is not None else str(spec["appId"])


def app_for(spec: Mapping[str, Any], private_key: Secret, *, connection: str,
            **options: Any) -> GitHubApp:
    """The App of a github-app connection, from its spec (defaults filled in)."""
    return GitHubApp(str(spec["apiUrl"]), issuer(spec), private_key, connection=connection,
                     **options)


def jwt_for_app(
    app_id: str, private_key: Secret, now: float, *, connection: str = "github-app"
) -> str:
    """The RS256 JWT that authenticates as the App itself, valid for about 9 minutes."""
    return _encode_jwt(app_id, _load_rsa_key(private_key, connection), now)


class GitHubApp:
    """One GitHub App of one connection, able to mint installation tokens."""

    def __init__(
        self,
        api_url: str,
        app_id_or_client_id: str,
        private_key: Secret,
        *,
        connection: str = "github-app",
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = http.pause,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = str(app_id_or_client_id).strip()
        if not self.app_id:
            raise GitHubError(f"connection '{connection}': the App ID / client ID is empty")
        self.connection = connection
        self._private_key = private_key
        self._key: RSAPrivateKey | None = None  # parsed on first use, then reused
        self._clock = clock
        self._client_args = (api_url, f"connection '{connection}'", timeout, max_attempts,
                             max_wait, sleep, clock)
        self._display_url = self._new_client().display_url

    def _new_client(self) -> _Client:
        # One per request (it counts attempts): one GitHubApp stays usable from several threads.
        return _Client(*self._client_args)

    def __repr__(self) -> str:
        return f"GitHubApp({self._display_url!r}, app_id={self.app_id!r})"

    def mint_installation_token(
        self,
        installation_id: int,
        repositories: Sequence[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> InstallationToken:
        """POST /app/installations/{id}/access_tokens, scoped to what the pipeline declares."""
        conn = self.connection
        if isinstance(installation_id, bool) or not isinstance(installation_id, int) \
                or installation_id <= 0:
            raise GitHubError(f"connection '{conn}': installationId must be a positive integer")
        body: dict[str, Any] = {}
        # An empty list or mapping would be dropped by GitHub and so widen the token to the
        # whole installation: the opposite of what a pipeline that declares "nothing" means.
        if repositories is not None:
            if not repositories:
                raise GitHubError(f"connection '{conn}': the repositories list is empty")
            body["repositories"] = list(repositories)
        if permissions is not None:
            if not permissions:
                raise GitHubError(f"connection '{conn}': the permissions mapping is empty")
            body["permissions"] = dict(permissions)

        if self._key is None:
            self._key = _load_rsa_key(self._private_key, conn)
        key = self._key
        # A fresh JWT per attempt: a rate-limit wait must not let it go stale.
        auth = _BearerAuth(lambda: _encode_jwt(self.app_id, key, self._clock()))
        client = self._new_client()
        response = client.send(
            "POST", f"/app/installations/{installation_id}/access_tokens", auth, body,
            what="mint an installation token",
        )
        status = response.status
        if status in (200, 201):
            return self._parse_token(response, client)

        said = _said(response, auth.secrets_sent())
        app = f"App '{self.app_id}'"
        if status in (401, 404):
            raise self._refused(status, installation_id, client, said)
        if status == 422:
            asked = []
            if repositories is not None:
                asked.append(f"repositories {', '.join(repositories)}")
            if permissions is not None:
                asked.append("permissions " + ", ".join(f"{k}: {v}" for k, v in permissions.items()))
            raise GitHubError(
                f"connection '{conn}': the {' and '.join(asked) or 'scope'} requested exceed what "
                f"installation {installation_id} of {app} was granted (HTTP 422){said}"
            )
        raise client.unexpected(response, "mint an installation token", said)

    def _refused(self, status: int, installation_id: int, client: _Client,
                 said: str) -> GitHubError:
        """The message for a 401 (the JWT) or a 404 (the installation) from an App request."""
        conn, app = self.connection, f"App '{self.app_id}'"
        if status == 401:
            return GitHubError(
                f"connection '{conn}': GitHub rejected the JWT of {app} (HTTP 401){said}. Check "
                "that appId/clientId belongs to this private key, and that this machine's clock "
                "is within a minute of GitHub's (the JWT's iat is backdated 60 s, exp is +9 min)"
            )
        return GitHubError(
            f"connection '{conn}': installation {installation_id} not found for {app} "
            f"(HTTP 404) at {client.display_url}{said}. Check installationId, and that "
            "the App is installed on the account that owns the repositories"
            + client.enterprise_hint()
        )

    def installation(self, installation_id: int) -> Installation:
        """GET /app/installations/{id} with the App's JWT: who installed it, on which
        repositories ("all" or "selected"), with which permissions. Reads only."""
        if self._key is None:
            self._key = _load_rsa_key(self._private_key, self.connection)
        key = self._key
        auth = _BearerAuth(lambda: _encode_jwt(self.app_id, key, self._clock()))
        client = self._new_client()
        what = f"read installation {installation_id}"
        response = client.send("GET", f"/app/installations/{installation_id}", auth, None,
                               what=what)
        said = _said(response, auth.secrets_sent())
        if response.status in (401, 404):
            raise self._refused(response.status, installation_id, client, said)
        if response.status != 200:
            raise client.unexpected(response, what, said)
        data = response.json()
        if not isinstance(data, dict):
            raise GitHubError(f"{client.subject}: cannot {what}: the answer is not an "
                              f"installation (not a GitHub API?)")
        sent = auth.secrets_sent()
        account = data.get("account")
        permissions = data.get("permissions")
        return Installation(
            account=_safe_name(account.get("login"), sent) if isinstance(account, dict) else None,
            repository_selection=_safe_name(data.get("repository_selection"), sent),
            # Names and levels as a message may show them (printable, bounded, never a token).
            permissions={name: level for name, level in (
                (_safe_name(k, sent), _safe_name(v, sent)) for k, v in permissions.items())
                if name and level} if isinstance(permissions, dict) else {},
            settings_url=_safe_name(data.get("html_url"), sent),
        )

    def _parse_token(self, response: http.Answer, client: _Client) -> InstallationToken:
        data = response.json()
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or not token.isprintable() or " " in token:
            raise GitHubError(
                f"connection '{self.connection}': GitHub answered the token request without a "
                "usable token (not a GitHub API?)"
            )
        secret = Secret(token)
        assert isinstance(data, dict)
        expires_at = _parse_utc(data.get("expires_at"))
        if expires_at is None:
            # The token exists but we cannot say when it dies: do not leave it live behind us.
            outcome = "it was revoked"
            try:
                revoke_installation_token(
                    client.api_url, secret, timeout=client.timeout, max_attempts=1,
                    connection=self.connection, clock=client.clock,
                )
            except GitHubError:
                outcome = "revoking it failed too; it expires within the hour"
            raise GitHubError(
                f"connection '{self.connection}': GitHub's token response has no valid "
                f"expires_at; {outcome}"
            )
        permissions = data.get("permissions")
        repos = data.get("repositories")
        return InstallationToken(
            token=secret,
            expires_at=expires_at,
            permissions={str(k): str(v) for k, v in permissions.items()}
            if isinstance(permissions, dict) else {},
            repositories=[str(r["name"]) for r in repos if isinstance(r, dict) and "name" in r]
            if isinstance(repos, list) else None,
        )


def revoke_installation_token(
    api_url: str,
    token: Secret,
    *,
    timeout: float = 10.0,
    connection: str = "github-app",
    max_attempts: int = 4,
    max_wait: float = 60.0,
    sleep: Callable[[float], None] = http.pause,
    clock: Callable[[], float] = time.time,
) -> bool:
    """DELETE /installation/token. True if revoked now, False if it was already dead (401).

    Revoking undoes a mint, so it is made even after the caller's deadline passed or it was
    cancelled (`http.detached`): bounded by its own timeout and attempts."""
    client = _Client(api_url, f"connection '{connection}'", timeout, max_attempts, max_wait,
                     sleep, clock)
    auth = _BearerAuth(token.reveal)
    with http.detached():
        response = client.send("DELETE", "/installation/token", auth, None,
                               what="revoke an installation token")
    if response.status == 204:
        return True
    if response.status == 401:  # expired or revoked already: nothing left to do
        return False
    said = _said(response, auth.secrets_sent())
    raise client.unexpected(response, "revoke an installation token", said)


# --- what an installation reaches (connc check --reach) ---------------------------------------


@dataclasses.dataclass(frozen=True)
class Installation:
    """What GitHub says of an App installation. Values GitHub sent are printable, with any
    credential it echoed redacted; None where it said nothing."""

    account: str | None  # the user or organisation that installed the App
    repository_selection: str | None  # "all" or "selected"
    permissions: dict[str, str]
    settings_url: str | None  # where the account changes the installation (html_url)


@dataclasses.dataclass(frozen=True)
class Repository:
    full_name: str
    name: str
    default_branch: str | None


@dataclasses.dataclass(frozen=True)
class Listing:
    """The first items of a list; `total` when GitHub counts them, `complete` when none is
    left off."""

    items: list[Any]
    total: int | None
    complete: bool


class InstallationReader:
    """What an installation token sees: its repositories and their branches. GET requests
    only, paginated as GitHub paginates (`Link`, followed only within `api_url`)."""

    def __init__(self, api_url: str, token: Secret, *, connection: str, timeout: float = 10.0,
                 max_attempts: int = 2, max_wait: float = 10.0,
                 sleep: Callable[[float], None] = http.pause,
                 clock: Callable[[], float] = time.time) -> None:
        self._token = token
        self._client_args = (api_url, f"connection '{connection}'", timeout, max_attempts,
                             max_wait, sleep, clock)

    def repositories(self, limit: int) -> Listing:
        """GET /installation/repositories: the repositories the installation can access."""
        def items(data: Any) -> list[Any] | None:
            repos = data.get("repositories") if isinstance(data, dict) else None
            return repos if isinstance(repos, list) else None

        listing, sent = self._pages("/installation/repositories", items, limit,
                                    "list the installation's repositories")
        found = []
        for repo in listing.items:
            full_name = _safe_name(repo.get("full_name"), sent) if isinstance(repo, dict) else None
            if full_name is None:
                continue
            found.append(Repository(full_name, _safe_name(repo.get("name"), sent) or full_name,
                                    _safe_name(repo.get("default_branch"), sent)))
        return Listing(found, listing.total, listing.complete)

    def branches(self, full_name: str, limit: int) -> Listing | None:
        """GET /repos/{owner}/{repo}/branches; None when GitHub refuses them to this token
        (403: no `contents` permission; 404)."""
        def items(data: Any) -> list[Any] | None:
            return data if isinstance(data, list) else None

        if not _REPOSITORY.fullmatch(full_name):
            return None  # a name GitHub sent that is no owner/repo: not put in a path
        try:
            listing, sent = self._pages(f"/repos/{full_name}/branches", items, limit,
                                        f"list the branches of {full_name}", refusable=True)
        except _Refused:
            return None
        names = [_safe_name(b.get("name"), sent) for b in listing.items if isinstance(b, dict)]
        return Listing([n for n in names if n], listing.total, listing.complete)

    def _pages(self, path: str, items_of: Callable[[Any], list[Any] | None], limit: int,
               what: str, *, refusable: bool = False) -> tuple[Listing, list[str]]:
        client = _Client(*self._client_args)
        auth = _BearerAuth(self._token.reveal)
        separator = "&" if "?" in path else "?"
        next_path: str | None = f"{path}{separator}per_page=100"
        found: list[Any] = []
        total: int | None = None
        pages = 0  # a `next` that never ends (or lists nothing) is not followed forever
        while next_path is not None and len(found) < limit and pages < _MAX_PAGES:
            pages += 1
            # A page of 100 full repository objects is most of a megabyte.
            response = client.send("GET", next_path, auth, None, what=what,
                                   max_bytes=_LISTING_BYTES)
            if response.status in (403, 404) and refusable:
                raise _Refused
            said = _said(response, auth.secrets_sent())
            if response.status == 401:
                raise GitHubError(f"{client.subject}: GitHub refused the installation token "
                                  f"it had just minted (HTTP 401){said}")
            if response.status != 200:
                raise client.unexpected(response, what, said)
            data = response.json()
            items = items_of(data)
            if items is None:
                raise GitHubError(f"{client.subject}: cannot {what}: the answer is not the "
                                  f"list GitHub documents (not a GitHub API?)")
            if total is None and isinstance(data, dict) \
                    and isinstance(data.get("total_count"), int):
                total = data["total_count"]
            found.extend(items)
            next_path = _next_page(client, response)
        complete = next_path is None and len(found) <= limit
        return Listing(found[:limit], total, complete), auth.secrets_sent()


_LISTING_BYTES = 4 * 1024 * 1024


class _Refused(Exception):
    """GitHub would not list something for this token (403, 404)."""


def _next_page(client: _Client, response: http.Answer) -> str | None:
    """The path of the `rel="next"` page, which must be at the same API: the token is sent
    there and nowhere else."""
    url = http.next_link(response.headers.get("Link"))
    if not url:
        return None
    if not url.startswith(client.api_url + "/"):
        raise GitHubError(f"{client.subject}: GitHub's next page is not at "
                          f"{client.display_url}; not following it with the token")
    return url[len(client.api_url):]


def _safe_name(value: object, secrets: list[str]) -> str | None:
    """A name GitHub sent, as it may be printed: printable, bounded, and never a credential
    (one we sent, or anything shaped like a GitHub token or a JWT)."""
    if not isinstance(value, str) or not value:
        return None
    text = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in value)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_RE.sub("[redacted]", text)[:_MESSAGE_CAP]


# --- pull requests, reviews and commits (connc approvals) -----------------------------------

_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SHA = re.compile(r"[0-9a-f]{40}")
_MAX_PAGES = 100  # 10,000 items: more than any pull request has; a bound all the same
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
        if not _REPOSITORY.fullmatch(repository):
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
            if pages > _MAX_PAGES:
                raise GitHubError(f"{client.subject}: more than {_MAX_PAGES} pages of {what}")
            response = self._send(client, path, action)
            data = response.json()
            if not isinstance(data, list):
                raise GitHubError(f"{client.subject}: GitHub's list of {what} is not a list "
                                  f"(not a GitHub API?)")
            found.extend(data)
            path = self._next(client, response)
        return found

    def _client(self, number: int) -> _Client:
        api_url, timeout, attempts, max_wait, sleep, clock = self._client_args
        return _Client(api_url, f"pull request {number} of {self.repository}", timeout,
                       attempts, max_wait, sleep, clock)

    def _get(self, client: _Client, path: str, what: str) -> Any:
        return self._send(client, path, what).json()  # JSON: `_send` checked it

    def _send(self, client: _Client, path: str, what: str) -> http.Answer:
        auth = _BearerAuth(self._token.reveal)
        response = client.send("GET", path, auth, None, what=what)
        status = response.status
        if status == 200:
            if response.json() is None:
                raise GitHubError(f"{client.subject}: GitHub's answer is not JSON "
                                  f"(not a GitHub API?)")
            return response
        said = _said(response, auth.secrets_sent())
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

    def _next(self, client: _Client, response: http.Answer) -> str | None:
        return _next_page(client, response)


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


# --- internals -------------------------------------------------------------------------------


class _BearerAuth:
    """requests auth hook, the one source of the Authorization header (connc.http's session
    ignores ~/.netrc); it records what it sent, so that an echo of it can be redacted."""

    __slots__ = ("_make", "_sent")

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._sent: list[str] = []

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        credential = self._make()
        self._sent.append(credential)
        request.headers["Authorization"] = f"Bearer {credential}"
        return request

    def secrets_sent(self) -> list[str]:
        return list(self._sent)

    def __repr__(self) -> str:
        return "_BearerAuth(**********)"


class _Client:
    """Requests with timeouts, retries and backoff, and messages that name their subject
    (`connection 'x'`, `pull request 12 of octo/repo`)."""

    def __init__(self, api_url: str, subject: str, timeout: float, max_attempts: int,
                 max_wait: float, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        parts = urlsplit(self.api_url)
        # Shown in messages: never any user:password@ that may sit in a URL.
        self.display_url = f"{parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "") + parts.path
        self.subject = subject
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.attempts = 0

    def send(self, method: str, path: str, auth: _BearerAuth, body: dict[str, Any] | None,
             *, what: str, max_bytes: int = http.DEFAULT_MAX_BYTES) -> http.Answer:
        """The first answer not worth retrying, or the last one. Raises when GitHub cannot
        be reached, or when a rate limit outlasts `max_wait`."""
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            self.attempts = attempt
            failure: http.Failure | None = None
            response: http.Answer | None = None
            try:
                # No redirects: a bearer credential goes to the API host and nowhere else.
                # `timeout` bounds each attempt as a whole (http's watchdog), and an enclosing
                # `http.limits` (connc check) ends it sooner.
                response = http.request(method, self.api_url + path, headers=headers,
                                        json_body=body, auth=auth, timeout=self.timeout,
                                        max_bytes=max_bytes)
            except http.Failure as error:
                failure = error
            if failure is not None and failure.kind == "cancelled":
                raise GitHubError(f"{self.subject}: cannot {what}: interrupted")
            if failure is not None and failure.kind == "tls":  # a missing CA: no retry
                raise GitHubError(
                    f"{self.subject}: TLS verification of "
                    f"{self.display_url} failed; for a private CA set REQUESTS_CA_BUNDLE or "
                    "SSL_CERT_FILE"
                )
            if failure is not None and failure.kind == "insecure":
                raise GitHubError(f"{self.subject}: cannot {what} at {self.display_url}: "
                                  f"plain http is allowed to a loopback host only")
            if failure is not None and failure.kind in ("invalid", "redirects", "redirect"):
                raise GitHubError(f"{self.subject}: cannot {what} at "
                                  f"{self.display_url}: invalid apiUrl")
            # No wait may outlast max_wait, nor the enclosing deadline (connc check's probe).
            left = http.remaining()
            budget = self.max_wait - waited if left is None else min(self.max_wait - waited,
                                                                      left)
            if response is None:
                # A POST whose answer was lost may have minted a token anyway; it dies
                # within the hour, which is acceptable next to failing the render.
                reason = (f"no answer within {self.timeout:g} s"
                          if failure is not None and failure.kind == "timeout"
                          else "connection failed")
                delay = _backoff(attempt)
                if attempt == self.max_attempts or delay > budget:
                    raise GitHubError(
                        f"{self.subject}: cannot {what}: {reason} "
                        f"({self.display_url}, {_attempts(attempt)})"
                    )
            else:
                retry = self._retry_delay(response, attempt)
                if retry is None or attempt == self.max_attempts:
                    return response
                delay, reset_at, rate_limited = retry
                if delay > budget:
                    if rate_limited:
                        raise self._rate_limited(response, what, delay, reset_at)
                    return response
            self.sleep(delay)  # http.pause by default: an interrupt cuts it short
            waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, response: http.Answer, attempt: int
                     ) -> tuple[float, float | None, bool] | None:
        """(seconds to wait, reset epoch if known, is a rate limit) when worth retrying."""
        status = response.status
        h = response.headers
        retry_after = _number(h.get("retry-after"))
        if status in (403, 429):
            if retry_after is not None:
                return max(0.0, retry_after), self.clock() + retry_after, True
            if h.get("x-ratelimit-remaining") == "0":
                reset = _number(h.get("x-ratelimit-reset"))
                if reset is None:
                    return _backoff(attempt), None, True
                # +1 s: the reset epoch has whole-second resolution.
                return max(0.0, reset - self.clock() + 1), reset, True
            if status == 429 or "rate limit" in _said(response, []).lower():
                return _SECONDARY_RATE_LIMIT_WAIT, None, True
            return None  # a plain 403 is a refusal, not a rate limit
        if status >= 500:
            return (_backoff(attempt) if retry_after is None else max(0.0, retry_after)), None, False
        return None

    def _rate_limited(self, response: http.Answer, what: str, delay: float,
                      reset_at: float | None) -> GitHubError:
        when = ""
        try:  # a reset the server sets past year 9999 is not shown, and ends nothing
            stamp = dt.datetime.fromtimestamp(reset_at, dt.UTC) if reset_at is not None else None
        except (OverflowError, ValueError, OSError):
            stamp = None
        if stamp is not None:
            when = f" until {stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        return GitHubError(
            f"{self.subject}: GitHub rate-limits these requests{when} (HTTP "
            f"{response.status}, {delay:.0f} s from now), longer than connc waits "
            f"({self.max_wait:g} s); cannot {what}, retry after the reset"
        )

    def unexpected(self, response: http.Answer, what: str, said: str) -> GitHubError:
        status = response.status
        if status in (403, 429) and self._retry_delay(response, self.max_attempts) is not None:
            reason = f"still rate-limited after {_attempts(self.attempts)}"
        elif status >= 500:
            reason = f"GitHub failed with HTTP {status} ({_attempts(self.attempts)})"
        else:
            reason = f"unexpected HTTP {status}"
        return GitHubError(
            f"{self.subject}: cannot {what} at {self.display_url}: {reason}{said}"
        )

    def enterprise_hint(self) -> str:
        if self.api_url == DEFAULT_API_URL or self.api_url.endswith("/api/v3"):
            return ""
        return " (for GitHub Enterprise Server apiUrl is https://HOST/api/v3)"


def _load_rsa_key(private_key: Secret, connection: str) -> RSAPrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem = private_key.reveal().strip()
    if "\\n" in pem and "\n" not in pem:
        pem = pem.replace("\\n", "\n")  # a key pasted with escaped newlines, as in env vars
    key: object = None
    try:
        # Both PKCS#1 ("RSA PRIVATE KEY", what GitHub hands out) and PKCS#8 ("PRIVATE KEY").
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass  # raised below, outside the except block: the cause must not ride along
    if not isinstance(key, RSAPrivateKey):
        raise GitHubError(
            f"privateKey of connection '{connection}' is not a valid RSA private key "
            "(PKCS#1 or PKCS#8 PEM)"
        )
    return key


def _encode_jwt(app_id: str, key: RSAPrivateKey, now: float) -> str:
    import jwt

    issued = int(now)
    claims = {
        "iat": issued - JWT_BACKDATE_SECONDS,
        "exp": issued + JWT_LIFETIME_SECONDS,
        "iss": str(app_id),
    }
    return jwt.encode(claims, key, algorithm="RS256")


def _backoff(attempt: int) -> float:
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None  # an HTTP-date retry-after: GitHub sends seconds; fall back to backoff
    return number if math.isfinite(number) else None  # "inf", "nan": no number of seconds


def _parse_utc(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)  # Python 3.11 reads the trailing "Z"
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _said(response: http.Answer, secrets: list[str]) -> str:
    """': GitHub said "..."' for an error response, or '' when there is nothing safe to say."""
    data = response.json()
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str):
        return ""
    message = _safe_github_message(message, secrets)
    return f': GitHub said "{message}"' if message else ""


def _safe_github_message(message: str, secrets: list[str]) -> str:
    # Control characters first: removing them could otherwise join a split token back up.
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in message)
    text = " ".join(text.split())
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    text = _CREDENTIAL_RE.sub("[redacted]", text)
    if len(text) > _MESSAGE_CAP:
        text = text[: _MESSAGE_CAP - 1] + "…"
    return text
