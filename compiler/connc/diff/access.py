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
    public: bool = False  # every pipeline may use the connection


def matrix(connections: list[ConnectionSummary],
           pipelines: list[PipelineSummary]) -> list[Grant]:
    """Every (pipeline, connection) pair that is allowed or used, sorted."""
    states = grant_states(connections, pipelines)
    public = list(states.pop(EVERYONE, {}))
    for pipeline in pipelines:
        row = states.setdefault(pipeline.id, {})
        for cid in public:
            row.setdefault(cid, "may")
    return sorted(Grant(pid, cid, state != "denied", state != "may", cid in public)
                  for pid, row in states.items() for cid, state in row.items())


def table(grants: list[Grant], out: TextIO, width: int | None = None) -> None:
    """One row per pipeline: what it uses, what else it may use, what it is denied. The
    public connections every pipeline may use are listed once, below, not in every row."""
    import shutil
    import textwrap

    width = width or shutil.get_terminal_size((100, 24)).columns
    public = {g.connection for g in grants if g.public}
    rows: dict[str, dict[str, list[str]]] = {}
    for grant in grants:
        row = rows.setdefault(grant.pipeline, {"uses": [], "may use": [], "denied": []})
        if grant.used:
            row["uses" if grant.allowed else "denied"].append(grant.connection)
        elif grant.connection not in public:
            row["may use"].append(grant.connection)
    name_width = max([len("pipeline"), *map(len, rows)])
    indent = " " * (name_width + 2)
    out.write(f"{'pipeline'.ljust(name_width)}  connections\n")
    for pipeline, row in sorted(rows.items()):
        parts = [f"{kind}: {', '.join(ids)}" for kind, ids in row.items() if ids]
        text = "; ".join(parts) or "(none)"
        lines = textwrap.wrap(text, max(20, width - len(indent)), break_on_hyphens=False)
        out.write(f"{pipeline.ljust(name_width)}  {lines[0]}\n")
        out.writelines(f"{indent}{line}\n" for line in lines[1:])
    if public:
        out.write(textwrap.fill(f"public, every pipeline may use: {', '.join(sorted(public))}",
                                width, break_on_hyphens=False) + "\n")
    out.write(textwrap.fill("denied: listed in `uses` but not allowed (render refuses it). "
                            "--format csv or json for the whole matrix.", width) + "\n")


def select(grants: list[Grant], pipeline: str | None, connection: str | None) -> list[Grant]:
    """`--pipeline` / `--connection`: the grants of one pipeline, or to one connection."""
    return [g for g in grants if (pipeline is None or g.pipeline == pipeline)
            and (connection is None or g.connection == connection)]


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
