"""An ssh-type generic git connection, proven with real ssh and a real sshd on loopback.

Spec 8 too: with two ssh connections in one bundle, each key goes only to its own server and
each connection's pinned host keys apply only to its own host:port, so an impostor holding
another connection's host key is refused even when that connection pins it for this host.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import dataclasses
import shlex
import stat
from pathlib import Path

import pytest

from kit.build import connection, key_env, make_repo, pipeline, sourced
from kit.keys import ssh_key_pair
from kit.run import connc
from kit.servers._net import clean_env
from kit.servers.sshd import SshdFactory, SshServer, fingerprint, ssh_server, sshd_factory  # noqa: F401


def _repo(tmp_path: Path, server: SshServer, url: str, private_key: str,
          known_hosts: str) -> Path:
    return make_repo(tmp_path / "repo", connections={"infra": connection(
        "infra", type_="git", spec={"url": url.rsplit("/", 1)[0], "knownHosts": known_hosts},
        credential={"sshPrivateKey": private_key})}, pipelines={"deploy": pipeline(
            "deploy", "infra")})


def test_clone_and_push_over_ssh_with_the_bundle(
        tmp_path: Path, ssh_server: tuple[SshServer, Path]) -> None:  # noqa: F811
    server, authorized = ssh_server
    private_key, public_key = ssh_key_pair()
    authorized.write_text(public_key + "\n")
    url = server.add_repo("infra.git")
    repo = _repo(tmp_path, server, url, private_key, server.host_key_line)
    out = tmp_path / "bundle"
    rendered = connc("render", "--repo", repo, "--pipeline", "deploy", "--out", out, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    assert (out / "git/ssh/infra.key").stat().st_mode & 0o777 == 0o600
    assert private_key.strip() not in (out / "env").read_text()
    env = key_env(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1",
                  GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"))
    cloned = sourced(out, ["git", "clone", "--quiet", url, tmp_path / "work"], env)
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "work/README").read_text() == "served over ssh\n"
    work = tmp_path / "work"
    (work / "NEW").write_text("pushed\n")
    for args in (["add", "NEW"], ["-c", "user.name=t", "-c", "user.email=t@example.com",
                                  "commit", "--quiet", "-m", "push"], ["push", "--quiet"]):
        result = sourced(out, ["git", *args], env, cwd=work)
        assert result.returncode == 0, result.stderr


def test_an_unpinned_host_key_is_refused(
        tmp_path: Path, ssh_server: tuple[SshServer, Path]) -> None:  # noqa: F811
    server, authorized = ssh_server
    private_key, public_key = ssh_key_pair()
    authorized.write_text(public_key + "\n")
    url = server.add_repo("infra.git")
    _other_private, other_public = ssh_key_pair()
    wrong_pin = f"[127.0.0.1]:{server.port} {other_public}"
    repo = _repo(tmp_path, server, url, private_key, wrong_pin)
    out = tmp_path / "bundle"
    assert connc("render", "--repo", repo, "--pipeline", "deploy", "--out", out,
                 timeout=60).returncode == 0
    env = key_env(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1",
                  GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"))
    cloned = sourced(out, ["git", "clone", "--quiet", url, tmp_path / "work"], env)
    assert cloned.returncode != 0
    assert "host key" in cloned.stderr.lower() or "verification failed" in cloned.stderr.lower()


# --- each connection's key and pins for its own host:port only -------------------------


@dataclasses.dataclass
class Pair:
    """Two ssh connections of one pipeline, A and B, on two sshd on loopback (two ports)."""

    a: SshServer
    b: SshServer
    keys: dict[str, tuple[str, str]]  # "a"/"b" -> (private, public) client key
    urls: dict[str, str]

    def repo(self, root: Path, known_hosts: dict[str, str] | None = None) -> Path:
        pins = {"a": self.a.host_key_line, "b": self.b.host_key_line, **(known_hosts or {})}
        return make_repo(root, connections={
            f"conn-{name}": connection(
                f"conn-{name}", type_="git",
                spec={"url": self.urls[name].rsplit("/", 1)[0], "knownHosts": pins[name]},
                credential={"sshPrivateKey": self.keys[name][0]})
            for name in ("a", "b")}, pipelines={"deploy": pipeline("deploy", "conn-a", "conn-b")})


@pytest.fixture
def pair(sshd_factory: SshdFactory) -> Pair:
    a, b = sshd_factory.start(), sshd_factory.start()
    keys = {"a": ssh_key_pair(), "b": ssh_key_pair()}
    # Each server would take EITHER key: only the bundle decides which key goes where, so a
    # key offered to the wrong server would be accepted and show in that server's log.
    for server in (a, b):
        server.authorize(keys["a"][1], keys["b"][1])
    return Pair(a, b, keys, {"a": a.add_repo("a.git"), "b": b.add_repo("b.git")})


def _client_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return key_env(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / "gc"))


def test_each_key_is_offered_only_to_its_own_server(pair: Pair, tmp_path: Path) -> None:
    # An OUT with a space and a `%`: ssh expands %-tokens in IdentityFile/UserKnownHostsFile.
    out = tmp_path / "bundle 100%d"
    rendered = connc("render", "--repo", pair.repo(tmp_path / "repo"), "--pipeline", "deploy",
                     "--out", out, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    ssh = out / "git/ssh"
    assert {p.name for p in ssh.iterdir()} == {"config", "conn-a.key", "conn-a.known_hosts",
                                               "conn-b.key", "conn-b.known_hosts"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in ssh.iterdir())
    assert (ssh / "conn-a.known_hosts").read_text() == pair.a.host_key_line + "\n"
    shown = sourced(out, ["sh", "-c", 'printf %s "$GIT_SSH_COMMAND"'], _client_env(tmp_path))
    assert shlex.split(shown.stdout) == ["ssh", "-F", str(ssh / "config")]  # no global -i
    env = _client_env(tmp_path)
    for name in ("a", "b"):
        cloned = sourced(out, ["git", "clone", "--quiet", pair.urls[name], tmp_path / name], env)
        assert cloned.returncode == 0, cloned.stderr
    # Both on 127.0.0.1: the blocks tell the servers apart by port alone.
    assert pair.a.offered_keys() == {fingerprint(pair.keys["a"][1])}
    assert pair.b.offered_keys() == {fingerprint(pair.keys["b"][1])}


def test_a_pin_for_another_connections_host_is_refused_keyless(pair: Pair,
                                                                tmp_path: Path) -> None:
    # B (say, a public connection) pins its own server's key for A's host:port as well.
    impostor_pin = f"[127.0.0.1]:{pair.a.port} {pair.b.host_key_line.split(' ', 1)[1]}"
    repo = pair.repo(tmp_path / "repo", {"b": f"{pair.b.host_key_line}\n{impostor_pin}"})
    no_key = clean_env(tmp_path)  # keyless: neither needs to decrypt anything
    checked = connc("validate", "--repo", repo, env=no_key, timeout=60)
    assert checked.returncode == 1
    errors = [line for line in checked.stdout.splitlines() if " error " in line]
    assert len(errors) == 1 and errors[0].startswith("connections.d/conn-b.sops.yaml:")
    assert "CONNC110" in errors[0] and "knownHosts line 2" in errors[0]
    out = tmp_path / "out"
    rendered = connc("render", "--repo", repo, "--pipeline", "deploy", "--out", out, env=no_key,
                     timeout=60)
    assert rendered.returncode == 1
    assert "conn-b.sops.yaml" in rendered.stderr and "knownHosts line 2" in rendered.stderr
    assert pair.b.host_key_line.split()[2] not in rendered.stderr + checked.stdout  # no key
    assert not out.exists()


def test_an_impostor_with_another_connections_key_is_refused(
        pair: Pair, sshd_factory: SshdFactory, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    rendered = connc("render", "--repo", pair.repo(tmp_path / "repo"), "--pipeline", "deploy",
                     "--out", out, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    # Bypassing the rule: B's known_hosts in the bundle also pins B's server key for A's
    # host:port, and an impostor holding B's host key takes A's port (same repositories, and
    # it would accept A's key: only the host key check can stop it).
    impostor_pin = f"[127.0.0.1]:{pair.a.port} {pair.b.host_key_line.split(' ', 1)[1]}\n"
    with (out / "git/ssh/conn-b.known_hosts").open("a") as pins:
        pins.write(impostor_pin)
    sshd_factory.stop(pair.a)
    impostor = sshd_factory.start(port=pair.a.port, host_key_of=pair.b, repos_of=pair.a)
    impostor.authorize(pair.keys["a"][1])
    env = _client_env(tmp_path)
    cloned = sourced(out, ["git", "clone", "--quiet", pair.urls["a"], tmp_path / "a"], env)
    assert cloned.returncode != 0
    assert "Host key verification failed" in cloned.stderr
    assert impostor.offered_keys() == set()  # refused before any key was offered
    # Control: the same line in A's own known_hosts lets the impostor in; so what refused it
    # above is that B's pins never apply to A's host.
    with (out / "git/ssh/conn-a.known_hosts").open("a") as pins:
        pins.write(impostor_pin)
    cloned = sourced(out, ["git", "clone", "--quiet", pair.urls["a"], tmp_path / "a2"], env)
    assert cloned.returncode == 0, cloned.stderr
    assert impostor.offered_keys() == {fingerprint(pair.keys["a"][1])}


def test_two_ssh_connections_to_one_host_and_port_are_refused(tmp_path: Path) -> None:
    _, host_key = ssh_key_pair()
    connections = {
        name: connection(name, type_="git", spec={
            "url": f"ssh://git@git.example.com:2222/{name}",
            "knownHosts": f"[git.example.com]:2222 {host_key}"},
            credential={"sshPrivateKey": ssh_key_pair()[0]})
        for name in ("org-a", "org-b")}
    repo = make_repo(tmp_path / "repo", connections=connections,
                     pipelines={"deploy": pipeline("deploy", *connections)})
    rendered = connc("render", "--repo", repo, "--pipeline", "deploy", "--out", tmp_path / "out",
                     timeout=60)
    assert rendered.returncode == 1
    assert "`org-a` and `org-b` are both ssh connections to git.example.com port 2222" \
        in rendered.stderr
    assert not (tmp_path / "out").exists()
