"""`connc access`: the matrix follows the scope decision, in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connc.cli import cli
from connc.diff.access import matrix
from connc.scope import EVERYONE, connection_scope, decide, grant_states, pipeline_scope
from connc.validate.run import validate
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


def test_grants_are_the_scope_decision_for_every_pair(tmp_path: Path) -> None:
    members = {**MEMBERS, "users": {**MEMBERS["users"], "carol": {}, "dave": {}}}
    root = make_repo(tmp_path / "r", members=members, encrypt_all=False, connections={
        "pub": connection("pub", visibility="public", owner="bob"),
        "priv": connection("priv"),
        "by-user": connection("by-user", owner="bob", visibility="custom", members=["user:carol"]),
        "by-team": connection("by-team", owner="bob", visibility="custom",
                              members=["team:platform"]),
        "by-pipeline": connection("by-pipeline", owner="bob", visibility="custom",
                                  members=["pipeline:d"]),
        "stray-members": connection("stray-members", owner="bob", members=["user:carol"]),
    }, pipelines={
        "a": pipeline("a", "priv", "by-team", teams=["platform"]),
        "c": pipeline("c", "pub", "priv", "stray-members", owner="carol"),
        "d": pipeline("d", owner="dave"),
        "b": pipeline("b", "by-pipeline", owner="bob"),
    })
    report = validate(root)
    # The reference: scope.decide on every pipeline x connection pair, as plainly as it gets.
    expected = {}
    for p in report.pipelines:
        used = {use.connection for use in p.uses}
        for c in report.connections:
            allowed = decide(pipeline_scope(p), connection_scope(c)) is None
            if c.id in used:
                expected[(p.id, c.id)] = "uses" if allowed else "denied"
            elif allowed:
                expected[(p.id, c.id)] = "may"
    assert {(g.pipeline, g.connection): ("uses" if g.allowed else "denied") if g.used
            else "may" for g in matrix(report.connections, report.pipelines)} == expected
    states = grant_states(report.connections, report.pipelines)
    everyone = {c for p, c in states if p == EVERYONE}
    expanded = {pair: state for pair, state in states.items() if pair[0] != EVERYONE}
    for p in report.pipelines:
        for c in everyone:
            expanded.setdefault((p.id, c), "may")
    assert expanded == expected
    assert {"uses", "may", "denied"} == set(expected.values())
