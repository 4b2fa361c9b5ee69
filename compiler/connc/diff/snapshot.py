"""One side of `connc diff`: a repository read the way `validate` reads it, keyed by id.

A file that cannot be read (a parse or model error) grants nothing on that side, as `render`
refuses it, so it counts as absent there and is listed under "Not read". Treating it as absent
is what keeps the verdict fail-closed: the change that repairs such a file shows its grants as
added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from connc import repository
from connc.repository import ConnectionSummary, PipelineSummary
from connc.schema import models
from connc.scope import grant_states
from connc.sopsmeta import recipient_of_member_key
from connc.validate.files import check_single
from connc.validate.run import validate

M = TypeVar("M", bound=models.Model)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One side of the diff: what `validate` could read, keyed by id."""

    connections: dict[str, ConnectionSummary]
    pipelines: dict[str, PipelineSummary]
    grants: dict[tuple[str, str], str]  # (pipeline, connection) -> state
    teams: dict[str, frozenset[str]]
    principals: dict[str, str]  # recipient -> who it belongs to, for display
    unread: dict[str, str]  # relpath -> why it was not read
    files: int


def snapshot(root: Path, skipped: dict[str, str]) -> Snapshot:
    report = validate(root)
    listing = repository.list_files(root)
    read = {c.relpath for c in report.connections} | {p.relpath for p in report.pipelines}
    unread = dict(skipped)
    unread.update((p, "has errors") for p in listing.connections + listing.pipelines
                  if p not in read)
    members = _parsed(root, repository.MEMBERS_FILE, "Members", models.Members, unread)
    config = _parsed(root, repository.CONFIG_FILE, "Config", models.Config, unread)
    teams = {name: frozenset(team.members)
             for name, team in (members.teams.items() if members else ())}
    return Snapshot(
        connections={c.id: c for c in report.connections},
        pipelines={p.id: p for p in report.pipelines},
        grants=grant_states(report.connections, report.pipelines), teams=teams,
        principals=_principals(members, config, report.pipelines),
        unread=unread, files=report.files,
    )


def _parsed(root: Path, relpath: str, kind: str, model: type[M],
            unread: dict[str, str]) -> M | None:
    if not repository.present(root / relpath):
        return None
    parsed, _document, _found = check_single(root, relpath, kind, model)
    if isinstance(parsed, model):
        return parsed
    unread.setdefault(relpath, "has errors")
    return None


def _principals(members: models.Members | None, config: models.Config | None,
                pipelines: list[PipelineSummary]) -> dict[str, str]:
    owners: dict[str, list[str]] = {}

    def add(keys: Iterable[str], principal: str) -> None:
        for key in keys:
            owners.setdefault(recipient_of_member_key(key), []).append(principal)

    if members:
        for name, user in members.users.items():
            add(user.recipients, f"user:{name}")
        for name, team in members.teams.items():
            add(team.recipients, f"team:{name}")
    if config:
        add(config.admin_recipients, "admin")
    for pipeline in pipelines:  # summaries hold recipients in recipient_id form already
        for recipient in pipeline.recipients:
            owners.setdefault(recipient, []).append(f"pipeline:{pipeline.id}")
    return {recipient: ", ".join(names) for recipient, names in owners.items()}
