"""Installation tokens for github-app connections, minted at render time."""

from __future__ import annotations

from connc import models
from connc.github import GitHubApp
from connc.render.context import Resolved


def app_for(resolved: Resolved) -> GitHubApp:
    spec = resolved.connection.spec
    assert isinstance(spec, models.GitHubAppSpec)
    key = resolved.credential.get("privateKey")
    if key is None:
        from connc.errors import RenderError

        raise RenderError(f"connection `{resolved.id}`: credential field `privateKey` is missing")
    return GitHubApp(spec.api_url, spec.issuer, key, connection=resolved.id)


def mint(resolved: Resolved) -> None:
    spec = resolved.connection.spec
    assert isinstance(spec, models.GitHubAppSpec)
    token = app_for(resolved).mint_installation_token(
        spec.installation_id, resolved.use.repositories, resolved.use.permissions)
    resolved.token = token.token
    resolved.token_expires_at = token.expires_at
