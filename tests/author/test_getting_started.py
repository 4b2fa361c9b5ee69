"""docs/getting-started.md is run as written, step by step, in an empty directory; and so are
the CI examples it points to (docs/ci/runner.sh, docs/ci/gitlab-ci.yml)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kit.build import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "getting-started.md"
BIN = Path(sys.executable).parent
TOKEN = "glpat-getting-started-canary"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def guide_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SOPS_", "GIT_", "CONNC_"))}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env['PATH']}", GIT_TOKEN=TOKEN,
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
               SOPS_DISABLE_VERSION_CHECK="1")
    return env


def run_guide(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    home = tmp_path / "home"
    home.mkdir()
    script = "set -euo pipefail\n" + "\n".join(blocks(GUIDE.read_text(), "sh"))
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=guide_env(home),
                         capture_output=True, text=True, timeout=240, check=False)
    return ran, home


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str],
                                                             Path]:
    with pytest.MonkeyPatch.context():
        return run_guide(tmp_path_factory.mktemp("guide"))


def test_the_guide_runs_as_written(guide: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    ran, home = guide
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "username=ci-bot" in ran.stdout  # git got the credential from the bundle
    assert TOKEN not in ran.stdout + ran.stderr
    key = home / ".config" / "connc" / "age.txt"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text().splitlines()[-1] not in ran.stdout + ran.stderr  # never printed
    assert "connc: removed" in ran.stderr


def test_the_guide_has_steps_for_every_part() -> None:
    text = GUIDE.read_text()
    steps = "\n".join(blocks(text, "sh"))
    for command in ("connc init", "connc new", "connc secret set", "connc validate",
                    "connc render", "connc clean"):
        assert command in steps


def _prepared(guide: tuple[subprocess.CompletedProcess[str], Path],
              tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The guide's repository, its bundle cleaned: a runner's starting point. A copy of the
    guide's run (its repository and $HOME, which hold no absolute path), for each test."""
    ran, guide_home = guide
    assert ran.returncode == 0, ran.stderr
    home = Path(shutil.copytree(guide_home, tmp_path / "home", symlinks=True))
    shutil.copytree(guide_home.parent / "connections", tmp_path / "connections", symlinks=True)
    env = guide_env(home)
    env["SOPS_AGE_KEY_FILE"] = str(home / ".config" / "connc" / "age.txt")
    return tmp_path / "connections", env


def test_the_shell_runner_example(guide: tuple[subprocess.CompletedProcess[str], Path],
                                  tmp_path: Path) -> None:
    repo, env = _prepared(guide, tmp_path)
    ran = subprocess.run(["bash", str(REPO_ROOT / "docs" / "ci" / "runner.sh")], cwd=repo,
                         env={**env, "PIPELINE": "build"}, capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "connc: removed" in ran.stderr and TOKEN not in ran.stdout + ran.stderr
    # A failing build still cleans up: the trap runs on exit.
    failing = (REPO_ROOT / "docs" / "ci" / "runner.sh").read_text().replace(
        "build\n", "build\nfalse\n")
    ran = subprocess.run(["bash", "-c", failing], cwd=repo, env={**env, "PIPELINE": "build"},
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode != 0 and "connc: removed" in ran.stderr


def test_the_gitlab_example(guide: tuple[subprocess.CompletedProcess[str], Path],
                            tmp_path: Path) -> None:
    ci = REPO_ROOT / "docs" / "ci" / "gitlab-ci.yml"
    schema = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                             "vendor.gitlab-ci", str(ci)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    repo, env = _prepared(guide, tmp_path)
    job = yaml.safe_load(ci.read_text())["deploy"]
    gitlab = {**env, "CI_PROJECT_DIR": str(repo), "CONNC_AGE_KEY": env.pop("SOPS_AGE_KEY_FILE"),
              **{k: str(v) for k, v in job["variables"].items()},
              "PIPELINE": "build"}  # the guide's pipeline, in place of the example's
    # GitLab runs script in one shell and after_script in another (also when script failed);
    # before_script installs connc, which the test's PATH has already.
    script = "set -eo pipefail\n" + "\n".join(job["script"])
    ran = subprocess.run(["bash", "-c", script], cwd=repo, env=gitlab, capture_output=True,
                         text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "connc-bundle" / "env").exists()
    after = subprocess.run(["bash", "-c", "\n".join(job["after_script"])], cwd=repo, env=gitlab,
                           capture_output=True, text=True, timeout=120, check=False)
    assert after.returncode == 0 and not (tmp_path / "connc-bundle").exists()
