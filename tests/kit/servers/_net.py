"""Plumbing shared by the test servers: ports, readiness, clean environments, teardown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


class JsonHandler(BaseHTTPRequestHandler):
    """A fake API's request handler: JSON answers (`send_json`), and no request log on
    stderr, where a test's own output goes."""

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """`body` as JSON (or as it is, when it is bytes already), with `headers` besides."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now.

    Only for servers that must be told their port up front (docker-registry); in-process
    servers bind port 0 instead, which has no window in which another process can take it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_pytest(args: list[str]) -> list[str]:
    """Prefix `args` so Linux SIGKILLs the server if pytest dies without tearing down (CI
    timeout, kill -9). setpriv (util-linux, Essential in Debian) sets the parent-death signal
    and execs the server in place: same pid, and no preexec_fn in a threaded process.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *args] if setpriv else args


def popen_server(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server process with stdout+stderr going to `log_path`.

    In a session of its own, so stop_process() can signal the whole process group.
    """
    with open(log_path, "wb") as log:
        return subprocess.Popen(_die_with_pytest(args), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def wait_until_listening(
    port: int, proc: subprocess.Popen[bytes], log_path: Path, name: str, timeout: float = 15.0
) -> None:
    """Poll until `port` accepts connections; fail fast, with the log, if `proc` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise ServerStartError(
                f"{name} exited with status {code} before listening on {LOOPBACK}:{port}; "
                f"log tail:\n{log_tail(log_path)}"
            )
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{name} did not listen on {LOOPBACK}:{port} within {timeout:.0f}s; "
                f"log tail:\n{log_tail(log_path)}"
            )
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop a server started with start_new_session=True, and anything it forked.

    The whole process group is signalled so a helper child cannot outlive the fixture.
    """
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for a child process: no proxies, no inherited tool config.

    HOME and the XDG directories point into `home`, so clients such as skopeo and kubectl
    cannot pick up the developer's (or CI runner's) credentials or caches.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    (home / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(extra)
    return env


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def serving(server: socketserver.BaseServer, name: str) -> Iterator[None]:
    """Run an in-process socketserver on a daemon thread for the duration of the block.

    A short poll interval keeps shutdown() (which waits for the loop to notice) cheap enough
    for function-scoped fixtures.
    """
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
