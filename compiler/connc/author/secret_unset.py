"""`connc secret unset ID FIELD`: remove one credential value with `sops unset`, then reseal.

The way to drop the alternative a connection does not use — the `token` a kubernetes
template wrote when the cluster wants a client certificate, npm's `username` + `password`
when it uses a `token` — without a `sops` on PATH. It is refused, with nothing changed, when
the field is not the type's or not in the file, when it is the seal, and when what stays would
hold no complete alternative (render would have no credential to use). The file is read as
`connc secret set` reads it; `sops unset` rewrites the credential's MAC and keeps comments and
every other value; like `secret set`, it then reseals the plaintext as it is now, a key
holder's approval. It needs a key that can decrypt the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from connc import process, repository, seal
from connc.author import seal as sealing
from connc.author.secret_set import plaintext_fields, read_encrypted
from connc.errors import Refused, UsageError
from connc.findings import suggest
from connc.render import inputs
from connc.schema import models
from connc.sops import binary


@dataclasses.dataclass(frozen=True)
class Removed:
    relpath: str
    field: str

    def messages(self) -> list[str]:
        return [f"removed credential.{self.field} from {self.relpath} (sops; comments and other "
                f"values kept) and resealed", "next: `connc validate`, then open a pull request"]


def unset_secret(root: Path, connection_id: str, field: str, *,
                 deadline: process.Deadline) -> Removed:
    relpath, connection_type, credential, _expires, _document = read_encrypted(root,
                                                                               connection_id)
    model = models.CREDENTIALS[connection_type]
    allowed = model.field_names()
    if field == seal.SEAL_FIELD:
        raise UsageError(f"`{field}` is the credential's seal, which connc keeps; to approve the "
                         f"plaintext as it is, run `connc seal {connection_id}`", path=relpath)
    if field not in allowed:
        raise UsageError(f"a {connection_type} connection has no credential field `{field}` "
                         f"(its fields: {', '.join(sorted(allowed))}){suggest(field, allowed)}",
                         path=relpath)
    if field not in credential:
        raise Refused(f"`credential.{field}` is not in the file; nothing was changed",
                      path=relpath)
    exposed = sorted(plaintext_fields(credential))
    if exposed:
        raise Refused(f"`credential.{exposed[0]}` is plaintext in the file: set it first with "
                      f"`connc secret set {connection_id} {exposed[0]}` (and rotate it at its "
                      f"service: it is in git's history)", path=relpath)
    left = set(credential) - {field, seal.SEAL_FIELD}
    if not any(alternative <= left for alternative in model.alternatives):
        wanted = " or ".join(" + ".join(sorted(a)) for a in model.alternatives)
        raise Refused(f"without `credential.{field}` the connection holds no complete credential "
                      f"({wanted}): set the one it should use first, with `connc secret set "
                      f"{connection_id} FIELD`; nothing was changed", path=relpath)
    # The seal approves the plaintext as render reads it now: a file render would refuse is
    # refused before anything changes, and so is one whose plaintext changed since its seal
    # (removing a value must not approve, in passing, what a key holder did not).
    view = seal.view_of(inputs.read_connection(root, connection_id, inputs.policy(root),
                                               allow=inputs.WRITING_FIXES))
    inputs.refuse_checkout(root, [relpath, *repository.TOP_FILES])
    sealing.check_writable(connection_id, sealing.recorded(root, relpath, deadline=deadline),
                           view)  # raises
    binary.unset_credential(root, relpath, field, deadline=deadline)
    sealing.reseal(root, relpath, connection_id, view, f"credential.{field} was removed",
                   deadline=deadline)
    return Removed(relpath, field)
