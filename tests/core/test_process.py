"""connc.process: every child bounded in time, memory and output, and gone with connc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connc import process
from connc.errors import UsageError
from kit.fakesops import alive, none_left

PY = sys.executable


def test_a_deadline_is_shared_not_renewed() -> None:
    deadline = process.Deadline(0.3)
    first = process.Process(["sleep", "5"])
    with pytest.raises(process.Timeout):
        first.wait(deadline.remaining())
    # The second wait gets what is left (nothing), not a budget of its own.
    second = process.Process(["sleep", "5"])
    started = time.monotonic()
    with pytest.raises(process.Timeout):
        second.wait(deadline.remaining())
    assert time.monotonic() - started < 0.2
    assert deadline.expired
    assert "--timeout" not in deadline.exceeded("sops").message
    assert "--timeout SECONDS gives it longer" in process.Deadline(1, "--timeout").exceeded(
        "sops").message


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_deadline_takes_a_positive_number(seconds: float) -> None:
    with pytest.raises(UsageError, match="--timeout takes a positive number"):
        process.Deadline(seconds, "--timeout")


SPOOLED = pytest.mark.parametrize("spooled", [False, True], ids=["pipe", "spooled"])


@SPOOLED
def test_a_timeout_kills_the_whole_group(tmp_path: Path, spooled: bool) -> None:
    marker = tmp_path / "grandchild"
    running = process.Process(["sh", "-c", f'sleep 600 & echo $! > {marker}; wait'],
                              spooled=spooled)
    with pytest.raises(process.Timeout):
        running.wait(0.5)
    assert none_left([int(marker.read_text())])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is Linux's")
def test_memory_is_bounded() -> None:
    def grab(mib: int) -> list[str]:
        return [PY, "-c", f"bytearray({mib} * 1024 * 1024); print('held')"]

    within = process.run(grab(300), timeout=30)
    assert within.returncode == 0 and within.stdout.strip() == b"held"
    for bounded in (process.run(grab(300), timeout=30, memory=128 * 1024 * 1024),
                    process.run(grab(1536), timeout=30)):  # the default: MEMORY_LIMIT
        assert bounded.returncode != 0 and b"MemoryError" in bounded.stderr


@SPOOLED
def test_output_beyond_the_limit_stops_the_program(spooled: bool) -> None:
    # Spooled, the kernel stops it (RLIMIT_FSIZE): a program that writes forever never
    # fills connc's memory while connc waits for its end.
    running = process.Process(["cat", "/dev/zero"], limit=1024 * 1024, spooled=spooled)
    started = time.monotonic()
    with pytest.raises(process.TooMuchOutput, match="more than 1 MiB"):
        running.wait(30)
    assert time.monotonic() - started < 10
    assert not alive(running.pid)


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no anonymous memory files here")
def test_spooled_output_is_in_memory_and_bounded_by_the_kernel() -> None:
    running = process.Process(["sh", "-c", "head -c 1000 /dev/zero; sleep 30"], limit=4096,
                              spooled=True)
    try:
        assert os.readlink(f"/proc/{running.pid}/fd/1").startswith("/memfd:connc-stdout")  # no file on disk, no pipe
        limits = Path(f"/proc/{running.pid}/limits").read_text()
        [fsize] = [row for row in limits.splitlines() if row.startswith("Max file size")]
        assert fsize.split()[3:5] == ["4097", "4097"]  # one byte more: the limit is exact
    finally:
        running.stop()


@SPOOLED
def test_a_large_answer_comes_whole(spooled: bool) -> None:
    size = 100 * 1024 * 1024
    done = process.Process(["head", "-c", str(size), "/dev/urandom"], limit=size,
                           spooled=spooled).wait(30)
    assert done.returncode == 0 and len(done.stdout) == size


def test_stderr_is_kept_short_and_never_blocks_the_program() -> None:
    done = process.run(["sh", "-c", "head -c 10000000 /dev/zero >&2; echo ok"], timeout=30)
    assert done.stdout == b"ok\n"
    assert len(done.stderr) == 64 * 1024


@SPOOLED
def test_stdin_and_stdout_flow_together(spooled: bool) -> None:
    # More than a pipe holds both ways: written all first, it would deadlock.
    data = os.urandom(4 * 1024 * 1024)
    done = process.Process(["cat"], stdin=data, spooled=spooled).wait(30)
    assert done.stdout == data


def test_a_missing_program_is_named() -> None:
    with pytest.raises(UsageError, match="no-such-tool-3f1 is not installed"):
        process.Process(["no-such-tool-3f1"])


@pytest.mark.skipif(not process._orphan_guard(), reason="no setpriv --pdeathsig here")
def test_a_child_dies_with_connc(tmp_path: Path) -> None:
    # connc (here a small stand-in that starts a child through connc.process) is SIGKILLed:
    # no handler of its own runs, and the kernel ends the child.
    marker = tmp_path / "pid"
    script = ("import sys, time; from connc import process; "
              "p = process.Process(['sleep', '600']); "
              f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(600)")
    parent = subprocess.Popen([PY, "-c", script])
    try:
        end = time.monotonic() + 30
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < end, "the child did not start"
            time.sleep(0.02)
        child = int(marker.read_text())
        assert alive(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    assert none_left([child])


@pytest.mark.skipif(not process._orphan_guard(), reason="no setpriv --pdeathsig here")
def test_a_child_whose_parent_died_during_its_spawn_never_runs(tmp_path: Path) -> None:
    # connc killed between the fork and setpriv's prctl: the signal was asked for too late to
    # come. What the spawn then finds is a parent other than connc (here: a pid that is not
    # its parent), and the program never starts.
    marker = tmp_path / "ran"
    argv = process._guarded(["touch", str(marker)])
    guard_pid = argv.index(str(os.getpid()))
    argv[guard_pid] = "1"  # whose child it is not
    done = subprocess.run(argv, timeout=30, check=False)
    assert done.returncode == 137
    assert not marker.exists()
    # And with connc as its parent, it runs (the same argv, unchanged).
    subprocess.run(process._guarded(["touch", str(marker)]), timeout=30, check=True)
    assert marker.exists()


@pytest.mark.skipif(not process._orphan_guard(), reason="no setpriv --pdeathsig here")
def test_connc_killed_amid_spawns_leaves_no_child(tmp_path: Path) -> None:
    # A stand-in for render starting sops after sops, SIGKILLed at once, many times: a kill
    # that lands inside a spawn must leave no child behind either.
    pids = tmp_path / "pids"
    script = ("import os, sys; from connc import process\n"
              f"fd = os.open({str(pids)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
              "os.write(fd, b'go\\n')\n"
              "while True:\n"
              "    p = process.Process(['sh', '-c', 'echo $$ >> \"$0\"; exec sleep 600', "
              f"{str(pids)!r}])\n")
    for _ in range(10):
        parent = subprocess.Popen([PY, "-c", script])
        try:
            end = time.monotonic() + 30
            while not pids.exists() or len(pids.read_text().split()) < 5:
                assert time.monotonic() < end, "no child started"
                time.sleep(0.01)
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=30)
    time.sleep(0.5)  # a child mid-spawn reaches its check, or its program, by now
    started = [int(word) for word in pids.read_text().split() if word != "go"]
    assert started
    assert none_left(started)


# ---------------------------------------------------------------------------- in-process details
# The arithmetic and messages of Deadline, the exact bounds on output, and what happens to the
# child when the caller's own code fails while waiting.


def test_a_deadline_counts_down_and_never_below_zero() -> None:
    deadline = process.Deadline(0.2)
    first = deadline.remaining()
    assert 0.0 < first <= 0.2 and not deadline.expired
    time.sleep(0.05)
    assert deadline.remaining() < first
    time.sleep(0.2)
    assert deadline.remaining() == 0.0 and deadline.expired


def test_a_deadline_passed_is_a_usage_error_that_names_what_and_how_long() -> None:
    error = process.Deadline(2.5, "--timeout").exceeded("sops (on connections.d/db.sops.yaml)")
    assert isinstance(error, process.DeadlineExceeded) and error.exit_code == 2
    assert error.message == ("sops (on connections.d/db.sops.yaml) did not finish within the "
                             "run's deadline of 2.5 s (--timeout SECONDS gives it longer)")
    assert process.Deadline(30).exceeded("git").message == (
        "git did not finish within the run's deadline of 30 s")
    with pytest.raises(UsageError, match=r"^a deadline takes a positive number of seconds"):
        process.Deadline(-2)


def test_a_timeout_says_which_program_and_how_long() -> None:
    running = process.Process(["sleep", "5"])
    with pytest.raises(process.Timeout) as caught:
        running.wait(0.2)
    assert str(caught.value) == "sleep did not finish within 0.2 s"
    assert (caught.value.program, caught.value.seconds) == ("sleep", 0.2)
    assert not alive(running.pid)


@SPOOLED
@pytest.mark.parametrize(("size", "limit", "stopped"), [
    (4096, 4096, False),  # exactly the limit is an answer
    (4097, 4096, True),
    (0, 0, False),
])
def test_the_output_limit_is_exact(size: int, limit: int, stopped: bool, spooled: bool) -> None:
    running = process.Process(["head", "-c", str(size), "/dev/zero"], limit=limit,
                              spooled=spooled)
    if stopped:
        with pytest.raises(process.TooMuchOutput) as caught:
            running.wait(30)
        assert caught.value.exit_code == 2
        assert caught.value.message.startswith("head wrote more than")
        assert not alive(running.pid)
    else:
        assert running.wait(30).stdout == b"\0" * size


def test_the_stderr_kept_is_its_beginning() -> None:
    done = process.run(["sh", "-c", "printf 'first line\\n' >&2; head -c 200000 /dev/zero >&2; "
                                    "printf 'last line\\n' >&2"], timeout=30)
    assert done.returncode == 0
    assert done.stderr.startswith(b"first line\n") and b"last line" not in done.stderr
    assert len(done.stderr) == process._STDERR_KEPT


def test_a_program_that_reads_no_stdin_is_not_an_error() -> None:
    # It exits without reading what was written to it: the pipe breaks, its exit code answers.
    done = process.run(["sh", "-c", "exit 3"], timeout=30, stdin=b"x" * (1024 * 1024))
    assert done.returncode == 3


def test_a_program_killed_by_a_signal_has_a_negative_code() -> None:
    done = process.run(["sh", "-c", "kill -TERM $$"], timeout=30)
    assert done.returncode == -signal.SIGTERM


@SPOOLED
@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failure_while_waiting_stops_and_reaps_the_child(
        tmp_path: Path, failure: type[BaseException], spooled: bool) -> None:
    # A signal handler raising is any exception while waiting (an interrupt lands the same
    # way): the child and what it started must not outlive the wait.
    marker = tmp_path / "grandchild"
    running = process.Process(["sh", "-c", f"sleep 600 & echo $! > {marker}; "
                                           "while :; do echo tick; sleep 0.05; done"],
                              spooled=spooled)

    def fail(_signum: int, _frame: object) -> None:
        raise failure("the caller failed")

    previous = signal.signal(signal.SIGALRM, fail)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(failure):
            running.wait(30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not alive(running.pid)
    assert none_left([int(marker.read_text())])
    with pytest.raises(ChildProcessError):
        os.waitpid(running.pid, os.WNOHANG)  # reaped: no zombie left for anyone
    running.stop()  # and a second stop is a no-op


@SPOOLED
def test_a_grandchild_holding_the_pipes_cannot_make_the_wait_hang(tmp_path: Path,
                                                                 spooled: bool) -> None:
    # It left the group (setsid) and keeps stdout open: the wait ends at its timeout, and
    # the reap does not wait for the grandchild's end.
    marker = tmp_path / "escaped"
    running = process.Process(["sh", "-c", f"setsid sleep 600 & echo $! > {marker}"],
                              spooled=spooled)
    started = time.monotonic()
    try:
        with pytest.raises(process.Timeout):
            running.wait(0.5)
        assert time.monotonic() - started < 3
    finally:
        none_left([int(marker.read_text())], seconds=0)  # it escaped us by design: end it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is Linux's")
@pytest.mark.parametrize("memory", [process.MEMORY_LIMIT, 96 * 1024 * 1024])
def test_the_memory_limit_is_applied_to_the_running_child(memory: int) -> None:
    running = process.Process(["sleep", "5"], memory=memory)
    try:
        limits = Path(f"/proc/{running.pid}/limits").read_text()
    finally:
        running.stop()
    [line] = [line for line in limits.splitlines() if line.startswith("Max data size")]
    assert line.split()[3:5] == [str(memory), str(memory)]  # soft and hard


def test_the_environment_is_the_callers_alone(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    tool = tools / "only-here"
    tool.write_text("#!/bin/sh\nenv\n")
    tool.chmod(0o755)
    # Found on the PATH the child gets, not connc's own.
    done = process.run(["only-here"], timeout=30,
                       env={"PATH": f"{tools}:/usr/bin:/bin", "ONLY": "this"})
    seen = dict(line.split("=", 1) for line in done.stdout.decode().splitlines())
    assert seen.pop("ONLY") == "this" and seen.pop("PATH").startswith(str(tools))
    assert set(seen) <= {"PWD", "SHLVL", "_"}  # what sh itself sets, nothing from connc
    with pytest.raises(UsageError, match="only-here is not installed"):
        process.Process(["only-here"])


def test_a_missing_working_directory_is_not_a_missing_program(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        process.Process(["true"], cwd=tmp_path / "gone")
    assert "not installed" not in caught.value.message
    assert "working directory" in caught.value.message
