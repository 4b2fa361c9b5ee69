"""`schema.connection_types`: every connection type is one complete entry.

Complete means: its spec and credential models exist, say which type they are and document
every field (docs/formats.md, the JSON Schemas and `connc new` show those docstrings); `connc
new` has a value for every spec field without a default, and what it writes validates; its
writer is a render module with `write`, its probe a check module with `probe` and `reach`, each
with the signature of its protocol. The models, render and check find a type through the table
only, so a new type is one entry here and its own files.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

import pytest

from connc.check import reach_run, run
from connc.check.probe import Probe
from connc.check.reach import Reacher
from connc.render.context import Writer
from connc.schema import connection_types, models
from connc.schema.connection_types import ConnectionType
from kit.build import REPO_ROOT

# What each part of an entry must be: the family its module lives in, and the functions it
# must have, with the signature of the protocol that render or check calls it through.
PARTS: dict[str, tuple[str, list[Callable[..., Any]]]] = {
    "writer": ("connc.render.", [Writer.write]),
    "probe": ("connc.check.", [Probe.probe, Reacher.reach]),
}


def _signature(function: Callable[..., Any], method: bool) -> list[tuple[str, Any]]:
    parameters = list(inspect.signature(function).parameters.values())[1 if method else 0:]
    return [(p.name, p.annotation) for p in parameters] + [
        ("return", inspect.signature(function).return_annotation)]


def _module(path: str) -> ModuleType | str:
    try:
        return importlib.import_module(path)
    except ImportError as error:
        return f"cannot be imported ({error})"


def problems(entry: ConnectionType) -> list[str]:
    """What keeps `entry` from being complete; nothing when it is."""
    found = []
    spec = getattr(models, entry.spec, None)
    if not (isinstance(spec, type) and issubclass(spec, models.Model)):
        return [f"spec: no model {entry.spec} in connc.schema.models"]
    type_field = spec.model_fields.get("type")
    if type_field is None or type_field.annotation != Literal[entry.name]:
        found.append(f"spec: {entry.spec}.type is not Literal[{entry.name!r}]")
    credential = getattr(models, entry.credential, None)
    if not (isinstance(credential, type) and issubclass(credential, models.Credential)):
        return [*found, f"credential: no credential model {entry.credential}"]
    if not credential.alternatives:
        found.append(f"credential: {entry.credential} lists no alternatives")
    for model in (spec, credential):
        found += [f"field docs: {model.__name__}.{name} has no docstring"
                  for name, field in model.model_fields.items() if not field.description]
    if entry.secretless != (credential is models.SecretlessCredential):
        found.append("secretless: a type stores no secret exactly when its credential is "
                     "SecretlessCredential")
    required = {field.alias or name for name, field in spec.model_fields.items()
                if field.is_required()} - {"type"}
    if missing := sorted(required - set(entry.placeholders)):
        found.append(f"template: no placeholder for {', '.join(missing)}")
    try:
        spec.model_validate({"type": entry.name, **entry.placeholders})
    except ValueError as error:
        found.append(f"template: its placeholders do not validate ({error})")
    for part, (family, protocol) in PARTS.items():
        path = getattr(entry, part)
        module = _module(path)
        if not path.startswith(family):
            found.append(f"{part}: {path} is not a module of {family.rstrip('.')}")
        if isinstance(module, str):
            found.append(f"{part}: {path} {module}")
            continue
        for method in protocol:
            function = getattr(module, method.__name__, None)
            if not callable(function):
                found.append(f"{part}: {path} has no {method.__name__}")
            elif _signature(function, False) != _signature(method, True):
                found.append(f"{part}: {path}.{method.__name__} does not have the protocol's "
                             f"signature")
    return found


@pytest.mark.parametrize("entry", connection_types.TYPES, ids=lambda entry: entry.name)
def test_every_type_is_complete(entry: ConnectionType) -> None:
    assert problems(entry) == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"spec": "GitLabSpecs"}, "spec: no model GitLabSpecs"),
    ({"spec": "GitSpec"}, "spec: GitSpec.type is not Literal['gitlab']"),
    ({"credential": "Model"}, "credential: no credential model Model"),
    ({"secretless": True}, "secretless: a type stores no secret exactly when"),
    ({"name": "git", "spec": "GitSpec"}, "template: no placeholder for url"),
    ({"placeholders": {"url": "http://gitlab.example"}}, "template: its placeholders do not"),
    ({"writer": "connc.render.gits"}, "writer: connc.render.gits cannot be imported"),
    ({"writer": "connc.check.git"}, "writer: connc.check.git is not a module of connc.render"),
    ({"probe": "connc.check.gitlab"}, "probe: connc.check.gitlab has no probe"),
    ({"probe": "connc.render.git"}, "probe: connc.render.git is not a module of connc.check"),
])
def test_an_incomplete_entry_is_named(change: dict[str, Any], problem: str) -> None:
    entry = dataclasses.replace(connection_types.BY_NAME["gitlab"], **change)
    assert any(found.startswith(problem) for found in problems(entry)), problems(entry)


def test_a_field_without_docs_or_a_probe_of_another_shape_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from connc.check import github_app

    monkeypatch.setattr(models.GitLabSpec.model_fields["url"], "description", None)
    monkeypatch.setattr(github_app, "reach", lambda resolved, context: None)
    entry = connection_types.BY_NAME["gitlab"]
    assert "field docs: GitLabSpec.url has no docstring" in problems(entry)
    assert "probe: connc.check.github_app.reach does not have the protocol's signature" in \
        problems(connection_types.BY_NAME["github-app"])


def test_the_models_render_and_check_read_the_one_table() -> None:
    names = list(connection_types.NAMES)
    assert list(models.spec_models()) == names
    assert list(models.CREDENTIALS) == names
    assert [model.__name__ for model in models.spec_models().values()] == \
        [entry.spec for entry in connection_types.TYPES]
    assert list(run.PROBES) == names
    assert list(reach_run.REACHERS) == names
    assert {name: module.__name__ for name, module in run.PROBES.items()} == \
        {entry.name: entry.probe for entry in connection_types.TYPES}


def test_each_writer_runs_once_in_the_tables_order() -> None:
    from connc.render.compose import _by_writer
    from connc.render.context import Resolved

    resolved = [Resolved(name, {"type": name}, {}, {}) for name in reversed(connection_types.NAMES)]
    order = [(module.__name__, [item.type for item in items])  # type: ignore[attr-defined]
             for module, items in _by_writer(resolved)]
    assert order == [
        ("connc.render.git", ["git", "bitbucket", "codeup", "gitlab-self-hosted", "gitlab",
                              "github-app"]),
        ("connc.render.docker", ["aws-ecr", "container-registry"]),
        ("connc.render.kube", ["kubernetes"]), ("connc.render.packages", ["packages"]),
        ("connc.render.pypirc", ["pypi-publish"])]


def test_the_table_is_light_and_imports_only_what_is_asked() -> None:
    # Render reads it at start-up: no pydantic, and no writer until a pipeline needs one.
    code = ("import sys\nfrom connc.schema import connection_types as t\n"
            "before = sorted(m for m in sys.modules if m.startswith(('pydantic', 'connc.')))\n"
            "t.modules('writer', frozenset({'pypi-publish'}))\n"
            "after = sorted(m for m in sys.modules if m.startswith('connc.render.'))\n"
            "print(before, after)")
    ran = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    before, after = ran.stdout.split("] [")
    assert "pydantic" not in before and "connc.render" not in before, before
    assert "connc.render.pypirc" in after and "connc.render.git'" not in after, after
