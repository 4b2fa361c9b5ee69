"""A real OpenSSH server on loopback that serves git over ssh, for the ssh-type git connection.

It runs as the current user (root in CI) with its own host key, a single authorized key and
no password authentication; git reaches bare repositories under `.root` through
`git-upload-pack` / `git-receive-pack`, exactly as on a real git host.
"""

from __future__ import annotations

import dataclasses
import getpass
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers._net import LOOPBACK, free_port, popen_server, stop_process, wait_until_listening

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclasses.dataclass
class SshServer:
    port: int
    root: Path
    user: str
    host_key_line: str  # "[127.0.0.1]:PORT ssh-ed25519 AAAA..." for known_hosts

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


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.with_suffix(".pub")).read_text().strip()


@pytest.fixture
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SshServer, Path]]:
    """(server, path of the authorized client's public key file to fill in before use)."""
    if not Path(SSHD).exists():
        pytest.skip("sshd is not installed (scripts/setup --test installs openssh-server)")
    base = tmp_path_factory.mktemp("sshd")
    host_public = _keygen(base / "host_key").split()
    authorized = base / "authorized_keys"
    authorized.write_text("")
    authorized.chmod(0o600)
    port = free_port()
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
        repos = base / "repos"
        repos.mkdir()
        server = SshServer(port, repos, getpass.getuser(),
                           f"[{LOOPBACK}]:{port} {host_public[0]} {host_public[1]}")
        yield server, authorized
    finally:
        stop_process(proc)
