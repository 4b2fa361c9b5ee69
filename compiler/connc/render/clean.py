"""`connc clean`: revoke minted GitHub tokens, then remove the bundle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from connc.errors import ConncError
from connc.render.bundle import is_previous_bundle, remove


def clean(out: Path) -> Iterator[str]:
    if not out.exists():
        yield f"connc: {out} does not exist; nothing to clean"
        return
    if is_previous_bundle(out):
        yield from _revoke_tokens(out)
    remove(out)
    yield f"connc: removed {out}"


def _revoke_tokens(out: Path) -> Iterator[str]:
    from connc.github import revoke_installation_token
    from connc.secrets import Secret

    for state_file in sorted((out / "github").glob("*.json")):
        try:
            state = json.loads(state_file.read_text())
            revoked = revoke_installation_token(state["apiUrl"], Secret(state["token"]),
                                                connection=state["connection"])
        except ConncError as error:
            yield f"connc: warning: could not revoke the token of {state_file.stem}: {error}"
            continue
        except (OSError, ValueError, KeyError):
            yield f"connc: warning: {state_file.name} is unreadable; its token was not revoked"
            continue
        yield (f"connc: revoked the token of {state_file.stem}" if revoked
               else f"connc: the token of {state_file.stem} had already expired")
