"""Seals: a credential bound to the plaintext that decides where it goes and who gets it.

Everything but the secrets is plaintext that a pull request can edit without a key (README.md, The trust model).
A seal is one more value inside the encrypted `credential` (key `connc-seal`, reserved: no
connection type has a credential field of that name), so sops encrypts it with the secrets and
its MAC authenticates it: only a key holder can write one, and removing or swapping it breaks
the file. It records the connection's id, owner, scope and whole spec as they were when a key
holder last wrote the credential (`connc new`, `connc secret set`) or approved the plaintext
(`connc seal`). `render`, `check` and `validate --decrypt` compare it with the file, on
decrypted, canonical data, never on text: a credential block copied into another file carries
the other file's id, however its ciphertext is re-encoded.

Free without a reseal: a scope narrower than the sealed one (the order is `scope.narrower`),
and `name`, `description`, `expiresAt`, which move no credential.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connc.repository import ConnectionSummary
from connc.scope import ConnectionScope, narrower_or_equal

SEAL_FIELD = "connc-seal"
VERSION = 1
_DATA_FIELDS = ("certificateAuthorityData",)  # base64: line breaks are not part of the value


def canonical_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as render uses it: defaults filled in (the caller's schema or model did that),
    unset optional fields dropped, base64 data without its line breaks."""
    canonical = {}
    for key, value in spec.items():
        if value is None:
            continue
        if key in _DATA_FIELDS and isinstance(value, str):
            value = "".join(value.split())
        elif isinstance(value, Mapping):  # `identity`: unset fields dropped there too
            value = {k: v for k, v in value.items() if v is not None}
        canonical[key] = value
    return canonical


def view(connection_id: str, owner: str, visibility: str, members: list[str] | tuple[str, ...],
         spec: Mapping[str, Any]) -> dict[str, Any]:
    """What a seal records about a connection, in canonical form."""
    return {"v": VERSION, "id": connection_id, "owner": owner,
            "scope": {"visibility": visibility, "members": sorted(set(members))},
            "spec": canonical_spec(spec)}


def view_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The view of a connection document as render reads it (`render.inputs`: checked
    against its schema, defaults filled in)."""
    metadata, scope = document["metadata"], document["scope"]
    return view(metadata["id"], metadata["owner"], scope["visibility"],
                scope.get("members") or [], document["spec"])


def view_of_plaintext(document: Mapping[str, Any]) -> dict[str, Any]:
    """The view of a connection document as written (before render's defaults); raises
    `schema.check.Problem` when it is not a valid connection."""
    from connc.schema import check

    # What the seal records is checked; the credential and sops' block are not its business.
    plaintext = {key: value for key, value in document.items() if key != "sops"}
    return view_of(check.check({**plaintext, "credential": {}}, check.load("connection")))


def view_of_summary(summary: ConnectionSummary) -> dict[str, Any]:
    """The view of a connection as validate summarised it (the same canonical spec)."""
    return view(summary.id, summary.owner, summary.visibility,
                [member for member, _pos in summary.members],
                {key: json.loads(value) for key, value in summary.spec})


def encode(sealed: Mapping[str, Any]) -> str:
    return json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def decode(text: str) -> dict[str, Any] | None:
    """The view a seal value holds, or None when it is not a seal connc wrote."""
    try:
        sealed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(sealed, dict) or sealed.get("v") != VERSION or not all(
            isinstance(sealed.get(key), dict) for key in ("scope", "spec")):
        return None
    return sealed


def changes(sealed: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The fields (dotted) whose current value the seal does not allow, in a stable order.

    Names only, never values: a seal is encrypted data.
    """
    changed = [key for key in ("id", "owner") if sealed.get(key) != current[key]]
    before, after = sealed["scope"], current["scope"]
    if not narrower_or_equal(_scope(current["id"], sealed.get("owner"), before),
                             _scope(current["id"], current["owner"], after)):
        changed += [f"scope.{key}" for key in ("visibility", "members")
                    if before.get(key) != after.get(key)] or ["scope"]
    old_spec, new_spec = sealed["spec"], current["spec"]
    changed += [f"spec.{key}" for key in sorted(old_spec.keys() | new_spec.keys())
                if old_spec.get(key) != new_spec.get(key)]
    return changed


def narrowed(sealed: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The scope fields (dotted) where the file is narrower than its seal allows: a seal is an
    upper bound, so until it is renewed the file can be widened back to it without a key."""
    if changes(sealed, current):
        return []  # not a narrowing: render refuses it, `changes` names what
    before, after = sealed["scope"], current["scope"]
    return [f"scope.{key}" for key in ("visibility", "members")
            if before.get(key) != after.get(key)]


def _scope(connection_id: str, owner: object, scope: Mapping[str, Any]) -> ConnectionScope:
    members = scope.get("members")
    return ConnectionScope(connection_id, str(owner), str(scope.get("visibility")),
                           tuple(members) if isinstance(members, list) else ())
