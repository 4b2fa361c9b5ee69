"""`connc check` for container registries: what `docker login` does."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from connc.check.probe import Context, Result, http_get, status_failure
from connc.render.context import Resolved
from connc.schema.policy import is_loopback

TYPES = frozenset({"container-registry"})


_DOCKER_HUB = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io",
                         "registry.hub.docker.com"})


def registry_base(registry: str) -> str:
    """scheme://host[:port] of the registry API. An explicit scheme wins; else http on
    loopback (where registries run without TLS, as docker allows) and https elsewhere."""
    if "://" in registry:
        parts = urlsplit(registry)
        scheme, netloc = parts.scheme, parts.netloc
    else:
        scheme, netloc = "", registry.split("/", 1)[0]
    hostname = urlsplit(f"//{netloc}").hostname or netloc
    if hostname in _DOCKER_HUB:
        return "https://registry-1.docker.io"  # where `docker login` sends Docker Hub's
    return f"{scheme or ('http' if is_loopback(hostname) else 'https')}://{netloc}"


def probe(resolved: Resolved, context: Context) -> Result:
    """What `docker login` does: GET /v2/, answer its challenge, expect 200."""
    url = registry_base(str(resolved.spec["registry"])) + "/v2/"
    username, password = resolved.user_password()
    first = http_get(url, context)
    if first.status == 200:
        again = http_get(url, context, basic=(username, password))
        if again.status != 200:
            return Result(False, status_failure(again.status), url)
        return Result(True, "the registry allows anonymous access and did not refuse the "
                            "credential (that is all it can prove)", url)
    if first.status != 401:
        return Result(False, status_failure(first.status), url)
    scheme, challenge = _challenge(first.headers.get("WWW-Authenticate", ""))
    if scheme == "basic":
        answer = http_get(url, context, basic=(username, password))
        if answer.status != 200:
            return Result(False, status_failure(answer.status), url)
        return Result(True, "credential accepted (HTTP Basic)", url)
    if scheme == "bearer" and challenge.get("realm"):
        return _registry_token(url, challenge, (username, password), context)
    return Result(False, "the registry answered 401 without a challenge connc understands", url)


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def _registry_token(url: str, challenge: dict[str, str], basic: tuple[str, str],
                    context: Context) -> Result:
    """The token flow of Docker Hub and registries with a token service."""
    realm = challenge["realm"]
    params = {key: challenge[key] for key in ("service", "scope") if challenge.get(key)}
    params["account"] = basic[0]
    issued = http_get(realm, context, basic=basic, params=params, read_json=True)
    realm_host = urlsplit(realm).hostname or realm
    if issued.status != 200:
        return Result(False, f"the token service {realm_host}: {status_failure(issued.status)}",
                      url)
    body = issued.body if isinstance(issued.body, dict) else {}
    token = body.get("token") or body.get("access_token")  # distribution's spec allows either
    if not isinstance(token, str) or not token:
        return Result(False, f"the token service {realm_host} answered without a token", url)
    answer = http_get(url, context, bearer=token)
    if answer.status != 200:
        return Result(False, f"the registry refused the token from {realm_host}: "
                             f"{status_failure(answer.status)}", url)
    return Result(True, f"credential accepted (a token from {realm_host}, accepted by the "
                        f"registry)", url)
