"""`connc check --reach` for bitbucket: the repositories the credential can see, from Bitbucket
Cloud's REST API 2.0 ("List repositories", `role=member`).

An access token (repository, project or workspace; `x-token-auth` for git) is sent as a bearer
token, a username with an app password or API token as HTTP Basic, as Bitbucket documents.
Bitbucket Cloud's API is at api.bitbucket.org, not at the host git clones from; a url on
another host (Bitbucket Data Center) has another API, which connc does not ask (`api_for`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from connc.check.probe import Answer, Context, ProbeFailure, status_failure
from connc.check.reach import (
    MAX_BRANCH_LISTS,
    MAX_BRANCHES,
    MAX_LISTED,
    PAGE_SIZE,
    Ask,
    Item,
    Listed,
    Reach,
    Sender,
    counted,
    name,
    pages,
    prefix_comparison,
)
from connc.render.context import Resolved

TYPES = frozenset({"bitbucket"})
# The git host of Bitbucket Cloud, and where its API is.
CLOUD_APIS = {"bitbucket.org": "https://api.bitbucket.org/2.0"}
_FULL_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def api_for(url: str) -> str | None:
    """Bitbucket Cloud's API for a connection's url, or None for another host."""
    return CLOUD_APIS.get((urlsplit(url).hostname or "").lower())


def reach(resolved: Resolved, context: Context, ask: Ask, api: str) -> Reach:
    url = str(resolved.spec["url"])
    token = resolved.secret("token")
    sender = Sender(bearer=token) if token else Sender(basic=resolved.user_password())
    target = f"{api}/repositories?role=member"
    listed = pages(f"{api}/repositories", context, sender, limit=MAX_LISTED,
                   params={"role": "member", "pagelen": str(PAGE_SIZE)},
                   items_of=_values, next_of=_next, total_of=_size)
    if listed.refused is not None and listed.refused.status == 403:
        return Reach(target, "cannot be asked: Bitbucket refused to list repositories to this "
                             "credential (HTTP 403; a token or app password without the "
                             "repository read scope?)", "repositories", asked=False)
    if listed.refused is not None:
        raise ProbeFailure(status_failure(listed.refused.status), target)
    repos = sorted((r for r in listed.items if isinstance(r, dict) and name(r.get("full_name"))),
                   key=lambda r: str(r["full_name"]).lower())
    items = []
    for index, repo in enumerate(repos):
        branches = None
        if ask.branches and index < MAX_BRANCH_LISTS:
            branches = _branches(api, str(repo["full_name"]), sender, context)
        main = repo.get("mainbranch")
        items.append(Item(name(repo["full_name"]) or "?",
                          name(main.get("name")) if isinstance(main, dict) else None,
                          branches=branches))
    total = listed.total if listed.total is not None else (
        len(items) if listed.complete else None)
    grants, warnings = prefix_comparison(items, listed.complete, url, ask, noun="repository",
                                         plural="repositories", advice=_token_advice)
    reached = counted(total, "repository", "repositories") if total is not None \
        else f"at least {len(items)} repositories"
    notes = ([f"branches asked for the first {MAX_BRANCH_LISTS} repositories only"]
             if ask.branches and len(items) > MAX_BRANCH_LISTS else [])
    return Reach(target, f"the credential is a member of {reached}", "repositories",
                 items=tuple(items), total=total, complete=listed.complete,
                 grants=tuple(grants), warnings=tuple(warnings), notes=tuple(notes))


def _values(body: Any) -> list[Any] | None:
    values = body.get("values") if isinstance(body, dict) else None
    return values if isinstance(values, list) else None


def _next(answer: Answer, _url: str) -> str | None:
    """Bitbucket's pages link to the next one in the body (`next`), not in a header."""
    following = answer.body.get("next") if isinstance(answer.body, dict) else None
    return following if isinstance(following, str) and following else None


def _size(answer: Answer) -> int | None:
    size = answer.body.get("size") if isinstance(answer.body, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _branches(api: str, full_name: str, sender: Sender, context: Context) -> Listed | None:
    if not _FULL_NAME.fullmatch(full_name):
        return None  # a name the service sent that is no workspace/slug: not put in a path
    listed = pages(f"{api}/repositories/{full_name}/refs/branches", context, sender,
                   params={"pagelen": str(PAGE_SIZE)}, limit=MAX_BRANCHES,
                   items_of=_values, next_of=_next, total_of=_size)
    if listed.refused is not None:
        return None  # refused for this repository: unknown, not empty
    names = tuple(n for n in (name(b.get("name")) for b in listed.items if isinstance(b, dict))
                  if n)
    return Listed(names, listed.total, listed.complete)


def _token_advice(prefix: str, is_repository: bool) -> str:
    if is_repository:
        return f"a repository access token of {prefix} would match"
    workspace = prefix.split("/", 1)[0]
    return f"a workspace (or project) access token of {workspace} would match"
