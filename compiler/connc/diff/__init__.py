"""The review family: `connc access` (who may use what), `connc diff` (what a change does to it)."""
