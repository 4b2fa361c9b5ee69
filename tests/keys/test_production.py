"""docs/production.md is run as written, step by step, in an empty directory: three people,
two runners with their own keys, a separate application repository, a runner key rotated and
someone leaving — with the real sops and real age keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from keykit import recipients_of

from kit.build import REPO_ROOT
from kit.workflows import assert_github_schema, assert_zizmor_finds_nothing

GUIDE = REPO_ROOT / "docs" / "production.md"
BIN = Path(sys.executable).parent
SECRETS = {name: f"{name.lower().replace('_', '-')}-production-canary"
           for name in ("WEB_GIT_TOKEN", "REGISTRY_PASSWORD", "GITLAB_TOKEN", "WEB_GIT_TOKEN_2",
                        "REGISTRY_PASSWORD_2", "GITLAB_TOKEN_2")}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str],
                                                             Path]:
    where = tmp_path_factory.mktemp("production")
    home = where / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SOPS_", "GIT_", "CONNC_"))}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env['PATH']}",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
               GIT_AUTHOR_NAME="alice", GIT_AUTHOR_EMAIL="alice@example.com",
               GIT_COMMITTER_NAME="alice", GIT_COMMITTER_EMAIL="alice@example.com",
               SOPS_DISABLE_VERSION_CHECK="1", **SECRETS)
    script = "set -euo pipefail\n" + "\n".join(blocks("sh"))
    ran = subprocess.run(["bash", "-c", script], cwd=where, env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    return ran, where


def test_the_guide_runs_as_written(guide: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    ran, _where = guide
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "username=web-ci" in ran.stdout  # the app's job got git's credential from the bundle
    assert "connc: removed" in ran.stderr
    for value in SECRETS.values():
        assert value not in ran.stdout + ran.stderr


def test_each_step_says_what_the_guide_says(
        guide: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    out = guide[0].stdout
    # Before the first sync: the renders would fail, keyless.
    assert "error CONNC414 `connc render web-deploy` will fail" in out
    assert "error CONNC414 `connc render api-release` will fail" in out
    # The rotation: the old runner key is removed from what it could read, named for rotation.
    assert re.search(r"rotate the credentials of `registry`, `web-git`", out)
    # carol leaving: her key is found outside the scope, removed, her credential named.
    assert "error CONNC408" in out and "(declared by no principal)" in out
    assert "rotate the credential of `gitlab-tools`: a key removed from it could read it" in out
    assert "gitlab-tools: would seal; changed since the last seal: owner (now 'bob')" in out


def test_the_keys_end_where_the_guide_says(
        guide: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    where = guide[1]
    repo = where / "connections"
    public = {name: (where / "keys" / f"{name}.txt").read_text().split("public key: ")[1]
              .split()[0] for name in ("alice", "bob", "carol", "runner-api-release",
                                       "runner-web-deploy", "runner-web-deploy-2")}
    keys = {name: f"age:{key}" for name, key in public.items()}
    assert recipients_of(repo, "connections.d/web-git.sops.yaml") == {
        keys["alice"], keys["bob"], keys["runner-web-deploy-2"]}
    assert recipients_of(repo, "connections.d/registry.sops.yaml") == {
        keys["alice"], keys["runner-api-release"], keys["runner-web-deploy-2"]}
    assert recipients_of(repo, "connections.d/gitlab-tools.sops.yaml") == {
        keys["alice"], keys["bob"], keys["runner-api-release"]}
    # The separate application repository's checkout is the committed state.
    assert (where / "web-app" / "connections" / "pipelines.d" / "web-deploy.yaml").exists()
    assert not list(repo.glob(".connc/keys-sync-*"))


def test_the_guides_workflow_is_valid_and_safe(tmp_path: Path) -> None:
    (workflow,) = blocks("yaml")
    path = tmp_path / ".github" / "workflows" / "deploy.yml"
    path.parent.mkdir(parents=True)
    path.write_text(workflow)
    assert_github_schema("vendor.github-workflows", path)
    assert_zizmor_finds_nothing(tmp_path, ".github/workflows")
