"""An ssh-type generic git connection, proven with real ssh and a real sshd on loopback."""

from __future__ import annotations

from pathlib import Path

from repo_builder import build_repo, connc, connection, key_env, pipeline, sourced, ssh_key_pair
from servers.sshd import SshServer, ssh_server  # noqa: F401


def _repo(tmp_path: Path, server: SshServer, url: str, private_key: str,
          known_hosts: str) -> Path:
    return build_repo(tmp_path / "repo", connections={"infra": connection(
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
    rendered = connc("render", "--repo", repo, "--pipeline", "deploy", "--out", out)
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
    assert connc("render", "--repo", repo, "--pipeline", "deploy", "--out", out).returncode == 0
    env = key_env(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1",
                  GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"))
    cloned = sourced(out, ["git", "clone", "--quiet", url, tmp_path / "work"], env)
    assert cloned.returncode != 0
    assert "host key" in cloned.stderr.lower() or "verification failed" in cloned.stderr.lower()
