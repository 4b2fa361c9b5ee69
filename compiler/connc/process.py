"""The one way connc runs another program: sops, git, and the clients `connc check` drives.

Every child is owned: it runs in a session of its own (so stopping it also stops what it
started — a SOPS_AGE_KEY_CMD, gpg, git's ssh or http helpers), every wait has a bound, and a
timeout, an interrupt or any other exception while waiting kills the whole group and reaps it.
Several can run at once without a thread each: each writes to its own pipes.

Output is captured, never passed through: a tool's stderr can quote a secret, so callers
choose their own messages from exit codes and known patterns. The environment is the
caller's to build (each tool has its own rules); this module adds nothing to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from connc.errors import UsageError

_REAP_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


class Timeout(Exception):
    """The program did not finish in time; it was killed with its group."""

    def __init__(self, program: str, seconds: float) -> None:
        super().__init__(f"{program} did not finish within {seconds:g} s")
        self.program, self.seconds = program, seconds


class Process:
    """A program started now; `wait()` collects it."""

    def __init__(self, args: Sequence[str], *, cwd: Path | str | None = None,
                 env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> None:
        self.program = os.path.basename(args[0])
        self._stdin, self._done = stdin, False
        try:
            self._proc = subprocess.Popen(
                list(args), cwd=cwd, env=dict(env) if env is not None else None,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise UsageError(f"{self.program} is not installed (or not on PATH)") from None
        except OSError as exc:
            raise UsageError(f"cannot run {self.program}: {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait(self, timeout: float) -> Completed:
        """Feed stdin, wait at most `timeout` seconds, return what the program wrote."""
        try:
            out, err = self._proc.communicate(self._stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise Timeout(self.program, timeout) from None
        except BaseException:  # an interrupt while waiting: the child must not outlive us
            self.stop()
            raise
        self._done = True
        return Completed(self._proc.returncode, out, err)

    def stop(self) -> None:
        """Kill the group and reap it; a no-op once the program was collected."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        try:
            self._proc.communicate(timeout=_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            # A grandchild that left the group still holds a pipe: stop reading, not waiting.
            self._proc.kill()
            for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if pipe is not None:
                    pipe.close()
            self._proc.wait(timeout=_REAP_SECONDS)


def run(args: Sequence[str], *, timeout: float, cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> Completed:
    return Process(args, cwd=cwd, env=env, stdin=stdin).wait(timeout)
