"""`connc check` against real local services: each type passes with its credential and fails,
with a reason, with a wrong one; files this key cannot decrypt are "not checked".

Every run goes through `python -m connc check` with the test key, and `run_check` asserts for
each that no secret of the test (right or wrong) shows in stdout or stderr, and that the
temporary bundles are gone.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from checkkit import canary, run_check

from kit.build import connection, key_env, make_repo
from kit.keys import new_recipient, ssh_key_pair
from kit.run import connc, popen
from kit.servers.git_http import GitHttpServer, git_server  # noqa: F401
from kit.servers.github_fake import FakeGitHub, github_api, unresponsive_server  # noqa: F401
from kit.servers.hostile import Reply, logging_proxy, recording_server, trickling_server
from kit.servers.kube_api import KubeApiServer, kube_server  # noqa: F401
from kit.servers.probe_targets import ProbeTargets, probe_targets
from kit.servers.registry import RegistryServer, registry_server  # noqa: F401
from kit.servers.sshd import SshServer, ssh_server  # noqa: F401

pytestmark = pytest.mark.servers


# --- git over http(s) ----------------------------------------------------------------------


def test_git_repository_prefix_and_wrong_password(git_server: GitHttpServer,
                                                  tmp_path: Path) -> None:
    repo_url = git_server.add_repo("org-a/api.git")
    bot, gitlab, wrong = canary(), canary(), canary()
    git_server.add_account("bot", bot, "org-a")
    git_server.add_account("oauth2", gitlab, "org-a")
    root = make_repo(tmp_path / "repo", connections={
        "git-repo": connection("git-repo", type_="git", spec={"url": repo_url},
                               credential={"username": "bot", "password": bot}),
        "gl-prefix": connection("gl-prefix", type_="gitlab-self-hosted",
                                spec={"url": f"{git_server.url}/org-a"},
                                credential={"token": gitlab}),
        "codeup-wrong": connection("codeup-wrong", type_="codeup", spec={"url": repo_url},
                                   credential={"username": "bot", "password": wrong}),
    })
    ran = run_check(root, tmp_path, hidden=[bot, gitlab, wrong])
    # Each outcome's message says why a probe failed: shown if an assertion does not hold.
    assert ran.proc.returncode == 1, ran.proc.stderr
    assert ran.status("git-repo") == "ok", ran.outcomes
    assert "git ls-remote through the bundle succeeded" in ran.message("git-repo")
    assert ran.status("gl-prefix") == "ok", ran.outcomes
    assert "path prefix" in ran.message("gl-prefix")
    assert ran.status("codeup-wrong") == "failed", ran.outcomes
    assert ran.message("codeup-wrong") == "auth refused (HTTP 401)"
    assert ran.outcomes["codeup-wrong"]["target"] == repo_url
    # git itself read the repository with the bundle's credential.
    assert any(r.user == "bot" and r.status == 200 and "git-upload-pack" in r.path
               for r in git_server.log), git_server.log


# --- git over ssh --------------------------------------------------------------------------


def test_git_over_ssh(ssh_server: tuple[SshServer, Path], tmp_path: Path) -> None:
    server, authorized = ssh_server
    key, public = ssh_key_pair()
    other_key, other_public = ssh_key_pair()
    authorized.write_text(public + "\n")
    url = server.add_repo("infra.git")

    def ssh_connection(conn_id: str, url: str, key: str, known_hosts: str) -> dict[str, Any]:
        return connection(conn_id, type_="git", spec={"url": url, "knownHosts": known_hosts},
                          credential={"sshPrivateKey": key})

    root = make_repo(tmp_path / "repo", connections={
        "ssh-ok": ssh_connection("ssh-ok", url, key, server.host_key_line),
        "ssh-prefix": ssh_connection("ssh-prefix", url.rsplit("/", 1)[0], key,
                                     server.host_key_line),
        "ssh-wrong-key": ssh_connection("ssh-wrong-key", url, other_key, server.host_key_line),
        "ssh-wrong-pin": ssh_connection("ssh-wrong-pin", url, key,
                                        f"[127.0.0.1]:{server.port} {other_public}"),
    })
    ran = run_check(root, tmp_path, hidden=[key, other_key])
    assert ran.proc.returncode == 1, ran.proc.stderr
    assert ran.status("ssh-ok") == "ok", ran.message("ssh-ok")
    assert ran.status("ssh-prefix") == "ok"
    assert "not proven" in ran.message("ssh-prefix")
    assert ran.message("ssh-wrong-key") == "auth refused: the server did not accept the key"
    assert ran.message("ssh-wrong-pin") == "the server's host key does not match spec.knownHosts"


# --- container registries ------------------------------------------------------------------


def test_registry_with_htpasswd(registry_server: RegistryServer, tmp_path: Path) -> None:
    wrong = canary()
    root = make_repo(tmp_path / "repo", connections={
        f"reg-{name}": connection(f"reg-{name}", type_="container-registry",
                                  spec={"registry": registry_server.host},
                                  credential={"username": registry_server.username,
                                              "password": password})
        for name, password in (("ok", registry_server.password), ("wrong", wrong))})
    ran = run_check(root, tmp_path, hidden=[registry_server.password, wrong])
    assert ran.proc.returncode == 1
    assert ran.outcomes["reg-ok"]["status"] == "ok"
    assert ran.message("reg-ok") == "credential accepted (HTTP Basic)"
    assert ran.outcomes["reg-ok"]["target"] == f"http://{registry_server.host}/v2/"
    assert ran.message("reg-wrong") == "auth refused (HTTP 401)"


@pytest.fixture
def services() -> Iterator[ProbeTargets]:
    """A token-auth registry and the three package indexes, on one loopback server."""
    with probe_targets(password=canary(), npm_token=canary(), registry_token=canary()) as served:
        yield served


def test_registry_token_flow(services: ProbeTargets, tmp_path: Path) -> None:
    wrong = canary()
    root = make_repo(tmp_path / "repo", connections={
        f"hub-{name}": connection(f"hub-{name}", type_="container-registry",
                                  spec={"registry": services.host},
                                  credential={"username": "reader", "password": password})
        for name, password in (("ok", services.password), ("wrong", wrong))})
    ran = run_check(root, tmp_path, hidden=[services.password, wrong, services.registry_token])
    assert ran.proc.returncode == 1
    assert ran.status("hub-ok") == "ok"
    assert ran.message("hub-ok") == ("credential accepted (a token from 127.0.0.1, accepted by "
                                     "the registry)")
    assert ran.message("hub-wrong") == "the token service 127.0.0.1: auth refused (HTTP 401)"
    assert {"service": ["fake"], "account": ["reader"]} in services.token_requests


# --- packages ------------------------------------------------------------------------------


def test_packages(services: ProbeTargets, tmp_path: Path) -> None:
    wrong = canary()

    def package(conn_id: str, fmt: str, path: str, credential: dict[str, str],
                **spec: str) -> dict[str, Any]:
        return connection(conn_id, type_="packages", credential=credential,
                          spec={"format": fmt, "url": services.url + path, **spec})

    right = {"username": "reader", "password": services.password}
    bad = {"username": "reader", "password": wrong}
    maven = {"repositoryId": "releases"}
    root = make_repo(tmp_path / "repo", connections={c["metadata"]["id"]: c for c in (
        package("mvn-ok", "maven", "/maven/releases/", right, **maven),
        package("mvn-wrong", "maven", "/maven/releases/", bad, **maven),
        package("npm-token", "npm", "/npm/", {"token": services.npm_token}),
        package("npm-basic", "npm", "/npm/", right),
        package("npm-wrong", "npm", "/npm/", {"token": wrong}),
        package("pypi-ok", "pypi", "/simple/", right),
        package("pypi-wrong", "pypi", "/simple/", bad),
        package("pypi-missing", "pypi", "/nothing/", right),
    )})
    ran = run_check(root, tmp_path, hidden=[services.password, services.npm_token, wrong])
    assert ran.proc.returncode == 1
    assert {i: o["status"] for i, o in ran.outcomes.items()} == {
        "mvn-ok": "ok", "mvn-wrong": "failed", "npm-basic": "ok", "npm-token": "ok",
        "npm-wrong": "failed", "pypi-missing": "failed", "pypi-ok": "ok", "pypi-wrong": "failed"}
    assert ran.message("npm-token") == "npm whoami: authenticated as npm-bot"
    assert ran.outcomes["npm-token"]["target"] == services.url + "/npm/-/whoami"
    assert ran.message("mvn-ok") == "the repository answered HTTP 200 with the credential"
    assert ran.message("pypi-ok") == "the index answered HTTP 200 with the credential"
    for failed in ("mvn-wrong", "npm-wrong", "pypi-wrong"):
        assert ran.message(failed) == "auth refused (HTTP 401)"
    assert ran.message("pypi-missing") == "not found (HTTP 404)"


# --- Kubernetes ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kube_repo(kube: KubeApiServer, root: Path, wrong: str) -> tuple[Path, list[str]]:
    cert, key = kube.make_client_cert("ci-deployer")
    bad_cert, bad_key = kube.make_untrusted_client_cert()
    ca = {"server": kube.server, "certificateAuthorityData": _b64(kube.ca_pem)}

    def kube_connection(conn_id: str, credential: dict[str, str],
                        spec: dict[str, str] = ca) -> dict[str, Any]:
        return connection(conn_id, type_="kubernetes", spec=spec, credential=credential)

    connections = [
        kube_connection("k8s-token", {"token": kube.token}),
        kube_connection("k8s-wrong-token", {"token": wrong}),
        kube_connection("k8s-cert", {"clientCertificateData": _b64(cert),
                                     "clientKeyData": _b64(key)}),
        kube_connection("k8s-untrusted-cert", {"clientCertificateData": _b64(bad_cert),
                                               "clientKeyData": _b64(bad_key)}),
        kube_connection("k8s-no-ca", {"token": kube.token}, {"server": kube.server}),
    ]
    built = make_repo(root, connections={c["metadata"]["id"]: c for c in connections})
    return built, [kube.token, wrong, key.decode(), bad_key.decode(), _b64(key)]


def test_kubernetes_with_kubectl(kube_server: KubeApiServer, tmp_path: Path) -> None:
    root, hidden = _kube_repo(kube_server, tmp_path / "repo", canary())
    ran = run_check(root, tmp_path, hidden=hidden)
    assert ran.proc.returncode == 1
    assert ran.status("k8s-token") == "ok"
    assert ran.message("k8s-token") == ("kubectl get --raw /version: the server (v1.30.0) "
                                        "accepted the credential")
    assert ran.status("k8s-cert") == "ok"
    assert ran.message("k8s-wrong-token") == "auth refused (HTTP 401)"
    assert ran.message("k8s-untrusted-cert") in (  # the alert, or the reset it races with
        "TLS error: the server refused the client certificate",
        "TLS error or unreachable: the server reset the connection (as a server does that "
        "refuses the client certificate)")
    assert ran.message("k8s-no-ca").startswith("TLS error: the server's certificate is not "
                                               "trusted")
    assert {r.auth for r in kube_server.log} >= {"token", "client-cert", "tls-rejected"}


def test_kubernetes_without_kubectl(kube_server: KubeApiServer, tmp_path: Path) -> None:
    root, hidden = _kube_repo(kube_server, tmp_path / "repo", canary())
    no_tools = tmp_path / "no-tools"
    no_tools.mkdir()
    ran = run_check(root, tmp_path, hidden=hidden, env={"PATH": str(no_tools)})
    assert ran.proc.returncode == 1
    assert ran.message("k8s-token") == ("GET /version (kubectl not found): the server "
                                        "(v1.30.0) accepted the credential")
    assert ran.status("k8s-cert") == "ok"
    assert ran.message("k8s-wrong-token") == "auth refused (HTTP 401)"
    assert ran.message("k8s-untrusted-cert").startswith("TLS error")
    assert ran.message("k8s-no-ca").startswith("TLS error: the certificate of 127.0.0.1 is not "
                                               "trusted")


# --- GitHub App ----------------------------------------------------------------------------


def _app_repo(github: FakeGitHub, root: Path, private_key: str) -> Path:
    return make_repo(root, connections={"gh-app": connection(
        "gh-app", type_="github-app", credential={"privateKey": private_key},
        spec={"apiUrl": github.url, "appId": int(github.app_id),
              "installationId": github.installation_id})})


def test_github_app_mints_and_revokes(github_api: FakeGitHub, tmp_path: Path) -> None:
    token = "ghs_" + secrets.token_hex(18)
    github_api.queue_token(token)
    root = _app_repo(github_api, tmp_path / "repo", github_api.private_key_pem)
    ran = run_check(root, tmp_path, hidden=[token, github_api.private_key_pem])
    assert ran.proc.returncode == 0, ran.proc.stdout + ran.proc.stderr
    assert ran.message("gh-app") == ("minted an installation token (metadata: read) and "
                                     "revoked it")
    [minted] = github_api.minted
    assert (minted.repositories, minted.permissions) == (None, {"metadata": "read"})
    assert github_api.revoked == [token]


def test_github_app_refused_jwt(github_api: FakeGitHub, tmp_path: Path) -> None:
    key = github_api.other_private_key_pem  # a valid RSA key, but not this App's
    root = _app_repo(github_api, tmp_path / "repo", key)
    ran = run_check(root, tmp_path, hidden=[key])
    assert ran.proc.returncode == 1
    assert ran.status("gh-app") == "failed"
    assert "HTTP 401" in ran.message("gh-app") and "clock" in ran.message("gh-app")
    assert github_api.minted == [] and github_api.revoked == []


# --- selection, keys, output, exit codes ---------------------------------------------------


def _index_connection(conn_id: str, url: str, password: str = "pw") -> dict[str, Any]:
    return connection(conn_id, type_="packages", spec={"format": "pypi", "url": url},
                      credential={"username": "reader", "password": password})


def test_not_checked_without_a_key_and_exit_codes(services: ProbeTargets, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "index": _index_connection("index", services.url + "/simple/", services.password),
        "locked": _index_connection("locked", services.url + "/simple/"),
    }, locked={"locked": new_recipient()})
    ran = run_check(root, tmp_path, hidden=[services.password])
    assert ran.proc.returncode == 0, ran.proc.stderr
    assert ran.status("index") == "ok"
    assert ran.status("locked") == "not checked"
    assert ran.message("locked").startswith("no usable key: your key ")

    only_locked = run_check(root, tmp_path, "locked")
    assert only_locked.proc.returncode == 2
    assert list(only_locked.outcomes) == ["locked"]
    assert "no connection could be decrypted" in only_locked.proc.stderr

    unknown = run_check(root, tmp_path, "index", "no-such", "../etc", "indx")
    assert unknown.proc.returncode == 2
    assert unknown.proc.stdout == ""
    # The real id in the path, never the placeholder `ID`; a near miss gets a suggestion.
    assert unknown.proc.stderr == (
        "connc: error: no such connection: no-such (no connections.d/no-such.sops.yaml), "
        "../etc (not a connection id), indx (no connections.d/indx.sops.yaml; did you mean "
        "`index`?)\n")


def test_text_output_is_one_line_per_connection(services: ProbeTargets, tmp_path: Path) -> None:
    wrong = canary()
    root = make_repo(tmp_path / "repo", connections={
        "index": _index_connection("index", services.url + "/simple/", services.password),
        "index-wrong": _index_connection("index-wrong", services.url + "/simple/", wrong),
    })
    proc = connc("check", "--repo", root, env=key_env(NO_PROXY="127.0.0.1"), timeout=60)
    assert proc.returncode == 1
    assert services.password not in proc.stdout + proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"ok           index        packages  {services.url}/simple/: the index answered "
        f"HTTP 200 with the credential",
        f"failed       index-wrong  packages  {services.url}/simple/: auth refused (HTTP 401)",
    ]
    assert proc.stderr == "connc: 1 ok, 1 failed, 0 not checked\n"


@pytest.fixture
def silent_url() -> Iterator[str]:
    with unresponsive_server() as url:
        yield url


def test_unreachable_and_timeout(silent_url: str, tmp_path: Path) -> None:
    closed = silent_url.rsplit(":", 1)[0] + ":1"
    root = make_repo(tmp_path / "repo", connections={
        "silent": _index_connection("silent", silent_url + "/simple/"),
        "closed": _index_connection("closed", closed + "/simple/"),
    })
    started = time.monotonic()
    ran = run_check(root, tmp_path, "--timeout", "0.5")
    assert time.monotonic() - started < 10
    assert ran.proc.returncode == 1
    assert ran.message("silent") == "timeout: no answer from 127.0.0.1 within 0.5 s"
    assert ran.message("closed").startswith("unreachable: cannot connect to 127.0.0.1")


def test_sigterm_removes_the_temp_dir(silent_url: str, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "silent": _index_connection("silent", silent_url + "/simple/")})
    temp = tmp_path / "check-tmp"
    temp.mkdir()
    process = popen(
        "check", "--repo", root, "--timeout", "1.5",
        env=key_env(TMPDIR=str(temp)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 10
        while not any(d.is_dir() for d in temp.glob("connc-check-*/silent")):
            assert time.monotonic() < deadline, "the probe never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert list(temp.iterdir()) == []


def test_a_bundle_directory_is_private(services: ProbeTargets, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp dir is created 0700 (mkdtemp), whatever the umask."""
    from connc.check import run as check

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    seen: list[int] = []
    real = check._check_one

    def spy(root: Path, connection_id: str, workdir: Path, *args: Any) -> check.Outcome:
        seen.append(os.stat(workdir.parent).st_mode & 0o777)
        return real(root, connection_id, workdir, *args)

    monkeypatch.setattr(check, "_check_one", spy)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", key_env()["SOPS_AGE_KEY_FILE"])
    root = make_repo(tmp_path / "repo", connections={
        "index": _index_connection("index", services.url + "/simple/", services.password)})
    outcomes = check.check(root, [], timeout=5)
    assert [o.status for o in outcomes] == ["ok"]
    assert seen == [0o700]
    assert not list(tmp_path.glob("connc-check-*"))


# --- hostile servers: redirects, proxies, trickles (connc.http's rules) --------------------


def test_a_redirect_elsewhere_fails_the_check_and_netrc_is_never_used(
        tmp_path: Path, _private_home: Path) -> None:
    """A 302 to another origin is not followed: with connc's credential it would reach a host
    nobody named, without it the other host's 200 would pass for a verdict; and the checker's
    own ~/.netrc (which requests used to add on a redirect) is never read."""
    netrc_password = canary()
    (_private_home / ".netrc").write_text("".join(
        f"machine {host} login me password {netrc_password}\n"
        for host in ("localhost", "127.0.0.1")))
    (_private_home / ".netrc").chmod(0o600)
    password = canary()
    with recording_server({"/landing": Reply(200)}) as landing, recording_server() as index:
        index.routes["/simple/"] = Reply(302, {"Location": landing.url("localhost") + "/landing"})
        index.routes["/old/"] = Reply(301, {"Location": "/moved/"})
        index.routes["/moved/"] = lambda seen: Reply(
            200 if seen.headers.get("Authorization") == "Basic " + base64.b64encode(
                f"reader:{password}".encode()).decode() else 401)
        root = make_repo(tmp_path / "repo", connections={
            "away": _index_connection("away", index.url() + "/simple/", password),
            "moved": _index_connection("moved", index.url() + "/old/", password)})
        ran = run_check(root, tmp_path, hidden=[password, netrc_password],
                        env={"NETRC": str(_private_home / ".netrc")})
    assert ran.proc.returncode == 1
    assert ran.status("away") == "failed"
    assert ran.message("away").startswith("refused: 127.0.0.1 redirected to localhost; ")
    assert landing.seen == []
    assert ran.status("moved") == "ok"  # a redirect within the origin keeps the credential
    assert [s.path for s in index.seen if s.path != "/simple/"] == ["/old/", "/moved/"]
    assert all(netrc_password not in str(s.headers) and "bWU6" not in str(s.headers)
               for s in index.seen)  # "me:" in base64: no netrc login either


def test_loopback_traffic_never_goes_through_a_proxy(git_server: GitHttpServer,
                                                     tmp_path: Path) -> None:
    """Plain http is allowed on loopback only because it stays on this machine: neither
    connc's request nor git's (curl proxies 127.0.0.1 too) may hand it to a proxy."""
    password, git_password = canary(), canary()
    repo_url = git_server.add_repo("org-a/api.git")
    git_server.add_account("bot", git_password, "org-a")
    with recording_server() as index, logging_proxy() as proxy:
        index.routes["/simple/"] = Reply(200)
        root = make_repo(tmp_path / "repo", connections={
            "index": _index_connection("index", index.url("localhost") + "/simple/", password),
            "repo": connection("repo", type_="git", spec={"url": repo_url},
                               credential={"username": "bot", "password": git_password})})
        proxies = {name: proxy.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                                "http_proxy", "https_proxy", "all_proxy")}
        ran = run_check(root, tmp_path, hidden=[password, git_password],
                        env={**proxies, "NO_PROXY": "", "no_proxy": ""})
    assert ran.proc.returncode == 0, ran.outcomes
    assert ran.message("repo") == "git ls-remote through the bundle succeeded"
    assert proxy.heads == []
    assert len(index.seen) == 1


def test_a_trickling_server_is_cut_off_at_the_timeout(github_api: FakeGitHub,
                                                      tmp_path: Path) -> None:
    """One header byte a second kept `check --timeout 2` alive for 659 s: --timeout bounds
    the whole probe, an HTTP one and the github-app one alike."""
    with trickling_server() as slow, trickling_server(
            b"HTTP/1.1 201 Created\r\nContent-Length: 9999\r\n\r\n{") as slow_body:
        root = make_repo(tmp_path / "repo", connections={
            "slow-index": _index_connection("slow-index", slow.url + "/simple/"),
            "slow-app": connection(
                "slow-app", type_="github-app",
                credential={"privateKey": github_api.private_key_pem},
                spec={"apiUrl": slow_body.url, "appId": int(github_api.app_id),
                      "installationId": github_api.installation_id})})
        started = time.monotonic()
        ran = run_check(root, tmp_path, "--timeout", "1", hidden=[github_api.private_key_pem],
                        timeout=30)
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # a second each, in parallel, plus start-up and decryption
    assert ran.proc.returncode == 1
    assert ran.message("slow-index") == "timeout: no answer from 127.0.0.1 within 1 s"
    assert "no answer within 1 s" in ran.message("slow-app")


def test_sigterm_ends_a_stuck_check_at_once(tmp_path: Path) -> None:
    """The first SIGTERM ends the run, whatever the probes are stuck on, and the temp dir
    goes with it."""
    with trickling_server() as slow:
        root = make_repo(tmp_path / "repo", connections={
            f"slow-{n}": _index_connection(f"slow-{n}", slow.url + "/simple/")
            for n in range(3)})
        temp = tmp_path / "check-tmp"
        temp.mkdir()
        process = popen(
            "check", "--repo", root, "--timeout", "120",
            env=key_env(TMPDIR=str(temp)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            deadline = time.monotonic() + 15
            while slow.server.accepted < 3:
                assert time.monotonic() < deadline, "the probes never reached the server"
                time.sleep(0.02)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _stdout, stderr = process.communicate(timeout=15)
            ended = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, stderr
    assert ended < 3, ended
    assert list(temp.iterdir()) == []
