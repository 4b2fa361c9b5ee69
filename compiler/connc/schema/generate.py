"""JSON Schemas generated from the models, for yaml-language-server and other checkers.

Add `# yaml-language-server: $schema=../schema/connection.schema.json` at the top of a file
(or map the globs in the editor's settings) to get completion and validation while typing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connc.schema import models

SCHEMAS: dict[str, type[models.Model]] = {
    "connection": models.Connection,
    "pipeline": models.Pipeline,
    "members": models.Members,
    "config": models.Config,
}


def schema_for(name: str) -> dict[str, Any]:
    generated = SCHEMAS[name].model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://connc.dev/schema/v1/{name}.schema.json",
        **generated,
    }
    if name == "connection":
        # Keyless: credential values are sops ENC[...] strings (a value of another type is
        # CONNC102 from the encryption check, which validate and render share); the sops
        # block is sops' own. As permissive as the model, so the two accept the same files.
        props = schema["properties"]
        props["credential"] = {
            "type": "object",
            "description": "Encrypted with sops (encrypted_regex: ^credential$): ENC[...] strings.",
        }
        props["sops"] = {"anyOf": [{"type": "object"}, {"type": "null"}], "default": None,
                         "description": "Written by sops."}
        # The credential field names of each type, plaintext in an encrypted file and so
        # checked keyless (`acceptance.credential_names`), from the credential models.
        schema["x-connc-credentials"] = {
            connection_type: {"fields": sorted(model.field_names()),
                              "alternatives": [sorted(a) for a in model.alternatives]}
            for connection_type, model in models.CREDENTIALS.items()}
    return schema


def render_schemas() -> dict[str, str]:
    return {f"{name}.schema.json": json.dumps(schema_for(name), indent=2, sort_keys=True) + "\n"
            for name in SCHEMAS}


PACKAGED = Path(__file__).parent  # the copies `connc render` checks files against


def write_schemas(out: str | Path) -> list[Path]:
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render_schemas().items():
        path = directory / filename
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    # Refresh the packaged copies after changing the models: python -m connc.schema.generate
    for written in write_schemas(PACKAGED):
        print(written)
