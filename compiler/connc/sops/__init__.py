"""sops, the encryption connc's files use: the binary and its answers (`binary`), the keys it
finds here (`keys`), what a file records (`metadata`), who a file is encrypted to
(`recipients`), and what `.sops.yaml` says it should be (`rules`). Import the module you use:
this package re-exports nothing."""
