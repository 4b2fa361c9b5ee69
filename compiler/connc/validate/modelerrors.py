"""Pydantic validation errors as findings at the line and column of the key or value."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from connc.documents import Document
from connc.findings import Finding, dotted, finding, suggest
from connc.schema.connection_types import NAMES as TYPE_NAMES
from connc.schema.policy import URL_VIOLATIONS, malformed_permission_message


def findings_from(error: ValidationError, model: type[BaseModel], doc: Document,
                  relpath: str) -> list[Finding]:
    results: list[Finding] = []
    for item in error.errors(include_input=False, include_url=False):
        loc = _data_path(item["loc"])
        if loc[-1:] == ("expiresAt",) and item["type"] == "string_pattern_mismatch":
            # The pattern is the date's shape; the words say it better than the regex.
            results.append(finding(relpath, *doc.position(loc), "CONNC102",
                                   f"`{dotted(loc)}` must be a date, YYYY-MM-DD (or the "
                                   f"timestamp sops writes for it, YYYY-MM-DDT00:00:00Z)"))
            continue
        results.append(_one(item["type"], item["msg"], loc, model, doc, relpath))
    return results


def _data_path(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # Discriminated unions add the tag to the location: ('spec', 'kubernetes', 'server').
    path: list[str | int] = []
    for step in loc:
        if path and path[-1] == "spec" and step in TYPE_NAMES:
            continue
        path.append(step)
    return tuple(path)



def _one(kind: str, msg: str, loc: tuple[str | int, ...], model: type[BaseModel], doc: Document,
         relpath: str) -> Finding:
    where = dotted(loc)
    if kind == "extra_forbidden":
        line, column = doc.position(loc, key=True)
        allowed = allowed_fields(model, loc[:-1], doc.data)
        hint = suggest(str(loc[-1]), allowed)
        return finding(relpath, line, column, "CONNC101", f"unknown field `{where}`{hint}")
    if kind == "missing" and isinstance(_value_at(doc.data, loc), dict):
        # A model validator's own "missing" (e.g. ssh:// without knownHosts) is located at
        # the mapping it checked, and its message says what is missing.
        line, column = doc.position(loc, key=True)
        return finding(relpath, line, column, "CONNC103", f"`{where}`: {msg}")
    if kind == "missing":
        line, column = doc.position(loc[:-1], key=True) if len(loc) > 1 else (1, 1)
        return finding(relpath, line, column, "CONNC103", f"`{where}` is required")
    if _is_permission_key(loc):
        # One finding for a misshapen permission name: the check of names (CONNC210) never
        # sees it, since the pipeline is invalid.
        line, column = doc.position(loc[:-1], key=True)
        return finding(relpath, line, column, "CONNC210",
                       malformed_permission_message(dotted(loc[:-2]), str(loc[-2])))
    if loc and loc[-1] == "[key]":
        # A mapping key that failed validation: anything could have been pasted there, so
        # point at it and name its mapping, never quote it.
        line, column = doc.position(loc[:-1], key=True)
        return finding(relpath, line, column, "CONNC102",
                       f"`{dotted(loc[:-2])}` has an invalid key: {msg}")
    if kind == "known_hosts_foreign":
        # The rule checks the whole spec (it needs the url); the line to fix is in knownHosts.
        line, column = doc.position(loc + ("knownHosts",), key=True)
        return finding(relpath, line, column, "CONNC110", f"`{where}`: {msg}")
    line, column = doc.position(loc)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        value = _value_at(doc.data, loc + ("type",))
        line, column = doc.position(loc + ("type",))
        if kind == "union_tag_not_found" or not isinstance(value, str):
            return finding(relpath, line, column, "CONNC103",
                           f"`{where}.type` is required: one of {', '.join(TYPE_NAMES)}")
        return finding(relpath, line, column, "CONNC102",
                       f"`{where}.type` is not a connection type{suggest(value, TYPE_NAMES)}"
                       f" (one of {', '.join(TYPE_NAMES)})")
    if loc in (("apiVersion",), ("kind",)):
        return finding(relpath, line, column, "CONNC104", f"`{where}`: {msg}")
    if kind in URL_VIOLATIONS:
        return finding(relpath, line, column, "CONNC107", f"`{where}` {msg}")
    if kind == "string_pattern_mismatch" and _is_repository(loc) \
            and "/" in str(_value_at(doc.data, loc)):
        # GitHub's own 422 would come at render time; the value is not quoted (it could be
        # anything pasted), the fix is in the message.
        return finding(relpath, line, column, "CONNC213",
                       f"`{where}` names an owner: GitHub narrows a token to repositories of "
                       f"the installation's account, by bare name; keep the part after `/`")
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "id":
        msg = "must be lowercase letters, digits and dashes, 1 to 63 characters, " \
              "starting and ending with a letter or digit"
    return finding(relpath, line, column, "CONNC102", f"`{where}`: {msg}")


def _is_permission_key(loc: tuple[str | int, ...]) -> bool:
    """uses[i].permissions.<key>.[key]: the name of a permission failed its pattern."""
    return len(loc) == 5 and loc[0] == "uses" and loc[2] == "permissions" and loc[4] == "[key]"


def _is_repository(loc: tuple[str | int, ...]) -> bool:
    """uses[i].repositories[j]"""
    return len(loc) == 4 and loc[0] == "uses" and loc[2] == "repositories"


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(data, dict) and step in data:
            data = data[step]
        elif isinstance(data, list) and isinstance(step, int) and step < len(data):
            data = data[step]
        else:
            return None
    return data


def allowed_fields(model: type[BaseModel], path: tuple[str | int, ...], data: Any) -> list[str]:
    """Field names (as spelled in YAML) of the model that sits at `path` in the document."""
    current: type[BaseModel] | None = model
    for depth, step in enumerate(path):
        if current is None:
            return []
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == step), None)
        if field is None:
            continue  # a list index or a dict key: stay on the element model
        current = _pick_model(field.annotation, _value_at(data, path[: depth + 1]))
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def _pick_model(annotation: Any, value: Any) -> type[BaseModel] | None:
    models = list(_models_in(annotation))
    if len(models) <= 1:
        return models[0] if models else None
    wanted = value.get("type") if isinstance(value, dict) else None
    for candidate in models:
        field = candidate.model_fields.get("type")
        if field is not None and wanted in typing.get_args(field.annotation):
            return candidate
    return None


def _models_in(annotation: Any) -> typing.Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _models_in(typing.get_args(annotation)[0])
        return
    if origin is dict:
        yield from _models_in(typing.get_args(annotation)[1])
        return
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)
