"""validate's worker processes: forked, each on pipes of its own, every wait bounded.

Neither `multiprocessing.Pool` nor `ProcessPoolExecutor` gives that. `Pool.map` waits forever
for the chunk of a worker that was killed (the OOM killer on a small CI runner), and its
`terminate()` takes the shared task queue's lock, which a killed worker can hold for good.
`ProcessPoolExecutor` reports the death, but its shutdown joins its manager thread and the
workers without a bound, and so does the interpreter at exit. Here:

- each worker has its own task pipe and result pipe: no lock is shared between processes, so a
  worker dying anywhere cannot block the others or the parent;
- the parent reads results without blocking, from a selector with a deadline: a worker's death
  is the end of its result pipe (seen at once), an overrun is the deadline;
- workers are forked with SIGINT and SIGTERM blocked, then set SIGTERM to its default (no
  inherited handler that raises KeyboardInterrupt, which a signal landing just before a
  blocking call never runs) and ignore SIGINT (Ctrl-C reaches the whole process group; it is
  the parent's to handle, and the parent then stops the workers);
- the parent holds the only write end of each task pipe: when it is gone, even by SIGKILL, a
  worker reads end-of-file (or gets EPIPE writing its results) and exits: no orphans;
- after the last result the task pipes are closed and the workers exit by themselves; they are
  killed (SIGKILL: they hold nothing to clean up) only when the run fails, and reaped within a
  bound either way.

The work items are not sent: the workers inherit them with the fork and receive only index
ranges; results come back pickled, one message per chunk, and are put back in order.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import os
import pickle
import selectors
import signal
import struct
import time
from collections.abc import Callable, Sequence, Set
from typing import NoReturn, TypeVar

from connc.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")

_TASK = struct.Struct("!II")  # a chunk to check: items[start:stop]
_HEADER = struct.Struct("!BQ")  # a message from a worker: its kind, the payload's length
_RESULTS, _ERROR = 0, 1
# Chunks handed to a worker ahead: it starts the next one while the parent reads the last.
_AHEAD = 2
_READ_SIZE = 1 << 20
# How long a worker that was told to stop (or killed) may take to be reaped.
_REAP_SECONDS = 5.0
# How long to wait for the exit status of a worker whose result pipe ended, for the message.
_STATUS_SECONDS = 1.0
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class WorkerFailure(UsageError):
    """A worker was lost or the workers overran their deadline: the results are incomplete.

    Exit 2, as for every environment failure: the OOM killer, a cancelled job or an overloaded
    runner says nothing about the files, so it is neither a finding (1) nor a bug (3).
    """


@dataclasses.dataclass
class _Worker:
    pid: int
    tasks: int  # write end of its task pipe; -1 once closed
    results: int  # read end of its result pipe; -1 once closed
    outstanding: collections.deque[int] = dataclasses.field(default_factory=collections.deque)
    buffer: bytearray = dataclasses.field(default_factory=bytearray)
    status: int | None = None  # from waitpid, once reaped


def run(function: Callable[[T], R], items: Sequence[T], *, workers: int, chunk: int,
        seconds: float) -> list[R]:
    """`[function(item) for item in items]` in `workers` forked processes, within `seconds`.

    Raises WorkerFailure if a worker dies before its results are in or the deadline passes,
    the worker's exception if `function` raises, and stops every worker on any exception
    (KeyboardInterrupt included) before it propagates.
    """
    chunks = [(start, min(start + chunk, len(items))) for start in range(0, len(items), chunk)]
    deadline = time.monotonic() + seconds
    pool: list[_Worker] = []
    try:
        _start(pool, min(workers, len(chunks)), function, items)
        parts: list[list[R]] = _collect(pool, chunks, deadline, seconds, len(items))
    except BaseException:
        _stop(pool, kill=True)
        raise
    _stop(pool, kill=False)
    return [result for part in parts for result in part]


def _start(pool: list[_Worker], count: int, function: Callable[[T], R],
           items: Sequence[T]) -> None:
    # Blocked across the forks: a signal sent to a new worker before it has set its own
    # dispositions waits until it has; one sent to the parent is handled once all are known
    # (and so all are stopped).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for _ in range(count):
            _fork(pool, function, items, mask)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _fork(pool: list[_Worker], function: Callable[[T], R], items: Sequence[T],
          mask: Set[int]) -> None:
    tasks_read, tasks_write = os.pipe()
    results_read, results_write = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (tasks_read, tasks_write, results_read, results_write):
            os.close(fd)
        raise WorkerFailure(f"validate cannot start a worker process: {exc.strerror}") from None
    if pid == 0:
        # The parent's ends, this worker's and the earlier workers': a worker holding another's
        # task pipe would keep it from ever reading end-of-file.
        inherited = [tasks_write, results_read]
        inherited += [fd for w in pool for fd in (w.tasks, w.results) if fd >= 0]
        _worker(function, items, tasks_read, results_write, inherited, mask)
    pool.append(_Worker(pid, tasks_write, results_read))  # first: whatever follows, it is stopped
    os.close(tasks_read)
    os.close(results_write)
    os.set_blocking(results_read, False)


def _worker(function: Callable[[T], R], items: Sequence[T], tasks: int, results: int,
            inherited: list[int], mask: Set[int]) -> NoReturn:
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in inherited:
            os.close(fd)
        # Its own heap is short-lived, whatever the parent does with its own collector
        # (`connc diff` runs without cyclic passes): a parsed file's garbage is collected.
        gc.enable()
        while request := _read_exactly(tasks, _TASK.size):
            start, stop = _TASK.unpack(request)
            try:
                kind = _RESULTS
                payload = pickle.dumps([function(item) for item in items[start:stop]],
                                       protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - a bug in a check: the parent raises it
                kind, payload = _ERROR, _pickled_error(exc)
            _write_all(results, _HEADER.pack(kind, len(payload)))
            _write_all(results, payload)
        code = 0
    finally:
        # Never return into the parent's stack, run its exit handlers or flush its buffers.
        os._exit(code)


def _pickled_error(exc: Exception) -> bytes:
    try:
        return pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an exception that does not pickle: name it
        return pickle.dumps(RuntimeError(f"{type(exc).__name__} in a validate worker"))


def _read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes, or b"" at end-of-file (the parent closed the pipe or is gone)."""
    data = b""
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            return b""
        data += more
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(pool: list[_Worker], chunks: list[tuple[int, int]], deadline: float,
             seconds: float, count: int) -> list[list[R]]:
    parts: list[list[R] | None] = [None] * len(chunks)
    pending = collections.deque(range(len(chunks)))
    remaining = len(chunks)
    with selectors.DefaultSelector() as selector:
        for worker in pool:
            selector.register(worker.results, selectors.EVENT_READ, worker)
            for _ in range(_AHEAD):
                _send(worker, pending, chunks)
        while remaining:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise WorkerFailure(f"validate stopped: the worker processes did not check "
                                    f"{count} files within {seconds:.0f} s")
            for key, _events in selector.select(timeout):
                worker = key.data
                try:
                    data = os.read(worker.results, _READ_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    if worker.outstanding:
                        raise _lost(worker)
                    selector.unregister(worker.results)  # told to stop, and it did
                    continue
                worker.buffer += data
                while (message := _message(worker.buffer)) is not None:
                    kind, payload = message
                    index = worker.outstanding.popleft()
                    if kind == _ERROR:
                        error = pickle.loads(payload)
                        raise error if isinstance(error, BaseException) else RuntimeError(error)
                    parts[index] = pickle.loads(payload)
                    remaining -= 1
                    _send(worker, pending, chunks)
    return [part for part in parts if part is not None]


def _message(buffer: bytearray) -> tuple[int, bytearray] | None:
    """The first whole message in `buffer`, taken out of it, or None."""
    if len(buffer) < _HEADER.size:
        return None
    kind, length = _HEADER.unpack_from(buffer)
    end = _HEADER.size + length
    if len(buffer) < end:
        return None
    payload = buffer[_HEADER.size:end]
    del buffer[:end]
    return kind, payload


def _send(worker: _Worker, pending: collections.deque[int],
          chunks: list[tuple[int, int]]) -> None:
    """The next chunk to `worker`; when none is left and it has none, end its task pipe."""
    if pending:
        index = pending.popleft()
        try:
            os.write(worker.tasks, _TASK.pack(*chunks[index]))
        except BrokenPipeError:
            raise _lost(worker) from None
        worker.outstanding.append(index)
    elif not worker.outstanding and worker.tasks >= 0:
        os.close(worker.tasks)  # end-of-file: the worker exits
        worker.tasks = -1


def _lost(worker: _Worker) -> WorkerFailure:
    _reap(worker, time.monotonic() + _STATUS_SECONDS)
    status = worker.status
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        how = f"was killed by {name}" + (" (out of memory?)" if number == signal.SIGKILL else "")
    elif status is not None:
        how = f"exited with code {os.waitstatus_to_exitcode(status)}"
    else:
        how = "closed its result pipe"
    return WorkerFailure(f"validate stopped: worker process {worker.pid} {how} before it had "
                         "checked its files; the results are incomplete, so none are reported")


def _stop(pool: list[_Worker], *, kill: bool) -> None:
    """End every task pipe (a worker then exits), kill if asked, reap; all within a bound."""
    # No interrupt halfway: a second Ctrl-C or SIGTERM is handled once the workers are reaped.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for worker in pool:
            if worker.tasks >= 0:
                os.close(worker.tasks)
                worker.tasks = -1
        if kill:
            _kill(pool)
        deadline = time.monotonic() + _REAP_SECONDS
        for worker in pool:
            _reap(worker, deadline)
        if not kill and any(worker.status is None for worker in pool):
            _kill(pool)  # stuck past the bound: no longer asked
            deadline = time.monotonic() + _REAP_SECONDS
            for worker in pool:
                _reap(worker, deadline)
        for worker in pool:
            if worker.results >= 0:
                os.close(worker.results)
                worker.results = -1
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _kill(pool: list[_Worker]) -> None:
    for worker in pool:
        if worker.status is None:  # not reaped yet, so the pid is still this worker's
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _reap(worker: _Worker, deadline: float) -> None:
    """Collect the worker's exit status if it exits before `deadline`."""
    pause = 0.001
    while worker.status is None:
        try:
            pid, status = os.waitpid(worker.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler of an embedding app)
            worker.status = 0
            return
        if pid:
            worker.status = status
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
