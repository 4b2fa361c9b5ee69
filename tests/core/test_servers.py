"""The test servers accept the right credentials and refuse wrong ones, with the real clients.

Product tests trust these servers to tell a working credential bundle from a broken one, so each
server is shown here to say no as well as yes: a server that let everything through would make
every product test pass.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name, which ruff
#                      reads as redefining the imported (fixture) names.
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kit.servers._net import (
    ServerStartError,
    clean_env,
    popen_server,
    stop_process,
    wait_until_listening,
)
from kit.servers.git_http import GitHttpServer, git_env, git_server, run_git, write_askpass  # noqa: F401
from kit.servers.kube_api import (  # noqa: F401
    TOKEN_USER,
    KubeApiServer,
    kube_server,
    run_kubectl,
    write_kubeconfig,
)
from kit.servers.registry import (  # noqa: F401
    RegistryServer,
    registry_server,
    run_skopeo,
    start_registry,
)

pytestmark = pytest.mark.servers

ALICE_PASSWORD = "alice-s3cret"
BOB_PASSWORD = "bob-s3cret"


# --- git smart HTTP ----------------------------------------------------------------------------


@pytest.fixture
def two_orgs(git_server: GitHttpServer) -> GitHttpServer:
    """alice may use /org-a/ only, bob /org-b/ only, on the same host."""
    git_server.add_repo("org-a/api.git")
    git_server.add_repo("org-b/web.git")
    git_server.add_account("alice", ALICE_PASSWORD, "org-a")
    git_server.add_account("bob", BOB_PASSWORD, "org-b")
    return git_server


def _git_client(tmp_path: Path, username: str | None, password: str | None) -> dict[str, str]:
    home = tmp_path / "client-home"
    home.mkdir(parents=True, exist_ok=True)
    if username is None or password is None:
        return git_env(home)  # no askpass: GIT_TERMINAL_PROMPT=0 makes git fail, not prompt
    return git_env(home, GIT_ASKPASS=str(write_askpass(tmp_path / "askpass", username, password)))


def _git(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)


def test_git_clone_with_right_credentials(two_orgs: GitHttpServer, tmp_path: Path) -> None:
    env = _git_client(tmp_path, "alice", ALICE_PASSWORD)
    run_git(["clone", "-q", two_orgs.repo_url("org-a/api.git"), str(tmp_path / "api")], env)

    assert (tmp_path / "api" / "README.md").read_text() == "# org-a/api.git\n"
    assert two_orgs.users_for("org-a") == {"alice"}


def test_same_host_credentials_reach_only_their_prefix(two_orgs: GitHttpServer,
                                                        tmp_path: Path) -> None:
    alice = _git_client(tmp_path / "a", "alice", ALICE_PASSWORD)
    bob = _git_client(tmp_path / "b", "bob", BOB_PASSWORD)

    refused = _git(["clone", two_orgs.repo_url("org-b/web.git"), str(tmp_path / "x")], alice)
    run_git(["clone", "-q", two_orgs.repo_url("org-b/web.git"), str(tmp_path / "web")], bob)

    assert refused.returncode != 0
    assert "403" in refused.stderr
    assert ("GET", "/org-b/web.git/info/refs", "alice", 403) in [
        (r.method, r.path, r.user, r.status) for r in two_orgs.log]
    assert two_orgs.users_for("org-b") == {"bob"}


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong-password"),
    ("mallory", ALICE_PASSWORD),
    (None, None),
])
def test_git_refuses_wrong_or_missing_credentials(two_orgs: GitHttpServer, tmp_path: Path,
                                                  username: str | None,
                                                  password: str | None) -> None:
    env = _git_client(tmp_path, username, password)
    result = _git(["clone", two_orgs.repo_url("org-a/api.git"), str(tmp_path / "api")], env)

    assert result.returncode != 0
    assert "Authentication failed" in result.stderr or "could not read Username" in result.stderr
    assert not (tmp_path / "api").exists()
    assert all(r.status == 401 for r in two_orgs.log)


def test_git_push_lands_in_the_repo(two_orgs: GitHttpServer, tmp_path: Path) -> None:
    env = _git_client(tmp_path, "alice", ALICE_PASSWORD)
    work = tmp_path / "api"
    run_git(["clone", "-q", two_orgs.repo_url("org-a/api.git"), str(work)], env)
    # Larger than http.postBuffer (1 MiB): git streams it with Transfer-Encoding: chunked.
    (work / "blob.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    run_git(["add", "blob.bin"], env, cwd=work)
    run_git(["commit", "-q", "-m", "add blob"], env, cwd=work)

    run_git(["push", "-q", "origin", "main"], env, cwd=work)

    assert two_orgs.head("org-a/api.git") == run_git(["rev-parse", "HEAD"], env, cwd=work)
    assert {r.user for r in two_orgs.log if r.path.endswith("/git-receive-pack")} == {"alice"}


def test_git_fetch_with_gzip_request_body(two_orgs: GitHttpServer, tmp_path: Path) -> None:
    # Wanting many refs makes the upload-pack request exceed 1 KiB, which git gzips
    # (Content-Encoding: gzip): http-backend must get HTTP_CONTENT_ENCODING to inflate it.
    repo = two_orgs.root / "org-a" / "api.git"
    server_env = git_env(tmp_path / "server-home")
    tree = run_git(["rev-parse", "main^{tree}"], server_env, cwd=repo)
    refs = [f"create refs/heads/b{i} "
            + run_git(["commit-tree", tree, "-m", f"branch {i}"], server_env, cwd=repo)
            for i in range(60)]
    run_git(["update-ref", "--stdin"], server_env, cwd=repo, stdin="\n".join(refs) + "\n")
    env = _git_client(tmp_path, "alice", ALICE_PASSWORD)

    run_git(["clone", "-q", "--mirror", two_orgs.repo_url("org-a/api.git"),
             str(tmp_path / "mirror")], env)

    branches = run_git(["for-each-ref", "--format=%(refname)", "refs/heads"], env,
                       cwd=tmp_path / "mirror")
    assert len(branches.splitlines()) == 61


def test_git_askpass_keeps_password_out_of_argv_and_env(two_orgs: GitHttpServer,
                                                        tmp_path: Path) -> None:
    env = _git_client(tmp_path, "alice", ALICE_PASSWORD)
    assert ALICE_PASSWORD not in json.dumps(env)
    assert ALICE_PASSWORD not in (tmp_path / "askpass" / "askpass.sh").read_text()


# --- docker registry -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed_image(registry_server: RegistryServer) -> str:
    return registry_server.push_test_image("team/app", "v1")


def _list_tags(registry: RegistryServer, env: dict[str, str],
               *extra: str) -> subprocess.CompletedProcess[str]:
    return run_skopeo(["list-tags", "--tls-verify=false", *extra,
                       f"docker://{registry.host}/team/app"], env)


def test_skopeo_lists_tags_with_right_config(registry_server: RegistryServer, pushed_image: str,
                                             tmp_path: Path) -> None:
    config = registry_server.write_docker_config(tmp_path / "docker" / "config.json")

    result = _list_tags(registry_server, clean_env(tmp_path), "--authfile", str(config))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Tags"] == ["v1"]


@pytest.mark.parametrize("password", ["wrong-password", None])
def test_skopeo_refused_with_wrong_or_no_credentials(registry_server: RegistryServer,
                                                     pushed_image: str, tmp_path: Path,
                                                     password: str | None) -> None:
    args: list[str] = []
    if password is not None:
        config = registry_server.write_docker_config(tmp_path / "config.json", password=password)
        args = ["--authfile", str(config)]

    result = _list_tags(registry_server, clean_env(tmp_path), *args)

    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower()


def test_skopeo_honours_docker_config_env(registry_server: RegistryServer, pushed_image: str,
                                          tmp_path: Path) -> None:
    # What the product bundle relies on: DOCKER_CONFIG=OUT/docker (see registry.py's header).
    docker_dir = registry_server.write_docker_config(tmp_path / "out" / "docker" / "config.json").parent

    result = _list_tags(registry_server, clean_env(tmp_path / "home", DOCKER_CONFIG=str(docker_dir)))

    assert result.returncode == 0, result.stderr


def test_containers_auth_json_shadows_docker_config(registry_server: RegistryServer,
                                                    pushed_image: str, tmp_path: Path) -> None:
    # The caveat in registry.py's header: an entry for the same registry in
    # $XDG_RUNTIME_DIR/containers/auth.json wins over $DOCKER_CONFIG and is not retried.
    home = tmp_path / "home"
    registry_server.write_docker_config(home / "run" / "containers" / "auth.json", password="stale")
    docker_dir = registry_server.write_docker_config(tmp_path / "out" / "docker" / "config.json").parent

    result = _list_tags(registry_server, clean_env(home, DOCKER_CONFIG=str(docker_dir)))

    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower()


def test_pushed_image_can_be_pulled_back(registry_server: RegistryServer, pushed_image: str,
                                         tmp_path: Path) -> None:
    config = registry_server.write_docker_config(tmp_path / "config.json")

    result = run_skopeo(["--insecure-policy", "copy", "--src-tls-verify=false",
                         "--src-authfile", str(config), f"docker://{pushed_image}",
                         f"oci:{tmp_path / 'pulled'}:v1"], clean_env(tmp_path))

    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert len(index["manifests"]) == 1


def test_registry_process_is_gone_after_stop(tmp_path: Path) -> None:
    server, proc = start_registry(tmp_path, "someone", "pw")
    port = int(server.host.rsplit(":", 1)[1])

    stop_process(proc)

    assert proc.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --- kubernetes API ------------------------------------------------------------------------------


def _version(kube: KubeApiServer, tmp_path: Path, *, ca_pem: bytes | None = None,
             token: str | None = None,
             client_cert: tuple[bytes, bytes] | None = None) -> subprocess.CompletedProcess[str]:
    """`kubectl get --raw /version` through a kubeconfig holding exactly the given credentials."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.server, ca_pem=ca_pem,
                                  token=token, client_cert=client_cert)
    return run_kubectl(kubeconfig, ["get", "--raw", "/version"], tmp_path / "home")


def test_kubectl_with_token(kube_server: KubeApiServer, tmp_path: Path) -> None:
    result = _version(kube_server, tmp_path, ca_pem=kube_server.ca_pem, token=kube_server.token)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gitVersion"] == "v1.30.0"
    assert {(r.auth, r.user) for r in kube_server.log} == {("token", TOKEN_USER)}


def test_kubectl_with_client_certificate(kube_server: KubeApiServer, tmp_path: Path) -> None:
    cert = kube_server.make_client_cert("deployer", groups=("ci",))

    result = _version(kube_server, tmp_path, ca_pem=kube_server.ca_pem, client_cert=cert)

    assert result.returncode == 0, result.stderr
    assert {(r.auth, r.user) for r in kube_server.log} == {("client-cert", "deployer")}


def test_kubectl_wrong_token_is_unauthorized(kube_server: KubeApiServer, tmp_path: Path) -> None:
    result = _version(kube_server, tmp_path, ca_pem=kube_server.ca_pem, token="not-the-token")

    assert result.returncode != 0
    assert "Unauthorized" in result.stderr
    # kubectl may retry once (a version probe), so check every request, not a count.
    assert kube_server.log and all(r.status == 401 for r in kube_server.log)


def test_kubectl_without_credentials_is_unauthorized(kube_server: KubeApiServer,
                                                     tmp_path: Path) -> None:
    result = _version(kube_server, tmp_path, ca_pem=kube_server.ca_pem)

    assert result.returncode != 0
    assert kube_server.log and all(r.status == 401 for r in kube_server.log)


def test_kubectl_untrusted_client_certificate_is_refused(kube_server: KubeApiServer,
                                                         tmp_path: Path) -> None:
    cert = kube_server.make_untrusted_client_cert()

    result = _version(kube_server, tmp_path, ca_pem=kube_server.ca_pem, client_cert=cert)

    assert result.returncode != 0
    # In TLS 1.3 the server judges the client's certificate after the client has finished its
    # side of the handshake: kubectl reads the server's alert ("certificate") or, when its
    # request is already on the way, finds the connection reset. Either way, refused.
    assert "certificate" in result.stderr or "connection reset by peer" in result.stderr
    assert kube_server.requests_by("tls-rejected")
    assert not any(r.status == 200 for r in kube_server.log)


def test_kubectl_without_ca_does_not_trust_the_server(kube_server: KubeApiServer,
                                                      tmp_path: Path) -> None:
    result = _version(kube_server, tmp_path, token=kube_server.token)

    assert result.returncode != 0
    assert "x509" in result.stderr or "certificate" in result.stderr
    assert not any(r.status == 200 for r in kube_server.log)


def test_kube_unauthorized_answer_is_a_status_object(kube_server: KubeApiServer) -> None:
    # kubectl prints only a summary of the 401; check the body a client library would parse.
    context = ssl.create_default_context(cadata=kube_server.ca_pem.decode())
    host, port = kube_server.server.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        conn.request("GET", "/version", headers={"Authorization": "Bearer wrong"})
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()

    assert response.status == 401
    assert body["kind"] == "Status" and body["code"] == 401 and body["reason"] == "Unauthorized"


# --- shared plumbing -----------------------------------------------------------------------------


def test_startup_failure_reports_the_log_tail(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    proc = popen_server([sys.executable, "-c", "import sys; print('bind: boom'); sys.exit(3)"],
                        log_path, clean_env(tmp_path))

    with pytest.raises(ServerStartError, match=r"(?s)status 3.*bind: boom"):
        wait_until_listening(1, proc, log_path, "fake-server", timeout=10)


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_stop_process_kills_the_whole_group(tmp_path: Path) -> None:
    # A server that ignores SIGTERM and has a child: both must be gone after stop_process.
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen(
        ["sh", "-c", f'trap "" TERM; sleep 60 & echo $! > {pid_file}; wait'],
        start_new_session=True)
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        child = int(pid_file.read_text())

        stop_process(proc, grace=0.2)

        assert proc.poll() is not None
        assert _wait_for(lambda: not _alive(child))
    finally:
        stop_process(proc, grace=0.2)
