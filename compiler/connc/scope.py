"""Scope of use: may pipeline P use connection C? (spec section 2)

One function decides, and explains a refusal in the same words for `validate` and `render`.
"""

from __future__ import annotations

import dataclasses


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
