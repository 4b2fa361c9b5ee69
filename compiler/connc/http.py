"""The one HTTP client: the GitHub API and the probes of `connc check` both send through it.

`requests` is imported on first use: most renders send nothing, and render's start-up time
is a product metric. Every request has a timeout and reads at most `max_bytes` of the body;
a credential goes only where the caller's `auth` hook puts it (passing an auth object also
stops requests from adding a ~/.netrc entry of the user's own). A request that gets no HTTP
answer raises `Failure`, whose message names the host and the kind of failure, never
anything the request carried; it is raised outside any `except` block, so no requests
exception (which can hold a URL or a body) rides along as its context.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests

Auth = Callable[["requests.PreparedRequest"], "requests.PreparedRequest"]
DEFAULT_MAX_BYTES = 1024 * 1024  # connc reads small JSON answers; never buffer an index


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes  # the first `max_bytes` of the body

    def json(self) -> Any:
        """The body as JSON, or None. (The decode error, which quotes the body, stays here.)"""
        try:
            return json.loads(self.content)
        except ValueError:
            return None


class Failure(Exception):
    """No HTTP answer. `kind`: tls, timeout, connect, redirects or invalid."""

    def __init__(self, kind: str, host: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.host, self.message = kind, host, message


def ca_bundle() -> str | bool:
    """The CA bundle to trust: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE, else the default.

    requests reads REQUESTS_CA_BUNDLE by itself but not SSL_CERT_FILE, the variable git, curl
    and OpenSSL honour; a runner behind a private CA sets one of them, and connc honours both.
    """
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


def request(method: str, url: str, *, timeout: float, auth: Auth | None = None,
            headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
            json_body: Any = None, verify: str | bool | None = None,
            cert: tuple[str, str] | None = None, follow_redirects: bool = False,
            max_bytes: int = DEFAULT_MAX_BYTES) -> Answer:
    """One request; raises Failure when no HTTP answer came back."""
    import requests

    host = host_of(url)
    failure: Failure | None = None
    try:
        with requests.Session() as session:
            session.max_redirects = 5
            response = session.request(
                method, url, params=params, headers=dict(headers or {}), json=json_body,
                auth=auth or _NoAuth(), timeout=(timeout, timeout),
                verify=ca_bundle() if verify is None else verify, cert=cert,
                allow_redirects=follow_redirects, stream=True)
            with response:
                content = response.raw.read(max_bytes, decode_content=True)
                return Answer(response.status_code, response.headers, content or b"")
    except requests.exceptions.SSLError as error:
        # The SSL error text is OpenSSL's reason, never request data; only its kind is used.
        failure = Failure("tls", host, _tls_failure(str(error), host))
    except requests.exceptions.Timeout:
        failure = Failure("timeout", host, f"no answer from {host} within {timeout:g} s")
    except requests.exceptions.ConnectionError:
        failure = Failure("connect", host, f"cannot connect to {host} (refused, no route, "
                                           f"or unknown name)")
    except requests.exceptions.TooManyRedirects:
        failure = Failure("redirects", host, f"too many redirects from {host}")
    except (requests.exceptions.RequestException, OSError):
        failure = Failure("invalid", host, f"the request to {host} failed")
    raise failure


class _NoAuth:
    """Sends no credential, and keeps requests from adding one from ~/.netrc."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def _tls_failure(text: str, host: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (f"the certificate of {host} is not trusted (for a private CA set "
                f"REQUESTS_CA_BUNDLE or SSL_CERT_FILE)")
    return f"the TLS handshake with {host} failed (a refused client certificate?)"
