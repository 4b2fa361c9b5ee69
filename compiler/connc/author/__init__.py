"""Commands that write connection files: `connc new`, `connc secret set`."""
