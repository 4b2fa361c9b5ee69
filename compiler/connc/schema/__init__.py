"""The document models, the JSON Schemas generated from them, and the rules both apply.

`models` (pydantic) is what validate checks against; `check` checks data against the
generated schemas without pydantic (render's start-up path); `policy` holds the rules JSON
Schema cannot say, which both apply; `generate` writes the schemas (`connc schema`).
"""
