"""A run's `Deadline` carries its `Cancel`: setting it stops every wait of the run at once,
a program's (`Process.wait`), a sops run's and a request's (`http.limits`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from connc import http, process
from connc.sops import binary
from kit import fakesops
from kit.build import TEST_KEY_FILE, connection, make_repo


def test_kill_only_signals_and_wait_reaps() -> None:
    running = process.Process(["sleep", "30"])
    threading.Timer(0.2, running.kill).start()
    started = time.monotonic()
    done = running.wait(10)
    assert time.monotonic() - started < 3
    assert done.returncode == -9
    running.kill()  # reaped: a no-op, never a signal to a reused pid


def test_kill_stops_the_whole_group() -> None:
    # The shell's child (sleep) holds stdout: the wait ends only if the group is gone.
    running = process.Process(["sh", "-c", "sleep 30; echo late"])
    threading.Timer(0.2, running.kill).start()
    started = time.monotonic()
    done = running.wait(10)
    assert time.monotonic() - started < 3 and done.stdout == b""


def test_a_cancelled_wait_kills_reaps_and_says_so() -> None:
    cancel = process.Cancel()
    running = process.Process(["sleep", "30"])
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(process.Cancelled, match="sleep was stopped"):
        running.wait(10, cancel=cancel)
    assert time.monotonic() - started < 3
    with pytest.raises(process.Cancelled):  # already set: nothing runs on
        process.Process(["sleep", "30"]).wait(10, cancel=cancel)


def test_an_uncancelled_wait_leaves_no_callback_behind() -> None:
    cancel = process.Cancel()
    assert process.Process(["true"]).wait(10, cancel=cancel).returncode == 0
    assert cancel.add(lambda: None)  # still unset, and the wait's kill is gone from it
    assert len(cancel._callbacks) == 1


def test_deadlines_of_one_run_share_its_cancel() -> None:
    run = process.Deadline(60)
    probe = process.Deadline(5, cancel=run.cancel)
    assert probe.cancel is run.cancel
    assert process.Deadline(5).cancel is not run.cancel


def test_limits_take_the_deadline_and_its_cancel() -> None:
    deadline = process.Deadline(30)
    with http.limits(deadline=deadline):
        assert 29 < (http.remaining() or 0) <= 30
        assert not http.cancelled()
        deadline.cancel.set()
        assert http.cancelled()


def test_a_sops_run_ends_when_its_deadline_is_cancelled(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", connections={"c0": connection("c0")})
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, "hang"), pids)
    deadline = process.Deadline(60)
    threading.Timer(0.3, deadline.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(process.Cancelled):
        binary.decrypt(repo, "connections.d/c0.sops.yaml", deadline=deadline)
    assert time.monotonic() - started < 5
    assert fakesops.none_left(fakesops.started(pids))
