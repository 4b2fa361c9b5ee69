"""What `.sops.yaml` says a file should be encrypted to: its creation rules, matched as sops
matches them. Keyless, like `metadata`, which reads what a file records.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, Protocol

from connc.sops.recipients import (
    NO_KEY_GROUPS,
    KeyGroups,
    is_threshold,
    recipient_id,
    recipient_of_member_key,
)


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
    # Imported here: importing this module (render's start-up does) loads no RE2 until a rule
    # is read.
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
        if threshold is not None and not is_threshold(threshold):
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


def prepare_matching(rules: Sequence[CreationRule]) -> None:
    """Build now what `first_matching_rule` matches `rules` with (for many rules, one RE2
    set): in validate's parent, before the fork, so that the workers inherit one set instead
    of each compiling its own."""
    if len(rules) >= _SET_FROM:
        _RuleSet.of(rules)


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
