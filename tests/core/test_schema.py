"""The generated JSON Schemas: committed copies are fresh, and render's checker of them
agrees with the pydantic models on every file of the corpus and the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connc.documents import YamlProblem, decode, parse
from connc.schema import check as schemacheck
from connc.schema import models
from connc.schema.generate import PACKAGED, SCHEMAS, render_schemas

ROOT = Path(__file__).resolve().parents[2]
KIND_SCHEMA = {"Connection": "connection", "Pipeline": "pipeline", "Members": "members",
               "Config": "config"}


@pytest.mark.parametrize("directory", [ROOT / "schema", PACKAGED], ids=["schema", "packaged"])
def test_committed_schemas_are_fresh(directory: Path) -> None:
    for filename, text in render_schemas().items():
        committed = directory / filename
        assert committed.read_text() == text, (
            f"{committed} is stale: run `connc schema` and `python -m connc.schema.generate`")


def _keywords(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs", "patternProperties"):
                for sub in value.values():
                    found |= _keywords(sub)
            elif key not in ("default", "enum", "const", "required", "discriminator",
                             "x-connc-rules", "x-connc-credentials"):  # data, not schemas
                found |= _keywords(value)
    elif isinstance(node, list):
        for item in node:
            found |= _keywords(item)
    return found


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_checker_knows_every_keyword_the_schemas_use(name: str) -> None:
    schema = json.loads(render_schemas()[f"{name}.schema.json"])
    assert _keywords(schema) <= schemacheck.SUPPORTED


def _load(path: Path) -> Any:
    try:
        return parse(decode(path.read_bytes())[0]).data
    except YamlProblem:
        return None


def _documents() -> list[Path]:
    """Every document of a known kind in the corpus and the demo, valid or not."""
    files = [p for p in ROOT.glob("tests/cases/**/*.yaml") if p.is_file() and not p.is_symlink()]
    files += list(ROOT.glob("connections.d/*.yaml")) + list(ROOT.glob("pipelines.d/*.yaml"))
    files += [ROOT / "members.yaml", ROOT / "connc.yaml"]
    return sorted(p for p in files
                  if isinstance(data := _load(p), dict) and data.get("kind") in KIND_SCHEMA)


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_render_checker_agrees_with_the_models(path: Path) -> None:
    data = _load(path)
    model = models.DOCUMENTS[data["kind"]]
    try:
        model.model_validate(data)
        model_ok = True
    except ValidationError:
        model_ok = False
    try:
        schemacheck.check(data, schemacheck.load(KIND_SCHEMA[data["kind"]]))
        checker_ok = True
    except schemacheck.Problem:
        checker_ok = False
    assert checker_ok == model_ok


def test_defaults_are_filled_in() -> None:
    checked = schemacheck.check(
        {"apiVersion": "connc/v1", "kind": "Pipeline", "metadata": {"id": "p", "owner": "alice"},
         "uses": [{"connection": "c"}]}, schemacheck.load("pipeline"))
    assert checked["metadata"]["teams"] == []
    assert checked["uses"][0]["refresh"] is False
    assert checked["uses"][0]["repositories"] is None


@pytest.mark.parametrize("spec, where, words", [
    ({"type": "gitlab", "url": "http://gitlab.example.com"}, ("spec", "url"), "plain http"),
    ({"type": "github-app", "installationId": 1}, ("spec",), "exactly one of clientId or appId"),
    ({"type": "git", "url": "ssh://git@example.com/x"}, ("spec",), "knownHosts"),
    ({"type": "packages", "format": "maven", "url": "https://m.example.com"}, ("spec",),
     "repositoryId"),
    ({"type": "kubernets", "server": "https://k"}, ("spec", "type"), "one of"),
])
def test_policy_rules_named_in_the_schema_are_applied(spec: dict[str, Any],
                                                      where: tuple[str, ...], words: str) -> None:
    document = {"apiVersion": "connc/v1", "kind": "Connection",
                "metadata": {"id": "c", "name": "C", "owner": "alice"},
                "scope": {"visibility": "private"}, "spec": spec, "credential": {}}
    with pytest.raises(schemacheck.Problem) as caught:
        schemacheck.check(document, schemacheck.load("connection"))
    assert caught.value.path == where
    assert words in caught.value.message


def test_tls_skip_and_ca_data_are_refused_together() -> None:
    spec = {"type": "kubernetes", "server": "https://k8s.example.com",
            "insecureSkipTlsVerify": True, "certificateAuthorityData": "eA=="}
    document = {"apiVersion": "connc/v1", "kind": "Connection",
                "metadata": {"id": "c", "name": "C", "owner": "alice"},
                "scope": {"visibility": "private"}, "spec": spec, "credential": {}}
    with pytest.raises(schemacheck.Problem, match="kubectl refuses both"):
        schemacheck.check(document, schemacheck.load("connection"))
    with pytest.raises(ValidationError, match="kubectl refuses both"):
        models.Connection.model_validate(document)
