"""A pipeline's bundle is its owner's choice: tried as dave, who owns nothing of bob's, has
write access to a branch and no key, and may create connections of his own (sops encrypts to
public keys; a seal is plaintext until it is encrypted).

Render gives a pipeline's tools their defaults by the order of its `uses`: kubectl's current
context, npm's `registry=`, pip's index-url. A connection dave adds to bob's pipeline, or one
he moves ahead of bob's own, makes bob's `npm install` resolve from dave's registry (code of
dave's running in bob's job, next to bob's registry password) and bob's `npm publish` go to
dave. Consent for a grant was its connection's owner's only, dave's own; a reorder was no row.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from estate import BUILD, NPM

from connc.diff.compare import Change
from connc.diff.run import diff
from kit.build import (
    REPO_ROOT,
    commit,
    connection,
    encrypt,
    replace,
    write,
)
from kit.run import connc

DAVE_NPM = "connections.d/dave-npm.sops.yaml"


def _dave_registry(estate: Path) -> None:
    """dave's own public npm registry, sealed and encrypted without any private key."""
    write(estate, DAVE_NPM, connection(
        "dave-npm", type_="packages", owner="dave", visibility="public",
        spec={"format": "npm", "url": "https://npm.dave.example/"},
        credential={"token": "dave-token"}))
    encrypt(estate, DAVE_NPM)


def _uses(estate: Path, *connections: str, owner: str = "bob") -> None:
    write(estate, BUILD, {"apiVersion": "connc/v1", "kind": "Pipeline",
                          "metadata": {"id": "build", "owner": owner},
                          "uses": [{"connection": c} for c in connections]})


def pull_request(estate: Path) -> tuple[int, list[Change]]:
    commit(estate)
    proc = connc("diff", "--repo", str(estate), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, diff(estate, "main~1", "main").changes


def approved_by(estate: Path, users: str) -> subprocess.CompletedProcess[str]:
    return connc("approvals", "--repo", str(estate), "main~1", "main",
                 "--approved-by", users, key=None, cwd=REPO_ROOT)


def widening(changes: list[Change], section: str) -> list[tuple[str, dict[str, str],
                                                                  tuple[str, ...]]]:
    return [(c.change, c.values, c.approvers) for c in changes if c.section == section and c.widens]


def npmrc(estate: Path, tmp_path: Path) -> str:
    out = tmp_path / "bundle"
    ran = connc("render", "build", "--repo", estate, "--out", out)
    assert ran.returncode == 0, ran.stderr
    text = (out / "npm" / "npmrc").read_text()
    return next(line for line in text.splitlines() if line.startswith("registry="))


def test_a_connection_added_to_someone_elses_pipeline_needs_its_owner(
        estate: Path, tmp_path: Path) -> None:
    _dave_registry(estate)
    _uses(estate, "dave-npm", "reg")
    code, changes = pull_request(estate)
    assert code == 1
    assert ("added", {"pipeline": "build", "connection": "dave-npm", "before": "",
                      "after": "uses"}, ("user:dave", "user:bob")) in widening(changes, "grants")
    # dave's own consent was all it took; bob's pipeline now fetches from dave's registry.
    assert approved_by(estate, "dave").returncode == 1
    assert approved_by(estate, "dave,bob").returncode == 0
    assert npmrc(estate, tmp_path) == 'registry="https://npm.dave.example/"'


def test_a_dangling_use_filled_by_a_new_connection_needs_the_pipelines_owner(
        estate: Path) -> None:
    # bob's pipeline names `dave-npm`, which BASE does not have: whoever adds it chooses what
    # bob's pipeline gets, so bob (not only the new connection's owner) consents.
    _uses(estate, "reg", "dave-npm")
    commit(estate, "a use of a connection not there (CONNC205)")
    _dave_registry(estate)
    _code, changes = pull_request(estate)
    assert ("added", {"pipeline": "build", "connection": "dave-npm", "before": "",
                      "after": "uses"}, ("user:dave", "user:bob")) in widening(changes, "grants")


def test_a_use_the_pipeline_already_had_needs_only_the_connections_owner(
        estate: Path) -> None:
    # bob listed alice's registry himself (scope refused it); alice opening it to him is hers.
    replace(estate, NPM, "visibility: public", "visibility: private")
    _uses(estate, "reg", "npm")
    commit(estate, "bob wants npm")
    replace(estate, NPM, "visibility: private", "visibility: public")
    _code, changes = pull_request(estate)
    assert ("changed", {"pipeline": "build", "connection": "npm", "before": "denied",
                        "after": "uses"}, ("user:alice",)) in widening(changes, "grants")


@pytest.mark.parametrize("head", [("dave-npm", "npm", "reg"), ("reg", "dave-npm")],
                         ids=["reordered", "first-removed"])
def test_another_first_use_of_a_kind_needs_the_pipelines_owner(
        estate: Path, tmp_path: Path, head: tuple[str, ...]) -> None:
    # bob chose alice's registry as npm's default and dave's for what it alone serves; moving
    # dave's ahead, or dropping alice's, changes no grant.
    _dave_registry(estate)
    _uses(estate, "npm", "dave-npm", "reg")
    commit(estate, "bob's choice")
    _uses(estate, *head)
    code, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "claims") == [
        ("npm's registry changed", {"pipeline": "build", "before": "npm",
                                    "after": "dave-npm"}, ("user:bob",))]
    assert approved_by(estate, "dave,alice").returncode == 1
    assert npmrc(estate, tmp_path) == 'registry="https://npm.dave.example/"'


def test_a_connection_taking_a_default_in_someone_elses_pipeline_needs_its_owner(
        estate: Path, tmp_path: Path) -> None:
    # bob took dave's registry for dave's own scope only; dave, owner of his connection,
    # drops the scope, and it becomes npm's registry for everything bob installs.
    write(estate, DAVE_NPM, connection(
        "dave-npm", type_="packages", owner="dave", visibility="public",
        spec={"format": "npm", "url": "https://npm.dave.example/", "npmScopes": ["@dave"]},
        credential={"token": "dave-token"}))
    encrypt(estate, DAVE_NPM)
    _uses(estate, "dave-npm", "reg")
    commit(estate, "bob's choice")
    _dave_registry(estate)
    code, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "claims") == [
        ("npm's registry changed", {"pipeline": "build", "before": "", "after": "dave-npm"},
         ("user:bob",))]
    assert approved_by(estate, "dave").returncode == 1
    assert npmrc(estate, tmp_path) == 'registry="https://npm.dave.example/"'


def test_a_publishing_connection_made_twines_default_needs_the_pipelines_owner(
        estate: Path) -> None:
    # bob uploads to dave's index with `twine upload -r dave-pypi`; once dave names its
    # pypirc section `pypi`, bob's plain `twine upload` goes there too.
    relpath = "connections.d/dave-pypi.sops.yaml"
    spec = {"url": "https://upload.dave.example/legacy/",
            "identity": {"provider": "github-actions", "audience": "pypi"}}
    write(estate, relpath, connection("dave-pypi", type_="pypi-publish", owner="dave",
                                      visibility="public", spec=spec, credential={}))
    encrypt(estate, relpath)
    _uses(estate, "reg", "dave-pypi")
    commit(estate, "bob's choice")
    write(estate, relpath, connection("dave-pypi", type_="pypi-publish", owner="dave",
                                      visibility="public", credential={},
                                      spec={**spec, "repositoryName": "pypi"}))
    encrypt(estate, relpath)
    _code, changes = pull_request(estate)
    assert widening(changes, "claims") == [
        ("twine's default repository changed", {"pipeline": "build", "before": "",
                                                "after": "dave-pypi"}, ("user:bob",))]


def test_reordering_kinds_and_removing_the_last_of_a_kind_are_free(estate: Path) -> None:
    _uses(estate, "npm", "reg")
    commit(estate, "two kinds")
    _uses(estate, "reg")
    code, changes = pull_request(estate)
    assert code == 0, [c for c in changes if c.widens]
    _uses(estate, "npm", "reg")
    commit(estate, "npm back")
    _uses(estate, "reg", "npm")
    assert pull_request(estate)[0] == 0


def test_a_pipeline_changing_hands_needs_both_owners(estate: Path) -> None:
    # Otherwise dave takes bob's pipeline alone, and then, as its owner at BASE, adds to it.
    _uses(estate, "reg", owner="dave")
    _code, changes = pull_request(estate)
    assert widening(changes, "claims") == [
        ("owner changed", {"pipeline": "build", "before": "bob", "after": "dave"},
         ("user:bob", "user:dave"))]
