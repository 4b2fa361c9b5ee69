"""Connection repositories built in a temp dir, encrypted with the real sops and the test key.

A repository is built from plain dicts, so each test states only what it changes; `encrypt`
runs the sops binary exactly as a user would (from the repository root, so `.sops.yaml`
applies). `make_repo` encrypts to the test key, or to given recipients, optionally with some
connections locked to another key (they pass every keyless check and fail to decrypt, the
situation of a runner that is not a recipient); `add_connection` adds one more encrypted
connection; `key_env` is the environment of a pipeline holding the test key; `sourced` runs a
command after `. OUT/env`, to prove a bundle's env file itself works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from connc import documents, seal
from connc.sops import binary

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def _rules(recipients: Iterable[str], locked: Mapping[str, str]) -> dict[str, Any]:
    """The spec's rule, preceded by one rule per locked connection (sops takes the first match)."""
    rules = sops_rules(*recipients)
    locked_rules = [{**rules["creation_rules"][0],
                     "path_regex": rf"^connections\.d/{conn_id}\.sops\.yaml$",
                     "age": recipient} for conn_id, recipient in locked.items()]
    return {"creation_rules": locked_rules + rules["creation_rules"]}


def make_repo(root: Path, *, connections: Mapping[str, Mapping[str, Any]] | None = None,
              pipelines: Mapping[str, Mapping[str, Any]] | None = None,
              members: Mapping[str, Any] | None = MEMBERS,
              rules: Mapping[str, Any] | None = None,
              recipients: Iterable[str] = (TEST_RECIPIENT,), locked: Mapping[str, str] = {},
              encrypt_all: bool = True) -> Path:
    """A repository with the given documents, keyed by id; connections encrypted by default.

    `.sops.yaml` is `rules` when given, else the spec's rule for `recipients`; `locked` maps
    connection ids to another recipient: those files are encrypted to it alone, under a rule of
    their own, so keyless checks pass and decryption fails.
    """
    root.mkdir(parents=True, exist_ok=True)
    write(root, ".sops.yaml", rules if rules is not None else _rules(recipients, locked))
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


def add_connection(root: Path, document: Mapping[str, Any]) -> None:
    """Add one connection to an existing repository, encrypted under its `.sops.yaml`."""
    relpath = f"connections.d/{document['metadata']['id']}.sops.yaml"
    write(root, relpath, document)
    encrypt(root, relpath)


def key_env(**extra: str) -> dict[str, str]:
    """This process' environment (already private: see conftest) with the test key, plus `extra`."""
    env = sops_env(TEST_KEY_FILE)
    env.update(extra)
    return env


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


def pipeline_added(root: Path) -> Path:
    """A keyless git repository at `root` whose BASE (main~1) holds connection `c` and
    pipeline `p`, and whose HEAD (main) adds pipeline `q`: the smallest pull request."""
    make_repo(root, connections={"c": connection("c")}, pipelines={"p": pipeline("p", "c")},
              encrypt_all=False)
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    write(root, "pipelines.d/q.yaml", pipeline("q", "c"))
    commit(root, "head")
    return root


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


def sourced(out: Path, command: list[str | os.PathLike[str]], env: Mapping[str, str], *,
            cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `command` in `sh` after `. OUT/env`: what a pipeline step does with the bundle."""
    script = '. "$0/env" && exec "$@"'
    return subprocess.run(["sh", "-c", script, str(out), *map(str, command)], env=dict(env),
                          cwd=cwd, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
