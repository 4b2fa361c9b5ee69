"""Scope of use: may pipeline P use connection C? (README.md, The trust model)

One function decides, and explains a refusal in the same words for `validate` and `render`;
`grant_states` applies it to a whole repository for `access` and `diff`, and
`narrower_or_equal` orders two scopes by it, for `diff` and the seals. `default_role` says
what else a pipeline's `uses` decide: which connection its tools take by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from connc.repository import ConnectionSummary, PipelineSummary


@dataclasses.dataclass(frozen=True)
class PipelineScope:
    id: str
    owner: str
    teams: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ConnectionScope:
    id: str
    owner: str
    visibility: str  # private | public | custom
    members: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Denial:
    code: str  # CONNC301 (private) or CONNC302 (custom)
    message: str


def member_refs(pipeline: PipelineScope) -> list[str]:
    """The `scope.members` entries that would admit the pipeline to a custom connection."""
    return [f"user:{pipeline.owner}", f"pipeline:{pipeline.id}",
            *(f"team:{team}" for team in pipeline.teams)]


def matching_member(pipeline: PipelineScope, connection: ConnectionScope) -> str | None:
    """The member entry of a custom connection that admits the pipeline, if any."""
    return next((m for m in member_refs(pipeline) if m in connection.members), None)


def decide(pipeline: PipelineScope, connection: ConnectionScope) -> Denial | None:
    """None when the pipeline may use the connection, else why not."""
    if connection.visibility == "public" or pipeline.owner == connection.owner:
        return None
    if connection.visibility == "private":
        return Denial(
            "CONNC301",
            f"pipeline `{pipeline.id}` (owner {pipeline.owner}) may not use connection "
            f"`{connection.id}`: it is private to its owner {connection.owner}",
        )
    if matching_member(pipeline, connection) is not None:
        return None
    teams = ", ".join(f"team:{t}" for t in pipeline.teams) or "no teams"
    return Denial(
        "CONNC302",
        f"pipeline `{pipeline.id}` may not use connection `{connection.id}`: its scope is custom "
        f"and lists none of user:{pipeline.owner}, pipeline:{pipeline.id}, {teams}; "
        f"add one to `scope.members` of the connection",
    )


def narrower_or_equal(before: ConnectionScope, after: ConnectionScope) -> bool:
    """True when every pipeline `after` admits, `before` admitted too (by `decide`).

    The one definition of "narrower": a change of scope that keeps to it needs no consent
    (`connc diff` does not mark it) and no reseal (`seal.changes`). A new owner is never
    narrower: the owner may always use their connection, and the seal binds the owner.
    """
    if after.owner != before.owner:
        return False
    if before.visibility == "public" or after.visibility == "private":
        return True
    if after.visibility == "public":
        return False
    # `after` is custom: it admits the owner's pipelines and those of its members.
    admitted = set(before.members) if before.visibility == "custom" else set()
    return set(after.members) <= admitted


def pipeline_scope(pipeline: PipelineSummary) -> PipelineScope:
    return PipelineScope(pipeline.id, pipeline.owner, tuple(t for t, _pos in pipeline.teams))


def connection_scope(connection: ConnectionSummary) -> ConnectionScope:
    return ConnectionScope(connection.id, connection.owner, connection.visibility,
                           tuple(m for m, _pos in connection.members))


def default_role(connection_type: str, spec: Mapping[str, Any]) -> str | None:
    """What a connection becomes for a pipeline's tools when it is the first of its kind in
    the pipeline's `uses`, or None when it takes no default: render writes kubectl's current
    context, npm's `registry=` (a registry that serves no `npmScopes`) and pip's index-url
    from the first such use, so a pipeline's owner chooses them by order, and names a
    pypi-publish connection's pypirc section `pypi` (twine's default) for `repositoryName:
    pypi` (`connc diff` shows another default; tests/render/test_redteam_defaults.py holds
    the writers to this, but for pypi-publish, which renders only with an ID token)."""
    if connection_type == "kubernetes":
        return "kubectl's context"
    if connection_type == "packages" and spec.get("format") == "npm" \
            and not spec.get("npmScopes"):
        return "npm's registry"
    if connection_type == "packages" and spec.get("format") == "pypi":
        return "pip's index-url"
    if connection_type == "pypi-publish" and spec.get("repositoryName") == "pypi":
        return "twine's default repository"  # the pypirc section `twine upload` takes
    return None


EVERYONE = "*"  # the pipeline of a public connection's one "may" grant: every pipeline


Grants = dict[str, dict[str, str]]  # pipeline -> connection -> "uses", "may" or "denied"


def grant_states(connections: list[ConnectionSummary],
                 pipelines: list[PipelineSummary]) -> Grants:
    """pipeline -> connection -> "uses", "may" or "denied", from `scope.decide`; by pipeline,
    so that two sides compare a pipeline's grants at once (`connc diff`: most are equal).

    Without a pipelines x connections loop (20 million decisions in a repository of 10,000
    connections): a use is decided by `decide`; what a pipeline may use besides is read from
    an index of what `decide` admits — the connections of the pipeline's owner and the custom
    ones that list one of its member refs (tests/diff/test_access.py holds the two to the
    same answers). A public connection's "may" is one grant to EVERYONE, not one per
    pipeline, so that a connection made public is one row, not thousands.
    """
    table = GrantTable(connections, pipelines)
    return {pid: row for pid in table.pipeline_ids() if (row := table.row(pid))}


class GrantTable:
    """One side's grants, a pipeline's row built when it is asked for (`row`), from an index
    of what `decide` admits (`grant_states`). `connc diff` asks only for the rows whose inputs
    differ between its sides (`changed_rows`): of 2,000 pipelines, the few a change touches."""

    def __init__(self, connections: list[ConnectionSummary],
                 pipelines: list[PipelineSummary]) -> None:
        self.connections = {c.id: c for c in connections}  # the last of an id, as decided
        self._scopes = {cid: connection_scope(c) for cid, c in self.connections.items()}
        self.public = {cid: "may" for cid, c in self._scopes.items() if c.visibility == "public"}
        by_owner: dict[str, list[str]] = {}  # owner -> their non-public connections
        by_member: dict[str, list[str]] = {}  # member ref -> the custom connections listing it
        for cid, connection in self._scopes.items():
            if connection.visibility == "public":
                continue  # admitted for every pipeline by EVERYONE's grant
            by_owner.setdefault(connection.owner, []).append(cid)
            if connection.visibility == "custom":
                for member in connection.members:
                    by_member.setdefault(member, []).append(cid)
        # Each group's "may" row built once and copied into a pipeline's: a million grants
        # are made by dict copies and updates, not one call each.
        self.groups = {("owner", owner): dict.fromkeys(cids, "may")
                       for owner, cids in by_owner.items()}
        self.groups.update({("member", ref): dict.fromkeys(cids, "may")
                            for ref, cids in by_member.items()})
        self._pipelines: dict[str, list[PipelineSummary]] = {}  # by id, in order
        for pipeline in pipelines:
            self._pipelines.setdefault(pipeline.id, []).append(pipeline)
        self._rows: dict[str, dict[str, str]] = {}

    def pipeline_ids(self) -> list[str]:
        """EVERYONE (public connections' one grant) and each pipeline's id."""
        return [EVERYONE, *self._pipelines]

    def only(self, pid: str) -> PipelineSummary | None:
        """The pipeline of this id, when there is exactly one."""
        found = self._pipelines.get(pid, ())
        return found[0] if len(found) == 1 else None

    def row(self, pid: str) -> dict[str, str]:
        """connection -> state for the pipeline `pid` (EVERYONE: the public connections)."""
        if pid == EVERYONE:
            return self.public
        row = self._rows.get(pid)
        if row is None:
            row = self._rows[pid] = {}
            for pipeline in self._pipelines.get(pid, ()):
                for cid, state in self._row_of(pipeline).items():
                    # One id twice (never read as such: validate refuses it): a use
                    # overrides "may".
                    if state == "may":
                        row.setdefault(cid, state)
                    else:
                        row[cid] = state
        return row

    def _row_of(self, pipeline: PipelineSummary) -> dict[str, str]:
        scope = pipeline_scope(pipeline)
        row: dict[str, str] = {}
        for key in _group_keys(pipeline, scope):
            row.update(self.groups.get(key, ()))
        for use in pipeline.uses:  # last: a use is "uses" or "denied", never only "may"
            used = self._scopes.get(use.connection)
            if used is not None:
                row[use.connection] = "uses" if decide(scope, used) is None else "denied"
        return row


def _group_keys(pipeline: PipelineSummary, scope: PipelineScope) -> list[tuple[str, str]]:
    """The "may" groups a pipeline's row is made of: its owner's, and each member ref's."""
    return [("owner", pipeline.owner), *(("member", ref) for ref in member_refs(scope))]


def changed_rows(base: GrantTable,
                 head: GrantTable) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """(pipeline id, its row at BASE, its row at HEAD) of each pipeline whose row may differ;
    a row whose inputs are the very same on both sides (the pipeline's summary, the
    summaries of what it uses, its "may" groups) is left out, neither side built
    (tests/diff/test_access.py holds this to comparing every row)."""
    changed_groups = {key for key in base.groups.keys() | head.groups.keys()
                      if base.groups.get(key) != head.groups.get(key)}
    for pid in dict.fromkeys([*base.pipeline_ids(), *head.pipeline_ids()]):
        pipeline = head.only(pid)
        if pid != EVERYONE and pipeline is not None and base.only(pid) is pipeline \
                and changed_groups.isdisjoint(_group_keys(pipeline, pipeline_scope(pipeline))) \
                and all(head.connections.get(use.connection)
                        is base.connections.get(use.connection) for use in pipeline.uses):
            continue
        yield pid, base.row(pid), head.row(pid)
