"""Running connc as the tests do: `python -m connc` in a fresh interpreter, output captured;
and a spy on the processes connc itself starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.build import REPO_ROOT, key_env, sops_env


def run_connc(*args: str, key_file: Path | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m connc ARGS` in a fresh interpreter, capturing stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "connc", *args], cwd=cwd or REPO_ROOT,
                          env=sops_env(key_file), capture_output=True, text=True, timeout=120,
                          check=False)


def connc(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m connc ARGS` in a fresh interpreter, as a pipeline runs it; output captured."""
    return subprocess.run([sys.executable, "-m", "connc", *map(str, args)],
                          env=dict(env if env is not None else key_env()),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


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
