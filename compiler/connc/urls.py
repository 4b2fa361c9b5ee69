"""URLs and hosts as every part of connc reads them: the one home of

- the URL policy: https, or plain http to a loopback host only (`plain_http_refused`), for a
  URL a file names (`schema.policy`), a request connc sends (`http`) and a probe's client;
- the schemes' default ports, and `host[:port]` as a client sends it (`host_port`);
- an origin (`origin`: scheme, host lower-cased, port), what a redirect may not leave;
- a URL's host as a message names it (`host_of`; `shown_host` for one a server sent);
- an ssh URL's host and port, and the name ssh looks its host keys up by (`ssh_host`);
- Docker Hub's names: render writes a credential under Hub's key for exactly the registries
  `docker_hub` says are Hub, and check probes Hub's API for exactly those (`registry_api`).

Standard library only: render imports it at start-up, and so does `schema.policy`.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
SSH_PORT = 22
# A user name in `ssh://user@host/...`: the login name every git host expects, not a secret.
SSH_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")  # a host name fit to show as it is

# The key docker looks Docker Hub up by in config.json (cli/config `fileStore.Get`).
DOCKER_HUB = "https://index.docker.io/v1/"
# Where `docker login` sends Docker Hub's credential (its registry API).
DOCKER_HUB_API = "https://registry-1.docker.io"
# The names containers/image (skopeo) and docker take for Docker Hub (`normalizeRegistry`).
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_refused(scheme: str, host: str | None) -> bool:
    """The URL policy: plain http only where the traffic never leaves the machine."""
    return scheme == "http" and not is_loopback(host or "")


def host_port(host: str, port: int | None, scheme: str) -> str:
    """`host[:port]` as a client sends it: an IPv6 literal bracketed, the scheme's default
    port dropped. `host` as urllib's `hostname` gives it (lower-cased, unbracketed)."""
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    return shown


def origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host lower-cased, port or the scheme's default); None when the URL carries
    user info (never the origin asked). Raises ValueError for an invalid port."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    if parts.username is not None or parts.password is not None:
        return None
    return parts.scheme, (parts.hostname or "").lower(), port


def host_of(url: str) -> str:
    """The host a message names for a URL connc was configured with (a checked spec field,
    an API's fixed address); `shown_host` for one a server sent."""
    return urlsplit(url).hostname or url


def shown_host(url: str) -> str:
    """The host of `url` when it is safe to show as it is, else "another host" (a host a
    server sent may hold anything, escape sequences included)."""
    try:
        hostname = urlsplit(url).hostname or ""
    except ValueError:
        hostname = ""
    return hostname if _PLAIN_HOST.fullmatch(hostname) else "another host"


def ssh_host(url: str) -> tuple[str, int, str]:
    """(host lower-cased, port, the name ssh looks its host keys up by) of an ssh URL: the
    name is the bare host on port 22, else `[host]:port` (ssh's put_host_port). Raises
    ValueError for an invalid port."""
    parts = urlsplit(url)
    host, port = (parts.hostname or "").lower(), parts.port or SSH_PORT
    return host, port, host if port == SSH_PORT else f"[{host}]:{port}"


def registry_parts(registry: str) -> tuple[str, str, str, int | None, str]:
    """(scheme, netloc, host, port, path) of a container-registry value, as written:
    `host[:port][/namespace]`, or an `http(s)://` URL (docker's legacy form, of which both
    docker and skopeo keep only the host[:port]). scheme is "" when none is written."""
    if registry.startswith(("https://", "http://")):
        parts = urlsplit(registry)
        scheme, netloc, path = parts.scheme, parts.netloc, ""
    else:
        scheme = ""
        netloc, slash, rest = registry.partition("/")
        path = slash + rest  # a namespace key (containers/image), case kept as written
    bare = ":" not in netloc or netloc.endswith("]")  # no port (an IPv6 literal has colons)
    host, colon, port_text = (netloc, "", "") if bare else netloc.rpartition(":")
    port = int(port_text) if colon and port_text.isdigit() else None
    return scheme, netloc, host, port, path


def docker_hub(host: str, port: int | None) -> bool:
    """Whether `host[:port]` of a registry is Docker Hub, as docker and skopeo take it."""
    return host.lower() in DOCKER_HUB_NAMES and port in (None, 443)


def registry_api(registry: str) -> str:
    """scheme://host[:port] of the registry API a credential for `registry` is sent to:
    Docker Hub's for Hub's names; else an explicit scheme, or http on loopback (where
    registries run without TLS, as docker allows) and https elsewhere."""
    scheme, netloc, host, port, _path = registry_parts(registry)
    if docker_hub(host, port):
        return DOCKER_HUB_API
    hostname = urlsplit(f"//{netloc}").hostname or netloc
    return f"{scheme or ('http' if is_loopback(hostname) else 'https')}://{netloc}"
