"""Reading one repository file: bytes to a parsed document, or findings. No pydantic here:
`connc render` uses this module on its start-up path.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from connc import repository
from connc.findings import Finding, finding
from connc.yamldoc import MAX_FILE_BYTES, Document, YamlProblem, decode, parse

API_VERSION = "connc/v1"
ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def read_document(root: Path, relpath: str) -> tuple[Document | None, list[Finding]]:
    """Read and parse one file; problems become findings, never exceptions."""
    path = root / relpath
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [finding(relpath, 1, 1, "CONNC006",
                                  f"{size} bytes; connc reads files up to {MAX_FILE_BYTES} bytes")]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [finding(relpath, 1, 1, "CONNC003", f"cannot read the file: {exc.strerror}")]
    found: list[Finding] = []
    try:
        text, had_bom = decode(raw)
        if had_bom:
            found.append(finding(relpath, 1, 1, "CONNC013",
                                 "the file starts with a UTF-8 byte-order mark; save it without one"))
        document = parse(text)
    except YamlProblem as problem:
        return None, found + [finding(relpath, problem.line, problem.column, problem.code,
                                      problem.message)]
    for key, line, column in document.duplicate_keys:
        found.append(finding(relpath, line, column, "CONNC002",
                             f"key `{key}` appears twice in one mapping; the first would be lost"))
    return document, found


def read_checked(root: Path, relpath: str) -> tuple[Document | None, list[Finding]]:
    """`read_document`, refusing first a symlink out of the repository or a non-file."""
    problem = repository.inside(root, relpath)
    if problem:
        return None, [problem]
    return read_document(root, relpath)


def check_kind(document: Document, relpath: str, expected: str) -> Finding | None:
    data = document.data
    if not isinstance(data, dict):
        return finding(relpath, *document.position(()), "CONNC102",
                       f"the document must be a mapping with `kind: {expected}`")
    if data.get("apiVersion") != API_VERSION:
        line, column = document.position(("apiVersion",))
        return finding(relpath, line, column, "CONNC104",
                       f"`apiVersion` must be `{API_VERSION}`")
    if data.get("kind") != expected:
        line, column = document.position(("kind",))
        return finding(relpath, line, column, "CONNC104",
                       f"`kind` must be `{expected}` for a file in this place")
    return None


def stem(relpath: str, suffix: str) -> str:
    name = relpath.rsplit("/", 1)[-1]
    return name.removesuffix(suffix)


def id_matches_stem(document: Document, relpath: str, suffix: str) -> Finding | None:
    metadata = document.data.get("metadata")
    doc_id = metadata.get("id") if isinstance(metadata, dict) else None
    expected = stem(relpath, suffix)
    if isinstance(doc_id, str) and doc_id != expected:
        line, column = document.position(("metadata", "id"))
        # Quote the id only when it is one: an invalid id is reported by the model check, and
        # any text could be pasted there (a token, by mistake).
        shown = f"`{doc_id}`" if re.fullmatch(ID_PATTERN, doc_id) else "not a valid id"
        return finding(relpath, line, column, "CONNC105",
                       f"`metadata.id` is {shown} but the file is named `{expected}{suffix}`; "
                       f"rename one so they match")
    return None


def expiry_finding(expires: dt.date | dt.datetime | str | None, connection_id: str,
                   document: Document, relpath: str, today: dt.date,
                   warning_days: int) -> Finding | None:
    """CONNC501 when `metadata.expiresAt` has passed, CONNC502 within the warning window."""
    if expires is None:
        return None
    if isinstance(expires, str):  # as written; sops rewrites dates as 2027-03-01T00:00:00Z
        try:
            expires = dt.datetime.fromisoformat(expires)
        except ValueError:
            return None  # the model check reports it
    day = expires.date() if isinstance(expires, dt.datetime) else expires
    line, column = document.position(("metadata", "expiresAt"))
    if day <= today:
        return finding(relpath, line, column, "CONNC501",
                       f"the credential expired on {day.isoformat()}; rotate it with "
                       f"`connc secret set {connection_id} FIELD` and update expiresAt")
    days_left = (day - today).days
    if days_left <= warning_days:
        return finding(relpath, line, column, "CONNC502",
                       f"the credential expires on {day.isoformat()}, in {days_left} days; "
                       f"rotate it before then")
    return None
