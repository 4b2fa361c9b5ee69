"""A real OpenSSH server on loopback that serves git over ssh, for the ssh-type git connection.

It runs as the current user (root in CI) with its own host key, its own authorized keys and
no password authentication; git reaches bare repositories under `.root` through
`git-upload-pack` / `git-receive-pack`, exactly as on a real git host.

`ssh_server` is one server; `sshd_factory` starts several (each connection of a pipeline on its
own port), can stop one and start an impostor on its port with another host key, and each
server's `offered_keys()` reads from its log which client keys were offered to it.
"""

from __future__ import annotations

import dataclasses
import getpass
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.servers._net import LOOPBACK, free_port, popen_server, stop_process, wait_until_listening

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclasses.dataclass
class SshServer:
    port: int
    root: Path
    user: str
    host_key_line: str  # "[127.0.0.1]:PORT ssh-ed25519 AAAA..." for known_hosts
    authorized: Path = dataclasses.field(default=Path("/dev/null"))  # authorized_keys file
    log: Path = dataclasses.field(default=Path("/dev/null"))
    proc: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)

    def url(self, repo: str) -> str:
        return f"ssh://{self.user}@{LOOPBACK}:{self.port}{self.root}/{repo}"

    def add_repo(self, name: str) -> str:
        path = self.root / name
        subprocess.run(["git", "init", "--bare", "--quiet", "-b", "main", str(path)], check=True)
        seed = self.root / f".seed-{name}"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.root), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        subprocess.run(["git", "init", "--quiet", "-b", "main", str(seed)], check=True, env=env)
        (seed / "README").write_text("served over ssh\n")
        for args in (["add", "README"], ["commit", "--quiet", "-m", "init"],
                     ["push", "--quiet", str(path), "main"]):
            subprocess.run(["git", "-C", str(seed), *args], check=True, env=env)
        shutil.rmtree(seed)
        return self.url(name)

    def authorize(self, *public_keys: str) -> None:
        self.authorized.write_text("".join(key + "\n" for key in public_keys))

    def offered_keys(self) -> set[str]:
        """SHA256 fingerprints of every client key offered to this server, accepted or not.

        At LogLevel VERBOSE sshd logs `Failed publickey for USER ... ssh2: ED25519 SHA256:...`
        for each key a client offers that it does not take, `Accepted publickey ...` for the
        one it takes.
        """
        text = self.log.read_text(errors="replace")
        return set(re.findall(r"(?:Failed|Accepted) publickey for .*? (SHA256:[A-Za-z0-9+/]+)",
                              text))


def fingerprint(public_key: str) -> str:
    """The SHA256 fingerprint ssh logs for a public key line."""
    done = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "-"], input=public_key,
                          capture_output=True, text=True, check=True)
    return done.stdout.split()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.with_suffix(".pub")).read_text().strip()


def _start(base: Path, *, port: int | None = None, host_key: Path | None = None,
           repos: Path | None = None) -> SshServer:
    """An sshd in `base`: a new host key (or a copy of `host_key`), on `port` or a free one."""
    base.mkdir(parents=True, exist_ok=True)
    if host_key is None:
        host_public = _keygen(base / "host_key").split()
    else:
        shutil.copy(host_key, base / "host_key")
        (base / "host_key").chmod(0o600)
        host_public = host_key.with_suffix(".pub").read_text().split()
    authorized = base / "authorized_keys"
    authorized.write_text("")
    authorized.chmod(0o600)
    port = port or free_port()
    config = base / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", f"ListenAddress {LOOPBACK}", f"HostKey {base / 'host_key'}",
        f"AuthorizedKeysFile {authorized}", f"PidFile {base / 'sshd.pid'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "PermitRootLogin prohibit-password", "StrictModes no", "LogLevel VERBOSE", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = base / "sshd.log"
    proc = popen_server([SSHD, "-D", "-e", "-f", str(config)], log, {"PATH": "/usr/bin:/bin"})
    try:
        wait_until_listening(port, proc, log, "sshd")
    except BaseException:
        stop_process(proc)
        raise
    if repos is None:
        repos = base / "repos"
        repos.mkdir()
    return SshServer(port, repos, getpass.getuser(),
                     f"[{LOOPBACK}]:{port} {host_public[0]} {host_public[1]}",
                     authorized, log, proc)


def _require_sshd() -> None:
    if not Path(SSHD).exists():
        pytest.skip("sshd is not installed (scripts/setup --test installs openssh-server)")


@pytest.fixture
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SshServer, Path]]:
    """(server, path of the authorized client's public key file to fill in before use)."""
    _require_sshd()
    server = _start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server, server.authorized
    finally:
        assert server.proc is not None
        stop_process(server.proc)


@dataclasses.dataclass
class SshdFactory:
    """Starts sshd servers for one test; every one still running is stopped at teardown."""

    base: Path
    running: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def start(self, *, port: int | None = None, host_key_of: SshServer | None = None,
              repos_of: SshServer | None = None) -> SshServer:
        """A new server; with `port` and `host_key_of`/`repos_of`, an impostor: another's
        port, a third server's host key, the same repositories (so only the key differs)."""
        host_key = host_key_of.log.parent / "host_key" if host_key_of else None
        server = _start(self.base / f"sshd-{len(self.running)}", port=port, host_key=host_key,
                        repos=repos_of.root if repos_of else None)
        assert server.proc is not None
        self.running.append(server.proc)
        return server

    @staticmethod
    def stop(server: SshServer) -> None:
        assert server.proc is not None
        stop_process(server.proc)


@pytest.fixture
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFactory]:
    _require_sshd()
    factory = SshdFactory(tmp_path_factory.mktemp("sshds"))
    try:
        yield factory
    finally:
        for proc in factory.running:
            stop_process(proc)

