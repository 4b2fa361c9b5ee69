"""sops as an adversary: hung (an unreachable KMS), crashing midway, printing garbage or
without end, eating memory; and connc stopped by SIGTERM, SIGINT or SIGKILL while it runs.

Every command ends within its one deadline for the whole run (never one per connection),
says what happened in its own words (never what sops printed), runs a bounded number of sops
at once, leaves no process running and no file half written.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from connc import credentials, process
from connc.errors import RenderError, SopsError
from connc.sops import binary
from kit import fakesops
from kit.build import (
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    connection,
    make_repo,
    pipeline,
    sops_env,
    write,
)
from kit.fakesops import SENTINEL
from kit.keys import new_age_key
from kit.run import popen

WIDE = 11  # connections of the pipeline `wide`: more than credentials.CONCURRENT


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    members = {"apiVersion": "connc/v1", "kind": "Members",
               "users": {"alice": {"recipients": [TEST_RECIPIENT]}, "bob": {}},
               "teams": {}}
    ids = [f"c{n}" for n in range(WIDE)]
    return make_repo(tmp_path_factory.mktemp("estate") / "repo", members=members,
                     connections={i: connection(i, spec={"url": f"https://gitlab.com/{i}"},
                                                credential={"token": f"tok-{i}",
                                                            "username": "bot"})
                                  for i in ids},
                     pipelines={"wide": pipeline("wide", *ids), "one": pipeline("one", "c0")})


@pytest.fixture
def repo(estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    return Path(shutil.copytree(estate, tmp_path / "repo"))


def _render(repo: Path, pipeline_id: str, out: Path, seconds: float = 30) -> Any:
    from connc.render.run import render

    return render(repo, pipeline_id, out, process.Deadline(seconds, "--timeout"))


def _needs_sync(repo: Path) -> None:
    """An admin key every file lacks: `keys sync --all` has every file to update."""
    write(repo, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config",
                               "adminRecipients": [new_age_key(repo.parent)[1]]})


def _files(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------------------- one deadline


def test_a_hung_sops_costs_one_deadline_not_one_per_connection(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, "hang"), pids)
    started = time.monotonic()
    with pytest.raises(process.DeadlineExceeded) as caught:
        _render(repo, "wide", tmp_path / "out", seconds=0.5)
    # Eleven hung decryptions, one deadline: not 11 x 0.5 s.
    assert time.monotonic() - started < 3
    assert caught.value.exit_code == 2
    assert "connections.d/c0.sops.yaml" in caught.value.message
    assert "--timeout" in caught.value.message
    assert len(fakesops.started(pids)) == credentials.CONCURRENT  # no more were started
    assert fakesops.none_left(fakesops.started(pids))
    assert not (tmp_path / "out").exists()


def _overlap(log: Path) -> int:
    """The most fakes running at one moment, from their start and end lines."""
    events = sorted((int(stamp), kind == "start") for stamp, kind in
                    (line.split() for line in log.read_text().splitlines()))
    running = most = 0
    for _stamp, start in events:
        running += 1 if start else -1
        most = max(most, running)
    return most


def test_render_and_validate_run_a_bounded_number_of_sops(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connc.validate.run import validate

    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    fake = str(fakesops.write(tmp_path, "slow"))
    monkeypatch.setattr(binary, "executable", lambda: fake)
    output, _manifest = _render(repo, "wide", tmp_path / "out")
    assert (tmp_path / "out" / "git" / "config").is_file()
    assert _overlap(log) == credentials.CONCURRENT < WIDE
    log.unlink()
    report = validate(repo, decrypt=True)
    assert not [f for f in report.findings if f.severity.value == "error"], report.findings
    assert _overlap(log) == credentials.CONCURRENT


def test_check_decryptions_share_one_deadline(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connc.check import run as check_run

    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, "hang"), pids)
    monkeypatch.setattr(check_run, "DECRYPT_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(process.DeadlineExceeded):
        check_run.check(repo, [], timeout=5)
    assert time.monotonic() - started < 3
    assert fakesops.none_left(fakesops.started(pids))


# ---------------------------------------------------------------------------- misbehaving sops


@pytest.mark.parametrize(("behaviour", "said"), [
    ("crash", "sops was killed by SIGSEGV"),
    ("garbage", "sops returned output that is not JSON"),
    ("garbage-failure", "sops could not process the file"),
    ("flood", "sops printed far more than the file holds"),
    ("eat-memory", "sops could not process the file"),
])
def test_render_says_what_happened_never_what_sops_printed(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str,
        said: str) -> None:
    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, behaviour), pids)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        _render(repo, "one", tmp_path / "out")
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert said in message and "connections.d/c0.sops.yaml" in message
    assert SENTINEL not in message and SENTINEL not in repr(caught.value)
    assert not (tmp_path / "out").exists()
    if behaviour == "eat-memory":
        # Stopped by RLIMIT_DATA: it never held much more than sops may.
        held = int((pids / "memory").read_text())
        assert held <= binary.MEMORY_LIMIT


def test_sops_out_of_memory_is_named() -> None:
    stderr = (b"fatal error: out of memory allocating heap arena metadata\n\nruntime stack:\n"
              b"runtime.throw({0x1fcd3c9?, 0x10000000?})\n")
    assert "sops ran out of memory (connc allows it 512 MiB)" in binary.explain(2, stderr)
    assert binary.explain(2, b"panic: runtime error: " + SENTINEL.encode()) == \
        "sops crashed (a bug in sops, or input it cannot handle)"


@pytest.mark.parametrize("behaviour", ["crash", "half-then-hang"])
def test_secret_set_leaves_the_file_whole_when_sops_fails_midway(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str) -> None:
    from connc.author.secret_set import set_secret

    before = _files(repo)
    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, behaviour, only="set"), pids)
    error: type[Exception] = SopsError if behaviour == "crash" else process.DeadlineExceeded
    with pytest.raises(error) as caught:
        set_secret(repo, "c0", "token", io.BytesIO(b"new-value"),
                   deadline=process.Deadline(0.5))
    assert SENTINEL not in str(caught.value)
    assert _files(repo) == before  # no half file, and no temp file beside it
    assert fakesops.none_left(fakesops.started(pids))


# ---------------------------------------------------------------------------- the commands
# Each as a user runs it (a process, signals, exit codes). The runs of a test start at once,
# each on its own copy of the repository: the matrix costs about one run's time.


@dataclasses.dataclass
class Run:
    repo: Path
    out: Path
    pids: Path
    before: dict[str, bytes]
    proc: subprocess.Popen[str] | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


def _start(base: Path, where: Path, fake: Path, args: tuple[str, ...]) -> Run:
    repo = Path(shutil.copytree(base, where / "repo"))
    if args[0] == "keys":
        _needs_sync(repo)
    run = Run(repo, where / "out", where / "pids", _files(repo))
    run.pids.mkdir()
    extra = ["--out", str(run.out)] if args[0] == "render" else []
    value = where / "value"
    value.write_text("new-value")
    env = sops_env(TEST_KEY_FILE) | {"FAKE_PIDS": str(run.pids)}
    with value.open("rb") as stdin:
        run.proc = popen(*args, *extra, "--repo", repo, sops=fake, env=env, stdin=stdin,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run.seconds = time.monotonic()
    return run


def _finish(run: Run) -> Run:
    assert run.proc is not None
    try:
        run.stdout, run.stderr = run.proc.communicate(timeout=60)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()
    run.seconds = time.monotonic() - run.seconds
    return run


DEADLINE_RUNS = {
    "render": ("render", "wide", "--timeout", "1"),
    "validate --decrypt": ("validate", "--decrypt", "--timeout", "1"),
    "seal": ("seal", "--all", "--timeout", "1"),
    "secret set": ("secret", "set", "c0", "token", "--timeout", "1"),
    "secret unset": ("secret", "unset", "c0", "username", "--timeout", "1"),
    "keys sync": ("keys", "sync", "--all", "--timeout", "1"),
}


@pytest.fixture(scope="module")
def deadline_runs(estate: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("deadlines")
    fake = fakesops.write(base, "hang")
    runs = {name: _start(estate, base / name.replace(" ", "-"), fake, args)
            for name, args in DEADLINE_RUNS.items()}
    return {name: _finish(run) for name, run in runs.items()}


@pytest.mark.parametrize("name", DEADLINE_RUNS)
def test_every_command_ends_at_its_deadline_with_exit_2(deadline_runs: dict[str, Run],
                                                        name: str) -> None:
    run = deadline_runs[name]
    assert run.seconds < 15
    assert run.proc is not None and run.proc.returncode == 2, run.stderr
    assert "did not finish within the run's deadline of 1 s" in run.stderr
    assert "Traceback" not in run.stderr and SENTINEL not in run.stdout + run.stderr
    assert fakesops.none_left(fakesops.started(run.pids))
    assert _files(run.repo) == run.before
    assert not run.out.exists()


# SIGINT takes SIGTERM's path in connc (both unwind as KeyboardInterrupt): render shows it.
SIGNAL_RUNS = [(("render", "wide"), signal.SIGTERM), (("render", "wide"), signal.SIGINT),
               (("render", "wide"), signal.SIGKILL),
               (("secret", "set", "c0", "token"), signal.SIGTERM),
               (("secret", "set", "c0", "token"), signal.SIGKILL),
               (("keys", "sync", "--all"), signal.SIGTERM),
               (("keys", "sync", "--all"), signal.SIGKILL)]
SIGNAL_IDS = [f"{' '.join(args[:2])}-{signal.Signals(signum).name}"
              for args, signum in SIGNAL_RUNS]


@pytest.fixture(scope="module")
def signal_runs(estate: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("signals")
    runs = {}
    for name, (args, signum) in zip(SIGNAL_IDS, SIGNAL_RUNS, strict=True):
        # sops hangs in the command's own step: decrypting (render), writing (secret set),
        # updating keys (keys sync: in its staging copies). Where sops writes, it hangs after
        # half a file, which an interrupt must undo; no process can undo anything after a
        # SIGKILL, so there it hangs before writing (sops writes its file at its very end).
        only = {"render": "decrypt", "secret": "set", "keys": "updatekeys"}[args[0]]
        behaviour = "hang" if only == "decrypt" or signum == signal.SIGKILL \
            else "half-then-hang"
        fake = fakesops.write(base / "fakes", behaviour, only=only)
        runs[name] = _start(estate, base / name.replace(" ", "-"), fake, args)
    for name, (_args, signum) in zip(SIGNAL_IDS, SIGNAL_RUNS, strict=True):
        run = runs[name]
        assert run.proc is not None
        try:
            fakesops.wait_for(run.pids, 1)
        finally:
            run.proc.send_signal(signum)
    return {name: _finish(run) for name, run in runs.items()}


@pytest.mark.parametrize("name", SIGNAL_IDS)
def test_a_stopped_connc_leaves_nothing_running_and_nothing_half_written(
        signal_runs: dict[str, Run], name: str) -> None:
    run = signal_runs[name]
    killed = name.endswith("SIGKILL")
    assert run.proc is not None
    assert run.proc.returncode == (-signal.SIGKILL if killed else 130), run.stderr
    assert "Traceback" not in run.stderr
    assert fakesops.none_left(fakesops.started(run.pids))
    assert not run.out.exists()
    after = _files(run.repo)
    if not killed:
        assert after == run.before
        assert not list(run.repo.glob(".connc/keys-sync-*"))
    else:
        # What a SIGKILL can leave: a keys sync staging directory (the next sync removes
        # it); never a repository file other than it was.
        assert {k: v for k, v in after.items() if not k.startswith(".connc/")} == run.before
