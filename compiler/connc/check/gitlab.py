"""`connc check --reach` for gitlab and gitlab-self-hosted: the projects the token is a member
of, with its role in each (GitLab's REST API v4, "List all projects").

The token goes to the API of the url's own host (`https://HOST/api/v4`) as a bearer token,
which GitLab takes for personal, group and project access tokens alike. Only GETs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from connc.check.probe import Context, ProbeFailure, status_failure
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
    header_int,
    name,
    pages,
    prefix_comparison,
)
from connc.render.context import Resolved

TYPES = frozenset({"gitlab", "gitlab-self-hosted"})
# GitLab's roles (access levels), as its API documents them.
ROLES = {5: "Minimal Access", 10: "Guest", 15: "Planner", 20: "Reporter", 30: "Developer",
         40: "Maintainer", 50: "Owner"}


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    url = str(resolved.spec["url"])
    parts = urlsplit(url)
    api = f"{parts.scheme}://{parts.netloc}/api/v4"
    target = f"{api}/projects?membership=true"
    sender = Sender(bearer=resolved.required("token")[0])
    listed = pages(f"{api}/projects", context, sender, limit=MAX_LISTED,
                   params={"membership": "true", "min_access_level": "10",
                           "per_page": str(PAGE_SIZE)},
                   items_of=lambda body: body if isinstance(body, list) else None,
                   total_of=lambda answer: header_int(answer, "X-Total"))
    if listed.refused is not None:
        return _refused(listed.refused.status, listed.refused.body, target)
    projects = sorted((p for p in listed.items if isinstance(p, dict)
                       and name(p.get("path_with_namespace"))),
                      key=lambda p: str(p["path_with_namespace"]).lower())
    items = []
    for index, project in enumerate(projects):
        branches = None
        if ask.branches and index < MAX_BRANCH_LISTS and isinstance(project.get("id"), int):
            branches = _branches(api, project["id"], sender, context)
        items.append(Item(name(project["path_with_namespace"]) or "?",
                          name(project.get("default_branch")), _role(project), branches))
    total = listed.total if listed.total is not None else (
        len(items) if listed.complete else None)
    grants, warnings = prefix_comparison(items, listed.complete, url, ask, noun="project",
                                         plural="projects", advice=_token_advice)
    reached = counted(total, "project") if total is not None \
        else f"at least {len(items)} projects (GitLab stops counting above 10,000)"
    unknown = sum(item.access is None for item in items)
    notes = [f"role unknown for {counted(unknown, 'project')}: GitLab's list leaves it out "
             f"where access comes through a shared group"] if unknown else []
    if ask.branches and len(items) > MAX_BRANCH_LISTS:
        notes.append(f"branches asked for the first {MAX_BRANCH_LISTS} projects only")
    return Reach(target, f"the token is a member of {reached}; public projects are readable "
                         f"beyond these, as by anyone", "projects", items=tuple(items),
                 total=total, complete=listed.complete, grants=tuple(grants),
                 warnings=tuple(warnings), notes=tuple(notes))


def _role(project: dict[str, Any]) -> str | None:
    """The token's role: the higher of its project and group access, as GitLab grants."""
    permissions = project.get("permissions")
    levels = [access.get("access_level") for access in
              (permissions.get("project_access"), permissions.get("group_access"))
              if isinstance(access, dict)] if isinstance(permissions, dict) else []
    known = [level for level in levels if isinstance(level, int)]
    return ROLES.get(max(known), f"access level {max(known)}") if known else None


def _branches(api: str, project_id: int, sender: Sender, context: Context) -> Listed | None:
    listed = pages(f"{api}/projects/{project_id}/repository/branches", context, sender,
                   params={"per_page": str(PAGE_SIZE)}, limit=MAX_BRANCHES,
                   items_of=lambda body: body if isinstance(body, list) else None,
                   total_of=lambda answer: header_int(answer, "X-Total"))
    if listed.refused is not None:
        return None  # a project whose repository the token may not read: unknown, not empty
    names = tuple(n for n in (name(b.get("name")) for b in listed.items if isinstance(b, dict))
                  if n)
    return Listed(names, listed.total, listed.complete)


def _refused(status: int, body: Any, target: str) -> Reach:
    scope = isinstance(body, dict) and body.get("error") == "insufficient_scope"
    if status == 403 and scope:
        return Reach(target, "cannot be asked: the token has no API scope (read_api or api); "
                             "GitLab answered HTTP 403. It may still clone: `connc check` "
                             "says whether it does", "projects", asked=False)
    raise ProbeFailure(status_failure(status) + (
        f"; is there a GitLab API v4 at {urlsplit(target).netloc}?" if status == 404 else ""),
        target)


def _token_advice(prefix: str, is_repository: bool) -> str:
    if is_repository:
        return f"a project access token of {prefix} would match"
    return f"a group access token of {prefix} would match"
