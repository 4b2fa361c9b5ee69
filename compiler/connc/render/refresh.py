"""The git helper's re-mint: `python -m connc.render.refresh BUNDLE ID WHAT`.

With `refresh: true`, a token's state (`render.github_tokens`) also holds the App's private
key and installation, and the askpass helper runs this, which re-mints the token shortly
before it expires, so jobs longer than the token's hour keep working. The state's apiUrl goes
through the URL policy again first (`github_tokens.checked_api_url`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
from pathlib import Path

from connc import privatefiles
from connc.render.bundle import token_state
from connc.render.github_tokens import checked_api_url

REMINT_BEFORE = dt.timedelta(minutes=5)


def _current_token(bundle: Path, connection_id: str) -> str:
    from connc.github.apps import GitHubApp
    from connc.secrets import Secret

    path = bundle / token_state(connection_id)
    # Two git processes must not both re-mint. The lock has a file of its own: the state file
    # is replaced when a token is re-minted, and a process waiting on a lock of the replaced
    # file would then read the stale state and mint again.
    lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(lock_fd) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text(encoding="utf-8"))
        checked_api_url(state["apiUrl"])
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
