"""Every change an attacker with write access to a branch can make to move a credential
(docs/diff.md) is a widening row of `connc diff`, naming whose consent it needs (docs/approvals.md); narrowing
alone exits 0. Each test is a real commit on the estate of conftest.py, diffed as a pull request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from estate import BUILD, DEPLOY, GH, K8S, NPM, REG

from connc.diff.compare import Change
from connc.diff.run import diff
from kit.build import REPO_ROOT, commit, replace, write
from kit.keys import new_age_key
from kit.run import connc


def pull_request(repo: Path) -> tuple[int, dict[str, Any], list[Change]]:
    """Commit the working tree; `connc diff main~1 main` as exit code, JSON, and rows."""
    commit(repo)
    proc = connc("diff", "--repo", str(repo), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout), diff(repo, "main~1", "main").changes


def widening(changes: list[Change], section: str) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
    return [(c.change, c.values, c.approvers) for c in changes if c.section == section and c.widens]


def assert_every_widening_row_names_approvers(data: dict[str, Any]) -> None:
    for rows in data["changes"].values():
        for row in rows:
            assert not row["widens"] or row["approvers"], row


# ---------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(("relpath", "old", "new", "field", "owner"), [
    pytest.param(K8S, "server: https://k8s.example.com:6443", "server: https://evil.example:6443",
                 "spec.server", "bob", id="kubernetes-server"),
    pytest.param(GH, "installationId: 42", "installationId: 42\n    apiUrl: https://evil.example/api",
                 "spec.apiUrl", "alice", id="github-api-url"),
    pytest.param(NPM, "url: https://npm.example.com/", "url: https://npm.evil.example/",
                 "spec.url", "alice", id="package-index-url"),
    pytest.param(REG, "registry: registry.example.com", "registry: registry.evil.example",
                 "spec.registry", "bob", id="registry"),
    pytest.param(K8S, "server: https://k8s.example.com:6443",
                 "server: https://k8s.example.com:6443\n    insecureSkipTlsVerify: true",
                 "spec.insecureSkipTlsVerify", "bob", id="tls-verification-off"),
])
def test_an_endpoint_edited_widens(estate: Path, relpath: str, old: str, new: str, field: str,
                                   owner: str) -> None:
    replace(estate, relpath, old, new)
    code, data, changes = pull_request(estate)
    assert code == 1
    [(_change, values, approvers)] = widening(changes, "specs")
    assert values["field"] == field and approvers == (f"user:{owner}",)
    # The estate's credentials are sealed: this one will not render until resealed.
    assert [c.reseal for c in changes if c.section == "specs"] == [True]
    assert [row["reseal"] for row in data["changes"]["specs"]] == [True]
    assert_every_widening_row_names_approvers(data)


def test_the_app_default_api_url_written_out_changes_nothing(estate: Path) -> None:
    # The spec is compared with its defaults filled in, as render uses it.
    replace(estate, GH, "installationId: 42",
            "installationId: 42\n    apiUrl: https://api.github.com")
    code, _data, changes = pull_request(estate)
    assert code == 0 and not [c for c in changes if c.section == "specs"]


# ---------------------------------------------------------------------------- narrowing


@pytest.mark.parametrize(("old", "new", "field"), [
    pytest.param("- api\n", "", "repositories", id="repositories-list-removed-entry"),
    pytest.param("contents: read", "contents: write", "permissions", id="permission-raised"),
    pytest.param("metadata: read", "metadata: read\n    pull_requests: read", "permissions",
                 id="permission-added"),
])
def test_github_narrowing_loosened_widens(estate: Path, old: str, new: str, field: str) -> None:
    if field == "repositories":  # the whole list gone: the token covers every repository
        text = (estate / DEPLOY).read_text()
        document = yaml.safe_load(text)
        del document["uses"][1]["repositories"]
        write(estate, DEPLOY, document)
    else:
        replace(estate, DEPLOY, old, new)
    code, _data, changes = pull_request(estate)
    assert code == 1
    [(change, values, approvers)] = widening(changes, "narrowing")
    assert change == field and values["connection"] == "gh" and approvers == ("user:alice",)


def test_refresh_added_widens(estate: Path) -> None:
    replace(estate, DEPLOY, "- connection: gh\n", "- connection: gh\n  refresh: true\n")
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "narrowing") == [
        ("refresh", {"pipeline": "deploy", "connection": "gh", "before": "false",
                     "after": "true"}, ("user:alice",))]


def test_narrowing_the_token_is_free(estate: Path) -> None:
    replace(estate, DEPLOY, "  - web\n", "")
    replace(estate, DEPLOY, "    metadata: read\n", "")
    code, _data, changes = pull_request(estate)
    assert code == 0
    assert [c.change for c in changes if c.section == "narrowing"] == ["repositories",
                                                                      "permissions"]


# ---------------------------------------------------------------------------- keys


def test_a_key_added_to_a_user_a_team_a_pipeline_or_the_admins(estate: Path,
                                                               tmp_path: Path) -> None:
    keys = [new_age_key(tmp_path, f"k{i}.txt")[1] for i in range(4)]
    members = yaml.safe_load((estate / "members.yaml").read_text())
    members["users"]["dave"]["recipients"] = [keys[0]]
    members["teams"]["platform"]["recipients"] = [keys[1]]
    write(estate, "members.yaml", members)
    replace(estate, BUILD, "owner: bob", f"owner: bob\n  recipients:\n  - {keys[2]}")
    config = yaml.safe_load((estate / "connc.yaml").read_text())
    write(estate, "connc.yaml", {**config, "adminRecipients": [keys[3]]})
    code, data, changes = pull_request(estate)
    assert code == 1
    # dave is in team data: his key now decrypts what the team may, too.
    assert sorted((v["principal"], a) for _c, v, a in widening(changes, "keys")) == [
        ("adminRecipients", ("admins",)), ("pipeline:build", ("admins",)),
        ("team:data", ("admins",)), ("team:platform", ("admins",)), ("user:dave", ("admins",))]
    assert_every_widening_row_names_approvers(data)


def test_a_recipient_added_to_a_sops_rule(estate: Path, tmp_path: Path) -> None:
    _file, key = new_age_key(tmp_path)
    replace(estate, ".sops.yaml", "age: ", f"age: {key},")
    code, _data, changes = pull_request(estate)
    assert code == 1
    [(change, values, approvers)] = widening(changes, "policy")
    assert change == "recipient added" and values["file"] == ".sops.yaml"
    assert approvers == ("admins",)


def test_a_sops_rule_path_changed(estate: Path) -> None:
    replace(estate, ".sops.yaml", r"^connections\.d/", r"connections\.d/")
    code, _data, changes = pull_request(estate)
    assert code == 1 and [c for _c, _v, a in widening(changes, "policy")
                          for c in [a]] == [("admins",)]


# ---------------------------------------------------------------------------- people


def test_a_user_added_to_a_team(estate: Path) -> None:
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - carol")
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "teams") == [
        ("member added", {"team": "data", "user": "carol"}, ("admins",))]


def test_a_github_account_changed_hands(estate: Path) -> None:
    # Whoever holds bob's account approves as bob: an admin must consent.
    replace(estate, "members.yaml", "github: bobm", "github: mallory")
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "users") == [
        ("account changed", {"user": "bob", "before": "bobm", "after": "mallory"},
         ("admins",))]


def test_a_connection_changes_hands(estate: Path) -> None:
    replace(estate, REG, "owner: bob", "owner: dave")
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "scopes") == [
        ("owner changed", {"connection": "reg", "before": "bob", "after": "dave"},
         ("user:bob", "user:dave"))]


def test_a_pipeline_created_claims_its_owner(estate: Path) -> None:
    write(estate, "pipelines.d/steal.yaml", {
        "apiVersion": "connc/v1", "kind": "Pipeline",
        "metadata": {"id": "steal", "owner": "bob", "teams": ["platform"]},
        "uses": [{"connection": "k8s"}]})
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "pipelines") == [
        ("added", {"pipeline": "steal", "owner": "bob", "teams": "platform"}, ("user:bob",))]
    assert ("added", {"pipeline": "steal", "connection": "k8s", "before": "",
                      "after": "uses"}, ("user:bob",)) in widening(changes, "grants")


def test_policies_switched_off_and_admins_added(estate: Path) -> None:
    write(estate, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config",
                                 "admins": ["carol", "dave"], "requireSeals": False})
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert sorted((c, v["field"]) for c, v, _a in widening(changes, "policy")) == [
        ("admin added", "admins"), ("turned off", "requireSeals")]


# ---------------------------------------------------------------------------- identity


def test_a_committed_symlink_into_another_folder(estate: Path) -> None:
    # render would have followed it to a file no review of pipelines.d/ covers.
    write(estate, "docs/evil.yaml", {"apiVersion": "connc/v1", "kind": "Pipeline",
                                     "metadata": {"id": "evil", "owner": "alice"},
                                     "uses": [{"connection": "npm"}]})
    (estate / "pipelines.d" / "evil.yaml").symlink_to("../docs/evil.yaml")
    code, data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "integrity") == [
        ("a symlink", {"file": "pipelines.d/evil.yaml", "at": "head"}, ("nobody",))]
    assert not [c for c in changes if c.section == "unread"]  # never "not read" and fine
    assert_every_widening_row_names_approvers(data)


def test_two_pipeline_files_with_one_id_fail_closed(estate: Path) -> None:
    text = (estate / DEPLOY).read_text()
    write(estate, "pipelines.d/deploy-copy.yaml", text.replace("  teams:\n  - platform\n", ""))
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "integrity") == [
        ("its id does not match its file name",
         {"file": "pipelines.d/deploy-copy.yaml", "at": "head"}, ("nobody",))]


def test_the_working_tree_is_read_as_render_reads_it(estate: Path) -> None:
    (estate / "pipelines.d" / "link.yaml").symlink_to("deploy.yaml")
    result = diff(estate, "main")
    assert result.widened
    assert [c.values["file"] for c in result.changes if c.section == "integrity"] == [
        "pipelines.d/link.yaml"]


# ---------------------------------------------------------------------------- narrowing only


def test_public_to_custom_with_members_is_narrower(estate: Path) -> None:
    replace(estate, NPM, "visibility: public",
            "visibility: custom\n    members:\n        - team:platform")
    code, _data, changes = pull_request(estate)
    assert code == 0
    assert [(c.change, c.widens) for c in changes if c.section == "scopes"] == [
        ("visibility narrowed", False), ("member added", False)]


def test_removals_are_free(estate: Path) -> None:
    replace(estate, K8S, "- team:platform", "- user:alice")
    replace(estate, "members.yaml", "    members:\n    - dave\n", "    members: []\n")
    replace(estate, ".sops.yaml", "mac_only_encrypted: true",
            "mac_only_encrypted: true")  # unchanged
    write(estate, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config", "admins": [],
                                 "requireSeals": True})
    code, _data, changes = pull_request(estate)
    # team:platform -> user:alice: alice's pipelines were in platform already, but the
    # member sets are compared as written: a new member is a new member.
    assert code == 1
    assert {c.section for c in changes if c.widens} == {"scopes"}


def test_a_sops_rule_needing_fewer_groups(estate: Path, tmp_path: Path) -> None:
    # Two key groups, both needed; then either one: fewer people must cooperate to decrypt.
    _file, other = new_age_key(tmp_path)
    rules = yaml.safe_load((estate / ".sops.yaml").read_text())
    rule = rules["creation_rules"][0]
    first = rule.pop("age")
    rule.update(key_groups=[{"age": [first]}, {"age": [other]}], shamir_threshold=2)
    write(estate, ".sops.yaml", rules)
    commit(estate, "two groups")
    rule["shamir_threshold"] = 1
    write(estate, ".sops.yaml", rules)
    code, _data, changes = pull_request(estate)
    assert code == 1
    assert widening(changes, "policy") == [
        ("key groups changed", {"file": ".sops.yaml", "field": "creation rule 1",
                                "before": "2 of 2 key groups", "after": "1 of 2 key groups"},
         ("admins",))]
