"""The GitHub API client: requests and their retries (`transport`), text GitHub sent back as a
message may show it (`redaction`), Apps and their installation tokens (`apps`), pull requests
with their reviews and commits (`pulls`). Import the module you use: this package re-exports
nothing."""
