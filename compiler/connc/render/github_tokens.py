"""GitHub App installation tokens in render, and their state in a bundle: the one owner.

Render mints them before any writer runs (`mint_all`); a bundle keeps each in
`github/<id>.json` (`write_state`, at `bundle.token_state`, 0600: the token and its API URL, so that it can be
revoked; with `refresh: true` also the App's private key and installation, for the git
helper's re-mint, `render.refresh`); and whoever drops tokens revokes them: `revoke_minted`
those no bundle holds yet (a failed render), `revoke_states` a bundle's (`connc clean`, a
bundle replaced or left by a killed render). Where a bundle keeps them, and what the
refresh helper may add beside them, is the bundle's layout (`bundle.token_state`).

A state file is read back long after render checked the spec it came from, so its apiUrl
goes through the URL policy again (`checked_api_url`: https, or http on a loopback host only)
before a JWT or a token is sent there.

Light at import: render's start-up reads the names; GitHub's client is imported only where a
token is minted or revoked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connc import privatefiles
from connc.errors import ConncError, RenderError
from connc.render.bundle import token_state
from connc.render.context import Output, Resolved

_STATE_MAX_BYTES = 1024 * 1024  # a token, its API URL and at most an App's private key


class ApiUrlRefused(ConncError):
    """A state file's apiUrl that the URL policy refuses: no token or JWT goes there."""


def checked_api_url(api_url: object) -> str:
    from connc.schema.policy import Violation, check_url

    try:
        if not isinstance(api_url, str):
            raise Violation("url_invalid", "is not a string")
        check_url(api_url, ("https",))
    except Violation as refused:
        raise ApiUrlRefused(f"its apiUrl breaks the URL policy ({refused.message})") from None
    return api_url


# ---------------------------------------------------------------------------- render


def mint_all(resolved: list[Resolved]) -> None:
    """A token for each github-app connection, at once; when one fails, those minted are
    revoked and the failure raised."""
    apps = [r for r in resolved if r.type == "github-app"]
    if not apps:
        return
    from concurrent.futures import ThreadPoolExecutor  # here: most renders mint nothing

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        futures = [pool.submit(_mint, app) for app in apps]
    failures = [error for error in (f.exception() for f in futures) if error is not None]
    if failures:
        revoke_minted(apps)  # the mints that did succeed
        raise failures[0]


def _mint(resolved: Resolved) -> None:
    from connc.github import apps

    private_key = resolved.credential.get("privateKey")
    if private_key is None:
        raise RenderError(f"connection `{resolved.id}`: credential needs `privateKey`")
    token = apps.app_for(resolved.spec, private_key, connection=resolved.id) \
        .mint_installation_token(int(resolved.spec["installationId"]),
                                 resolved.use.get("repositories"),
                                 resolved.use.get("permissions"))
    resolved.token = token.token
    resolved.token_expires_at = token.expires_at


def revoke_minted(resolved: list[Resolved]) -> None:
    """Tokens no bundle holds: best effort, one quick attempt each (an unrevoked token still
    dies within the hour)."""
    from connc.github.apps import revoke_installation_token

    for item in resolved:
        if item.token is None:
            continue
        try:
            revoke_installation_token(item.spec["apiUrl"], item.token, connection=item.id,
                                      timeout=5.0, max_attempts=1)
        except ConncError:
            pass


def write_state(resolved: Resolved, output: Output) -> None:
    from connc.github.apps import issuer

    assert resolved.token is not None
    spec, refresh = resolved.spec, bool(resolved.use.get("refresh"))
    expires = resolved.token_expires_at
    state: dict[str, Any] = {
        "connection": resolved.id,
        "apiUrl": spec["apiUrl"],
        "token": resolved.token.reveal(),
        "expiresAt": expires.isoformat() if expires else None,
        "refresh": refresh,
    }
    if refresh:
        state.update(issuer=issuer(spec), installationId=spec["installationId"],
                     repositories=resolved.use.get("repositories"),
                     permissions=resolved.use.get("permissions"),
                     privateKey=resolved.credential["privateKey"].reveal())
        # In the bundle now, like every other secret.
        output.mask(state["privateKey"], where=resolved.id)
    output.files.add(token_state(resolved.id), json.dumps(state, indent=2) + "\n")
    output.record(resolved, token_state(resolved.id), refresh=refresh, keepsAppKey=refresh,
                  tokenExpiresAt=state["expiresAt"])


# ---------------------------------------------------------------------------- a bundle's


def revoke_states(directory: Path, states: list[str], *, quick: bool) -> Iterator[str]:
    """Revoke the token of each state file of a bundle; a failure is a warning (the token
    still dies within the hour). `quick`: one short attempt each, for render."""
    if not states:
        return
    from connc.github.apps import revoke_installation_token
    from connc.secrets import Secret

    for relpath in states:
        name = _connection(relpath)
        try:
            state = _json(privatefiles.read(directory / relpath, _STATE_MAX_BYTES))
            token = state["token"]
            if not isinstance(token, str):
                raise ValueError
            # The file could have been edited since render checked the spec, and a bearer
            # token must not go over plain http to another host.
            api_url = checked_api_url(state["apiUrl"])
            revoked = revoke_installation_token(
                api_url, Secret(token), connection=name, timeout=5.0 if quick else 10.0,
                max_attempts=1 if quick else 4)
        except ApiUrlRefused as refused:
            yield f"connc: warning: the token of {name} was not revoked: {refused.message}"
            continue
        except ConncError as error:
            yield f"connc: warning: could not revoke the token of {name}: {error}"
            continue
        except (OSError, ValueError, KeyError, TypeError):
            yield f"connc: warning: {_shown(relpath)} is unreadable; its token was not revoked"
            continue
        yield (f"connc: revoked the token of {name}" if revoked
               else f"connc: the token of {name} had already expired")


def _connection(relpath: str) -> str:
    return _shown(relpath.rsplit("/", 1)[-1].removesuffix(".new").removesuffix(".json"))


def _shown(text: str) -> str:
    from connc.findings import printable

    return printable(text, 200)


def _json(data: bytes) -> dict[str, object]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError
    return value
