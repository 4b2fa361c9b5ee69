"""The golden corpus: each folder under tests/cases/ is a repository with its expected findings.

A case passes when `connc validate` exits as expected and reports exactly the expected set of
(code, path, line): one case proves one check, and that nothing else fires. The cases are built
by tests/cases/build.py (see its docstring to regenerate them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from connc.documents import MAX_FILE_BYTES
from connc.findings import CODES
from kit.build import REPO_ROOT, TEST_KEY_FILE
from kit.run import Outcome, connc, in_process

CASES = Path(__file__).resolve().parents[1] / "cases"
FOLDERS = ("valid", "invalid", "invalid-decrypt")

# Codes no committed file can trigger, and why; every other code must have a case.
UNREACHABLE = {
    "CONNC003": "an unreadable file needs file permissions that root (CI) ignores",
}


def case_dirs(*folders: str) -> list[Any]:
    return [pytest.param(path, id=f"{folder}/{path.name}")
            for folder in folders for path in sorted((CASES / folder).iterdir()) if path.is_dir()]


def expectation(case: Path) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    return expected


def materialise(case: Path, spec: dict[str, Any], tmp_path: Path) -> Path:
    """A copy of the case with what git cannot hold well: a huge file, a symlink out."""
    root = tmp_path / case.name
    shutil.copytree(case, root, symlinks=True)
    for relpath in spec.get("large_files", []):
        header = "apiVersion: connc/v1\nkind: Pipeline\n"
        padding = "# padding\n" * ((MAX_FILE_BYTES - len(header)) // 10 + 1)
        (root / relpath).parent.mkdir(exist_ok=True)
        (root / relpath).write_text(header + padding, encoding="utf-8")
    for relpath, target in spec.get("symlinks", {}).items():
        (root / relpath).parent.mkdir(exist_ok=True)
        (root / relpath).symlink_to(target)
    return root


def validate(repo: Path, *args: str, decrypt: bool = False) -> Outcome:
    """`connc validate`: keyless as in CI, or with the test key to `--decrypt`."""
    options = ["--decrypt"] if decrypt else []
    return in_process("validate", "--repo", repo, *options, *args,
                      key=TEST_KEY_FILE if decrypt else None)


def findings_of(result: Outcome) -> list[dict[str, Any]]:
    # Exit 0 or 1 is a report; 2 or 3 (a usage error, a bug) printed an error instead.
    assert result.code in (0, 1), result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return findings


def keys(findings: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {(f["code"], f["path"], f["line"]) for f in findings}


@pytest.mark.parametrize("case", case_dirs(*FOLDERS))
def test_case(case: Path, tmp_path: Path) -> None:
    expected = expectation(case)
    repo = materialise(case, expected["materialise"], tmp_path) if "materialise" in expected \
        else case
    result = validate(repo, "--format", "json", decrypt=expected.get("decrypt", False))
    findings = findings_of(result)
    assert keys(findings) == keys(expected["findings"]), json.dumps(findings, indent=2)
    assert result.code == expected["exit"]
    for code, text in expected.get("message_contains", {}).items():
        messages = [f["message"] for f in findings if f["code"] == code]
        assert any(text in m for m in messages), (code, text, messages)


@pytest.mark.parametrize("case", case_dirs("valid"))
def test_valid_case_decrypts(case: Path) -> None:
    """The valid cases hold well-formed credentials, so content checks find nothing either."""
    result = validate(case, "--format", "json", decrypt=True)
    assert findings_of(result) == []
    assert result.code == 0


@pytest.mark.parametrize("case", case_dirs("invalid-decrypt"))
def test_decrypt_case_is_clean_keyless(case: Path) -> None:
    """Content problems hide under encryption: only --decrypt finds them."""
    result = validate(case, "--format", "json")
    assert findings_of(result) == []
    assert result.code == 0


def test_every_code_has_a_case() -> None:
    covered = {f["code"] for folder in FOLDERS for case in (CASES / folder).iterdir()
               if case.is_dir() for f in expectation(case)["findings"]}
    assert covered | set(UNREACHABLE) == set(CODES)


@pytest.mark.parametrize("case", case_dirs("invalid", "invalid-decrypt"))
def test_invalid_case_expects_a_finding(case: Path) -> None:
    assert expectation(case)["findings"], "an invalid case must prove a check"


def test_decrypt_with_a_relative_key_file() -> None:
    """sops runs from the repository root; a key file relative to the caller still works."""
    result = in_process("validate", "--repo", "tests/cases/valid/minimal", "--decrypt",
                        "--format", "json", key=TEST_KEY_FILE.relative_to(CASES.parent.parent),
                        cwd=CASES.parent.parent)
    assert findings_of(result) == []
    assert result.code == 0


# ---------------------------------------------------------------------------- output formats


def test_text_format() -> None:
    case = CASES / "invalid" / "scope-private"
    (expected,) = expectation(case)["findings"]
    result = validate(case, "--format", "text")
    assert result.code == 1
    first, summary = result.stdout.splitlines()
    assert first.startswith(f"{expected['path']}:{expected['line']}:")
    assert f": error {expected['code']} pipeline `deploy` (owner bob) may not use" in first
    assert summary == "4 files checked: 1 errors, 0 warnings"


def test_github_format() -> None:
    case = CASES / "invalid" / "scope-private"
    (expected,) = expectation(case)["findings"]
    result = validate(case, "--format", "github")
    assert result.code == 1
    annotation = result.stdout.splitlines()[0]
    assert annotation.startswith(f"::error file={expected['path']},line={expected['line']},col=")
    assert f",title={expected['code']}::pipeline `deploy`" in annotation


def test_github_format_warning() -> None:
    result = validate(CASES / "invalid" / "members-on-public", "--format", "github")
    assert result.code == 0
    assert result.stdout.startswith("::warning file=connections.d/gitlab-acme.sops.yaml,line=")


def test_strict_fails_on_warnings() -> None:
    case = CASES / "invalid" / "members-on-public"
    assert validate(case, "--format", "json").code == 0
    assert validate(case, "--format", "json", "--strict").code == 1


# ---------------------------------------------------------------------------- entry point


def test_python_m_connc_entry_point() -> None:
    ok = connc("validate", "--repo", str(CASES / "valid" / "minimal"), "--format", "json",
               key=None, cwd=REPO_ROOT)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["findings"] == []
    denied = connc("validate", "--repo", str(CASES / "invalid" / "scope-private"),
                   "--format", "json", key=None, cwd=REPO_ROOT)
    assert denied.returncode == 1, denied.stderr
    assert [f["code"] for f in json.loads(denied.stdout)["findings"]] == ["CONNC301"]
