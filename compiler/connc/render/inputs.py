"""The files a render reads (and `connc check`, `seal` and `secret set`), judged by the one
acceptance predicate (`acceptance.judge`) with the generated JSON Schemas as its model step.

A file with any error validate would report on it is refused, with validate's own words:
render never uses what validate would reject. That holds for every file it reads, whole:
`.sops.yaml` (the rules each connection is checked against), `connc.yaml`, all of
`members.yaml` (not only the owner's entry), the pipeline, each connection it uses. No
pydantic here (render's start-up path).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connc import acceptance, encryption, gitattributes, repository
from connc.errors import RenderError
from connc.findings import Finding, Severity

# What writing a credential fixes or leaves for review, so `secret set` and `seal` accept it
# where render refuses: an expired credential is rotated with `secret set`, a plaintext value
# is replaced by it (CONNC402), and a scaffold of `connc new` gets its secrets before its
# placeholders in `spec` are filled (its seal then needs renewing, which render enforces).
WRITING_FIXES = frozenset({"CONNC402", "CONNC501", "CONNC111"})


def read(root: Path, relpath: str, kind: str, context: acceptance.Context | None = None, *,
         allow: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One file, as the model reads it (defaults filled in); refused on any error but the
    codes in `allow` (only the authoring commands pass any: `WRITING_FIXES`)."""
    judged = acceptance.judge(root, relpath, kind, context, acceptance.schema_model)
    refuse([f for f in judged.findings if f.code not in allow], relpath)
    if judged.data is None:  # pragma: no cover - the predicate refuses with an error
        raise RenderError(f"{relpath} cannot be read")
    return judged.data


def refuse_checkout(root: Path, relpaths: Iterable[str]) -> None:
    """Refuse a checkout that may not hold the bytes review read, before anything is
    decrypted: a name that is another connc file's on a case-insensitive file system
    (CONNC016, anywhere: one listing), or a `.gitattributes` line that makes git rewrite one of
    `relpaths`, the files this command reads, on checkout or export (CONNC017). A tarball has
    no `.git`, but what its `.gitattributes` say has happened to it."""
    refuse(repository.names_in_doubt(root) + gitattributes.findings(root, relpaths),
            "the checkout")


def refuse(found: list[Finding], what: str) -> None:
    errors = [f for f in found if f.severity is Severity.ERROR]
    if errors:
        details = "; ".join(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}"
                            for f in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise RenderError(f"{what} is not valid (run `connc validate`): {details}{more}")


@dataclasses.dataclass(frozen=True)
class Policy:
    """What connc.yaml and .sops.yaml say about using a credential."""

    require_seals: bool
    context: acceptance.Context  # what a connection is judged against: its rules, today


def policy(root: Path) -> Policy:
    """connc.yaml and .sops.yaml, each refused on any error (validate's findings on them)."""
    config = read(root, repository.CONFIG_FILE, "Config") \
        if repository.present(root / repository.CONFIG_FILE) else None
    rules, found = encryption.load_rules(root)
    refuse(found, repository.SOPS_CONFIG)
    assert rules is not None  # no rules always comes with an error
    context = acceptance.Context(
        root=str(root), rules=tuple(rules), today=dt.datetime.now(dt.UTC).date(),
        warning_days=int(config["expiryWarningDays"]) if config else 30)
    return Policy(bool(config and config["requireSeals"]), context)


def read_connection(root: Path, connection_id: str, settings: Policy, *,
                    allow: frozenset[str] = frozenset()) -> dict[str, Any]:
    return read(root, repository.connection_path(connection_id), "Connection",
                settings.context, allow=allow)
