"""Connection repositories built in a temp dir, encrypted with the real sops and the test key.

Shared by the validate-side tests (robustness, canary, sops wrapper). A repository is built
from plain dicts, so each test states only what it changes; `encrypt` runs the sops binary
exactly as a user would (from the repository root, so `.sops.yaml` applies).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from connc import documents, seal
from connc.sops import binary

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_KEY_FILE = REPO_ROOT / "tests" / "keys" / "test-age-key.txt"
TEST_RECIPIENT = "age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j"

MEMBERS: dict[str, Any] = {
    "apiVersion": "connc/v1",
    "kind": "Members",
    "users": {"alice": {"name": "Alice"}, "bob": {}},
    "teams": {"platform": {"members": ["alice", "bob"]}},
}


def sops_rules(*recipients: str) -> dict[str, Any]:
    """The `.sops.yaml` the spec prescribes, encrypting to `recipients` (the test key by default)."""
    return {"creation_rules": [{
        "path_regex": r"^connections\.d/.*\.sops\.yaml$",
        "encrypted_regex": "^credential$",
        "mac_only_encrypted": True,
        "age": ",".join(recipients or (TEST_RECIPIENT,)),
    }]}


def connection(conn_id: str, *, type_: str = "gitlab", owner: str = "alice",
               visibility: str = "private", members: list[str] | None = None,
               spec: Mapping[str, Any] | None = None,
               credential: Mapping[str, Any] | None = None,
               **metadata: Any) -> dict[str, Any]:
    """A connection document; `spec` adds to `{type: ...}`, `metadata` adds to id/name/owner."""
    scope: dict[str, Any] = {"visibility": visibility}
    if members is not None:
        scope["members"] = members
    return {
        "apiVersion": "connc/v1",
        "kind": "Connection",
        "metadata": {"id": conn_id, "name": conn_id, "owner": owner, **metadata},
        "scope": scope,
        "spec": {"type": type_, **(spec or {})},
        "credential": dict(credential if credential is not None else {"token": "fake-token"}),
    }


def pipeline(pipeline_id: str, *uses: str, owner: str = "alice",
             teams: list[str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"id": pipeline_id, "owner": owner}
    if teams is not None:
        metadata["teams"] = teams
    return {"apiVersion": "connc/v1", "kind": "Pipeline", "metadata": metadata,
            "uses": [{"connection": use} for use in uses]}


def write(root: Path, relpath: str, content: str | bytes | Mapping[str, Any], *,
          width: int = 80) -> Path:
    """Write text, bytes, or a document (dumped as YAML, lines folded at `width`)."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(dict(content), sort_keys=False, width=width),
                        encoding="utf-8")
    return path


def make_repo(root: Path, *, connections: Mapping[str, Mapping[str, Any]] | None = None,
              pipelines: Mapping[str, Mapping[str, Any]] | None = None,
              members: Mapping[str, Any] | None = MEMBERS,
              rules: Mapping[str, Any] | None = None, encrypt_all: bool = True) -> Path:
    """A repository with the given documents, keyed by id; connections encrypted by default."""
    root.mkdir(parents=True, exist_ok=True)
    write(root, ".sops.yaml", rules if rules is not None else sops_rules())
    if members is not None:
        write(root, "members.yaml", members)
    (root / "connections.d").mkdir(exist_ok=True)
    (root / "pipelines.d").mkdir(exist_ok=True)
    for conn_id, document in (connections or {}).items():
        relpath = f"connections.d/{conn_id}.sops.yaml"
        write(root, relpath, document)
        if encrypt_all:
            encrypt(root, relpath)
    for pipeline_id, document in (pipelines or {}).items():
        write(root, f"pipelines.d/{pipeline_id}.yaml", document)
    return root


def sops_env(key_file: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_AGE_KEY")}
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    return env


def encrypt(root: Path, relpath: str, *, sealed: bool = True) -> None:
    """`sops encrypt --in-place` from the repository root, as the spec tells users to; first,
    the connection is sealed as `connc new` seals it, when it is valid enough to be."""
    if sealed:
        seal_plaintext(root / relpath)
    proc = subprocess.run([binary.executable(), "encrypt", "--in-place", "--", relpath], cwd=root,
                          env=sops_env(), capture_output=True, check=False)
    assert proc.returncode == 0, f"sops encrypt {relpath} failed with {proc.returncode}"


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "connc test", "GIT_AUTHOR_EMAIL": "test@connc.invalid",
    "GIT_COMMITTER_NAME": "connc test", "GIT_COMMITTER_EMAIL": "test@connc.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_IDENTITY},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"git {args} failed: {proc.stderr}"
    return proc.stdout


def clone_of_working_tree(target: Path) -> Path:
    """A git repository holding this working tree as it is (committed or not), as pre-commit
    clones a hook repository: the hook under test is the one being changed, not HEAD's."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                            check=True, timeout=60).stdout.decode().split("\0")
    for relpath in filter(None, listed):
        source = REPO_ROOT / relpath
        if source.is_file():
            (target / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relpath)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "connc under test")
    return target


def commit(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def replace(repo: Path, relpath: str, old: str, new: str) -> None:
    """Edit a file as a reviewer would: plaintext outside `credential` needs no key."""
    path = repo / relpath
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} in {relpath}"
    path.write_text(text.replace(old, new))


def seal_plaintext(path: Path) -> None:
    """Add `connc-seal` to the block `credential:` of a plaintext connection file (textually:
    a case's layout and comments stay as written). Nothing for a file that cannot be sealed."""
    try:  # read as connc reads it: timestamps stay text
        document = documents.parse(path.read_text(encoding="utf-8")).data
        value = seal.encode(seal.view_of_plaintext(document))
    except Exception:  # noqa: BLE001 - an invalid case file is left as it is
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.rstrip() == "credential: {}":  # a secretless connection: the seal alone
            lines[index] = f"credential:\n  {seal.SEAL_FIELD}: {json.dumps(value)}\n"
            path.write_text("".join(lines), encoding="utf-8")
            return
        if line.rstrip() == "credential:" and index + 1 < len(lines):
            following = lines[index + 1]
            indent = following[: len(following) - len(following.lstrip())] or "  "
            lines.insert(index + 1, f"{indent}{seal.SEAL_FIELD}: {json.dumps(value)}\n")
            path.write_text("".join(lines), encoding="utf-8")
            return


def run_connc(*args: str, key_file: Path | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m connc ARGS` in a fresh interpreter, capturing stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "connc", *args], cwd=cwd or REPO_ROOT,
                          env=sops_env(key_file), capture_output=True, text=True, timeout=120,
                          check=False)


def spy_on_processes(monkeypatch: Any) -> list[dict[str, Any]]:
    """Record every process connc starts (its argv, env, and what goes to its stdin): the
    proof that a secret travels through stdin only. Every child goes through
    `connc.process.Process`; the argv recorded is the program's own (without the prefix that
    makes it die with connc)."""
    from connc import process

    calls: list[dict[str, Any]] = []
    started = process.Process.__init__

    def spy(self: process.Process, args: Any, **kwargs: Any) -> None:
        calls.append({"args": list(args), "env": kwargs.get("env"),
                      "input": kwargs.get("stdin")})
        started(self, args, **kwargs)

    monkeypatch.setattr(process.Process, "__init__", spy)
    return calls


# ---------------------------------------------------------------------------- GitHub Actions
# The linters of workflow files, from the venv running the tests (the `test` extra), not
# whatever is on PATH: the shipped workflows and those `connc init` writes pass both.


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
