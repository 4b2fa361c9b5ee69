"""The keyring (validate/keyring.py): who may hold a key, who needs one — against a brute-force
reading of the spec's words over every pipeline, on generated repositories."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connc.repository import ConnectionSummary, PipelineSummary, UseSummary
from connc.schema import models
from connc.scope import PipelineScope, connection_scope, decide
from connc.validate.keyring import Keyring, Principals

POS = (1, 1)
KEYS = [f"age:age1key{n}" for n in range(8)]


def connection(cid: str, owner: str, visibility: str = "private", members: tuple[str, ...] = (),
               recipients: frozenset[str] = frozenset()) -> ConnectionSummary:
    return ConnectionSummary(
        relpath=f"connections.d/{cid}.sops.yaml", id=cid, id_pos=POS, owner=owner,
        owner_pos=POS, visibility=visibility, members=tuple((m, POS) for m in members),
        type="gitlab", spec=(), sealed=True, recipients=recipients, sops_pos=POS,
        wrapped_keys=frozenset(), ciphertexts=frozenset(), credential_pos=POS)


def pipeline(pid: str, owner: str, teams: tuple[str, ...] = (), uses: tuple[str, ...] = (),
             recipients: frozenset[str] = frozenset()) -> PipelineSummary:
    return PipelineSummary(
        relpath=f"pipelines.d/{pid}.yaml", id=pid, id_pos=POS, owner=owner, owner_pos=POS,
        teams=tuple((t, POS) for t in teams), recipients=recipients,
        uses=tuple(UseSummary(c, POS, (), None, None, False) for c in uses))


def members(users: dict[str, list[str]], teams: dict[str, tuple[list[str], list[str]]]
            ) -> models.Members:
    """users: name -> keys; teams: name -> (members, own keys). Keys in members.yaml form."""
    return models.Members.model_validate({
        "apiVersion": "connc/v1", "kind": "Members",
        "users": {u: {"recipients": [k.removeprefix("age:") for k in keys]}
                  for u, keys in users.items()},
        "teams": {t: {"members": m, "recipients": [k.removeprefix("age:") for k in keys]}
                  for t, (m, keys) in teams.items()}})


# ---------------------------------------------------------------------------- examples

ALICE, BOB, CAROL, RUNNER, TEAM, ADMIN = KEYS[:6]
PRINCIPALS = Principals(members({"alice": [ALICE], "bob": [BOB], "carol": [CAROL]},
                                {"ops": (["carol"], [TEAM]), "web": (["bob"], [])}))


def test_a_pipeline_that_may_use_a_connection_is_in_its_scope_with_its_runner_key() -> None:
    private = connection("db", "alice")
    deploy = pipeline("deploy", "alice", uses=("db",), recipients=frozenset({RUNNER}))
    other = pipeline("other", "bob", recipients=frozenset({KEYS[6]}))
    keyring = Keyring([private], [deploy, other], PRINCIPALS, {ADMIN})
    assert keyring.allows(private, RUNNER)  # alice's pipeline: same owner, in scope
    assert not keyring.allows(private, KEYS[6])  # bob's pipeline may not use it
    assert not keyring.allows(private, BOB)
    assert keyring.allows(private, ADMIN) and keyring.allows(private, ALICE)


def test_runner_keys_are_a_pipelines_own_else_its_teams_own_never_members_personal() -> None:
    team_pipeline = pipeline("build", "carol", teams=("ops",))
    keyless = pipeline("docs", "bob", teams=("web",))
    keyring = Keyring([], [team_pipeline, keyless], PRINCIPALS, set())
    assert keyring.runner_keys("build").keys == {TEAM}
    assert keyring.runner_keys("build").source == "team:ops"
    assert keyring.runner_keys("docs").keys == frozenset()  # web has no key of its own


def test_a_file_needs_admin_owner_and_its_users_runner_keys_and_no_member_key() -> None:
    shared = connection("registry", "alice", "custom", ("user:carol", "team:web"))
    build = pipeline("build", "carol", teams=("ops",), uses=("registry",))
    idle = pipeline("idle", "carol", recipients=frozenset({RUNNER}))  # may, does not use
    keyring = Keyring([shared], [build, idle], PRINCIPALS, {ADMIN})
    assert keyring.needed(shared) == {ADMIN, ALICE, TEAM}
    # All of it allowed; so are the members' keys and idle's, which the file does not need.
    assert all(keyring.allows(shared, key) for key in {ADMIN, ALICE, TEAM, CAROL, BOB, RUNNER})


def test_liveness_names_pipelines_whose_keys_do_not_decrypt_and_those_without_keys() -> None:
    db = connection("db", "alice", recipients=frozenset({ALICE}))
    deploy = pipeline("deploy", "alice", uses=("db",), recipients=frozenset({RUNNER}))
    laptop = pipeline("laptop", "alice", uses=("db",))
    denied = pipeline("denied", "bob", uses=("db",), recipients=frozenset({BOB}))
    keyring = Keyring([db], [deploy, laptop, denied], PRINCIPALS, set())
    assert [pid for pid, _keys in keyring.undecryptable(db)] == ["deploy"]
    assert keyring.keyless_users(db) == ["laptop"]  # the denied use is CONNC301's, not ours


# ---------------------------------------------------------------------------- all inputs


def claimed(p: PipelineSummary, principals: Principals) -> list[str]:
    """The teams render lets the pipeline claim: those its owner is a member of."""
    return [t for t, _ in p.teams if t in principals.teams
            and p.owner in principals.teams[t].members]


def renders(p: PipelineSummary, principals: Principals) -> bool:
    """Render refuses a pipeline whose owner is not a user, and a team its owner is not in."""
    return p.owner in principals.users


def brute_force_allowed(connection: ConnectionSummary, pipelines: list[PipelineSummary],
                        principals: Principals, admin: set[str]) -> set[str]:
    """Spec 5.4's safety, word for word, over every pipeline (no index, no shortcut); a
    pipeline's claims count as render honours them."""
    if connection.visibility == "public":
        allowed = set(principals.all_recipients())
        for p in pipelines:
            if renders(p, principals):
                allowed |= p.recipients
        return allowed | admin
    allowed = set(principals.user_recipients(connection.owner))
    for member, _pos in connection.members if connection.visibility == "custom" else ():
        kind, _, name = member.partition(":")
        if kind == "user":
            allowed |= principals.user_recipients(name)
        elif kind == "team":
            allowed |= principals.team_recipients(name)
        else:
            for p in pipelines:
                if p.id == name:
                    allowed |= p.recipients or set().union(
                        *(principals.team_recipients(t) for t in claimed(p, principals)))
    for p in pipelines:
        scope = PipelineScope(p.id, p.owner, tuple(claimed(p, principals)))
        if renders(p, principals) and decide(scope, connection_scope(connection)) is None:
            allowed |= p.recipients or set().union(
                *(principals.team_own_recipients(t) for t in claimed(p, principals)))
    return allowed | admin


NAMES = ["alice", "bob", "carol"]
TEAMS = ["ops", "web"]


@st.composite
def estates(draw: Any) -> tuple[list[ConnectionSummary], list[PipelineSummary], Principals,
                                set[str]]:
    keys = st.frozensets(st.sampled_from(KEYS), max_size=2)
    users = {u: sorted(draw(keys)) for u in NAMES}
    teams = {t: (sorted(draw(st.sets(st.sampled_from(NAMES), max_size=2))), sorted(draw(keys)))
             for t in TEAMS}
    principals = Principals(members(users, teams))
    pipeline_ids = [f"p{n}" for n in range(draw(st.integers(0, 4)))]
    connection_ids = [f"c{n}" for n in range(draw(st.integers(1, 4)))]
    member_refs = ([f"user:{u}" for u in NAMES] + [f"team:{t}" for t in TEAMS]
                   + [f"pipeline:{p}" for p in pipeline_ids])
    connections = [connection(
        cid, draw(st.sampled_from(NAMES)), draw(st.sampled_from(["private", "public", "custom"])),
        tuple(draw(st.lists(st.sampled_from(member_refs), max_size=3, unique=True))),
        draw(st.frozensets(st.sampled_from(KEYS), max_size=4))) for cid in connection_ids]
    pipelines = [pipeline(
        pid, draw(st.sampled_from([*NAMES, "mallory"])), tuple(draw(st.lists(st.sampled_from(TEAMS),
                                                               max_size=2, unique=True))),
        tuple(draw(st.lists(st.sampled_from(connection_ids), max_size=3, unique=True))),
        draw(keys)) for pid in pipeline_ids]
    return connections, pipelines, principals, set(draw(st.sets(st.sampled_from(KEYS),
                                                                max_size=1)))


@settings(max_examples=300, deadline=None)
@given(estates())
def test_safety_agrees_with_the_spec_and_what_a_file_needs_never_widens(
        estate: tuple[list[ConnectionSummary], list[PipelineSummary], Principals, set[str]]
) -> None:
    connections, pipelines, principals, admin = estate
    keyring = Keyring(connections, pipelines, principals, admin)
    for c in connections:
        allowed = brute_force_allowed(c, pipelines, principals, admin)
        assert set(keyring.outside(c)) == c.recipients - allowed
        assert {k for k in KEYS if keyring.allows(c, k)} == allowed & set(KEYS)
        assert keyring.needed(c) <= allowed  # keys sync never widens
        # Liveness after a sync: every user with runner keys can decrypt the synced file.
        synced = connection(c.id, c.owner, c.visibility, tuple(m for m, _ in c.members),
                            keyring.needed(c) or frozenset({"age:unused"}))
        after = Keyring([synced if x.id == c.id else x for x in connections], pipelines,
                        principals, admin)
        assert after.undecryptable(synced) == []
