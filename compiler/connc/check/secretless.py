"""`connc check` for secretless connections (aws-ecr, pypi-publish): the exchange itself, with
the job's ID token (in CI) or `--id-token-file`; without either, `check` skips them.

aws-ecr goes on to what `docker login` does with the registry token it got; pypi-publish
proves the mint (an upload token PyPI made for this publisher, left unused to expire in 15
minutes: trusted publishing has no way to revoke one). `--reach` asks the registry's catalog
with the exchanged token; an index says nothing of what a token may upload, so reach mints
none.
"""

from __future__ import annotations

from typing import Any

from connc.check import registry
from connc.check.probe import Context, ProbeFailure, Result
from connc.check.reach import Ask, Grant, Reach, denied_grants
from connc.render.context import Resolved

SKIPPED = ("no ID token here: secretless connections are checked in a CI job (GitHub Actions "
           "with `id-token: write`, GitLab CI with its `id_tokens:`) or with --id-token-file")


def exchange(resolved: Resolved, context: Context) -> Any:
    """The connection's exchange, as render runs it; its credentials count as sent."""
    from connc.identity.exchange import exchange as run

    if context.identity is None:
        raise ProbeFailure(SKIPPED)
    exchanged = run(resolved.id, resolved.spec, context.identity)
    context.sent.update(value.reveal() for value in exchanged.values.values())
    context.sent.update(value.reveal() for value in exchanged.spent)
    return exchanged


def _as_registry(resolved: Resolved, exchanged: Any) -> Resolved:
    """The registry token as a container-registry connection, for the registry probe."""
    return Resolved(resolved.id, {"type": "container-registry",
                                  "registry": exchanged.registries[0]}, resolved.use,
                    {"username": exchanged.values["username"],
                     "password": exchanged.values["password"]})


def probe(resolved: Resolved, context: Context) -> Result:
    exchanged = exchange(resolved, context)
    if resolved.type == "aws-ecr":
        checked = registry.probe(_as_registry(resolved, exchanged), context)
        what = "STS and ECR issued a registry token; "
        return Result(checked.ok, what + checked.message, checked.target)
    from connc.identity.token import stamp

    expires = f", expiring at {stamp(exchanged.expires_at)}" if exchanged.expires_at else ""
    return Result(True, f"the index minted an upload token{expires} (not used; it cannot be "
                        f"revoked, and expires by itself)", str(resolved.spec["url"]))


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    grants = [Grant(use.pipeline, f"a short-lived credential exchanged at render for the "
                                  f"job's identity ({resolved.type})") for use in ask.allowed()]
    grants += denied_grants(ask)
    if resolved.type == "pypi-publish":
        # An index lists nothing of what an upload token may upload, and a mint cannot be
        # undone (the token lives 15 minutes, the project's security log records it): reach,
        # which changes nothing on a service, mints none.
        return Reach(str(resolved.spec["url"]), "not asked: what a trusted publisher's upload "
                                                "token may upload is the publisher's projects, "
                                                "which the index does not list (`connc check` "
                                                "without --reach proves the mint)", "repository",
                     asked=False, grants=tuple(grants))
    if context.identity is None:
        return Reach("", f"not asked: {SKIPPED}", "repository", asked=False,
                     grants=tuple(grants))
    return registry.reach(_as_registry(resolved, exchange(resolved, context)), context, ask)

