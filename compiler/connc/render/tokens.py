"""Installation tokens for github-app connections, minted at render time."""

from __future__ import annotations

from connc.errors import RenderError
from connc.github import apps
from connc.render.context import Resolved


def mint(resolved: Resolved) -> None:
    private_key = resolved.credential.get("privateKey")
    if private_key is None:
        raise RenderError(f"connection `{resolved.id}`: credential needs `privateKey`")
    token = apps.app_for(resolved.spec, private_key, connection=resolved.id) \
        .mint_installation_token(int(resolved.spec["installationId"]),
                                 resolved.use.get("repositories"),
                                 resolved.use.get("permissions"))
    resolved.token = token.token
    resolved.token_expires_at = token.expires_at
