"""A loopback PEP 503 simple index with Basic auth that links its files by absolute URL.

Nexus, Artifactory and devpi link a project's files by absolute URL, spelt from their own
configured base URL: lower-case host, no default port. pip sends the index URL's credentials
to such a link only when its netloc is the index URL's netloc as text, so this fake writes
its links from `canonical` (`localhost:PORT`), whatever spelling the client used.

  GET /simple/connc-probe/             -> a page linking the wheel (absolute URL)
  GET /files/connc_probe-1.0-...whl    -> the wheel

Every request needs the one account; the log holds (path, accepted), never a credential.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ._net import LOOPBACK, JsonHandler, serving

PROJECT = "connc-probe"


def wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal valid wheel (file name, bytes) for `pip download` to fetch."""
    dist = f"{name}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: connc-test\n"
                                   "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in {**files, f"{dist}.dist-info/RECORD": record}.items():
            archive.writestr(path, text)
    return f"{dist}-py3-none-any.whl", buffer.getvalue()


@dataclasses.dataclass
class PypiIndex:
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    filename: str = ""
    log: list[tuple[str, bool]] = dataclasses.field(default_factory=list)

    @property
    def canonical(self) -> str:
        """The netloc the server spells its links with."""
        return f"localhost:{self.port}"

    def refused(self) -> list[str]:
        return [path for path, ok in self.log if not ok]


@pytest.fixture
def pypi_index() -> Iterator[PypiIndex]:
    filename, data = wheel("connc_probe", "1.0")
    digest = hashlib.sha256(data).hexdigest()
    state = PypiIndex(port=0, username="reader", password="p@ss:w/rd%41", filename=filename)
    expected = "Basic " + base64.b64encode(
        f"{state.username}:{state.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == expected
            state.log.append((self.path, ok))
            if not ok:
                self._send(401, b"", "text/plain")
            elif self.path.rstrip("/") == f"/simple/{PROJECT}":
                link = f"http://{state.canonical}/files/{filename}#sha256={digest}"
                self._send(200, f'<a href="{link}">{filename}</a>'.encode(), "text/html")
            elif self.path == f"/files/{filename}":
                self._send(200, data, "application/octet-stream")
            else:
                self._send(404, b"", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="index"')
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.port = int(httpd.server_address[1])
    with serving(httpd, "pypi-index"):
        yield state


# --- trusted publishing ------------------------------------------------------------------------


@dataclasses.dataclass
class TrustedIndex:
    """An upload endpoint with PyPI's trusted publishing, on loopback.

      GET  /_/oidc/audience    -> {"audience": "pypi"}
      POST /_/oidc/mint-token  -> {"success": true, "token": "pypi-...", "expires": EPOCH}: the
                                  JWT verified against the issuer (signature, issuer, this
                                  audience, expiry), its `repository` claim a trusted
                                  publisher's, its `jti` never seen before (PyPI refuses a
                                  token used twice: `invalid-reuse-token`)
      POST /legacy/            -> twine's upload, with `__token__` and a live minted token

    Errors are warehouse's: 422 with `{"message", "errors": [{"code", "description"}]}`.
    """

    port: int
    issuer: Any
    audience: str = "pypi"
    publishers: set[str] = dataclasses.field(default_factory=lambda: {"acme/app"})
    minted: dict[str, float] = dataclasses.field(default_factory=dict, repr=False)
    seen_jti: set[str] = dataclasses.field(default_factory=set)
    refusals: list[str] = dataclasses.field(default_factory=list)  # error codes
    uploads: list[str] = dataclasses.field(default_factory=list)  # file names
    lifetime: int = 900

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/legacy/"


@pytest.fixture
def trusted_index() -> Iterator[TrustedIndex]:
    import json
    import secrets
    import time
    from email.parser import BytesParser
    from email.policy import HTTP

    import jwt

    from .oidc import github_issuer

    state = TrustedIndex(port=0, issuer=github_issuer())

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/_/oidc/audience":
                self._json(200, {"audience": state.audience})
            else:
                self._json(404, {})

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/_/oidc/mint-token":
                self._mint(body)
            elif self.path == "/legacy/":
                self._upload(body)
            else:
                self._json(404, {})

        def _refuse(self, code: str) -> None:
            state.refusals.append(code)
            self._json(422, {"message": "Token request failed",
                             "errors": [{"code": code, "description": f"{code} (details)"}]})

        def _mint(self, body: bytes) -> None:
            try:
                token = json.loads(body)["token"]
                claims = state.issuer.verify(token, state.audience)
            except (ValueError, KeyError, TypeError, jwt.InvalidTokenError):
                self._refuse("invalid-token")
                return
            if claims.get("jti") in state.seen_jti:
                self._refuse("invalid-reuse-token")
                return
            state.seen_jti.add(claims["jti"])
            if claims.get("repository", claims.get("project_path")) not in state.publishers:
                self._refuse("invalid-publisher")
                return
            minted = "pypi-" + secrets.token_urlsafe(48)
            expires = int(time.time()) + state.lifetime
            state.minted[minted] = expires
            self._json(200, {"success": True, "token": minted, "expires": expires})

        def _upload(self, body: bytes) -> None:
            scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if scheme != "Basic" or user != "__token__" or \
                    state.minted.get(password, 0) < time.time():
                self._json(403, {"message": "Invalid or non-existent authentication"})
                return
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "content":
                    state.uploads.append(str(part.get_filename()))
            self._json(200, {})

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self.send_json(status, payload)

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.port = int(httpd.server_address[1])
    with serving(httpd, "trusted-index"):
        yield state
