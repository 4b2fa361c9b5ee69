"""`connc init`: a new connection repository that validates clean, never over an existing one,
with its key outside the repository, and workflows and a pre-commit hook that really run."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connc.author.init import init
from connc.errors import UsageError
from connc.validate.run import validate
from kit.build import REPO_ROOT, TEST_RECIPIENT, clone_of_working_tree, git
from kit.keys import new_age_key
from kit.run import connc
from kit.workflows import assert_github_schema, assert_zizmor_finds_nothing, venv_tool


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: "changes nothing" compares two of these."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file() and ".git" not in path.parts}


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """An empty git repository and the path of a key file outside it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    return repo, tmp_path / "keys" / "age.txt"


def test_init_writes_a_repository_that_validates_clean(fresh: tuple[Path, Path]) -> None:
    repo, key = fresh
    ran = connc("init", str(repo), "--owner", "alice", "--new-key", str(key),
                "--github", "alice-gh", key=None, cwd=REPO_ROOT)
    assert ran.returncode == 0, ran.stderr
    for name in (".sops.yaml", "members.yaml", "connc.yaml", "connections.d", "pipelines.d",
                 ".github/workflows/validate.yml", ".github/workflows/access-review.yml",
                 ".gitignore"):
        assert (repo / name).exists(), name
    config = yaml.safe_load((repo / "connc.yaml").read_text())
    assert config["requireSeals"] is True and config["admins"] == ["alice"]
    members = yaml.safe_load((repo / "members.yaml").read_text())
    public = key.read_text().splitlines()[1].removeprefix("# public key: ")
    assert members["users"]["alice"] == {"github": "alice-gh", "recipients": [public]}
    assert public in (repo / ".sops.yaml").read_text()
    assert validate(repo).findings == []
    strict = connc("validate", "--strict", cwd=repo, key=None)
    assert strict.returncode == 0, strict.stdout + strict.stderr


def test_the_new_key_is_private_outside_the_repository_and_never_printed(
        fresh: tuple[Path, Path]) -> None:
    repo, key = fresh
    ran = connc("init", str(repo), "--owner", "alice", "--new-key", str(key), key=None,
                cwd=REPO_ROOT)
    assert ran.returncode == 0, ran.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_text().splitlines()[-1]
    assert secret.startswith("AGE-SECRET-KEY-1")
    assert secret not in ran.stdout + ran.stderr
    assert str(key) in ran.stderr  # where it is, so the user can back it up
    assert not any(secret.encode() in data for data in tree(repo).values())
    # The key works: sops encrypts to its public half and decrypts with it.
    new = connc("new", "gitlab", "first", cwd=repo, key=key)
    assert new.returncode == 0, new.stderr


def test_gitignore_keeps_keys_and_bundles_out(fresh: tuple[Path, Path]) -> None:
    repo, key = fresh
    (repo / ".gitignore").write_text("node_modules/")  # the user's own, no final newline
    init(repo, owner="alice", recipients=[], new_key=key)
    text = (repo / ".gitignore").read_text()
    assert text.startswith("node_modules/\n")
    for path in ("age.txt.age", "ci.agekey", "my-age-key.txt", "keys.txt", ".connc/x",
                 "connc-bundle-123/env.sh"):
        git(repo, "check-ignore", "-q", path)  # fails unless ignored
    init_again = text
    (repo / "members.yaml").unlink()  # not a repository any more: init may run again...
    for name in (".sops.yaml", "connc.yaml", "connections.d/.gitkeep", "pipelines.d/.gitkeep",
                 ".github/workflows/validate.yml", ".github/workflows/access-review.yml"):
        (repo / name).unlink()
    (repo / "connections.d").rmdir()
    (repo / "pipelines.d").rmdir()
    init(repo, owner="alice", recipients=[TEST_RECIPIENT], new_key=None)
    assert (repo / ".gitignore").read_text() == init_again  # ...and adds its entries once


@pytest.mark.parametrize("existing", ["members.yaml", "connc.yaml", ".sops.yaml",
                                      "connections.d", ".github/workflows/validate.yml"])
def test_init_changes_nothing_in_an_existing_repository(fresh: tuple[Path, Path],
                                                        existing: str) -> None:
    repo, key = fresh
    target = repo / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    if existing.endswith("d"):
        target.mkdir()
        (target / "kept.sops.yaml").write_text("mine\n")
    else:
        target.write_text("mine\n")
    (repo / ".gitignore").write_text("mine\n")
    before = tree(repo)
    ran = connc("init", str(repo), "--owner", "alice", "--new-key", str(key), key=None,
                cwd=REPO_ROOT)
    assert ran.returncode == 2, ran.stderr
    assert existing in ran.stderr and "changes nothing" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert tree(repo) == before
    assert not key.exists()


def test_init_never_overwrites_a_key(fresh: tuple[Path, Path]) -> None:
    repo, key = fresh
    key.parent.mkdir()
    key.write_text("AGE-SECRET-KEY-1KEEPME\n")
    with pytest.raises(UsageError, match="never overwrites a key"):
        init(repo, owner="alice", recipients=[], new_key=key)
    assert key.read_text() == "AGE-SECRET-KEY-1KEEPME\n"
    assert tree(repo) == {}


def test_init_refuses_a_key_inside_the_repository(fresh: tuple[Path, Path]) -> None:
    repo, _key = fresh
    with pytest.raises(UsageError, match="inside the repository"):
        init(repo, owner="alice", recipients=[], new_key=repo / "secrets" / "age.txt")
    assert tree(repo) == {}


@pytest.mark.parametrize(("owner", "recipients", "new_key", "message"), [
    ("alice bob", [TEST_RECIPIENT], False, "is not a user name"),
    ("alice", [], False, "one of the two"),
    ("alice", [TEST_RECIPIENT], True, "one of the two"),
    ("alice", ["hunter2-not-a-key"], False, "is not a public key"),
    ("alice", ["AGE-SECRET-KEY-1HUNTER2-NOT-A-KEY"], False, "this is a secret one"),
    # sops would refuse it at the first `connc new`, with a message about the sops block.
    ("alice", ["age1" + "q" * 58], False, "is not a valid age public key"),
    ("alice", [TEST_RECIPIENT[:-1]], False, "is not a valid age public key"),
])
def test_init_refuses_bad_arguments(tmp_path: Path, owner: str, recipients: list[str],
                                    new_key: bool, message: str) -> None:
    repo = tmp_path / "repo"
    with pytest.raises(UsageError, match=message) as refused:
        init(repo, owner=owner, recipients=recipients,
             new_key=tmp_path / "age.txt" if new_key else None)
    assert "NOT-A-KEY" not in str(refused.value).upper()  # a pasted value is not echoed whole
    assert not repo.exists()


def test_init_says_how_connc_finds_the_new_key(tmp_path: Path) -> None:
    # At connc's default key file, connc finds it with nothing set: the quick start's way.
    default = Path.home() / ".config" / "connc" / "age.txt"
    said = "\n".join(init(tmp_path / "a", owner="alice", recipients=[],
                          new_key=default).messages())
    assert "connc finds it there, its default key file" in said and "export" not in said
    elsewhere = tmp_path / "keys" / "age.txt"
    said = "\n".join(init(tmp_path / "b", owner="alice", recipients=[],
                          new_key=elsewhere).messages())
    assert f"export SOPS_AGE_KEY_FILE={elsewhere}" in said


def test_init_with_existing_recipients(tmp_path: Path) -> None:
    _key, public = new_age_key(tmp_path)
    repo = tmp_path / "repo"
    done = init(repo, owner="alice", recipients=[public], new_key=None)
    assert done.key_file is None and done.recipient == public
    assert validate(repo).findings == []


def test_requirement_cannot_inject_into_the_workflows(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a pip requirement"):
        init(tmp_path / "repo", owner="alice", recipients=[TEST_RECIPIENT], new_key=None,
             connc_requirement="connc\n  run: curl evil")


# --- the written workflows, linted as the shipped ones are ------------------------------------


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("init") / "repo"
    init(repo, owner="alice", recipients=[TEST_RECIPIENT], new_key=None, github="alice",
         connc_requirement="connc @ git+https://example.invalid/connc@v1")
    return repo


def test_written_workflows_pass_zizmor(initialised: Path) -> None:
    assert_zizmor_finds_nothing(initialised, ".github/workflows")


@pytest.mark.parametrize("workflow", ["validate.yml", "access-review.yml"])
def test_written_workflows_match_githubs_schema(initialised: Path, workflow: str) -> None:
    path = initialised / ".github" / "workflows" / workflow
    assert_github_schema("vendor.github-workflows", path)
    text = path.read_text()
    assert '"connc @ git+https://example.invalid/connc@v1"' in text  # quoted where it lands
    assert "@{connc}" not in text


# --- the pre-commit hook, installed by pre-commit itself from a local clone ------------------


def documented_pre_commit_config() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Shell completion and pre-commit"):]
    block = re.search(r"^```yaml\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block is not None
    return block.group(1)


def test_the_documented_pre_commit_config_runs_connc_validate(tmp_path: Path) -> None:
    """README's `.pre-commit-config.yaml`, pointed at a clone of this working tree at its
    commit, run by pre-commit itself: the hook installs and fails a broken repository."""
    hook_repo = clone_of_working_tree(tmp_path / "connc")
    commit = git(hook_repo, "rev-parse", "HEAD").strip()
    config = documented_pre_commit_config()
    assert "https://github.com/OWNER/connc" in config and "rev: COMMIT" in config
    repo = tmp_path / "repo"
    init(repo, owner="alice", recipients=[TEST_RECIPIENT], new_key=None)
    (repo / ".pre-commit-config.yaml").write_text(
        config.replace("https://github.com/OWNER/connc", str(hook_repo))
        .replace("COMMIT", commit))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOPS_")}
    env.update(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), PRE_COMMIT_COLOR="never",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([venv_tool("pre-commit"), "run", "--all-files"], cwd=repo,
                              env=env, capture_output=True, text=True, timeout=240, check=False)

    clean = run()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "connc validate" in clean.stdout and "Passed" in clean.stdout
    # A pipeline using a connection that does not exist: the hook fails the commit.
    (repo / "pipelines.d" / "deploy.yaml").write_text(
        "apiVersion: connc/v1\nkind: Pipeline\nmetadata: {id: deploy, owner: alice}\n"
        "uses: [{connection: nowhere}]\n")
    git(repo, "add", "-A")
    broken = run()
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "Failed" in broken.stdout and "nowhere" in broken.stdout
