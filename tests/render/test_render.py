"""`connc render` and `connc clean` behaviour: refusals, atomicity, modes, formats, injection.

Every run is `python -m connc` in a fresh interpreter with the test key, as in a pipeline.
Refusals are checked for what they leave behind too: no OUT, no staging directory beside it.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kit.actions_runner import log_lines, parse_command, parse_env_file
from kit.build import (
    MEMBERS,
    TEST_KEY_FILE,
    add_connection,
    connection,
    key_env,
    make_repo,
    pipeline,
    sourced,
    write,
)
from kit.keys import new_recipient, ssh_key_pair
from kit.run import connc, popen
from kit.servers.git_http import GitHttpServer, git_env, git_server  # noqa: F401
from kit.servers.github_fake import FakeGitHub, github_api  # noqa: F401

GITLAB = connection("gitlab-main", spec={"url": "https://gitlab.example.com/main"},
                    credential={"token": "glpat-main-token"})
# Refused by the maven writer, so after decryption (and after minting, when there is a token).
MAVEN_INTERPOLATED = connection("maven-bad", type_="packages", spec={
    "format": "maven", "url": "https://maven.example.com/r", "repositoryId": "r"},
    credential={"username": "deployer", "password": "${env.DEPLOY_PASSWORD}"})


def render(root: Path, pipeline_id: str, out: Path | None, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args: list[str | Path] = ["render", "--pipeline", pipeline_id, "--repo", root]
    if out is not None:
        args += ["--out", out]
    return connc(*args, *extra, env=env, timeout=60)


def assert_nothing_written(out: Path) -> None:
    """No OUT and no staging or retired directory of it beside it."""
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


def assert_refused(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("connc: error: ")
    for phrase in phrases:
        assert phrase in proc.stderr


# --- refused before any decryption ---------------------------------------------------------


def test_scope_denial_is_refused_as_validate_reports_it_before_decrypting(tmp_path: Path) -> None:
    # `bobs` is private to bob and encrypted to a key nobody has: had render decrypted it,
    # the refusal would be sops' "no usable key" instead of the scope.
    root = make_repo(tmp_path / "repo", connections={
        "gitlab-main": GITLAB,
        "bobs": connection("bobs", owner="bob", spec={"url": "https://gitlab.example.com/bob"}),
    }, pipelines={"ci": pipeline("ci", "gitlab-main", "bobs")}, locked={"bobs": new_recipient()})
    validated = connc("validate", "--repo", root, "--format", "json", timeout=60)
    [finding] = json.loads(validated.stdout)["findings"]
    assert finding["code"] == "CONNC301"

    out = tmp_path / "out"
    proc = render(root, "ci", out)
    assert_refused(proc, "CONNC301", finding["message"])
    assert "cannot decrypt" not in proc.stderr and "no usable key" not in proc.stderr
    assert_nothing_written(out)


def test_unknown_pipeline_is_refused(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": GITLAB})
    proc = render(root, "nope", tmp_path / "out")
    assert_refused(proc, "pipeline `nope` does not exist", "pipelines.d/nope.yaml")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("relpath", ["pipelines.d/ci.yaml", "members.yaml",
                                     "connections.d/gitlab-main.sops.yaml"])
def test_a_file_that_is_a_symlink_out_of_the_repository_is_refused(tmp_path: Path,
                                                                    relpath: str) -> None:
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": GITLAB},
                     pipelines={"ci": pipeline("ci", "gitlab-main")})
    outside = tmp_path / "outside.yaml"
    outside.write_bytes((root / relpath).read_bytes())
    (root / relpath).unlink()
    (root / relpath).symlink_to(outside)
    proc = render(root, "ci", tmp_path / "out")
    assert_refused(proc, "symlink", relpath)
    assert_nothing_written(tmp_path / "out")


def test_a_symlink_inside_the_repository_is_refused_too(tmp_path: Path) -> None:
    # pipelines.d/evil.yaml -> ../docs/evil.yaml: a file no check of pipelines.d/ ever saw.
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": GITLAB})
    write(root, "docs/evil.yaml", pipeline("evil", "gitlab-main"))
    (root / "pipelines.d" / "evil.yaml").symlink_to("../docs/evil.yaml")
    proc = render(root, "evil", tmp_path / "out")
    assert_refused(proc, "symlink", "pipelines.d/evil.yaml")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("pipeline_id", ["../docs/evil", "a b", "Evil", "x\ny", ""])
def test_an_id_that_is_no_id_is_a_usage_error_before_anything_is_read(
        tmp_path: Path, pipeline_id: str) -> None:
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": GITLAB})
    write(root, "docs/evil.yaml", pipeline("evil", "gitlab-main"))
    for args in (["render", pipeline_id], ["render", "--pipeline", pipeline_id]):
        proc = connc(*args, "--repo", root, "--out", tmp_path / "out", timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "an id is 1-63 lowercase letters" in proc.stderr and "\ny" not in proc.stderr
        assert_nothing_written(tmp_path / "out")


def test_team_claimed_by_a_non_member_owner_is_refused(tmp_path: Path) -> None:
    members = {**MEMBERS, "users": {**MEMBERS["users"], "carol": {}},
               "teams": {**MEMBERS["teams"], "ops": {"members": ["carol"]}}}
    ops_only = connection("ops-only", owner="carol", visibility="custom", members=["team:ops"],
                          spec={"url": "https://gitlab.example.com/ops"})
    root = make_repo(tmp_path / "repo", members=members, connections={"ops-only": ops_only},
                     pipelines={"ci": pipeline("ci", "ops-only", teams=["ops"])})
    proc = render(root, "ci", tmp_path / "out")
    assert_refused(proc, "claims team `ops`", "owner `alice` is not a member")
    assert_nothing_written(tmp_path / "out")


def test_only_the_pipelines_connections_are_read(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "gitlab-main": GITLAB,
        "locked": connection("locked", spec={"url": "https://gitlab.example.com/locked"}),
    }, pipelines={"ci": pipeline("ci", "gitlab-main")}, locked={"locked": new_recipient()})
    (root / "connections.d/garbage.sops.yaml").write_text("credential: [unclosed\n  : :\n")
    (root / "pipelines.d/broken.yaml").write_text("{{{{\n")
    out = tmp_path / "out"
    proc = render(root, "ci", out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["id"] for c in manifest["connections"]] == ["gitlab-main"]


# --- atomicity -----------------------------------------------------------------------------


def test_a_connection_that_fails_to_decrypt_leaves_nothing(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "gitlab-main": GITLAB,
        "locked": connection("locked", spec={"url": "https://gitlab.example.com/locked"}),
    }, pipelines={"ci": pipeline("ci", "gitlab-main", "locked")},
        locked={"locked": new_recipient()})
    out = tmp_path / "out"
    proc = render(root, "ci", out)
    # No key for it here: an environment error, exit 2, not a refusal of the file.
    assert proc.returncode == 2 and proc.stderr.startswith("connc: error: ")
    assert "connections.d/locked.sops.yaml: cannot decrypt: no usable key: your key" in proc.stderr
    assert "is not among this file's recipients" in proc.stderr
    assert "gitlab-main" not in proc.stderr
    assert_nothing_written(out)


def test_sigterm_while_decrypting_leaves_nothing_and_no_sops_running(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": GITLAB},
                     pipelines={"ci": pipeline("ci", "gitlab-main")})
    env = key_env()
    marker = tmp_path / "sops-asked-for-the-key"
    # sops asks this command for the key: it marks the moment, then takes its time.
    env.pop("SOPS_AGE_KEY_FILE")
    env["SOPS_AGE_KEY_CMD"] = f"sh -c 'touch {marker}; sleep 30; cat {TEST_KEY_FILE}'"
    out = tmp_path / "out"
    proc = popen("render", "--repo", root, "--pipeline", "ci", "--out", out, env=env,
                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "sops never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "connc: interrupted" in stderr
    assert "Traceback" not in stderr
    assert_nothing_written(out)
    # sops and the key command it started were stopped with connc.
    left = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True,
                          check=False)
    assert left.stdout.strip() == ""


def test_a_failed_render_keeps_the_previous_bundle(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "gitlab-main": GITLAB,
        "locked": connection("locked", spec={"url": "https://gitlab.example.com/locked"}),
    }, pipelines={"ci": pipeline("ci", "gitlab-main"), "cd": pipeline("cd", "locked")},
        locked={"locked": new_recipient()})
    out = tmp_path / "out"
    assert render(root, "ci", out).returncode == 0
    before = (out / "manifest.json").read_text()
    assert render(root, "cd", out).returncode == 2  # no key for `locked` here
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


@pytest.mark.parametrize(("field", "char"), [
    ("username", "\n"), ("password", "\r"), ("password", "\x1b"), ("username", "\x7f"),
])
def test_control_characters_in_a_value_are_refused(tmp_path: Path, field: str,
                                                   char: str) -> None:
    credential = {"username": "ci-bot", "password": "fine-password",
                  field: f"leftQz8{char}rightQz8"}
    root = make_repo(tmp_path / "repo", connections={
        "gitlab-main": GITLAB,
        "codeup-x": connection("codeup-x", type_="codeup", credential=credential),
    }, pipelines={"ci": pipeline("ci", "gitlab-main", "codeup-x")})
    out = tmp_path / "out"
    proc = render(root, "ci", out)
    assert_refused(proc, "connection `codeup-x`", f"`credential.{field}`")
    assert "Qz8" not in proc.stderr
    assert_nothing_written(out)


def test_a_placeholder_credential_is_refused(tmp_path: Path) -> None:
    placeholder = connection("gitlab-new", credential={"token": "REPLACE-WITH-connc-secret-set"},
                             spec={"url": "https://gitlab.example.com/new"})
    root = make_repo(tmp_path / "repo", connections={"gitlab-new": placeholder},
                     pipelines={"ci": pipeline("ci", "gitlab-new")})
    proc = render(root, "ci", tmp_path / "out")
    assert_refused(proc, "connection `gitlab-new`", "placeholder", "connc secret set")
    assert_nothing_written(tmp_path / "out")


def test_maven_interpolation_is_refused(tmp_path: Path) -> None:
    for n, password in enumerate(("${env.DEPLOY_PASSWORD}", "{COQLCE6DU6GtcS5P=}")):
        root = make_repo(tmp_path / f"repo{n}", connections={
            "maven": connection("maven", type_="packages", spec={
                "format": "maven", "url": "https://maven.example.com/r", "repositoryId": "r"},
                credential={"username": "deployer", "password": password}),
        }, pipelines={"ci": pipeline("ci", "maven")})
        out = tmp_path / f"out{n}"
        proc = render(root, "ci", out)
        assert_refused(proc, "connection `maven`", "Maven would interpolate")
        assert password not in proc.stderr
        assert_nothing_written(out)


def test_two_git_connections_for_one_prefix_are_refused(tmp_path: Path) -> None:
    twin = connection("gitlab-twin", spec={"url": "https://gitlab.example.com/main/"})
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": GITLAB, "gitlab-twin": twin},
                     pipelines={"ci": pipeline("ci", "gitlab-main", "gitlab-twin")})
    proc = render(root, "ci", tmp_path / "out")
    assert_refused(proc, "`gitlab-main`", "`gitlab-twin`", "https://gitlab.example.com/main")
    assert_nothing_written(tmp_path / "out")


# --- OUT -----------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """One connection of every writer (git https and ssh, docker, kube, the package formats)."""
    ssh_key, _ = ssh_key_pair()
    _, host_key = ssh_key_pair()
    connections = {
        "gitlab-main": GITLAB,
        "git-ssh": connection("git-ssh", type_="git", spec={
            "url": "ssh://git@git.example.com/infra.git",
            "knownHosts": f"git.example.com {host_key}"},
            credential={"sshPrivateKey": ssh_key}),
        "registry": connection("registry", type_="container-registry",
                               spec={"registry": "registry.example.com"},
                               credential={"username": "pusher", "password": "reg-pass/+="}),
        "k8s": connection("k8s", type_="kubernetes",
                          spec={"server": "https://k8s.example.com:6443", "namespace": "apps"},
                          credential={"token": "kube-token-value"}),
        "maven": connection("maven", type_="packages", spec={
            "format": "maven", "url": "https://maven.example.com/r", "repositoryId": "r"},
            credential={"username": "deployer", "password": "maven-pass"}),
        "npm": connection("npm", type_="packages", spec={
            "format": "npm", "url": "https://npm.example.com/"},
            credential={"username": "npm-user", "password": "npm-pass"}),
        "pypi": connection("pypi", type_="packages", spec={
            "format": "pypi", "url": "https://pypi.example.com/simple/"},
            credential={"username": "py@user", "password": "py pass:/?"}),
    }
    return make_repo(tmp_path / "repo", connections=connections,
                     pipelines={"ci": pipeline("ci", *connections),
                                 "small": pipeline("small", "registry")})


def test_modes_of_every_file_and_directory(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = render(repo, "ci", out)
    assert proc.returncode == 0, proc.stderr
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    # ssh: a config with one Host block per connection, its key and its pinned host keys.
    expected_files = {"env", "manifest.json", "git/askpass", "git/config", "git/ssh/git-ssh.key",
                      "git/ssh/config", "git/ssh/git-ssh.known_hosts", "docker/config.json",
                      "kube/config", "maven/settings.xml", "npm/npmrc", "pip/pip.conf"}
    assert {name for name in modes if (out / name).is_file()} == expected_files
    for name, mode in modes.items():
        wanted = 0o700 if (out / name).is_dir() or name == "git/askpass" else 0o600
        assert mode == wanted, name


def test_existing_directory_that_is_not_a_bundle_is_refused(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    proc = render(repo, "ci", out)
    assert_refused(proc, str(out), "not empty nor a previous connc bundle")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_an_empty_directory_or_a_previous_bundle_is_replaced(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert render(repo, "ci", out).returncode == 0
    assert (out / "git/askpass").is_file()
    proc = render(repo, "small", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["docker", "env", "manifest.json"]
    assert json.loads((out / "manifest.json").read_text())["pipeline"] == "small"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_out_inside_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    proc = render(repo, "ci", repo / "bundle")
    assert_refused(proc, "inside the repository")
    assert not (repo / "bundle").exists()
    (tmp_path / "link").symlink_to(repo)  # the same place under another name
    proc = render(repo, "ci", tmp_path / "link" / "bundle")
    assert_refused(proc, "inside the repository")
    assert not (repo / "bundle").exists()


def test_default_out_is_under_runner_temp(repo: Path, tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    proc = render(repo, "small", None, env=key_env(RUNNER_TEMP=str(runner_temp)))
    assert proc.returncode == 0, proc.stderr
    out = runner_temp / "connc" / "small"
    assert json.loads((out / "manifest.json").read_text())["pipeline"] == "small"
    assert f". {out}/env" in proc.stderr


def test_default_out_without_runner_temp_is_a_new_temp_dir(repo: Path, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = key_env(TMPDIR=str(temp))
    assert render(repo, "small", None, env=env).returncode == 0
    # A private parent (mkdtemp, 0700) holds the bundle: its name is never guessable before.
    [parent] = temp.iterdir()
    assert parent.name.startswith("connc-small-")
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    out = parent / "small"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert (out / "docker/config.json").is_file()
    # A refusal, even after decryption, leaves no empty directory behind.
    add_connection(repo, MAVEN_INTERPOLATED)
    write(repo, "pipelines.d/bad.yaml", pipeline("bad", "maven-bad"))
    assert_refused(render(repo, "bad", None, env=env), "Maven would interpolate")
    assert list(temp.iterdir()) == [parent]


# --- output formats ------------------------------------------------------------------------


SECRETS = ["glpat-main-token", "reg-pass/+=", "kube-token-value", "maven-pass", "npm-pass",
           "py pass:/?"]


def test_shell_format_prints_the_env_file(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = render(repo, "ci", out)
    assert proc.stdout == (out / "env").read_text()
    for secret in SECRETS:
        assert secret not in proc.stdout + proc.stderr


def test_json_format_prints_the_manifest_without_secrets(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = render(repo, "ci", out, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "connc-bundle" and manifest["pipeline"] == "ci"
    assert {c["id"] for c in manifest["connections"]} == {
        "gitlab-main", "git-ssh", "registry", "k8s", "maven", "npm", "pypi"}
    for secret in SECRETS:
        assert secret not in proc.stdout + proc.stderr


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_github_format_masks_every_secret_and_derived_form(repo: Path, tmp_path: Path) -> None:
    out, github_env = tmp_path / "out", tmp_path / "github_env"
    github_env.write_text("EARLIER=step\n")
    env = key_env(GITHUB_ENV=str(github_env), GIT_CONFIG_COUNT="2")
    proc = render(repo, "ci", out, "--format", "github", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = log_lines(proc.stdout)
    commands = [parse_command(line) for line in lines]  # read back as the runner reads them
    masks = {data for command in commands if command and command[0] == "add-mask"
             for _name, _props, data in [command]}
    docker_auth = json.loads((out / "docker/config.json").read_text())["auths"][
        "registry.example.com"]["auth"]
    derived = {
        docker_auth,                                 # docker's auth field
        _b64("pusher:reg-pass/+="),                  # base64 of user:pass
        _b64("oauth2:glpat-main-token"),             # git basic auth
        quote("reg-pass/+=", safe=""),               # URL-encoded
        "py%40user:py%20pass%3A%2F%3F",              # pip's userinfo
        quote("py pass:/?", safe=""),
        _b64("npm-pass"),                            # npm's _password
    }
    assert set(SECRETS) | derived <= masks
    ssh_key_lines = [line for line in (out / "git/ssh/git-ssh.key").read_text().splitlines()
                     if line and not line.startswith("-----")]
    assert set(ssh_key_lines) <= masks  # a multi-line secret is masked line by line
    for line, command in zip(lines, commands, strict=True):
        if not (command and command[0] == "add-mask"):
            assert not any(mask in line for mask in masks), line
    appended = parse_env_file(github_env.read_text())
    assert appended[0] == ("EARLIER", "step")
    assigned = dict(appended[1:])
    assert assigned["GIT_CONFIG_KEY_2"] == "include.path"
    assert assigned["GIT_CONFIG_VALUE_2"] == f"{out}/git/config"
    assert assigned["GIT_CONFIG_COUNT"] == "3"
    assert assigned["DOCKER_CONFIG"] == f"{out}/docker"
    assert assigned["KUBECONFIG"] == f"{out}/kube/config"
    for secret in SECRETS + sorted(derived):
        assert secret not in github_env.read_text()
        assert secret not in proc.stderr


def test_github_format_needs_github_env(repo: Path, tmp_path: Path) -> None:
    proc = render(repo, "small", tmp_path / "out", "--format", "github")
    assert proc.returncode == 2
    assert "GITHUB_ENV" in proc.stderr
    assert "::add-mask::" not in proc.stdout
    assert_nothing_written(tmp_path / "out")


# --- git credentials: quoting and hosts ----------------------------------------------------


def test_quotes_in_the_password_and_the_out_path_survive(git_server: GitHttpServer,
                                                         tmp_path: Path) -> None:
    """Shell, git-config and env-file quoting, proven by a real clone."""
    password = "it's a 'quoted' pa$$word `id` \\ \" $(id) ;"
    url = git_server.add_repo("org-a/api.git")
    git_server.add_account("ci-bot", password, "org-a")
    root = make_repo(tmp_path / "repo", connections={"codeup": connection(
        "codeup", type_="codeup", spec={"url": git_server.url + "/org-a"},
        credential={"username": "ci-bot", "password": password})},
        pipelines={"ci": pipeline("ci", "codeup")})
    out = tmp_path / "bundle dir 'q' \"$HOME\" \\"
    assert render(root, "ci", out).returncode == 0
    home = tmp_path / "home"
    home.mkdir()
    proc = sourced(out, ["git", "clone", "-q", url, tmp_path / "clone"], git_env(home))
    assert proc.returncode == 0, proc.stderr
    assert git_server.users_for("org-a") == {"ci-bot"}
    host = git_server.url.split("://")[1]
    # each way in on its own: git's credential helper, then GIT_ASKPASS
    filled = sourced(out, ["sh", "-c", "unset GIT_ASKPASS; git credential fill"], git_env(home),
                     stdin=f"protocol=http\nhost={host}\npath=org-a/api.git\n\n")
    assert f"password={password}\n" in filled.stdout
    asked = subprocess.run([out / "git/askpass", f"Password for 'http://ci-bot@{host}/org-a': "],
                           capture_output=True, text=True, timeout=10, check=False)
    assert asked.stdout == password + "\n"


def test_askpass_never_answers_for_a_host_named_in_the_path(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={"gitlab-main": connection(
        "gitlab-main", spec={"url": "https://gitlab.example.com"},
        credential={"token": "glpat-main-token"})}, pipelines={"ci": pipeline("ci", "gitlab-main")})
    out = tmp_path / "out"
    assert render(root, "ci", out).returncode == 0
    askpass = out / "git/askpass"
    for prompt in ("Password for 'https://evil.example/x@gitlab.example.com': ",
                   "Password for 'https://gitlab.example.com.evil.example': ",
                   "Password for 'http://gitlab.example.com': "):
        asked = subprocess.run([askpass, prompt], capture_output=True, text=True, timeout=10,
                               check=False)
        assert (asked.returncode, asked.stdout) == (1, ""), prompt
    good = subprocess.run([askpass, "Password for 'https://oauth2@gitlab.example.com': "],
                          capture_output=True, text=True, timeout=10, check=False)
    assert good.stdout == "glpat-main-token\n"


# --- GitHub tokens and clean ---------------------------------------------------------------


def _github_repo(tmp_path: Path, github: FakeGitHub, **use: Any) -> Path:
    document = pipeline("ci", "gh-app")
    document["uses"][0].update(use)
    return make_repo(tmp_path / "repo", connections={"gh-app": connection(
        "gh-app", type_="github-app", spec={
            "apiUrl": github.url, "appId": int(github.app_id),
            "installationId": github.installation_id},
        credential={"privateKey": github.private_key_pem})}, pipelines={"ci": document})


def test_a_refused_out_mints_no_token(github_api: FakeGitHub, tmp_path: Path) -> None:
    root = _github_repo(tmp_path, github_api)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert_refused(render(root, "ci", out), "not empty nor a previous connc bundle")
    assert github_api.minted == []  # no live token left behind for a bundle never written


def test_a_writer_refusal_after_minting_revokes_the_token(github_api: FakeGitHub,
                                                          tmp_path: Path) -> None:
    # Credential values are refused before anything is minted (one contract, checked right
    # after decrypting); two connections for one URL prefix only the git writer can see.
    root = _github_repo(tmp_path, github_api)
    add_connection(root, connection("same-host", spec={"url": "https://github.com"}))
    write(root, "pipelines.d/ci.yaml", pipeline("ci", "gh-app", "same-host"))
    out = tmp_path / "out"
    assert_refused(render(root, "ci", out), "both cover https://github.com")
    assert_nothing_written(out)
    assert [m.token for m in github_api.minted] == github_api.revoked != []


@pytest.mark.parametrize(("status", "phrase"), [
    (401, "rejected the JWT"), (404, "installation"), (422, "exceed"),
])
def test_github_refusals_leave_nothing(github_api: FakeGitHub, tmp_path: Path, status: int,
                                       phrase: str) -> None:
    root = _github_repo(tmp_path, github_api, repositories=["app"])
    github_api.fail_next(status)
    out = tmp_path / "out"
    proc = render(root, "ci", out)
    assert_refused(proc, "gh-app", phrase, f"HTTP {status}")
    assert_nothing_written(out)


def test_clean_removes_a_bundle_and_refuses_anything_else(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert render(repo, "small", out).returncode == 0
    proc = connc("clean", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not out.exists()
    assert "nothing to clean" in connc("clean", out, timeout=60).stderr

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep\n")
    proc = connc("clean", precious, timeout=60)
    assert_refused(proc, "not a connc bundle")
    assert (precious / "data.txt").read_text() == "keep\n"


def test_sourcing_env_sets_paths_only(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert render(repo, "ci", out).returncode == 0
    shown = sourced(out, ["env"], {"PATH": os.environ["PATH"]})
    assigned = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    added = {k: v for k, v in assigned.items() if k not in ("PATH", "PWD", "SHLVL", "_")}
    assert added.pop("GIT_TERMINAL_PROMPT") == "0"
    assert added.pop("MAVEN_ARGS") == f"--settings {out}/maven/settings.xml"
    assert added.pop("GIT_CONFIG_COUNT") == "1"
    assert added.pop("GIT_CONFIG_KEY_0") == "include.path"
    assert added.pop("GIT_SSH_COMMAND") == f"ssh -F {out}/git/ssh/config"
    assert added.pop("CONNC_BUNDLE") == str(out)
    assert all(value.startswith(f"{out}/") for value in added.values()), added
