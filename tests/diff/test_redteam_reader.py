"""`connc diff` reads a revision from git's objects in memory and reuses the judgements of
files both sides hold the same bytes of; render reads a checkout of the same commit. Tried as
an attacker with write access to a branch and no key: whatever diff reads of a revision must
be what render, given the same `--repo`, reads of its checkout.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from connc.repository import NAME_IN_DOUBT
from kit.build import REPO_ROOT, TEST_KEY_FILE, commit, git, sops_env, write
from kit.run import connc

SNEAK = {"apiVersion": "connc/v1", "kind": "Pipeline",
         "metadata": {"id": "sneak", "owner": "bob"}, "uses": [{"connection": "reg"}]}


def _diff(repo: Path) -> tuple[int, dict[str, Any]]:
    ran = connc("diff", "--repo", str(repo), "main~1", "main", "--format", "json", key=None,
                cwd=REPO_ROOT)
    assert ran.returncode in (0, 1), ran.stderr
    return ran.returncode, json.loads(ran.stdout)


def _doubtful(data: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    return [(row["change"], row["file"], row["at"], row["approvers"])
            for row in data["changes"]["integrity"]]


# ---------------------------------------------------------------------------- the prefix


def _swapped_for_a_symlink(estate: Path, tmp_path: Path) -> Path:
    """A work tree whose connection repository is `infra/`. One change adds `shadow/`, a copy
    of it with bob's pipeline `sneak` using his registry: nothing under `infra/` changes, so
    review of infra has nothing to say. The next makes `infra` a symlink to `shadow`."""
    outer = tmp_path / "mono"
    git(tmp_path, "init", "-q", "-b", "main", str(outer))
    shutil.copytree(estate, outer / "infra", ignore=shutil.ignore_patterns(".git"))
    commit(outer, "base")
    shutil.copytree(outer / "infra", outer / "shadow")
    write(outer, "shadow/pipelines.d/sneak.yaml", SNEAK)
    commit(outer, "a copy elsewhere")
    assert _diff(outer / "infra") == (0, _diff(outer / "infra")[1])
    assert not any(_diff(outer / "infra")[1]["changes"].values())
    shutil.rmtree(outer / "infra")
    os.symlink("shadow", outer / "infra")
    commit(outer, "infra is the copy")
    return outer


def test_the_repository_directory_swapped_for_a_symlink_fails_closed(
        estate: Path, tmp_path: Path) -> None:
    outer = _swapped_for_a_symlink(estate, tmp_path)
    # The harm it would do: render, given the `--repo` it always had, or started in `infra/`
    # (the shell keeps the path it went through in $PWD), would read the copy and hand bob's
    # registry password to a pipeline nobody reviewed. It refuses a repository reached
    # through a symlink inside the work tree, before anything is read or decrypted.
    out = tmp_path / "bundle"
    ran = connc("render", "sneak", "--repo", str(outer / "infra"), "--out", str(out),
                key=TEST_KEY_FILE, cwd=REPO_ROOT)
    assert ran.returncode == 2, ran.stderr
    assert "a symlink inside a git work tree" in ran.stderr and not out.exists()
    started_there = connc("render", "sneak", "--out", str(out), cwd=outer / "infra",
                          env={**sops_env(TEST_KEY_FILE), "PWD": str(outer / "infra")})
    assert started_there.returncode == 2, started_there.stderr
    assert "a symlink inside a git work tree" in started_there.stderr and not out.exists()
    # And diff started there reads the path as the shell names it, at each revision.
    diffed = connc("diff", "main~1", "main", "--format", "json", cwd=outer / "infra",
                   env={**sops_env(None), "PWD": str(outer / "infra")})
    assert diffed.returncode == 1, diffed.stderr
    assert ("a symlink", ".", "head", ["nobody"]) in _doubtful(json.loads(diffed.stdout))
    # Review, from a checkout of HEAD (where `infra` leads to the copy) and of BASE (where it
    # is the directory), must not pass it: the repository itself is in doubt at HEAD.
    base_checkout = tmp_path / "base-checkout"
    git(outer, "worktree", "add", "-q", "--detach", str(base_checkout), "main~1")
    for work_tree in (outer, base_checkout):
        code, data = _diff(work_tree / "infra")
        assert code == 1, data
        assert ("a symlink", ".", "head", ["nobody"]) in _doubtful(data), data
        ran = connc("approvals", "--repo", str(work_tree / "infra"), "main~1", "main",
                    "--approved-by", "alice,bob,carol,dave", key=None, cwd=REPO_ROOT)
        assert ran.returncode == 1, ran.stdout + ran.stderr


def test_a_case_variant_of_the_repository_directory_fails_closed(estate: Path,
                                                                 tmp_path: Path) -> None:
    # On a macOS or Windows runner the checkout writes `Infra/` into `infra/`, so render reads
    # bob's pipeline `sneak` there; git, and diff, keep them apart.
    outer = tmp_path / "mono"
    git(tmp_path, "init", "-q", "-b", "main", str(outer))
    shutil.copytree(estate, outer / "infra", ignore=shutil.ignore_patterns(".git"))
    commit(outer, "base")
    write(outer, "Infra/pipelines.d/sneak.yaml", SNEAK)
    commit(outer, "a pipeline beside the repository")
    code, data = _diff(outer / "infra")
    assert code == 1, data
    assert [(change, file, at) for change, file, at, _approvers in _doubtful(data)] == [
        (NAME_IN_DOUBT, "../Infra", "head")]
    ran = connc("approvals", "--repo", str(outer / "infra"), "main~1", "main",
                "--approved-by", "alice,bob,carol,dave", key=None, cwd=REPO_ROOT)
    assert ran.returncode == 1, ran.stdout + ran.stderr


def test_the_repository_directory_swapped_for_a_submodule_fails_closed(
        estate: Path, tmp_path: Path) -> None:
    # `actions/checkout` with `submodules: true` fills it from another repository.
    outer = tmp_path / "mono"
    git(tmp_path, "init", "-q", "-b", "main", str(outer))
    shutil.copytree(estate, outer / "infra", ignore=shutil.ignore_patterns(".git"))
    commit(outer, "base")
    git(outer, "rm", "-rq", "--cached", "infra")
    git(outer, "update-index", "--add", "--cacheinfo",
        f"160000,{git(estate, 'rev-parse', 'HEAD').strip()},infra")
    git(outer, "commit", "-qm", "infra is a submodule")
    code, data = _diff(outer / "infra")
    assert code == 1, data
    assert ("a submodule", ".", "head", ["nobody"]) in _doubtful(data), data
