"""`connc seal ID... | --all`: a key holder approves a connection's plaintext, in the file.

For each connection: read it as render reads it, decrypt its credential (so only a key holder
can), say what changed since its last seal (field names and their values now: the old values
are inside the encryption, and stay there), and write the new seal with `sops set`, value on
stdin. Every selected file is read and checked before the first one is written, so a typo in
one id changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from connc import process, repository, seal, sops
from connc.errors import SopsError, UsageError
from connc.findings import printable, suggest
from connc.render import inputs
from connc.secrets import Secret

_SHOWN = 60


@dataclasses.dataclass(frozen=True)
class Sealing:
    id: str
    relpath: str
    first: bool  # the credential had no seal
    changed: list[str]  # fields whose value the old seal does not allow
    rewritten: bool  # the seal was (or, with --dry-run, would be) written

    def message(self, current: Mapping[str, Any], dry_run: bool) -> str:
        verb = "would seal" if dry_run else "sealed"
        if self.first:
            return f"{self.id}: {verb} for the first time"
        if not self.rewritten:
            return f"{self.id}: the seal is up to date"
        if not self.changed:
            return f"{self.id}: {verb} (narrowed since the last seal)"
        return f"{self.id}: {verb}; changed since the last seal: " + ", ".join(
            _now(field, current) for field in self.changed)


def _now(field: str, current: Mapping[str, Any]) -> str:
    """`spec.server (now "https://...")`: the value in the file, never the sealed one."""
    value: Any = current
    for step in field.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    if value is None:
        return f"{field} (now unset)"
    text = value if isinstance(value, str) else json.dumps(value)
    text = printable(text)
    return f"{field} (now {text[:_SHOWN] + '…' if len(text) > _SHOWN else text!r})"


def select(root: Path, ids: Sequence[str], every: bool) -> list[str]:
    if every == bool(ids):
        raise UsageError("give connection ids, or --all")
    known = sorted(repository.stem(p, repository.CONNECTION_SUFFIX)
                   for p in repository.list_files(root).connections)
    if every:
        return known
    for connection_id in ids:
        repository.check_id(connection_id, "connection")
        if not repository.present(root / repository.connection_path(connection_id)):
            raise UsageError(f"no connection `{connection_id}`{suggest(connection_id, known)}")
    return list(dict.fromkeys(ids))


# What sealing leaves alone: it approves plaintext, and a file with a plaintext credential
# value cannot be resealed (sops would refuse it) until `secret set` replaces that value.
SEALING_FIXES = inputs.WRITING_FIXES - {"CONNC402"}


def seal_all(root: Path, ids: list[str], *, dry_run: bool, deadline: process.Deadline,
             allow: frozenset[str] = SEALING_FIXES) -> list[tuple[Sealing, dict[str, Any]]]:
    """`allow`: the codes the caller fixes itself (`keys sync` fixes recipients, CONNC405);
    `deadline`: the run's, for every sops process."""
    sops.binary()  # a missing binary is an environment error, before anything is read
    # Every file checked first (render's reader refuses what validate would): nothing written
    # when one of them is wrong.
    settings = inputs.policy(root)
    views = [(connection_id, seal.view_of(inputs.read_connection(
        root, connection_id, settings, allow=allow)))
             for connection_id in ids]
    done = []
    for connection_id, current in views:
        relpath = repository.connection_path(connection_id)
        old = _recorded(root, relpath, deadline)
        changed = seal.changes(old, current) if old is not None else []
        rewrite = old != current
        if rewrite and not dry_run:
            sops.set_credential(root, relpath, seal.SEAL_FIELD, Secret(seal.encode(current)),
                                deadline=deadline)
        done.append((Sealing(connection_id, relpath, old is None, changed, rewrite), current))
    return done


def _recorded(root: Path, relpath: str, deadline: process.Deadline) -> dict[str, Any] | None:
    """The view the credential's seal records, or None when it has none."""
    try:
        document = sops.decrypt(root, relpath, deadline=deadline)
    except SopsError as error:
        if error.no_key:  # sealing is a key holder's act: no key is the environment's fault
            raise UsageError(f"{relpath}: {error.message}") from None
        raise
    credential = document.get("credential")
    value = credential.get(seal.SEAL_FIELD) if isinstance(credential, dict) else None
    return seal.decode(value.reveal()) if isinstance(value, Secret) else None
