"""`connc diff` output: Markdown for a pull-request comment, or JSON for tools."""

from __future__ import annotations

import json
import re
from typing import TextIO

from connc.diff.compare import ADMINS, NOBODY, SECTIONS, Change, Diff
from connc.diff.revisions import Revision
from connc.findings import printable
from connc.secrets import redact_data

_NOTES = {
    "grants": "`uses`: allowed and used; `may`: allowed, not used; `denied`: used but not "
              "allowed (render refuses it). Pipeline `*`: every pipeline (a public connection).",
    "recipients": "Who can decrypt each connection, from its sops metadata.",
    "claims": "A pipeline's defaults are the first of its uses render takes one from "
              "(kubectl's context, npm's registry, pip's index-url, twine's default "
              "repository): where its tools fetch and publish.",
    "specs": "Where the credential goes, and what it trusts.",
    "credentials": "A credential block is known by its data key and ciphertexts: one seen at "
                   "the base under another connection was moved or copied here, and that "
                   "connection's owner consents; one older than the base's (sops' "
                   "`lastmodified`) was put back; one with none of the base's ciphertexts "
                   "and a data key of its own was written anew (anyone can encrypt and seal "
                   "a block), and its owner consents; an expired one kept in use needs its "
                   "owner.",
    "integrity": "connc reads none of these as they are; at the head they fail the check "
                 "whatever the consent: replace a symlink with a file, make each id match its "
                 "file name, keep one name per file however its case is written, and remove "
                 "or unset a .gitattributes line that rewrites connc files (`connc validate` "
                 "names the fix).",
    "unread": "`connc validate` refuses these files (it says why), and so does render. What "
              "could still be read of one is compared above; what could not counts as absent "
              "on that side. At the head, a file render would read needs an admin: review "
              "could not judge it.",
}
_RESEAL = ("*reseal needed*: the credential is sealed, and render refuses a change its seal "
           "does not allow until a key holder approves it with `connc seal` — unless the seal "
           "already allows it: a narrowing never resealed leaves the seal wider than the file "
           "(diff reads no seal; `connc validate --decrypt` names such seals, CONNC610).")

_COLLAPSE_ROWS = 30  # a longer table goes in a <details> block, to keep the comment short


def _code(value: str) -> str:
    """A Markdown code span that survives any value, inside a table cell."""
    if not value:
        return "—"
    text = printable(value).replace("|", "\\|")  # GFM unescapes \| inside a table's spans
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def approver(principal: str) -> str:
    """A principal as a reviewer reads it."""
    if principal == ADMINS:
        return "an admin"
    if principal == NOBODY:
        return "nobody (fix the file)"
    return principal.partition(":")[2] or principal


def _side(revision: Revision) -> str:
    if revision.commit is None:
        return "the working tree"
    return f"{_code(revision.name or '')} ({revision.commit[:12]})"


def as_markdown(result: Diff, out: TextIO) -> None:
    out.write(f"## connc diff: {_side(result.base)} → {_side(result.head)}\n\n")
    widening = sum(change.widens for change in result.changes)
    total = f"{len(result.changes)} change{'s' if len(result.changes) != 1 else ''}"
    if widening:
        verb = "widens" if widening == 1 else "widen"
        out.write(f"**⚠️ Access widened**: {widening} of {total} {verb} access "
                  f"(marked ⚠️).\n")
        _consent(result.changes, out)
    elif result.changes:
        out.write(f"**No access widened**: {total}, none widens access.\n")
    else:
        out.write("**No access widened**: nothing that affects access changed.\n")
    for section, title in SECTIONS.items():
        rows = [change for change in result.changes if change.section == section]
        if rows:
            out.write(f"\n### {title}\n\n")
            if section in _NOTES:
                out.write(f"{_NOTES[section]}\n\n")
            if any(row.reseal for row in rows):
                out.write(f"{_RESEAL}\n\n")
            _table(rows, out)


def _consent(changes: list[Change], out: TextIO) -> None:
    """Who must consent, grouped by person: readable however many rows there are."""
    needed: dict[str, dict[str, int]] = {}
    for change in changes:
        for principal in change.approvers:
            sections = needed.setdefault(principal, {})
            sections[change.section] = sections.get(change.section, 0) + 1
    out.write("\n### Consent needed\n\n| who | changes |\n|---|---|\n")
    for principal, sections in sorted(needed.items(), key=lambda item: (
            item[0] in (ADMINS, NOBODY), item[0])):
        counts = ", ".join(f"{SECTIONS[section].lower()} ({count})"
                           for section, count in sections.items())
        out.write(f"| {_code(approver(principal))} | {sum(sections.values())}: {counts} |\n")


def _table(rows: list[Change], out: TextIO) -> None:
    columns = list(rows[0].values)
    lines = ["| | change | " + " | ".join(columns) + " | consent |",
             "|---|---|" + "---|" * len(columns) + "---|"]
    for row in rows:
        cells = [_code(row.values[column]) for column in columns]
        consent = _code(", ".join(approver(p) for p in row.approvers)) if row.approvers else ""
        if row.reseal:
            consent += ", *reseal needed*"
        lines.append(f"| {'⚠️' if row.widens else ''} | {row.change} | " + " | ".join(cells)
                     + f" | {consent} |")
    table = "\n".join(lines) + "\n"
    if len(rows) > _COLLAPSE_ROWS:
        table = f"<details><summary>{len(rows)} rows</summary>\n\n{table}\n</details>\n"
    out.write(table)


def as_json(result: Diff, out: TextIO) -> None:
    def revision(rev: Revision) -> dict[str, str | None]:
        return {"revision": rev.name, "commit": rev.commit}

    changes: dict[str, list[dict[str, object]]] = {key: [] for key in SECTIONS}
    for change in result.changes:
        changes[change.section].append({"change": change.change, "widens": change.widens,
                                        **{k: v or None for k, v in change.values.items()},
                                        "approvers": list(change.approvers),
                                        "reseal": change.reseal})
    # Serialised whole, then written once: `json.dump` writes each token on its own.
    out.write(json.dumps(redact_data({"base": revision(result.base),
                                      "head": revision(result.head),
                                      "widened": result.widened, "changes": changes}),
                         indent=2, ensure_ascii=False) + "\n")


FORMATS = {"markdown": as_markdown, "json": as_json}
