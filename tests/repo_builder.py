"""Repositories and bundles for the render tests.

Building a repository from dicts and encrypting it with the real sops is `repokit`'s job (the
validate-side helper); this module adds what rendering needs on top, so there is one builder:
  * `build_repo`: a repository whose `.sops.yaml` encrypts to the test key, or to given
    recipients, optionally with some connections locked to another key (they pass every keyless
    check and fail to decrypt, the situation of a runner that is not a recipient);
  * `add_connection`: one more encrypted connection in an existing repository;
  * `key_env` / `connc`: run `python -m connc` as a pipeline would, with the test key;
  * `sourced`: run a command after `. OUT/env`, to prove the env file itself works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from repokit import (
    MEMBERS,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    connection,
    encrypt,
    make_repo,
    pipeline,
    sops_env,
    sops_rules,
    write,
)

__all__ = [
    "MEMBERS", "TEST_KEY_FILE", "TEST_RECIPIENT", "add_connection", "build_repo", "connc",
    "connection", "encrypt", "key_env", "pipeline", "sourced", "write",
]


def _rules(recipients: Iterable[str], locked: Mapping[str, str]) -> dict[str, Any]:
    """The spec's rule, preceded by one rule per locked connection (sops takes the first match)."""
    rules = sops_rules(*recipients)
    locked_rules = [{**rules["creation_rules"][0],
                     "path_regex": rf"^connections\.d/{conn_id}\.sops\.yaml$",
                     "age": recipient} for conn_id, recipient in locked.items()]
    return {"creation_rules": locked_rules + rules["creation_rules"]}


def build_repo(root: Path, *, connections: Mapping[str, Mapping[str, Any]] = {},
               pipelines: Mapping[str, Mapping[str, Any]] = {},
               members: Mapping[str, Any] | None = MEMBERS,
               recipients: Iterable[str] = (TEST_RECIPIENT,),
               locked: Mapping[str, str] = {}) -> Path:
    """Write and encrypt a repository in `root`; return `root`.

    `locked` maps connection ids to another recipient: those files are encrypted to it alone,
    under a `.sops.yaml` rule of their own, so keyless checks pass and decryption fails.
    """
    return make_repo(root, connections=connections, pipelines=pipelines, members=members,
                     rules=_rules(recipients, locked))


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


def connc(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m connc ARGS` in a fresh interpreter, as a pipeline runs it; output captured."""
    return subprocess.run([sys.executable, "-m", "connc", *map(str, args)],
                          env=dict(env if env is not None else key_env()),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def sourced(out: Path, command: list[str | os.PathLike[str]], env: Mapping[str, str], *,
            cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `command` in `sh` after `. OUT/env`: what a pipeline step does with the bundle."""
    script = '. "$0/env" && exec "$@"'
    return subprocess.run(["sh", "-c", script, str(out), *map(str, command)], env=dict(env),
                          cwd=cwd, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
