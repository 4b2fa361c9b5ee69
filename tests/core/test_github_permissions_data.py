"""compiler/connc/data/github_app_permissions.json: GitHub App permissions as data, against
which `permissions:` asked of an installation token are checked without any key or network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kit.servers.github_fake import FakeGitHub

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = REPO_ROOT / "compiler" / "connc" / "data" / "github_app_permissions.json"
LEVEL_ORDER = ["read", "write", "admin"]


def load() -> dict[str, Any]:
    data = json.loads(TABLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_table_is_well_formed() -> None:
    data = load()
    assert set(data) == {"source", "retrieved", "note", "permissions"}
    assert "github/rest-api-description" in data["source"]
    assert "app-permissions" in data["source"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["retrieved"])
    assert isinstance(data["note"], str) and data["note"]
    permissions = data["permissions"]
    assert isinstance(permissions, dict) and len(permissions) >= 30
    assert list(permissions) == sorted(permissions)
    for name, levels in permissions.items():
        assert re.fullmatch(r"[a-z][a-z_]*[a-z]", name), name
        assert isinstance(levels, list) and levels, name
        assert set(levels) <= set(LEVEL_ORDER), name
        # Listed once each, in the order read, write, admin.
        assert levels == [level for level in LEVEL_ORDER if level in levels], name


def test_well_known_entries() -> None:
    # Spot checks against the schema, so a regenerated table that lost its enums shows up.
    permissions = load()["permissions"]
    assert permissions["contents"] == ["read", "write"]
    assert permissions["workflows"] == ["write"]
    assert permissions["organization_plan"] == ["read"]
    assert permissions["repository_projects"] == ["read", "write", "admin"]
    assert "organization_administration" in permissions


def test_the_fakes_grant_is_in_the_table() -> None:
    permissions = load()["permissions"]
    fake = FakeGitHub()  # not started: only its grant is read
    for name, level in fake.permissions.items():
        assert name in permissions, name
        assert level in permissions[name], (name, level)
