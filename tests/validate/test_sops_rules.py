"""`.sops.yaml` read as sops reads it: a rule's key groups and threshold are part of what a file
must match (CONNC405), and `path_regex` is RE2, so no pattern can stall validate or diff.

Every file here is encrypted by the real sops binary, and every fix a message advises is run,
so the advice is proven, not assumed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connc.findings import Finding
from connc.sops import binary
from connc.validate.run import validate
from kit import run
from kit.build import (
    REPO_ROOT,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    commit,
    connection,
    git,
    make_repo,
    sops_env,
    write,
)
from kit.keys import new_age_key

RELPATH = "connections.d/gl.sops.yaml"


def rule(**keys: Any) -> dict[str, Any]:
    return {"path_regex": r"^connections\.d/.*\.sops\.yaml$", "encrypted_regex": "^credential$",
            "mac_only_encrypted": True, **keys}


def groups(*members: list[str], threshold: int | None = None) -> dict[str, Any]:
    keys: dict[str, Any] = {"key_groups": [{"age": list(group)} for group in members]}
    if threshold is not None:
        keys["shamir_threshold"] = threshold
    return rule(**keys)


def encryption_findings(root: Path) -> list[Finding]:
    return [f for f in validate(root, jobs=1).findings if f.code.startswith("CONNC4")]


def run_sops(root: Path, key_file: Path, *args: str) -> str:
    proc = subprocess.run([binary.executable(), *args], cwd=root, env=sops_env(key_file),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"sops {args[0]} failed with {proc.returncode}"
    return proc.stderr


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str, str, Path]:
    """Three age recipients A (the test key), B and C, and one key file holding all three."""
    b_file, b = new_age_key(tmp_path, "b.txt")
    c_file, c = new_age_key(tmp_path, "c.txt")
    every = tmp_path / "every-key.txt"
    every.write_text("".join(p.read_text() for p in (TEST_KEY_FILE, b_file, c_file)))
    every.chmod(0o600)
    return TEST_RECIPIENT, b, c, every


# ---------------------------------------------------------------------------- key groups

UPDATEKEYS = "run `connc sops updatekeys connections.d/gl.sops.yaml`"
REENCRYPT = ("`sops updatekeys` keeps a file's threshold, so decrypt and re-encrypt it: "
             "`connc sops decrypt -i connections.d/gl.sops.yaml && connc sops encrypt -i "
             "connections.d/gl.sops.yaml`")


@pytest.mark.parametrize(("encrypted", "now", "says", "fix"), [
    pytest.param(lambda a, b, c: rule(age=f"{a},{b}"),
                 lambda a, b, c: groups([a], [b], threshold=2),
                 ["the file has one key group", "(any one of its keys decrypts)",
                  "the rule asks for 2 key groups", "2 of them needed to decrypt"],
                 UPDATEKEYS, id="one-group-to-two-groups"),
    pytest.param(lambda a, b, c: groups([a], [b]),
                 lambda a, b, c: rule(age=f"{a},{b}"),
                 ["the file has 2 key groups", "the rule asks for one key group"],
                 UPDATEKEYS, id="groups-merged"),
    pytest.param(lambda a, b, c: groups([a], [b], [c], threshold=3),
                 lambda a, b, c: groups([a], [b], [c], threshold=2),
                 ["3 of them needed", "2 of them needed"], REENCRYPT, id="threshold-lowered"),
    pytest.param(lambda a, b, c: groups([a], [b], [c], threshold=2),
                 lambda a, b, c: groups([a], [b], [c]),
                 ["2 of them needed", "3 of them needed"], REENCRYPT, id="threshold-raised"),
    pytest.param(lambda a, b, c: rule(age=f"{a},{b}"),
                 lambda a, b, c: groups([a], [b], [c], threshold=2),
                 ["recipients differ", "missing from the file", "key groups differ too"],
                 REENCRYPT, id="updatekeys-would-require-every-group"),
])
def test_key_groups_and_threshold_are_part_of_the_rule(
        tmp_path: Path, keys: tuple[str, str, str, Path], encrypted: Any, now: Any,
        says: list[str], fix: str) -> None:
    a, b, c, key_file = keys
    root = make_repo(tmp_path / "repo", rules={"creation_rules": [encrypted(a, b, c)]},
                     connections={"gl": connection("gl")})
    write(root, ".sops.yaml", {"creation_rules": [now(a, b, c)]})
    [drift] = encryption_findings(root)
    assert (drift.code, drift.path) == ("CONNC405", RELPATH)
    for text in says:
        assert text in drift.message
    assert drift.message.endswith(fix)
    # The advice works, and where it says updatekeys is not enough, it is not.
    run_sops(root, key_file, "updatekeys", "--yes", RELPATH)
    if fix == REENCRYPT:
        assert [f.code for f in encryption_findings(root)] == ["CONNC405"]
        run_sops(root, key_file, "decrypt", "--in-place", RELPATH)
        run_sops(root, key_file, "encrypt", "--in-place", RELPATH)
    assert encryption_findings(root) == []


@pytest.mark.parametrize(("encrypted", "now"), [
    pytest.param(lambda a, b: groups([a], [b]), lambda a, b: groups([b], [a], threshold=2),
                 id="group-order"),
    pytest.param(lambda a, b: rule(age=f"{a},{b}"),
                 lambda a, b: rule(age=f"{b},{a}", shamir_threshold=3),
                 id="threshold-of-a-single-group"),
    pytest.param(lambda a, b: groups([a, b]), lambda a, b: rule(age=[a, b]),
                 id="one-listed-group-is-top-level-keys"),
])
def test_what_does_not_change_who_can_decrypt_is_no_drift(
        tmp_path: Path, keys: tuple[str, str, str, Path], encrypted: Any, now: Any) -> None:
    a, b, _c, _key_file = keys
    root = make_repo(tmp_path / "repo", rules={"creation_rules": [encrypted(a, b)]},
                     connections={"gl": connection("gl")})
    write(root, ".sops.yaml", {"creation_rules": [now(a, b)]})
    assert encryption_findings(root) == []


@pytest.mark.parametrize(("keys_of_rule", "message"), [
    ({"key_groups": [{"age": [TEST_RECIPIENT]}, {}]},
     "creation rule 1: key group 2 names no recipients"),
    ({"key_groups": [{"age": [TEST_RECIPIENT]}, {"age": ["age1x"]}], "shamir_threshold": 3},
     "creation rule 1: shamir_threshold 3 with 2 key groups; sops needs 2 to 2"),
    ({"key_groups": [{"age": [TEST_RECIPIENT]}, {"age": ["age1x"]}], "shamir_threshold": 1},
     "shamir_threshold 1 with 2 key groups"),
])
def test_key_groups_sops_cannot_encrypt_with(tmp_path: Path, keys_of_rule: dict[str, Any],
                                             message: str) -> None:
    root = make_repo(tmp_path / "repo", rules={"creation_rules": [rule(**keys_of_rule)]})
    found = [f for f in validate(root, jobs=1).findings if f.path == ".sops.yaml"]
    assert [(f.code, f.line) for f in found] == [("CONNC014", 2)]
    assert message in found[0].message


# ---------------------------------------------------------------------------- path_regex

PATHOLOGICAL = r"^connections\.d/(a|aa)+b"
LONG_ID = "a" * 44  # Python's re needs minutes to give up on this name
# A few seconds: what one `connc` process takes on a loaded CI runner, far below a backtrack.
BOUND = 10


def pathological_rules() -> dict[str, Any]:
    return {"creation_rules": [{"path_regex": PATHOLOGICAL, "age": TEST_RECIPIENT}, rule(
        age=TEST_RECIPIENT)]}


def connc(*args: str) -> subprocess.CompletedProcess[str]:
    return run.connc(*args, key=None, cwd=REPO_ROOT, timeout=BOUND)


def test_validate_matches_a_pathological_pattern_in_linear_time(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", rules=pathological_rules(),
                     connections={LONG_ID: connection(LONG_ID)})
    proc = connc("validate", "--repo", str(root), "--format", "json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["findings"] == []


def test_diff_matches_a_pathological_pattern_in_linear_time(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={LONG_ID: connection(LONG_ID)})
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    write(root, ".sops.yaml", pathological_rules())  # what a fork's pull request could add
    commit(root, "pull request")
    proc = connc("diff", "--repo", str(root), "main~1", "main", "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    assert "changes" in json.loads(proc.stdout)


def test_a_pattern_re2_rejects_is_a_finding_at_its_rule(tmp_path: Path) -> None:
    rules = {"creation_rules": [rule(age=TEST_RECIPIENT)]}
    root = make_repo(tmp_path / "repo", rules=rules, connections={"gl": connection("gl")})
    write(root, ".sops.yaml", {"creation_rules": [
        {"path_regex": r"^pipelines\.d/", "age": TEST_RECIPIENT},
        rule(age=TEST_RECIPIENT, path_regex=r"^connections\.d/(?!tmp-).*\.sops\.yaml$")]})
    [found] = [f for f in validate(root, jobs=1).findings if f.path == ".sops.yaml"]
    assert (found.code, found.line) == ("CONNC014", 4)
    assert found.message.startswith("creation rule 2: path_regex does not compile: RE2 (sops) "
                                    "rejects it: invalid perl operator: (?!")
