"""A small JSON Schema checker for the schemas connc generates from its models.

`connc render` runs on every pipeline start, and loading pydantic costs more than the whole
decryption; so render checks the files it reads against the generated schemas (the same
contract `connc validate` enforces with the models) plus the `policy` rules they name.
It supports exactly the keywords pydantic emits for connc's models; an unknown keyword in a
schema is a bug, caught by a test that checks every generated schema.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from connc.schema import policy

DocPath = tuple[str | int, ...]
SUPPORTED = frozenset({
    "$defs", "$ref", "$schema", "$id", "title", "description", "default", "type", "properties",
    "required", "additionalProperties", "items", "enum", "const", "pattern", "minLength",
    "minimum", "exclusiveMinimum", "anyOf", "oneOf", "discriminator", "propertyNames", "format",
    "patternProperties",
    "x-connc-check", "x-connc-rules",
})
_TYPES: dict[str, Any] = {"string": str, "object": dict, "array": list, "boolean": bool,
                          "null": type(None)}


class Problem(Exception):
    def __init__(self, path: DocPath, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


@cache
def load(name: str) -> dict[str, Any]:
    """A packaged schema (`connection`, `pipeline`, `members`, `config`)."""
    # Beside this module (not importlib.resources: render's start-up pays for every import).
    schema: dict[str, Any] = json.loads(
        (Path(__file__).parent / f"{name}.schema.json").read_text(encoding="utf-8"))
    return schema


def check(data: Any, schema: dict[str, Any]) -> Any:
    """The data with defaults filled in; raises Problem at the first violation."""
    return _Checker(schema).value(data, schema, ())


class _Checker:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.root["$defs"][name]
        return schema

    def value(self, data: Any, schema: dict[str, Any], path: DocPath) -> Any:
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return self.any_of(data, schema["anyOf"], path)
        if "oneOf" in schema:
            return self.one_of(data, schema, path)
        if "const" in schema and data != schema["const"]:
            raise Problem(path, f"must be {schema['const']!r}")
        if "enum" in schema and data not in schema["enum"]:
            raise Problem(path, "must be one of " + ", ".join(map(str, schema["enum"])))
        data = self.typed(data, schema, path)
        if isinstance(data, dict):
            data = self.mapping(data, schema, path)
        elif isinstance(data, list) and "items" in schema:
            data = [self.value(item, schema["items"], path + (i,)) for i, item in enumerate(data)]
        elif isinstance(data, str):
            self.string(data, schema, path)
        elif isinstance(data, int) and not isinstance(data, bool):
            if "minimum" in schema and data < schema["minimum"]:
                raise Problem(path, f"must be at least {schema['minimum']}")
            if "exclusiveMinimum" in schema and data <= schema["exclusiveMinimum"]:
                raise Problem(path, f"must be greater than {schema['exclusiveMinimum']}")
        return data

    def typed(self, data: Any, schema: dict[str, Any], path: DocPath) -> Any:
        wanted = schema.get("type")
        if wanted is None:
            return data
        if wanted == "integer":
            if isinstance(data, str) and re.fullmatch(r"[0-9]+", data):
                return int(data)  # as pydantic's lax mode does
            if not isinstance(data, int) or isinstance(data, bool):
                raise Problem(path, "must be an integer")
            return data
        # bool is an int in Python, but not in JSON Schema.
        if not isinstance(data, _TYPES[wanted]) or (isinstance(data, bool) and wanted != "boolean"):
            raise Problem(path, f"must be of type {wanted}")
        return data

    def string(self, data: str, schema: dict[str, Any], path: DocPath) -> None:
        if "minLength" in schema and len(data) < schema["minLength"]:
            raise Problem(path, "must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], data):
            raise Problem(path, f"must match {schema['pattern']}")
        if schema.get("format") == "date":
            try:
                dt.date.fromisoformat(data)
            except ValueError:
                raise Problem(path, "must be a date (YYYY-MM-DD)") from None
        if schema.get("format") == "date-time":
            try:
                dt.datetime.fromisoformat(data)
            except ValueError:
                raise Problem(path, "must be a date and time") from None
        check_name = schema.get("x-connc-check")
        if check_name:
            try:
                policy.VALUE_CHECKS[check_name](data)
            except policy.Violation as violation:
                raise Problem(path, violation.message) from None

    def mapping(self, data: dict[str, Any], schema: dict[str, Any], path: DocPath) -> dict[str, Any]:
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in data:
                raise Problem(path + (name,), "is required")
        result = {}
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        patterns = schema.get("patternProperties")
        for key, item in data.items():
            if names is not None:
                self.string(key, names, path + (key,))
            if key in properties:
                result[key] = self.value(item, properties[key], path + (key,))
            elif patterns is not None:
                # pydantic emits this for dict keys with a pattern, and refuses other keys.
                sub = next((v for k, v in patterns.items() if re.search(k, key)), None)
                if sub is None:
                    raise Problem(path + (key,), "is not a valid name")
                result[key] = self.value(item, sub, path + (key,))
            elif extra is False:
                raise Problem(path + (key,), "is not a known field")
            elif isinstance(extra, dict):
                result[key] = self.value(item, extra, path + (key,))
            else:
                result[key] = item
        for name, sub in properties.items():
            sub = self.resolve(sub)
            if name not in result and "default" in sub:
                result[name] = sub["default"]
        for rule in schema.get("x-connc-rules", []):
            try:
                policy.OBJECT_RULES[rule](result)
            except policy.Violation as violation:
                raise Problem(path, violation.message) from None
        return result

    def any_of(self, data: Any, options: list[dict[str, Any]], path: DocPath) -> Any:
        first: Problem | None = None
        for option in options:
            try:
                return self.value(data, option, path)
            except Problem as problem:
                first = first or problem
        assert first is not None
        raise first

    def one_of(self, data: Any, schema: dict[str, Any], path: DocPath) -> Any:
        discriminator = schema.get("discriminator")
        if discriminator and isinstance(data, dict):
            tag = data.get(discriminator["propertyName"])
            target = discriminator["mapping"].get(tag) if isinstance(tag, str) else None
            if target is None:
                raise Problem(path + (discriminator["propertyName"],),
                              "must be one of " + ", ".join(discriminator["mapping"]))
            return self.value(data, {"$ref": target}, path)
        return self.any_of(data, schema["oneOf"], path)
