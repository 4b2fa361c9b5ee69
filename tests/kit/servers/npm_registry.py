"""A loopback fake npm registry that requires a credential per path prefix.

Each *scope* is a path prefix (`/`, `/npm/private/`, `/a=b;c/`), written as npm sends it,
percent-encoding included, with its own credential: a bearer token (`_authToken`) or a
username and password (Basic, what npm sends for `username` + `_password`). Under a scope it
answers what `npm whoami` and `npm view` ask:

  GET {scope}-/whoami  -> {"username": ...}
  GET {scope}{package} -> the package's metadata (one version), also as @SCOPE/{package}

and 401 when the credential is missing or not the scope's own. Each request is logged as
(path, scope or None, accepted); the log never holds a credential, so a failing assertion
cannot print one.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from ._net import LOOPBACK, JsonHandler, serving

PACKAGE = "connc-probe"


@dataclasses.dataclass(frozen=True)
class Scope:
    prefix: str  # as npm sends it: starts and ends with "/"
    username: str
    token: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)

    def accepts(self, authorization: str | None) -> bool:
        if self.token is not None:
            return authorization == f"Bearer {self.token}"
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return authorization == f"Basic {basic}"


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    scope: str | None  # the prefix of the scope the path is under, None if none
    accepted: bool


@dataclasses.dataclass
class NpmRegistry:
    port: int
    scopes: list[Scope] = dataclasses.field(default_factory=list)
    log: list[Request] = dataclasses.field(default_factory=list)

    def url(self, host: str = LOOPBACK, prefix: str = "/") -> str:
        return f"http://{host}:{self.port}{prefix}"

    def add(self, scope: Scope) -> Scope:
        self.scopes.append(scope)
        return scope

    def _scope(self, path: str) -> Scope | None:
        # The longest prefix, as a registry serving several repositories would route.
        under = [s for s in self.scopes if path.startswith(s.prefix)]
        return max(under, key=lambda s: len(s.prefix)) if under else None

    def accepted(self, prefix: str) -> list[str]:
        """Paths requested under `prefix` with its credential."""
        return [r.path for r in self.log if r.scope == prefix and r.accepted]


def _packument(base: str, name: str = PACKAGE) -> dict[str, object]:
    version = {"name": name, "version": "1.0.0",
               "dist": {"tarball": f"{base}{name}/-/{PACKAGE}-1.0.0.tgz",
                        "shasum": "0" * 40}}
    return {"name": name, "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": version}}


@pytest.fixture
def npm_registry() -> Iterator[NpmRegistry]:
    state = NpmRegistry(port=0)

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            scope = state._scope(path)
            ok = scope is not None and scope.accepts(self.headers.get("Authorization"))
            state.log.append(Request(path, scope.prefix if scope else None, ok))
            if scope is None or not ok:
                self._send(401, {"error": "authentication required"})
                return
            rest = path[len(scope.prefix):]
            if rest == "-/whoami":
                self._send(200, {"username": scope.username})
            elif rest == PACKAGE or re.fullmatch(rf"@[a-z0-9-]+%2[fF]{PACKAGE}", rest):
                # The package, or the same in an npm scope (`@acme/connc-probe`, sent as
                # `@acme%2fconnc-probe`).
                self._send(200, _packument(f"http://{self.headers.get('Host')}{scope.prefix}",
                                           unquote(rest)))
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, body: dict[str, object]) -> None:
            self.send_json(status, body, {"WWW-Authenticate": 'Basic realm="npm"'}
                           if status == 401 else None)

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.port = int(httpd.server_address[1])
    with serving(httpd, "npm-registry"):
        yield state
