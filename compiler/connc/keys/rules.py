""".sops.yaml creation rules derived from scope: one rule per set of keys, ahead of the rest.

`connc keys sync` changes who can decrypt a file through sops itself: it writes a creation
rule whose recipients are exactly what the file needs, then runs `sops updatekeys`, so that a
later `sops updatekeys` by hand agrees. The rules it derives have one shape, and that shape
is how they are recognised on the next sync (nothing else marks them):

    - path_regex: ^connections\\.d/(ID|ID...)\\.sops\\.yaml$
      encrypted_regex: ^credential$
      mac_only_encrypted: true
      age: KEY,KEY...            (and pgp, kms, gcp_kms, azure_keyvault, hc_vault_transit_uri)

The file is edited as text, not re-serialised: every other rule, comment and setting stays as
the user wrote it, byte for byte. The derived rules go, as one block, ahead of the first other
rule that covers connection files (usually the catch-all `^connections\\.d/.*\\.sops\\.yaml$`,
which `connc new` relies on until the next sync) and the comments above it. Comment lines that
start with `# connc keys sync` are the block's own and are rewritten with it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from connc import documents, repository
from connc.encryption import EXPECTED_REGEX
from connc.errors import Refused
from connc.findings import printable
from connc.sops.recipients import shown_recipient
from connc.sops.rules import CreationRule, first_matching_rule, read_rules

MARK = "# connc keys sync"
_HEADER = (f"{MARK}: one rule per set of keys, derived from members.yaml, pipelines.d/ and",
           f"{MARK}: connc.yaml; change those and run `connc keys sync` (edits here are replaced)")
_ID = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_DERIVED_PATH = re.compile(rf"\^connections\\\.d/(?:\(({_ID}(?:\|{_ID})*)\)|({_ID}))"
                           rf"\\\.sops\\\.yaml\$")
# sops' creation-rule field for each kind of recipient (`sops.recipients.recipient_id`).
_FIELDS = {"age": "age", "pgp": "pgp", "kms": "kms", "gcp_kms": "gcp_kms",
           "azure_kv": "azure_keyvault", "hc_vault": "hc_vault_transit_uri"}
_SETTINGS = {"path_regex", "encrypted_regex", "mac_only_encrypted", *_FIELDS.values()}
_SHOWN_HOLDERS = 6


def derived_ids(rule: object) -> list[str] | None:
    """The connection ids of a rule of the derived shape, or None for any other rule."""
    if not isinstance(rule, dict) or not set(rule) <= _SETTINGS:
        return None
    if rule.get("encrypted_regex") != EXPECTED_REGEX or rule.get("mac_only_encrypted") is not True:
        return None
    match = _DERIVED_PATH.fullmatch(str(rule.get("path_regex", "")))
    if match is None:
        return None
    return (match.group(1) or match.group(2)).split("|")


def rule_value(recipient: str) -> tuple[str, str]:
    """(creation-rule field, value) for a recipient as sops records it (`age:age1...`)."""
    kind, _, value = recipient.partition(":")
    if kind == "azure_kv":  # vault URL / key name / version
        url, name, version = value.rsplit("/", 2)
        value = f"{url}/keys/{name}/{version}"
    elif kind == "hc_vault":  # address / engine path / key name
        match = re.fullmatch(r"(https?://[^/]+)/(.+)/([^/]+)", value)
        if match is None:
            raise Refused(f"cannot write the Vault key {printable(recipient)} into a creation "
                          f"rule")
        value = f"{match.group(1)}/v1/{match.group(2)}/keys/{match.group(3)}"
    elif kind not in _FIELDS:
        raise Refused(f"{printable(shown_recipient(value))!r} is not a key sops knows (age1..., "
                      f"a KMS ARN, a PGP fingerprint, ...); fix it in members.yaml, pipelines.d/ "
                      f"or connc.yaml")
    return _FIELDS[kind], value


@dataclasses.dataclass(frozen=True)
class Rewrite:
    text: str  # the new .sops.yaml
    rules: list[CreationRule]  # as read back from it
    derived: int  # how many rules the block holds
    ahead_of: int | None  # the 1-based number, in the new file, of the rule the block precedes


def rewrite(text: str, document: documents.Document, rules: Sequence[CreationRule],
            keys: Mapping[str, frozenset[str]], holders: Mapping[str, str],
            connection_paths: Sequence[str]) -> Rewrite:
    """The .sops.yaml whose derived rules give each connection id of `keys` exactly those
    recipients; `holders` names whose each key is (for the comment above each rule)."""
    items = _rule_items(document)
    derived = [derived_ids(document.data["creation_rules"][i]) is not None
               for i in range(len(items))]
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if text.endswith("\r\n") or "\r\n" in text[:4096] else "\n"
    dropped: set[int] = set()
    for index, item in enumerate(items):
        if derived[index]:
            dropped.update(range(item.start_mark.line, _last_line(item) + 1))
    dropped.update(i for i, line in enumerate(lines) if line.strip().startswith(MARK))
    at, ahead = _insertion(items, derived, rules, lines, dropped, connection_paths)
    dash, indent = _indentation(items, lines)
    block = _block(keys, holders, dash, indent, newline)
    out = [line for i, line in enumerate(lines[:at]) if i not in dropped]
    if out and not out[-1].endswith(("\n", "\r")):
        out[-1] += newline
    out += block
    out += [line for i, line in enumerate(lines[at:], at) if i not in dropped]
    new_text = "".join(out)
    new_rules = read_rules(documents.parse(new_text).data)
    groups = len({frozenset(k) for k in keys.values()})
    ahead_of = None if ahead is None else ahead - sum(derived[:ahead]) + groups + 1
    return Rewrite(new_text, new_rules, groups, ahead_of)


def check(before: Sequence[CreationRule], after: Sequence[CreationRule],
          keys: Mapping[str, frozenset[str]], connection_paths: Sequence[str]) -> None:
    """Every connection file is decided by the rule it should be: a synced one by a rule with
    exactly its keys in one group, any other by a rule with the same key groups as before."""
    for relpath in connection_paths:
        connection_id = repository.stem(relpath, repository.CONNECTION_SUFFIX)
        rule = first_matching_rule(after, relpath)
        if connection_id in keys:
            ok = rule is not None and len(rule.key_groups.groups) == 1 \
                and rule.recipients == keys[connection_id]
        else:
            old = first_matching_rule(before, relpath)
            ok = (rule.key_groups.canonical() if rule else None) == \
                (old.key_groups.canonical() if old else None)
        if not ok:  # a bug in the derivation, never the user's doing
            raise AssertionError(f"the derived .sops.yaml decides {relpath} wrongly")


def _rule_items(document: documents.Document) -> list[Node]:
    data = document.data
    sequence = next((value for key, value in document.root.value
                     if isinstance(key, ScalarNode) and key.value == "creation_rules"), None) \
        if isinstance(document.root, MappingNode) else None
    if not isinstance(data, dict) or not isinstance(sequence, SequenceNode):
        raise Refused(".sops.yaml has no `creation_rules` list", path=repository.SOPS_CONFIG)
    if sequence.flow_style:
        raise Refused("`creation_rules` is written in flow style ([...]); write it as a block "
                      "list (one `- path_regex: ...` per rule) so connc can add rules to it",
                      path=repository.SOPS_CONFIG)
    return list(sequence.value)


def _last_line(node: Node) -> int:
    """The 0-based line of the node's last character (its last scalar's end)."""
    while isinstance(node, (MappingNode, SequenceNode)) and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _insertion(items: list[Node], derived: list[bool], rules: Sequence[CreationRule],
               lines: list[str], dropped: set[int], connection_paths: Sequence[str]
               ) -> tuple[int, int | None]:
    """(the line the block goes before, the index of the rule it precedes, if any): ahead of
    the first other rule that covers a connection file, and of the comments above it."""
    probes = [*connection_paths, "connections.d/example.sops.yaml"]
    for index, item in enumerate(items):
        if derived[index] or not any(rules[index].matches(path) for path in probes):
            continue
        at = item.start_mark.line
        while at > 0 and at - 1 not in dropped and lines[at - 1].strip().startswith("#") \
                and not _is_rule_line(items, at - 1):
            at -= 1
        return at, index
    if any(derived):
        return items[derived.index(True)].start_mark.line, None
    if items:
        return _last_line(items[-1]) + 1, None
    raise Refused("`creation_rules` is empty; add the rule for connections.d/ that `connc init` "
                  "writes first", path=repository.SOPS_CONFIG)


def _is_rule_line(items: list[Node], line: int) -> bool:
    return any(item.start_mark.line <= line <= _last_line(item) for item in items)


def _indentation(items: list[Node], lines: list[str]) -> tuple[int, int]:
    """(column of a rule's `-`, column of its keys), as the file's first rule has them."""
    if not items:
        return 2, 4
    first = items[0]
    line = lines[first.start_mark.line]
    column = first.start_mark.column
    dash = line.rfind("-", 0, column)
    return (dash if dash >= 0 else max(column - 2, 0)), column


def _block(keys: Mapping[str, frozenset[str]], holders: Mapping[str, str], dash: int,
           indent: int, newline: str) -> list[str]:
    by_set: dict[frozenset[str], list[str]] = {}
    for connection_id in sorted(keys):
        by_set.setdefault(keys[connection_id], []).append(connection_id)
    if not by_set:
        return []
    pad, keypad = " " * dash, " " * indent
    out = [f"{pad}{line}{newline}" for line in _HEADER]
    # Ordered by their first id, so that the file changes little from one sync to the next.
    for recipients, ids in sorted(by_set.items(), key=lambda item: item[1][0]):
        names = sorted({h for r in recipients for h in holders.get(r, "").split(", ") if h})
        shown = ", ".join(names[:_SHOWN_HOLDERS])
        if len(names) > _SHOWN_HOLDERS:
            shown += f" and {len(names) - _SHOWN_HOLDERS} more"
        pattern = ids[0] if len(ids) == 1 else f"({'|'.join(ids)})"
        out.append(f"{pad}{MARK}: keys of {shown or 'nobody declared'}{newline}")
        out.append(f"{pad}- path_regex: ^connections\\.d/{pattern}\\.sops\\.yaml${newline}")
        out.append(f"{keypad}encrypted_regex: {EXPECTED_REGEX}{newline}")
        out.append(f"{keypad}mac_only_encrypted: true{newline}")
        fields: dict[str, list[str]] = {}
        for recipient in sorted(recipients):
            field, value = rule_value(recipient)
            fields.setdefault(field, []).append(value)
        for field, values in fields.items():
            joined = ",".join(values)
            shown_value = joined if re.fullmatch(r"[A-Za-z0-9,]+", joined) else json.dumps(joined)
            out.append(f"{keypad}{field}: {shown_value}{newline}")
    return out
