"""Installation tokens for github-app connections, minted at render time."""

from __future__ import annotations

from typing import Any

from connc.github import GitHubApp
from connc.render.context import Resolved
from connc.secrets import Secret


def issuer(spec: dict[str, Any]) -> str:
    """The JWT `iss`: the client ID, or else the App ID, as a string."""
    return str(spec["clientId"]) if spec.get("clientId") is not None else str(spec["appId"])


def app_for(resolved: Resolved, private_key: Secret) -> GitHubApp:
    return GitHubApp(resolved.spec["apiUrl"], issuer(resolved.spec), private_key,
                     connection=resolved.id)


def mint(resolved: Resolved) -> None:
    private_key = resolved.credential.get("privateKey")
    if private_key is None:
        from connc.errors import RenderError

        raise RenderError(f"connection `{resolved.id}`: credential needs `privateKey`")
    token = app_for(resolved, private_key).mint_installation_token(
        int(resolved.spec["installationId"]), resolved.use.get("repositories"),
        resolved.use.get("permissions"))
    resolved.token = token.token
    resolved.token_expires_at = token.expires_at
