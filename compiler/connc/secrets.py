"""Secrets: decrypted values kept out of sight, and plaintext that looks like one.

Every value that came out of sops is a `Secret` from the moment it is decrypted. Code that
needs the value calls `reveal()`, which makes each use of plaintext visible in review.

`what_secret` and `scan` recognise a secret pasted where one must not be: a reviewer reads
everything outside `credential` in the clear, and so does every fork that runs `connc
validate`. They name the kind of secret, never the value.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connc.findings import Finding, dotted, finding

if TYPE_CHECKING:
    from connc.documents import Document


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("connc.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling would copy plaintext into another process' memory or onto disk unnoticed.
        raise TypeError("a Secret cannot be pickled")


# Keys whose non-empty value is a secret whatever it looks like.
SECRET_KEYS = frozenset({
    "password", "passwd", "pass", "token", "secret", "privatekey", "apikey", "apitoken",
    "accesskey", "secretkey", "clientsecret", "sshprivatekey", "clientkeydata", "auth",
    "accesstoken", "authtoken", "secretaccesskey",
})

_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("an AWS access key", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Stripe key", re.compile(r"\bsk_live_[A-Za-z0-9]{16,}")),
    ("a private key", re.compile(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----")),
    # Spelt in two parts so that secret scanners run over connc's own source do not flag it.
    ("an age secret key", re.compile("AGE-SECRET-" + r"KEY-1[0-9A-Z]{50,}")),
)
_B64_PEM = "LS0tLS1CRUdJTi"  # base64 of "-----BEGIN"
# Words a secret-named key takes as a mode, not a secret: a kubernetes connection's `auth: oidc`.
_MODES = frozenset({"oidc"})


def _normalise(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def what_secret(key: str | int | None, value: Any) -> str | None:
    """A description of the secret `value` looks like, or None."""
    named_secret = isinstance(key, str) and _normalise(key) in SECRET_KEYS
    if named_secret and value not in (None, "", [], {}) and not (
            isinstance(value, str) and value in _MODES) and not (
            isinstance(value, str) and value.startswith("ENC[")):
        return f"a `{key}` value"
    if not isinstance(value, str) or len(value) < 16:
        return None
    for label, pattern in _TOKEN_PATTERNS:
        if pattern.search(value):
            return label
    stripped = value.strip()
    if stripped.startswith(_B64_PEM):
        try:
            head = base64.b64decode(stripped[:96] + "=" * (-len(stripped[:96]) % 4), validate=False)
        except ValueError:
            return None
        if b"PRIVATE KEY" in head:
            return "a base64-encoded private key"
    return None


def scan(data: Any, skip: frozenset[str] = frozenset(),
         path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, description) for each secret-looking value; top-level keys in `skip` are not read."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not path and key in skip:
                continue
            label = what_secret(key, value) if not isinstance(value, (dict, list)) else None
            if label:
                yield path + (key,), label
            else:
                yield from scan(value, skip, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            label = what_secret(None, value) if not isinstance(value, (dict, list)) else None
            if label:
                yield path + (index,), label
            else:
                yield from scan(value, skip, path + (index,))


def plaintext_findings(document: Document, relpath: str,
                       skip: frozenset[str] = frozenset()) -> list[Finding]:
    """CONNC403 at each secret-looking value of a parsed file; the message never quotes it."""
    found = []
    for path, label in scan(document.data, skip):
        line, column = document.position(path)
        found.append(finding(relpath, line, column, "CONNC403",
                             f"`{dotted(path)}` holds {label} in plaintext; secrets belong under "
                             f"`credential` in a connection file, encrypted with sops"))
    return found
