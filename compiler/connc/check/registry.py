"""`connc check` for container registries: what `docker login` does; and `--reach`: the
registry's catalog (`GET /v2/_catalog`), which many registries refuse to list."""

from __future__ import annotations

import re

from connc.check.probe import Context, ProbeFailure, Result, http_get, status_failure
from connc.check.reach import (
    MAX_LISTED,
    PAGE_SIZE,
    Ask,
    Grant,
    Item,
    Reach,
    Sender,
    counted,
    denied_grants,
    name,
    pages,
)
from connc.render.context import Resolved
from connc.urls import registry_api, shown_host


def probe(resolved: Resolved, context: Context) -> Result:
    """What `docker login` does: GET /v2/, answer its challenge, expect 200."""
    url = registry_api(str(resolved.spec["registry"])) + "/v2/"
    username, password = resolved.user_password()
    first = http_get(url, context)
    if first.status == 200:
        again = http_get(url, context, basic=(username, password))
        if again.status != 200:
            return Result(False, status_failure(again.status), url)
        return Result(True, "the registry allows anonymous access and did not refuse the "
                            "credential (that is all it can prove)", url)
    if first.status != 401:
        return Result(False, status_failure(first.status), url)
    scheme, challenge = _challenge(first.headers.get("WWW-Authenticate", ""))
    if scheme == "basic":
        answer = http_get(url, context, basic=(username, password))
        if answer.status != 200:
            return Result(False, status_failure(answer.status), url)
        return Result(True, "credential accepted (HTTP Basic)", url)
    if scheme == "bearer" and challenge.get("realm"):
        return _registry_token(url, challenge, (username, password), context)
    return Result(False, "the registry answered 401 without a challenge connc understands", url)


# A parameter starts where a word starts: without the look-behind, a header of a million word
# characters and no `="` would be tried from each of them, in time quadratic in its length.
_PARAMETER = re.compile(r'(?<!\w)(\w+)="([^"]*)"')


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAMETER.findall(rest))


def _registry_token(url: str, challenge: dict[str, str], basic: tuple[str, str],
                    context: Context) -> Result:
    """The token flow of Docker Hub and registries with a token service."""
    realm_host = shown_host(challenge["realm"])
    token = _token(challenge, basic, context, url)
    answer = http_get(url, context, bearer=token)
    if answer.status != 200:
        return Result(False, f"the registry refused the token from {realm_host}: "
                             f"{status_failure(answer.status)}", url)
    return Result(True, f"credential accepted (a token from {realm_host}, accepted by the "
                        f"registry)", url)


def _token(challenge: dict[str, str], basic: tuple[str, str], context: Context,
           url: str) -> str:
    """A bearer token from the challenge's realm, for the scope it names (none for /v2/,
    `registry:catalog:*` for the catalog); ProbeFailure when the realm refuses."""
    realm = challenge["realm"]
    params = {key: challenge[key] for key in ("service", "scope") if challenge.get(key)}
    params["account"] = basic[0]
    issued = http_get(realm, context, basic=basic, params=params, read_json=True)
    realm_host = shown_host(realm)
    if issued.status != 200:
        raise ProbeFailure(f"the token service {realm_host}: {status_failure(issued.status)}",
                           url)
    body = issued.body if isinstance(issued.body, dict) else {}
    token = body.get("token") or body.get("access_token")  # distribution's spec allows either
    if not isinstance(token, str) or not token:
        raise ProbeFailure(f"the token service {realm_host} answered without a token", url)
    context.sent.add(token)
    return token


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    """The catalog, with the credential as the registry asks for it (Basic, or a token for
    `registry:catalog:*`), followed page by page (`Link`, at the registry's origin only). A
    registry that will not list it is said to, and nothing is guessed in its place."""
    base = registry_api(str(resolved.spec["registry"]))
    url = base + "/v2/_catalog"
    basic = resolved.user_password()
    first = http_get(url, context, params={"n": str(PAGE_SIZE)})  # anonymous: the challenge
    sender = Sender(basic=basic)
    if first.status == 401:
        scheme, challenge = _challenge(first.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer" and challenge.get("realm"):
            sender = Sender(bearer=_token(challenge, basic, context, url))
        elif scheme != "basic":
            raise ProbeFailure("the registry answered 401 without a challenge connc "
                               "understands", url)
    elif first.status not in (200, 403, 404):
        raise ProbeFailure(status_failure(first.status), url)
    listed = pages(url, context, sender, params={"n": str(PAGE_SIZE)}, limit=MAX_LISTED,
                   items_of=_repositories)
    grants = [Grant(use.pipeline, "every repository the credential may pull or push: connc "
                                  "has no narrowing for registries") for use in ask.allowed()]
    grants += denied_grants(ask)
    if listed.refused is not None:
        if listed.refused.status == 401 and sender.basic is not None and \
                http_get(base + "/v2/", context, basic=basic).status == 401:
            raise ProbeFailure("auth refused (HTTP 401)", url)  # the credential, not the catalog
        if listed.refused.status not in (401, 403, 404):
            raise ProbeFailure(status_failure(listed.refused.status), url)
        return Reach(url, f"catalog not permitted (HTTP {listed.refused.status}): the registry "
                          f"does not list its repositories to this credential, so which it "
                          f"opens is unknown", "catalog", asked=False, grants=tuple(grants))
    names = sorted((n for n in (name(r) for r in listed.items) if n), key=str.lower)
    total = len(names) if listed.complete else None
    reached = counted(len(names), "repository", "repositories") if listed.complete \
        else f"at least {len(names)} repositories (the catalog goes on)"
    return Reach(url, f"the catalog lists {reached} (registries differ: some list every "
                      f"repository, some only those the credential may pull)", "catalog",
                 items=tuple(Item(n) for n in names), total=total, complete=listed.complete,
                 grants=tuple(grants))


def _repositories(body: object) -> list[object] | None:
    repositories = body.get("repositories") if isinstance(body, dict) else None
    return repositories if isinstance(repositories, list) else None
