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

from connc import process, repository, seal
from connc.credentials import SECRET_PLACEHOLDER
from connc.errors import Refused, SopsError, UsageError
from connc.findings import printable
from connc.render import inputs
from connc.secrets import Secret
from connc.sops import binary

_SHOWN = 60


@dataclasses.dataclass(frozen=True)
class Sealing:
    id: str
    relpath: str
    first: bool  # the credential had no seal
    changed: list[str]  # fields whose value the old seal does not allow
    rewritten: bool  # the seal was (or, with --dry-run, would be) written
    narrowed: list[str] = dataclasses.field(default_factory=list)  # the seal is wider here

    def message(self, current: Mapping[str, Any], dry_run: bool) -> str:
        verb = "would seal" if dry_run else "sealed"
        if self.first:
            return f"{self.id}: {verb} for the first time"
        if not self.rewritten:
            return f"{self.id}: the seal is up to date"
        narrowed = ""
        if self.narrowed:
            # Until resealed, the old seal still admits the wider scope: anyone could widen
            # the file back without a key (review still shows it; render would not refuse).
            narrowed = (f"; narrowed since the last seal, which is wider than the file ("
                        f"{', '.join(self.narrowed)}): "
                        + ("sealing makes" if dry_run else "the seal now makes")
                        + " the narrowing durable")
        if not self.changed:
            return f"{self.id}: {verb}{narrowed}"
        return f"{self.id}: {verb}; changed since the last seal: " + ", ".join(
            _now(field, current) for field in self.changed) + narrowed


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
    if every:
        return repository.ids(root, "connection")
    for connection_id in ids:
        repository.existing(root, "connection", connection_id)
    return list(dict.fromkeys(ids))


# What sealing leaves alone: it approves plaintext, and a file with a plaintext credential
# value cannot be resealed (sops would refuse it) until `secret set` replaces that value.
SEALING_FIXES = inputs.WRITING_FIXES - {"CONNC402"}


def seal_all(root: Path, ids: list[str], *, dry_run: bool, deadline: process.Deadline,
             allow: frozenset[str] = SEALING_FIXES) -> list[tuple[Sealing, dict[str, Any]]]:
    """`allow`: the codes the caller fixes itself (`keys sync` fixes recipients, CONNC405);
    `deadline`: the run's, for every sops process."""
    binary.executable()  # a missing binary is an environment error, before anything is read
    # Every file checked first (render's reader refuses what validate would): nothing written
    # when one of them is wrong.
    settings = inputs.policy(root)
    inputs.refuse_checkout(root, [*repository.TOP_FILES,
                                  *(repository.connection_path(i) for i in ids)])
    views = [(connection_id, seal.view_of(inputs.read_connection(
        root, connection_id, settings, allow=allow)))
             for connection_id in ids]
    sealed = [(connection_id, repository.connection_path(connection_id), current,
               recorded(root, repository.connection_path(connection_id),
                        deadline=deadline).view)
              for connection_id, current in views]
    for connection_id, relpath, _current, old in sealed:
        # A seal never changes its id: that would approve a move no owner consented to.
        if old is not None and old.get("id") != connection_id:
            raise Refused(moved_message(connection_id, old.get("id")), path=relpath)
    done = []
    for connection_id, relpath, current, old in sealed:
        changed = seal.changes(old, current) if old is not None else []
        rewrite = old != current
        if rewrite and not dry_run:
            binary.set_credential(root, relpath, seal.SEAL_FIELD, Secret(seal.encode(current)),
                                  deadline=deadline)
        done.append((Sealing(connection_id, relpath, old is None, changed, rewrite,
                             seal.narrowed(old, current) if old is not None else []), current))
    return done


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a credential holds besides its secrets: the view its seal approved (None: no
    seal), and whether it holds a real value yet (`connc new` writes placeholders)."""

    view: dict[str, Any] | None
    scaffold: bool  # every value is still the placeholder of `connc new`


def recorded(root: Path, relpath: str, *, deadline: process.Deadline, text: bytes | None = None,
             ignore_mac: bool = False) -> Recorded:
    """The credential's seal and whether it holds real values. `text` and `ignore_mac`: read
    that content instead of the file (see `binary.Decryption`)."""
    try:
        document = binary.Decryption(root, relpath, deadline=deadline, text=text,
                                     ignore_mac=ignore_mac).result()
    except SopsError as error:
        if error.no_key:  # sealing is a key holder's act: no key is the environment's fault
            raise UsageError(f"{relpath}: {error.message}") from None
        raise
    credential = document.get("credential")
    credential = credential if isinstance(credential, dict) else {}
    value = credential.pop(seal.SEAL_FIELD, None)
    view = seal.decode(value.reveal()) if isinstance(value, Secret) else None
    scaffold = all(isinstance(v, Secret) and v.reveal().strip() == SECRET_PLACEHOLDER
                   for v in credential.values())
    return Recorded(view, scaffold)


def moved_message(connection_id: str, sealed_for: object) -> str:
    return (f"the credential was sealed for `{printable(str(sealed_for), 63)}`, not "
            f"`{connection_id}`: a credential moved or copied from another connection stays "
            f"that connection's, and no connc command reseals it under a new id (its owner "
            f"would not have consented); create this connection with `connc new` and set its "
            f"values with `connc secret set`, or move the file back")


def check_writable(connection_id: str, sealed: Recorded, current: dict[str, Any]) -> list[str]:
    """Refuse to write a credential whose plaintext no longer matches its seal; returns the
    fields that changed since a seal that approved no real value yet (to be said).

    Writing a credential reseals it, and a seal is a key holder's approval of the plaintext:
    rotating a password must never approve, in passing, a redirected endpoint or a widened
    scope that a pull request slipped in. A key holder approves those with `connc seal`,
    which shows them; then the value can be written. Allowed: a narrowing (the seal is an
    upper bound, and writing makes the narrower scope durable), and finishing the scaffold of
    `connc new`: while every value is still its placeholder, no secret has gone anywhere, so
    its spec and scope are filled in freely, and the first real value seals them.
    """
    if sealed.view is None:
        return []  # its first seal: the command says what it approves
    changed = seal.changes(sealed.view, current)
    if "id" in changed:
        raise Refused(moved_message(connection_id, sealed.view.get("id")))
    if changed and not sealed.scaffold:
        raise Refused(f"the plaintext changed since the credential was sealed: "
                      f"{', '.join(changed)}; writing the credential would reseal, and so "
                      f"approve, that change: a key holder reviews it with `connc seal "
                      f"{connection_id} --dry-run` and approves it with `connc seal "
                      f"{connection_id}` (or reverts it), then run this again; nothing was "
                      f"changed")
    return changed


def reseal(root: Path, relpath: str, connection_id: str, view: dict[str, Any], done: str, *,
           deadline: process.Deadline) -> None:
    """Seal `view` after a credential value changed (`secret set`, `secret unset`): what a
    key holder approved is what they saw, no more. `done` says what was changed, for a
    failure's message: the change stands, the seal is what is missing."""
    try:
        binary.set_credential(root, relpath, seal.SEAL_FIELD, Secret(seal.encode(view)),
                              deadline=deadline)
    except SopsError as error:
        raise SopsError(f"{done}, but sealing failed ({error.message}); run `connc seal "
                        f"{connection_id}`", path=relpath) from None
