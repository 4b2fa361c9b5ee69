"""`connc keys` (keyless): who holds a key to each connection, who needs one, what is outside
its scope, and what a sync would change; and `connc init --runner-key`, `connc keys new`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keykit import SENTINEL

from kit.build import REPO_ROOT, TEST_RECIPIENT
from kit.run import connc


def keys(repo: Path, *args: str) -> Any:
    ran = connc("keys", "--repo", str(repo), *args, key=None, cwd=REPO_ROOT)
    assert ran.returncode == 0, ran.stderr
    assert SENTINEL not in ran.stdout + ran.stderr
    return ran


def test_json_names_holders_needs_and_strays(repo: Path, estate: dict[str, Any]) -> None:
    rows = {r["id"]: r for r in json.loads(keys(repo, "--format", "json").stdout)["connections"]}
    deploy, ops, carol = estate["deploy"][1], estate["ops"][1], estate["carol"]
    assert rows["db"]["holds"] == [{"recipient": f"age:{TEST_RECIPIENT}",
                                    "holders": ["admin", "user:alice"], "inScope": True}]
    assert [n["principal"] for n in rows["db"]["needs"]] == ["pipeline:deploy"]
    assert "its render will fail" in rows["db"]["needs"][0]["reason"]
    assert rows["db"]["sync"] == {"add": [f"age:{deploy}"], "remove": []}
    assert rows["registry"]["sync"]["add"] == sorted([f"age:{deploy}", f"age:{ops}"])
    assert rows["spare"]["outsideScope"] == [f"age:{carol}"]
    assert {"recipient": f"age:{carol}", "holders": ["user:carol"], "inScope": False} \
        in rows["spare"]["holds"]
    assert rows["spare"]["sync"] == {"add": [], "remove": [f"age:{carol}"]}


def test_the_table_after_a_sync_shows_no_need(repo: Path) -> None:
    before = keys(repo).stdout
    assert "needs a key   pipeline:deploy" in before and "<- outside its scope" in before
    assert connc("keys", "sync", "--all", "--repo", str(repo),
                 key=Path(__file__).parent / "test-age-key.txt", cwd=REPO_ROOT).returncode == 0
    after = keys(repo).stdout
    assert "needs a key" not in after and "outside its scope" not in after
    assert "keys sync" not in after


def test_one_pipeline_or_one_connection(repo: Path) -> None:
    only = json.loads(keys(repo, "--pipeline", "build", "--format", "json").stdout)
    assert [r["id"] for r in only["connections"]] == ["registry", "shared"]
    one = json.loads(keys(repo, "--connection", "spare", "--format", "json").stdout)
    assert [r["id"] for r in one["connections"]] == ["spare"]
    for args in (["--connection", "sparse"], ["--pipeline", "Bad_Id"],
                 ["--connection", "db", "--pipeline", "build"]):
        ran = connc("keys", "--repo", str(repo), *args, key=None, cwd=REPO_ROOT)
        assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert "did you mean `spare`" in connc("keys", "--repo", str(repo), "--connection",
                                           "sparse", key=None, cwd=REPO_ROOT).stderr


def test_init_gives_the_first_pipeline_its_runner_key(tmp_path: Path) -> None:
    made = connc("keys", "new", str(tmp_path / "runner.txt"), key=None, cwd=REPO_ROOT)
    assert made.returncode == 0, made.stderr
    runner = made.stdout.strip()
    assert runner.startswith("age1") and (tmp_path / "runner.txt").stat().st_mode & 0o777 == 0o600
    assert "AGE-SECRET-KEY" not in made.stdout + made.stderr
    again = connc("keys", "new", str(tmp_path / "runner.txt"), key=None, cwd=REPO_ROOT)
    assert again.returncode == 2 and "never overwrites" in again.stderr
    repo = tmp_path / "repo"
    ran = connc("init", str(repo), "--owner", "alice", "--recipient", TEST_RECIPIENT,
                "--pipeline", "deploy", "--runner-key", runner, key=None, cwd=REPO_ROOT)
    assert ran.returncode == 0, ran.stderr
    assert "connc keys sync --all" in ran.stderr
    assert f'recipients: ["{runner}"]' in (repo / "pipelines.d" / "deploy.yaml").read_text()
    assert connc("validate", "--strict", "--repo", str(repo), key=None,
                 cwd=REPO_ROOT).returncode == 0


def test_init_refuses_a_runner_key_it_cannot_use(tmp_path: Path) -> None:
    secret = (Path(__file__).parent / "test-age-key.txt").read_text().splitlines()[-1]
    for args, says in ((["--runner-key", TEST_RECIPIENT], "go together"),
                       (["--pipeline", "deploy"], "go together"),
                       (["--pipeline", "deploy", "--runner-key", secret], "secret one"),
                       (["--pipeline", "deploy", "--runner-key", "age-bogus"], "not a public key"),
                       (["--pipeline", "De_ploy", "--runner-key", TEST_RECIPIENT], "not valid")):
        ran = connc("init", str(tmp_path / "repo"), "--owner", "alice", "--recipient",
                    TEST_RECIPIENT, *args, key=None, cwd=REPO_ROOT)
        assert ran.returncode == 2 and says in ran.stderr, ran.stderr
        assert secret not in ran.stdout + ran.stderr
        assert not (tmp_path / "repo").exists()
