"""`connc check` for package repositories: an index GET, or `npm whoami`."""

from __future__ import annotations

from connc.check.probe import Context, Result, http_get, status_failure
from connc.findings import printable
from connc.render.context import Resolved

TYPES = frozenset({"packages"})


def probe(resolved: Resolved, context: Context) -> Result:
    spec = resolved.spec
    url = str(spec["url"])
    if spec["format"] == "npm":
        return _npm_whoami(resolved, url, context)
    # pip and maven send the credential with the request; a bad one gets 401 from Nexus,
    # Artifactory, GitLab, devpi and most indexes, even where anonymous reads are allowed.
    answer = http_get(url, context, basic=resolved.user_password())
    if answer.status >= 300:
        return Result(False, status_failure(answer.status), url)
    what = "the repository" if spec["format"] == "maven" else "the index"
    return Result(True, f"{what} answered HTTP {answer.status} with the credential", url)


def _npm_whoami(resolved: Resolved, url: str, context: Context) -> Result:
    whoami = url.rstrip("/") + "/-/whoami"
    token = resolved.secret("token")
    if token:
        answer = http_get(whoami, context, bearer=token, read_json=True)
    else:
        answer = http_get(whoami, context, basic=resolved.user_password(), read_json=True)
    if answer.status != 200:
        return Result(False, status_failure(answer.status), whoami)
    name = answer.body.get("username") if isinstance(answer.body, dict) else None
    who = f" as {printable(name, 80)}" if isinstance(name, str) and name else ""
    return Result(True, f"npm whoami: authenticated{who}", whoami)
