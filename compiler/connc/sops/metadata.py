"""What sops records in an encrypted file: its encrypted values and its `sops:` block.

Everything here is keyless: it reads the `sops:` block and never decrypts. The recipients and
key groups it reads are `recipients`' forms; `rules` says what `.sops.yaml` wants instead.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import re
from typing import Any

from connc.sops.recipients import (
    KEY_SOURCES,
    NO_KEY_GROUPS,
    KeyGroups,
    is_threshold,
    recipient_id,
)

ENC_RE = re.compile(
    r"^ENC\[AES256_GCM,data:(?P<data>[A-Za-z0-9+/=]*),iv:(?P<iv>[A-Za-z0-9+/=]+),"
    r"tag:(?P<tag>[A-Za-z0-9+/=]+),type:(?P<type>[a-z]+)\]$"
)


def is_encrypted_value(value: object) -> bool:
    return isinstance(value, str) and value.startswith("ENC[")


def enc_type(value: str) -> str | None:
    match = ENC_RE.match(value)
    return match.group("type") if match else None


def fingerprint(encoded: str) -> bytes:
    """What an encoded value decodes to, hashed: the same for every text encoding of it.

    sops still decrypts a value whose base64 has other unused bits in its last character, or
    an age armour with other line endings; a copy re-encoded that way is the same bytes, so
    copies are compared here, never as text. Armour lines (-----BEGIN ...) are dropped.
    """
    body = "".join(line for line in encoded.splitlines() if not line.startswith("-----"))
    try:
        decoded = binascii.a2b_base64(body.encode("ascii", "ignore"))
    except binascii.Error:
        decoded = "".join(body.split()).encode()
    return hashlib.sha256(decoded).digest()


def value_fingerprint(value: str) -> bytes | None:
    """The fingerprint of an ENC[...] value's iv and ciphertext (None for anything else)."""
    match = ENC_RE.match(value)
    if match is None or not match.group("data"):
        return None
    return fingerprint(match.group("iv")) + fingerprint(match.group("data"))


@dataclasses.dataclass(frozen=True)
class SopsMetadata:
    recipients: frozenset[str]
    # The data key as encrypted to each recipient (`fingerprint`): the same means a copy.
    wrapped_keys: frozenset[bytes]
    encrypted_regex: str | None
    mac_only_encrypted: bool
    problems: tuple[str, ...]
    key_groups: KeyGroups = NO_KEY_GROUPS
    # When sops last wrote the credential (RFC 3339, UTC, as sops writes it; the MAC is
    # encrypted with it as associated data, so it cannot be changed without the key): an
    # older one than a revision before had is an older credential block put back.
    lastmodified: str | None = None


def read_metadata(block: object) -> SopsMetadata:
    """Recipients and settings from a file's `sops:` block; problems are plain messages."""
    problems: list[str] = []
    if not isinstance(block, dict):
        return SopsMetadata(frozenset(), frozenset(), None, False, ("the sops block is not a mapping",))
    wrapped: set[bytes] = set()
    entry_lists = _key_entry_lists(block)
    top, *listed = [_group_of(entries, problems, wrapped) for entries in entry_lists]
    # Every recipient named anywhere, even one sops would ignore: more to check, never less.
    recipients = top.union(*listed)
    # The groups as sops reads them (stores/stores.go, internalKeygroups): keys at top level,
    # if any, are the file's one group and `key_groups` is then ignored; sops writes one or the
    # other (MetadataFromInternal: a single group goes to the top level).
    has_top = bool(entry_lists[0])
    groups = (top,) if has_top else tuple(listed)
    if has_top and any(entry_lists[1:]):
        problems.append("keys both at top level and in `key_groups`; sops reads only the "
                        "top-level keys")
    threshold = block.get("shamir_threshold", 0)
    if threshold is None:
        threshold = 0
    if not is_threshold(threshold):
        problems.append("`shamir_threshold` is not a whole number")
        threshold = 0
    if not recipients:
        problems.append("no recipients: nobody can decrypt this file")
    for required in ("mac", "lastmodified"):
        if required not in block:
            problems.append(f"missing `{required}`")
    regex = block.get("encrypted_regex")
    modified = block.get("lastmodified")
    return SopsMetadata(
        frozenset(recipients),
        frozenset(wrapped),
        regex if isinstance(regex, str) else None,
        block.get("mac_only_encrypted") is True,
        tuple(problems),
        KeyGroups(groups, threshold),
        modified if isinstance(modified, str) and _TIMESTAMP.fullmatch(modified) else None,
    )


_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z")


def _group_of(entries: list[tuple[str, dict[str, Any]]], problems: list[str],
              wrapped: set[bytes]) -> frozenset[str]:
    """The recipients of one group's entries; their wrapped data keys go to `wrapped`."""
    found = set()
    for source, entry in entries:
        recipient = _recipient_of(source, entry)
        if recipient is None:
            problems.append(f"a `{source}` entry has no key identifier")
            continue
        found.add(recipient)
        enc = entry.get("enc")
        if isinstance(enc, str) and enc.strip():
            wrapped.add(fingerprint(enc))
    return frozenset(found)


def _key_entry_lists(block: dict[str, Any]) -> list[list[tuple[str, dict[str, Any]]]]:
    """The key entries at top level, then those of each of `key_groups`."""
    groups: list[dict[str, Any]] = [block]
    key_groups = block.get("key_groups")
    if isinstance(key_groups, list):
        groups.extend(g for g in key_groups if isinstance(g, dict))
    result = []
    for group in groups:
        entries = []
        for source in KEY_SOURCES:
            listed = group.get(source)
            for entry in listed if isinstance(listed, list) else []:
                if isinstance(entry, dict):
                    entries.append((source, entry))
        result.append(entries)
    return result


def _recipient_of(source: str, entry: dict[str, Any]) -> str | None:
    kind, fields = KEY_SOURCES[source]
    values = [entry.get(field) for field in fields]
    if not all(isinstance(v, str) and v for v in values):
        return None
    return recipient_id(kind, "/".join(str(v) for v in values))
