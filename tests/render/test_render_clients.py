"""`connc render` proven with the real clients against local servers on loopback.

Each bundle is rendered by `python -m connc render` from a repository encrypted with the real
sops, then consumed the way a pipeline step consumes it: `. OUT/env`, then plain git, skopeo,
kubectl or pip with a pinned environment (private HOME, no system or user config).
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import configparser
import dataclasses
import datetime as dt
import json
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from kit.build import connection, make_repo, pipeline, sourced
from kit.keys import ssh_key_pair
from kit.run import connc
from kit.servers._net import clean_env
from kit.servers.git_http import (  # noqa: F401
    GitHttpServer,
    git_env,
    git_server,
    run_git,
    write_askpass,
)
from kit.servers.github_fake import FakeGitHub, github_api  # noqa: F401
from kit.servers.kube_api import KubeApiServer, kube_server, run_kubectl  # noqa: F401
from kit.servers.pypi_index import PypiIndex, pypi_index  # noqa: F401
from kit.servers.registry import RegistryServer, registry_server, run_skopeo  # noqa: F401

pytestmark = pytest.mark.servers


def render(tmp_path: Path, connections: dict[str, dict[str, Any]],
           uses: list[dict[str, Any]] | None = None, *, pipeline_id: str = "ci") -> Path:
    """Build a repository whose pipeline uses every connection (or `uses`), render it to OUT."""
    document = pipeline(pipeline_id, *connections)
    if uses is not None:
        document["uses"] = uses
    root = make_repo(tmp_path / f"repo-{pipeline_id}", connections=connections,
                     pipelines={pipeline_id: document})
    out = tmp_path / f"out-{pipeline_id}"
    proc = connc("render", "--pipeline", pipeline_id, "--repo", root, "--out", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


def private_home(tmp_path: Path, name: str = "client-home") -> Path:
    home = tmp_path / name
    home.mkdir(parents=True, exist_ok=True)
    return home


def git(args: list[str | Path], env: dict[str, str], cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *map(str, args)], env=env, cwd=cwd, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)


def credential_request(url: str) -> str:
    """What git writes to a credential helper's stdin for `url`."""
    parts = urlsplit(url)
    return f"protocol={parts.scheme}\nhost={parts.netloc}\npath={parts.path.lstrip('/')}\n\n"


def answer_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# --- git over https (http on loopback) ---------------------------------------------------------


@dataclasses.dataclass
class GitOrg:
    connection: str
    repo: str  # path on the server
    user: str  # the username the server must see
    secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(18),
                                    repr=False)
    url: str = ""


@dataclasses.dataclass
class GitBundle:
    out: Path
    server: GitHttpServer
    orgs: dict[str, GitOrg]  # path prefix on the server -> what serves it
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return git_env(self.home)


@pytest.fixture
def git_bundle(git_server: GitHttpServer, tmp_path: Path) -> GitBundle:
    """Four git-type connections on ONE host: three limited to an org path, one host-wide.

    The server grants each account only its own org, so a credential sent for the wrong path
    shows up in its log as a 401/403 with a username.
    """
    base = git_server.url
    orgs = {
        "org-a": GitOrg("gl-org-a", "org-a/api.git", "oauth2"),
        "org-b": GitOrg("codeup-org-b", "org-b/web.git", "codeup-bot"),
        "org-c": GitOrg("bb-org-c", "org-c/app.git", "x-token-auth"),
        "org-d": GitOrg("git-host", "org-d/tools.git", "generic-bot"),
    }
    for org, entry in orgs.items():
        entry.url = git_server.add_repo(entry.repo)
        git_server.add_account(entry.user, entry.secret, org)
    a, b, c, d = orgs.values()
    out = render(tmp_path, {
        a.connection: connection(a.connection, type_="gitlab-self-hosted",
                                 spec={"url": f"{base}/org-a"}, credential={"token": a.secret}),
        b.connection: connection(b.connection, type_="codeup", spec={"url": f"{base}/org-b/"},
                                 credential={"username": b.user, "password": b.secret}),
        c.connection: connection(c.connection, type_="bitbucket", spec={"url": f"{base}/org-c"},
                                 credential={"token": c.secret}),
        # No path: it covers the whole host, below the three org prefixes (longest one wins).
        d.connection: connection(d.connection, type_="git", spec={"url": base},
                                 credential={"username": d.user, "password": d.secret}),
    })
    return GitBundle(out, git_server, orgs, private_home(tmp_path))


def test_each_git_connection_reaches_its_own_org_on_one_host(git_bundle: GitBundle,
                                                             tmp_path: Path) -> None:
    for org, entry in git_bundle.orgs.items():
        proc = sourced(git_bundle.out, ["git", "clone", "-q", entry.url, tmp_path / org],
                       git_bundle.env)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / org / "README.md").is_file()
        assert git_bundle.server.users_for(org) == {entry.user}
    # Never a credential sent where it does not belong: refusals only for the anonymous probe.
    wrong = [r for r in git_bundle.server.log if r.status != 200 and r.user is not None]
    assert wrong == []


def test_git_clone_fails_without_the_bundle(git_bundle: GitBundle, tmp_path: Path) -> None:
    proc = git(["clone", "-q", git_bundle.orgs["org-a"].url, tmp_path / "clone"], git_bundle.env)
    assert proc.returncode != 0
    assert {r.status for r in git_bundle.server.log} == {401}


def test_credential_helper_alone_answers_by_longest_prefix(git_bundle: GitBundle) -> None:
    """git's credential helper, without GIT_ASKPASS to fall back on, is what chooses by path."""
    for org, entry in git_bundle.orgs.items():
        proc = sourced(git_bundle.out, ["sh", "-c", "unset GIT_ASKPASS; git credential fill"],
                       git_bundle.env, stdin=credential_request(entry.url))
        assert proc.returncode == 0, proc.stderr
        answer = answer_lines(proc.stdout)
        assert answer["username"] == entry.user, org
        assert answer["password"] == entry.secret, org
    elsewhere = sourced(git_bundle.out, ["sh", "-c", "unset GIT_ASKPASS; git credential fill"],
                        git_bundle.env,
                        stdin=credential_request(git_bundle.server.url + "/org-z/x.git"))
    assert answer_lines(elsewhere.stdout)["username"] == "generic-bot"


def test_git_fetch_and_push_with_the_bundle(git_bundle: GitBundle, tmp_path: Path) -> None:
    org = git_bundle.orgs["org-b"]
    clone = tmp_path / "web"
    env = git_bundle.env
    assert sourced(git_bundle.out, ["git", "clone", "-q", org.url, clone], env).returncode == 0
    (clone / "change.txt").write_text("pushed through the bundle\n")
    run_git(["add", "change.txt"], env, cwd=clone)
    run_git(["commit", "-q", "-m", "change"], env, cwd=clone)
    pushed = sourced(git_bundle.out, ["git", "push", "-q", "origin", "HEAD:main"], env, cwd=clone)
    assert pushed.returncode == 0, pushed.stderr
    assert git_bundle.server.head(org.repo) == run_git(["rev-parse", "HEAD"], env, cwd=clone)
    fetched = sourced(git_bundle.out, ["git", "fetch", "-q", "origin"], env, cwd=clone)
    assert fetched.returncode == 0, fetched.stderr
    assert any(r.method == "POST" and r.path.endswith("/git-receive-pack") and r.status == 200
               and r.user == "codeup-bot" for r in git_bundle.server.log)


def test_user_store_helper_does_not_receive_bundle_credentials(git_bundle: GitBundle,
                                                               tmp_path: Path) -> None:
    home = git_bundle.home
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    for org in ("org-a", "org-d"):  # a path prefix and the host-wide connection
        proc = sourced(git_bundle.out, ["git", "clone", "-q", git_bundle.orgs[org].url,
                                        tmp_path / org], git_bundle.env)
        assert proc.returncode == 0, proc.stderr
    assert not (home / ".git-credentials").exists()
    # Control: in this environment the store helper does write what an askpass supplies.
    entry = git_bundle.orgs["org-b"]
    askpass = write_askpass(tmp_path / "plain-askpass", entry.user, entry.secret)
    env = git_env(home, GIT_ASKPASS=str(askpass))
    run_git(["clone", "-q", entry.url, str(tmp_path / "control")], env)
    assert (home / ".git-credentials").is_file()


def test_env_file_appends_to_an_existing_git_config_count(git_bundle: GitBundle,
                                                          tmp_path: Path) -> None:
    env = git_env(git_bundle.home, GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="connc.probe",
                  GIT_CONFIG_VALUE_0="kept")
    script = 'git config connc.probe && echo "$GIT_CONFIG_COUNT" && git clone -q "$1" "$2"'
    proc = sourced(git_bundle.out, ["sh", "-c", script, "sh", git_bundle.orgs["org-c"].url,
                                    tmp_path / "app"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["kept", "2"]
    assert git_bundle.server.users_for("org-c") == {"x-token-auth"}


def test_askpass_answers_git_prompts(git_bundle: GitBundle) -> None:
    askpass = git_bundle.out / "git" / "askpass"
    base = git_bundle.server.url
    host = base.split("://", 1)[1]

    def ask(prompt: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([askpass, prompt], capture_output=True, text=True, timeout=10,
                              env=clean_env(git_bundle.home), check=False)

    org_a, org_d = git_bundle.orgs["org-a"], git_bundle.orgs["org-d"]
    cases = {
        # scheme and host only: the host-wide connection
        f"Username for '{base}': ": "generic-bot",
        f"Password for 'http://generic-bot@{host}': ": org_d.secret,
        # with a path (git adds it when credential.useHttpPath applies): the longest prefix
        f"Username for '{org_a.url}': ": "oauth2",
        f"Password for 'http://oauth2@{host}/org-a/api.git': ": org_a.secret,
    }
    for prompt, expected in cases.items():
        proc = ask(prompt)
        assert (proc.returncode, proc.stdout) == (0, expected + "\n"), prompt
    assert ask("Username for 'https://elsewhere.example': ").stdout == ""


# --- git over ssh ------------------------------------------------------------------------------


def test_ssh_connection_renders_key_known_hosts_and_command(tmp_path: Path) -> None:
    client_key, _ = ssh_key_pair()
    _, host_key = ssh_key_pair()
    known_hosts = f"[127.0.0.1]:2222 {host_key}"
    out = render(tmp_path, {"git-ssh": connection(
        "git-ssh", type_="git",
        spec={"url": "ssh://git@127.0.0.1:2222/infra/deploy.git", "knownHosts": known_hosts},
        credential={"sshPrivateKey": client_key})})
    key_file, hosts_file = out / "git/ssh/git-ssh.key", out / "git/ssh/git-ssh.known_hosts"
    config_file = out / "git/ssh/config"
    assert key_file.read_text() == client_key
    assert hosts_file.read_text().strip() == known_hosts
    for path in (key_file, hosts_file, config_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = sourced(out, ["sh", "-c", 'printf %s "$GIT_SSH_COMMAND"'], clean_env(tmp_path))
    assert shlex.split(shown.stdout) == ["ssh", "-F", str(config_file)]
    # The connection's key and host keys are bound to its host in that config alone.
    config = config_file.read_text()
    for option in (f'IdentityFile "{key_file}"', f'UserKnownHostsFile "{hosts_file}"',
                   "IdentitiesOnly yes", "StrictHostKeyChecking yes", "BatchMode yes"):
        assert option in config, option
    assert client_key.splitlines()[1] not in shown.stdout + config  # paths only
    if shutil.which("ssh-keygen"):  # ssh's own tools read both files as written
        derived = subprocess.run(["ssh-keygen", "-y", "-f", key_file], capture_output=True,
                                 text=True, timeout=10, check=False)
        assert derived.returncode == 0, derived.stderr
        found = subprocess.run(["ssh-keygen", "-F", "[127.0.0.1]:2222", "-f", hosts_file],
                               capture_output=True, text=True, timeout=10, check=False)
        assert host_key.split()[1] in found.stdout


# --- container registry ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed_image(registry_server: RegistryServer) -> str:
    return registry_server.push_test_image("render/app", "v1")


def _registry_connection(registry: RegistryServer, conn_id: str,
                         password: str | None = None) -> dict[str, Any]:
    return connection(conn_id, type_="container-registry", spec={"registry": registry.host},
                      credential={"username": registry.username,
                                  "password": password or registry.password})


def test_skopeo_uses_the_bundle_docker_config(registry_server: RegistryServer, pushed_image: str,
                                              tmp_path: Path) -> None:
    out = render(tmp_path, {"registry": _registry_connection(registry_server, "registry")})
    config = json.loads((out / "docker/config.json").read_text())
    assert set(config) == {"auths"}  # no credsStore, no credHelpers
    env = clean_env(private_home(tmp_path))  # XDG dirs empty: DOCKER_CONFIG is what is read
    repo = f"docker://{registry_server.host}/render/app"
    listed = sourced(out, ["skopeo", "list-tags", "--tls-verify=false", repo], env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["Tags"] == ["v1"]
    copied = sourced(out, ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                           f"docker://{pushed_image}", f"dir:{tmp_path / 'image'}"], env)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "image" / "manifest.json").is_file()
    anonymous = run_skopeo(["list-tags", "--tls-verify=false", repo], env)
    assert anonymous.returncode != 0


def test_skopeo_refuses_a_wrong_password(registry_server: RegistryServer, pushed_image: str,
                                         tmp_path: Path) -> None:
    out = render(tmp_path, {"registry-wrong": _registry_connection(
        registry_server, "registry-wrong", password="not-" + registry_server.password)})
    proc = sourced(out, ["skopeo", "list-tags", "--tls-verify=false",
                         f"docker://{registry_server.host}/render/app"],
                   clean_env(private_home(tmp_path)))
    assert proc.returncode != 0
    assert "unauthorized" in proc.stderr.lower()


# --- kubernetes --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_kubectl_reaches_the_cluster_with_each_context(kube_server: KubeApiServer,
                                                       tmp_path: Path) -> None:
    cert, key = kube_server.make_client_cert("deployer")
    cluster = {"server": kube_server.server, "certificateAuthorityData": _b64(kube_server.ca_pem)}
    out = render(tmp_path, {
        "k8s-token": connection("k8s-token", type_="kubernetes",
                                spec={**cluster, "namespace": "apps"},
                                credential={"token": kube_server.token}),
        "k8s-cert": connection("k8s-cert", type_="kubernetes", spec={**cluster, "namespace": "ops"},
                               credential={"clientCertificateData": _b64(cert),
                                           "clientKeyData": _b64(key)}),
    })
    kubeconfig, home = out / "kube/config", private_home(tmp_path)
    for context, auth in (("k8s-token", "token"), ("k8s-cert", "client-cert")):
        proc = run_kubectl(kubeconfig, ["--context", context, "get", "--raw", "/version"], home)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["gitVersion"] == "v1.30.0"
        assert kube_server.log[-1].auth == auth
    assert kube_server.log[-1].user == "deployer"
    current = run_kubectl(kubeconfig, ["config", "current-context"], home)
    assert current.stdout.strip() == "k8s-token"  # the first kubernetes connection of `uses`
    for context, namespace in (("k8s-token", "apps"), ("k8s-cert", "ops")):
        view = run_kubectl(kubeconfig, ["config", "view", "--minify", "--context", context,
                                        "-o", "jsonpath={..namespace}"], home)
        assert view.stdout.strip() == namespace
    # KUBECONFIG from `. OUT/env`, no --kubeconfig: the current context.
    via_env = sourced(out, ["kubectl", "--request-timeout=20s", "get", "--raw", "/version"],
                      clean_env(home))
    assert via_env.returncode == 0, via_env.stderr
    assert kube_server.log[-1].auth == "token"


# --- package managers --------------------------------------------------------------------------


def test_package_configs_parse_back(tmp_path: Path) -> None:
    maven_password = "m<&>\"'pw"  # XML-special characters
    pypi_user, pypi_password = "ci@corp", "p@ss:/w%rd#?"
    out = render(tmp_path, {
        "maven-releases": connection("maven-releases", type_="packages", spec={
            "format": "maven", "url": "https://maven.example.com/releases",
            "repositoryId": "releases"},
            credential={"username": "deployer", "password": maven_password}),
        "npm-internal": connection("npm-internal", type_="packages", spec={
            "format": "npm", "url": "https://npm.example.com/registry/"},
            credential={"token": "npm_tokenvalue;#not-a-comment"}),
        "pypi-mirror": connection("pypi-mirror", type_="packages", spec={
            "format": "pypi", "url": "https://pypi.example.com/simple/"},
            credential={"username": pypi_user, "password": pypi_password}),
    })
    ns = {"m": "http://maven.apache.org/SETTINGS/1.0.0"}
    server = ET.parse(out / "maven/settings.xml").getroot().find("m:servers/m:server", ns)
    assert server is not None
    assert [server.findtext(f"m:{field}", namespaces=ns) for field in
            ("id", "username", "password")] == ["releases", "deployer", maven_password]

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(out / "pip/pip.conf")
    index = urlsplit(parser["global"]["index-url"])
    assert (unquote(index.username or ""), unquote(index.password or "")) == (pypi_user,
                                                                              pypi_password)
    assert (index.hostname, index.path) == ("pypi.example.com", "/simple/")

    npmrc = dict(line.split("=", 1) for line in (out / "npm/npmrc").read_text().splitlines()
                 if line and not line.startswith(";"))
    assert json.loads(npmrc["registry"]) == "https://npm.example.com/registry/"
    assert json.loads(npmrc["//npm.example.com/registry/:_authToken"]) == \
        "npm_tokenvalue;#not-a-comment"

    shown = sourced(out, ["sh", "-c", 'printf "%s\\n" "$MAVEN_ARGS" "$NPM_CONFIG_USERCONFIG" '
                                      '"$PIP_CONFIG_FILE"'], clean_env(tmp_path))
    assert shown.stdout.splitlines() == [f"--settings {out}/maven/settings.xml",
                                         f"{out}/npm/npmrc", f"{out}/pip/pip.conf"]


def test_pip_downloads_through_the_rendered_pip_conf(pypi_index: PypiIndex,
                                                     tmp_path: Path) -> None:
    out = render(tmp_path, {"pypi-local": connection("pypi-local", type_="packages", spec={
        "format": "pypi", "url": f"http://{pypi_index.canonical}/simple/"},
        credential={"username": pypi_index.username, "password": pypi_index.password})})
    env = clean_env(private_home(tmp_path), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = sourced(out, [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                         "--dest", tmp_path / "dl", "connc-probe==1.0"], env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dl" / "connc_probe-1.0-py3-none-any.whl").is_file()
    assert pypi_index.log and pypi_index.refused() == []  # every request had the credential


# --- GitHub App installation tokens ------------------------------------------------------------


@dataclasses.dataclass
class AppSetup:
    github: FakeGitHub
    server: GitHttpServer
    repo_url: str
    tmp_path: Path

    def render(self, *, refresh: bool = False) -> Path:
        use: dict[str, Any] = {"connection": "gh-app", "repositories": ["app"],
                               "permissions": {"contents": "write", "metadata": "read"}}
        if refresh:
            use["refresh"] = True
        return render(self.tmp_path, {"gh-app": connection("gh-app", type_="github-app", spec={
            "url": self.server.url + "/org-a", "apiUrl": self.github.url,
            "appId": int(self.github.app_id), "installationId": self.github.installation_id},
            credential={"privateKey": self.github.private_key_pem})}, [use])

    def clone(self, out: Path, name: str) -> subprocess.CompletedProcess[str]:
        home = private_home(self.tmp_path)
        return sourced(out, ["git", "clone", "-q", self.repo_url, self.tmp_path / name],
                       git_env(home))

    def expect_token(self, token: str) -> None:
        """The next mint issues `token`, and the git server takes it for org-a."""
        self.github.queue_token(token)
        self.server.add_account("x-access-token", token, "org-a")


@pytest.fixture
def app(github_api: FakeGitHub, git_server: GitHttpServer, tmp_path: Path) -> AppSetup:
    return AppSetup(github_api, git_server, git_server.add_repo("org-a/app.git"), tmp_path)


def _state(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "github/gh-app.json").read_text()))


def _manifest_entry(out: Path, conn_id: str) -> dict[str, Any]:
    manifest = json.loads((out / "manifest.json").read_text())
    return next(c for c in manifest["connections"] if c["id"] == conn_id)


def test_github_app_token_is_minted_narrowed_and_used_by_git(app: AppSetup) -> None:
    token = "ghs_" + secrets.token_hex(18)
    app.expect_token(token)
    out = app.render()
    [minted] = app.github.minted
    assert minted.token == token
    assert (minted.repositories, minted.permissions) == (["app"], {"contents": "write",
                                                                   "metadata": "read"})
    assert minted.jwt_header["alg"] == "RS256"
    assert minted.jwt_claims["iss"] == app.github.app_id
    assert minted.jwt_claims["exp"] - minted.jwt_claims["iat"] <= 600

    proc = app.clone(out, "app")
    assert proc.returncode == 0, proc.stderr
    assert app.server.users_for("org-a") == {"x-access-token"}
    entry = _manifest_entry(out, "gh-app")
    assert entry["keepsAppKey"] is False and entry["tokenExpiresAt"]
    assert "privateKey" not in _state(out)  # by default the App key stays out of the job

    cleaned = connc("clean", out, timeout=60)
    assert cleaned.returncode == 0, cleaned.stderr
    assert app.github.revoked == [token]
    assert not out.exists()


def test_expired_token_tells_to_render_again(app: AppSetup) -> None:
    app.github.fail_next(201, body={"token": "ghs_" + secrets.token_hex(18),
                                    "expires_at": "2020-01-02T03:04:05Z",
                                    "permissions": {"contents": "write"}})
    out = app.render()
    asked = subprocess.run([out / "git/askpass", "get"], input=credential_request(app.repo_url),
                           capture_output=True, text=True, timeout=10, check=False)
    assert asked.returncode == 1 and asked.stdout == ""
    assert "expired at 2020-01-02T03:04:05Z" in asked.stderr
    assert "run connc render again" in asked.stderr
    proc = app.clone(out, "app")
    assert proc.returncode != 0
    assert "expired at 2020-01-02T03:04:05Z; run connc render again" in proc.stderr


def test_refresh_keeps_the_app_key_and_remints_before_expiry(app: AppSetup) -> None:
    app.github.queue_token("ghs_" + secrets.token_hex(18))
    out = app.render(refresh=True)
    entry = _manifest_entry(out, "gh-app")
    assert entry["keepsAppKey"] is True and entry["refresh"] is True
    state_file = out / "github/gh-app.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = _state(out)
    assert state["privateKey"] == app.github.private_key_pem

    # Two minutes left: inside the re-mint window, as after an hour-long job.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    state_file.write_text(json.dumps({**state, "expiresAt": soon.isoformat()}))
    fresh = "ghs_" + secrets.token_hex(18)
    app.expect_token(fresh)  # only the re-minted token is a git account
    proc = app.clone(out, "app")
    assert proc.returncode == 0, proc.stderr
    assert [m.token for m in app.github.minted][-1] == fresh
    assert (app.github.minted[-1].repositories, app.github.minted[-1].permissions) == \
        (app.github.minted[0].repositories, app.github.minted[0].permissions)
    assert _state(out)["token"] == fresh
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600

    assert connc("clean", out, timeout=60).returncode == 0
    assert app.github.revoked == [fresh]
    assert not out.exists()


def test_concurrent_helpers_remint_only_once(app: AppSetup) -> None:
    """Parallel git processes (submodules, `fetch --jobs`) near expiry share one re-mint."""
    app.github.queue_token("ghs_" + secrets.token_hex(18))
    out = app.render(refresh=True)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    (out / "github/gh-app.json").write_text(json.dumps({**_state(out),
                                                        "expiresAt": soon.isoformat()}))
    fresh = "ghs_" + secrets.token_hex(18)
    app.github.queue_token(fresh)  # a second mint would get a random token instead
    # One 503 first: the re-mint waits out a 1 s backoff, so every helper is started, and
    # waiting for the lock, before the state file is replaced.
    app.github.fail_next(503)
    minted_before = len(app.github.minted)
    request = app.tmp_path / "request"
    request.write_text(credential_request(app.repo_url))
    with open(request) as first, open(request) as second, open(request) as third:
        helpers = [subprocess.Popen([out / "git/askpass", "get"], stdin=stdin, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                   for stdin in (first, second, third)]  # all asking at once
        answers = [helper.communicate(timeout=30)[0] for helper in helpers]
    assert {answer_lines(answer).get("password") for answer in answers} == {fresh}
    assert len(app.github.minted) == minted_before + 1
