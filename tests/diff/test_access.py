"""`connc access`: the matrix follows the scope decision, in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TypeVar

import pytest
import scopekit
from hypothesis import given, settings
from hypothesis import strategies as st

from connc.diff.access import matrix
from connc.repository import ConnectionSummary, PipelineSummary
from connc.scope import (
    EVERYONE,
    GrantTable,
    changed_rows,
    connection_scope,
    decide,
    grant_states,
    pipeline_scope,
)
from connc.validate.run import validate
from kit.build import MEMBERS, connection, make_repo, pipeline
from kit.run import in_process


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
    result = in_process("access", "--repo", repo, "--format", fmt, key=None)
    assert result.code == 0, result.stderr
    return result.stdout


def test_json_lists_uses_may_and_denied(repo: Path) -> None:
    pipelines = json.loads(_run(repo, "json"))["pipelines"]
    assert pipelines["a"] == {"uses": ["alices", "team"], "may": ["open"], "denied": []}
    assert pipelines["c"] == {"uses": ["open"], "may": [], "denied": ["alices"]}


def test_csv_has_one_row_per_pair(repo: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_run(repo, "csv"))))
    assert {"pipeline": "c", "connection": "alices", "allowed": "false", "used": "true"} in rows
    assert len(rows) == 5


def test_table_has_one_row_per_pipeline_and_fits_a_terminal(repo: Path) -> None:
    out = _run(repo, "table")
    lines = out.splitlines()
    assert lines[0].split() == ["pipeline", "connections"]
    assert lines[1].split(None, 1) == ["a", "uses: alices, team"]
    assert lines[2].split(None, 1) == ["c", "uses: open; denied: alices"]
    assert "public, every pipeline may use: open" in out
    assert all(len(line) <= 100 for line in lines)


def test_table_wraps_long_rows(tmp_path: Path) -> None:
    many = {f"c{n:02d}": connection(f"c{n:02d}", spec={"url": f"https://g.example.com/{n}"})
            for n in range(40)}
    root = make_repo(tmp_path, encrypt_all=False, connections=many,
                     pipelines={"p": pipeline("p", *many)})
    buffer = io.StringIO()
    from connc.diff.access import table

    report = validate(root)
    table(matrix(report.connections, report.pipelines), buffer, width=60)
    lines = buffer.getvalue().splitlines()
    assert len(lines) > 5 and all(len(line) <= 60 for line in lines[:-1])


def test_filters(repo: Path) -> None:
    result = in_process("access", "--repo", repo, "--connection", "alices", key=None)
    assert result.code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()[1:3]] == ["a", "c"]
    one = in_process("access", "--repo", repo, "--pipeline", "c", "--format", "json", key=None)
    assert list(json.loads(one.stdout)["pipelines"]) == ["c"]
    unknown = in_process("access", "--repo", repo, "--pipeline", "aa", key=None)
    assert unknown.code == 2 and "did you mean `a`" in unknown.stderr


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
    everyone = set(states.get(EVERYONE, {}))
    expanded = {(pid, cid): state for pid, row in states.items() if pid != EVERYONE
                for cid, state in row.items()}
    for p in report.pipelines:
        for c in everyone:
            expanded.setdefault((p.id, c), "may")
    assert expanded == expected
    assert {"uses", "may", "denied"} == set(expected.values())


T = TypeVar("T")

_NAMES = st.sampled_from(["a", "b", "c"])


@st.composite
def _scopes(draw: st.DrawFn) -> tuple[list[ConnectionSummary], list[PipelineSummary]]:
    refs = st.sampled_from(["user:a", "user:b", "team:t", "team:u", "pipeline:p0",
                            "pipeline:p1", "user:c"])
    connections = [scopekit.connection(f"c{i}", draw(_NAMES),
                               draw(st.sampled_from(["private", "public", "custom"])),
                               draw(st.lists(refs, max_size=3)))
                   for i in range(draw(st.integers(0, 6)))]
    pipelines = [scopekit.pipeline(f"p{i}", draw(_NAMES),
                           draw(st.lists(st.sampled_from(["t", "u"]), max_size=2)),
                           draw(st.lists(st.sampled_from([f"c{j}" for j in range(7)]),
                                         max_size=3)))
                 for i in range(draw(st.integers(0, 4)))]
    return connections, pipelines


@given(_scopes())
@settings(max_examples=300, deadline=None)
def test_grant_states_is_decide_on_every_pair(
        drawn: tuple[list[ConnectionSummary], list[PipelineSummary]]) -> None:
    """The index grant_states reads "may" from admits exactly what scope.decide admits."""
    assert scopekit.granted(*drawn) == scopekit.decided(*drawn)


@st.composite
def _two_sides(draw: st.DrawFn) -> tuple[tuple[list[ConnectionSummary], list[PipelineSummary]],
                                         tuple[list[ConnectionSummary], list[PipelineSummary]]]:
    """BASE, and a HEAD that keeps some of its summaries as the very objects (a file judged
    once for both sides), redraws others (a file changed) and drops or adds some; ids may
    repeat on either side."""
    base_connections, base_pipelines = draw(_scopes())
    other_connections, other_pipelines = draw(_scopes())

    def head_of(base: list[T], other: list[T]) -> list[T]:
        kept = [item for item in base if draw(st.booleans())]
        return draw(st.permutations(kept + [item for item in other if draw(st.booleans())]))

    return ((base_connections, base_pipelines),
            (head_of(base_connections, other_connections),
             head_of(base_pipelines, other_pipelines)))


@given(_two_sides())
@settings(max_examples=400, deadline=None)
def test_the_rows_a_diff_leaves_out_are_equal_and_the_others_are_built_afresh(
        sides: tuple[tuple[list[ConnectionSummary], list[PipelineSummary]],
                     tuple[list[ConnectionSummary], list[PipelineSummary]]]) -> None:
    (base_connections, base_pipelines), (head_connections, head_pipelines) = sides
    before = grant_states(base_connections, base_pipelines)
    after = grant_states(head_connections, head_pipelines)
    compared = {pid: (old, new) for pid, old, new in changed_rows(
        GrantTable(base_connections, base_pipelines),
        GrantTable(head_connections, head_pipelines))}
    for pid in before.keys() | after.keys() | compared.keys():
        if pid in compared:
            assert compared[pid] == (before.get(pid, {}), after.get(pid, {}))
        else:
            assert before.get(pid, {}) == after.get(pid, {}), pid


def test_a_side_unchanged_builds_no_row() -> None:
    connections = [scopekit.connection("c0", "a", "private", []),
                   scopekit.connection("c1", "b", "custom", ["team:t"])]
    pipelines = [scopekit.pipeline("p0", "a", ["t"], ["c0", "c1"]), scopekit.pipeline("p1", "b", [], ["c1"])]
    base = GrantTable(connections, pipelines)
    head = GrantTable(list(connections), list(pipelines))
    assert [pid for pid, _old, _new in changed_rows(base, head)] == [EVERYONE]
    assert not base._rows and not head._rows  # neither side built a pipeline's row
    # A connection made public changes the "may" group of its owner: p1's row is compared.
    public = [connections[0], scopekit.connection("c1", "b", "public", [])]
    compared = {pid: new for pid, _old, new in changed_rows(base, GrantTable(public, pipelines))}
    assert set(compared) == {EVERYONE, "p0", "p1"}
    assert compared["p1"] == grant_states(public, pipelines)["p1"]
