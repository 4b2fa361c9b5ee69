"""`connc secret set ID FIELD`: change one credential value with `sops set --value-stdin`.

The value comes from stdin (a pipe or a file; a hidden prompt on a terminal), never from
argv or the environment, where other processes and shell history can see it. sops rewrites
only that value: the comments and every other value, encrypted or not, stay as they were.

`sops set` must decrypt the file's data key to encrypt the new value with it, so this needs
a key that can decrypt the file (SOPS_AGE_KEY_FILE, ...), unlike `connc new`, which only
encrypts to the public recipients of `.sops.yaml`.
"""

from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path
from typing import Any, BinaryIO

from connc import documents, privatefiles, process, repository, seal
from connc.author import seal as sealing
from connc.credentials import MULTILINE_FIELDS, field_problem
from connc.errors import Refused, SopsError, UsageError
from connc.findings import suggest
from connc.render import inputs
from connc.repository import stem
from connc.schema import models
from connc.secrets import Secret
from connc.sops import binary
from connc.sops.metadata import is_encrypted_value


@dataclasses.dataclass(frozen=True)
class Changed:
    relpath: str
    field: str
    added: bool  # the field was not in the file before
    expires_at: str | None  # metadata.expiresAt as written, a reminder to update it
    other_alternative: list[str]  # fields of another alternative, still in the file
    was_plaintext: bool = False  # the field held a plaintext value (CONNC402)
    first_seal: bool = False  # the credential had no seal: this one approves the file as it is
    filled: list[str] = dataclasses.field(default_factory=list)  # scaffold fields now sealed

    def messages(self) -> list[str]:
        done = "added" if self.added else "changed"
        lines = [f"{done} credential.{self.field} in {self.relpath} (encrypted by sops; "
                 f"comments and other values kept)"]
        if self.first_seal:
            lines.append("the credential had no seal: it is now sealed for the id, owner, scope "
                         "and spec in the file (review them: `connc seal --dry-run` shows a "
                         "seal's changes)")
        if self.filled:
            lines.append(f"sealed {', '.join(self.filled)} as the file has it now (changed "
                         f"since `connc new`, whose seal approved no real value yet): check "
                         f"they are what you meant")
        if self.was_plaintext:
            lines.append(f"credential.{self.field} was in plaintext in the file, so it is in "
                         f"git's history: rotate it at its service")
        if self.expires_at:
            lines.append(f"metadata.expiresAt is {self.expires_at}: update it for the new "
                         f"credential")
        for other in self.other_alternative:
            # Render takes the first complete alternative: a leftover placeholder could win.
            lines.append(f"credential.{other} is still set (another kind of credential); if "
                         f"it is unused, e.g. a placeholder of `connc new`, remove it: "
                         f"connc secret unset {stem(self.relpath, repository.CONNECTION_SUFFIX)} "
                         f"{other}")
        lines.append("next: `connc validate`, then open a pull request")
        return lines


def value_from_bytes(field: str, raw: bytes) -> Secret:
    """The value as read from stdin: one trailing newline dropped, so `echo x |` works."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"the value for `{field}` is not UTF-8 text") from None
    if field in MULTILINE_FIELDS:
        # A PEM file saved on Windows: its line ends are not part of the key.
        text = text.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
        text = text[:-1] if text.endswith("\r") else text
    return Secret(text)


def set_secret(root: Path, connection_id: str, field: str, stdin: BinaryIO, *,
               deadline: process.Deadline) -> Changed:
    """Check the connection and field, then read the value from `stdin` and set it."""
    relpath, connection_type, credential, expires_at, document = read_encrypted(root,
                                                                               connection_id)
    allowed = models.CREDENTIALS[connection_type].field_names()
    if field not in allowed:
        raise UsageError(f"a {connection_type} connection has no credential field `{field}` "
                         f"(its fields: {', '.join(sorted(allowed))}){suggest(field, allowed)}",
                         path=relpath)
    exposed = plaintext_fields(credential)
    if exposed - {field}:
        other = sorted(exposed - {field})[0]
        raise Refused(f"`credential.{other}` is plaintext in the file: set it first with `connc "
                      f"secret set {connection_id} {other}` (and rotate it at its service: it "
                      f"is in git's history)", path=relpath)
    # The seal approves the plaintext as render reads it now: a file render would refuse is
    # refused here, before any typing.
    settings = inputs.policy(root)
    view = seal.view_of(inputs.read_connection(root, connection_id, settings,
                                               allow=inputs.WRITING_FIXES))
    inputs.refuse_checkout(root, [relpath, *repository.TOP_FILES])
    # sops cannot decrypt a file with a plaintext value where encrypted ones belong; the value
    # was added after encryption, outside the MAC, so without its lines the file is the one
    # sops wrote — unless the plaintext replaced an encrypted value, which the MAC covers.
    text = _without_value(root / relpath, document, field) if field in exposed else None
    sealed, mac_broken = _old_seal(root, relpath, text, deadline)
    if mac_broken and sealed.view is None:
        raise Refused("the MAC does not match (the plaintext value replaced an encrypted one) "
                      "and the credential has no seal that says what a key holder approved: "
                      "restore the file from git's history (`git checkout <commit> -- "
                      f"{relpath}`), then run this again; nothing was changed", path=relpath)
    filled = sealing.check_writable(connection_id, sealed, view)  # before any typing, too
    value = read_value(field, stdin)  # only now: a typo above costs no typing
    problem = field_problem(connection_id, view["spec"], field, value.reveal())
    if problem:
        _code, message = problem  # messages name the field, never the value
        raise Refused(f"{message}; nothing was changed", path=relpath)
    if text is not None:
        path = root / relpath
        privatefiles.replace(path, text, path.stat().st_mode & 0o7777)
    binary.set_credential(root, relpath, field, value, deadline=deadline, ignore_mac=mac_broken)
    sealing.reseal(root, relpath, connection_id, view, f"credential.{field} was set",
                   deadline=deadline)
    return Changed(relpath, field, field not in credential, expires_at,
                   _other_alternative(connection_type, field, set(credential)), field in exposed,
                   first_seal=sealed.view is None, filled=filled)


def _old_seal(root: Path, relpath: str, text: bytes | None,
              deadline: process.Deadline) -> tuple[sealing.Recorded, bool]:
    """(what the credential's seal records, whether the MAC had to be ignored to read it).

    With a plaintext value dropped (`text`), a MAC mismatch means that value replaced an
    encrypted one: the MAC still counts the encrypted value that is gone. Each remaining value
    is still authenticated on its own (AES-GCM, its path as associated data), so it is read
    with the MAC ignored — and then only a seal that matches the file lets the write go on.
    """
    try:
        return sealing.recorded(root, relpath, deadline=deadline, text=text), False
    except SopsError:
        if text is None:
            raise
    return sealing.recorded(root, relpath, deadline=deadline, text=text, ignore_mac=True), True


def _other_alternative(connection_type: str, field: str, present: set[str]) -> list[str]:
    alternatives = models.CREDENTIALS[connection_type].alternatives
    mine = frozenset().union(*(a for a in alternatives if field in a))
    if not mine:  # an optional extra (gitlab's username) goes with any alternative
        return []
    return sorted(present & (frozenset().union(*alternatives) - mine))


def read_value(field: str, stdin: BinaryIO) -> Secret:
    if not stdin.isatty():
        return value_from_bytes(field, stdin.read())
    # A terminal: ask twice, without echo (typing into a plain read would show the value).
    if field in MULTILINE_FIELDS:
        raise UsageError(f"`{field}` spans several lines: pass it as a file, "
                         f"`connc secret set ID {field} < FILE`")
    first = getpass.getpass(f"{field}: ")
    if getpass.getpass(f"{field} (again): ") != first:
        raise UsageError("the two entries differ; nothing was changed")
    return value_from_bytes(field, first.encode())


def plaintext_fields(credential: dict[str, Any]) -> set[str]:
    return {key for key, value in credential.items()
            if isinstance(value, str) and value and not is_encrypted_value(value)}


def _without_value(path: Path, document: documents.Document, field: str) -> bytes:
    """The file without `credential.FIELD` (key and value, block style), as text."""
    node = document.root
    credential = next((v for k, v in node.value if k.value == "credential"), None)
    entry = next(((k, v) for k, v in credential.value if k.value == field), None) \
        if credential is not None and not credential.flow_style else None
    if entry is None:
        raise Refused(f"`credential.{field}` is plaintext in a flow mapping; move it to its own "
                      f"line (`{field}: ...`) under `credential:` and run this again",
                      path=str(path.name))
    key, value = entry
    first = key.start_mark.line
    last = value.end_mark.line if value.end_mark.column == 0 else value.end_mark.line + 1
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(lines[:first] + lines[last:])


def read_encrypted(root: Path, connection_id: str
                   ) -> tuple[str, str, dict[str, Any], str | None, documents.Document]:
    """(its file, type, credential, expiresAt, the document) of an existing connection's
    encrypted file, keyless."""
    relpath = repository.existing(root, "connection", connection_id,
                                  hint=f" (create it with `connc new TYPE {connection_id}`)")
    document, _found = documents.read(root, relpath, "Connection")
    data = document.data if document is not None else None
    if not isinstance(data, dict):
        raise UsageError("the file does not parse; `connc validate` shows why", path=relpath)
    spec, credential, metadata = (data.get(k) for k in ("spec", "credential", "metadata"))
    connection_type = spec.get("type") if isinstance(spec, dict) else None
    if connection_type not in models.CREDENTIALS:
        raise UsageError("`spec.type` is missing or unknown; `connc validate` shows why",
                         path=relpath)
    if not isinstance(data.get("sops"), dict):
        raise UsageError("the file is not encrypted: run `connc sops encrypt --in-place "
                         f"{relpath}` from the repository root first", path=relpath)
    expires = metadata.get("expiresAt") if isinstance(metadata, dict) else None
    assert document is not None
    return (relpath, str(connection_type), credential if isinstance(credential, dict) else {},
            str(expires) if expires is not None else None, document)
