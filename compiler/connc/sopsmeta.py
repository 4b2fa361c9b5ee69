"""What sops records in an encrypted file, and what `.sops.yaml` says it should record.

Everything here is keyless: it reads the `sops:` block and the creation rules, and never
decrypts. Recipients are compared as sops writes them (`age:<key>`, `pgp:<fingerprint>`,
`kms:<arn>`, ...), so moving from age keys to a cloud KMS needs no change in connc.

Who can decrypt is more than a set of recipients: sops splits the data key between key groups
(Shamir), any key of a group opens that group's share, and `shamir_threshold` shares are needed.
`KeyGroups` is that structure, read from a file as sops reads it (stores/stores.go) and from a
creation rule as sops builds it (config/config.go).
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import hashlib
import re
from collections.abc import Sequence
from typing import Any, Protocol

from connc.findings import printable
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
class KeyGroups:
    """Who must cooperate to decrypt: the key groups, each a set of recipients, and the threshold.

    Semantics followed (getsops/sops): with one group there is no Shamir split and any one key
    decrypts (sops.go, UpdateMasterKeysWithKeyServices / GetDataKeyWithKeyServices: "If there's
    only one key group, we can't do Shamir"); with several, `shamir_threshold` groups are needed
    and 0 (absent) means all of them ("if m.ShamirThreshold == 0 { m.ShamirThreshold =
    len(m.KeyGroups) }"; getsops.io docs, Key groups: "By default, the threshold is set to the
    number of key groups"). sops records the rule's shamir_threshold even in a one-group file,
    where it means nothing, so it is compared only through `threshold`.
    """

    groups: tuple[frozenset[str], ...]
    recorded_threshold: int = 0  # shamir_threshold as written; 0 when absent

    @property
    def threshold(self) -> int:
        """Groups needed to decrypt."""
        return effective_threshold(len(self.groups), self.recorded_threshold)

    def canonical(self) -> tuple[tuple[tuple[str, ...], ...], int]:
        """The structure, order-free: two files alike here are opened by the same key sets.

        The order of groups changes nothing about who can decrypt (any `threshold` of them),
        so it is not compared; a group listed twice still counts twice."""
        return tuple(sorted(tuple(sorted(g)) for g in self.groups)), self.threshold


NO_KEY_GROUPS = KeyGroups(())


def effective_threshold(groups: int, recorded: int) -> int:
    if groups <= 1:
        return 1
    return recorded or groups


def threshold_after_updatekeys(file: KeyGroups, rule: KeyGroups) -> int:
    """The threshold `sops updatekeys` gives a file: it takes the rule's groups but keeps the
    file's own shamir_threshold, capped at the new number of groups (cmd/sops/subcommand/
    updatekeys/updatekeys.go: `shamirThreshold = min(tree.Metadata.ShamirThreshold,
    len(conf.KeyGroups))`, with a TODO about using the rule's instead); 0 then becomes every
    group. Checked against sops 3.11: a threshold-only change leaves updatekeys "already up to
    date"."""
    count = len(rule.groups)
    return effective_threshold(count, min(file.recorded_threshold, count))


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
    if not _is_count(threshold):
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


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    """A recipient as a message prints it: a private key pasted by mistake is named, not shown,
    and a control character (a newline that would forge a line of a CI log, an escape
    sequence) that a file's `sops` block can hold is replaced."""
    label = what_secret(None, recipient)
    return f"({label}, not shown)" if label else printable(recipient)


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


class _Compiled(Protocol):
    """What connc uses of a compiled `re2` pattern (google-re2 ships no type hints)."""

    def search(self, text: bytes) -> object: ...


class PathRegexError(Exception):
    pass


class PathRegex:
    """A creation rule's `path_regex`, matched as sops matches it: with Go's regexp, RE2 syntax
    and semantics. RE2 runs in time linear in the path, so a pull request cannot stall CI with
    a pattern that backtracks (Python's `re` takes minutes on `(a|aa)+b` against 44 letters),
    and it accepts what Go accepts (`\\z`, `\\pL`, `(?i)` mid-pattern) and refuses what Go
    refuses (lookarounds, backreferences, `\\Z`), so connc and sops agree on every rule."""

    __slots__ = ("_regexp", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regexp = _compile(pattern)

    def search(self, path: str) -> bool:
        # Go's regexp.MatchString: a search, not an anchored match. Go matches a file name's
        # bytes; a name that is not UTF-8 reaches us with surrogate escapes, which re-encode to
        # those same bytes.
        return self._regexp.search(path.encode("utf-8", "surrogateescape")) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathRegex) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"PathRegex({self.pattern!r})"

    def __reduce__(self) -> tuple[type[PathRegex], tuple[str]]:
        # validate's worker processes receive the rules pickled; they recompile from the text
        # (a hit in the cache they inherited from the parent through fork).
        return PathRegex, (self.pattern,)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> _Compiled:
    """The pattern compiled once per process (validate matches every file against it)."""
    # Imported here: most importers of this module (recipients, metadata) never match a path.
    import re2  # type: ignore[import-untyped]  # google-re2 has no type hints

    go_only = _go_rejects(pattern)
    if go_only:
        raise PathRegexError(go_only)
    options = re2.Options()
    options.log_errors = False  # RE2 would print every parse error on stderr itself
    # Only "does it match" is asked: without submatches RE2 answers from its DFA, 3x faster
    # (the syntax accepted is the same; named groups still parse).
    options.never_capture = True
    try:
        compiled: _Compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        raise PathRegexError(reason.decode("utf-8", "replace") if isinstance(reason, bytes)
                             else str(reason)) from None
    except UnicodeEncodeError:
        raise PathRegexError("the pattern is not valid UTF-8") from None
    return compiled


def _go_rejects(pattern: str) -> str | None:
    r"""The one escape C++ RE2 accepts and Go's regexp (so sops) refuses: `\C`, any byte.
    Checked against sops 3.11: "invalid escape sequence: `\C`"."""
    if "\\C" not in pattern:
        return None  # the common case, without a walk through a long pattern in Python
    index, literal = 0, False
    while index < len(pattern):
        if pattern[index] != "\\":
            index += 1
            continue
        escaped = pattern[index + 1:index + 2]
        if literal:  # \Q...\E quotes everything up to the first \E
            literal = escaped != "E"
            index += 1 if literal else 2
            continue
        if escaped == "Q":
            literal = True
        elif escaped == "C":
            return r"invalid escape sequence: \C"
        index += 2
    return None


@dataclasses.dataclass(frozen=True)
class CreationRule:
    index: int
    line: int
    path_regex: PathRegex | None
    recipients: frozenset[str]
    encrypted_regex: str | None
    mac_only_encrypted: bool
    key_groups: KeyGroups = NO_KEY_GROUPS

    def matches(self, relpath: str) -> bool:
        return self.path_regex is None or self.path_regex.search(relpath)


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
            compiled = PathRegex(pattern) if isinstance(pattern, str) else None
        except PathRegexError as exc:
            # sops refuses the whole .sops.yaml at such a rule ("can not compile regexp").
            hint = _RE2_HINT if str(exc).startswith(("invalid perl operator",
                                                     "invalid escape sequence")) else ""
            raise RulesError(f"creation rule {index + 1}: path_regex does not compile: RE2 "
                             f"(sops) rejects it: {exc}{hint}", line) from None
        threshold = raw.get("shamir_threshold")
        if threshold is not None and not _is_count(threshold):
            # sops' YAML decoder refuses it, and with it the whole .sops.yaml.
            raise RulesError(f"creation rule {index + 1}: shamir_threshold must be a whole "
                             f"number", line)
        groups = _rule_groups(raw)
        rules.append(CreationRule(
            index, line, compiled, frozenset().union(*groups),
            raw.get("encrypted_regex") if isinstance(raw.get("encrypted_regex"), str) else None,
            raw.get("mac_only_encrypted") is True,
            KeyGroups(groups, threshold or 0),
        ))
    return rules


_RE2_HINT = (" (sops matches path_regex with Go's RE2, which has no lookahead, lookbehind or "
             "backreference; `\\z`, not `\\Z`, ends the path)")


def _entries(value: object) -> list[Any]:
    """A list read from YAML; anything else (a hand-edited typo) holds no entries."""
    return value if isinstance(value, list) else []


def _split(value: object) -> list[str]:
    """sops' parseKeyField: a comma-separated string or a list of strings."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in _entries(value) if str(part).strip()]


def _rule_groups(rule: dict[str, Any]) -> tuple[frozenset[str], ...]:
    """The key groups sops builds from a rule (config/config.go, getKeyGroupsFromCreationRule):
    `key_groups`, when it lists any, and then the top-level keys are ignored; otherwise the
    top-level keys as one group."""
    key_groups = rule.get("key_groups")
    if isinstance(key_groups, list) and key_groups:
        return tuple(frozenset(_group_recipients(group)) for group in key_groups)
    found = {recipient_id("age", v) for v in _split(rule.get("age"))}
    found |= {recipient_id("pgp", v) for v in _split(rule.get("pgp"))}
    # `ARN+ROLE_ARN` assumes a role; sops records the role apart from the key's ARN.
    found |= {recipient_id("kms", v.split("+", 1)[0]) for v in _split(rule.get("kms"))}
    found |= {recipient_id("gcp_kms", v) for v in _split(rule.get("gcp_kms"))}
    uris = _split(rule.get("azure_keyvault")) + _split(rule.get("hc_vault_transit_uri"))
    found |= {recipient_of_member_key(uri) for uri in uris}
    return (frozenset(found),)


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


def first_matching_rule(rules: Sequence[CreationRule], relpath: str) -> CreationRule | None:
    """The rule sops would use for `relpath`: the first whose path_regex matches."""
    if len(rules) >= _SET_FROM:
        matched = _RuleSet.of(rules).first(relpath)
        if matched is not None:
            return matched
    # Few rules; or none matched in the set, or the set could not be built: rule by rule,
    # so a set that ran out of memory (which RE2 reports as no match) never decides alone.
    return next((rule for rule in rules if rule.matches(relpath)), None)


# From this many rules on, every path_regex is matched in one pass: one rule per set of keys is
# the layout `connc keys sync` writes, and a file matched against each of a thousand rules in
# turn would make validate quadratic in the size of the repository.
_SET_FROM = 16


class _RuleSet:
    """All the rules' patterns in one RE2 set: one search per path answers which match."""

    _last: tuple[Sequence[CreationRule], _RuleSet] | None = None

    def __init__(self, rules: Sequence[CreationRule]) -> None:
        import re2

        options = re2.Options()
        options.log_errors = False
        options.never_capture = True
        options.max_mem = 64 << 20  # RE2's 8 MB default cannot compile a few thousand rules
        self._positions: list[int] = []  # the set's pattern number -> the rule's index
        self._catch_all: int | None = None  # the first rule without a path_regex
        self._set: Any = re2.Set.SearchSet(options)
        for index, rule in enumerate(rules):
            if rule.path_regex is None:
                self._catch_all = index if self._catch_all is None else self._catch_all
            else:  # compiled once already (PathRegex), so RE2 accepts it here too
                self._set.Add(rule.path_regex.pattern)
                self._positions.append(index)
        try:
            self._set.Compile()
        except re2.error:
            self._set = None  # too large even so: first_matching_rule scans
        self._all = list(rules)

    @classmethod
    def of(cls, rules: Sequence[CreationRule]) -> _RuleSet:
        # One set per list of rules, kept while that same list is passed: validate and diff
        # pass one list for every file. The reference held keeps its id from being reused.
        if cls._last is None or cls._last[0] is not rules:
            cls._last = (rules, cls(rules))
        return cls._last[1]

    def first(self, relpath: str) -> CreationRule | None:
        """The first matching rule, or None: no match, or no answer from the set."""
        if self._set is None:
            return None
        matched = self._set.Match(relpath.encode("utf-8", "surrogateescape"))
        if not matched:
            return None
        first: int = min(self._positions[i] for i in matched)
        if self._catch_all is not None:
            first = min(first, self._catch_all)
        return self._all[first]
