"""GitHub Apps: the App's JWT, installation tokens minted and revoked, what an installation
is (`GitHubApp.installation`) and what its token reaches (`InstallationReader`, for `connc
check --reach`).

`jwt` and `cryptography` are imported inside the functions that use them: the start-up time of
`connc render` is a measured product metric, and most renders mint nothing.

Every message raised from here is shown to the user, so none may contain the private key, the
JWT signed with it, or an installation token. Three habits keep it that way:
  * secrets travel as `Secret` and are revealed only where a request or a signature needs them;
  * a `GitHubError` is raised *outside* any `except` block, so it carries no `__context__`
    (a `JSONDecodeError` keeps the whole response body, which can hold a token);
  * text that GitHub sent back is shown only through `redaction`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connc import http
from connc.errors import GitHubError
from connc.github.redaction import safe_name, what_github_said
from connc.github.transport import MAX_PAGES, REPOSITORY, BearerAuth, Client
from connc.secrets import Secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

# GitHub refuses a JWT whose exp is more than 10 minutes after iat. Backdating iat by 60 s
# absorbs a runner clock that is a little ahead of GitHub's; 9 minutes keeps exp inside the
# 10-minute window even then.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 9 * 60
TOKEN_LIFETIME = dt.timedelta(hours=1)


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

    def _new_client(self) -> Client:
        # One per request (it counts attempts): one GitHubApp stays usable from several threads.
        return Client(*self._client_args)

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
        auth = BearerAuth(lambda: _encode_jwt(self.app_id, key, self._clock()))
        client = self._new_client()
        response = client.send(
            "POST", f"/app/installations/{installation_id}/access_tokens", auth, body,
            what="mint an installation token",
        )
        status = response.status
        if status in (200, 201):
            return self._parse_token(response, client)

        said = what_github_said(response, auth.secrets_sent())
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

    def _refused(self, status: int, installation_id: int, client: Client,
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
        auth = BearerAuth(lambda: _encode_jwt(self.app_id, key, self._clock()))
        client = self._new_client()
        what = f"read installation {installation_id}"
        response = client.send("GET", f"/app/installations/{installation_id}", auth, None,
                               what=what)
        said = what_github_said(response, auth.secrets_sent())
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
            account=safe_name(account.get("login"), sent) if isinstance(account, dict) else None,
            repository_selection=safe_name(data.get("repository_selection"), sent),
            # Names and levels as a message may show them (printable, bounded, never a token).
            permissions={name: level for name, level in (
                (safe_name(k, sent), safe_name(v, sent)) for k, v in permissions.items())
                if name and level} if isinstance(permissions, dict) else {},
            settings_url=safe_name(data.get("html_url"), sent),
        )

    def _parse_token(self, response: http.Answer, client: Client) -> InstallationToken:
        data = response.json()
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or not token.isprintable() or " " in token:
            raise GitHubError(
                f"connection '{self.connection}': GitHub answered the token request without a "
                "usable token (not a GitHub API?)"
            )
        secret = Secret(token)
        assert isinstance(data, dict)
        expires_at = http.utc_time(data.get("expires_at"), naive_is_utc=True)
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
    client = Client(api_url, f"connection '{connection}'", timeout, max_attempts, max_wait,
                     sleep, clock)
    auth = BearerAuth(token.reveal)
    with http.detached():
        response = client.send("DELETE", "/installation/token", auth, None,
                               what="revoke an installation token")
    if response.status == 204:
        return True
    if response.status == 401:  # expired or revoked already: nothing left to do
        return False
    said = what_github_said(response, auth.secrets_sent())
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
            full_name = safe_name(repo.get("full_name"), sent) if isinstance(repo, dict) else None
            if full_name is None:
                continue
            found.append(Repository(full_name, safe_name(repo.get("name"), sent) or full_name,
                                    safe_name(repo.get("default_branch"), sent)))
        return Listing(found, listing.total, listing.complete)

    def branches(self, full_name: str, limit: int) -> Listing | None:
        """GET /repos/{owner}/{repo}/branches; None when GitHub refuses them to this token
        (403: no `contents` permission; 404)."""
        def items(data: Any) -> list[Any] | None:
            return data if isinstance(data, list) else None

        if not REPOSITORY.fullmatch(full_name):
            return None  # a name GitHub sent that is no owner/repo: not put in a path
        try:
            listing, sent = self._pages(f"/repos/{full_name}/branches", items, limit,
                                        f"list the branches of {full_name}", refusable=True)
        except _Refused:
            return None
        names = [safe_name(b.get("name"), sent) for b in listing.items if isinstance(b, dict)]
        return Listing([n for n in names if n], listing.total, listing.complete)

    def _pages(self, path: str, items_of: Callable[[Any], list[Any] | None], limit: int,
               what: str, *, refusable: bool = False) -> tuple[Listing, list[str]]:
        client = Client(*self._client_args)
        auth = BearerAuth(self._token.reveal)
        separator = "&" if "?" in path else "?"
        next_path: str | None = f"{path}{separator}per_page=100"
        found: list[Any] = []
        total: int | None = None
        pages = 0  # a `next` that never ends (or lists nothing) is not followed forever
        while next_path is not None and len(found) < limit and pages < MAX_PAGES:
            pages += 1
            # A page of 100 full repository objects is most of a megabyte.
            response = client.send("GET", next_path, auth, None, what=what,
                                   max_bytes=_LISTING_BYTES)
            if response.status in (403, 404) and refusable:
                raise _Refused
            said = what_github_said(response, auth.secrets_sent())
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
            next_path = client.next_page(response)
        complete = next_path is None and len(found) <= limit
        return Listing(found[:limit], total, complete), auth.secrets_sent()


_LISTING_BYTES = 4 * 1024 * 1024


class _Refused(Exception):
    """GitHub would not list something for this token (403, 404)."""


def _load_rsa_key(private_key: Secret, connection: str) -> RSAPrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    # A key with `\n` escapes for line breaks is not repaired here: the credential contract
    # (`credentials.field_problem`) refuses it, with the fix, before any App is made.
    pem = private_key.reveal().strip()
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


