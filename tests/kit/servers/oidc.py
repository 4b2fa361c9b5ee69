"""A local OIDC issuer, and the CI systems that hand its ID tokens to a job.

* `OidcIssuer` signs ID tokens (RS256, as GitHub's and GitLab's) with a key that exists only
  for the test session, and verifies them the way a relying party does (signature, `iss`,
  `aud`, `exp`): the fake STS, PyPI index and Kubernetes API trust it as the real services
  trust GitHub's or GitLab's issuer.
* `GitHubTokenService` is the runner's token endpoint: `GET ACTIONS_ID_TOKEN_REQUEST_URL&
  audience=AUD` with `Authorization: Bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN` returns
  `{"value": JWT}` for that audience, a fresh token (its own `jti`) on every request, with
  the claims GitHub puts in a job's token (`sub: repo:OWNER/REPO:ref:refs/heads/main`, ...).
  `github_env()` is what the runner gives a job with `permissions: id-token: write`.
* `gitlab_env(VAR, aud)`: what GitLab CI gives a job whose `id_tokens:` declares VAR.

The log holds audiences and token ids, never a token.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from kit.keys import rsa_key

from ._net import LOOPBACK, JsonHandler, serving

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.example.com"
GITHUB_SUBJECT = "repo:acme/app:ref:refs/heads/main"
GITLAB_SUBJECT = "project_path:acme/app:ref_type:branch:ref:main"


def _key() -> tuple[Any, Any]:
    key = rsa_key(slot=20)  # the issuer's own: never a key a test makes
    return key, key.public_key()


@dataclasses.dataclass
class OidcIssuer:
    issuer: str
    subject: str
    lifetime: int = 300  # GitHub's tokens live five minutes
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def issue(self, audience: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": audience, "sub": self.subject,
                   "iat": now, "nbf": now, "exp": now + self.lifetime,
                   "jti": secrets.token_hex(16), **self.extra, **claims}
        return jwt.encode(payload, _key()[0], algorithm="RS256", headers={"kid": "connc-test"})

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims, or jwt.InvalidTokenError: signature, issuer, audience, expiry."""
        claims: dict[str, Any] = jwt.decode(
            token, _key()[1], algorithms=["RS256"], audience=audience, issuer=self.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        return claims


def github_issuer() -> OidcIssuer:
    return OidcIssuer(GITHUB_ISSUER, GITHUB_SUBJECT, extra={
        "repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "event_name": "push"})


def gitlab_issuer() -> OidcIssuer:
    return OidcIssuer(GITLAB_ISSUER, GITLAB_SUBJECT, lifetime=3600, extra={
        "project_path": "acme/app", "ref_type": "branch", "ref": "main"})


def gitlab_env(issuer: OidcIssuer, variable: str, audience: str) -> dict[str, str]:
    return {"GITLAB_CI": "true", variable: issuer.issue(audience)}


@dataclasses.dataclass
class Issued:
    audience: str
    jti: str


class GitHubTokenService:
    """The runner's ID token endpoint, on loopback (see the module's doc)."""

    def __init__(self, issuer: OidcIssuer | None = None) -> None:
        self.issuer = issuer or github_issuer()
        self.request_token = secrets.token_urlsafe(24)
        self.issued: list[Issued] = []
        self.tokens: list[str] = []  # every token issued: what a canary looks for
        self.refused = 0
        self.status: int | None = None  # answer every request with this status instead
        self._lock = threading.Lock()
        service = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                authorized = self.headers.get("Authorization") == \
                    f"Bearer {service.request_token}"
                if service.status is not None or not authorized or parts.path != "/token" \
                        or query.get("api-version") != ["2.0"]:
                    with service._lock:
                        service.refused += 1
                    self._send(service.status or (401 if not authorized else 404), {})
                    return
                audience = query.get("audience", [service.issuer.issuer])[0]
                token = service.issuer.issue(audience)
                with service._lock:
                    service.issued.append(Issued(audience, jwt.decode(
                        token, options={"verify_signature": False})["jti"]))
                    service.tokens.append(token)
                self._send(200, {"count": 1, "value": token})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                self.send_json(status, body)

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.httpd.server_address[1]}/token?api-version=2.0"

    def github_env(self, **extra: str) -> dict[str, str]:
        """What the runner gives a job with `permissions: id-token: write`."""
        return {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push",
                "ACTIONS_ID_TOKEN_REQUEST_URL": self.url,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token, **extra}


@pytest.fixture
def github_tokens() -> Iterator[GitHubTokenService]:
    service = GitHubTokenService()
    with serving(service.httpd, "github-token-service"):
        yield service
