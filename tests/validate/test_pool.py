"""validate's worker processes end every run: a lost worker, an interrupt or a stuck check is an
error within seconds, never a hang, and no worker outlives the run.

A CI gate that can hang is worse than one that fails, so every test here runs under a hard
bound: `subprocess` timeouts around `python -m connc validate`, and SIGALRM around the
in-process runs (it interrupts a blocked wait, and the pool then stops its workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from connc.validate import pool
from connc.validate.run import PARALLEL_THRESHOLD
from kit.build import REPO_ROOT
from kit.run import connc, popen

sys.path.insert(0, str(REPO_ROOT / "bench"))
import generate  # type: ignore[import-not-found]  # noqa: E402 - bench/: sops-shaped files, fast

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: validate forks no worker")

# The issue: a lost worker hung validate of 3,000 connections past 40 s. Here it must end fast.
ENDS_WITHIN = 10.0


# ---------------------------------------------------------------------------- processes


def _children(pid: int) -> list[int]:
    """The live (not yet exited) children of `pid`, from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return [child for child in found if _alive(child)]


def _alive(pid: int) -> bool:
    """Running, or exited and not reaped: either way a worker left behind."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _zombie_or_gone(pid: int) -> bool:
    """Exited: an orphan's zombie is init's to reap, not ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


def _start(repo: Path) -> subprocess.Popen[str]:
    # A session of its own: a terminal's Ctrl-C goes to the whole foreground process group.
    return popen("validate", "--repo", repo, env=os.environ, cwd=REPO_ROOT,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                 start_new_session=True)


@pytest.fixture
def new_children() -> Callable[[], set[int]]:
    """The children of this process started during the test: the suite's own servers (git,
    registry, sshd fixtures of other modules) may be children too, and are not the pool's."""
    before = set(_children(os.getpid()))
    return lambda: set(_children(os.getpid())) - before


def _workers(proc: subprocess.Popen[str]) -> list[int]:
    """The worker pids, as soon as they are forked (all are forked at once)."""
    assert _wait_for(lambda: bool(_children(proc.pid)) or proc.poll() is not None, 60), \
        "validate started no worker within 60 s"
    assert proc.poll() is None, "validate ended before a worker was seen"
    time.sleep(0.02)
    return _children(proc.pid)


@contextlib.contextmanager
def _running(repo: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _start(repo)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a failed test leaves nothing running
        proc.communicate(timeout=10)


@contextlib.contextmanager
def _hard_timeout(seconds: int) -> Iterator[None]:
    """Fail (not hang) an in-process run: SIGALRM interrupts the parent's wait."""
    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds} s: the pool hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _connc_sigterm() -> Iterator[None]:
    """The parent's SIGTERM handler as connc's entry point installs it; workers must not keep it."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _cpu_burners(count: int = 2) -> Iterator[None]:
    """Keep every CPU busy: the load under which the original hang was seen."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=10)


# ---------------------------------------------------------------------------- repositories


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 4,000 connections and 800 pipelines: the workers run for a second or more, long enough
    # to be signalled mid-run; sops-shaped files, written in a second (keyless validate does
    # not decrypt).
    return Path(generate.generate(4000, tmp_path_factory.mktemp("big") / "repo"))


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = Path(generate.generate(200, tmp_path_factory.mktemp("small") / "repo"))
    files = len(os.listdir(repo / "connections.d")) + len(os.listdir(repo / "pipelines.d"))
    assert PARALLEL_THRESHOLD <= files < 2 * PARALLEL_THRESHOLD  # just above: workers start
    return repo


# ---------------------------------------------------------------------------- the pool itself


def test_results_come_back_complete_and_in_order(new_children: Callable[[], set[int]]) -> None:
    with _hard_timeout(60):
        assert pool.run(lambda n: n * n, range(1000), workers=2, chunk=7, seconds=60) \
            == [n * n for n in range(1000)]
    assert not new_children()


def test_an_exception_in_a_check_reaches_the_caller_and_the_workers_are_gone(new_children: Callable[[], set[int]]) -> None:
    def check(n: int) -> int:
        if n == 500:
            raise ValueError("a bug in a check")
        return n

    with _hard_timeout(60), pytest.raises(ValueError, match="a bug in a check"):
        pool.run(check, range(1000), workers=2, chunk=10, seconds=60)
    assert not new_children()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_worker_killed_mid_run_is_an_error_not_a_hang(signum: int, new_children: Callable[[], set[int]]) -> None:
    def check(n: int) -> int:
        if n == 300:
            os.kill(os.getpid(), signum)
            time.sleep(60)
        return n

    # With connc's own SIGTERM handler in the parent: a worker that kept it would raise
    # KeyboardInterrupt and exit 1 instead of dying of the signal.
    started = time.monotonic()
    with _hard_timeout(60), _connc_sigterm(), \
            pytest.raises(pool.WorkerFailure, match=f"was killed by {signal.Signals(signum).name}"):
        pool.run(check, range(1000), workers=2, chunk=10, seconds=60)
    assert time.monotonic() - started < ENDS_WITHIN
    assert not new_children()


def test_the_workers_ignore_sigint() -> None:
    def check(n: int) -> int:
        if n == 300:
            os.kill(os.getpid(), signal.SIGINT)  # a terminal's Ctrl-C reaches the workers too
        return n

    with _hard_timeout(60):
        assert pool.run(check, range(1000), workers=2, chunk=10, seconds=60) == list(range(1000))


def test_a_stuck_worker_ends_at_the_deadline(new_children: Callable[[], set[int]]) -> None:
    def check(n: int) -> int:
        if n == 300:
            time.sleep(600)
        return n

    started = time.monotonic()
    with _hard_timeout(60), pytest.raises(pool.WorkerFailure, match="did not check 1000 files"):
        pool.run(check, range(1000), workers=2, chunk=10, seconds=1)
    assert time.monotonic() - started < ENDS_WITHIN
    assert not new_children()


def test_a_worker_signalled_right_after_the_fork_never_hangs_the_pool(new_children: Callable[[], set[int]]) -> None:
    # The race: SIGTERM landing on a worker before it blocks. A thread signals each new
    # worker the moment it shows up in /proc, run after run, under load.
    outcomes: dict[str, int] = {}
    stop = threading.Event()

    def sniper(burners: set[int]) -> None:
        while not stop.is_set():
            for child in set(_children(os.getpid())) - burners:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)

    started = time.monotonic()
    with _cpu_burners(), _hard_timeout(120), _connc_sigterm():
        thread = threading.Thread(target=sniper, args=(set(_children(os.getpid())),),
                                  daemon=True)
        thread.start()
        try:
            for _ in range(60):
                try:
                    pool.run(lambda n: n, range(2000), workers=2, chunk=50, seconds=30)
                    outcome = "finished"
                except pool.WorkerFailure as exc:
                    assert "was killed by SIGTERM" in str(exc)
                    outcome = "worker lost"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            stop.set()
            thread.join(timeout=10)
    assert outcomes.get("worker lost", 0) > 0, outcomes
    assert time.monotonic() - started < 120
    assert not new_children()


# ---------------------------------------------------------------------------- connc validate


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_validate_ends_with_exit_2_when_a_worker_is_killed(big_repo: Path, signum: int) -> None:
    with _running(big_repo) as proc:
        workers = _workers(proc)
        os.kill(workers[0], signum)
        killed = time.monotonic()
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - killed
        assert proc.returncode == 2, err
        assert f"worker process {workers[0]} was killed by {signal.Signals(signum).name}" in err
        assert "Traceback" not in err and "internal error" not in err
        assert took < ENDS_WITHIN
        assert not any(_alive(w) for w in workers)


@pytest.mark.parametrize("how", ["ctrl-c to the process group", "sigterm to connc"])
def test_an_interrupt_exits_130_and_leaves_no_worker(big_repo: Path, how: str) -> None:
    with _running(big_repo) as proc:
        workers = _workers(proc)
        if how == "sigterm to connc":
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "connc: interrupted" in err
        # Reaped by connc before it exited: not even a zombie is left.
        assert not any(_alive(w) for w in workers)


def test_workers_exit_when_connc_itself_is_killed(big_repo: Path) -> None:
    with _running(big_repo) as proc:
        workers = _workers(proc)
        os.kill(proc.pid, signal.SIGKILL)  # the OOM killer picks the parent: nothing runs
        proc.communicate(timeout=60)
        # Each worker reads end-of-file on its task pipe (or EPIPE on its result pipe) and
        # exits; init then reaps it.
        assert _wait_for(lambda: all(_zombie_or_gone(w) for w in workers), ENDS_WITHIN)


def test_many_parallel_validations_under_load_all_finish(small_repo: Path) -> None:
    started = time.monotonic()
    with _cpu_burners(1):  # one CPU taken: the two workers and the parent compete for the other
        for _ in range(20):
            proc = connc("validate", "--repo", small_repo, env=os.environ, cwd=REPO_ROOT,
                         timeout=60)
            assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 180
