"""GitHub App permission names and levels, checked keyless against
GitHub's table (compiler/connc/data/github_app_permissions.json); and the narrowing findings
the model's errors become (a misshapen permission name, `owner/name` repositories)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from connc.findings import Finding
from connc.schema.policy import github_permission_levels as permission_levels
from connc.schema.policy import github_permission_problem as permission_problem
from connc.validate.files import CheckContext, check_pipeline
from connc.validate.run import validate
from kit.build import connection, make_repo, pipeline, write

TABLE = Path(__file__).resolve().parents[2] / "compiler" / "connc" / "data" \
    / "github_app_permissions.json"
GITHUB_TABLE: dict[str, list[str]] = json.loads(TABLE.read_text(encoding="utf-8"))["permissions"]
LEVELS = ("read", "write", "admin")
RELEASE = "pipelines.d/release.yaml"


def test_the_table_is_the_data_file() -> None:
    assert permission_levels() == {name: tuple(levels) for name, levels in GITHUB_TABLE.items()}


@pytest.mark.parametrize(("name", "level"), [
    pytest.param(name, level, id=f"{name}-{level}")
    for name, levels in GITHUB_TABLE.items() for level in levels])
def test_every_level_github_offers_passes(name: str, level: str) -> None:
    assert permission_problem(name, level) is None


@pytest.mark.parametrize(("name", "level"), [
    pytest.param(name, level, id=f"{name}-{level}")
    for name, levels in GITHUB_TABLE.items() for level in LEVELS if level not in levels])
def test_a_level_github_does_not_offer_fails(name: str, level: str) -> None:
    problem = permission_problem(name, level)
    assert problem is not None
    code, message = problem
    assert code == "CONNC211"
    assert f"`{name}`" in message and f"not `{level}`" in message
    for offered in GITHUB_TABLE[name]:  # the message lists what the permission has
        assert f"`{offered}`" in message


def test_metadata_read_is_fine() -> None:
    assert permission_problem("metadata", "read") is None


@pytest.mark.parametrize(("name", "level", "message"), [
    ("workflows", "read", "GitHub offers `workflows` as `write`, not `read`"),
    ("organization_plan", "write", "GitHub offers `organization_plan` as `read`, not `write`"),
    ("contents", "admin", "GitHub offers `contents` as `read` or `write`, not `admin`"),
])
def test_level_messages(name: str, level: str, message: str) -> None:
    assert permission_problem(name, level) == ("CONNC211", message)


@pytest.mark.parametrize(("name", "suggestion"), [
    ("contentz", "contents"),
    ("content", "contents"),
    ("pull_request", "pull_requests"),
    ("pullrequests", "pull_requests"),
    ("workflow", "workflows"),
    ("issue", "issues"),
    ("secret", "secrets"),
    ("deployment", "deployments"),
])
def test_near_misses_get_a_suggestion(name: str, suggestion: str) -> None:
    assert permission_problem(name, "read") == (
        "CONNC210", f"`{name}` is not a GitHub App permission; did you mean `{suggestion}`?")


def test_a_far_miss_gets_no_suggestion() -> None:
    assert permission_problem("xyzzy", "read") == (
        "CONNC210", "`xyzzy` is not a GitHub App permission")


def test_an_unknown_name_is_not_also_a_level_problem() -> None:
    # One finding per entry: the name is wrong, its level cannot be judged.
    problem = permission_problem("contentz", "admin")
    assert problem is not None and problem[0] == "CONNC210"


# ---------------------------------------------------------------------------- in a pipeline


def pipeline_text(entry: str) -> str:
    return ("apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n  owner: alice\n"
            f"uses:\n  - connection: github-acme\n{entry}")


def check(tmp_path: Path, entry: str) -> list[Finding]:
    """check_pipeline on one pipeline file, as `connc validate` runs it."""
    write(tmp_path, RELEASE, pipeline_text(entry))
    context = CheckContext(root=str(tmp_path), rules=None, today=dt.date(2030, 1, 1),
                           warning_days=30)
    return list(check_pipeline(RELEASE, context).findings)


def where(found: list[Finding]) -> list[tuple[str, int, int]]:
    return [(f.code, f.line, f.column) for f in found]


def test_valid_permissions_give_no_finding(tmp_path: Path) -> None:
    entry = ("    permissions:\n      contents: write\n      metadata: read\n"
             "      workflows: write\n      repository_projects: admin\n"
             "    repositories: [api, web.site]\n")
    assert check(tmp_path, entry) == []


def test_an_unknown_name_is_reported_at_the_name(tmp_path: Path) -> None:
    found = check(tmp_path, "    permissions:\n      contents: read\n      contentz: write\n")
    assert where(found) == [("CONNC210", 10, 7)]
    assert found[0].message == ("`uses[0].permissions`: `contentz` is not a GitHub App "
                                "permission; did you mean `contents`?")


def test_a_level_is_reported_at_the_level(tmp_path: Path) -> None:
    found = check(tmp_path, "    permissions: {workflows: read}\n")
    assert where(found) == [("CONNC211", 8, 30)]  # `read`


def test_each_use_is_checked(tmp_path: Path) -> None:
    entry = ("    permissions: {issues: write}\n  - connection: github-other\n"
             "    permissions: {organization_plan: write, contentz: read}\n")
    assert sorted(where(check(tmp_path, entry))) == [("CONNC210", 10, 45), ("CONNC211", 10, 38)]


@pytest.mark.parametrize(("key", "suggestion"), [
    ("pull-requests", "pull_requests"),
    ("Contents", "contents"),
    ("'Pull Requests'", "pull_requests"),
])
def test_a_misshapen_name_is_one_finding_with_a_suggestion(tmp_path: Path, key: str,
                                                          suggestion: str) -> None:
    # The model's key pattern fails first; that error becomes the one CONNC210, not a
    # CONNC102 beside it.
    found = check(tmp_path, f"    permissions:\n      {key}: read\n")
    assert where(found) == [("CONNC210", 9, 7)]
    assert found[0].message.endswith(f"; did you mean `{suggestion}`?")
    assert key.strip("'") not in found[0].message


def test_a_misshapen_name_is_never_quoted(tmp_path: Path) -> None:
    canary = "ghp_CANARYcanaryCANARYcanaryCANARY000000"
    found = check(tmp_path, f"    permissions:\n      {canary}: read\n")
    assert [f.code for f in found if f.code != "CONNC403"] == ["CONNC210"]
    assert all(canary not in f.message for f in found)


def test_a_level_outside_read_write_admin_stays_a_model_error(tmp_path: Path) -> None:
    found = check(tmp_path, "    permissions: {contents: none}\n")
    assert [f.code for f in found] == ["CONNC102"]


def test_owner_slash_name_is_one_finding_that_does_not_quote_it(tmp_path: Path) -> None:
    found = check(tmp_path, "    repositories:\n      - api\n      - acme/web\n")
    assert where(found) == [("CONNC213", 10, 9)]
    assert "acme" not in found[0].message and "`uses[0].repositories[1]`" in found[0].message


def test_a_bare_name_with_a_bad_character_stays_a_model_error(tmp_path: Path) -> None:
    found = check(tmp_path, "    repositories: [my repo]\n")
    assert [f.code for f in found] == ["CONNC102"]


# ---------------------------------------------------------------------------- requirePermissions


GITHUB = connection("github-acme", type_="github-app",
                    spec={"clientId": "Iv23liFAKE0000000000", "installationId": 4242},
                    credential={"privateKey": "fake-private-key"})


def required(tmp_path: Path, use: dict[str, Any], *, require: bool = True) -> list[Finding]:
    document = pipeline("release")
    document["uses"] = [use, {"connection": "gitlab-acme"}]
    root = make_repo(tmp_path, connections={"github-acme": GITHUB,
                                            "gitlab-acme": connection("gitlab-acme")},
                     pipelines={"release": document}, encrypt_all=False)
    write(root, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config",
                               "githubApp": {"requirePermissions": require}})
    return [f for f in validate(root).findings if f.code == "CONNC212"]


@pytest.mark.parametrize("permissions", ["absent", None, {}])
def test_a_github_app_use_without_permissions_is_refused(tmp_path: Path,
                                                         permissions: object) -> None:
    # `permissions: null` reaches render as no narrowing at all: it must not slip through.
    use: dict[str, Any] = {"connection": "github-acme"}
    if permissions != "absent":
        use["permissions"] = permissions
    found = required(tmp_path, use)
    assert [(f.path, f.line) for f in found] == [(RELEASE, 7)]  # the `connection:` value


def test_declared_permissions_satisfy_the_policy(tmp_path: Path) -> None:
    assert required(tmp_path, {"connection": "github-acme",
                               "permissions": {"contents": "read"}}) == []


def test_without_the_policy_no_permissions_is_fine(tmp_path: Path) -> None:
    assert required(tmp_path, {"connection": "github-acme"}, require=False) == []
