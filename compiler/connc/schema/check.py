"""A small JSON Schema checker for the schemas connc generates from its models.

`connc render` runs on every pipeline start, and loading pydantic costs more than the whole
decryption; so render checks the files it reads against the generated schemas (the same
contract `connc validate` enforces with the models) plus the `policy` rules they name.
It supports exactly the keywords pydantic emits for connc's models; an unknown keyword in a
schema is a bug, caught by a test that checks every generated schema.

It must accept exactly what the models accept (`tests/core/test_predicate.py` holds the two
to it over generated documents), so it follows pydantic's semantics where JSON Schema's
differ: the models are strict (no "42" for 42, no 1 for true), and a `pattern` is matched as
pydantic's Rust regex engine matches it, where `$` ends the text (Python's `re.search` would
also take "x\n" for `^x$`).
"""

from __future__ import annotations

import copy
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
    "minimum", "maximum", "exclusiveMinimum", "anyOf", "oneOf", "discriminator",
    "propertyNames", "patternProperties",
    "x-connc-check", "x-connc-rules", "x-connc-credentials",
})
_TYPES: dict[str, Any] = {"string": str, "object": dict, "array": list, "boolean": bool,
                          "null": type(None)}


class Problem(Exception):
    """`kind`: a `policy.Violation`'s kind, when a policy rule found it."""

    def __init__(self, path: DocPath, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.path, self.message, self.kind = path, message, kind


@cache
def pattern(text: str) -> re.Pattern[str]:
    """A schema pattern, compiled to match as the models match it (see the module's doc).

    Every pattern connc's models use is anchored, `^...$`: for those, a Rust-regex search is
    a Python full match. Anything else is refused here, so it cannot pass unnoticed.
    """
    if not (text.startswith("^") and text.endswith("$") and not text.endswith("\\$")):
        raise ValueError(f"schema pattern {text!r} is not anchored with ^ and $")
    return re.compile(text[1:-1])


def matches(text: str, value: str) -> bool:
    return pattern(text).fullmatch(value) is not None


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
        # By type as well as value: in Python, True == 1 and 1 == 1.0.
        if "const" in schema and not _same(data, schema["const"]):
            raise Problem(path, f"must be {schema['const']!r}")
        if "enum" in schema and not any(_same(data, option) for option in schema["enum"]):
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
            if "maximum" in schema and data > schema["maximum"]:
                raise Problem(path, f"must be at most {schema['maximum']}")
            if "exclusiveMinimum" in schema and data <= schema["exclusiveMinimum"]:
                raise Problem(path, f"must be greater than {schema['exclusiveMinimum']}")
        return data

    def typed(self, data: Any, schema: dict[str, Any], path: DocPath) -> Any:
        wanted = schema.get("type")
        if wanted is None:
            return data
        if wanted == "integer":
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
        if "pattern" in schema and not matches(schema["pattern"], data):
            raise Problem(path, f"must match {schema['pattern']}")
        check_name = schema.get("x-connc-check")
        if check_name:
            try:
                policy.VALUE_CHECKS[check_name](data)
            except policy.Violation as violation:
                raise Problem(path, violation.message, violation.kind) from None

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
                sub = next((v for k, v in patterns.items() if matches(k, key)), None)
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
            # A default sits beside a `$ref` (pydantic's nested models), or in the target.
            default = sub if "default" in sub else self.resolve(sub)
            if name not in result and "default" in default:
                result[name] = copy.deepcopy(default["default"])
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


def _same(data: Any, expected: Any) -> bool:
    return type(data) is type(expected) and data == expected
