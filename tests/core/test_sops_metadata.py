"""connc.sops.metadata, .recipients and .rules: what sops records in a file, who it is
encrypted to, and what `.sops.yaml` creation rules say, all keyless."""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import strategies as st

from connc.sops.metadata import enc_type, fingerprint, is_encrypted_value, read_metadata
from connc.sops.recipients import (
    KeyGroups,
    effective_threshold,
    recipient_id,
    recipient_of_member_key,
    threshold_after_updatekeys,
)
from connc.sops.rules import CreationRule, PathRegex, RulesError, first_matching_rule, read_rules
from kit.build import TEST_RECIPIENT, connection, make_repo, sops_rules
from kit.keys import new_age_key

AGE_B = "age1ksezmpplrwq0m32tfmnc9a0mhtxtd6tz7uhjl9a3p95ds70hyelshrzjas"
PGP_FP = "85D77543B3D624B63CEA9E6DBC17301B491B3F21"
KMS_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE_ARN = "arn:aws:iam::111122223333:role/sops"
GCP_KEY = "projects/acme/locations/global/keyRings/sops/cryptoKeys/connc"
AZURE_URL = "https://acme.vault.azure.net"
AZURE_KEY = f"{AZURE_URL}/keys/sops-key/0123456789abcdef"
VAULT_URI = "https://vault.example.com:8200/v1/transit/keys/connc"


def rules_of(*raw: dict[str, Any]) -> list[CreationRule]:
    return read_rules({"creation_rules": list(raw)})


def recipients_of(rule: dict[str, Any]) -> frozenset[str]:
    return rules_of(rule)[0].recipients


# ---------------------------------------------------------------------------- matching


@pytest.mark.parametrize(("pattern", "relpath", "matches"), [
    # Go's regexp.MatchString searches: an unanchored pattern matches anywhere in the path.
    (r"\.sops\.yaml$", "connections.d/a.sops.yaml", True),
    (r"connections\.d/", "connections.d/a.sops.yaml", True),
    (r"sops", "connections.d/a.sops.yaml", True),
    (r"^connections\.d/.*\.sops\.yaml$", "connections.d/a.sops.yaml", True),
    (r"^connections\.d/", "sub/connections.d/a.sops.yaml", False),
    (r"\.sops\.yaml$", "connections.d/a.sops.yaml.bak", False),
    (r"^pipelines\.d/", "connections.d/a.sops.yaml", False),
    (r"", "anything", True),  # sops treats an empty path_regex as "every file"
])
def test_path_regex_is_a_search_like_go(pattern: str, relpath: str, matches: bool) -> None:
    assert rules_of({"path_regex": pattern, "age": TEST_RECIPIENT})[0].matches(relpath) is matches


def test_a_rule_without_path_regex_matches_everything() -> None:
    assert rules_of({"age": TEST_RECIPIENT})[0].matches("connections.d/x.sops.yaml")


def test_first_matching_rule_wins() -> None:
    rules = rules_of(
        {"path_regex": r"^pipelines\.d/", "age": "age1first"},
        {"path_regex": r"\.sops\.yaml$", "age": "age1second"},
        {"path_regex": r"connections", "age": "age1third"},
        {"age": "age1catchall"},
    )
    assert first_matching_rule(rules, "connections.d/a.sops.yaml") is rules[1]
    assert first_matching_rule(rules, "connections.d/a.yaml") is rules[2]
    assert first_matching_rule(rules, "other.txt") is rules[3]
    assert first_matching_rule(rules[:1], "connections.d/a.sops.yaml") is None


def test_rule_settings_are_read() -> None:
    rule = read_rules(sops_rules())[0]
    assert rule.encrypted_regex == "^credential$"
    assert rule.mac_only_encrypted is True
    assert rule.recipients == {f"age:{TEST_RECIPIENT}"}
    bare = rules_of({"age": TEST_RECIPIENT, "mac_only_encrypted": "yes"})[0]
    assert (bare.encrypted_regex, bare.mac_only_encrypted) == (None, False)


# ---------------------------------------------------------------------------- recipient forms


@pytest.mark.parametrize("age", [
    f"{TEST_RECIPIENT},{AGE_B}",
    f" {TEST_RECIPIENT} ,\n {AGE_B},",  # sops trims and skips empty parts
    [TEST_RECIPIENT, AGE_B],
])
def test_age_as_comma_string_or_list(age: object) -> None:
    assert recipients_of({"age": age}) == {f"age:{TEST_RECIPIENT}", f"age:{AGE_B}"}


def test_every_top_level_recipient_kind() -> None:
    assert recipients_of({
        "pgp": f"{PGP_FP.lower()}",
        "kms": f"{KMS_ARN}+{ROLE_ARN}",  # the role is recorded apart from the key
        "gcp_kms": GCP_KEY,
        "azure_keyvault": AZURE_KEY,
        "hc_vault_transit_uri": VAULT_URI,
    }) == {
        f"pgp:{PGP_FP}",
        f"kms:{KMS_ARN}",
        f"gcp_kms:{GCP_KEY}",
        f"azure_kv:{AZURE_URL}/sops-key/0123456789abcdef",
        "hc_vault:https://vault.example.com:8200/transit/connc",
    }


KEY_GROUPS_RULE: dict[str, Any] = {"key_groups": [
    {"age": [TEST_RECIPIENT], "pgp": [PGP_FP], "kms": [{"arn": KMS_ARN, "role": ROLE_ARN}]},
    {"gcp_kms": [{"resource_id": GCP_KEY}],
     "azure_keyvault": [{"vaultUrl": AZURE_URL, "key": "sops-key",
                         "version": "0123456789abcdef"}],
     "hc_vault": [VAULT_URI],
     "merge": [{"age": [AGE_B]}]},
]}
ALL_KINDS = {
    f"age:{TEST_RECIPIENT}", f"age:{AGE_B}", f"pgp:{PGP_FP}", f"kms:{KMS_ARN}",
    f"gcp_kms:{GCP_KEY}", f"azure_kv:{AZURE_URL}/sops-key/0123456789abcdef",
    "hc_vault:https://vault.example.com:8200/transit/connc",
}


def test_key_groups_with_every_kind_and_merge() -> None:
    assert recipients_of(KEY_GROUPS_RULE) == ALL_KINDS


@pytest.mark.parametrize("rule", [
    {"key_groups": 3},
    {"key_groups": [3, "age1x", None]},
    {"key_groups": [{"age": 3, "pgp": {"a": 1}, "kms": ["not-a-mapping"], "merge": "x"}]},
    {"age": 3, "pgp": None, "kms": {"arn": KMS_ARN}},
])
def test_malformed_recipient_entries_are_ignored_not_fatal(rule: dict[str, Any]) -> None:
    assert recipients_of(rule) == set()


# ---------------------------------------------------------------------------- rule errors


@pytest.mark.parametrize(("data", "message"), [
    (None, "no `creation_rules` list"),
    (["creation_rules"], "no `creation_rules` list"),
    ({"creation_rules": {"age": "x"}}, "no `creation_rules` list"),
    ({"creation_rules": [{"age": "x"}, "age1"]}, "creation rule 2 is not a mapping"),
    ({"creation_rules": [{"path_regex": "(["}]}, "creation rule 1: path_regex does not compile"),
])
def test_unusable_rules_raise_with_the_rule_line(data: object, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        read_rules(data, lambda path: 10 + int(path[1]))
    assert message in caught.value.message
    assert caught.value.line in (1, 10, 11)


# ---------------------------------------------------------------------------- sops metadata


def test_metadata_recipients_of_every_kind_equal_the_rule_recipients() -> None:
    block = {
        "kms": [{"arn": KMS_ARN, "role": ROLE_ARN, "enc": "wrapped-kms"}],
        "gcp_kms": [{"resource_id": GCP_KEY, "enc": "wrapped-gcp"}],
        "azure_kv": [{"vault_url": AZURE_URL, "name": "sops-key", "version": "0123456789abcdef",
                      "enc": "wrapped-azure"}],
        "hc_vault": [{"vault_address": "https://vault.example.com:8200",
                      "engine_path": "transit", "key_name": "connc", "enc": "wrapped-vault"}],
        "age": [{"recipient": TEST_RECIPIENT, "enc": "wrapped-age\n"},
                {"recipient": AGE_B, "enc": "wrapped-age-b"}],
        "pgp": [{"fp": PGP_FP, "enc": "wrapped-pgp"}],
        "lastmodified": "2026-01-01T00:00:00Z",
        "mac": "ENC[...]",
        "encrypted_regex": "^credential$",
        "mac_only_encrypted": True,
    }
    metadata = read_metadata(block)
    assert metadata.recipients == ALL_KINDS == recipients_of(KEY_GROUPS_RULE)
    assert fingerprint("wrapped-age") in metadata.wrapped_keys and len(metadata.wrapped_keys) == 7
    assert (metadata.encrypted_regex, metadata.mac_only_encrypted) == ("^credential$", True)
    assert metadata.problems == ()


def test_metadata_inside_key_groups() -> None:
    block = {"key_groups": [{"age": [{"recipient": TEST_RECIPIENT, "enc": "w1"}]},
                            {"pgp": [{"fp": PGP_FP, "enc": "w2"}]}],
             "mac": "x", "lastmodified": "y"}
    metadata = read_metadata(block)
    assert metadata.recipients == {f"age:{TEST_RECIPIENT}", f"pgp:{PGP_FP}"}
    assert metadata.wrapped_keys == {fingerprint("w1"), fingerprint("w2")}


@pytest.mark.parametrize(("block", "problems"), [
    ([1, 2], ["the sops block is not a mapping"]),
    ({}, ["no recipients", "missing `mac`", "missing `lastmodified`"]),
    ({"age": [{"enc": "x"}], "mac": "m", "lastmodified": "l"},
     ["a `age` entry has no key identifier", "no recipients"]),
    ({"age": 3, "key_groups": "x", "mac": "m", "lastmodified": "l"}, ["no recipients"]),
    ({"azure_kv": [{"vault_url": AZURE_URL, "name": "k"}], "mac": "m", "lastmodified": "l"},
     ["a `azure_kv` entry has no key identifier", "no recipients"]),
])
def test_metadata_problems(block: object, problems: list[str]) -> None:
    found = read_metadata(block).problems
    assert len(found) == len(problems)
    for problem, expected in zip(found, problems, strict=True):
        assert problem.startswith(expected)


def test_metadata_written_by_real_sops_matches_its_rule(tmp_path: Path) -> None:
    _key, other = new_age_key(tmp_path)
    rules = sops_rules(TEST_RECIPIENT, other)
    root = make_repo(tmp_path / "repo", rules=rules, connections={"gl": connection("gl")})
    data = yaml.safe_load((root / "connections.d/gl.sops.yaml").read_text())
    metadata = read_metadata(data["sops"])
    rule = first_matching_rule(read_rules(rules), "connections.d/gl.sops.yaml")
    assert rule is not None
    assert metadata.recipients == rule.recipients == {f"age:{TEST_RECIPIENT}", f"age:{other}"}
    assert (metadata.encrypted_regex, metadata.mac_only_encrypted) == ("^credential$", True)
    assert len(metadata.wrapped_keys) == 2
    assert metadata.problems == ()
    assert enc_type(data["credential"]["token"]) == "str"


# ---------------------------------------------------------------------------- member keys


@pytest.mark.parametrize(("written", "expected"), [
    (TEST_RECIPIENT, f"age:{TEST_RECIPIENT}"),
    (f"  {TEST_RECIPIENT}\n", f"age:{TEST_RECIPIENT}"),
    (KMS_ARN, f"kms:{KMS_ARN}"),
    (GCP_KEY, f"gcp_kms:{GCP_KEY}"),
    (AZURE_KEY, f"azure_kv:{AZURE_URL}/sops-key/0123456789abcdef"),
    (VAULT_URI, "hc_vault:https://vault.example.com:8200/transit/connc"),
    (PGP_FP.lower(), f"pgp:{PGP_FP}"),
    ("8 5D77543B3D624B63CEA9E6DBC17301B491B3F21", f"pgp:{PGP_FP}"),
    (f"pgp:{PGP_FP.lower()}", f"pgp:{PGP_FP}"),
    ("kms:anything", "kms:anything"),
    ("made-up", "unknown:made-up"),
    ("nosuchkind:x", "unknown:nosuchkind:x"),
])
def test_member_keys_take_the_form_sops_records(written: str, expected: str) -> None:
    assert recipient_of_member_key(written) == expected


def test_pgp_fingerprints_compare_without_spaces_or_case() -> None:
    assert recipient_id("pgp", "85d7 7543 b3d6") == "pgp:85D77543B3D6"


# ---------------------------------------------------------------------------- ENC values


@pytest.mark.parametrize(("value", "kind"), [
    ("ENC[AES256_GCM,data:YWJj,iv:aXY=,tag:dGFn,type:str]", "str"),
    ("ENC[AES256_GCM,data:,iv:aXY=,tag:dGFn,type:str]", "str"),
    ("ENC[AES256_GCM,data:MTI=,iv:aXY=,tag:dGFn,type:int]", "int"),
    ("ENC[AES256_GCM,data:YWJj,iv:aXY=,type:str]", None),
    ("ENC[garbage]", None),
])
def test_enc_values(value: str, kind: str | None) -> None:
    assert is_encrypted_value(value)
    assert enc_type(value) == kind


@pytest.mark.parametrize("value", ["plain", "enc[AES256_GCM]", 3, None, ["ENC["]])
def test_not_enc_values(value: object) -> None:
    assert not is_encrypted_value(value)


def test_a_fingerprint_is_of_the_bytes_not_their_text() -> None:
    # The last base64 character carries unused bits: sops decrypts both texts alike.
    assert fingerprint("AB==") == fingerprint("AC==")
    armoured = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\nZW5j\n-----END AGE ENCRYPTED FILE-----\n"
    assert fingerprint(armoured) == fingerprint(armoured.replace("\n", "\r\n"))
    assert fingerprint(armoured) == fingerprint("YWdlZW5j")
    assert fingerprint("YWdl") != fingerprint("YWdm")


# ---------------------------------------------------------------------------- path_regex is RE2
# sops matches path_regex with Go's regexp (RE2 syntax, linear time). Each expectation below was
# checked against the sops binary the tests use (3.11): a rule it accepts, or one it refuses
# with "can not compile regexp".


@pytest.mark.parametrize(("pattern", "relpath", "matches"), [
    (r"^connections\.d/.*\.sops\.yaml\z", "connections.d/a.sops.yaml", True),
    (r"^connections\.d/(?i)\pL[\pL\pN-]*\.SOPS\.yaml$", "connections.d/Gitlab-2.sops.yaml", True),
    (r"^connections\.d/(?i)\pL[\pL\pN-]*\.SOPS\.yaml$", "connections.d/-x.sops.yaml", False),
    (r"^connections\.d/\p{Greek}", "connections.d/\u03b1.sops.yaml", True),
    (r"^(?<dir>connections)\.d/", "connections.d/a.sops.yaml", True),
    (r"^(?P<dir>connections)\.d/", "connections.d/a.sops.yaml", True),
    (r"^[[:alpha:]]+\.d/", "connections.d/a.sops.yaml", True),
    (r"\Qconnections.d/\E", "connections.d/a.sops.yaml", True),
    (r"\Qconnections.d/\E", "connectionsxd/a.sops.yaml", False),
    (r"(?U)^c.+\.d/", "connections.d/a.sops.yaml", True),
])
def test_go_syntax_that_python_refused_now_matches(pattern: str, relpath: str,
                                                   matches: bool) -> None:
    assert rules_of({"path_regex": pattern, "age": TEST_RECIPIENT})[0].matches(relpath) is matches


@pytest.mark.parametrize("pattern", [
    r"\.sops\.yaml\z", r"^connections\.d/(?i)x", r"\pL", r"^(?<dir>connections)",
])
def test_those_patterns_python_re_refuses(pattern: str) -> None:
    """Why connc no longer compiles path_regex with `re`: a valid sops rule was an error."""
    with pytest.raises(re.error):
        re.compile(pattern)


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"^connections\.d/(?!tmp-).*\.sops\.yaml$", "lookahead"),
    (r"(?<=connections\.d/)x", "lookahead"),
    (r"^(connections)\.d/\1", "backreference"),
    (r"\.sops\.yaml\Z", r"`\z`, not `\Z`"),
    (r"connections\.d/\C", r"\C"),  # C++ RE2 takes it, Go does not
    (r"[\C]", r"\C"),
    (r"\Q\\E\C", r"\C"),  # \Q...\E ends at the first \E
    (r"a{1001}", "repetition"),
    (r"(\.sops\.yaml$", "missing )"),
])
def test_patterns_re2_rejects_are_rule_errors(pattern: str, reason: str,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RulesError) as caught:
        read_rules({"creation_rules": [{"age": "age1x"}, {"path_regex": pattern}]},
                   lambda path: 10 + int(path[1]))
    message = caught.value.message
    assert message.startswith("creation rule 2: path_regex does not compile: RE2 (sops) rejects")
    assert reason in message
    assert caught.value.line == 11
    assert capfd.readouterr().err == ""  # RE2 logs parse errors itself unless told not to


@pytest.mark.parametrize("pattern", [r"\Q\C\E", r"\\C", r"x\Qa\\E"])
def test_a_quoted_or_escaped_c_is_no_byte_class(pattern: str) -> None:
    assert rules_of({"path_regex": pattern})[0].path_regex is not None


def test_a_pathological_pattern_runs_in_linear_time() -> None:
    # Python's re backtracks through every split of the letters: minutes for 44 of them.
    rule = rules_of({"path_regex": r"^connections\.d/(a|aa)+b", "age": TEST_RECIPIENT})[0]
    relpath = "connections.d/" + "a" * 44 + ".sops.yaml"
    started = time.monotonic()
    for _ in range(1000):
        assert not rule.matches(relpath)
    assert rule.matches("connections.d/" + "a" * 44 + "b.sops.yaml")
    assert time.monotonic() - started < 2


def test_a_rule_keeps_its_pattern_text_and_pickles() -> None:
    """diff shows `rule.path_regex.pattern`; validate's workers receive rules pickled."""
    rule = rules_of({"path_regex": r"^connections\.d/\pL", "age": TEST_RECIPIENT})[0]
    assert rule.path_regex is not None and rule.path_regex.pattern == r"^connections\.d/\pL"
    copy = pickle.loads(pickle.dumps(rule))
    assert copy == rule and copy.matches("connections.d/x.sops.yaml")
    assert not copy.matches("connections.d/1.sops.yaml")


def test_a_file_name_that_is_not_utf8_is_matched_by_its_bytes() -> None:
    relpath = b"connections.d/\xff.sops.yaml".decode("utf-8", "surrogateescape")
    assert rules_of({"path_regex": r"\.sops\.yaml$"})[0].matches(relpath)
    assert not rules_of({"path_regex": r"^connections\.d/\pL"})[0].matches(relpath)


# ---------------------------------------------------------------------------- key groups

AGE_C = "age1ukhaeypmjfav204lpj23thdfcq7slnf5srpu4g9ct9wgl2dmvvlqcwcn3s"
A, B, C = f"age:{TEST_RECIPIENT}", f"age:{AGE_B}", f"age:{AGE_C}"


def groups_of(rule: dict[str, Any]) -> KeyGroups:
    return rules_of(rule)[0].key_groups


def test_top_level_keys_are_one_group() -> None:
    groups = groups_of({"age": f"{TEST_RECIPIENT},{AGE_B}", "pgp": PGP_FP})
    assert groups.groups == (frozenset({A, B, f"pgp:{PGP_FP}"}),)
    assert groups.threshold == 1


def test_key_groups_with_merge_and_threshold() -> None:
    groups = groups_of({**KEY_GROUPS_RULE, "shamir_threshold": 2})
    assert len(groups.groups) == 2 and groups.threshold == 2
    assert groups.groups[1] >= {B, f"gcp_kms:{GCP_KEY}"}  # `merge` joins its group


def test_key_groups_win_over_top_level_keys_as_in_sops() -> None:
    # sops 3.11 encrypts such a rule to A and B only: C is silently dropped.
    rule = rules_of({"age": AGE_C, "key_groups": [{"age": [TEST_RECIPIENT]}, {"age": [AGE_B]}]})[0]
    assert rule.recipients == {A, B}
    assert rule.key_groups.canonical() == KeyGroups((frozenset({A}), frozenset({B}))).canonical()


@pytest.mark.parametrize(("count", "recorded", "threshold"), [
    (1, 0, 1), (1, 3, 1),  # one group: no Shamir split, any key decrypts
    (2, 0, 2), (3, 0, 3),  # absent: every group
    (3, 2, 2),
])
def test_effective_threshold(count: int, recorded: int, threshold: int) -> None:
    assert effective_threshold(count, recorded) == threshold


def test_group_order_does_not_matter_but_a_repeated_group_does() -> None:
    ab = KeyGroups((frozenset({A}), frozenset({B})))
    assert ab.canonical() == KeyGroups((frozenset({B}), frozenset({A})), 2).canonical()
    assert ab.canonical() != KeyGroups((frozenset({A}), frozenset({A}), frozenset({B}))).canonical()


@pytest.mark.parametrize(("file", "rule", "after"), [
    (KeyGroups((frozenset({A, B}),)), KeyGroups((frozenset({A}), frozenset({B})), 2), 2),
    (KeyGroups((frozenset({A, B}),)),
     KeyGroups((frozenset({A}), frozenset({B}), frozenset({C})), 2), 3),
    (KeyGroups((frozenset({A}), frozenset({B}), frozenset({C})), 2),
     KeyGroups((frozenset({A}), frozenset({B}), frozenset({C})), 3), 2),
    (KeyGroups((frozenset({A}), frozenset({B}), frozenset({C})), 3),
     KeyGroups((frozenset({A}), frozenset({B})), 2), 2),
])
def test_updatekeys_keeps_the_files_threshold(file: KeyGroups, rule: KeyGroups, after: int) -> None:
    assert threshold_after_updatekeys(file, rule) == after


def test_shamir_threshold_must_be_a_number() -> None:
    with pytest.raises(RulesError, match="shamir_threshold must be a whole number"):
        rules_of({"age": TEST_RECIPIENT, "shamir_threshold": "2"})
    assert groups_of({"age": TEST_RECIPIENT, "shamir_threshold": None}).recorded_threshold == 0


def test_metadata_groups_at_top_level_or_in_key_groups() -> None:
    top = read_metadata({"age": [{"recipient": TEST_RECIPIENT, "enc": "w"},
                                 {"recipient": AGE_B, "enc": "v"}],
                         "shamir_threshold": 2, "mac": "m", "lastmodified": "l"}).key_groups
    assert top.groups == (frozenset({A, B}),) and top.threshold == 1
    listed = read_metadata({"key_groups": [{"age": [{"recipient": TEST_RECIPIENT, "enc": "w"}]},
                                           {"hc_vault": [], "age": [{"recipient": AGE_B,
                                                                     "enc": "v"}]}],
                            "shamir_threshold": 2, "mac": "m", "lastmodified": "l"})
    assert listed.key_groups == KeyGroups((frozenset({A}), frozenset({B})), 2)
    assert listed.problems == ()


def test_metadata_with_both_forms_is_read_as_sops_reads_it() -> None:
    """sops reads only the top-level keys then (stores.go); every recipient is still listed."""
    metadata = read_metadata({"age": [{"recipient": TEST_RECIPIENT, "enc": "w"}],
                              "key_groups": [{"age": [{"recipient": AGE_B, "enc": "v"}]}],
                              "mac": "m", "lastmodified": "l"})
    assert metadata.key_groups.groups == (frozenset({A}),)
    assert metadata.recipients == {A, B}
    assert [p for p in metadata.problems if "both at top level and in `key_groups`" in p]


def test_metadata_threshold_that_is_not_a_number() -> None:
    metadata = read_metadata({"age": [{"recipient": TEST_RECIPIENT, "enc": "w"}],
                              "shamir_threshold": "two", "mac": "m", "lastmodified": "l"})
    assert metadata.problems == ("`shamir_threshold` is not a whole number",)


@pytest.mark.parametrize("rule", [
    {"key_groups": [{"age": ["{a}"]}, {"age": ["{b}"]}, {"age": ["{a}", "{b}"]}],
     "shamir_threshold": 2},
    {"key_groups": [{"age": ["{a}"]}, {"age": ["{b}"]}]},  # threshold absent: all groups
    {"key_groups": [{"age": ["{a}", "{b}"]}], "shamir_threshold": 2},  # recorded, unused
    {"age": "{a},{b}", "shamir_threshold": 3},
])
def test_groups_written_by_real_sops_match_the_rule(tmp_path: Path, rule: dict[str, Any]) -> None:
    _key, other = new_age_key(tmp_path)
    raw = yaml.safe_dump({**rule, "path_regex": r"^connections\.d/"})
    raw = raw.replace("'{a}'", TEST_RECIPIENT).replace("'{b}'", other)
    raw = raw.replace("{a}", TEST_RECIPIENT).replace("{b}", other)
    rules = {"creation_rules": [{**yaml.safe_load(raw), "encrypted_regex": "^credential$",
                                 "mac_only_encrypted": True}]}
    root = make_repo(tmp_path / "repo", rules=rules, connections={"gl": connection("gl")})
    data = yaml.safe_load((root / "connections.d/gl.sops.yaml").read_text())
    metadata = read_metadata(data["sops"])
    [parsed] = read_rules(rules)
    assert metadata.problems == ()
    assert metadata.key_groups.canonical() == parsed.key_groups.canonical()
    assert metadata.recipients == parsed.recipients == {A, f"age:{other}"}


# --- many rules: matched in one pass, with the answer of the rule-by-rule scan ----------------

_PATTERNS = [r"^connections\.d/", r"\.sops\.yaml$", r"^connections\.d/(a|b)[a-z-]*\.sops\.yaml$",
             r"team-[0-9]+", r"(?i)PROD", r"^connections\.d/x\.sops\.yaml$", r"^other/", r"z",
             r"^connections\.d/(alpha|beta|gamma)\.sops\.yaml$", r"\pL\d\z", r"^$"]
_PATHS = ["connections.d/a.sops.yaml", "connections.d/beta.sops.yaml", "connections.d/x.sops.yaml",
          "connections.d/team-7-prod.sops.yaml", "other/z.yaml", "connections.d/q1", "README.md",
          "connections.d/\udcff.sops.yaml", ""]


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.lists(st.one_of(st.none(), st.sampled_from(_PATTERNS)), min_size=16,
                           max_size=60))
def test_many_rules_match_as_the_scan_does(patterns: list[str | None]) -> None:
    rules = tuple(CreationRule(index, index + 1, PathRegex(p) if p is not None else None,
                               frozenset({f"age:r{index}"}), "^credential$", True)
                  for index, p in enumerate(patterns))
    for path in _PATHS:
        scanned = next((rule for rule in rules if rule.matches(path)), None)
        assert first_matching_rule(rules, path) is scanned, path


def test_thousands_of_rules_in_one_set() -> None:
    ids = [f"conn-{n:05d}" for n in range(9000)]
    rules = tuple(CreationRule(n, n + 1, PathRegex(
        rf"^connections\.d/({'|'.join(ids[3 * n:3 * n + 3])})\.sops\.yaml$"),
        frozenset({f"age:r{n}"}), "^credential$", True) for n in range(3000))
    for n in (0, 1, 1499, 2999):
        assert first_matching_rule(rules, f"connections.d/{ids[3 * n + 2]}.sops.yaml") is rules[n]
    assert first_matching_rule(rules, "connections.d/unknown.sops.yaml") is None


def test_a_set_that_answers_nothing_never_decides_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """RE2 reports a set that ran out of memory as "no match": the scan decides then."""
    from connc.sops.rules import _RuleSet

    rules = tuple(CreationRule(n, n + 1, PathRegex(rf"^connections\.d/c{n}\."),
                               frozenset({f"age:r{n}"}), None, False) for n in range(20))
    monkeypatch.setattr(_RuleSet, "first", lambda self, relpath: None)
    assert first_matching_rule(rules, "connections.d/c7.sops.yaml") is rules[7]
