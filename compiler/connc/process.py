"""The one way connc runs another program: sops, git, and the clients `connc check` drives.

Every child is owned and bounded:

- it runs in a session of its own, so stopping it also stops what it started (a
  SOPS_AGE_KEY_CMD, gpg, git's ssh or http helpers); a timeout, an interrupt or any other
  exception while waiting kills the whole group and reaps it;
- on Linux it dies with connc: it is started through util-linux's `setpriv --pdeathsig
  KILL` (which execs the program in place: same pid, no `preexec_fn`, which is unsafe in a
  process with threads), then a shell that goes on only while connc is still its parent
  (`_STILL_OURS`), so a SIGKILL to connc (the OOM killer, `kill -9`), even in the middle of
  a spawn, leaves no sops waiting on a KMS behind it;
- its memory is bounded (`memory`, `MEMORY_LIMIT` unless the caller says less): RLIMIT_DATA,
  set with `prlimit` right after the spawn. Not RLIMIT_AS: Go reserves about 1.2 GB of
  address space at start (sops: 1,245 MB of VmSize to decrypt a 3 KB file), while
  RLIMIT_DATA counts what is really mapped writable (46 MB for the same run);
- what it writes is bounded: stdout up to `OUTPUT_LIMIT` (more stops it), stderr kept up to
  `_STDERR_KEPT` (the rest is read and dropped, so a chatty program never blocks);
- every wait has a bound, and `Deadline` is the one bound of a whole run that a command
  hands down to each of its waits.

Several can run at once without a thread each: each writes to its own pipes. Output is
captured, never passed through: a tool's stderr can quote a secret, so callers choose their
own messages from exit codes and known patterns. The environment is the caller's to build
(each tool has its own rules); this module adds nothing to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from connc.errors import UsageError
from connc.findings import printable

_REAP_SECONDS = 5.0
# What any child may map (RLIMIT_DATA): the tools connc runs (sops, git, kubectl, ssh) need a
# tenth of it; a child that reads a device or loops allocating stops here.
MEMORY_LIMIT = 1024 * 1024 * 1024
OUTPUT_LIMIT = 64 * 1024 * 1024  # stdout a caller collects whole; more is not a tool's answer
_STDERR_KEPT = 64 * 1024  # callers read a few known lines of it, never more
# A program's output pipe holds this much (Linux, where the system allows it), and each read
# takes up to as much: a program that writes a lot (`git cat-file`, 40 MB for a revision) fills
# the default 64 KiB in moments and then waits for connc; with more room it goes on writing
# while connc is busy (a read in a background thread waits for the interpreter), and one read
# takes what a hundred did.
_CHUNK = 1024 * 1024
_STDIN_CHUNK = 64 * 1024  # written without blocking: a pipe takes what room it has
# Where util-linux keeps setpriv; never looked up on PATH, which is the caller's to change.
_SETPRIV = ("/usr/bin/setpriv", "/bin/setpriv")


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


class TooMuchOutput(UsageError):
    """The program wrote more than its caller reads; it was killed with its group."""

    def __init__(self, program: str, limit: int) -> None:
        super().__init__(f"{program} wrote more than {limit // (1024 * 1024)} MiB of output; "
                         f"it was stopped")


class DeadlineExceeded(UsageError):
    """The run's deadline passed (exit 2: a hung KMS or a slow machine is the environment's)."""


class Cancel:
    """Set once, by whoever stops a run (an interrupt): every wait made under it ends at once
    (a request under `http.limits`, a program waited for with it, every sops of a `Deadline`
    that carries it), and callbacks registered with `add` run. A callback runs in the thread
    that calls `set`, so it must only signal (shut a socket down, kill a process group),
    never wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: set[Callable[[], None]] = set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, set()
        for callback in callbacks:
            callback()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as this is set."""
        return self._event.wait(max(0.0, seconds))

    def add(self, callback: Callable[[], None]) -> bool:
        """Call `callback` when this is set; False (and no call) when it is set already."""
        with self._lock:
            if self._event.is_set():
                return False
            self._callbacks.add(callback)
            return True

    def discard(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.discard(callback)


class Cancelled(Exception):
    """The run was stopped (its `Cancel` was set) while the program ran; it was killed with
    its group and reaped."""

    def __init__(self, program: str) -> None:
        super().__init__(f"{program} was stopped: the run was interrupted")
        self.program = program


class Deadline:
    """One bound for a whole run: every wait of the run takes what is left of it, and ends
    as soon as the run is stopped (`cancel`).

    A command makes one when it starts and hands it down (to `http.limits`, to each sops
    run, to `Process.wait` with `cancel`); a wait never starts a fresh budget of its own, so
    ten hung processes cost one deadline, not ten. `option`: the command-line option that
    sets it, named when it passes. `cancel`: the run's interrupt, shared by the deadlines of
    one run (`connc check`: the decryptions' and each probe's); a fresh one by default.
    """

    def __init__(self, seconds: float, option: str | None = None, *,
                 cancel: Cancel | None = None) -> None:
        if not math.isfinite(seconds) or seconds <= 0:  # click's FloatRange lets NaN by
            raise UsageError(f"{option or 'a deadline'} takes a positive number of seconds, "
                             f"not {seconds}")
        self.seconds, self.option = seconds, option
        self.at = time.monotonic() + seconds
        self.cancel = cancel if cancel is not None else Cancel()

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def exceeded(self, what: str) -> DeadlineExceeded:
        longer = f" ({self.option} SECONDS gives it longer)" if self.option else ""
        return DeadlineExceeded(f"{what} did not finish within the run's deadline of "
                                f"{self.seconds:g} s{longer}")


@functools.cache
def _orphan_guard() -> tuple[str, ...]:
    """The prefix that makes a child die with connc, where this system has one that works."""
    if not sys.platform.startswith("linux"):
        return ()
    for path in _SETPRIV:
        if os.access(path, os.X_OK):
            try:  # --pdeathsig is util-linux 2.33 (2018) and later: ask it once
                done = subprocess.run([path, "--pdeathsig", "KILL", "--", "true"],
                                      stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=_REAP_SECONDS, check=False)
            except (OSError, subprocess.TimeoutExpired):
                return ()
            return (path, "--pdeathsig", "KILL", "--") if done.returncode == 0 else ()
    return ()


# setpriv asks for the signal in the child, after the fork: connc killed in between leaves a
# child whose parent is already gone, so no signal ever comes. This shell, exec'd by setpriv
# once it has asked, goes on (exec: same pid) only while its parent is still connc; an orphan
# stops here. Its `$0` is connc's pid, "$@" the program and its arguments.
_STILL_OURS = 'test "$PPID" = "$0" && exec "$@"; exit 137'


def _guarded(argv: list[str]) -> list[str]:
    """`argv`, started so that it dies with connc (see `_orphan_guard`)."""
    guard = _orphan_guard()
    if not guard:
        return argv
    return [*guard, "/bin/sh", "-c", _STILL_OURS, str(os.getpid()), *argv]


def _limit_memory(pid: int, memory: int) -> None:
    """RLIMIT_DATA for a child that is already running. The window between its exec and this
    call is microseconds of a runtime starting up; the limit binds every later allocation,
    and every process the child starts afterwards inherits it."""
    import resource

    prlimit = getattr(resource, "prlimit", None)
    if prlimit is None:  # Linux only; elsewhere the deadline alone bounds the child
        return
    with contextlib.suppress(OSError):  # ProcessLookupError: it has already exited
        prlimit(pid, resource.RLIMIT_DATA, (memory, memory))


class Process:
    """A program started now; `wait()` collects it.

    `memory`: bytes of data the program (and what it starts) may map.
    """

    def __init__(self, args: Sequence[str], *, cwd: Path | str | None = None,
                 env: Mapping[str, str] | None = None, stdin: bytes | None = None,
                 memory: int = MEMORY_LIMIT) -> None:
        self.program = os.path.basename(args[0])
        self._stdin, self._done = stdin, False
        # Looked up here as Popen would (in `env`'s PATH): through setpriv, a missing program
        # would be setpriv's failure, not ours to name.
        executable = shutil.which(args[0], path=os.pathsep.join(os.get_exec_path(env)))
        if executable is None:
            raise UsageError(f"{self.program} is not installed (or not on PATH)")
        try:
            self._proc = subprocess.Popen(
                _guarded([executable, *args[1:]]), cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            if cwd is not None and not os.path.isdir(cwd):  # Popen says the same for it
                raise UsageError(f"cannot run {self.program}: its working directory "
                                 f"{printable(str(cwd))} does not exist") from None
            raise UsageError(f"{self.program} is not installed (or not on PATH)") from None
        except OSError as exc:
            raise UsageError(f"cannot run {self.program}: {exc.strerror}") from None
        _limit_memory(self._proc.pid, memory)
        if hasattr(fcntl, "F_SETPIPE_SZ") and self._proc.stdout is not None:
            with contextlib.suppress(OSError):  # over the system's limits: the default size
                fcntl.fcntl(self._proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, _CHUNK)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait(self, timeout: float, *, sink: Callable[[bytes], None] | None = None,
             limit: int = OUTPUT_LIMIT, cancel: Cancel | None = None) -> Completed:
        """Feed stdin, wait at most `timeout` seconds, return what the program wrote.

        stdout is collected up to `limit` bytes (more: `TooMuchOutput`), or handed to `sink`
        chunk by chunk as it arrives (then `Completed.stdout` is empty and the sink bounds it).
        When `cancel` is set (now or while waiting) the group is killed, reaped, and
        `Cancelled` raised.
        """
        if cancel is not None and not cancel.add(self.kill):
            self.kill()
        try:
            completed = self._wait(timeout, sink, limit)
        finally:
            if cancel is not None:  # after the reap: too soon for the pid to be reused
                cancel.discard(self.kill)
        if cancel is not None and cancel.is_set():
            raise Cancelled(self.program)
        return completed

    def _wait(self, timeout: float, sink: Callable[[bytes], None] | None,
              limit: int) -> Completed:
        end = time.monotonic() + timeout
        try:
            out, err = self._communicate(end, sink, limit)
            returncode = self._proc.wait(timeout=max(0.0, end - time.monotonic()))
        except (subprocess.TimeoutExpired, _Expired):
            self.stop()
            raise Timeout(self.program, timeout) from None
        except BaseException:  # an interrupt while waiting: the child must not outlive us
            self.stop()
            raise
        self._done = True
        return Completed(returncode, out, err)

    def _communicate(self, end: float, sink: Callable[[bytes], None] | None,
                     limit: int) -> tuple[bytes, bytes]:
        """subprocess.communicate, with stdout bounded or streamed and stderr truncated."""
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        out, err = bytearray(), bytearray()
        pending = memoryview(self._stdin or b"")
        with selectors.DefaultSelector() as selector:
            if proc.stdin is not None:
                if pending:
                    # Non-blocking: each write takes what the pipe has room for, not 512
                    # bytes per wake-up (POSIX's PIPE_BUF), which made a list of ten
                    # thousand object ids a thousand rounds of the loop.
                    os.set_blocking(proc.stdin.fileno(), False)
                    selector.register(proc.stdin, selectors.EVENT_WRITE)
                else:
                    proc.stdin.close()
            selector.register(proc.stdout, selectors.EVENT_READ)
            selector.register(proc.stderr, selectors.EVENT_READ)
            while selector.get_map():
                left = end - time.monotonic()
                if left <= 0:
                    raise _Expired
                for key, _events in selector.select(left):
                    if key.fileobj is proc.stdin:
                        assert proc.stdin is not None
                        try:
                            written = os.write(key.fd, pending[:_STDIN_CHUNK])
                        except BlockingIOError:  # full again since select() said otherwise
                            written = 0
                        except BrokenPipeError:  # it stopped reading: its exit code says why
                            written = len(pending)
                        pending = pending[written:]
                        if not pending:
                            selector.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    if key.fileobj is proc.stderr:
                        err += chunk[:max(0, _STDERR_KEPT - len(err))]
                    elif sink is not None:
                        sink(chunk)
                    else:
                        out += chunk
                        if len(out) > limit:
                            self.stop()
                            raise TooMuchOutput(self.program, limit)
        return bytes(out), bytes(err)

    def kill(self) -> None:
        """Signal the group to die, and nothing else: safe in any thread (a `Cancel`'s
        callback, while another thread waits); `wait` or `stop` reaps it. A no-op once the
        program was reaped, so a reused pid is never signalled."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill the group and reap it; a no-op once the program was collected."""
        if self._done:
            return
        self._done = True
        self.kill()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        # Closed pipes: a grandchild that left the group and still holds one cannot make
        # the reap wait; the group's leader is dead, so this returns at once.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=_REAP_SECONDS)


class _Expired(Exception):
    pass


def run(args: Sequence[str], *, timeout: float, cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        memory: int = MEMORY_LIMIT) -> Completed:
    return Process(args, cwd=cwd, env=env, stdin=stdin, memory=memory).wait(timeout)
