"""Scope of use: may pipeline P use connection C? (README.md, The trust model)

One function decides, and explains a refusal in the same words for `validate` and `render`;
`grant_states` applies it to a whole repository for `access` and `diff`, and
`narrower_or_equal` orders two scopes by it, for `diff` and the seals. `default_role` says
what else a pipeline's `uses` decide: which connection its tools take by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
    return grant_table(connections, pipelines).states


@dataclasses.dataclass(frozen=True)
class GrantTable:
    """One side's grants (`states`) and what each row was built from, so that the other side
    of a diff builds only the rows whose inputs differ (`grant_table`'s `previous`)."""

    states: Grants
    connections: dict[str, ConnectionSummary]  # by id, the one each grant was decided on
    pipelines: dict[str, PipelineSummary | None]  # by id; None: an id used twice
    groups: dict[tuple[str, str], dict[str, str]]  # ("owner", name) / ("member", ref) -> "may"


def grant_table(connections: list[ConnectionSummary], pipelines: list[PipelineSummary],
                previous: GrantTable | None = None) -> GrantTable:
    """`grant_states`, with what it was built from. `previous`: the other side's table; a
    pipeline whose summary, used connections and "may" groups are the very objects or
    contents it had there keeps its row — the same object, which `connc diff` then compares
    by identity (tests/diff/test_access.py holds this to building every row afresh)."""
    summaries = {c.id: c for c in connections}
    latest = {cid: connection_scope(c) for cid, c in summaries.items()}
    states: Grants = {}
    public = {cid: "may" for cid, c in latest.items() if c.visibility == "public"}
    if public:
        states[EVERYONE] = public
    by_owner: dict[str, list[str]] = {}  # owner -> their non-public connections
    by_member: dict[str, list[str]] = {}  # member ref -> the custom connections listing it
    for cid, connection in latest.items():
        if connection.visibility == "public":
            continue  # admitted for every pipeline by EVERYONE's grant
        by_owner.setdefault(connection.owner, []).append(cid)
        if connection.visibility == "custom":
            for member in connection.members:
                by_member.setdefault(member, []).append(cid)
    # Each group's "may" row built once and copied per pipeline: a million grants are made
    # by dict copies and updates, not one call each.
    groups = {("owner", owner): dict.fromkeys(cids, "may") for owner, cids in by_owner.items()}
    groups.update({("member", ref): dict.fromkeys(cids, "may")
                   for ref, cids in by_member.items()})
    by_id: dict[str, PipelineSummary | None] = {}
    for pipeline in pipelines:
        by_id[pipeline.id] = None if pipeline.id in by_id else pipeline
    changed = set() if previous is None else {
        key for key in groups.keys() | previous.groups.keys()
        if groups.get(key) != previous.groups.get(key)}
    for pipeline in pipelines:
        scope = pipeline_scope(pipeline)
        keys = [("owner", pipeline.owner), *(("member", ref) for ref in member_refs(scope))]
        if previous is not None and by_id[pipeline.id] is pipeline \
                and previous.pipelines.get(pipeline.id) is pipeline \
                and not changed.intersection(keys) \
                and all(summaries.get(use.connection) is previous.connections.get(use.connection)
                        for use in pipeline.uses):
            kept = previous.states.get(pipeline.id)
            if kept is not None:
                states[pipeline.id] = kept
            continue
        row: dict[str, str] = {}
        for key in keys:
            row.update(groups.get(key, ()))
        for use in pipeline.uses:  # last: a use is "uses" or "denied", never only "may"
            used = latest.get(use.connection)
            if used is not None:
                allowed = decide(scope, used) is None
                row[use.connection] = "uses" if allowed else "denied"
        earlier = states.get(pipeline.id)
        if earlier is None:
            if row:
                states[pipeline.id] = row
        else:  # one id twice (never read as such: validate refuses it): a use overrides "may"
            for cid, state in row.items():
                if state == "may":
                    earlier.setdefault(cid, state)
                else:
                    earlier[cid] = state
    return GrantTable(states, summaries, by_id, groups)
