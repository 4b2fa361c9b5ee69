"""A bundle's life after render: replaced, cleaned, killed half-way, and where it lives.

Every rule runs the real command (`python -m connc`, or the refresh helper as git runs it)
against the fake GitHub, and checks the tokens there: revoked means GitHub was told.
  * a staging directory a killed render left (`.OUT.connc-*`) is revoked and removed by the
    next render or clean of OUT, and nothing else beside OUT is touched;
  * rendering over a previous bundle revokes its tokens;
  * `connc clean` refuses, before revoking anything, an empty path, the working directory and
    its ancestors, a repository, a symlink, and any directory that is not exactly a bundle;
  * the refresh helper and clean hold a state file's apiUrl to render's URL policy;
  * the default OUT lives in a private mkdtemp directory that no other user can enter.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connc.github.apps import GitHubApp
from connc.render import bundle
from connc.render.bundle import MANIFEST, MARKER, BundleFiles
from connc.secrets import Secret
from kit.build import connection, key_env, make_repo, pipeline
from kit.run import connc, popen
from kit.servers.github_fake import FakeGitHub

NOBODY = 65534


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    """One fake GitHub for the module (tests tell their tokens apart by value)."""
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def repo(github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pipeline `ci` uses one github-app connection of the fake; `ci-refresh` keeps the key."""
    spec = {"apiUrl": github.url, "appId": int(github.app_id),
            "installationId": github.installation_id}
    refreshing = pipeline("ci-refresh", "gh-app")
    refreshing["uses"][0]["refresh"] = True
    return make_repo(tmp_path_factory.mktemp("lifecycle") / "repo", connections={
        "gh-app": connection("gh-app", type_="github-app", spec=spec,
                             credential={"privateKey": github.private_key_pem})},
        pipelines={"ci": pipeline("ci", "gh-app"), "ci-refresh": refreshing})


def env(**extra: str) -> dict[str, str]:
    # The fake is on loopback: no proxy from the environment may intercept it.
    return key_env(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **extra)


def run(*args: str | os.PathLike[str], cwd: Path | None = None,
        environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return connc(*args, env=environ if environ is not None else env(), cwd=cwd, timeout=60)


def render(root: Path, out: Path, pipeline_id: str = "ci",
           environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("render", pipeline_id, "--repo", root, "--out", out, environ=environ)


def token_in(directory: Path) -> str:
    return str(json.loads((directory / "github/gh-app.json").read_text())["token"])


def mint(github: FakeGitHub) -> str:
    """A live installation token, as render would have minted it."""
    app = GitHubApp(github.url, github.app_id, Secret(github.private_key_pem))
    return app.mint_installation_token(github.installation_id).token.reveal()


def state(github: FakeGitHub, token: str, **fields: Any) -> str:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    return json.dumps({"connection": "gh-app", "apiUrl": github.url, "token": token,
                       "expiresAt": expires.isoformat(), "refresh": False, **fields})


def lay_out(directory: Path, files: dict[str, str], *, listed: list[str] | None = None,
            mode: int = 0o600) -> None:
    """A directory as a render writes its staging directory: 0700, the manifest first
    (listing every file of the bundle, written or not yet), then files of `mode`."""
    directory.mkdir(mode=0o700)
    names = listed if listed is not None else sorted({*files, MANIFEST})
    content = {MANIFEST: json.dumps({"kind": MARKER, "version": 1, "files": names}), **files}
    for relpath, text in content.items():
        path = directory / relpath
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(path, mode)


def tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.is_symlink()}


class Gate:
    """Holds the first request of `method` to a path matching `path` until `release`, then
    lets it through, or (fail=True) answers 502 without acting on it: the request of a
    client that was killed meanwhile never took effect."""

    def __init__(self, github: FakeGitHub, method: str, path: str, *, fail: bool) -> None:
        self.arrived, self.released = threading.Event(), threading.Event()
        real = github.handle

        def handle(verb: str, target: str, headers: dict[str, str], body: bytes
                   ) -> tuple[int, dict[str, str], bytes]:
            if verb == method and re.search(path, target) and not self.arrived.is_set():
                self.arrived.set()
                self.released.wait(60)
                if fail:
                    return 502, {"Content-Type": "application/json"}, b'{"message": "gone"}'
            return real(verb, target, headers, body)

        self.github, self.open = github, True
        github.handle = handle  # type: ignore[method-assign]

    def close(self) -> None:
        self.released.set()
        if self.open:
            self.open = False
            del self.github.handle


@pytest.fixture
def gates(github: FakeGitHub) -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.close()


# --- a killed render's leftovers ------------------------------------------------------------


@pytest.mark.parametrize("command", ["render", "clean"])
def test_a_staging_directory_left_by_a_killed_render_is_revoked_and_removed(
        github: FakeGitHub, repo: Path, tmp_path: Path, command: str) -> None:
    out = tmp_path / "out"
    token = mint(github)
    # As SIGKILL leaves it mid-way: the manifest lists files it never got to write.
    staging = tmp_path / ".out.connc-k1lled_0"
    lay_out(staging, {"github/gh-app.json": state(github, token)},
            listed=["env", "git/askpass", "git/config", "github/gh-app.json", MANIFEST])
    # Beside OUT, and not to be touched: named like a staging directory but holding a file no
    # manifest lists, one of mode 0644, another OUT's staging, a name mkdtemp never makes.
    decoy_token = mint(github)
    decoys = {".out.connc-unlisted": {"github/gh-app.json": state(github, decoy_token),
                                      "notes.txt": "mine\n"},
              ".out.connc-wrongmod": {"github/gh-app.json": state(github, decoy_token)},
              ".other.connc-abcdefgh": {"github/gh-app.json": state(github, decoy_token)},
              ".out.connc-short": {"github/gh-app.json": state(github, decoy_token)}}
    for name, files in decoys.items():
        lay_out(tmp_path / name, files, listed=sorted(set(files) - {"notes.txt"} | {MANIFEST}),
                mode=0o644 if name == ".out.connc-wrongmod" else 0o600)
    before = {name: tree(tmp_path / name) for name in decoys}

    proc = render(repo, out) if command == "render" else run("clean", out)

    assert proc.returncode == 0, proc.stderr
    assert not staging.exists()
    assert token in github.revoked and not github.is_live(token)
    assert f"removed {staging}" in proc.stderr
    assert {name: tree(tmp_path / name) for name in decoys} == before
    assert github.is_live(decoy_token)
    assert "warning: left" in proc.stderr and "notes.txt is not listed" in proc.stderr
    if command == "render":
        assert github.is_live(token_in(out))
        assert run("clean", out).returncode == 0


def test_a_render_killed_between_staging_and_rename_is_cleaned_by_the_next_render(
        github: FakeGitHub, repo: Path, tmp_path: Path) -> None:
    # The kill comes from a sitecustomize the test puts on PYTHONPATH, not from connc: the
    # render is SIGKILLed at the exact moment it would rename its staging directory.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, re, signal\n"
        "_rename = os.rename\n"
        "def rename(src, dst, *args, **kwargs):\n"
        "    if re.fullmatch(r'\\.out\\.connc-[a-z0-9_]{8}', os.path.basename(src)):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return _rename(src, dst, *args, **kwargs)\n"
        "os.rename = rename\n")
    out = tmp_path / "out"
    killed = render(repo, out, environ=env(PYTHONPATH=str(hook)))
    assert killed.returncode == -signal.SIGKILL
    [staging] = [p for p in tmp_path.iterdir() if p.name.startswith(".out.connc-")]
    leaked = token_in(staging)
    assert github.is_live(leaked) and not out.exists()

    proc = render(repo, out)
    assert proc.returncode == 0, proc.stderr
    assert not staging.exists() and not github.is_live(leaked)
    assert github.is_live(token_in(out))
    assert run("clean", out).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hook"]


def test_a_render_killed_while_revoking_the_bundle_it_replaced(
        github: FakeGitHub, repo: Path, tmp_path: Path, gates: list[Gate]) -> None:
    out = tmp_path / "out"
    assert render(repo, out).returncode == 0
    old = token_in(out)
    gate = Gate(github, "DELETE", r"^/installation/token$", fail=True)  # a slow GitHub
    gates.append(gate)
    proc = popen("render", "ci", "--repo", repo, "--out", out, env=env(),
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert gate.arrived.wait(30), "render never revoked the bundle it replaced"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    gate.close()
    # Killed with the new bundle in place and the old one beside it, its token still live.
    [retired] = [p for p in tmp_path.iterdir() if p.name.startswith(".out.connc-old-")]
    assert token_in(retired) == old and github.is_live(old)
    new = token_in(out)
    assert new != old

    proc_clean = run("clean", out)
    assert proc_clean.returncode == 0, proc_clean.stderr
    assert not github.is_live(old) and not github.is_live(new)
    assert list(tmp_path.iterdir()) == []


def test_rendering_over_a_previous_bundle_revokes_its_tokens(
        github: FakeGitHub, repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert render(repo, out, "ci-refresh").returncode == 0
    old = token_in(out)
    proc = render(repo, out)
    assert proc.returncode == 0, proc.stderr
    new = token_in(out)
    assert not github.is_live(old) and old in github.revoked
    assert github.is_live(new)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert run("clean", out).returncode == 0


# --- clean refuses what is not a bundle ------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What a pull request can make of a checkout: a manifest saying it is a bundle."""
    root = tmp_path / "checkout"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / MANIFEST).write_text(json.dumps({"kind": MARKER, "files": [MANIFEST]}))
    return root


@pytest.mark.parametrize(("argument", "where", "reason"), [
    ("", ".", "working directory"),
    (".", ".", "working directory"),
    ("..", "src", "holds the working directory"),
    ("{checkout}", "..", "is a git repository"),
    ("creds", ".", "inside the repository"),
])
def test_clean_refuses_the_working_directory_its_ancestors_and_repositories(
        checkout: Path, argument: str, where: str, reason: str) -> None:
    # `creds` is a genuine bundle, inside the work tree of the working directory.
    files = BundleFiles()
    files.add("env", "export X=1\n")
    files.add(MANIFEST, json.dumps({"kind": MARKER, "files": ["env", MANIFEST]}))
    bundle.commit(checkout / "creds", files)
    before = tree(checkout)
    proc = run("clean", argument.format(checkout=checkout), cwd=(checkout / where).resolve())
    assert proc.returncode in (1, 2), proc.stderr  # a refusal, or a usage error for ""
    assert proc.stderr.startswith("connc: error: ") and reason in proc.stderr
    assert tree(checkout) == before


def _decoy(directory: Path, kind: str) -> None:
    if kind == "manifest-only":  # what a pull request adds: the marker, nothing else right
        directory.mkdir()
        (directory / MANIFEST).write_text(json.dumps({"kind": MARKER}))
        (directory / "data.txt").write_text("keep\n")
        return
    lay_out(directory, {"env": "export X=1\n"})
    if kind == "unlisted":
        (directory / "data.txt").write_text("keep\n")
        os.chmod(directory / "data.txt", 0o600)
    elif kind == "mode":
        os.chmod(directory / "env", 0o644)
    elif kind == "symlink":
        (directory / MANIFEST).write_text(json.dumps(
            {"kind": MARKER, "files": ["env", "git/config", MANIFEST]}))
        (directory / "git").mkdir(mode=0o700)
        (directory / "git" / "config").symlink_to(directory.parent / "elsewhere.txt")
    elif kind == "escaping":
        (directory / MANIFEST).write_text(json.dumps(
            {"kind": MARKER, "files": ["env", "../elsewhere.txt", MANIFEST]}))


@pytest.mark.parametrize(("kind", "reason"), [
    ("manifest-only", "mode 07"),
    ("unlisted", "data.txt is not listed in its manifest.json"),
    ("mode", "env has mode 0644"),
    ("symlink", "git/config is a symlink or a special file"),
    ("escaping", "does not list the bundle's files as connc does"),
])
def test_clean_removes_only_a_directory_that_is_exactly_a_bundle(tmp_path: Path, kind: str,
                                                                 reason: str) -> None:
    (tmp_path / "elsewhere.txt").write_text("keep\n")
    decoy = tmp_path / "decoy"
    _decoy(decoy, kind)
    before = tree(tmp_path)
    proc = run("clean", decoy, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"{decoy} is not a connc bundle" in proc.stderr and reason in proc.stderr
    assert tree(tmp_path) == before


def test_clean_through_a_symlink_is_refused_before_anything_is_revoked(
        github: FakeGitHub, repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert render(repo, out).returncode == 0
    token = token_in(out)
    (tmp_path / "link").symlink_to(out)
    proc = run("clean", tmp_path / "link")
    assert proc.returncode == 1, proc.stderr
    assert "is a symlink; give the bundle's own path" in proc.stderr
    assert github.is_live(token) and (out / "env").is_file() and (tmp_path / "link").is_symlink()

    proc = run("clean", out)
    assert proc.returncode == 0, proc.stderr
    assert not github.is_live(token) and not out.exists()
    assert "revoked the token of gh-app" in proc.stderr


def test_clean_without_an_argument_is_a_usage_error(tmp_path: Path) -> None:
    assert run("clean", cwd=tmp_path).returncode == 2


# --- the URL policy on a state file's apiUrl -----------------------------------------------


def test_the_refresh_helper_and_clean_hold_apiurl_to_the_url_policy(
        github: FakeGitHub, tmp_path: Path) -> None:
    # The fake doubles as an HTTP proxy: anything sent to http://api.example.com lands in
    # github.requests. Plain http to a host that is not loopback must never be sent at all.
    token = mint(github)
    out = tmp_path / "out"
    files = BundleFiles()
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)  # the helper would re-mint
    files.add("github/gh-app.json", state(
        github, token, apiUrl="http://api.example.com", refresh=True,
        expiresAt=expired.isoformat(), issuer=github.app_id,
        installationId=github.installation_id, repositories=None, permissions=None,
        privateKey=github.private_key_pem))
    files.add(MANIFEST, json.dumps({"kind": MARKER, "files": ["github/gh-app.json", MANIFEST]}))
    bundle.commit(out, files)
    proxied = env(http_proxy=github.url, HTTP_PROXY=github.url)
    sent_before = len(github.requests)

    helper = subprocess.run([sys.executable, "-I", "-m", "connc.render.refresh", str(out),
                             "gh-app", "password"], env=proxied, capture_output=True,
                            text=True, timeout=60, check=False)
    assert helper.returncode == 1
    assert "apiUrl breaks the URL policy (plain http:// is refused" in helper.stderr
    assert helper.stdout == ""

    proc = run("clean", out, environ=proxied)
    assert proc.returncode == 0, proc.stderr
    assert "the token of gh-app was not revoked: its apiUrl breaks the URL policy" in proc.stderr
    assert not out.exists()
    assert github.requests[sent_before:] == []  # neither the JWT nor the token went out
    assert github.is_live(token)


# --- the default OUT ---------------------------------------------------------------------------


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory like /tmp: world-writable and sticky, reachable by every user."""
    path = Path(tempfile.mkdtemp(prefix="connc-test-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script, "sh", *args], user=NOBODY, group=NOBODY,
                          extra_groups=[], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": os.environ["PATH"]}, cwd="/")


def test_the_default_out_is_inside_a_private_directory_no_other_user_can_enter(
        github: FakeGitHub, repo: Path, shared_tmp: Path, gates: list[Gate]) -> None:
    gate = Gate(github, "POST", r"/access_tokens$", fail=False)  # render waits on its mint
    gates.append(gate)
    started = time.monotonic()
    proc = popen("render", "ci", "--repo", repo, env=env(TMPDIR=str(shared_tmp)),
                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    try:
        assert gate.arrived.wait(30), "render never minted"
        # Before any bundle exists, the one name render made in the shared directory is a
        # private directory with a random name, and another user can do nothing inside it.
        [parent] = list(shared_tmp.iterdir())
        assert re.fullmatch(r"connc-ci-[a-z0-9_]{8}", parent.name)
        info = parent.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
        assert list(parent.iterdir()) == []
        if os.geteuid() == 0:
            attempt = as_nobody('ls -a "$1" && echo LISTED; mkdir "$1/ci" && echo MADE; '
                                'mkdir "$1/.ci.connc-aaaaaaaa" && echo MADE; '
                                'ln -s /tmp "$1/ci" && echo MADE; exit 0', str(parent))
            assert "LISTED" not in attempt.stdout and "MADE" not in attempt.stdout
            assert attempt.stderr.count("Permission denied") == 4, attempt.stderr
    finally:
        gate.released.set()
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    out = parent / "ci"
    assert f"to {out};" in stderr and (out / "env").is_file()
    assert time.monotonic() - started < 60
    if os.geteuid() == 0:
        assert as_nobody('cat "$1/env" && echo READ', str(out)).stdout == ""

    token = token_in(out)
    proc_clean = run("clean", out)
    assert proc_clean.returncode == 0, proc_clean.stderr
    assert not github.is_live(token)
    assert list(shared_tmp.iterdir()) == []  # the private parent went with the bundle

    # A render that writes no bundle leaves no private directory behind either.
    github.fail_next(404)
    refused = run("render", "ci", "--repo", repo, environ=env(TMPDIR=str(shared_tmp)))
    assert refused.returncode == 1 and "installation" in refused.stderr
    assert list(shared_tmp.iterdir()) == []


# --- an interrupt during a mint -------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_minting_ends_render_at_once(
        github: FakeGitHub, repo: Path, tmp_path: Path, gates: list[Gate], signum: int) -> None:
    gate = Gate(github, "POST", r"/access_tokens$", fail=False)  # the mint hangs till released
    gates.append(gate)
    out = tmp_path / "out"
    proc = popen("render", "ci", "--repo", repo, "--out", out, env=env(),
                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    try:
        assert gate.arrived.wait(30), "render never minted"
        proc.send_signal(signum)
        started = time.monotonic()
        _stdout, stderr = proc.communicate(timeout=30)
        # The mint is still held by the server: render did not wait for it.
        assert time.monotonic() - started < 5, stderr
    finally:
        gate.released.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
