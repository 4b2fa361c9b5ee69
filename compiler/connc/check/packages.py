"""`connc check` for package repositories: an index GET, or `npm whoami`; and `--reach`:
what the index says of the credential, where it says anything."""

from __future__ import annotations

from connc.check.probe import Context, ProbeFailure, Result, http_get, status_failure
from connc.check.reach import Ask, Grant, Item, Reach, denied_grants, name
from connc.render.context import Resolved

# What a Maven repository or a Python index cannot be asked about a credential.
_UNASKABLE = {
    "maven": "Maven repositories have no API that says what a credential may read or deploy "
             "(Nexus and Artifactory each have their own, which connc does not ask)",
    "pypi": "the simple index API has no way to say what a credential may read or upload",
}


def probe(resolved: Resolved, context: Context) -> Result:
    spec = resolved.spec
    url = str(spec["url"])
    if spec["format"] == "npm":
        whoami, status, account = _npm_whoami(resolved, url, context)
        if status != 200:
            return Result(False, status_failure(status), whoami)
        who = f" as {account}" if account else ""
        return Result(True, f"npm whoami: authenticated{who}", whoami)
    # pip and maven send the credential with the request; a bad one gets 401 from Nexus,
    # Artifactory, GitLab, devpi and most indexes, even where anonymous reads are allowed.
    answer = http_get(url, context, basic=resolved.user_password())
    if answer.status >= 300:
        return Result(False, status_failure(answer.status), url)
    what = "the repository" if spec["format"] == "maven" else "the index"
    return Result(True, f"{what} answered HTTP {answer.status} with the credential", url)


def _npm_whoami(resolved: Resolved, url: str, context: Context
                ) -> tuple[str, int, str | None]:
    """(the URL asked, its status, the account the registry names, if it does)."""
    whoami = url.rstrip("/") + "/-/whoami"
    token = resolved.secret("token")
    if token:
        answer = http_get(whoami, context, bearer=token, read_json=True)
    else:
        answer = http_get(whoami, context, basic=resolved.user_password(), read_json=True)
    account = answer.body.get("username") if isinstance(answer.body, dict) else None
    return whoami, answer.status, name(account)


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    """The repository the credential authenticates to, by the same request as the check, and
    the account npm names; what it may publish or deploy is said to be unknown."""
    spec = resolved.spec
    url = str(spec["url"])
    grants = tuple([Grant(use.pipeline, f"the credential for {url}")
                    for use in ask.allowed()] + denied_grants(ask))
    if spec["format"] == "npm":
        whoami, status, account = _npm_whoami(resolved, url, context)
        if status != 200:
            raise ProbeFailure(status_failure(status), whoami)
        return Reach(whoami, f"the registry knows the credential as "
                             f"{account or 'an account it does not name'}; which packages it "
                             f"may publish is not asked", "account",
                     items=(Item(account),) if account else (), grants=grants)
    checked = probe(resolved, context)
    if not checked.ok:
        raise ProbeFailure(checked.message, checked.target)
    return Reach(url, f"the repository accepts the credential; what it opens there cannot be "
                      f"asked: {_UNASKABLE[str(spec['format'])]}", "repository", asked=False,
                 grants=grants)
