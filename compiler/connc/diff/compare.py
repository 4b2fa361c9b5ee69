"""`connc diff BASE [HEAD]`: what a change does to access (spec section 5).

Each side is read the way `validate` reads a repository (`snapshot`) and the two are
compared: grants (the same scope decision as `connc access`), connection scopes and owners,
sops recipients, team membership, pipeline owners and teams. Each change is a row; a row
that widens access is marked, and one such row makes the verdict "widened" (exit 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TypeVar

from connc.diff.revisions import Revision
from connc.diff.snapshot import Snapshot
from connc.sopsmeta import shown_recipient

_VISIBILITY_RANK = {"private": 0, "custom": 1, "public": 2}
# A grant's state for one (pipeline, connection): "" none, "denied" listed in `uses` but not
# allowed (render refuses it, so it grants nothing), "may" allowed, "uses" allowed and used.
_GRANT_RANK = {"": 0, "denied": 0, "may": 1, "uses": 2}

T = TypeVar("T")

# Markdown and JSON sections, in the order a reviewer reads them.
SECTIONS = {
    "grants": "Grants",
    "scopes": "Connection scopes and owners",
    "recipients": "Recipients",
    "teams": "Team members",
    "claims": "Pipeline owners and teams",
    "connections": "Connections",
    "pipelines": "Pipelines",
    "unread": "Not read",
}
@dataclasses.dataclass(frozen=True)
class Change:
    section: str  # a key of SECTIONS
    change: str  # added, removed, changed, visibility widened, member added, ...
    values: dict[str, str]  # the table's columns, the same keys for every row of a section
    widens: bool = False


@dataclasses.dataclass(frozen=True)
class Diff:
    base: Revision
    head: Revision
    changes: list[Change]

    @property
    def widened(self) -> bool:
        return any(change.widens for change in self.changes)


def compare(base: Snapshot, head: Snapshot) -> list[Change]:
    changes = [*_grants(base, head), *_scopes(base, head), *_recipients(base, head),
               *_teams(base, head), *_claims(base, head), *_files(base, head),
               *_unread(base, head)]
    # Within a section, what widens access first.
    order = list(SECTIONS)
    return sorted(changes, key=lambda c: (order.index(c.section), not c.widens))


def _state(side: Snapshot, pipeline: str, connection: str) -> str:
    """A grant's state, counting the "may" of a public connection's grant to EVERYONE."""
    state = side.grants.get((pipeline, connection), "")
    target = side.connections.get(connection)
    if (not state and pipeline in side.pipelines and target is not None
            and target.visibility == "public"):
        return "may"
    return state


def _grants(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for pair in sorted(base.grants.keys() | head.grants.keys()):
        before, after = _state(base, *pair), _state(head, *pair)
        if before == after:
            continue
        change = "added" if not before else "removed" if not after else "changed"
        yield Change("grants", change, {"pipeline": pair[0], "connection": pair[1],
                                        "before": before, "after": after},
                     widens=_GRANT_RANK[after] > _GRANT_RANK[before])


def _common(before: dict[str, T], after: dict[str, T]) -> Iterable[tuple[str, T, T]]:
    for key in sorted(before.keys() & after.keys()):
        yield key, before[key], after[key]


def _scopes(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for cid, old, new in _common(base.connections, head.connections):
        row = {"connection": cid}
        if old.owner != new.owner:
            # The owner may always use its connection: a new owner is a principal added.
            yield Change("scopes", "owner changed", row | {"before": old.owner,
                                                           "after": new.owner}, widens=True)
        if old.visibility != new.visibility:
            wider = _VISIBILITY_RANK[new.visibility] > _VISIBILITY_RANK[old.visibility]
            yield Change("scopes", f"visibility {'widened' if wider else 'narrowed'}",
                         row | {"before": old.visibility, "after": new.visibility},
                         widens=wider)
        old_members = {m for m, _pos in old.members}
        new_members = {m for m, _pos in new.members}
        for member in sorted(new_members - old_members):
            # Members only count when the scope is custom (validate warns otherwise).
            yield Change("scopes", "member added", row | {"before": "", "after": member},
                         widens=new.visibility == "custom")
        for member in sorted(old_members - new_members):
            yield Change("scopes", "member removed", row | {"before": member, "after": ""})


def _recipients(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for cid, old, new in _common(base.connections, head.connections):
        for side, recipients, change in ((head, new.recipients - old.recipients, "added"),
                                         (base, old.recipients - new.recipients, "removed")):
            for recipient in sorted(recipients):
                yield Change("recipients", change,
                             {"connection": cid, "recipient": shown_recipient(recipient),
                              "principal": side.principals.get(recipient, "")},
                             widens=change == "added")


def _teams(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for team in sorted(base.teams.keys() | head.teams.keys()):
        old, new = base.teams.get(team, frozenset()), head.teams.get(team, frozenset())
        # render lets a pipeline claim a team its owner is in: a member added widens.
        for user in sorted(new - old):
            yield Change("teams", "member added", {"team": team, "user": user}, widens=True)
        for user in sorted(old - new):
            yield Change("teams", "member removed", {"team": team, "user": user})


def _claims(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for pid, old, new in _common(base.pipelines, head.pipelines):
        row = {"pipeline": pid}
        if old.owner != new.owner:
            yield Change("claims", "owner changed", row | {"before": old.owner,
                                                           "after": new.owner}, widens=True)
        old_teams, new_teams = {t for t, _pos in old.teams}, {t for t, _pos in new.teams}
        for team in sorted(new_teams - old_teams):
            yield Change("claims", "team added", row | {"before": "", "after": team},
                         widens=True)
        for team in sorted(old_teams - new_teams):
            yield Change("claims", "team removed", row | {"before": team, "after": ""})


def _files(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for change, source, other in (("added", head, base), ("removed", base, head)):
        for cid in sorted(source.connections.keys() - other.connections.keys()):
            connection = source.connections[cid]
            # A new credential is access that did not exist; its grants are listed too.
            yield Change("connections", change,
                         {"connection": cid, "type": connection.type,
                          "owner": connection.owner, "visibility": connection.visibility},
                         widens=change == "added")
        for pid in sorted(source.pipelines.keys() - other.pipelines.keys()):
            pipeline = source.pipelines[pid]
            # A new pipeline's access is in its grants; the pipeline itself grants nothing.
            yield Change("pipelines", change,
                         {"pipeline": pid, "owner": pipeline.owner,
                          "teams": ", ".join(t for t, _pos in pipeline.teams)})


def _unread(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for side, snapshot in (("base", base), ("head", head)):
        for relpath, why in sorted(snapshot.unread.items()):
            yield Change("unread", why, {"file": relpath, "at": side})
