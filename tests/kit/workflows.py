"""The linters of GitHub Actions workflow files, from the venv running the tests (the `test`
extra), not whatever is on PATH: the shipped workflows and those `connc init` writes pass both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def venv_tool(name: str) -> str:
    import pytest

    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: install the `test` extra "
                    f"(pip install -e '.[test]')")
    return str(path)


def assert_zizmor_finds_nothing(cwd: Path, *paths: str) -> None:
    # --offline: CI has no network, and the online audits (e.g. known-vulnerable action
    # versions) would make the result depend on the day. --strict-collection: a file zizmor
    # cannot parse fails instead of being skipped with a warning. zizmor exits non-zero when
    # it has findings (10 + the highest severity) and 1 on its own errors.
    proc = subprocess.run(
        [venv_tool("zizmor"), "--offline", "--strict-collection", "--format", "plain",
         "--color", "never", "--no-progress", *paths],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    output = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, output
    assert "No findings to report" in proc.stdout, output


def assert_github_schema(schema: str, path: Path) -> None:
    """`schema`: vendor.github-workflows or vendor.github-actions, vendored in the
    check-jsonschema wheel (no download)."""
    proc = subprocess.run([venv_tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
