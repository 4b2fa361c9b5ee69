"""Text GitHub sent back, as a message may show it.

An error answer can echo what was sent (an installation token, the JWT) or hold text meant to
forge a line of a CI log, so GitHub's words reach a message only through `what_github_said`
(its `message`, printable, bounded, every credential redacted) and a name it sent only
through `safe_name`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connc import http

_MESSAGE_CAP = 200

# Credentials that could show up in text GitHub echoes back: tokens (ghs_, ghp_, github_pat_),
# JWTs, and long base64 runs such as PEM lines.
_TOKEN_RE = re.compile(
    r"gh[pousr]_[A-Za-z0-9_]+|github_pat_[A-Za-z0-9_]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"
)
_CREDENTIAL_RE = re.compile(_TOKEN_RE.pattern + r"|[A-Za-z0-9+/=_-]{32,}")


def what_github_said(response: http.Answer, secrets: list[str]) -> str:
    """': GitHub said "..."' for an error response, or '' when there is nothing safe to say."""
    data = response.json()
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str):
        return ""
    message = _safe_message(message, secrets)
    return f': GitHub said "{message}"' if message else ""


def _safe_message(message: str, secrets: list[str]) -> str:
    # Control characters first: removing them could otherwise join a split token back up.
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in message)
    text = " ".join(text.split())
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    text = _CREDENTIAL_RE.sub("[redacted]", text)
    if len(text) > _MESSAGE_CAP:
        text = text[: _MESSAGE_CAP - 1] + "…"
    return text


def safe_name(value: object, secrets: list[str]) -> str | None:
    """A name GitHub sent, as it may be printed: printable, bounded, and never a credential
    (one we sent, or anything shaped like a GitHub token or a JWT)."""
    if not isinstance(value, str) or not value:
        return None
    text = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in value)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_RE.sub("[redacted]", text)[:_MESSAGE_CAP]
