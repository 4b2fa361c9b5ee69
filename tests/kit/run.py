"""Every way the tests run connc: `python -m connc` in a fresh interpreter, to completion
(`connc`) or started for a signal or a timing (`popen`), optionally behind a fake sops
(`argv(sops=)`); its entry point in this process (`in_process`), for the tests that run it
hundreds of times; and a spy on the processes connc itself starts.

A run gets the test key unless `key=None` (a keyless CI job), or exactly `env` when given.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from kit.build import TEST_KEY_FILE, sops_env

Arg = str | os.PathLike[str]

# connc finds sops with `connc.sops.binary.executable()`: the bootstrap points it at a fake,
# then runs connc's real entry point, so signals, exit codes and output are a user's.
_FAKE_SOPS_BOOTSTRAP = ("import sys; import connc.sops.binary as s; fake = sys.argv.pop(1); "
                        "s.executable = lambda: fake; from connc.__main__ import main; main()")


def argv(*args: Arg, sops: Path | None = None) -> list[str]:
    """The argv of `connc ARGS` in this interpreter; with `sops`, that file is its sops."""
    if sops is not None:
        return [sys.executable, "-c", _FAKE_SOPS_BOOTSTRAP, str(sops), *map(str, args)]
    return [sys.executable, "-m", "connc", *map(str, args)]


def _env(key: Path | None, env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(env) if env is not None else sops_env(key)


def connc(*args: Arg, key: Path | None = TEST_KEY_FILE, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, input: str | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`connc ARGS` to completion, output captured; stdin is `input`, else empty."""
    return subprocess.run(argv(*args), env=_env(key, env), cwd=cwd, input=input,
                          stdin=subprocess.DEVNULL if input is None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)


def popen(*args: Arg, key: Path | None = TEST_KEY_FILE, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, sops: Path | None = None,
          **popen_kw: Any) -> subprocess.Popen[Any]:
    """`connc ARGS` started, for a test that signals it or watches it run; the caller waits."""
    return subprocess.Popen(argv(*args, sops=sops), env=_env(key, env), cwd=cwd, **popen_kw)


class Outcome(NamedTuple):
    """What a user sees of a run: its exit code and its output."""

    code: int
    stdout: str
    stderr: str


def in_process(*args: Arg, key: Path | None = TEST_KEY_FILE,
               env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Outcome:
    """`connc ARGS` through its entry point (`connc.__main__.main`) in this process, a tenth
    of a subprocess' cost: its exit code and output, as a user sees them, since main()
    maps every outcome to its exit code. What a fresh interpreter would get is set up for the
    run and undone after it: argv, the environment `connc` would pass, the working
    directory, an empty stdin, UTF-8 output streams, the signal handlers main() sets, and the
    cyclic garbage collector.

    An exception that main() lets through (a test's watchdog, not an Exception) carries the
    output printed so far in its notes."""
    from connc.__main__ import main

    stdin, stdout, stderr = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(3))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    collecting = gc.isenabled()  # `diff` and `approvals` switch the collector off for good
    try:
        with (_environment(_env(key, env)), contextlib.chdir(cwd or os.getcwd()),
              _sys_streams(["connc", *map(str, args)], stdin, stdout, stderr)):
            main()
    except SystemExit as done:
        code = done.code
    except BaseException as exc:
        exc.add_note(_written(stdout, stderr))
        raise
    else:
        raise AssertionError("connc's main() returned instead of exiting")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if collecting:
            gc.enable()
    assert isinstance(code, int), f"connc exited with {code!r}, not an exit code"
    return Outcome(int(code), _text(stdout), _text(stderr))


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _sys_streams(argv: list[str], stdin: io.TextIOWrapper, stdout: io.TextIOWrapper,
                 stderr: io.TextIOWrapper) -> Iterator[None]:
    saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
    sys.argv, sys.stdin, sys.stdout, sys.stderr = argv, stdin, stdout, stderr
    try:
        yield
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    assert isinstance(stream.buffer, io.BytesIO)
    return stream.buffer.getvalue().decode("utf-8", "replace")


def _written(stdout: io.TextIOWrapper, stderr: io.TextIOWrapper) -> str:
    return f"connc's stdout so far:\n{_text(stdout)}\nconnc's stderr so far:\n{_text(stderr)}"


def spy_on_processes(monkeypatch: Any) -> list[dict[str, Any]]:
    """Record every process connc starts (its argv, env, and what goes to its stdin): the
    proof that a secret travels through stdin only. Every child goes through
    `connc.process.Process`; the argv recorded is the program's own (without the prefix that
    makes it die with connc)."""
    from connc import process

    calls: list[dict[str, Any]] = []
    started = process.Process.__init__

    def spy(self: process.Process, args: Any, **kwargs: Any) -> None:
        calls.append({"args": list(args), "env": kwargs.get("env"),
                      "input": kwargs.get("stdin")})
        started(self, args, **kwargs)

    monkeypatch.setattr(process.Process, "__init__", spy)
    return calls
