"""Summaries of connections and pipelines as validate makes them, built directly, and what
`scope.decide` says of every pair of them: the oracle the grant index is held to."""

from __future__ import annotations

from connc.repository import ConnectionSummary, PipelineSummary, UseSummary
from connc.scope import EVERYONE, connection_scope, decide, grant_states, pipeline_scope

_KEYS = frozenset({b"k1", b"k2", b"k3"})  # of `blocks`, the wrapped data keys


def connection(cid: str, owner: str, visibility: str, members: list[str], *,
               blocks: frozenset[bytes] = frozenset()) -> ConnectionSummary:
    """`blocks`: fingerprints of its credential block, k1-k3 wrapped keys, others ciphertexts."""
    return ConnectionSummary(
        relpath=f"connections.d/{cid}.sops.yaml", id=cid, id_pos=(1, 1), owner=owner,
        owner_pos=(1, 1), visibility=visibility,
        members=tuple((m, (1, 1)) for m in members), type="git", spec=(), sealed=True,
        recipients=frozenset(), sops_pos=(1, 1), wrapped_keys=blocks & _KEYS,
        ciphertexts=blocks - _KEYS, credential_pos=(1, 1))


def pipeline(pid: str, owner: str, teams: list[str], uses: list[str]) -> PipelineSummary:
    return PipelineSummary(
        relpath=f"pipelines.d/{pid}.yaml", id=pid, id_pos=(1, 1), owner=owner,
        owner_pos=(1, 1), teams=tuple((t, (1, 1)) for t in teams),
        uses=tuple(UseSummary(c, (1, 1), (), None, None, False) for c in dict.fromkeys(uses)),
        recipients=frozenset())


def decided(connections: list[ConnectionSummary],
            pipelines: list[PipelineSummary]) -> dict[tuple[str, str], str]:
    """(pipeline, connection) -> state, by `decide` on every pair: of one id twice, the
    connection read last; of two pipelines under one id, a use is the last one's that uses
    it, else "may" when either may use it. A public connection is EVERYONE's "may" and a use
    of it is "uses"."""
    latest = {c.id: c for c in connections}
    expected: dict[tuple[str, str], str] = {}
    for p in pipelines:
        for c in latest.values():
            allowed = decide(pipeline_scope(p), connection_scope(c)) is None
            if c.id in {use.connection for use in p.uses}:
                expected[(p.id, c.id)] = "uses" if allowed else "denied"
            elif allowed and c.visibility != "public":
                expected.setdefault((p.id, c.id), "may")
    expected.update({(EVERYONE, c.id): "may" for c in latest.values()
                     if c.visibility == "public"})
    return expected


def granted(connections: list[ConnectionSummary],
            pipelines: list[PipelineSummary]) -> dict[tuple[str, str], str]:
    """`grant_states`, pair by pair."""
    return {(pid, cid): state for pid, row in grant_states(connections, pipelines).items()
            for cid, state in row.items()}
