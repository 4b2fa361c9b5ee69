"""connc.encryption in-process, keyless: each finding from one file the real sops encrypted,
edited as a pull request could edit it without a key, against rules read as `.sops.yaml` is.

Every message names a path, never a value: the canary below must not appear in any of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from connc import documents, encryption
from connc.findings import Finding
from connc.sops.rules import CreationRule, read_rules
from kit.build import TEST_RECIPIENT, connection, make_repo, sops_rules, write
from kit.keys import new_age_key

RELPATH = "connections.d/db.sops.yaml"
CANARY = "canary-enc-unit-0b7d31"
GITHUB_TOKEN = "ghp_" + "Abc123" * 6  # secret-looking in plaintext (the scan's pattern)


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The text of a connection file exactly as sops wrote it (sealed, test key)."""
    root = make_repo(tmp_path_factory.mktemp("encryption") / "repo", connections={
        "db": connection("db", spec={"url": "https://gitlab.com/db"},
                         credential={"token": CANARY, "username": "bot"})})
    return (root / RELPATH).read_text()


def _rules(*rules: dict[str, Any]) -> list[CreationRule]:
    return read_rules({"creation_rules": list(rules) or sops_rules()["creation_rules"]})


def _check(tmp_path: Path, text: str, rules: list[CreationRule] | None = None, *,
           with_rules: bool = True) -> list[Finding]:
    write(tmp_path, RELPATH, text)
    document, found = documents.read(tmp_path, RELPATH, "Connection")
    assert document is not None and found == []
    result = encryption.check(document, RELPATH,
                              tuple(rules or _rules()) if with_rules else None)
    for item in result:
        assert item.path == RELPATH
        assert CANARY not in item.message and GITHUB_TOKEN not in item.message
    return result


def _codes(found: list[Finding]) -> list[tuple[str, int]]:
    return [(item.code, item.line) for item in found]


def _line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _token_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith("token: ENC["))


def test_a_file_as_sops_wrote_it_under_its_rule_has_no_finding(
        tmp_path: Path, encrypted: str) -> None:
    assert _check(tmp_path, encrypted) == []


def test_a_plaintext_file_is_not_encrypted(tmp_path: Path) -> None:
    plain = yaml.safe_dump(connection("db", spec={"url": "https://gitlab.com/db"},
                                      credential={"token": CANARY}), sort_keys=False)
    [found] = _check(tmp_path, plain)
    assert (found.code, found.line, found.column) == ("CONNC401", 1, 1)
    assert f"`connc sops encrypt -i {RELPATH}`" in found.message


def test_a_credential_value_replaced_by_plaintext(tmp_path: Path, encrypted: str) -> None:
    text = _edit(encrypted, _token_line(encrypted), f"    token: {CANARY}")
    [found] = _check(tmp_path, text)
    assert (found.code, found.line) == ("CONNC402", _line_of(text, CANARY))
    assert "`credential.token` is plaintext" in found.message
    assert "`connc secret set db token`" in found.message and "rotate it" in found.message


@pytest.mark.parametrize(("value", "code"), [('""', "CONNC602"), ("42", "CONNC102"),
                                             ("[a]", "CONNC102")])
def test_a_credential_value_that_is_empty_or_not_a_string(
        tmp_path: Path, encrypted: str, value: str, code: str) -> None:
    text = _edit(encrypted, _token_line(encrypted), f"    token: {value}")
    assert _codes(_check(tmp_path, text)) == [(code, _line_of(text, "    token: "))]


def test_a_value_encrypted_as_another_type(tmp_path: Path, encrypted: str) -> None:
    line = _token_line(encrypted)
    text = _edit(encrypted, line, line.replace("type:str]", "type:int]"))
    [found] = _check(tmp_path, text)
    assert found.code == "CONNC411" and "encrypted as type int" in found.message


def test_an_encrypted_value_outside_the_credential(tmp_path: Path, encrypted: str) -> None:
    value = _token_line(encrypted).split(": ", 1)[1]
    text = _edit(encrypted, "    owner: alice", f"    owner: alice\n    description: {value}")
    [found] = _check(tmp_path, text)
    assert (found.code, found.line) == ("CONNC404", _line_of(text, "description:"))
    assert "`metadata.description` is encrypted" in found.message


def test_secret_looking_plaintext_is_named_by_path(tmp_path: Path, encrypted: str) -> None:
    text = _edit(encrypted, "    owner: alice", f"    owner: alice\n    description: "
                                                f"see {GITHUB_TOKEN}")
    write(tmp_path, RELPATH, text)
    document, _found = documents.read(tmp_path, RELPATH, "Connection")
    assert document is not None
    [found] = encryption.plaintext_findings(document, RELPATH,
                                            frozenset({"credential", "sops"}))
    assert (found.code, found.line) == ("CONNC403", _line_of(text, "description:"))
    assert "`metadata.description` holds a GitHub token" in found.message
    assert GITHUB_TOKEN not in found.message
    # The credential is not scanned when skipped: it holds ciphertext, or CONNC402's plaintext.
    assert encryption.plaintext_findings(document, RELPATH, frozenset()) != []


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t: re.sub(r"    mac: .*\n", "", t), "missing `mac`"),
    (lambda t: re.sub(r"    lastmodified: .*\n", "", t), "missing `lastmodified`"),
])
def test_sops_metadata_problems(tmp_path: Path, encrypted: str, edit: Any,
                                problem: str) -> None:
    text = edit(encrypted)
    [found] = _check(tmp_path, text)
    assert (found.code, found.line) == ("CONNC412", _line_of(text, "sops:"))
    assert found.message.startswith(f"sops metadata: {problem}")


def test_no_rule_for_the_file(tmp_path: Path, encrypted: str) -> None:
    rules = _rules({**sops_rules()["creation_rules"][0], "path_regex": r"^elsewhere/"})
    [found] = _check(tmp_path, encrypted, rules)
    assert found.code == "CONNC406" and f"matches `{RELPATH}`" in found.message


def test_without_rules_only_the_file_itself_is_judged(tmp_path: Path, encrypted: str) -> None:
    rules = _rules({**sops_rules()["creation_rules"][0], "path_regex": r"^elsewhere/"})
    assert _check(tmp_path, encrypted, rules, with_rules=False) == []


def test_recipients_that_differ_from_the_rule(tmp_path: Path, encrypted: str) -> None:
    _key, other = new_age_key(tmp_path)
    [found] = _check(tmp_path, encrypted, _rules(sops_rules(other)["creation_rules"][0]))
    assert (found.code, found.line) == ("CONNC405", _line_of(encrypted, "sops:"))
    assert "recipients differ from .sops.yaml rule 1" in found.message
    assert f"not in .sops.yaml: age:{TEST_RECIPIENT}" in found.message
    assert f"missing from the file: age:{other}" in found.message
    assert f"run `connc sops updatekeys {RELPATH}`" in found.message


@pytest.mark.parametrize(("recorded", "fix"), [
    # No threshold in the file: updatekeys gives it every group, the rule's 2.
    ("", "run `connc sops updatekeys"),
    # The file's own threshold of 1: updatekeys would keep it (1 of 2 groups).
    ("    shamir_threshold: 1\n", "decrypt and re-encrypt it"),
])
def test_one_group_where_the_rule_asks_for_two(tmp_path: Path, encrypted: str, recorded: str,
                                               fix: str) -> None:
    _key, other = new_age_key(tmp_path)
    rule = {**sops_rules()["creation_rules"][0], "shamir_threshold": 2,
            "key_groups": [{"age": [TEST_RECIPIENT]}, {"age": [other]}]}
    del rule["age"]
    text = _edit(encrypted, "sops:\n", f"sops:\n{recorded}")
    [found] = _check(tmp_path, text, _rules(rule))
    assert found.code == "CONNC405"
    assert "key groups differ too: the file has one key group" in found.message
    assert "2 key groups" in found.message and "2 of them needed to decrypt" in found.message
    assert fix in found.message


@pytest.mark.parametrize(("setting", "value", "said"), [
    ("encrypted_regex", "^(credential|spec)$", "encrypted_regex is '^credential$' in the file"),
    ("mac_only_encrypted", False, "mac_only_encrypted is true in the file and false"),
])
def test_settings_that_differ_from_the_rule(tmp_path: Path, encrypted: str, setting: str,
                                            value: object, said: str) -> None:
    rule = {**sops_rules()["creation_rules"][0], setting: value}
    [found] = _check(tmp_path, encrypted, _rules(rule))
    assert found.code == "CONNC407" and said in found.message
    assert found.message.endswith("decrypt and re-encrypt the file with sops")


# ---------------------------------------------------------------------------- .sops.yaml


def _rules_findings(tmp_path: Path, rules: Any) -> tuple[list[CreationRule] | None,
                                                         list[Finding]]:
    write(tmp_path, ".sops.yaml", rules if isinstance(rules, str) else yaml.safe_dump(rules))
    return encryption.load_rules(tmp_path)


def test_the_rules_the_docs_prescribe_have_no_finding(tmp_path: Path) -> None:
    rules, found = _rules_findings(tmp_path, sops_rules())
    assert found == [] and rules is not None and len(rules) == 1


def test_a_missing_sops_yaml(tmp_path: Path) -> None:
    rules, [found] = encryption.load_rules(tmp_path)
    assert rules is None and (found.path, found.code) == (".sops.yaml", "CONNC014")


@pytest.mark.parametrize(("change", "code", "said"), [
    ({"encrypted_regex": "^spec$"}, "CONNC407", "must set `encrypted_regex: ^credential$`"),
    ({"mac_only_encrypted": False}, "CONNC407", "`mac_only_encrypted: true`"),
    ({"age": ""}, "CONNC014", "creation rule 2 names no recipients"),
    ({"age": None, "key_groups": [{"age": [TEST_RECIPIENT]}, {}]}, "CONNC014",
     "key group 2 names no recipients"),
    ({"age": None, "shamir_threshold": 3,
      "key_groups": [{"age": [TEST_RECIPIENT]}, {"age": ["age1x"]}]}, "CONNC014",
     "shamir_threshold 3 with 2 key groups"),
])
def test_rules_for_connection_files(tmp_path: Path, change: dict[str, Any], code: str,
                                    said: str) -> None:
    good = sops_rules()["creation_rules"][0]
    changed = {key: value for key, value in {**good, **change}.items() if value is not None}
    unrelated = {"path_regex": r"^other/", "age": ""}  # not a connection rule: not judged
    _rules, found = _rules_findings(tmp_path, {"creation_rules": [unrelated, changed]})
    assert [(item.code, item.line) for item in found] == [(code, 4)]
    assert said in found[0].message


def test_a_private_key_pasted_into_sops_yaml_is_found(tmp_path: Path) -> None:
    age_secret = "AGE-SECRET-" + "KEY-1" + "Q" * 58
    text = yaml.safe_dump(sops_rules()) + f"# {age_secret}\nextra: {age_secret}\n"
    _rules, found = _rules_findings(tmp_path, text)
    assert [item.code for item in found] == ["CONNC403"]
    assert age_secret not in found[0].message
    # render does not ask for what only finds (`report=False`).
    assert encryption.load_rules(tmp_path, report=False)[1] == []


def test_a_path_regex_sops_cannot_compile(tmp_path: Path) -> None:
    rule = {**sops_rules()["creation_rules"][0], "path_regex": "(?<=x)\x1b"}
    rules, [found] = _rules_findings(tmp_path, {"creation_rules": [rule]})
    assert rules is None and found.code == "CONNC014"
    assert "path_regex does not compile" in found.message and "\x1b" not in found.message
