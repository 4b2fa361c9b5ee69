"""The document models, the JSON Schemas generated from them, and the rules both apply.

`connection_types` is the one table of connection types (models, writer, probe, `connc new`'s
placeholders), plain data that render reads too; `models` (pydantic) is what validate checks
against; `check` checks data against the generated schemas without pydantic (render's start-up
path); `policy` holds the rules JSON Schema cannot say, which both apply; `generate` writes the
schemas (`connc schema`).
"""
