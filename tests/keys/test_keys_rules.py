"""The derived creation rules (keys/rules.py): .sops.yaml edited as text, everything the user
wrote kept, the derived block ahead of the catch-all, read back by sops' rules reader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from connc import documents
from connc.encryption import load_rules
from connc.errors import Refused
from connc.keys import rules
from connc.sops.rules import first_matching_rule, read_rules

A = "age:age1aaaa"
B = "age:age1bbbb"
USER_RULES = """\
# Our sops rules: keep this header.
creation_rules:
  # secrets of the deploy scripts, not connc's
  - path_regex: ^secrets/.*\\.yaml$
    age: age1other   # a key of ops
  # A connection added later (connc new) until it gets a rule of its own.
  - path_regex: ^connections\\.d/.*\\.sops\\.yaml$
    encrypted_regex: ^credential$
    mac_only_encrypted: true
    age: age1aaaa
stores:
  yaml:
    indent: 2
"""
PATHS = ["connections.d/db.sops.yaml", "connections.d/web.sops.yaml",
         "connections.d/cache.sops.yaml"]


def rewrite(text: str, keys: Mapping[str, frozenset[str]]) -> rules.Rewrite:
    document = documents.parse(text)
    return rules.rewrite(text, document, read_rules(document.data), keys,
                         {A: "admin, user:alice", B: "pipeline:deploy"}, PATHS)


def test_the_block_goes_ahead_of_the_catch_all_and_everything_else_stays() -> None:
    done = rewrite(USER_RULES, {"db": frozenset({A, B}), "web": frozenset({A, B}),
                                "cache": frozenset({A})})
    new = done.text.splitlines(keepends=True)
    begin = new.index("  # connc keys sync: one rule per set of keys, derived from members.yaml, "
                      "pipelines.d/ and\n")
    # The block sits after the secrets/ rule and before the catch-all and its own comment.
    end = new.index("  # A connection added later (connc new) until it gets a rule of its own.\n")
    assert new[:begin] + new[end:] == USER_RULES.splitlines(keepends=True)
    assert new[begin + 3] == "  - path_regex: ^connections\\.d/cache\\.sops\\.yaml$\n"
    assert "  - path_regex: ^connections\\.d/(db|web)\\.sops\\.yaml$\n" in new[begin:end]
    assert done.derived == 2 and done.ahead_of == 4
    assert "  # connc keys sync: keys of admin, pipeline:deploy, user:alice\n" in new
    parsed = read_rules(documents.parse(done.text).data)
    for path, expected in zip(PATHS, ({A, B}, {A, B}, {A}), strict=True):
        rule = first_matching_rule(parsed, path)
        assert rule is not None and rule.recipients == expected
        assert len(rule.key_groups.groups) == 1


def test_a_second_sync_replaces_its_own_block_and_is_stable() -> None:
    first = rewrite(USER_RULES, {"db": frozenset({A, B}), "web": frozenset({A})})
    again = rewrite(first.text, {"db": frozenset({A, B}), "web": frozenset({A})})
    assert again.text == first.text
    changed = rewrite(first.text, {"db": frozenset({A}), "web": frozenset({A})})
    assert changed.text.count("# connc keys sync: one rule per set") == 1
    assert changed.text.count("path_regex: ^connections\\.d/(db|web)") == 1
    assert "age1bbbb" not in changed.text
    assert changed.text.startswith("# Our sops rules: keep this header.\n")
    assert changed.text.endswith("stores:\n  yaml:\n    indent: 2\n")


def test_rules_of_the_derived_shape_are_recognised_and_others_are_not() -> None:
    assert rules.derived_ids({"path_regex": r"^connections\.d/(a|b-1)\.sops\.yaml$",
                              "encrypted_regex": "^credential$", "mac_only_encrypted": True,
                              "age": "age1x"}) == ["a", "b-1"]
    assert rules.derived_ids({"path_regex": r"^connections\.d/db\.sops\.yaml$",
                              "encrypted_regex": "^credential$", "mac_only_encrypted": True,
                              "age": ["age1x"]}) == ["db"]
    for other in ({"path_regex": r"^connections\.d/.*\.sops\.yaml$",
                   "encrypted_regex": "^credential$", "mac_only_encrypted": True},
                  {"path_regex": r"^connections\.d/db\.sops\.yaml$",
                   "encrypted_regex": "^credential$", "mac_only_encrypted": True,
                   "key_groups": [{"age": ["age1x"]}], "shamir_threshold": 1},
                  {"path_regex": r"^connections\.d/db\.sops\.yaml$", "age": "age1x"}):
        assert rules.derived_ids(other) is None


@pytest.mark.parametrize("key", [
    "age:age1qqqq",
    "pgp:85D77543B3D624B63CEA9E6DBC17301B491B3F21",
    "kms:arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "gcp_kms:projects/p/locations/global/keyRings/r/cryptoKeys/k",
    "azure_kv:https://acme.vault.azure.net/sops-key/0123456789abcdef",
    "hc_vault:https://vault.example.com:8200/sops/transit/firstkey",
])
def test_every_kind_of_key_is_written_so_that_sops_reads_it_back(key: str) -> None:
    done = rewrite(USER_RULES, {"db": frozenset({key, A})})
    rule = first_matching_rule(read_rules(documents.parse(done.text).data), PATHS[0])
    assert rule is not None and rule.recipients == {key, A}


def test_a_key_sops_does_not_know_is_refused() -> None:
    with pytest.raises(Refused, match="not a key sops knows"):
        rewrite(USER_RULES, {"db": frozenset({"unknown:hello"})})


def test_flow_style_rules_are_refused_rather_than_rewritten() -> None:
    text = "creation_rules: [{path_regex: x, age: age1aaaa}]\n"
    with pytest.raises(Refused, match="flow style"):
        rewrite(text, {"db": frozenset({A})})


def test_without_a_catch_all_the_block_is_appended_and_crlf_files_stay_crlf() -> None:
    text = "creation_rules:\r\n  - path_regex: ^secrets/\r\n    age: age1other\r\n"
    done = rewrite(text, {"db": frozenset({A})})
    assert done.text.startswith(text)
    assert "\n" not in done.text.replace("\r\n", "")
    assert done.ahead_of is None


def test_the_rules_of_a_large_estate_are_read(tmp_path: Path) -> None:
    # One rule per set of keys: 4,500 connections, each with a key of its own, make a
    # .sops.yaml over the 1 MiB that connc reads of any other file.
    keys = {f"conn-{n:05d}": frozenset({A, f"age:age1{n:058d}"}) for n in range(4500)}
    paths = [f"connections.d/{cid}.sops.yaml" for cid in keys]
    document = documents.parse(USER_RULES)
    text = rules.rewrite(USER_RULES, document, read_rules(document.data), keys, {},
                         paths).text
    assert len(text.encode()) > documents.MAX_FILE_BYTES
    (tmp_path / ".sops.yaml").write_text(text)
    parsed, found = load_rules(tmp_path)
    assert found == [] and parsed is not None and len(parsed) == 4502
