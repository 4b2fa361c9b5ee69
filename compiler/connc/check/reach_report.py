"""How `connc check --reach` prints its rows: text for people, JSON for tools.

The first line of a connection is `connc check`'s line (status, id, type, the URL asked, what
was found or why it failed); below it, indented: what the credential reaches, what each
pipeline gets, then notes (what was not asked, or is unknown) and warnings.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TextIO

from connc.check.reach import Item, Reach
from connc.check.run import FAILED, NOT_CHECKED, OK, Outcome

_INDENT = " " * 4
_LABEL = 9  # "reaches", "used by", "note", "warning"
_NAME_WIDTH = 40  # names are padded to a column up to this width
TEXT_ITEMS = 30  # items shown per connection in text; JSON has every one listed
_WITH_BRANCH = frozenset({"repositories", "projects"})


@dataclasses.dataclass(frozen=True)
class Row:
    """One connection: the check's outcome, and its reach when it could be asked."""

    outcome: Outcome
    reach: Reach | None = None

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.outcome),
                "reach": self.reach.as_json() if self.reach else None}


def counts(rows: list[Row]) -> dict[str, int]:
    tally = {status: sum(row.outcome.status == status for row in rows)
             for status in (OK, FAILED, NOT_CHECKED)}
    tally["warnings"] = sum(len(row.reach.warnings) for row in rows if row.reach)
    return tally


def as_json(rows: list[Row], out: TextIO) -> None:
    json.dump({"connections": [row.as_json() for row in rows], "summary": counts(rows)}, out,
              indent=2, ensure_ascii=False)
    out.write("\n")


def as_text(rows: list[Row], out: TextIO) -> None:
    id_width = max((len(row.outcome.id) for row in rows), default=0)
    type_width = max((len(row.outcome.type or "?") for row in rows), default=0)
    for row in rows:
        o = row.outcome
        where = f"{o.target}: " if o.target else ""
        print(f"{o.status:<11}  {o.id:<{id_width}}  {o.type or '?':<{type_width}}  "
              f"{where}{o.message}", file=out)
        if row.reach is not None:
            for line in _details(row.reach):
                print(f"{_INDENT}{line}", file=out)


def _details(reach: Reach) -> list[str]:
    shown = reach.items[:TEXT_ITEMS]
    width = min(max((len(item.name) for item in shown), default=0), _NAME_WIDTH)
    rest = _rest(reach, len(shown))
    lines = _block("reaches", [_item(item, reach.kind, width) for item in shown]
                   + ([rest] if rest else []))
    width = max((len(grant.pipeline) for grant in reach.grants), default=0)
    lines += _block("used by", [f"{g.pipeline:<{width}}  {g.gets}" for g in reach.grants]
                    or ["no pipeline"])
    for label, texts in (("note", reach.notes), ("warning", reach.warnings)):
        lines += [f"{label:<{_LABEL}}  {text}" for text in texts]
    return lines


def _rest(reach: Reach, shown: int) -> str:
    """What the text leaves off: items JSON lists, and items the listing did not reach."""
    hidden = len(reach.items) - shown
    json_note = "" if not hidden else " (--format json lists them)" \
        if reach.total == len(reach.items) else f" (--format json lists {hidden} of them)"
    if reach.total is not None and reach.total > shown:
        return f"and {reach.total - shown} more{json_note}"
    if reach.complete:
        return f"and {hidden} more (--format json lists them)" if hidden else ""
    if hidden:
        return f"and {hidden} more (--format json lists them), and more beyond (not counted)"
    return reach.listed().rest()


def _block(label: str, texts: list[str]) -> list[str]:
    return [f"{label if n == 0 else '':<{_LABEL}}  {text}" for n, text in enumerate(texts)]


def _item(item: Item, kind: str, width: int) -> str:
    facts = []
    if kind in _WITH_BRANCH:
        facts.append(f"default branch {item.default_branch or 'unknown'}")
    if kind == "projects":
        facts.append(item.access or "role unknown")
    if item.wildcard:
        facts.append("WILDCARD")
    if item.branches is not None:
        rest = item.branches.rest()
        facts.append("branches " + (", ".join(item.branches.names) or "none")
                     + (f" {rest}" if rest else ""))
    return "  ".join([f"{item.name:<{width}}", *facts]).rstrip()
