"""docs/formats.md, generated from the models: every field of every file, so it cannot go stale.

Each field's line comes from its model: the YAML name, the type, whether it is required or its
default, and its docstring (a test fails when a field has none, and when the committed page
differs from what this writes). Refresh it with:

    python -m connc.schema.reference docs/formats.md
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from connc.schema import models

_HEADER = """\
# File formats

Every file of a connection repository, field by field. This page is generated from connc's
models (`python -m connc.schema.reference docs/formats.md`); a test fails when it is stale, so
what it says is what `connc validate` checks. The JSON Schemas in `schema/` carry the same
descriptions for editors. A *name* is letters, digits, `.`, `_`, `-`; an *id* is lowercase
letters, digits and `-`, 1 to 63, starting and ending with a letter or digit.
"""

_SOPS = """\
## `.sops.yaml`

sops' own file ([sops' documentation](https://getsops.io/docs/)); connc reads the creation
rules that cover `connections.d/` and checks each connection file against the first rule that
matches it (`path_regex`, matched with RE2 as sops matches it):

| field | connc's rule |
|---|---|
| `creation_rules[].path_regex` | an RE2 pattern (CONNC014 when RE2 rejects it); the first rule matching a file's path, relative to the repository root, is its rule (CONNC406 when none) |
| `creation_rules[].encrypted_regex` | `^credential$`: only `credential` is encrypted, so reviewers read the rest (CONNC407) |
| `creation_rules[].mac_only_encrypted` | `true`: the MAC covers only what is encrypted, so plaintext can be changed without a key (CONNC407) |
| `creation_rules[].age`, `pgp`, `kms`, `gcp_kms`, `azure_keyvault`, `hc_vault_transit_uri` | the recipients; a file must be encrypted to exactly its rule's (CONNC405, fixed by `connc sops updatekeys`); with members' recipients, only to keys of those who may use the connection or `adminRecipients` (CONNC408), and to a key of every pipeline that uses it (CONNC414) |
| `creation_rules[].key_groups`, `shamir_threshold` | groups of recipients and how many must cooperate; compared with the file's too (CONNC405) |

`connc init` writes one rule for `connections.d/`; `connc keys sync` writes, ahead of it, one
rule per set of keys, which keeps each credential to the keys that need it
([production.md](production.md)).
"""

_DOCUMENTS: list[tuple[str, str, type[BaseModel]]] = [
    ("`connections.d/ID.sops.yaml`", "One connection; only `credential` is encrypted.",
     models.Connection),
    ("`pipelines.d/ID.yaml`", "One pipeline: its owner, teams, and the connections it uses.",
     models.Pipeline),
    ("`members.yaml`", "Users and teams: the principals of scopes, pipelines and consent.",
     models.Members),
    ("`connc.yaml`", "The repository's policy; optional.", models.Config),
]


def render() -> str:
    parts = [_HEADER]
    for title, about, model in _DOCUMENTS:
        parts.append(f"## {title}\n\n{about}\n\n{_table(model)}")
        for name, nested in _nested(model):
            parts.append(f"### {name}\n\n{_table(nested)}")
        if model is models.Connection:
            parts.append(_per_type())
    parts.append(_SOPS)
    return "\n".join(parts)


def _table(model: type[BaseModel]) -> str:
    rows = ["| field | type | required / default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        rows.append(f"| `{field.alias or name}` | {_type(field.annotation)} | {_needed(field)} "
                    f"| {_description(model, name, field)} |")
    return "\n".join(rows) + "\n"


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(f"{model.__name__}.{name} has no docstring: document it in the model")
    return field.description.replace("|", "\\|").replace("\n", " ")


def _needed(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    if default is None or default == [] or default == {}:
        return "optional"
    if isinstance(default, BaseModel):
        return "optional"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def _type(annotation: Any) -> str:
    if annotation == models.Date:
        return "date"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if origin in (typing.Union, types.UnionType):
        shown = [_type(arg) for arg in args if arg is not type(None)]
        return " or ".join(dict.fromkeys(shown))
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return {str: "text", int: "integer", bool: "`true` \\| `false`",
            typing.Any: "any"}.get(annotation, "text")


def _nested(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """The models a document holds, in the order its fields name them (specs apart)."""
    found: list[tuple[str, type[BaseModel]]] = []
    for field in model.model_fields.values():
        for nested in _models_in(field.annotation):
            if nested.__module__ == models.__name__ and nested.__name__ not in dict(found) \
                    and not nested.__name__.endswith("Spec"):
                found.append((nested.__name__, nested))
                found += [item for item in _nested(nested) if item[0] not in dict(found)]
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _per_type() -> str:
    parts = ["### `spec` and `credential`, by connection type\n"]
    for connection_type, spec in models.spec_models().items():
        credential = models.CREDENTIALS[connection_type]
        if not credential.model_fields:  # secretless: nothing stored
            parts.append(f"#### `{connection_type}`\n\n`spec`:\n\n{_table(spec)}\n"
                         f"`credential` (encrypted): only its seal. Nothing is stored: render "
                         f"exchanges the CI job's OIDC identity ([Identity](#identity)).\n")
            continue
        needs = " or ".join(" + ".join(f"`{f}`" for f in sorted(a))
                            for a in credential.alternatives)
        parts.append(f"#### `{connection_type}`\n\n`spec`:\n\n{_table(spec)}\n"
                     f"`credential` (encrypted; needs {needs}):\n\n{_table(credential)}")
    parts.append(f"### Identity\n\nThe `identity` of a secretless connection (`aws-ecr`, "
                 f"`pypi-publish`, `kubernetes` with `auth: oidc`): where render gets the CI "
                 f"job's OIDC ID token ([secretless/](secretless/README.md)).\n\n"
                 f"{_table(models.Identity)}")
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/formats.md")
    target.write_text(render(), encoding="utf-8")
    print(target)
