"""Secrets: decrypted values kept out of sight, and plaintext that looks like one.

Every value that came out of sops is a `Secret` from the moment it is decrypted. Code that
needs the value calls `reveal()`, which makes each use of plaintext visible in review.

`what_secret` and `scan` recognise a secret pasted where one must not be: a reviewer reads
everything outside `credential` in the clear, and so does every fork that runs `connc
validate`. They name the kind of secret, never the value. `redact` applies the same
recognition to any text connc shows (a finding's message, a diff row, an error): what looks
like a secret is replaced by its kind, so no message can quote one, whatever it quotes.

This module imports nothing of connc: `findings` and `errors` redact through it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any


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

_BASE64_PRIVATE_KEY = "a base64-encoded private key"
# How the line of an age identity (a secret key) starts: a name to recognise one by, not a
# key. Spelt in two parts so that secret scanners run over connc's own source do not flag it.
AGE_IDENTITY_PREFIX = "AGE-SECRET-" + "KEY-1"
# What goes on inside a PEM block or its base64, as connc may show it: base64, line breaks
# (as they are, as JSON escapes them, as `findings.printable` and GitHub's workflow commands
# show them). A match never takes a `"` or a lone backslash, so that redacting JSON or CSV text
# leaves it valid.
_BLOCK_TEXT = r"(?:[A-Za-z0-9+/=\s\uFFFD]|\\[nr]|%0[AD])"
_PEM_LABEL = r"[A-Z0-9 ]*?PRIVATE ?KEY(?: ?BLOCK)?"  # RSA PRIVATE KEY, PGP PRIVATE KEY BLOCK
# What a secret looks like, wherever it stands: (label, pattern). Groups are non-capturing,
# so that the patterns combine into one expression (`_SECRET_LOOKING`).
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    ("an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a Stripe key", r"\bsk_live_[A-Za-z0-9]{16,}"),
    # The whole block, so that redacting hides the key and not only its first line: up to
    # its END line (past the headers of an encrypted PEM: `Proc-Type: 4,ENCRYPTED`), else as
    # far as its text goes on. Spaces may be gone (diff shows `*Data` fields without them).
    ("a private key", rf"-----BEGIN{_PEM_LABEL}-----(?:(?:{_BLOCK_TEXT}|[:,-])*?"
                      rf"-----END{_PEM_LABEL}-----|{_BLOCK_TEXT}*)"),
    ("an age secret key", re.escape(AGE_IDENTITY_PREFIX) + r"[0-9A-Z]{50,}"),
    # base64 of "-----BEGIN": a PEM block inside base64 (kubeconfig `*Data` fields); a
    # private key only when its header says so (`_base64_private`), a certificate is public.
    (_BASE64_PRIVATE_KEY, rf"LS0tLS1CRUdJTi{_BLOCK_TEXT}*"),
)
# Text every match of `_PATTERNS` holds (tests/core/test_secrets.py draws matches of each and
# checks): most text holds none, and looking for them takes a tenth of the regular expression.
_ANCHORS = ("gh", "github_pat_", "glpat-", "xox", "AKIA", "ASIA", "sk_live_", "-----BEGIN",
            AGE_IDENTITY_PREFIX, "LS0tLS1CRUdJTi")
# Words a secret-named key takes as a mode, not a secret: a kubernetes connection's `auth: oidc`.
_MODES = frozenset({"oidc"})
_WORD_BOUNDARY = r"\b"


def _union(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?P<k{index}>{pattern})"
                               for index, pattern in enumerate(patterns)))


_SECRET_LOOKING = _union([pattern for _label, pattern in _PATTERNS])
# What `redact` hides: the same patterns, also where a token is glued to a word character
# (`X_ghp_...`, `tokenxoxb-...`). A finding keeps the word boundary: flagging `disk_live_...`
# as a Stripe key would refuse a harmless file, while hiding it from a message costs nothing,
# and a glued token shown in the clear would be a leak.
_GLUED = _union([pattern.removeprefix(_WORD_BOUNDARY) for _label, pattern in _PATTERNS])
_LABELS = {f"k{index}": label for index, (label, _pattern) in enumerate(_PATTERNS)}
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")


def _base64_private(text: str) -> bool:
    """Whether base64 text that starts a PEM block is a private key's (its header says)."""
    head = _NOT_BASE64.sub("", text)[:96]
    try:
        return b"PRIVATE KEY" in base64.b64decode(head[: len(head) // 4 * 4])
    except (ValueError, binascii.Error):
        return False


def _secrets_in(text: str, expression: re.Pattern[str] = _SECRET_LOOKING,
                ) -> Iterator[tuple[re.Match[str], str]]:
    """Each secret-looking part of `text`, with what it looks like."""
    if not any(anchor in text for anchor in _ANCHORS):
        return
    for match in expression.finditer(text):
        label = _LABELS[match.lastgroup or ""]
        if label != _BASE64_PRIVATE_KEY or _base64_private(match.group()):
            yield match, label


def redact(text: str) -> str:
    """`text` with each part that looks like a secret replaced by its kind: `[a GitHub
    token]`, glued to a word or not (`_GLUED`). The one redaction step for everything connc
    shows (`findings.Finding`, `findings.printable`, `errors.ConncError`, diff rows)."""
    parts, end = [], 0
    for match, label in _secrets_in(text, _GLUED):
        parts += [text[end:match.start()], f"[{label}]"]
        end = match.end()
    return "".join(parts) + text[end:] if parts else text


def redact_data(data: Any) -> Any:
    """JSON-like `data` with every string in it redacted, keys included: for reports
    serialised from data. Each distinct string is redacted once: a report of a thousand rows
    repeats its keys and ids a thousand times."""
    shown: dict[str, str] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            redacted = shown.get(value)
            if redacted is None:
                redacted = shown[value] = redact(value)
            return redacted
        if isinstance(value, dict):
            return {walk(key): walk(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(item) for item in value]
        return value

    return walk(data)


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
    return next((label for _match, label in _secrets_in(value)), None)


def scan(data: Any, skip: frozenset[str] = frozenset(),
         path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, description) for each secret-looking value, or key (a user or team named with a
    token is as public as any value); top-level keys in `skip` are not read."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not path and key in skip:
                continue
            label = what_secret(None, key) or (
                what_secret(key, value) if not isinstance(value, (dict, list)) else None)
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
