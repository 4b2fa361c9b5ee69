"""`connc access`: the matrix follows the scope decision, in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connc.cli import cli
from repokit import MEMBERS, connection, make_repo, pipeline


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    members = {**MEMBERS, "users": {**MEMBERS["users"], "carol": {}}}
    return make_repo(tmp_path, members=members, encrypt_all=False, connections={
        "open": connection("open", visibility="public", spec={"url": "https://g.example.com/o"}),
        "alices": connection("alices", spec={"url": "https://g.example.com/a"}),
        "team": connection("team", owner="bob", visibility="custom", members=["team:platform"],
                           spec={"url": "https://g.example.com/t"}),
    }, pipelines={
        "a": pipeline("a", "alices", "team", teams=["platform"]),
        "c": pipeline("c", "open", "alices", owner="carol"),
    })


def _run(repo: Path, fmt: str) -> str:
    result = CliRunner().invoke(cli, ["access", "--repo", str(repo), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_lists_uses_may_and_denied(repo: Path) -> None:
    pipelines = json.loads(_run(repo, "json"))["pipelines"]
    assert pipelines["a"] == {"uses": ["alices", "team"], "may": ["open"], "denied": []}
    assert pipelines["c"] == {"uses": ["open"], "may": [], "denied": ["alices"]}


def test_csv_has_one_row_per_pair(repo: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_run(repo, "csv"))))
    assert {"pipeline": "c", "connection": "alices", "allowed": "false", "used": "true"} in rows
    assert len(rows) == 5


def test_table_marks_a_denied_use(repo: Path) -> None:
    lines = _run(repo, "table").splitlines()
    assert lines[0].split()[-3:] == ["alices", "open", "team"]
    assert lines[2].split() == ["c", "DENIED", "uses", "."]
