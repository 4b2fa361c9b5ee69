"""A loopback front proxy as many are: it decodes `%2e` and resolves dot segments in the path,
then forwards the request to its upstream.

git (through curl) sends `/org-a/%2e%2e/org-b/...` as written; behind this proxy it is a
request for org-b, so a credential helper that hands org-a's credential to that path has
given it to org-b. GET only: enough for git's first request and its authenticated retry.
"""

from __future__ import annotations

import contextlib
import http.client
import posixpath
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ._net import LOOPBACK, serving

# Seconds the proxy waits for its upstream (a loopback test server) on each request.
UPSTREAM_TIMEOUT = 30
_FORWARDED = ("authorization", "git-protocol", "accept")


@contextlib.contextmanager
def normalising_proxy(upstream_url: str) -> Iterator[str]:
    """The base URL of a proxy on loopback in front of `upstream_url` (`http://host:port`)."""
    upstream = urlsplit(upstream_url)
    assert upstream.hostname is not None and upstream.port is not None, upstream_url
    target = (upstream.hostname, upstream.port)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            raw, _, query = self.path.partition("?")
            path = posixpath.normpath(re.sub("%2[eE]", ".", raw)) + \
                ("/" if raw.endswith("/") else "")
            connection = http.client.HTTPConnection(*target, timeout=UPSTREAM_TIMEOUT)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
                connection.request("GET", path + (f"?{query}" if query else ""),
                                   headers=headers)
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            self.send_response(response.status)
            for name in ("WWW-Authenticate", "Content-Type"):
                if response.getheader(name):
                    self.send_header(name, response.getheader(name, ""))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    with serving(httpd, "normalising-proxy"):
        yield f"http://{LOOPBACK}:{httpd.server_address[1]}"
