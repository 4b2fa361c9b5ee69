"""GitHub App token state in the bundle: revocation by `connc clean`, and re-minting.

`github/<id>.json` (0600) holds the minted token and its API URL, so `connc clean` can revoke
it. With `refresh: true` it also holds the App's private key and installation, and the git
helper runs `python -m connc.render.refresh BUNDLE ID WHAT`, which re-mints a token shortly
before expiry, so jobs longer than the token's hour keep working.

The state file is read back long after render checked the spec it came from, so its apiUrl
goes through the same URL policy again (https, or http on a loopback host only) before a JWT
is sent there.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

from connc import privatefiles
from connc.render.context import Output, Resolved

REMINT_BEFORE = dt.timedelta(minutes=5)


def state_path(connection_id: str) -> str:
    return f"github/{connection_id}.json"


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
    output.files.add(state_path(resolved.id), json.dumps(state, indent=2) + "\n")
    output.record(resolved, state_path(resolved.id), refresh=refresh, keepsAppKey=refresh,
                  tokenExpiresAt=state["expiresAt"])


def _current_token(bundle: Path, connection_id: str) -> str:
    from connc.github.apps import GitHubApp
    from connc.secrets import Secret

    path = bundle / state_path(connection_id)
    # Two git processes must not both re-mint. The lock has a file of its own: the state file
    # is replaced when a token is re-minted, and a process waiting on a lock of the replaced
    # file would then read the stale state and mint again.
    lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(lock_fd) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text(encoding="utf-8"))
        _check_api_url(state["apiUrl"])
        expires = dt.datetime.fromisoformat(state["expiresAt"])
        if expires - dt.datetime.now(dt.UTC) > REMINT_BEFORE:
            return str(state["token"])
        app = GitHubApp(state["apiUrl"], state["issuer"], Secret(state["privateKey"]),
                        connection=connection_id)
        token = app.mint_installation_token(state["installationId"], state["repositories"],
                                            state["permissions"])
        state["token"] = token.token.reveal()
        state["expiresAt"] = token.expires_at.isoformat()
        privatefiles.replace(path, json.dumps(state, indent=2).encode())
        return str(state["token"])


def _check_api_url(api_url: object) -> None:
    from connc.errors import ConncError
    from connc.schema.policy import Violation, check_url

    try:
        if not isinstance(api_url, str):
            raise Violation("url_invalid", "is not a string")
        check_url(api_url, ("https",))
    except Violation as refused:
        raise ConncError(f"its apiUrl breaks the URL policy ({refused.message})") from None


def main(argv: list[str]) -> int:
    from connc.errors import ConncError

    bundle, connection_id, what = Path(argv[0]), argv[1], argv[2]
    try:
        token = _current_token(bundle, connection_id)
    except (ConncError, OSError, ValueError, KeyError) as error:
        reason = error if isinstance(error, ConncError) else type(error).__name__
        print(f"connc: cannot refresh the token of {connection_id}: {reason}", file=sys.stderr)
        return 1
    if what == "username":
        print("x-access-token")
    elif what == "password":
        print(token)
    else:
        print(f"username=x-access-token\npassword={token}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
