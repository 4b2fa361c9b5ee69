"""`connc keys`: per connection, who holds a key and who needs one — keyless.

Each recipient of the file with whose key it is (admin, user:, team:, pipeline:) and whether
the safety invariant allows it; the pipelines that use the connection but hold no key that
decrypts it, or declare none; the principals its scope names that have no key at all; and
what `connc keys sync` would add and remove.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any, TextIO

from connc.keys.current import Current
from connc.repository import ConnectionSummary
from connc.secrets import redact, redact_data
from connc.sops.recipients import shown_recipient


@dataclasses.dataclass(frozen=True)
class Holder:
    recipient: str
    holders: list[str]  # who declares it; empty when nobody does
    in_scope: bool  # the safety invariant allows it on this file


@dataclasses.dataclass(frozen=True)
class Need:
    principal: str  # pipeline:ID, user:NAME, team:NAME
    reason: str


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    file: str
    owner: str
    visibility: str
    holds: list[Holder]
    needs: list[Need]
    sync_adds: list[str]
    sync_removes: list[str]

    @property
    def outside(self) -> list[str]:
        return [h.recipient for h in self.holds if not h.in_scope]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "owner": self.owner,
                "visibility": self.visibility,
                "holds": [{"recipient": h.recipient, "holders": h.holders,
                           "inScope": h.in_scope} for h in self.holds],
                "needs": [{"principal": n.principal, "reason": n.reason} for n in self.needs],
                "outsideScope": self.outside,
                "sync": {"add": self.sync_adds, "remove": self.sync_removes}}


def row(current: Current, connection: ConnectionSummary) -> Row:
    keyring = current.keyring
    holds = [Holder(r, keyring.holders(r), keyring.allows(connection, r))
             for r in sorted(connection.recipients)]
    needs = []
    for pipeline_id, runner in keyring.undecryptable(connection):
        keys = ", ".join(shown_recipient(k) for k in sorted(runner.keys))
        needs.append(Need(f"pipeline:{pipeline_id}",
                          f"uses it, but its runner keys ({keys}, from {runner.source}) are not "
                          f"recipients: its render will fail; `connc keys sync {connection.id}`"))
    for pipeline_id in keyring.keyless_users(connection):
        needs.append(Need(f"pipeline:{pipeline_id}",
                          "uses it and declares no runner key: give it one in its "
                          "metadata.recipients (or its team's recipients in members.yaml), then "
                          f"`connc keys sync {connection.id}`"))
    if connection.visibility != "public":
        needs += [Need(member, "is in its scope and has no key (members.yaml)")
                  for member, keys in keyring.named(connection) if not keys]
    needed = keyring.needed(connection)
    return Row(connection.id, connection.relpath, connection.owner, connection.visibility,
               holds, needs, sorted(needed - connection.recipients),
               sorted(connection.recipients - needed))


def rows(current: Current, connection_id: str | None = None,
         pipeline_id: str | None = None) -> list[Row]:
    if connection_id is not None:
        chosen = [current.connections[connection_id]]
    elif pipeline_id is not None:
        used = {use.connection for use in current.keyring.pipelines[pipeline_id].uses}
        chosen = [c for cid, c in sorted(current.connections.items()) if cid in used]
    else:
        chosen = [current.connections[cid] for cid in sorted(current.connections)]
    return [row(current, connection) for connection in chosen]


def table(found: list[Row], out: TextIO) -> None:
    # Principals' names and recipients are whatever the files say: redacted, as all connc shows.
    text = io.StringIO()
    _table(found, text)
    out.write(redact(text.getvalue()))


def _table(found: list[Row], out: TextIO) -> None:
    for index, entry in enumerate(found):
        if index:
            out.write("\n")
        out.write(f"{entry.id}  ({entry.visibility}, owner {entry.owner})  {entry.file}\n")
        label = "holds a key"
        for holder in entry.holds:
            who = ", ".join(holder.holders) or "declared by no principal"
            flag = "" if holder.in_scope else "  <- outside its scope"
            out.write(f"  {label:<12}  {shown_recipient(holder.recipient)}  {who}{flag}\n")
            label = ""
        label = "needs a key"
        for need in entry.needs:
            out.write(f"  {label:<12}  {need.principal} {need.reason}\n")
            label = ""
        if entry.sync_adds or entry.sync_removes:
            changes = [f"+{shown_recipient(r)}" for r in entry.sync_adds]
            changes += [f"-{shown_recipient(r)}" for r in entry.sync_removes]
            out.write(f"  {'keys sync':<12}  would {' '.join(changes)}\n")


def as_json(found: list[Row], out: TextIO) -> None:
    json.dump(redact_data({"connections": [entry.as_dict() for entry in found]}), out, indent=2)
    out.write("\n")


FORMATS = {"table": table, "json": as_json}
