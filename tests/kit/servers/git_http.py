"""An authenticated git smart-HTTP server: Basic auth in Python, then the real `git http-backend`.

Accounts are granted per path prefix, so one host can serve `/org-a/...` to alice and
`/org-b/...` to bob: that is what lets a test prove two credentials for the SAME host are kept
apart (a git credential bundle that leaked bob's password into alice's clone would show up in
`GitHttpServer.log`).

Answers follow what git's credential machinery relies on: 401 with `WWW-Authenticate` when the
credential is missing or wrong (git then asks its askpass / helper), 403 when the credential is
valid but not for this path (git must fail, not ask again).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, cast
from urllib.parse import unquote

import pytest

from ._net import LOOPBACK, clean_env, remove_tree, serving

REALM = "git"
DEFAULT_BRANCH = "main"
_CHUNK = 64 * 1024


def git_env(home: Path, **extra: str) -> dict[str, str]:
    """A pinned environment for running git: no system/user config, no prompts, fixed identity."""
    return clean_env(
        home,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="connc test",
        GIT_AUTHOR_EMAIL="test@connc.invalid",
        GIT_COMMITTER_NAME="connc test",
        GIT_COMMITTER_EMAIL="test@connc.invalid",
        **extra,
    )


def run_git(args: list[str], env: dict[str, str], *, cwd: Path | None = None,
            stdin: str | None = None) -> str:
    """Run git, returning stdout; on failure raise with git's stderr so the cause is visible."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


def write_askpass(directory: Path, username: str, password: str) -> Path:
    """A GIT_ASKPASS program answering git's prompts from files, never from argv or env.

    Test-only stand-in for a credential bundle: the secret sits in a 0600 file next to the
    script, so it never shows up in `ps` output or in the environment of child processes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    user_file, password_file = directory / "username", directory / "password"
    for path, value in ((user_file, username), (password_file, password)):
        path.write_text(value)
        path.chmod(0o600)
    script = directory / "askpass.sh"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  Username*) cat {shlex.quote(str(user_file))} ;;\n"
        f"  Password*) cat {shlex.quote(str(password_file))} ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(0o700)
    return script


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    user: str | None  # the Basic-auth username presented, valid or not; None if none was sent
    status: int


@dataclass
class _Account:
    password: str
    prefixes: set[str] = field(default_factory=set)


def _normalise_prefix(prefix: str) -> str:
    """'org-a', '/org-a', '/org-a/' all mean everything below /org-a/; '' or '/' mean all."""
    stripped = prefix.strip("/")
    return "/" if not stripped else f"/{stripped}/"


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _safe_path(raw: str) -> str | None:
    """The decoded URL path, or None if it tries to climb out of the project root."""
    path = unquote(raw)
    if not path.startswith("/") or any(part in ("..", ".") for part in path.split("/")):
        return None
    return path


class GitHttpServer:
    """State and policy of the server; the HTTP plumbing is in `_GitHandler`."""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "repos"
        self.root.mkdir()
        self._home = workdir / "home"
        self._home.mkdir()
        self.log_path = workdir / "server.log"
        self.log: list[GitRequest] = []
        self._accounts: dict[str, _Account] = {}
        self._backends: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self.httpd = _GitHTTPServer((LOOPBACK, 0), self)
        self.url = f"http://{LOOPBACK}:{self.httpd.server_address[1]}"

    # --- test-facing API -------------------------------------------------------------------

    def add_account(self, username: str, password: str, prefix: str) -> None:
        """Let `username`/`password` read and push every repo under `prefix` (e.g. 'org-a')."""
        with self._lock:
            account = self._accounts.setdefault(username, _Account(password))
            if account.password != password:
                raise ValueError(f"account {username!r} already exists with another password")
            account.prefixes.add(_normalise_prefix(prefix))

    def add_repo(self, path: str) -> str:
        """Create a bare repo (e.g. 'org-a/api.git') with one commit on main; return its URL."""
        if _safe_path("/" + path.strip("/")) is None:
            raise ValueError(f"bad repo path {path!r}")
        repo = self.root / path.strip("/")
        env = git_env(self._home)
        run_git(["init", "--quiet", "--bare", f"--initial-branch={DEFAULT_BRANCH}", str(repo)], env)
        # http-backend refuses push unless this is set (or REMOTE_USER is, which we also set;
        # being explicit keeps push working whatever the git version's default).
        run_git(["config", "http.receivepack", "true"], env, cwd=repo)
        self._initial_commit(repo, env, path)
        return self.repo_url(path)

    def repo_url(self, path: str) -> str:
        return f"{self.url}/{path.strip('/')}"

    def head(self, path: str, branch: str = DEFAULT_BRANCH) -> str:
        """The commit a branch of a served repo points at (to check that a push landed)."""
        return run_git(["rev-parse", f"refs/heads/{branch}"], git_env(self._home),
                       cwd=self.root / path.strip("/"))

    def users_for(self, path_prefix: str) -> set[str | None]:
        """Usernames that made successful requests below `path_prefix`."""
        prefix = _normalise_prefix(path_prefix)
        return {r.user for r in self.log if r.status == 200 and r.path.startswith(prefix)}

    # --- server internals ------------------------------------------------------------------

    @staticmethod
    def _initial_commit(repo: Path, env: dict[str, str], path: str) -> None:
        # Plumbing instead of clone/commit/push: no work tree, a handful of fast git calls.
        blob = run_git(["hash-object", "-w", "--stdin"], env, cwd=repo, stdin=f"# {path}\n")
        tree = run_git(["mktree"], env, cwd=repo, stdin=f"100644 blob {blob}\tREADME.md\n")
        commit = run_git(["commit-tree", tree, "-m", "initial commit"], env, cwd=repo)
        run_git(["update-ref", f"refs/heads/{DEFAULT_BRANCH}", commit], env, cwd=repo)

    def authorize(self, header: str | None, path: str) -> tuple[int, str | None]:
        """(HTTP status, presented username): 200 allowed, 401 bad/missing, 403 wrong path."""
        creds = _parse_basic(header)
        if creds is None:
            return 401, None
        user, password = creds
        with self._lock:
            account = self._accounts.get(user)
            expected = account.password if account else ""
            prefixes = set(account.prefixes) if account else set()
        # Compare even for unknown users so the check does not leak which names exist.
        if not hmac.compare_digest(password.encode(), expected.encode()) or account is None:
            return 401, user
        if not any(path.startswith(p) for p in prefixes):
            return 403, user
        return 200, user

    def record(self, request: GitRequest) -> None:
        with self._lock:
            self.log.append(request)

    def cgi_env(self, handler: BaseHTTPRequestHandler, path: str, query: str,
                user: str) -> dict[str, str]:
        env = git_env(
            self._home,
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL=handler.request_version,
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=path,
            QUERY_STRING=query,
            REQUEST_METHOD=handler.command,
            REMOTE_USER=user,
            REMOTE_ADDR=handler.client_address[0],
            CONTENT_TYPE=handler.headers.get("Content-Type", ""),
        )
        if "Content-Length" in handler.headers and not _is_chunked(handler):
            env["CONTENT_LENGTH"] = handler.headers["Content-Length"]
        # http-backend inflates gzip bodies itself and speaks protocol v2 when told to.
        for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                            ("Git-Protocol", "HTTP_GIT_PROTOCOL")):
            if header in handler.headers:
                env[var] = handler.headers[header]
        return env

    def spawn_backend(self, env: dict[str, str], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, env=env)
        with self._lock:
            self._backends.add(proc)
        return proc

    def reap_backend(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait(timeout=60)
        with self._lock:
            self._backends.discard(proc)

    def kill_backends(self) -> None:
        """At teardown: no http-backend of a request that a failing test abandoned survives."""
        with self._lock:
            procs = list(self._backends)
        for proc in procs:
            proc.kill()
            proc.wait()


class _GitHTTPServer(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], app: GitHttpServer) -> None:
        self.app = app
        super().__init__(address, _GitHandler)


def _is_chunked(handler: BaseHTTPRequestHandler) -> bool:
    return "chunked" in handler.headers.get("Transfer-Encoding", "").lower()


def _iter_body(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    """The request body, de-chunked: git streams large pushes with Transfer-Encoding: chunked."""
    rfile = handler.rfile
    if _is_chunked(handler):
        while True:
            size = int(rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return
            yield rfile.read(size)
            rfile.readline()  # CRLF after each chunk
    remaining = int(handler.headers.get("Content-Length", "0") or "0")
    while remaining > 0:
        data = rfile.read(min(_CHUNK, remaining))
        if not data:
            return
        remaining -= len(data)
        yield data


def _feed(handler: BaseHTTPRequestHandler, sink: IO[bytes]) -> None:
    # On its own thread: the backend may start answering before it has read everything,
    # and a pipe buffer filling up on either side would otherwise deadlock.
    try:
        for data in _iter_body(handler):
            sink.write(data)
    except (BrokenPipeError, ConnectionError, ValueError):
        pass  # the backend exited early (it reports why) or the client went away
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass


def _read_cgi_headers(stream: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status, headers = 200, []
    for raw in iter(stream.readline, b""):
        line = raw.rstrip(b"\r\n").decode("latin-1")
        if not line:
            break
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers


class _GitHandler(BaseHTTPRequestHandler):
    server: _GitHTTPServer
    # HTTP/1.0: the response ends when the connection closes, so the CGI output can be
    # streamed as-is, without computing a length or chunking it.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: object) -> None:
        with open(self.server.app.log_path, "a") as log:
            log.write(f"{self.address_string()} {format % args}\n")

    def _handle(self) -> None:
        app = self.server.app
        raw_path, _, query = self.path.partition("?")
        path = _safe_path(raw_path)
        if path is None:
            self._refuse(400, None, raw_path)
            return
        status, user = app.authorize(self.headers.get("Authorization"), path)
        if status != 200 or user is None:
            self._refuse(status, user, path)
            return
        status = self._run_backend(app, path, query, user)
        app.record(GitRequest(self.command, path, user, status))

    def _refuse(self, status: int, user: str | None, path: str) -> None:
        self.server.app.record(GitRequest(self.command, path, user, status))
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(f"{status} {self.responses[status][0]}\n".encode())

    def _run_backend(self, app: GitHttpServer, path: str, query: str, user: str) -> int:
        with open(app.log_path, "ab") as stderr:
            proc = app.spawn_backend(app.cgi_env(self, path, query, user), stderr)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(self, proc.stdin), daemon=True)
        feeder.start()
        try:
            status, headers = _read_cgi_headers(proc.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            # read1: pass on what the backend has written so far instead of waiting for 64 KiB.
            stdout = cast(io.BufferedReader, proc.stdout)
            while data := stdout.read1(_CHUNK):
                self.wfile.write(data)
            return status
        finally:
            feeder.join(timeout=60)
            app.reap_backend(proc)


@pytest.fixture
def git_server() -> Iterator[GitHttpServer]:
    """A fresh git smart-HTTP server on 127.0.0.1 with no repos and no accounts.

    Function-scoped because tests add accounts and read the request log: sharing them would
    couple tests, and the server (an in-process thread) costs milliseconds to start.
    """
    workdir = Path(tempfile.mkdtemp(prefix="connc-git-http-"))
    try:
        server = GitHttpServer(workdir)
        with serving(server.httpd, "git-http"):
            try:
                yield server
            finally:
                server.kill_backends()
    finally:
        remove_tree(workdir)


__all__ = ["GitHttpServer", "GitRequest", "git_env", "git_server", "run_git", "write_askpass"]
