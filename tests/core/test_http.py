"""connc.http, the one HTTP client, against servers that redirect, trickle, or proxy.

Each rule of the module's docstring has a test here that fails without it: no ~/.netrc, no
redirect to another origin, no proxy for a loopback host (while other hosts keep the
environment's proxy and CA), and one deadline per request that a trickling server cannot
stretch and an interrupt cuts short.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connc import http, process
from connc.errors import GitHubError
from connc.github.apps import GitHubApp, revoke_installation_token
from connc.secrets import Secret
from kit.servers.github_fake import FakeGitHub, _rsa_key, github_api  # noqa: F401
from kit.servers.hostile import (
    ProxyLog,
    Reply,
    Seen,
    logging_proxy,
    recording_server,
    trickling_server,
)
from kit.servers.kube_api import KubeApiServer, kube_server  # noqa: F401

PASSWORD = "CANARY-connc-password"
NETRC_PASSWORD = "CANARY-netrc-password"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                    "all_proxy", "NO_PROXY", "no_proxy")


def basic(request: object) -> object:
    """The auth hook a probe passes: Basic with connc's own credential."""
    from requests.auth import HTTPBasicAuth

    return HTTPBasicAuth("reader", PASSWORD)(request)  # type: ignore[arg-type]


def authorization(seen: Seen) -> str | None:
    return next((v for k, v in seen.headers.items() if k.lower() == "authorization"), None)


def decoded(header: str | None) -> str:
    return base64.b64decode(header.split(" ", 1)[1]).decode() if header else ""


def finishes_within(seconds: float, action: Callable[[], object]) -> object:
    """`action()`'s result or exception, asserting it came back in time. Run on a thread, so
    that a client without the rule fails this test instead of hanging it."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(action())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    assert time.monotonic() - started < seconds
    return outcome[0]


@pytest.fixture
def netrc(_private_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The checker's own ~/.netrc (and $NETRC), with a password for every loopback name."""
    path = _private_home / ".netrc"
    path.write_text("".join(f"machine {host} login netrc-user password {NETRC_PASSWORD}\n"
                            for host in ("localhost", "127.0.0.1")))
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProxyLog]:
    """Every proxy variable pointing at a logging proxy, and no NO_PROXY at all."""
    with logging_proxy() as log:
        for name in _PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, log.url)
        yield log


# --- credentials: connc's own, and only where connc sent them -----------------------------


def test_a_redirect_to_another_host_is_not_followed_and_netrc_is_never_read(
        netrc: Path) -> None:
    with recording_server({"/landing": Reply(200, body=b"welcome")}) as landing, \
            recording_server() as index:
        index.routes["/simple/"] = Reply(302, {"Location": landing.url("localhost") + "/landing"})
        with pytest.raises(http.Failure) as caught:
            http.request("GET", index.url() + "/simple/", timeout=5, auth=basic,
                         follow_redirects=True)
        assert caught.value.kind == "redirect"
        assert caught.value.message.startswith("127.0.0.1 redirected to localhost; ")
        assert landing.seen == []  # neither connc's credential nor the netrc one went there
        assert decoded(authorization(index.seen[0])) == f"reader:{PASSWORD}"

        # Nor does netrc fill in a request sent without a credential.
        answer = http.request("GET", landing.url("localhost") + "/landing", timeout=5)
        assert answer.status == 200
        assert authorization(landing.seen[0]) is None


def test_a_redirect_within_the_origin_keeps_the_credential(netrc: Path) -> None:
    with recording_server() as index:
        index.routes["/old"] = Reply(301, {"Location": "/simple/"})
        index.routes["/simple/"] = lambda seen: Reply(
            200 if decoded(authorization(seen)) == f"reader:{PASSWORD}" else 401)
        answer = http.request("GET", index.url() + "/old", timeout=5, auth=basic,
                              follow_redirects=True)
        assert answer.status == 200
        assert [s.path for s in index.seen] == ["/old", "/simple/"]
        assert all(authorization(s) for s in index.seen)


@pytest.mark.parametrize("location", [
    "http://connc-test.invalid/simple/",  # plain http off loopback
    "https://connc-test.invalid/simple/",  # another host, even over https
    "https://127.0.0.1:{port}/simple/",  # another scheme
    "http://127.0.0.1:1/simple/",  # another port
    "http://localhost:{port}/simple/",  # another name for the same server
    "http://user:pw@127.0.0.1:{port}/simple/",  # user info never rides a redirect
])
def test_redirects_elsewhere_are_refused_before_any_connection(location: str) -> None:
    with recording_server() as index:
        index.routes["/a"] = Reply(307, {"Location": location.format(port=index.port)})
        with pytest.raises(http.Failure) as caught:
            http.request("GET", index.url() + "/a", timeout=5, auth=basic,
                         follow_redirects=True)
        assert caught.value.kind == "redirect"
        assert len(index.seen) == 1


def test_too_many_redirects_and_plain_http_off_loopback() -> None:
    with recording_server({"/loop": Reply(302, {"Location": "/loop"})}) as index:
        with pytest.raises(http.Failure) as caught:
            http.request("GET", index.url() + "/loop", timeout=5, follow_redirects=True)
        assert caught.value.kind == "redirects"
        assert len(index.seen) == http.MAX_REDIRECTS + 1
        # Without follow_redirects (the GitHub client), a 3xx is an answer like any other.
        assert http.request("GET", index.url() + "/loop", timeout=5).status == 302
    with pytest.raises(http.Failure) as refused:
        http.request("GET", "http://connc-test.invalid/", timeout=5, auth=basic)
    assert refused.value.kind == "insecure"


# --- proxies ------------------------------------------------------------------------------


def test_loopback_requests_bypass_every_proxy(proxy: ProxyLog) -> None:
    with recording_server() as index:
        index.routes["/simple/"] = Reply(200)
        for host in ("127.0.0.1", "localhost"):
            answer = http.request("GET", index.url(host) + "/simple/", timeout=5, auth=basic)
            assert answer.status == 200, host
        assert len(index.seen) == 2
    assert proxy.heads == []  # the Basic credential never reached the proxy
    assert http.proxies_for("http://[::1]:8080/") == {}
    assert http.proxies_for("https://sub.localhost/") == {}


def test_other_hosts_keep_the_environment_proxy(proxy: ProxyLog,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert http.proxies_for("https://registry.example.com/v2/")["https"] == proxy.url
    with pytest.raises(http.Failure) as caught:
        http.request("GET", "https://registry.example.com/v2/", timeout=5, auth=basic)
    assert caught.value.kind == "connect"  # the proxy refused the tunnel
    [head] = proxy.heads
    assert head.startswith("CONNECT registry.example.com:443 ")
    assert PASSWORD not in head and base64.b64encode(PASSWORD.encode()).decode() not in head
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert http.proxies_for("https://registry.example.com/v2/") == {}


def test_the_ca_variables_are_honoured(kube_server: KubeApiServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The session ignores the environment; the trust variables connc honours still work."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(kube_server.ca_pem)
    url = kube_server.server + "/version"
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(http.Failure) as caught:
        http.request("GET", url, timeout=5)
    assert caught.value.kind == "tls"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        with monkeypatch.context() as env:
            env.setenv(name, str(ca))
            assert http.request("GET", url, timeout=5).status == 401  # TLS verified


# --- one deadline per request ---------------------------------------------------------------


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\n",  # stuck in the header lines
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",  # stuck in the body
], ids=["headers", "body"])
def test_a_trickling_server_cannot_stretch_the_timeout(head: bytes) -> None:
    with trickling_server(head) as server:
        caught = finishes_within(5, lambda: http.request("GET", server.url + "/", timeout=1))
    assert isinstance(caught, http.Failure), caught
    assert (caught.kind, caught.message) == ("timeout", "no answer from 127.0.0.1 within 1 s")


def test_limits_cut_requests_short_and_cancel_ends_them_at_once() -> None:
    with trickling_server() as server:
        def under_deadline() -> object:
            with http.limits(deadline=process.Deadline(0.5)):
                assert 0 < (http.remaining() or 0) <= 0.5
                return http.request("GET", server.url, timeout=60)

        caught = finishes_within(3, under_deadline)
        assert isinstance(caught, http.Failure) and caught.kind == "timeout", caught

        cancel = process.Cancel()

        def under_cancel() -> object:
            with http.limits(cancel=cancel):
                return http.request("GET", server.url, timeout=60)

        threading.Timer(0.3, cancel.set).start()
        caught = finishes_within(3, under_cancel)
        assert isinstance(caught, http.Failure) and caught.kind == "cancelled", caught
        # Once cancelled, nothing more is sent.
        accepted = server.server.accepted
        caught = finishes_within(3, under_cancel)
        assert isinstance(caught, http.Failure) and caught.kind == "cancelled"
        assert server.server.accepted == accepted


def test_pause_is_cut_short_by_a_cancel() -> None:
    cancel = process.Cancel()
    threading.Timer(0.2, cancel.set).start()

    def pause() -> None:
        with http.limits(cancel=cancel):
            http.pause(30)

    finishes_within(2, pause)


# --- the GitHub client (render, the refresh helper, check's github-app probe) -------------


def _app(url: str, fake: FakeGitHub | None = None, **options: object) -> GitHubApp:
    app_id, pem = (fake.app_id, fake.private_key_pem) if fake else ("1", _rsa_key(0)[0])
    return GitHubApp(url, app_id, Secret(pem), connection="deploy-bot",
                     **options)  # type: ignore[arg-type]


def test_github_requests_have_an_overall_deadline() -> None:
    with trickling_server() as server:
        caught = finishes_within(6, lambda: _app(server.url, timeout=1, max_attempts=2,
                                                 sleep=lambda _s: None)
                                 .mint_installation_token(7))
    assert isinstance(caught, GitHubError), caught
    assert "no answer within 1 s" in str(caught) and "2 attempts" in str(caught)


def test_github_requests_to_loopback_bypass_the_proxy(github_api: FakeGitHub,
                                                      proxy: ProxyLog) -> None:
    token = _app(github_api.url, github_api).mint_installation_token(github_api.installation_id)
    assert revoke_installation_token(github_api.url, token.token, timeout=5) is True
    assert proxy.heads == []  # neither the JWT nor the token went through the proxy


def test_github_backoff_ends_on_cancel_and_revoke_outlives_the_deadline(
        github_api: FakeGitHub) -> None:
    cancel = process.Cancel()

    def mint_until_cancelled() -> object:
        # Refused at once, then a backoff of 1, 2 s...: the cancel cuts the first one short.
        with http.limits(cancel=cancel):
            return _app("http://127.0.0.1:1", timeout=5, max_attempts=4) \
                .mint_installation_token(7)

    threading.Timer(0.3, cancel.set).start()
    caught = finishes_within(2, mint_until_cancelled)
    assert isinstance(caught, GitHubError) and "interrupted" in str(caught), caught

    token = _app(github_api.url, github_api).mint_installation_token(github_api.installation_id)
    spent = process.Cancel()
    spent.set()
    with http.limits(deadline=process.Deadline(1e-9), cancel=spent):
        # The mint's deadline has passed: the revocation that undoes it is made all the same.
        assert revoke_installation_token(github_api.url, token.token, timeout=5) is True
    assert github_api.revoked == [token.token.reveal()]
