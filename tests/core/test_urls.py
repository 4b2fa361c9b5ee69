"""connc.urls: the URL policy, default ports, origins, shown hosts, ssh host names and
Docker Hub's names, each decided in one place."""

from __future__ import annotations

import pytest

from connc import urls


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert urls.is_loopback(host)
    assert not urls.plain_http_refused("http", host)


@pytest.mark.parametrize("host", ["example.com", "localhost.example.com", "10.0.0.1", "::2",
                                  "0x7f000001", "", "mylocalhost"])
def test_plain_http_is_refused_off_loopback(host: str) -> None:
    assert not urls.is_loopback(host)
    assert urls.plain_http_refused("http", host)
    assert not urls.plain_http_refused("https", host)


def test_plain_http_to_no_host_is_refused() -> None:
    assert urls.plain_http_refused("http", None)


@pytest.mark.parametrize(("host", "port", "scheme", "expected"), [
    ("h.example", None, "https", "h.example"),
    ("h.example", 443, "https", "h.example"),
    ("h.example", 80, "http", "h.example"),
    ("h.example", 80, "https", "h.example:80"),
    ("h.example", 443, "http", "h.example:443"),
    ("h.example", 8443, "https", "h.example:8443"),
    ("2001:db8::1", None, "https", "[2001:db8::1]"),
    ("2001:db8::1", 8443, "https", "[2001:db8::1]:8443"),
    ("h.example", 22, "ssh", "h.example:22"),
])
def test_host_port_drops_only_the_schemes_default(host: str, port: int | None, scheme: str,
                                                   expected: str) -> None:
    assert urls.host_port(host, port, scheme) == expected


def test_origin() -> None:
    assert urls.origin("https://H.Example/x") == ("https", "h.example", 443)
    assert urls.origin("https://h.example:443/") == urls.origin("https://h.example/")
    assert urls.origin("http://127.0.0.1:8080/a") == ("http", "127.0.0.1", 8080)
    assert urls.origin("https://u:p@h.example/") is None
    assert urls.origin("https://u@h.example/") is None
    with pytest.raises(ValueError):
        urls.origin("https://h.example:99999/")


def test_host_of_names_a_configured_url() -> None:
    assert urls.host_of("https://Sts.Example.com:8443/x") == "sts.example.com"
    assert urls.host_of("not a url") == "not a url"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://api.example.com/x", "api.example.com"),
    ("http://127.0.0.1:8080/", "127.0.0.1"),
    ("https://[::1]:8080/", "::1"),
    ("https://evil\x1b[31m.example/", "another host"),
    ("https://h.example:99999999999/", "h.example"),
    ("https://[not-ipv6/", "another host"),
    ("https://" + "a" * 254 + "/", "another host"),
    ("/relative", "another host"),
])
def test_shown_host_is_safe_to_print(url: str, shown: str) -> None:
    assert urls.shown_host(url) == shown


@pytest.mark.parametrize(("url", "expected"), [
    ("ssh://git@Git.Example.com/org/repo.git", ("git.example.com", 22, "git.example.com")),
    ("ssh://git@git.example.com:22/r", ("git.example.com", 22, "git.example.com")),
    ("ssh://git.example.com:2222/r", ("git.example.com", 2222, "[git.example.com]:2222")),
    ("ssh://git@[2001:db8::1]:2222/r", ("2001:db8::1", 2222, "[2001:db8::1]:2222")),
])
def test_ssh_host(url: str, expected: tuple[str, int, str]) -> None:
    assert urls.ssh_host(url) == expected


@pytest.mark.parametrize(("registry", "parts"), [
    ("registry.example.com", ("", "registry.example.com", "registry.example.com", None, "")),
    ("Reg.Example.com:5000/team", ("", "Reg.Example.com:5000", "Reg.Example.com", 5000,
                                   "/team")),
    ("https://index.docker.io/v1/", ("https", "index.docker.io", "index.docker.io", None, "")),
    ("http://localhost:5000", ("http", "localhost:5000", "localhost", 5000, "")),
    ("https://[2001:db8::1]/", ("https", "[2001:db8::1]", "[2001:db8::1]", None, "")),
    ("https://[2001:db8::1]:5000/", ("https", "[2001:db8::1]:5000", "[2001:db8::1]", 5000, "")),
])
def test_registry_parts(registry: str, parts: tuple[str, str, str, int | None, str]) -> None:
    assert urls.registry_parts(registry) == parts


@pytest.mark.parametrize(("registry", "api"), [
    ("docker.io", urls.DOCKER_HUB_API),
    ("Docker.IO:443", urls.DOCKER_HUB_API),
    ("index.docker.io/library", urls.DOCKER_HUB_API),
    ("https://index.docker.io/v1/", urls.DOCKER_HUB_API),
    ("registry-1.docker.io", urls.DOCKER_HUB_API),
    # Not Hub's names or port: render writes the credential under the name as written.
    ("registry.hub.docker.com", "https://registry.hub.docker.com"),
    ("docker.io:5000", "https://docker.io:5000"),
    ("registry.example.com:443", "https://registry.example.com:443"),
    ("localhost:5000", "http://localhost:5000"),
    ("127.0.0.1:5000/team", "http://127.0.0.1:5000"),
    ("https://localhost:5000", "https://localhost:5000"),
    ("ghcr.io/org", "https://ghcr.io"),
])
def test_registry_api(registry: str, api: str) -> None:
    assert urls.registry_api(registry) == api


def test_docker_hub() -> None:
    assert urls.docker_hub("Index.Docker.IO", None)
    assert urls.docker_hub("docker.io", 443)
    assert not urls.docker_hub("docker.io", 5000)
    assert not urls.docker_hub("registry.hub.docker.com", None)
