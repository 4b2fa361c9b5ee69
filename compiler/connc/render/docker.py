"""docker/config.json: `auths` for every container-registry connection, no credsStore.

Without a credsStore docker and skopeo read `auth` from this file and never call a helper
that could copy the password into the runner's keychain.

Neither tool normalises the host it looks up: both take the registry part of the image
reference as the user wrote it (`host[:port]`; the reference grammar allows upper case there)
and compare it with the keys as text. containers/image (skopeo; pkg/docker/config
`findCredentialsInFile`) tries `host[:port]/repo/...` then shorter paths, then each key with
any `http(s)://` and path removed, with `docker.io`, `index.docker.io` and
`registry-1.docker.io` taken as one; docker (cli/config/credentials `fileStore.Get`) tries the
exact key, then each key with `http(s)://` and path removed, and looks Docker Hub up as
`https://index.docker.io/v1/`. Neither folds case or drops `:443`. So a registry gets a key
for each spelling of the same server a reference may use (`registry_keys`), and Docker Hub
its one key that both tools find.
"""

from __future__ import annotations

import base64
import json

from connc.errors import RenderError
from connc.render.context import Output, Resolved
from connc.urls import DOCKER_HUB, docker_hub, registry_parts


def registry_keys(registry: str) -> list[str]:
    """The `auths` keys for a connection's `registry`, the canonical one first.

    Canonical: host lower-cased, `:443` dropped (https is the default, so `host` and
    `host:443` are one server). Also the host as written when its case differs, and
    `host:443` when written with it: a reference may spell the server either way.
    """
    # The legacy URL form: both tools keep only its host[:port] (convertToHostname).
    _scheme, _netloc, host, port, path = registry_parts(registry)
    if docker_hub(host, port) and path in ("", "/"):
        return [DOCKER_HUB]
    ports = [""] if port is None else ["", ":443"] if port == 443 else [f":{port}"]
    keys: list[str] = []
    for name in (host.lower(), host):
        for suffix in ports:
            key = f"{name}{suffix}{path}"
            if key not in keys:
                keys.append(key)
    return keys


def write(items: list[Resolved], output: Output) -> None:
    auths: dict[str, dict[str, str]] = {}
    owners: dict[str, str] = {}
    for resolved in items:
        username, password, registries = _credential(resolved)
        # A username with ':' never gets here: the credential contract refuses it
        # (credentials.field_problem), for every command alike.
        auth = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        for registry in registries:
            keys = registry_keys(registry)
            for key in keys:
                if key in owners:
                    raise RenderError(f"connections `{owners[key]}` and `{resolved.id}` are "
                                      f"both for registry {keys[0]}; docker keeps one "
                                      f"credential per registry")
                owners[key] = resolved.id
                auths[key] = auth
        output.mask(password, username=username, where=resolved.id)
        if resolved.exchanged is not None:
            from connc.identity.token import stamp

            expires = resolved.exchanged.expires_at
            output.record(resolved, "docker/config.json", registries=list(registries),
                          expiresAt=stamp(expires) if expires else None)
        else:
            output.record(resolved, "docker/config.json")
    output.files.add("docker/config.json", json.dumps({"auths": auths}, indent=2) + "\n")
    output.env["DOCKER_CONFIG"] = output.path("docker")


def _credential(resolved: Resolved) -> tuple[str, str, list[str]]:
    """(username, password, registries): stored, or what an aws-ecr exchange gave (its
    registries come from the sealed spec, never from ECR's answer)."""
    if resolved.exchanged is None:
        username, password = resolved.user_password()
        return username, password, [str(resolved.spec["registry"])]
    username, password = (resolved.exchanged_value(field) for field in ("username", "password"))
    if ":" in username:
        raise RenderError(f"connection `{resolved.id}`: the registry username ECR gave "
                          f"contains ':'; refused")
    return username, password, list(resolved.exchanged.registries)
