"""A committed `.sops.yaml` that is a symlink to /dev/zero, or a FIFO: every command refuses
it before any sops runs (sops would read /dev/zero until memory ran out, or wait on the FIFO
for ever). The acceptance predicate refuses it (CONNC007, CONNC008); the commands that
decrypt pass sops `--config /dev/null` and never hand it the file at all.

All the runs start at once (each a process of its own, bounded by a short deadline), so the
whole matrix costs about one run's time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kit import fakesops
from kit.build import TEST_KEY_FILE, TEST_RECIPIENT, connection, make_repo, pipeline, sops_env
from kit.run import popen

COMMANDS = {
    "render": ["render", "use", "--timeout", "5"],
    "check": ["check", "c0"],
    "validate --decrypt": ["validate", "--decrypt", "--timeout", "5", "--format", "json"],
    "seal": ["seal", "--all", "--timeout", "5"],
    "secret set": ["secret", "set", "c0", "token", "--timeout", "5"],
    "secret unset": ["secret", "unset", "c0", "username", "--timeout", "5"],
    "keys sync": ["keys", "sync", "--all", "--timeout", "5"],
}
KINDS = ("symlink to /dev/zero", "fifo")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[
        subprocess.CompletedProcess[str], list[str]]]:
    base = tmp_path_factory.mktemp("special")
    members = {"apiVersion": "connc/v1", "kind": "Members",
               "users": {"alice": {"recipients": [TEST_RECIPIENT]}}, "teams": {}}
    estate = make_repo(base / "estate", members=members, connections={
        "c0": connection("c0", credential={"token": "tok", "username": "bot"})},
        pipelines={"use": pipeline("use", "c0")})
    fake = fakesops.write(base, "record")
    running = {}
    for kind in KINDS:
        for name, args in COMMANDS.items():
            where = base / f"{kind}-{name}".replace(" ", "-").replace("/", "")
            repo = Path(shutil.copytree(estate, where / "repo"))
            (repo / ".sops.yaml").unlink()
            if kind == "fifo":
                os.mkfifo(repo / ".sops.yaml")
            else:
                (repo / ".sops.yaml").symlink_to("/dev/zero")
            log = where / "log"
            log.touch()
            env = sops_env(TEST_KEY_FILE) | {"FAKE_LOG": str(log)}
            running[kind, name] = (popen(
                *args, "--repo", repo, sops=fake, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True), log, args)
    done = {}
    end = time.monotonic() + 60
    for key, (proc, log, args) in running.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n(did not finish: killed by the test)"
        done[key] = (subprocess.CompletedProcess(args, proc.returncode, out, err),
                     log.read_text().splitlines())
    return done


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", COMMANDS)
def test_no_command_hands_sops_a_refused_sops_yaml(
        outcomes: dict[tuple[str, str], tuple[subprocess.CompletedProcess[str], list[str]]],
        name: str, kind: str) -> None:
    proc, calls = outcomes[kind, name]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    code = "CONNC007" if kind.startswith("symlink") else "CONNC008"
    assert ".sops.yaml" in output and code in output, output
    if name == "validate --decrypt":
        # It decrypts the file validate accepts, with sops reading no .sops.yaml at all.
        assert calls and all(call.startswith("--config /dev/null decrypt") for call in calls)
    else:
        assert calls == [], calls  # refused before any sops
