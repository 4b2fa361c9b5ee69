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

import pytest

from ._net import LOOPBACK, serving

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
