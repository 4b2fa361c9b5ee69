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
- a program that writes a lot at once (`git cat-file`: 40 MB for a revision) writes it into
  an anonymous file in memory (`spooled`), not a pipe: it never waits for connc, and connc
  takes its output in one read once it has exited. Through a pipe, each read waited for the
  interpreter whenever another thread of connc was busy (a revision read in the background
  while `.sops.yaml` is parsed): the program stalled on a full pipe, a read at a time;
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
_CHUNK = 1024 * 1024  # what one read from a pipe takes at most
_STDIN_CHUNK = 64 * 1024  # written without blocking: a pipe takes what room it has
_MIB = 1024 * 1024
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
        # A bound of a few KB (a revision's exact answer) is no "0 MiB".
        bound = f"{limit // _MIB} MiB" if limit and not limit % _MIB else f"{limit} bytes"
        super().__init__(f"{program} wrote more than {bound} of output; it was stopped")


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


def _limit_resources(pid: int, memory: int, file_size: int | None) -> None:
    """RLIMIT_DATA (and RLIMIT_FSIZE: what it may write to a file, a spooled stdout) for a
    child that is already running. The window between its exec and this call is
    microseconds of a runtime starting up; the limits bind every later allocation and
    write, and every process the child starts afterwards inherits them."""
    import resource

    prlimit = getattr(resource, "prlimit", None)
    if prlimit is None:  # Linux only; elsewhere the deadline alone bounds the child
        return
    for limit, value in ((resource.RLIMIT_DATA, memory), (resource.RLIMIT_FSIZE, file_size)):
        # Each on its own: ProcessLookupError, it has already exited; PermissionError, connc
        # itself is held to less (a hard limit it cannot raise), which the child keeps. A
        # memory limit that cannot be set must not leave a spool unbounded.
        if value is not None:
            with contextlib.suppress(OSError):
                prlimit(pid, limit, (value, value))


def _memory_file() -> int | None:
    """A file descriptor of an anonymous file in memory, or None where the system has none
    (then stdout is a pipe): never a file on disk, which would outlive a killed connc."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        return None
    try:
        return int(create("connc-stdout", os.MFD_CLOEXEC))
    except OSError:  # a kernel without memfd (before Linux 3.17), or out of files
        return None


class Process:
    """A program started now; `wait()` collects it.

    `memory`: bytes of data the program (and what it starts) may map. `limit`: bytes of
    stdout it may write (more: `TooMuchOutput`). `spooled`: stdout goes to an anonymous file
    in memory (Linux's memfd; a pipe where there is none), read whole once the program has
    exited; the kernel stops the program at `limit` (RLIMIT_FSIZE, which bounds every file
    the program writes: a log of its own must be off).
    """

    def __init__(self, args: Sequence[str], *, cwd: Path | str | None = None,
                 env: Mapping[str, str] | None = None, stdin: bytes | None = None,
                 memory: int = MEMORY_LIMIT, limit: int = OUTPUT_LIMIT,
                 spooled: bool = False) -> None:
        self.program = os.path.basename(args[0])
        self._stdin, self._done, self._limit = stdin, False, limit
        # Looked up here as Popen would (in `env`'s PATH): through setpriv, a missing program
        # would be setpriv's failure, not ours to name.
        executable = shutil.which(args[0], path=os.pathsep.join(os.get_exec_path(env)))
        if executable is None:
            raise UsageError(f"{self.program} is not installed (or not on PATH)")
        self._spool = _memory_file() if spooled else None
        try:
            self._proc = self._start([executable, *args[1:]], cwd, env, stdin)
        except BaseException:
            self._close_spool()
            raise
        try:
            _limit_resources(self._proc.pid, memory,
                             limit + 1 if self._spool is not None else None)
        except BaseException:  # an interrupt: the program is already ours to end, and reap
            self.stop()
            raise

    def _start(self, argv: list[str], cwd: Path | str | None, env: Mapping[str, str] | None,
               stdin: bytes | None) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                _guarded(argv), cwd=cwd, env=dict(env) if env is not None else None,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=self._spool if self._spool is not None else subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            if cwd is not None and not os.path.isdir(cwd):  # Popen says the same for it
                raise UsageError(f"cannot run {self.program}: its working directory "
                                 f"{printable(str(cwd))} does not exist") from None
            raise UsageError(f"{self.program} is not installed (or not on PATH)") from None
        except OSError as exc:
            raise UsageError(f"cannot run {self.program}: {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait(self, timeout: float, *, cancel: Cancel | None = None) -> Completed:
        """Feed stdin, wait at most `timeout` seconds, return what the program wrote (stdout
        up to the `limit` it was started with: more raises `TooMuchOutput`). When `cancel` is
        set (now or while waiting) the group is killed, reaped, and `Cancelled` raised.
        """
        if cancel is not None and not cancel.add(self.kill):
            self.kill()
        try:
            completed = self._wait(timeout)
        finally:
            if cancel is not None:  # after the reap: too soon for the pid to be reused
                cancel.discard(self.kill)
        if cancel is not None and cancel.is_set():
            raise Cancelled(self.program)
        return completed

    def _wait(self, timeout: float) -> Completed:
        end = time.monotonic() + timeout
        try:
            out, err = self._communicate(end)
            returncode = self._proc.wait(timeout=max(0.0, end - time.monotonic()))
            if self._spool is not None:
                out = self._spooled_output()
        except (subprocess.TimeoutExpired, _Expired):
            self.stop()
            raise Timeout(self.program, timeout) from None
        except BaseException:  # an interrupt while waiting: the child must not outlive us
            self.stop()
            raise
        self._done = True
        return Completed(returncode, out, err)

    def _communicate(self, end: float) -> tuple[bytes, bytes]:
        """subprocess.communicate, with stdout bounded (when it is a pipe) and stderr
        truncated."""
        proc = self._proc
        assert proc.stderr is not None
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
            if proc.stdout is not None:  # None: spooled
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
                    else:
                        out += chunk
                        if len(out) > self._limit:
                            self.stop()
                            raise TooMuchOutput(self.program, self._limit)
        return bytes(out), bytes(err)

    def _spooled_output(self) -> bytes:
        """What the program (exited) wrote to its spool, whole; the spool closed."""
        assert self._spool is not None
        try:
            size = os.fstat(self._spool).st_size
            if size > self._limit:  # stopped by RLIMIT_FSIZE (SIGXFSZ), or ignored it
                raise TooMuchOutput(self.program, self._limit)
            chunks: list[bytes] = []  # one, unless the system reads less than asked
            offset = 0
            while offset < size and (chunk := os.pread(self._spool, size - offset, offset)):
                chunks.append(chunk)
                offset += len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            self._close_spool()

    def _close_spool(self) -> None:
        if self._spool is not None:
            os.close(self._spool)
            self._spool = None

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
        self._close_spool()
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
