"""`connc validate`: every check of docs/checks.md, keyless unless asked to decrypt."""
