"""The repository is found from any subdirectory, as git finds its own: every command walks
up to the first directory with connc's layout, never past the top of the git repository it
started in; `--repo DIR` names the root itself and wins."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from connc.errors import UsageError
from connc.repository import find_root
from kit import run
from kit.build import connection, git, make_repo, pipeline


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "app" / "infra" / "connections",
                     # A closed loopback port: `connc check` below reaches no network.
                     connections={"gl": connection("gl", spec={"url": "http://127.0.0.1:9/"})},
                     pipelines={"ci": pipeline("ci", "gl")})
    git(tmp_path / "app", "init", "-q")
    (root / "connections.d" / "notes").mkdir()
    return root


def connc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run.connc(*args, cwd=cwd)


def test_every_command_finds_the_root_from_a_subdirectory(repo: Path, tmp_path: Path) -> None:
    below = repo / "connections.d" / "notes"
    for args in (["validate", "--strict"], ["access"], ["seal", "gl", "--dry-run"],
                 ["render", "ci", "--out", str(tmp_path / "bundle")],
                 ["check", "--format", "json"]):
        ran = connc(below, *args)
        assert "not a connection repository" not in ran.stderr, args
        assert "not in a connection repository" not in ran.stderr, args
        assert ran.returncode in (0, 1), (args, ran.stderr)  # check: nothing listens on :9
    new = connc(below, "new", "gitlab", "second", "--owner", "alice")
    assert new.returncode == 0, new.stderr
    assert (repo / "connections.d" / "second.sops.yaml").is_file()
    assert not (below / "connections.d").exists()


def test_the_search_stops_at_the_top_of_the_git_repository(repo: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    elsewhere = tmp_path / "app" / "src"
    elsewhere.mkdir()
    (tmp_path / "members.yaml").write_text("not this one\n")  # above the git repository
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UsageError, match=r"up to .*/app \(the top of its git repository\)"):
        find_root()
    ran = connc(elsewhere, "validate")
    assert ran.returncode == 2 and "connc init" in ran.stderr and "--repo" in ran.stderr
    monkeypatch.chdir(repo / "connections.d")
    assert find_root() == repo.resolve()


def test_repo_names_the_root_and_wins(repo: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_repo(tmp_path / "other")
    monkeypatch.chdir(repo / "connections.d")
    assert find_root(other) == other.resolve()
    # --repo is the root itself: a subdirectory of a repository is not searched upwards.
    with pytest.raises(UsageError, match="is not a connection repository"):
        find_root(repo / "connections.d" / "notes")
    ran = connc(repo, "access", "--repo", str(other))
    assert ran.returncode == 0 and "gl" not in ran.stdout
