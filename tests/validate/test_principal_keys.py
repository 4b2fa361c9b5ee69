"""Principal -> recipients is answered once (`validate.keyring.Principals.recipients`): a
team stands for its own keys and its members', for validate's scope checks and for diff's rows
of principals' keys alike."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connc.diff import compare
from connc.schema import models
from connc.sops.recipients import recipient_of_member_key
from connc.validate.keyring import Keyring, Principals
from kit.keys import new_recipient

ALICE, ALICE_NEW, OPS_RUNNER = new_recipient(), new_recipient(), new_recipient()


def _members(alice_keys: list[str]) -> models.Members:
    return models.Members.model_validate({
        "apiVersion": "connc/v1", "kind": "Members",
        "users": {"alice": {"recipients": alice_keys}, "bob": {}},
        "teams": {"ops": {"members": ["alice"], "recipients": [OPS_RUNNER]}}})


def _ids(*keys: str) -> frozenset[str]:
    return frozenset(recipient_of_member_key(k) for k in keys)


def _side(members: models.Members) -> Any:
    return SimpleNamespace(members=members, config=None, pipelines={})


def test_a_team_stands_for_its_members_keys() -> None:
    principals = Principals(_members([ALICE]))
    assert principals.recipients("team:ops") == _ids(ALICE, OPS_RUNNER)
    assert principals.recipients("user:alice") == _ids(ALICE)
    assert principals.recipients("user:nobody") == frozenset()
    assert dict(principals.declared())["team:ops"] == _ids(OPS_RUNNER)  # who declares it


def test_validate_counts_team_members_keys() -> None:
    principals = Principals(_members([ALICE]))
    keyring = Keyring([], [], principals, [])
    connection: Any = SimpleNamespace(  # a ConnectionSummary's fields `named` reads
        id="c", owner="bob", visibility="custom",
                                      members=[("team:ops", None)])
    named = dict(keyring.named(connection))
    assert named["team:ops"] == principals.recipients("team:ops") == _ids(ALICE, OPS_RUNNER)


def test_diff_counts_team_members_keys() -> None:
    base, head = _members([ALICE]), _members([ALICE, ALICE_NEW])
    keys = compare._principal_keys(_side(base))
    assert keys["team:ops"] == Principals(base).recipients("team:ops")
    rows = [(row.values["principal"], row.change, row.widens)
            for row in compare._keys(_side(base), _side(head))]
    # alice's new key decrypts what alice may, and what team ops may: both widen.
    assert rows == [("team:ops", "added", True), ("user:alice", "added", True)]
