"""What sops records in an encrypted file, and what `.sops.yaml` says it should record.

Everything here is keyless: it reads the `sops:` block and the creation rules, and never
decrypts. Recipients are compared as sops writes them (`age:<key>`, `pgp:<fingerprint>`,
`kms:<arn>`, ...), so moving from age keys to a cloud KMS needs no change in connc.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import re
from typing import Any

from connc.secrets import what_secret

ENC_RE = re.compile(
    r"^ENC\[AES256_GCM,data:(?P<data>[A-Za-z0-9+/=]*),iv:(?P<iv>[A-Za-z0-9+/=]+),"
    r"tag:(?P<tag>[A-Za-z0-9+/=]+),type:(?P<type>[a-z]+)\]$"
)

# sops metadata key -> (recipient kind, fields that identify the key)
_KEY_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "age": ("age", ("recipient",)),
    "pgp": ("pgp", ("fp",)),
    "kms": ("kms", ("arn",)),
    "gcp_kms": ("gcp_kms", ("resource_id",)),
    "azure_kv": ("azure_kv", ("vault_url", "name", "version")),
    "hc_vault": ("hc_vault", ("vault_address", "engine_path", "key_name")),
}


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


def read_metadata(block: object) -> SopsMetadata:
    """Recipients and settings from a file's `sops:` block; problems are plain messages."""
    problems: list[str] = []
    if not isinstance(block, dict):
        return SopsMetadata(frozenset(), frozenset(), None, False, ("the sops block is not a mapping",))
    recipients: set[str] = set()
    wrapped: set[bytes] = set()
    for entries in _key_entry_lists(block):
        for source, entry in entries:
            recipient = _recipient_of(source, entry)
            if recipient is None:
                problems.append(f"a `{source}` entry has no key identifier")
                continue
            recipients.add(recipient)
            enc = entry.get("enc")
            if isinstance(enc, str) and enc.strip():
                wrapped.add(fingerprint(enc))
    if not recipients:
        problems.append("no recipients: nobody can decrypt this file")
    for required in ("mac", "lastmodified"):
        if required not in block:
            problems.append(f"missing `{required}`")
    regex = block.get("encrypted_regex")
    return SopsMetadata(
        frozenset(recipients),
        frozenset(wrapped),
        regex if isinstance(regex, str) else None,
        block.get("mac_only_encrypted") is True,
        tuple(problems),
    )


def _key_entry_lists(block: dict[str, Any]) -> list[list[tuple[str, dict[str, Any]]]]:
    """The key entries at top level and inside each of `key_groups`."""
    groups: list[dict[str, Any]] = [block]
    key_groups = block.get("key_groups")
    if isinstance(key_groups, list):
        groups.extend(g for g in key_groups if isinstance(g, dict))
    result = []
    for group in groups:
        entries = []
        for source in _KEY_SOURCES:
            for entry in _entries(group.get(source)):
                if isinstance(entry, dict):
                    entries.append((source, entry))
        result.append(entries)
    return result


def _recipient_of(source: str, entry: dict[str, Any]) -> str | None:
    kind, fields = _KEY_SOURCES[source]
    values = [entry.get(field) for field in fields]
    if not all(isinstance(v, str) and v for v in values):
        return None
    return recipient_id(kind, "/".join(str(v) for v in values))


def recipient_id(kind: str, value: str) -> str:
    if kind == "pgp":
        value = value.replace(" ", "").upper()
    return f"{kind}:{value.strip()}"


def shown_recipient(recipient: str) -> str:
    """A recipient as a message prints it: a private key pasted by mistake is named, not shown."""
    label = what_secret(None, recipient)
    return f"({label}, not shown)" if label else recipient


def recipient_of_member_key(value: str) -> str:
    """A recipient as written in members.yaml / connc.yaml, in `recipient_id` form.

    `age1...` is an age key; `arn:aws:kms:` a KMS key; `projects/.../cryptoKeys/...` a GCP key;
    `https://...vault.azure.net/keys/NAME/VERSION` Azure; other `http(s)://` a Vault transit
    URI; a 40-hex string a PGP fingerprint. `kind:value` is taken as is.
    """
    value = value.strip()
    if value.startswith("age1"):
        return recipient_id("age", value)
    if value.startswith("arn:aws:kms:"):
        return recipient_id("kms", value)
    if value.startswith("projects/") and "/cryptoKeys/" in value:
        return recipient_id("gcp_kms", value)
    azure = re.match(r"^(https://[^/]+\.vault\.azure\.net)/keys/([^/]+)/([^/]+)$", value)
    if azure:
        return recipient_id("azure_kv", "/".join(azure.groups()))
    vault = re.match(r"^(https?://[^/]+)/v1/(.+)/keys/([^/]+)$", value)
    if vault:
        return recipient_id("hc_vault", "/".join(vault.groups()))
    if re.fullmatch(r"[0-9A-Fa-f ]{40,49}", value):
        return recipient_id("pgp", value)
    if re.match(r"^[a-z_]+:", value):
        kind, _, rest = value.partition(":")
        if kind in {k for k, _f in _KEY_SOURCES.values()}:
            return recipient_id(kind, rest)
    return recipient_id("unknown", value)


# ---------------------------------------------------------------------------- .sops.yaml


@dataclasses.dataclass(frozen=True)
class CreationRule:
    index: int
    line: int
    path_regex: re.Pattern[str] | None
    recipients: frozenset[str]
    encrypted_regex: str | None
    mac_only_encrypted: bool

    def matches(self, relpath: str) -> bool:
        # sops uses Go's regexp.MatchString: a search, not an anchored match.
        return self.path_regex is None or self.path_regex.search(relpath) is not None


class RulesError(Exception):
    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.message, self.line = message, line


def read_rules(data: object, line_of: Any = None) -> list[CreationRule]:
    """Creation rules from a parsed `.sops.yaml`. `line_of(path)` gives a line for messages."""
    line_of = line_of or (lambda _path: 1)
    if not isinstance(data, dict) or not isinstance(data.get("creation_rules"), list):
        raise RulesError("`.sops.yaml` has no `creation_rules` list")
    rules = []
    for index, raw in enumerate(data["creation_rules"]):
        line = line_of(("creation_rules", index))
        if not isinstance(raw, dict):
            raise RulesError(f"creation rule {index + 1} is not a mapping", line)
        pattern = raw.get("path_regex")
        try:
            compiled = re.compile(pattern) if isinstance(pattern, str) else None
        except re.error as exc:
            raise RulesError(f"creation rule {index + 1}: path_regex does not compile: {exc}",
                             line) from None
        rules.append(CreationRule(
            index, line, compiled, frozenset(_rule_recipients(raw)),
            raw.get("encrypted_regex") if isinstance(raw.get("encrypted_regex"), str) else None,
            raw.get("mac_only_encrypted") is True,
        ))
    return rules


def _entries(value: object) -> list[Any]:
    """A list read from YAML; anything else (a hand-edited typo) holds no entries."""
    return value if isinstance(value, list) else []


def _split(value: object) -> list[str]:
    """sops' parseKeyField: a comma-separated string or a list of strings."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in _entries(value) if str(part).strip()]


def _rule_recipients(rule: dict[str, Any]) -> set[str]:
    found = {recipient_id("age", v) for v in _split(rule.get("age"))}
    found |= {recipient_id("pgp", v) for v in _split(rule.get("pgp"))}
    # `ARN+ROLE_ARN` assumes a role; sops records the role apart from the key's ARN.
    found |= {recipient_id("kms", v.split("+", 1)[0]) for v in _split(rule.get("kms"))}
    found |= {recipient_id("gcp_kms", v) for v in _split(rule.get("gcp_kms"))}
    uris = _split(rule.get("azure_keyvault")) + _split(rule.get("hc_vault_transit_uri"))
    found |= {recipient_of_member_key(uri) for uri in uris}
    for group in _entries(rule.get("key_groups")):
        found |= _group_recipients(group)
    return found


# key_groups entries that are mappings: sops' field names -> the metadata kind they become.
_GROUP_MAPPINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kms": ("kms", ("arn",)),
    "gcp_kms": ("gcp_kms", ("resource_id",)),
    "azure_keyvault": ("azure_kv", ("vaultUrl", "key", "version")),
}


def _group_recipients(group: object) -> set[str]:
    """Recipients of one `key_groups` entry (sops' keyGroup), with its nested `merge` groups."""
    if not isinstance(group, dict):
        return set()
    found = {recipient_id("age", v) for entry in _entries(group.get("age")) for v in _split(entry)}
    found |= {recipient_id("pgp", v) for v in _split(group.get("pgp"))}
    found |= {recipient_of_member_key(v) for v in _split(group.get("hc_vault"))}
    for source, (kind, fields) in _GROUP_MAPPINGS.items():
        for entry in _entries(group.get(source)):
            values = [entry.get(field) for field in fields] if isinstance(entry, dict) else []
            strings = [v for v in values if isinstance(v, str) and v]
            if values and len(strings) == len(values):
                found.add(recipient_id(kind, "/".join(strings)))
    for merged in _entries(group.get("merge")):
        found |= _group_recipients(merged)
    return found


def first_matching_rule(rules: list[CreationRule], relpath: str) -> CreationRule | None:
    return next((rule for rule in rules if rule.matches(relpath)), None)
