"""connc.scope: may pipeline P use connection C? (README.md, The trust model), table-driven and by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connc.scope import (
    ConnectionScope,
    PipelineScope,
    decide,
    matching_member,
    narrower_or_equal,
)

RELEASE = PipelineScope("api-release", "alice", ("platform", "web"))


def conn(visibility: str, owner: str = "carol", *members: str) -> ConnectionScope:
    return ConnectionScope("github-acme", owner, visibility, members)


# (visibility, owner, members) -> allowed for RELEASE (owner alice, teams platform + web)
TABLE = [
    pytest.param("public", "carol", (), True, id="public"),
    pytest.param("public", "alice", (), True, id="public-own"),
    pytest.param("private", "alice", (), True, id="private-same-owner"),
    pytest.param("private", "carol", (), False, id="private-other-owner"),
    pytest.param("private", "carol", ("user:alice", "pipeline:api-release"), False,
                 id="private-members-ignored"),
    pytest.param("custom", "alice", (), True, id="custom-owner-is-always-a-member"),
    pytest.param("custom", "carol", ("user:alice",), True, id="custom-user"),
    pytest.param("custom", "carol", ("team:platform",), True, id="custom-team"),
    pytest.param("custom", "carol", ("team:web",), True, id="custom-second-team"),
    pytest.param("custom", "carol", ("pipeline:api-release",), True, id="custom-pipeline"),
    pytest.param("custom", "carol", (), False, id="custom-no-members"),
    pytest.param("custom", "carol", ("user:bob", "team:ops", "pipeline:other"), False,
                 id="custom-others"),
    pytest.param("custom", "carol", ("team:alice", "user:platform", "pipeline:alice"), False,
                 id="custom-kinds-do-not-mix"),
    pytest.param("custom", "carol", ("user:Alice", "team:Platform"), False,
                 id="custom-names-are-case-sensitive"),
    pytest.param("custom", "carol", ("alice", "platform"), False, id="custom-needs-kind-prefix"),
]


@pytest.mark.parametrize(("visibility", "owner", "members", "allowed"), TABLE)
def test_decide(visibility: str, owner: str, members: tuple[str, ...], allowed: bool) -> None:
    assert (decide(RELEASE, conn(visibility, owner, *members)) is None) is allowed


def test_private_denial_names_both_sides() -> None:
    denial = decide(RELEASE, conn("private", "carol"))
    assert denial is not None and denial.code == "CONNC301"
    for word in ("api-release", "alice", "github-acme", "private", "carol"):
        assert word in denial.message


def test_custom_denial_lists_what_would_admit_the_pipeline() -> None:
    denial = decide(RELEASE, conn("custom", "carol", "user:bob"))
    assert denial is not None and denial.code == "CONNC302"
    for word in ("user:alice", "pipeline:api-release", "team:platform", "team:web",
                 "scope.members"):
        assert word in denial.message


def test_custom_denial_of_a_pipeline_without_teams() -> None:
    denial = decide(PipelineScope("solo", "dave", ()), conn("custom", "carol"))
    assert denial is not None and "no teams" in denial.message


def test_matching_member_names_the_entry() -> None:
    assert matching_member(RELEASE, conn("custom", "c", "team:web", "user:x")) == "team:web"
    assert matching_member(RELEASE, conn("custom", "c", "user:x")) is None


# ---------------------------------------------------------------------------- properties

names = st.sampled_from(["alice", "bob", "carol", "platform", "web", "api-release", "deploy"])
kinds = st.sampled_from(["user", "team", "pipeline"])
members = st.lists(st.builds(lambda k, n: f"{k}:{n}", kinds, names), max_size=5).map(tuple)
pipelines = st.builds(PipelineScope, names, names, st.lists(names, max_size=3).map(tuple))


def admits(pipeline: PipelineScope, member: str) -> bool:
    kind, _, name = member.partition(":")
    return ((kind == "user" and name == pipeline.owner)
            or (kind == "team" and name in pipeline.teams)
            or (kind == "pipeline" and name == pipeline.id))


@given(pipelines, names, members)
def test_public_is_always_allowed(pipeline: PipelineScope, owner: str,
                                  listed: tuple[str, ...]) -> None:
    assert decide(pipeline, ConnectionScope("c", owner, "public", listed)) is None


@given(pipelines, st.sampled_from(["private", "public", "custom"]), members)
def test_the_owner_is_always_allowed(pipeline: PipelineScope, visibility: str,
                                     listed: tuple[str, ...]) -> None:
    assert decide(pipeline, ConnectionScope("c", pipeline.owner, visibility, listed)) is None


@given(pipelines, names, members)
def test_private_is_allowed_iff_same_owner(pipeline: PipelineScope, owner: str,
                                           listed: tuple[str, ...]) -> None:
    denial = decide(pipeline, ConnectionScope("c", owner, "private", listed))
    assert (denial is None) == (owner == pipeline.owner)
    if denial is not None:
        assert denial.code == "CONNC301"


@given(pipelines, names, members)
def test_custom_is_allowed_iff_owner_or_a_member_matches(pipeline: PipelineScope, owner: str,
                                                         listed: tuple[str, ...]) -> None:
    denial = decide(pipeline, ConnectionScope("c", owner, "custom", listed))
    expected = owner == pipeline.owner or any(admits(pipeline, m) for m in listed)
    assert (denial is None) == expected
    if denial is not None:
        assert denial.code == "CONNC302"


# ---------------------------------------------------------------------------- narrower

scopes = st.builds(lambda visibility, owner, listed: ConnectionScope("c", owner, visibility,
                                                                     listed),
                   st.sampled_from(["private", "public", "custom"]),
                   st.sampled_from(["alice", "carol"]), members)


@given(scopes, scopes, pipelines)
def test_narrower_admits_no_pipeline_the_wider_scope_denied(
        before: ConnectionScope, after: ConnectionScope, pipeline: PipelineScope) -> None:
    # The order diff and the seals use is the one render applies.
    if narrower_or_equal(before, after) and decide(pipeline, after) is None:
        assert decide(pipeline, before) is None


@given(scopes)
def test_a_scope_is_as_narrow_as_itself(scope: ConnectionScope) -> None:
    assert narrower_or_equal(scope, scope)


@pytest.mark.parametrize(("before", "after", "narrower"), [
    pytest.param(conn("public"), conn("custom", "carol", "team:web"), True, id="public-to-custom"),
    pytest.param(conn("custom", "carol", "team:web", "user:bob"),
                 conn("custom", "carol", "team:web"), True, id="member-removed"),
    pytest.param(conn("custom", "carol", "team:web"), conn("private"), True, id="to-private"),
    pytest.param(conn("private"), conn("custom", "carol"), True, id="custom-without-members"),
    pytest.param(conn("private"), conn("custom", "carol", "user:bob"), False, id="member-added"),
    pytest.param(conn("custom", "carol", "team:web"), conn("public"), False, id="to-public"),
    pytest.param(conn("private", "carol"), conn("private", "alice"), False, id="new-owner"),
])
def test_narrower_or_equal(before: ConnectionScope, after: ConnectionScope,
                           narrower: bool) -> None:
    assert narrower_or_equal(before, after) is narrower
