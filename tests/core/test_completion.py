"""Shell completion as README.md documents it: its line evaluated by a real bash, then the
completion function asked what completes, in a connection repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit.build import REPO_ROOT, connection, make_repo, pipeline, sops_env


def documented_line() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Shell completion and pre-commit"):]
    block = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block is not None
    [line] = block.group(1).splitlines()
    return line.split("#")[0].strip()


def completions(cwd: Path, *words: str) -> list[str]:
    """What bash offers after `connc WORDS...` (the last word being completed)."""
    script = (f"{documented_line()}\n"
              f"COMP_WORDS=(connc {' '.join(repr(w) for w in words)}); "
              f"COMP_CWORD={len(words)}; _connc_completion connc; "
              'printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**sops_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = subprocess.run(["bash", "--norc", "-c", script], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    return [line for line in ran.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("completion") / "repo", connections={
        "gitlab-main": connection("gitlab-main"), "gitlab-docs": connection("gitlab-docs"),
        "registry": connection("registry")}, pipelines={"build": pipeline("build", "registry")})


@pytest.mark.parametrize(("words", "expected"), [
    (("ne",), ["new"]),
    (("secret", "u"), ["unset"]),
    (("new", "k"), ["kubernetes"]),
    (("new", "container-registry", "--vis"), ["--visibility"]),
    (("secret", "set", "gitlab-"), ["gitlab-docs", "gitlab-main"]),
    (("seal", "reg"), ["registry"]),
    (("render", "b"), ["build"]),
])
def test_bash_completes(repo: Path, words: tuple[str, ...], expected: list[str]) -> None:
    assert sorted(completions(repo / "connections.d", *words)) == expected
