"""`connc check` probes exactly the server `connc render` writes a registry's credential for.

Render keys docker/config.json by the registry as written (Docker Hub under Hub's one key);
check sends the credential to the registry API. For every spelling of a registry, the two must
name one server: else check proves a credential against Docker Hub that the pipeline's tools
would send to another registry (or the other way round). The registry probe and its reach
send to `urls.registry_api`."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from connc import urls
from connc.render import docker

# The names skopeo's containers/image takes for Docker Hub (docker/reference normalize.go,
# pkg/docker/config normalizeRegistry), written out here rather than taken from connc.
HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
SPELLINGS = [
    "docker.io", "Docker.IO", "index.docker.io", "registry-1.docker.io", "docker.io:443",
    "Registry-1.Docker.io:443", "https://index.docker.io/v1/", "https://docker.io",
    "docker.io/myorg", "registry.hub.docker.com", "Registry.Hub.Docker.com",
    "docker.io:5000", "index.docker.io:8443", "https://docker.io:5000/",
    "registry.example.com", "Registry.Example.com:443", "registry.example.com:5000/team",
    "localhost:5000", "127.0.0.1:5000", "https://ghcr.io/", "ghcr.io/org",
]


def _written_for(registry: str) -> tuple[str, int | None]:
    """The host and port (None: the default) the pipeline's tools send the credential to:
    Docker Hub's API for the key docker and skopeo take for Hub, else the key's server."""
    key = docker.registry_keys(registry)[0]
    netloc = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if key == urls.DOCKER_HUB or (host in HUB and port in ("", "443")):
        return "registry-1.docker.io", None
    return host, None if port in ("", "443") else int(port)


def _probed(registry: str) -> tuple[str, int | None]:
    parts = urlsplit(urls.registry_api(registry))
    default = {"https": 443, "http": 80}[parts.scheme]
    return parts.hostname or "", None if parts.port in (None, default) else parts.port


@pytest.mark.parametrize("registry", SPELLINGS)
def test_check_probes_the_server_render_writes_for(registry: str) -> None:
    assert _probed(registry) == _written_for(registry)
