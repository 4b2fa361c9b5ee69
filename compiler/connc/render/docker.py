"""docker/config.json: `auths` for every container-registry connection, no credsStore.

Without a credsStore docker and skopeo read `auth` from this file and never call a helper
that could copy the password into the runner's keychain.
"""

from __future__ import annotations

import base64
import json

from connc.errors import RenderError
from connc.render.context import Output, Resolved

TYPES = frozenset({"container-registry"})


def write(items: list[Resolved], output: Output) -> None:
    auths: dict[str, dict[str, str]] = {}
    for resolved in items:
        registry = str(resolved.spec["registry"])
        username, password = resolved.user_password()
        if ":" in username:
            raise RenderError(f"connection `{resolved.id}`: the username contains ':', which "
                              f"docker's auth field cannot carry; refused")
        if registry in auths:
            raise RenderError(f"two connections of this pipeline are for registry {registry}; "
                              f"docker keeps one credential per registry")
        auths[registry] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        output.mask(password, username=username)
        output.record(resolved, "docker/config.json")
    output.files.add("docker/config.json", json.dumps({"auths": auths}, indent=2) + "\n")
    output.env["DOCKER_CONFIG"] = output.path("docker")
