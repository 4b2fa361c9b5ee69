"""`connc access`: which pipeline may use which connection, from the same scope decision
that `validate` enforces and `render` applies."""

from __future__ import annotations

import csv
import dataclasses
import json
from typing import TextIO

from connc.repository import ConnectionSummary, PipelineSummary
from connc.scope import EVERYONE, grant_states


@dataclasses.dataclass(frozen=True, order=True)
class Grant:
    pipeline: str
    connection: str
    allowed: bool
    used: bool


def matrix(connections: list[ConnectionSummary],
           pipelines: list[PipelineSummary]) -> list[Grant]:
    """Every (pipeline, connection) pair that is allowed or used, sorted."""
    states = grant_states(connections, pipelines)
    public = [cid for pid, cid in states if pid == EVERYONE]
    for pipeline in pipelines:
        for cid in public:
            states.setdefault((pipeline.id, cid), "may")
    return sorted(Grant(pid, cid, state != "denied", state != "may")
                  for (pid, cid), state in states.items() if pid != EVERYONE)


def _cell(grant: Grant | None) -> str:
    if grant is None:
        return "."
    if grant.used:
        return "uses" if grant.allowed else "DENIED"
    return "may"


def table(grants: list[Grant], out: TextIO) -> None:
    pipelines = sorted({g.pipeline for g in grants})
    connections = sorted({g.connection for g in grants})
    by_pair = {(g.pipeline, g.connection): g for g in grants}
    width = max([len("pipeline \\ connection"), *map(len, pipelines)])
    header = ["pipeline \\ connection".ljust(width)] + connections
    out.write("  ".join(header) + "\n")
    for pipeline in pipelines:
        cells = [_cell(by_pair.get((pipeline, c))).ljust(len(c)) for c in connections]
        out.write("  ".join([pipeline.ljust(width), *cells]).rstrip() + "\n")
    out.write("uses: used and allowed; may: allowed, not used; DENIED: used but not allowed\n")


def as_json(grants: list[Grant], out: TextIO) -> None:
    result: dict[str, dict[str, list[str]]] = {}
    for grant in grants:
        entry = result.setdefault(grant.pipeline, {"uses": [], "may": [], "denied": []})
        key = "uses" if grant.used and grant.allowed else "denied" if grant.used else "may"
        entry[key].append(grant.connection)
    json.dump({"pipelines": result}, out, indent=2)
    out.write("\n")


def as_csv(grants: list[Grant], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["pipeline", "connection", "allowed", "used"])
    for grant in grants:
        writer.writerow([grant.pipeline, grant.connection, str(grant.allowed).lower(),
                         str(grant.used).lower()])


FORMATS = {"table": table, "json": as_json, "csv": as_csv}
