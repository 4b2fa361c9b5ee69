"""What the tests of `connc check` share: canary secrets, and one way to run the command.

`run_check` runs `python -m connc check --format json` with the test key and asserts, for
every run, that no secret of the test (right or wrong) shows in stdout or stderr, and that
the temporary bundles are gone.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kit.build import key_env
from kit.run import connc


def canary() -> str:
    return "CANARY-" + secrets.token_urlsafe(15)


@dataclasses.dataclass
class Ran:
    proc: subprocess.CompletedProcess[str]
    outcomes: dict[str, dict[str, Any]]

    def status(self, connection_id: str) -> str:
        return str(self.outcomes[connection_id]["status"])

    def message(self, connection_id: str) -> str:
        return str(self.outcomes[connection_id]["message"])

    def reach(self, connection_id: str) -> dict[str, Any]:
        """The `reach` of a `--reach` run's connection (asserted to be there)."""
        found = self.outcomes[connection_id]["reach"]
        assert isinstance(found, dict), self.outcomes[connection_id]
        return found


def run_check(root: Path, tmp_path: Path, *args: str, hidden: Iterable[str] = (),
              env: dict[str, str] | None = None, timeout: float = 60) -> Ran:
    """`connc check --format json ARGS`; asserts that nothing in `hidden` is printed and that
    the run left nothing in its temp dir."""
    temp = tmp_path / "check-tmp"
    temp.mkdir(exist_ok=True)
    environment = key_env(TMPDIR=str(temp), NO_PROXY="127.0.0.1,localhost",
                          no_proxy="127.0.0.1,localhost")
    environment.update(env or {})
    proc = connc("check", "--repo", root, "--format", "json", *args, env=environment,
                 timeout=timeout)
    for secret in hidden:
        for line in secret.strip().splitlines():  # a PEM key, line by line
            if len(line.strip()) > 8:
                assert line.strip() not in proc.stdout + proc.stderr
    assert list(temp.iterdir()) == []
    data = json.loads(proc.stdout) if proc.stdout else {"connections": []}
    return Ran(proc, {c["id"]: c for c in data["connections"]})
