"""A local fake of the GitHub REST API parts connc uses for `github-app` connections.

It is strict where GitHub is strict, so that a client bug shows up here rather than in a
pipeline: the JWT is verified (RS256 signature, integer `iat`/`exp`, `iss`, the 10-minute
window), the installation id and the requested scope are checked against the installation's
grant, and the standard headers are required.

Use it with `from servers.github_fake import github_api  # noqa: F401`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

DOCS = "https://docs.github.com/rest"
_LEVELS = {"read": 1, "write": 2, "admin": 3}
_MINT_PATH = re.compile(r"^/app/installations/(\d+)/access_tokens$")


@functools.cache
def _rsa_key(slot: int) -> tuple[str, str, str]:
    """(PKCS#1 PEM, PKCS#8 PEM, public PEM). Generating 2048-bit keys is slow: once a session."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1 = key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return pkcs1, pkcs8, public


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str  # without any /api/v3 prefix
    headers: dict[str, str]
    body: bytes


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
        self.clock_offset = 0.0  # seconds GitHub's clock is ahead of this machine's
        self.minted: list[MintRecord] = []
        self.revoked: list[str] = []
        self.requests: list[RecordedRequest] = []
        self._injected: list[_Injected] = []
        self._queued_tokens: list[str] = []
        self._tokens: dict[str, MintRecord] = {}
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
        path = path.split("?", 1)[0]
        if path.startswith("/api/v3/"):
            path = path[len("/api/v3"):]
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, body))
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
        if method == "GET" and path == "/installation/repositories":
            with self._lock:
                if not self._live_locked(bearer):
                    return _error(401, "Bad credentials")
                selected = self._tokens[bearer].repositories
            repos = [self._repo(name) for name in (selected or self.repositories)]
            return _json(200, {"total_count": len(repos), "repositories": repos,
                               "repository_selection": "selected" if selected else "all"})
        return _error(404, "Not Found")

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


def _json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
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
