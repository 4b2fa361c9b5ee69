"""The one HTTP client: the GitHub API and the probes of `connc check` both send through it.

`requests` is imported on first use: most renders send nothing, and render's start-up time
is a product metric. The rules every request follows:

* **Only connc's credential.** The session ignores the environment (`trust_env=False`): no
  ~/.netrc or $NETRC entry of the user's own is ever added, on the first request or on a
  redirect. The trust (REQUESTS_CA_BUNDLE, SSL_CERT_FILE) and proxy settings connc does honour
  are passed explicitly (`ca_bundle`, `proxies_for`).
* **https, or http on loopback only**, checked for every URL sent to, redirects included.
* **Redirects only within one origin** (scheme, host, port), at most `MAX_REDIRECTS`, and
  only when the caller asks. A redirect to another origin is not followed at all: following
  it without the credential would let the other host's anonymous answer pass for a verdict on
  the credential, and following it with the credential would hand it to a host nobody named.
* **No proxy for a loopback host.** Plain http is allowed there only because the traffic
  never leaves the machine; a proxy would carry it off, a Basic credential in clear. Other
  hosts use the environment's proxies (HTTPS_PROXY, ..., NO_PROXY) as requests would.
* **One deadline per request**, `timeout` seconds for the whole exchange (connect, TLS, the
  answer's headers and body, every redirect hop), or the enclosing `limits` deadline if that
  comes first. Socket timeouts bound each read, not the exchange: a server that sends a byte
  a second never trips them. So a watchdog shuts the request's sockets down at the deadline,
  or at once when the enclosing `Cancel` is set (an interrupt), whatever the request is
  blocked on.
* **A small body**: at most `max_bytes` are read.

A request that gets no HTTP answer raises `Failure`, whose message names the host and the
kind of failure, never anything the request carried; it is raised outside any `except`
block, so no requests exception (which can hold a URL or a body) rides along as context.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from connc import urls
from connc.process import Cancel, Deadline

if TYPE_CHECKING:
    import requests
    import requests.adapters

Auth = Callable[["requests.PreparedRequest"], "requests.PreparedRequest"]
DEFAULT_MAX_BYTES = 1024 * 1024  # connc reads small JSON answers; never buffer an index
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes  # the first `max_bytes` of the body

    def json(self) -> Any:
        """The body as JSON, or None. (The decode error, which quotes the body, stays here.)
        Nesting deeper than Python's recursion limit is no answer either: a hostile server's
        `[[[[...` would otherwise end the run in RecursionError."""
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError):
            return None


class Failure(Exception):
    """No HTTP answer. `kind`: tls, timeout, connect, redirects (too many), redirect (to another
    origin, not followed), insecure (plain http off loopback), cancelled or invalid."""

    def __init__(self, kind: str, host: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.host, self.message = kind, host, message


def ca_bundle() -> str | bool:
    """The CA bundle to trust: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE, else the default.

    requests reads REQUESTS_CA_BUNDLE by itself but not SSL_CERT_FILE, the variable git, curl
    and OpenSSL honour; a runner behind a private CA sets one of them, and connc honours both
    (explicitly: the session itself ignores the environment).
    """
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True


def proxies_for(url: str) -> dict[str, str]:
    """The proxies a request to `url` may use: none for a loopback host, else the
    environment's (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), as requests itself would pick them."""
    if urls.is_loopback(urlsplit(url).hostname or ""):
        return {}
    from requests.utils import get_environ_proxies

    return get_environ_proxies(url, no_proxy=None)


# --- deadlines and cancellation ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Limits:
    deadline: float | None  # time.monotonic()
    cancel: Cancel | None


_NO_LIMITS = _Limits(None, None)
_local = threading.local()  # .limits: this thread's _Limits; .watch: the request under way


def _limits() -> _Limits:
    current: _Limits = getattr(_local, "limits", _NO_LIMITS)
    return current


@contextlib.contextmanager
def limits(*, deadline: Deadline | None = None, cancel: Cancel | None = None) -> Iterator[None]:
    """Every request this thread makes in the block ends by `deadline` (an enclosing earlier
    one still holds) and as soon as `cancel` (by default the deadline's) is set. `connc check`
    puts each probe in one, so that code which knows nothing of it (the GitHub client) obeys
    it too."""
    outer = _limits()
    at = deadline.at if deadline is not None else None
    if outer.deadline is not None:
        at = outer.deadline if at is None else min(at, outer.deadline)
    if cancel is None and deadline is not None:
        cancel = deadline.cancel
    _local.limits = _Limits(at, cancel or outer.cancel)
    try:
        yield
    finally:
        _local.limits = outer


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """Requests that undo what a run did (revoking a token it minted) are made even after the
    run's deadline passed or it was cancelled: a token left live is worth a short wait. Each
    is still bounded by its own timeout and attempts."""
    outer = _limits()
    _local.limits = _NO_LIMITS
    try:
        yield
    finally:
        _local.limits = outer


def remaining() -> float | None:
    """Seconds left before the enclosing `limits` deadline, or None without one."""
    deadline = _limits().deadline
    return None if deadline is None else deadline - time.monotonic()


def cancelled() -> bool:
    cancel = _limits().cancel
    return cancel is not None and cancel.is_set()


def pause(seconds: float) -> None:
    """time.sleep, cut short when the enclosing `limits` is cancelled (a retry's backoff)."""
    cancel = _limits().cancel
    if cancel is None:
        time.sleep(seconds)
    else:
        cancel.wait(seconds)


class _Watch:
    """Ends one request at its deadline, or when its Cancel is set, by shutting its sockets
    down: a blocked recv() then returns, whatever the request was waiting for."""

    def __init__(self, deadline: float, cancel: Cancel | None) -> None:
        self.fired: str | None = None  # "timeout" or "cancelled"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._over = False
        self._cancel = cancel
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire,
                                      ("timeout",))
        self._timer.daemon = True

    def __enter__(self) -> _Watch:
        self._timer.start()
        if self._cancel is not None and not self._cancel.add(self._on_cancel):
            self._fire("cancelled")
        _local.watch = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.watch = None
        self._timer.cancel()
        if self._cancel is not None:
            self._cancel.discard(self._on_cancel)
        with self._lock:
            self._over = True  # no shutdown() on a socket the pool may have closed and reused
            self._sockets.clear()

    def _on_cancel(self) -> None:
        self._fire("cancelled")

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.fired is None:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def _fire(self, why: str) -> None:
        with self._lock:
            if self.fired is not None or self._over:
                return
            self.fired = why
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # shutdown(), not close(): closing an fd another thread is blocked on could let the
    # number be reused under it; shutdown wakes that thread and leaves the close to it.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watched(sock: socket.socket) -> socket.socket:
    watch: _Watch | None = getattr(_local, "watch", None)
    if watch is not None:  # the socket is made in the thread whose request it serves
        watch.add(sock)
    return sock


@functools.cache
def _adapter_class() -> type[requests.adapters.HTTPAdapter]:
    """An HTTPAdapter whose connections report their sockets to the request's `_Watch`.

    urllib3 has no public hook for the socket it connects; `_new_conn` is where every
    connection (direct, or to a proxy for a CONNECT tunnel) makes it, in urllib3 1.x and 2.x.
    SOCKS proxies keep urllib3's own classes: their deadline is then per read only.
    """
    from requests.adapters import HTTPAdapter
    from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class WatchedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _watched(super()._new_conn())

    class WatchedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _watched(super()._new_conn())

    class Pool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    pools = {"http": Pool, "https": TLSPool}

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = pools
            return manager

    return WatchedAdapter


# --- the request ------------------------------------------------------------------------------


def request(method: str, url: str, *, timeout: float, auth: Auth | None = None,
            headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
            json_body: Any = None, data: bytes | None = None, verify: str | bool | None = None,
            cert: tuple[str, str] | None = None, follow_redirects: bool = False,
            max_bytes: int = DEFAULT_MAX_BYTES) -> Answer:
    """One request, over within `timeout` seconds (see the module's rules); raises Failure
    when no HTTP answer came back. `data`: a body sent as these bytes (a form, or JSON that a
    signature covers), instead of `json_body`."""
    import requests
    import urllib3

    host = urls.host_of(url)
    scope = _limits()
    deadline = time.monotonic() + timeout
    if scope.deadline is not None:
        deadline = min(deadline, scope.deadline)
    watch = _Watch(deadline, scope.cancel)
    exchange = _Exchange(method, url, deadline, watch, auth or _NoAuth(),
                         dict(headers or {}), params, json_body, data,
                         ca_bundle() if verify is None else verify, cert)
    failure: Failure | None = None
    try:
        with watch, requests.Session() as session:
            # No ~/.netrc, $NETRC, environment proxies or CA variables: what connc honours
            # of those it passes itself (proxies_for, ca_bundle).
            session.trust_env = False
            adapter = _adapter_class()()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            answer = exchange.run(session, follow_redirects, max_bytes)
        if watch.fired is None:  # a body cut short by the watchdog is no answer
            return answer
    except Failure as refused:
        failure = refused
    except requests.exceptions.SSLError as error:
        # The SSL error text is OpenSSL's reason, never request data; only its kind is used.
        failure = Failure("tls", host, _tls_failure(str(error), host))
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError):
        failure = Failure("timeout", host, f"no answer from {host} within {timeout:g} s")
    except requests.exceptions.ConnectionError:
        failure = Failure("connect", host, f"cannot connect to {host} (refused, no route, "
                                           f"or unknown name)")
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError,
            ValueError):
        failure = Failure("invalid", host, f"the request to {host} failed")
    # A request the watchdog cut off raises whatever its socket made of it: say what it was.
    kind = watch.fired or (failure.kind if failure is not None else "timeout")
    if kind == "timeout":
        failure = Failure("timeout", host, f"no answer from {host} within {timeout:g} s")
    elif kind == "cancelled":
        failure = Failure("cancelled", host, f"the request to {host} was interrupted")
    assert failure is not None
    raise failure


@dataclasses.dataclass
class _Exchange:
    method: str
    url: str
    deadline: float
    watch: _Watch
    auth: Auth
    headers: dict[str, str]
    params: Mapping[str, str] | None
    json_body: Any
    data: bytes | None
    verify: str | bool
    cert: tuple[str, str] | None

    def run(self, session: requests.Session, follow_redirects: bool, max_bytes: int) -> Answer:
        host = urls.host_of(self.url)
        origin = _origin(self.url, host)
        url, method, body, params = self.url, self.method, self.json_body, self.params
        data = self.data
        for _hop in range(MAX_REDIRECTS + 1):
            _check_url(url, host)
            left = self.deadline - time.monotonic()
            if self.watch.fired is not None or left <= 0:
                raise Failure(self.watch.fired or "timeout", host, "")  # request() words it
            response = session.request(
                method, url, params=params, headers=self.headers, json=body, data=data,
                auth=self.auth,
                timeout=(left, left), verify=self.verify, cert=self.cert,
                allow_redirects=False, stream=True, proxies=proxies_for(url))
            with response:
                status, location = response.status_code, response.headers.get("Location")
                if not (follow_redirects and status in _REDIRECT_STATUSES and location):
                    content = response.raw.read(max_bytes, decode_content=True) \
                        if max_bytes else b""
                    return Answer(status, response.headers, content or b"")
            url = urljoin(url, location)
            if _origin(url, host) != origin:
                raise Failure("redirect", host, f"{host} redirected to {urls.shown_host(url)}; "
                                                f"connc follows a redirect only to the same "
                                                f"scheme, host and port, never with the "
                                                f"credential elsewhere")
            params = None  # the Location carries its own query
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body, data = "GET", None, None  # what browsers and requests do
        raise Failure("redirects", host, f"too many redirects from {host}")


def _origin(url: str, host: str) -> tuple[str, str, int | None] | None:
    try:
        return urls.origin(url)  # None: user info in a Location is never the origin asked
    except ValueError:
        raise Failure("invalid", host, f"the request to {host} failed: an invalid URL") from None


def next_link(header: str | None) -> str | None:
    """The target of a `Link` header's `rel="next"` (RFC 8288; GitHub, GitLab and registries
    paginate with it), as written (relative or absolute), or None.

    Parsed by scanning, in time linear in the header: a server's header is never run through
    a backtracking pattern, where a few megabytes of `<` (a hundred header lines, merged)
    would keep a run busy for hours, past every deadline (those bound the wait for bytes, not
    the work on them)."""
    text = header or ""
    position = 0
    while (start := text.find("<", position)) >= 0:
        end = text.find(">", start + 1)
        if end < 0:
            return None
        following = text.find("<", end + 1)
        for param in text[end + 1:following if following >= 0 else len(text)].split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "rel" and \
                    "next" in value.strip(" \t,").strip('"').lower().split():
                return text[start + 1:end]
        if following < 0:
            return None
        position = following
    return None


def utc_time(value: object, *, naive_is_utc: bool) -> dt.datetime | None:
    """A timestamp an API answered (ISO 8601: `2024-05-01T10:00:00.123Z`), aware, in UTC; None
    when it is none. `naive_is_utc`: the API documents UTC and may leave the offset out
    (GitHub); else a time without one is no time (GitLab)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)  # Python 3.11 reads the trailing "Z"
    except ValueError:
        return None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            return None
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _check_url(url: str, host: str) -> None:
    """https, or http to a loopback host (where the traffic never leaves the machine)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failure("invalid", host, f"the request to {host} failed: not an http(s) URL")
    if urls.plain_http_refused(parts.scheme, parts.hostname):
        raise Failure("insecure", host, f"plain http to {urls.shown_host(url)} is refused: it "
                                        f"would leave this machine unencrypted")


class _NoAuth:
    """Sends no credential (the session ignores ~/.netrc as well)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def _tls_failure(text: str, host: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (f"the certificate of {host} is not trusted (for a private CA set "
                f"REQUESTS_CA_BUNDLE or SSL_CERT_FILE)")
    return f"the TLS handshake with {host} failed (a refused client certificate?)"
