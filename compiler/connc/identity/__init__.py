"""Secretless connections: the CI job's OIDC identity, and the short-lived credentials it buys.

A connection of type `aws-ecr` or `pypi-publish`, or `kubernetes` with `auth: oidc`, stores no
secret. At render (and in `connc check`, and in the kubeconfig's `connc id-token`), connc gets
the job's OIDC ID token (`ci`: GitHub Actions asks the runner, GitLab CI reads the job's
`id_tokens:` variable, `connc check` may read a file), checks its audience, issuer and expiry
(`token`), and trades it at the connection's sealed endpoints (`exchange`: `aws` with a small
SigV4 signer, `sigv4`; `pypi`) for what the bundle holds.

A subpackage of the core, not render's, because three commands share it (render, check and
`connc id-token`); only render imports it, and only when a pipeline uses such a connection, so
a render without one pays nothing for it. Every value here that could open anything (the ID
token, the runner's request token, STS session keys, what is minted) is a `Secret` from the
moment it is read, and messages name hosts, claims and error codes, never a value.
"""
