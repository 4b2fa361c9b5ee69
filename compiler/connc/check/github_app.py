"""`connc check` for github-app connections: mint a least-privilege token, revoke it."""

from __future__ import annotations

from connc import github
from connc.check.probe import Context, Result
from connc.errors import ConncError
from connc.render.context import Resolved
from connc.secrets import Secret

TYPES = frozenset({"github-app"})


def probe(resolved: Resolved, context: Context) -> Result:
    """Mint an installation token (metadata: read only, the least any App holds), revoke it."""
    spec = resolved.spec
    key = Secret(resolved.required("privateKey")[0])
    installation = int(spec["installationId"])
    app = github.app_for(spec, key, connection=resolved.id, timeout=context.timeout,
                         max_attempts=2, max_wait=context.timeout)
    token = app.mint_installation_token(installation, None, {"metadata": "read"})
    target = f"{str(spec['apiUrl']).rstrip('/')}/app/installations/{installation}"
    revoked = "revoked it"
    try:
        github.revoke_installation_token(spec["apiUrl"], token.token, connection=resolved.id,
                                  timeout=context.timeout, max_attempts=2)
    except ConncError:  # the check itself succeeded; say what is left behind
        revoked = "could not revoke it (it expires within the hour)"
    return Result(True, f"minted an installation token (metadata: read) and {revoked}", target)
