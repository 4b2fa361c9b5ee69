"""The files a render reads, read the way render (and `connc check`) reads them.

Each file goes through the one reader (`documents.read`), then the keyless checks validate
would report (encryption against `.sops.yaml`, expiry), then the JSON Schema generated from
its model, with defaults filled in. Any error refuses the file with validate's own words:
render never uses what validate would reject. No pydantic here (render's start-up path).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connc import documents, encryption, gitattributes, repository
from connc.errors import RenderError
from connc.findings import Finding, Severity, dotted
from connc.schema import check as schema_check

# The schema of each kind render reads.
_SCHEMAS = {"Connection": "connection", "Pipeline": "pipeline", "Members": "members",
            "Config": "config"}


def read(root: Path, relpath: str, kind: str,
         only: Callable[[Any], Any] | None = None,
         extra: Callable[[documents.Document, str], list[Finding]] | None = None
         ) -> dict[str, Any]:
    """One file, checked against its generated schema; refused with validate's wording.

    `only` narrows the document to the part this render uses before the schema check;
    `extra` adds keyless checks of the document.
    """
    document, found = documents.read(root, relpath, kind)
    if document is not None and extra is not None:
        found += extra(document, relpath)
    _refuse(found, relpath)
    if document is None:  # pragma: no cover - a None document always comes with an error
        raise RenderError(f"{relpath} cannot be read")
    try:
        data = only(document.data) if only is not None else document.data
        checked: dict[str, Any] = schema_check.check(data, schema_check.load(_SCHEMAS[kind]))
    except schema_check.Problem as problem:
        line, column = document.position(problem.path)
        raise RenderError(f"{relpath}:{line}:{column}: `{dotted(problem.path)}` "
                          f"{problem.message} (run `connc validate`)") from None
    return checked


def refuse_checkout(root: Path, relpaths: Iterable[str]) -> None:
    """Refuse a checkout that may not hold the bytes review read, before anything is
    decrypted: a name that is another connc file's on a case-insensitive file system
    (CONNC016, anywhere: one listing), or a `.gitattributes` line that makes git rewrite one of
    `relpaths`, the files this command reads, on checkout or export (CONNC017). A tarball has
    no `.git`, but what its `.gitattributes` say has happened to it."""
    _refuse(repository.names_in_doubt(root) + gitattributes.findings(root, relpaths),
            "the checkout")


def _refuse(found: list[Finding], what: str) -> None:
    errors = [f for f in found if f.severity is Severity.ERROR]
    if errors:
        details = "; ".join(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}"
                            for f in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise RenderError(f"{what} is not valid (run `connc validate`): {details}{more}")


def read_connection(root: Path, connection_id: str,
                    checks: Callable[[documents.Document, str], list[Finding]] | None = None
                    ) -> dict[str, Any]:
    return read(root, repository.connection_path(connection_id), "Connection", extra=checks)


@dataclasses.dataclass(frozen=True)
class Policy:
    """What connc.yaml says about rendering (spec section 6)."""

    expiry_warning_days: int = 30
    require_seals: bool = False


def policy(root: Path) -> Policy:
    if not repository.present(root / repository.CONFIG_FILE):
        return Policy()
    config = read(root, repository.CONFIG_FILE, "Config")
    return Policy(int(config["expiryWarningDays"]), bool(config["requireSeals"]))


def connection_checks(root: Path,
                      settings: Policy) -> Callable[[documents.Document, str], list[Finding]]:
    """Encryption against .sops.yaml and expiry, as validate checks them."""
    # A broken .sops.yaml is validate's to report; render only needs the rules.
    rules, _found = encryption.load_rules(root, report=False)
    rule_set = tuple(rules) if rules is not None else None
    today = dt.datetime.now(dt.UTC).date()
    warning_days = settings.expiry_warning_days

    def checks(document: documents.Document, relpath: str) -> list[Finding]:
        found = encryption.check(document, relpath, rule_set)
        meta = document.data.get("metadata") if isinstance(document.data, dict) else None
        if isinstance(meta, dict):
            expired = documents.expiry_finding(
                meta.get("expiresAt"), repository.stem(relpath, repository.CONNECTION_SUFFIX),
                document, relpath, today, warning_days)
            if expired:
                found.append(expired)
        return found

    return checks

