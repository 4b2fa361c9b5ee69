"""The canary: no secret value leaves a rendered bundle's 0600 files, whatever happens.

Every credential field of every connection type carries a sentinel (PEM fields are real keys:
their base64 lines are the canaries). `connc render` runs in a fresh interpreter through
success and through each way it can fail, in every output format. The sentinel, and every
form render derives from a secret (base64 of `user:pass`, docker's auth, URL-encoding), must
be absent from stdout, stderr, manifest.json, the env file, git's helper command line and
$GITHUB_ENV. With `--format github`, the `::add-mask::` lines are the one place allowed.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kit.build import connection, key_env, make_repo, pipeline, sourced
from kit.keys import certificate_pem, ec_key, key_pem, new_recipient, ssh_key_pair
from kit.run import connc
from kit.servers.github_fake import FakeGitHub

SENTINEL = "CANARY-r3nd3r-9d41"
TOKEN = f"ghs_{SENTINEL}-minted"  # what the fake GitHub issues
FORMATS = ("shell", "json", "github")
MASK = "::add-mask::"


def canary(field: str) -> str:
    return f"{SENTINEL}-{field}"


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@dataclasses.dataclass
class CanaryRepo:
    root: Path
    github: FakeGitHub
    secrets: list[str]  # every value that must be masked (passwords, tokens, keys)
    forbidden: list[str]  # the secrets, usernames, and every derived form


def _connections(github: FakeGitHub) -> dict[str, dict[str, Any]]:
    """One connection per credential shape of every type."""
    ssh_key, _ = ssh_key_pair()
    _, host_key = ssh_key_pair()
    kube_key = ec_key()

    def user_pass(name: str) -> dict[str, str]:
        return {"username": canary(f"{name}-user"), "password": canary(f"{name}-pass") + " :/@?&"}

    def conn(conn_id: str, type_: str, credential: dict[str, str], **spec: Any) -> dict[str, Any]:
        return connection(conn_id, type_=type_, spec=spec, credential=credential)

    connections = {
        "gh-app": conn("gh-app", "github-app", {"privateKey": github.private_key_pem},
                       url="https://github.com/acme", apiUrl=github.url,
                       appId=int(github.app_id), installationId=github.installation_id),
        "gitlab": conn("gitlab", "gitlab", {"token": canary("gitlab-token"),
                                            "username": canary("gitlab-user")},
                       url="https://gitlab.com/acme"),
        "gitlab-sh": conn("gitlab-sh", "gitlab-self-hosted", {"token": canary("glsh-token")},
                          url="https://gitlab.example.com"),
        "codeup": conn("codeup", "codeup", user_pass("codeup"), url="https://codeup.aliyun.com/o"),
        "bb-token": conn("bb-token", "bitbucket", {"token": canary("bb-token")},
                         url="https://bitbucket.org/team-a"),
        "bb-user": conn("bb-user", "bitbucket", user_pass("bb"),
                        url="https://bitbucket.org/team-b"),
        "git-https": conn("git-https", "git", user_pass("git"), url="https://git.example.com/o"),
        "git-ssh": conn("git-ssh", "git", {"sshPrivateKey": ssh_key},
                        url="ssh://git@git.example.com/infra.git",
                        knownHosts=f"git.example.com {host_key}"),
        "registry": conn("registry", "container-registry", user_pass("registry"),
                         registry="registry.example.com"),
        "k8s-token": conn("k8s-token", "kubernetes", {"token": canary("kube-token")},
                          server="https://k8s.example.com"),
        "k8s-cert": conn("k8s-cert", "kubernetes", {
            "clientCertificateData": _b64(certificate_pem(kube_key, SENTINEL)),
            "clientKeyData": _b64(key_pem(kube_key))}, server="https://k8s.example.com"),
        "maven": conn("maven", "packages", user_pass("maven"), format="maven",
                      url="https://maven.example.com/r", repositoryId="releases"),
        "npm-token": conn("npm-token", "packages", {"token": canary("npm-token")}, format="npm",
                          url="https://npm.example.com/"),
        "npm-user": conn("npm-user", "packages", user_pass("npm"), format="npm",
                         url="https://npm2.example.com/"),
        "pypi": conn("pypi", "packages", user_pass("pypi"), format="pypi",
                     url="https://pypi.example.com/simple/"),
    }
    return connections


# Usernames that render supplies itself when a credential has none (not secrets, but each
# forms a base64 `user:secret` with the secret).
IMPLIED_USERS = ("oauth2", "x-token-auth", "x-access-token")
NOT_SECRET = frozenset({"username", "clientCertificateData"})  # forbidden, but not masked


def _forms(connections: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(secrets to mask, forbidden strings): each secret's lines, and what render could
    derive from any credential value."""
    secrets: set[str] = set()
    forbidden = {SENTINEL, quote(SENTINEL, safe="")}
    values = [(field, value, document["credential"].get("username"))
              for document in connections.values()
              for field, value in document["credential"].items()]
    for field, value, username in values + [("token", TOKEN, None)]:
        lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
        if field not in NOT_SECRET:
            secrets.update(lines)
        forbidden.update(lines)
        forbidden.update({quote(value, safe=""), _b64(value)})
        for user in filter(None, (username, *IMPLIED_USERS)):
            forbidden.update({_b64(f"{user}:{value}"),
                              f"{quote(user, safe='')}:{quote(value, safe='')}"})
    return sorted(secrets), sorted(forbidden)


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    """One fake GitHub for the module (the repository names its port); tests read deltas."""
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def canary_repo(github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory) -> CanaryRepo:
    connections = _connections(github)
    everything = list(connections)
    bad_value = connection("codeup-bad", type_="codeup",
                           spec={"url": "https://codeup.aliyun.com/x"},
                           credential={"username": canary("bad-user"),
                                       "password": f"{canary('line-one')}\n{canary('line-two')}"})
    bobs = connection("bobs", owner="bob", spec={"url": "https://gitlab.com/bob"},
                      credential={"token": canary("bobs-token")})
    locked = connection("locked", spec={"url": "https://gitlab.com/locked"},
                        credential={"token": canary("locked-token")})
    tampered = connection("tampered", spec={"url": "https://gitlab.com/tampered"},
                          credential={"token": canary("tampered-token")})
    maven_bad = connection("maven-bad", type_="packages", spec={
        "format": "maven", "url": "https://maven.example.com/bad", "repositoryId": "bad"},
        credential={"username": canary("mvn-user"), "password": "${" + canary("mvn") + "}"})
    extra = {"codeup-bad": bad_value, "bobs": bobs, "locked": locked, "tampered": tampered,
             "maven-bad": maven_bad}
    all_uses = pipeline("all", *everything)
    all_uses["uses"][0].update(repositories=["app"], permissions={"contents": "read"},
                               refresh=True)
    root = make_repo(tmp_path_factory.mktemp("canary") / "repo",
                     connections={**connections, **extra}, locked={"locked": new_recipient()},
                     pipelines={
                          "all": all_uses,
                          "denied": pipeline("denied", *everything[1:], "bobs"),
                          "bad-value": pipeline("bad-value", *everything[1:], "codeup-bad"),
                          "locked": pipeline("locked", *everything[1:], "locked"),
                          "tampered": pipeline("tampered", *everything[1:], "tampered"),
                          "maven-bad": pipeline("maven-bad", *everything, "maven-bad"),
                     })
    _tamper(root / "connections.d/tampered.sops.yaml")
    secrets, _ = _forms(connections)  # those of pipeline `all`, which must all be masked
    _, forbidden = _forms({**connections, **extra})
    return CanaryRepo(root, github, secrets, forbidden)


def _tamper(path: Path) -> None:
    """Flip one character of the encrypted token: still ENC[...] (keyless checks pass), but
    its authentication tag no longer matches, so sops fails to decrypt it."""
    text = path.read_text()
    match = re.search(r"ENC\[AES256_GCM,data:([A-Za-z0-9+/]{4})", text)
    assert match
    flipped = "".join("B" if c == "A" else "A" for c in match.group(1))
    path.write_text(text[:match.start(1)] + flipped + text[match.end(1):])


@dataclasses.dataclass
class Run:
    format: str
    out: Path
    github_env: Path
    proc: subprocess.CompletedProcess[str]


def _render(repo: CanaryRepo, pipeline_id: str, workdir: Path, fmt: str,
            before: Callable[[Path], None] | None = None) -> Run:
    out, github_env = workdir / f"out-{fmt}", workdir / f"github-env-{fmt}"
    github_env.write_text("")
    if before is not None:
        before(out)
    env = key_env(GITHUB_ENV=str(github_env), NO_PROXY="127.0.0.1")
    proc = connc("render", "--pipeline", pipeline_id, "--repo", repo.root, "--out", out,
                 "--format", fmt, env=env, timeout=60)
    return Run(fmt, out, github_env, proc)


def _render_all_formats(repo: CanaryRepo, pipeline_id: str, workdir: Path, *,
                        prepare: Callable[[Path], None] | None = None) -> list[Run]:
    """One render per format, in parallel (each to its own OUT and $GITHUB_ENV)."""
    with ThreadPoolExecutor(max_workers=len(FORMATS)) as pool:
        return list(pool.map(lambda fmt: _render(repo, pipeline_id, workdir, fmt, prepare),
                             FORMATS))


def assert_clean(text: str, where: str, forbidden: list[str]) -> None:
    for form in forbidden:
        assert form not in text, f"{where} leaks a secret (as {form!r})"


def _printed(run: Run) -> str:
    """Everything printed except the mask commands, which github format prints by design."""
    lines = run.proc.stdout.splitlines()
    if run.format == "github":
        lines = [line for line in lines if not line.startswith(MASK)]
    return "\n".join(lines) + "\n" + run.proc.stderr


# --- success -------------------------------------------------------------------------------


def test_a_successful_render_prints_no_secret(canary_repo: CanaryRepo, tmp_path: Path) -> None:
    for _ in FORMATS:
        canary_repo.github.queue_token(TOKEN)
    minted_before = len(canary_repo.github.minted)
    runs = _render_all_formats(canary_repo, "all", tmp_path)
    assert [m.token for m in canary_repo.github.minted[minted_before:]] == [TOKEN] * 3
    forbidden = canary_repo.forbidden
    for run in runs:
        assert run.proc.returncode == 0, run.proc.stderr
        assert_clean(_printed(run), f"{run.format}: output", forbidden)
        for name in ("manifest.json", "env", "git/config"):
            assert_clean((run.out / name).read_text(), f"{run.format}: {name}", forbidden)
        assert_clean(run.github_env.read_text(), f"{run.format}: $GITHUB_ENV", forbidden)
        assert_clean(_helper_trace(run.out, tmp_path), "git's helper command lines", forbidden)
        assert_clean(_sourced_environment(run.out), "the environment after `. env`", forbidden)
    github_run = runs[FORMATS.index("github")]
    masks = {line.removeprefix(MASK) for line in github_run.proc.stdout.splitlines()
             if line.startswith(MASK)}
    assert set(canary_repo.secrets) - masks == set()
    # the bundle itself does hold them (a bundle without them would pass the checks above)
    assert canary("gitlab-token") in (runs[0].out / "git/askpass").read_text()
    assert TOKEN in (runs[0].out / "github/gh-app.json").read_text()
    for run in runs:
        cleaned = connc("clean", run.out, env=key_env(NO_PROXY="127.0.0.1"), timeout=60)
        assert cleaned.returncode == 0
        assert_clean(cleaned.stdout + cleaned.stderr, "connc clean", forbidden)


def _helper_trace(out: Path, tmp_path: Path) -> str:
    """GIT_TRACE of `git credential fill`: every command git runs, with its argv."""
    home = tmp_path / "git-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TRACE": "2", "NO_PROXY": "127.0.0.1"}
    trace = ""
    for url in ("https://github.com/acme/app.git", "https://git.example.com/o/r.git"):
        host, path = url.removeprefix("https://").split("/", 1)
        proc = sourced(out, ["git", "credential", "fill"], env,
                       stdin=f"protocol=https\nhost={host}\npath={path}\n\n")
        assert proc.returncode == 0, proc.stderr
        assert "password=" in proc.stdout  # the helper answered (on stdout, to git)
        trace += proc.stderr
    return trace


def _sourced_environment(out: Path) -> str:
    return sourced(out, ["env"], {"PATH": "/usr/bin:/bin"}).stdout


# --- failures ------------------------------------------------------------------------------


def _non_empty(out: Path) -> None:
    out.mkdir(exist_ok=True)
    (out / "notes.txt").write_text("not a bundle\n")


@pytest.mark.parametrize(("pipeline_id", "phrase"), [
    ("denied", "CONNC301"),
    ("bad-value", "contains a newline"),
    ("locked", "no usable key"),
    ("tampered", "cannot decrypt"),
    ("maven-bad", "Maven would interpolate"),
])
def test_a_refused_render_prints_no_secret(canary_repo: CanaryRepo, tmp_path: Path,
                                           pipeline_id: str, phrase: str) -> None:
    minted_before = len(canary_repo.github.minted)
    for run in _render_all_formats(canary_repo, pipeline_id, tmp_path):
        # No key for a file is the environment's fault (exit 2); the others are refusals.
        assert run.proc.returncode == (2 if pipeline_id == "locked" else 1), run.proc.stderr
        assert phrase in run.proc.stderr
        assert_clean(run.proc.stdout + run.proc.stderr, f"{run.format}: output",
                     canary_repo.forbidden)
        assert run.proc.stdout == "" and run.github_env.read_text() == ""
        assert not run.out.exists()
    minted = [m.token for m in canary_repo.github.minted[minted_before:]]
    assert set(minted) <= set(canary_repo.github.revoked)  # maven-bad minted, then revoked


@pytest.mark.parametrize(("name", "change", "phrase"), [
    # A file in doubt is refused with validate's words, before anything is decrypted.
    ("gitattributes", lambda root: (root / ".gitattributes").write_text(
        "connections.d/* working-tree-encoding=windows-1252\n"), "CONNC017"),
    ("name", lambda root: shutil.copy(root / "pipelines.d/all.yaml", root / "pipelines.d/ALL.yaml"),
     "CONNC016"),
    ("nel", lambda root: (root / "pipelines.d/all.yaml").write_text(
        (root / "pipelines.d/all.yaml").read_text().replace("\n", f"  # {SENTINEL}\u0085\n", 1)),
     "CONNC015"),
])
def test_a_checkout_in_doubt_prints_no_secret(canary_repo: CanaryRepo, tmp_path: Path,
                                              name: str, change: Callable[[Path], object],
                                              phrase: str) -> None:
    root = Path(shutil.copytree(canary_repo.root, tmp_path / name))
    change(root)
    repo = dataclasses.replace(canary_repo, root=root)
    for run in _render_all_formats(repo, "all", tmp_path):
        assert run.proc.returncode == 1, run.proc.stderr
        assert phrase in run.proc.stderr
        assert_clean(run.proc.stdout + run.proc.stderr, f"{run.format}: output",
                     [*canary_repo.forbidden, SENTINEL])
        assert run.proc.stdout == "" and run.github_env.read_text() == ""
        assert not run.out.exists()


def test_a_refused_out_prints_no_secret(canary_repo: CanaryRepo, tmp_path: Path) -> None:
    for run in _render_all_formats(canary_repo, "all", tmp_path, prepare=_non_empty):
        assert run.proc.returncode == 1
        assert "not empty nor a previous connc bundle" in run.proc.stderr
        assert_clean(run.proc.stdout + run.proc.stderr, f"{run.format}: output",
                     canary_repo.forbidden)
        assert sorted(p.name for p in run.out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(("status", "phrase"), [
    (401, "rejected the JWT"), (404, "not found"), (422, "exceed"),
])
def test_a_github_refusal_prints_no_secret(canary_repo: CanaryRepo, tmp_path: Path,
                                           status: int, phrase: str) -> None:
    github = canary_repo.github
    # An answer that echoes key material (as a misbehaving proxy might) must not pass through.
    key_line = github.private_key_pem.splitlines()[1]
    body = {"message": f"refused; you sent {key_line}", "documentation_url": "https://x"}
    # One failure per format: each render makes one request, and none is retried.
    github.fail_next(status, body=body, times=len(FORMATS))
    runs = _render_all_formats(canary_repo, "all", tmp_path)
    for run in runs:
        assert run.proc.returncode == 1, run.proc.stderr
        assert phrase in run.proc.stderr and f"HTTP {status}" in run.proc.stderr
        assert_clean(run.proc.stdout + run.proc.stderr, f"{run.format}: output",
                     canary_repo.forbidden)
        assert not run.out.exists() and run.github_env.read_text() == ""
