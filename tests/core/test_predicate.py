"""One acceptance predicate: render's checker (`schema.check`, the generated JSON Schemas)
accepts exactly what validate's pydantic models accept, and reads the same values from it.

Render checks files without pydantic (its start-up path), so the two are separate code; this
is what makes them one predicate. Documents are generated from the schemas themselves, with
every pattern, enum, const, length, bound and type near its edge — a valid value, the same
value with a trailing newline (`$` in Python's `re.search` also matches before it), a
leading space, a look-alike digit, another type that Python compares equal (True == 1,
1 == 1.0), a number too large, a field spelt the Python way, a missing or an extra key.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connc.schema import check, models

KINDS = {"Connection": "connection", "Pipeline": "pipeline", "Members": "members",
         "Config": "config"}

# Values of another kind than a field wants, or at its edges: each is wrong somewhere.
HOSTILE: list[Any] = [None, True, False, 0, 1, -1, 1.0, 2.5, 2**63, 2**63 - 1, 10**40, "",
                      " ", "x\n", "1", "true", "٣", "é", [], {}, ["x"], {"x": 1}]
# Text for the fields a `policy` check reads, valid and not (the same function runs on both
# sides; what is compared is the layer around it: type, pattern, anyOf).
CHECKED_TEXT = {
    "https-url": ["https://git.example.com", "https://git.example.com/org/",
                  "http://127.0.0.1:8080"],
    "git-url": ["https://git.example.com/org", "ssh://git@git.example.com/org"],
    "registry": ["registry.example.com:5000", "https://index.docker.io/v1/"],
    "date": ["2027-03-01", "2027-03-01T00:00:00Z", "2027-03-01T00:00:00+02:00"],
}
BAD_TEXT = ["http://evil.example", "https://u:p@host", "https://host:99999", "https://host?q",
            "https://host\n", "not a url", "2027-W09-1", "20270301", "2027-02-30",
            "2027-03-01\n", "2027-03-01 ", "", "https://h.example/a%0a/", "https://2130706433/",
            "https://h.example:0/", "https://b\u00fccher.example/", "registry.example:00"]
# The chance, per value, that it is drawn from the edges instead of the valid values. Low,
# so that most documents are wrong in one place at most: a document wrong everywhere is
# refused by both sides for the first reason, and compares nothing.
MUTATION = 4  # percent


def _mutate(draw: st.DrawFn, percent: int = MUTATION) -> bool:
    # Drawn so that hypothesis' simplest choice (0) is "no mutation": it shrinks a failing
    # document towards the one value that makes the two sides disagree.
    return draw(st.integers(0, 99)) >= 100 - percent


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _or_edge(valid: st.SearchStrategy[Any], edges: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        return draw(edges) if _mutate(draw) else draw(valid)

    return pick()


def _string(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    edges: list[st.SearchStrategy[Any]] = [st.sampled_from(HOSTILE)]
    if "x-connc-check" in schema:
        valid: st.SearchStrategy[Any] = st.sampled_from(CHECKED_TEXT[schema["x-connc-check"]])
        edges.append(st.sampled_from(BAD_TEXT))
    elif "pattern" in schema:
        valid = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        valid = st.text(min_size=schema.get("minLength", 0), max_size=8)
    # Each valid value pushed just over the edge of its pattern or length.
    edges += [valid.map(lambda v: v + "\n"), valid.map(lambda v: " " + v),
              valid.map(lambda v: v + "\r"), valid.map(lambda v: v.upper()),
              valid.map(lambda v: v + "\u0661"), valid.map(lambda v: v[:-1] + "\n"),
              st.just("")]
    return _or_edge(valid, st.one_of(edges))


def _integer(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
    high = schema.get("maximum", 10**6)
    edges = {0, 1, -1, 2**63, 2**63 - 1, 10**4400, low - 1, low, high, high + 1}
    ordered = sorted(edges)
    # As text, the way a YAML scalar too long for int() stays (documents._scalar).
    texts = [str(edge) for edge in ordered if edge < 10**100] + ["9" * 4400]
    return _or_edge(st.integers(low, min(high, low + 10**6)),
                    st.one_of(st.sampled_from(ordered), st.sampled_from(texts),
                              st.sampled_from([True, False, 3.0, None])))


# The strategy of each (schema, depth), built once: `_objects` asks for its fields' strategies
# at every draw, and building them again (regexes, nested composites) cost most of the run.
# Keyed by the root's id, the root kept alive beside its strategies so that no other root
# takes its id.
_STRATEGIES: dict[int, tuple[dict[str, Any], dict[tuple[str, int], st.SearchStrategy[Any]]]] = {}


def values(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    _root, built = _STRATEGIES.setdefault(id(root), (root, {}))
    key = (json.dumps(schema, sort_keys=True), depth)
    if key not in built:
        built[key] = _values(schema, root, depth)
    return built[key]


def _values(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    schema = _resolve(schema, root)
    hostile = st.sampled_from(HOSTILE)
    if depth > 6:
        return hostile
    if "oneOf" in schema:
        options = [values({"$ref": ref}, root, depth + 1)
                   for ref in schema["discriminator"]["mapping"].values()]
        return _or_edge(st.one_of(*options), hostile)
    if "anyOf" in schema:
        return st.one_of(*(values(option, root, depth + 1) for option in schema["anyOf"]))
    if "const" in schema:
        return _or_edge(st.just(schema["const"]), hostile)
    if "enum" in schema:
        return _or_edge(st.sampled_from(schema["enum"]), hostile)
    wanted = schema.get("type")
    if wanted == "string":
        return _string(schema)
    if wanted == "integer":
        return _integer(schema)
    if wanted == "boolean":
        return _or_edge(st.booleans(), st.sampled_from([0, 1, "true", "yes", None]))
    if wanted == "null":
        return _or_edge(st.none(), hostile)
    if wanted == "array":
        items = values(schema.get("items", {}), root, depth + 1)
        return _or_edge(st.lists(items, max_size=3), hostile)
    if wanted == "object":
        return _or_edge(_objects(schema, root, depth), hostile)
    return _or_edge(st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
                    hostile)  # `credential`: any mapping


def _objects(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    required = schema.get("required", [])

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        result = {}
        for name, sub in properties.items():
            if name in required or draw(st.integers(0, 1)):
                result[name] = draw(values(sub, root, depth + 1))
        extra = schema.get("additionalProperties", True)
        patterns = schema.get("patternProperties")
        if patterns or isinstance(extra, dict):
            for _ in range(draw(st.integers(0, 2))):
                sub = next(iter(patterns.values())) if patterns else extra
                key_schema = {"type": "string", **schema.get("propertyNames", {})}
                if patterns:
                    key_schema["pattern"] = next(iter(patterns))
                key = draw(_string(key_schema))
                if isinstance(key, str):
                    result[key] = draw(values(sub, root, depth + 1))
        if _mutate(draw, 3 * MUTATION):
            mutation = draw(st.sampled_from(["drop", "extra", "snake"]))
            if mutation == "drop" and required:
                result.pop(draw(st.sampled_from(required)), None)
            elif mutation == "extra":
                result["unknownField"] = draw(st.sampled_from(HOSTILE))
            elif mutation == "snake" and properties:
                name = draw(st.sampled_from(sorted(properties)))
                if name in result and _camel_to_snake(name) != name:
                    result[_camel_to_snake(name)] = result.pop(name)
        return result

    return build()


def _model_accepts(kind: str, data: Any) -> dict[str, Any] | None:
    try:
        parsed = models.DOCUMENTS[kind].model_validate(data)
    except ValidationError:
        return None
    return parsed.model_dump(by_alias=True)


def _checker_accepts(kind: str, data: Any) -> dict[str, Any] | None:
    try:
        checked: dict[str, Any] = check.check(copy.deepcopy(data),
                                              check.load(KINDS[kind]))
        return checked
    except check.Problem:
        return None


def _agree(kind: str, data: Any) -> None:
    by_model, by_checker = _model_accepts(kind, data), _checker_accepts(kind, data)
    assert (by_model is None) == (by_checker is None), (
        f"validate {'accepts' if by_model is not None else 'refuses'} and render "
        f"{'accepts' if by_checker is not None else 'refuses'}: {data!r}")
    # Both accept: both read the same values, defaults included.
    assert by_model == by_checker


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_render_accepts_exactly_what_validate_accepts(kind: str) -> None:
    schema = check.load(KINDS[kind])

    outcomes: dict[str, int] = {"accepted": 0, "refused": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(values(schema, schema))
    def agree(data: Any) -> None:
        _agree(kind, data)
        outcomes["accepted" if _checker_accepts(kind, data) is not None else "refused"] += 1

    agree()
    # Both outcomes are exercised: a generator whose documents all fail for the first reason
    # would compare nothing.
    assert min(outcomes.values()) >= 5, outcomes


@pytest.mark.parametrize(("kind", "data"), [
    # Each of these was read one way by validate and another by render.
    ("Pipeline", {"apiVersion": "connc/v1", "kind": "Pipeline",
                  "metadata": {"id": "p", "owner": "alice\n"}}),
    ("Pipeline", {"apiVersion": "connc/v1", "kind": "Pipeline",
                  "metadata": {"id": "p", "owner": "alice"},
                  "uses": [{"connection": "c", "refresh": "yes"}]}),
    ("Config", {"apiVersion": "connc/v1", "kind": "Config", "expiry_warning_days": 3}),
    ("Config", {"apiVersion": "connc/v1", "kind": "Config", "expiryWarningDays": "5"}),
    ("Config", {"apiVersion": "connc/v1", "kind": "Config", "requireSeals": 1}),
    ("Connection", {"apiVersion": "connc/v1", "kind": "Connection",
                    "metadata": {"id": "c", "name": "c", "owner": "alice",
                                 "expiresAt": "2027-W09-1"},
                    "scope": {"visibility": "private"}, "spec": {"type": "gitlab"},
                    "credential": {}}),
    ("Connection", {"apiVersion": "connc/v1", "kind": "Connection",
                    "metadata": {"id": "c", "name": "c", "owner": "alice", "expiresAt": 1700000000},
                    "scope": {"visibility": "private"}, "spec": {"type": "gitlab"},
                    "credential": {}}),
    ("Connection", {"apiVersion": "connc/v1", "kind": "Connection",
                    "metadata": {"id": "c", "name": "c", "owner": "alice"},
                    "scope": {"visibility": "private"},
                    "spec": {"type": "github-app", "clientId": "Iv1", "installationId": 10**4400},
                    "credential": {}}),
])
def test_known_disagreements_are_gone(kind: str, data: dict[str, Any]) -> None:
    _agree(kind, data)
    assert _model_accepts(kind, data) is None


def test_every_pattern_is_anchored() -> None:
    # The checker matches `^...$` as pydantic does; an unanchored pattern would be refused
    # at load, but a test says it before a user meets it.
    for name in KINDS.values():
        text = str(check.load(name))
        for pattern in re.findall(r"'pattern': '([^']*)'", text):
            check.pattern(pattern.replace("\\\\", "\\"))
