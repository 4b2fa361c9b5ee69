"""Every way the tests run connc: `python -m connc` in a fresh interpreter, to completion
(`connc`) or started for a signal or a timing (`popen`), optionally behind a fake sops
(`argv(sops=)`); and a spy on the processes connc itself starts.

A run gets the test key unless `key=None` (a keyless CI job), or exactly `env` when given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.build import TEST_KEY_FILE, sops_env

Arg = str | os.PathLike[str]

# connc finds sops with `connc.sops.binary.executable()`: the bootstrap points it at a fake,
# then runs connc's real entry point, so signals, exit codes and output are a user's.
_FAKE_SOPS_BOOTSTRAP = ("import sys; import connc.sops.binary as s; fake = sys.argv.pop(1); "
                        "s.executable = lambda: fake; from connc.__main__ import main; main()")


def argv(*args: Arg, sops: Path | None = None) -> list[str]:
    """The argv of `connc ARGS` in this interpreter; with `sops`, that file is its sops."""
    if sops is not None:
        return [sys.executable, "-c", _FAKE_SOPS_BOOTSTRAP, str(sops), *map(str, args)]
    return [sys.executable, "-m", "connc", *map(str, args)]


def _env(key: Path | None, env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(env) if env is not None else sops_env(key)


def connc(*args: Arg, key: Path | None = TEST_KEY_FILE, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, input: str | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`connc ARGS` to completion, output captured; stdin is `input`, else empty."""
    return subprocess.run(argv(*args), env=_env(key, env), cwd=cwd, input=input,
                          stdin=subprocess.DEVNULL if input is None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)


def popen(*args: Arg, key: Path | None = TEST_KEY_FILE, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, sops: Path | None = None,
          **popen_kw: Any) -> subprocess.Popen[Any]:
    """`connc ARGS` started, for a test that signals it or watches it run; the caller waits."""
    return subprocess.Popen(argv(*args, sops=sops), env=_env(key, env), cwd=cwd, **popen_kw)


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
