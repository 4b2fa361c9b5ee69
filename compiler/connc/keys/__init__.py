"""The keys family: `connc keys` (who holds and who needs a key) and `connc keys sync`."""
