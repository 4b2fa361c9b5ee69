"""The job's OIDC ID token: a JWT kept as a `Secret`, and the claims connc checks before
sending it anywhere.

connc is the token's bearer, not its verifier: the service it is traded with checks the
signature. What connc checks is that it would send the token the connection meant: the
audience the connection names (a token for another service is never sent, whatever that
service would make of it), the issuer when the connection names one, and that it has not
expired. The claims are read without verifying the signature, for those checks and the
messages; messages quote claims (issuer, audiences), never the token.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from connc.errors import RenderError
from connc.findings import printable
from connc.secrets import Secret

MAX_TOKEN_BYTES = 64 * 1024  # GitHub's and GitLab's are about 1-2 KiB


class TokenProblem(RenderError):
    """The token is not one connc may send for this connection; the message names why."""


@dataclasses.dataclass(frozen=True)
class IdToken:
    value: Secret
    issuer: str | None
    audiences: tuple[str, ...]
    subject: str | None
    expires_at: dt.datetime | None

    def __repr__(self) -> str:
        return f"IdToken(issuer={self.issuer!r}, audiences={self.audiences!r})"


def parse(value: str, where: str) -> IdToken:
    """A JWT's claims (unverified); `where` names the token's origin in messages."""
    text = value.strip()
    parts = text.split(".")
    if len(text) > MAX_TOKEN_BYTES or len(parts) != 3 or not all(parts):
        raise TokenProblem(f"{where} is not a JWT (three base64url parts)")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: `[[[[...`
        raise TokenProblem(f"{where} is not a JWT: its claims are not base64url JSON") from None
    if not isinstance(claims, dict):
        raise TokenProblem(f"{where} is not a JWT: its claims are not an object")
    audience = claims.get("aud")
    audiences = (audience,) if isinstance(audience, str) else tuple(
        a for a in audience if isinstance(a, str)) if isinstance(audience, list) else ()
    return IdToken(Secret(text), _text(claims.get("iss")), audiences, _text(claims.get("sub")),
                   moment(claims.get("exp")))


_LAST_MOMENT = dt.datetime(9999, 12, 31, tzinfo=dt.UTC).timestamp()


def moment(epoch: object) -> dt.datetime | None:
    """An expiry a service sent as seconds since the epoch (a JWT's `exp`, ECR's `expiresAt`,
    PyPI's `expires`), or None when it is not one a datetime can hold: a value past year 9999
    must not end the run in OverflowError."""
    if not isinstance(epoch, int | float) or isinstance(epoch, bool) \
            or not 0 < epoch < _LAST_MOMENT:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def check(token: IdToken, identity: Mapping[str, Any], audience: str, where: str, *,
          now: dt.datetime | None = None) -> None:
    """Refuse a token the connection did not ask for: another audience or issuer, or expired."""
    if audience not in token.audiences:
        shown = ", ".join(printable(a, 80) for a in token.audiences[:3]) or "none"
        raise TokenProblem(f"{where} is for audience {shown}, not {printable(audience, 80)}; "
                           f"connc sends a token only to the service it was issued for")
    issuer = identity.get("issuer")
    if issuer and token.issuer != issuer:
        shown = printable(token.issuer, 100) if token.issuer else "no issuer"
        raise TokenProblem(f"{where} was issued by {shown}, not by {issuer} (`identity.issuer`)")
    now = now or dt.datetime.now(dt.UTC)
    if token.expires_at is None:
        raise TokenProblem(f"{where} has no expiry (`exp`); refused")
    if token.expires_at <= now:
        raise TokenProblem(f"{where} expired at {stamp(token.expires_at)}, before connc could "
                           f"use it")


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
