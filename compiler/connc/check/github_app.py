"""`connc check` for github-app connections: mint a least-privilege token, revoke it; and
`--reach`: the installation's repositories (and branches) next to each pipeline's narrowing."""

from __future__ import annotations

from collections.abc import Mapping

from connc.check.probe import Context, Result
from connc.check.reach import (
    MAX_BRANCH_LISTS,
    MAX_BRANCHES,
    MAX_LISTED,
    Ask,
    Grant,
    Item,
    Listed,
    Reach,
    Use,
    counted,
    denied_grants,
)
from connc.errors import ConncError
from connc.github import apps
from connc.render.context import Resolved
from connc.secrets import Secret

_LEVELS = {"read": 1, "write": 2, "admin": 3}
_EVERY_APP_HAS = {"metadata": "read"}  # GitHub grants it to every App
# --reach's budget is the whole run's (60 s by default): a revocation after it waits less.
_REVOKE_SECONDS = 10.0


def probe(resolved: Resolved, context: Context) -> Result:
    """Mint an installation token (metadata: read only, the least any App holds), revoke it."""
    spec = resolved.spec
    installation = int(spec["installationId"])
    token = _app(resolved, context).mint_installation_token(installation, None, _EVERY_APP_HAS)
    target = f"{str(spec['apiUrl']).rstrip('/')}/app/installations/{installation}"
    revoked = "revoked it" if _revoke(resolved, token.token, context.timeout) else \
        "could not revoke it (it expires within the hour)"  # the check itself succeeded
    return Result(True, f"minted an installation token (metadata: read) and {revoked}", target)


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    """The installation (JWT), then its repositories with a token minted for that alone
    (metadata: read, and contents: read for --branches when the installation has it),
    revoked as soon as the listing ends, whatever the listing did."""
    spec = resolved.spec
    installation_id = int(spec["installationId"])
    target = f"{str(spec['apiUrl']).rstrip('/')}/app/installations/{installation_id}"
    app = _app(resolved, context)
    installation = app.installation(installation_id)
    can_branches = _LEVELS.get(installation.permissions.get("contents", ""), 0) >= 1
    asked = {**_EVERY_APP_HAS, **({"contents": "read"} if ask.branches and can_branches else {})}
    token = app.mint_installation_token(installation_id, None, asked)
    context.sent.add(token.token.reveal())
    failure: ConncError | None = None
    try:
        reader = apps.InstallationReader(spec["apiUrl"], token.token, connection=resolved.id,
                                         timeout=context.timeout)
        listing = reader.repositories(MAX_LISTED)
        items = _items(reader, listing, ask.branches and can_branches)
    except ConncError as error:
        failure = error
    finally:
        revoked = "was revoked" if _revoke(resolved, token.token,
                                           min(context.timeout, _REVOKE_SECONDS)) else \
            "could not be revoked (it expires within the hour)"
    if failure is not None:
        raise ConncError(f"{failure.message}; the token minted to ask {revoked}")
    notes = []
    if ask.branches and not can_branches:
        notes.append("branches not asked: the installation has no `contents` permission, "
                     "which listing branches needs")
    elif ask.branches and len(items) > MAX_BRANCH_LISTS:
        notes.append(f"branches asked for the first {MAX_BRANCH_LISTS} repositories only")
    total = listing.total if listing.total is not None else (
        len(items) if listing.complete else None)
    grants, warnings = _compare(installation_id, installation, items, total, listing.complete,
                                ask)
    whose = f" of {installation.account}" if installation.account else ""
    selection = {"all": "all repositories", "selected": "selected repositories"}.get(
        installation.repository_selection or "", "repository selection unknown")
    reached = counted(total, "repository", "repositories") if total is not None \
        else f"at least {len(items)} repositories"
    summary = (f"installation {installation_id}{whose} ({selection}) reaches {reached}; "
               f"the token minted to list them ({_levels(asked)}) {revoked}")
    return Reach(target, summary, "repositories", items=tuple(items), total=total,
                 complete=listing.complete, grants=tuple(grants), warnings=tuple(warnings),
                 notes=tuple(notes))


def _app(resolved: Resolved, context: Context) -> apps.GitHubApp:
    key = Secret(resolved.required("privateKey")[0])
    return apps.app_for(resolved.spec, key, connection=resolved.id, timeout=context.timeout,
                        max_attempts=2, max_wait=context.timeout)


def _revoke(resolved: Resolved, token: Secret, timeout: float) -> bool:
    """Revoke a token this probe minted: two attempts of `timeout` each, made even after the
    deadline (`http.detached`)."""
    try:
        apps.revoke_installation_token(resolved.spec["apiUrl"], token, connection=resolved.id,
                                       timeout=timeout, max_attempts=2)
    except ConncError:
        return False
    return True


def _items(reader: apps.InstallationReader, listing: apps.Listing,
           branches: bool) -> list[Item]:
    items = []
    for index, repo in enumerate(sorted(listing.items, key=lambda r: r.full_name.lower())):
        listed = None
        if branches and index < MAX_BRANCH_LISTS:
            found = reader.branches(repo.full_name, MAX_BRANCHES)
            listed = Listed(tuple(found.items), found.total, found.complete) if found else None
        items.append(Item(repo.full_name, repo.default_branch, branches=listed))
    return items


def _compare(installation_id: int, installation: apps.Installation, items: list[Item],
             total: int | None, complete: bool, ask: Ask) -> tuple[list[Grant], list[str]]:
    """What each pipeline's narrowing gives it, and where the installation reaches beyond
    every narrowing: repositories no pipeline names, permissions no pipeline asks for."""
    reached = {item.name.rsplit("/", 1)[-1].lower() for item in items}
    uses = ask.allowed()
    how_many = f"all {total}" if total is not None else "all"
    grants, warnings = [], []
    for use in uses:
        grants.append(Grant(use.pipeline, _gets(use, reached, complete, how_many,
                                                installation.permissions)))
        unreached = [r for r in use.repositories or () if r.lower() not in reached]
        if unreached and complete:
            warnings.append(f"pipeline `{use.pipeline}` names {', '.join(unreached)}, which "
                            f"installation {installation_id} does not reach: its render "
                            f"fails (HTTP 422)")
        if use.repositories is None:
            warnings.append(f"pipeline `{use.pipeline}` sets no `repositories`: its token "
                            f"opens {how_many} repositories of the installation; list the "
                            f"ones it needs in its `uses` entry")
    grants += denied_grants(ask)
    if uses and all(use.repositories is not None for use in uses):
        named = sorted({r for use in uses for r in use.repositories or ()
                        if r.lower() in reached}, key=str.lower)
        count = total if total is not None else len(items)
        if count > len(named):
            where = f" ({installation.settings_url})" if installation.settings_url else ""
            at_least = "" if total is not None else "at least "
            warnings.append(
                f"installation {installation_id} reaches {at_least}{count} repositories, its "
                f"pipelines name {len(named)} ({', '.join(named) or 'none'}): on GitHub, set "
                f"its repository access to \"Only select repositories\" and choose those"
                f"{where}")
    if uses and all(use.permissions is not None for use in uses):
        unused = _unused_permissions(installation.permissions, [u.permissions or {} for u in uses])
        if unused:
            warnings.append(f"installation {installation_id} holds permissions no pipeline asks "
                            f"for ({_levels(unused)}): remove them from the App's permissions "
                            f"on GitHub, or lower them to what the pipelines ask")
    return grants, warnings


def _gets(use: Use, reached: set[str], complete: bool, how_many: str,
          granted: Mapping[str, str]) -> str:
    if use.repositories is None:
        repos = f"{how_many} repositories of the installation (no `repositories`)"
    else:
        shown = [r if r.lower() in reached else
                 (f"{r} (not reached)" if complete else f"{r} (not among those listed)")
                 for r in use.repositories]
        repos = "repositories " + ", ".join(shown)
    if use.permissions is None:
        permissions = f"every permission of the installation ({_levels(granted) or 'none'})"
    else:
        above = [name for name, level in use.permissions.items()
                 if _LEVELS.get(level, 0) > _LEVELS.get(granted.get(name, ""), 0)]
        permissions = _levels(use.permissions) + (
            f" ({', '.join(above)} beyond the installation's grant: its render fails)"
            if above else "")
    key = "; and the App key itself, which opens the whole installation (refresh: true)" \
        if use.refresh else ""
    return f"{repos}; {permissions}{key}"


def _unused_permissions(granted: Mapping[str, str],
                        asked: list[Mapping[str, str]]) -> dict[str, str]:
    """The installation's permissions above what any pipeline asks (metadata: read aside)."""
    unused = {}
    for name, level in granted.items():
        highest = max((_LEVELS.get(each.get(name, ""), 0) for each in asked), default=0)
        if _LEVELS.get(level, 0) > max(highest, _LEVELS.get(_EVERY_APP_HAS.get(name, ""), 0)):
            unused[name] = level
    return unused


def _levels(permissions: Mapping[str, str]) -> str:
    return ", ".join(f"{name}: {level}" for name, level in sorted(permissions.items()))
