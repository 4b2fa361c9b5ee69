"""One loopback server answering what `connc check` asks a container registry with token
auth and the three package indexes, with one account (`reader`, `ProbeTargets.password`):

  GET /v2/              -> 200 with `Bearer {registry_token}`, else 401 pointing at /token
  GET /token            -> {"token": registry_token} with the account (Basic), else 401;
                           each request's query is kept in `token_requests`
  GET /npm/-/whoami     -> {"username": "npm-bot"} with `Bearer {npm_token}` or the account
  GET /maven/releases/  -> 200 with the account, else 401
  GET /simple/          -> 200 with the account, else 401

Any other path is 404.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ._net import LOOPBACK, JsonHandler, serving

USERNAME = "reader"


@dataclasses.dataclass
class ProbeTargets:
    url: str
    host: str
    password: str = dataclasses.field(repr=False)
    npm_token: str = dataclasses.field(repr=False)
    registry_token: str = dataclasses.field(repr=False)
    token_requests: list[dict[str, list[str]]] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def probe_targets(*, password: str, npm_token: str, registry_token: str
                  ) -> Iterator[ProbeTargets]:
    """The server, with the test's secrets (canaries, so that none shows in output)."""
    state = ProbeTargets("", "", password, npm_token, registry_token)
    basic = "Basic " + base64.b64encode(f"{USERNAME}:{state.password}".encode()).decode()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
            header = self.headers.get("Authorization", "")
            if path == "/v2/":
                if header == f"Bearer {state.registry_token}":
                    return self.send_json(200, {})
                return self.send_json(401, {}, {"WWW-Authenticate": f'Bearer realm="{state.url}'
                                                                     f'/token",service="fake"'})
            if path == "/token":
                state.token_requests.append(query)
                if header != basic:
                    return self.send_json(401, {})
                return self.send_json(200, {"token": state.registry_token})
            if path == "/npm/-/whoami":
                if header in (f"Bearer {state.npm_token}", basic):
                    return self.send_json(200, {"username": "npm-bot"})
                return self.send_json(401, {})
            if path in ("/maven/releases/", "/simple/"):
                return self.send_json(200 if header == basic else 401, {})
            return self.send_json(404, {})

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.host = f"{LOOPBACK}:{httpd.server_address[1]}"
    state.url = f"http://{state.host}"
    with serving(httpd, "probe-targets"):
        yield state
