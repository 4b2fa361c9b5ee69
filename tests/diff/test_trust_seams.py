"""The trust layer's seams, tried as someone with write access to a branch and no key: each
way a private, sealed credential could reach another pipeline with `connc diff` green — two
readers that disagree, a credential moved under a new name, a seal that holds less than diff
promises, a rotation that approves a redirect — is closed, and each test failed before.

Each test is a real commit on the estate of conftest.py (sealed, `requireSeals: true`), with
real sops and the test key where a key holder acts.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from estate import BUILD, K8S, REG

from connc.diff.compare import Change
from connc.diff.run import diff
from connc.errors import SopsError
from connc.process import Deadline
from connc.sops import binary
from kit.build import REPO_ROOT, TEST_KEY_FILE, commit, git, replace, write
from kit.run import connc

CANARY = "canary-redirect-password-7f3a"


def pull_request(repo: Path) -> tuple[int, list[Change]]:
    commit(repo)
    proc = connc("diff", "--repo", str(repo), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, diff(repo, "main~1", "main").changes


def widening(changes: list[Change], section: str) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
    return [(c.change, c.values, c.approvers) for c in changes if c.section == section and c.widens]


def render(repo: Path, pipeline: str, tmp_path: Path) -> Any:
    return connc("render", pipeline, "--repo", str(repo), "--out", str(tmp_path / "bundle"),
                 key=TEST_KEY_FILE, cwd=REPO_ROOT)


def in_repo(repo: Path, *args: str) -> Any:
    return connc(*args, "--repo", str(repo), key=TEST_KEY_FILE, cwd=REPO_ROOT)


def secret_set(repo: Path, connection_id: str, field: str, value: str) -> Any:
    """`connc secret set` as a key holder runs it, the value on stdin."""
    return connc("secret", "set", connection_id, field, "--repo", repo, input=f"{value}\n")


# ---------------------------------------------------------------------------- one reader


def test_a_value_the_two_readers_took_differently_fails_closed(estate: Path,
                                                               tmp_path: Path) -> None:
    # A new pipeline in bob's name using bob's private registry, with one entry whose id ends
    # in a newline: pydantic refused it (so diff compared the pipeline as absent: no row),
    # render's checker took `^...$` as Python's re.search does and rendered the registry.
    write(estate, "pipelines.d/steal.yaml",
          'apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: steal\n  owner: bob\n'
          'uses:\n  - connection: reg\n  - connection: "npm\\n"\n')
    code, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "unread") == [
        ("refused", {"file": "pipelines.d/steal.yaml", "at": "head", "why": "CONNC102 at line 8"},
         ("admins",))]
    refused = render(estate, "steal", tmp_path)
    assert refused.returncode == 1 and "pipelines.d/steal.yaml:8" in refused.stderr
    assert not (tmp_path / "bundle").exists()


def test_members_with_an_error_elsewhere_fail_closed(estate: Path, tmp_path: Path) -> None:
    # dave joins the platform team (an admin's consent), with one typo in another user: diff
    # compared members.yaml as absent at HEAD (no team row), render read only the owner's
    # entry and the claimed team, and released the team's cluster to dave's pipeline.
    replace(estate, "members.yaml", "    members:\n    - alice\n    - bob\n",
            "    members:\n    - alice\n    - bob\n    - dave\n")
    replace(estate, "members.yaml", "github: carold", "github: carold\n    recipent: []")
    write(estate, "pipelines.d/dave.yaml", {
        "apiVersion": "connc/v1", "kind": "Pipeline",
        "metadata": {"id": "dave", "owner": "dave", "teams": ["platform"]},
        "uses": [{"connection": "k8s"}]})
    code, changes = pull_request(estate)
    assert code == 1
    assert ("refused", {"file": "members.yaml", "at": "head", "why": "CONNC101 at line 10"},
            ("admins",)) in widening(changes, "unread")
    refused = render(estate, "dave", tmp_path)
    assert refused.returncode == 1 and "members.yaml" in refused.stderr
    assert "CONNC101" in refused.stderr


def test_a_snake_case_spelling_is_one_more_reader_and_refused(estate: Path) -> None:
    # `expires_at` was a second spelling pydantic took and render's checker did not.
    replace(estate, REG, "owner: bob", "owner: bob\n    expires_at: '2001-01-01'")
    ran = in_repo(estate, "validate", "--format", "json")
    codes = {(f["path"], f["code"]) for f in json.loads(ran.stdout)["findings"]}
    assert (REG, "CONNC101") in codes


# ---------------------------------------------------------------------------- moves


def _move_registry(estate: Path, new_id: str, owner: str) -> None:
    git(estate, "mv", REG, f"connections.d/{new_id}.sops.yaml")
    relpath = f"connections.d/{new_id}.sops.yaml"
    replace(estate, relpath, "id: reg", f"id: {new_id}")
    replace(estate, relpath, "owner: bob", f"owner: {owner}")


def test_a_moved_credential_needs_its_owner_at_base(estate: Path, tmp_path: Path) -> None:
    _move_registry(estate, "mirror", "dave")
    replace(estate, BUILD, "connection: reg", "connection: mirror")
    write(estate, "pipelines.d/dave.yaml", {
        "apiVersion": "connc/v1", "kind": "Pipeline", "metadata": {"id": "dave", "owner": "dave"},
        "uses": [{"connection": "mirror"}]})
    code, changes = pull_request(estate)
    assert code == 1
    # Not only "a connection added", which its new owner alone would approve: bob's.
    assert widening(changes, "credentials") == [
        ("moved here", {"connection": "mirror", "from": "reg", "before": "", "after": ""},
         ("user:bob",))]
    # With the key, the seal still says `reg`: render refuses, and no seal renews it.
    refused = render(estate, "dave", tmp_path)
    assert refused.returncode == 1 and "sealed for another connection" in refused.stderr
    for args in (("seal", "mirror"), ("seal", "--all")):
        sealed = in_repo(estate, *args)
        assert sealed.returncode == 1, sealed.stdout
        assert "sealed for `reg`, not `mirror`" in sealed.stderr
    assert git(estate, "status", "--porcelain") == ""  # nothing written


def test_a_copied_block_in_an_existing_file_needs_its_owner(estate: Path) -> None:
    # k8s keeps its name and owner; its credential block (and sops metadata) is reg's.
    reg = yaml.safe_load((estate / REG).read_text())
    k8s_text = (estate / K8S).read_text()
    k8s = yaml.safe_load(k8s_text)
    k8s["credential"], k8s["sops"] = reg["credential"], reg["sops"]
    write(estate, K8S, k8s)
    _code, changes = pull_request(estate)
    assert ("copied here", {"connection": "k8s", "from": "reg", "before": "", "after": ""},
            ("user:bob",)) in widening(changes, "credentials")


# ---------------------------------------------------------------------------- seals


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))


def test_a_restored_older_block_needs_its_owner(estate: Path) -> None:
    before = (estate / REG).read_bytes()
    time.sleep(1.1)  # sops' lastmodified counts seconds
    assert secret_set(estate, "reg", "password", "rotated-password").returncode == 0
    commit(estate, "rotated")
    (estate / REG).write_bytes(before)  # the block from before the rotation, put back
    code, changes = pull_request(estate)
    assert code == 1
    [(change, values, approvers)] = widening(changes, "credentials")
    assert (change, approvers) == ("restored an older block", ("user:bob",))
    assert values["before"] > values["after"]


def test_an_expired_credential_kept_in_use_needs_its_owner(estate: Path) -> None:
    replace(estate, REG, "owner: bob", "owner: bob\n    expiresAt: '2020-01-01'")
    commit(estate, "expired")
    replace(estate, REG, "expiresAt: '2020-01-01'", "expiresAt: '2099-01-01'")
    code, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "credentials") == [
        ("expiry extended", {"connection": "reg", "from": "", "before": "2020-01-01",
                             "after": "2099-01-01"}, ("user:bob",))]
    # Removing it keeps it in use as surely.
    git(estate, "reset", "-q", "--hard", "main~1")
    replace(estate, REG, "    expiresAt: '2020-01-01'\n", "")
    _code, removed = pull_request(estate)
    assert [c.change for c in removed if c.section == "credentials" and c.widens] == [
        "expiry extended"]


@pytest.mark.usefixtures("keyed")
def test_secret_set_never_approves_a_pending_redirect(estate: Path) -> None:
    replace(estate, REG, "registry: registry.example.com", "registry: registry.evil.example")
    before = (estate / REG).read_bytes()
    ran = secret_set(estate, "reg", "password", CANARY)
    assert ran.returncode == 1
    assert "the plaintext changed since the credential was sealed: spec.registry" in ran.stderr
    assert "connc seal reg" in ran.stderr
    assert CANARY not in ran.stdout + ran.stderr
    assert (estate / REG).read_bytes() == before
    # secret unset too (a registry has no other alternative: refused first for the seal).
    unset = in_repo(estate, "secret", "unset", "k8s", "token")
    assert unset.returncode == 1


@pytest.mark.usefixtures("keyed")
def test_a_narrowing_never_resealed_is_named_and_made_durable(estate: Path,
                                                             tmp_path: Path) -> None:
    replace(estate, K8S, "    members:\n        - team:platform\n", "    members: []\n")
    found = json.loads(in_repo(estate, "validate", "--decrypt", "--format", "json").stdout)
    wider = [f for f in found["findings"] if f["code"] == "CONNC610"]
    assert [(f["path"], f["severity"]) for f in wider] == [(K8S, "warning")]
    assert "scope.members" in wider[0]["message"]
    dry = in_repo(estate, "seal", "k8s", "--dry-run")
    assert dry.returncode == 0 and "wider than the file (scope.members)" in dry.stdout
    assert in_repo(estate, "seal", "k8s").returncode == 0
    # Durable now: widening it back is refused by render until a key holder reseals.
    replace(estate, K8S, "    members: []\n", "    members:\n        - team:platform\n")
    deploy = render(estate, "deploy", tmp_path)
    assert deploy.returncode == 1 and "scope.members" in deploy.stderr


# ---------------------------------------------------------------------------- CONNC402


@pytest.mark.usefixtures("keyed")
def test_the_advised_fix_works_when_plaintext_replaced_an_encrypted_value(
        estate: Path, tmp_path: Path) -> None:
    text = (estate / REG).read_text()
    encrypted = next(line for line in text.splitlines() if line.strip().startswith("password:"))
    replace(estate, REG, encrypted.strip(), f"password: {CANARY}")
    found = json.loads(in_repo(estate, "validate", "--format", "json").stdout)["findings"]
    [advice] = [f["message"] for f in found if f["code"] == "CONNC402"]
    assert "connc secret set reg password" in advice and CANARY not in advice
    # The MAC still counts the encrypted value that is gone: sops refuses the file, with the
    # plaintext value (not encrypted) and without it (the MAC does not match).
    with pytest.raises(SopsError):
        binary.decrypt(estate, REG, deadline=Deadline(60))
    ran = secret_set(estate, "reg", "password", "new-password")
    assert ran.returncode == 0, ran.stderr
    assert "rotate it at its service" in ran.stdout + ran.stderr
    assert CANARY not in (estate / REG).read_text()
    decrypted = binary.decrypt(estate, REG, deadline=Deadline(60))
    assert decrypted["credential"]["password"].reveal() == "new-password"
    clean = json.loads(in_repo(estate, "validate", "--decrypt", "--format", "json").stdout)
    assert not [f for f in clean["findings"] if f["path"] == REG and f["severity"] == "error"]
    out = tmp_path / "build"
    assert in_repo(estate, "render", "build", "--out", str(out)).returncode == 0
    shutil.rmtree(out)
