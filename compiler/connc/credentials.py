"""What a decrypted credential must hold: no control characters, parsable keys and
certificates. Shared by `validate --decrypt` and `render`; messages never quote a value.
"""

from __future__ import annotations

from typing import Any

from connc.pem import b64_pem, certificate_key_mismatch, private_key_problem
from connc.secrets import Secret

# Fields that may span lines: PEM text, and base64 `*Data` that `base64` wraps at 76 columns
# (its line breaks are dropped when rendered, as base64 decoders do). Every other value must
# be one line.
MULTILINE_FIELDS = frozenset({"privateKey", "sshPrivateKey", "clientCertificateData",
                              "clientKeyData"})


def control_character_problem(field: str, value: str) -> str | None:
    allowed = "\n" if field in MULTILINE_FIELDS else ""
    for char in value:
        if (ord(char) < 0x20 or ord(char) == 0x7F) and char not in allowed:
            what = "a newline" if char in "\r\n" else f"control character U+{ord(char):04X}"
            return (f"`credential.{field}` contains {what}, which would inject into git's "
                    f"credential protocol or a config file")
    return None


# What `connc new` writes for every secret: a credential nobody has set yet.
SECRET_PLACEHOLDER = "REPLACE-WITH-connc-secret-set"


def credential_problems(connection_type: str, credential: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, code, message) for each problem in a decrypted credential."""
    problems: list[tuple[str, str, str]] = []
    values: dict[str, str] = {}
    for field, value in credential.items():
        if not isinstance(value, Secret):
            continue
        text = value.reveal()
        if not text.strip():
            problems.append((field, "CONNC602", f"`credential.{field}` is empty"))
            continue
        if text.strip() == SECRET_PLACEHOLDER:
            problems.append((field, "CONNC607", f"`credential.{field}` still holds the "
                                                f"placeholder of `connc new`; set it with "
                                                f"`connc secret set ID {field}`"))
            continue
        control = control_character_problem(field, text)
        if control:
            problems.append((field, "CONNC606", control))
            continue
        values[field] = text
    if connection_type == "github-app" and "privateKey" in values:
        problem = private_key_problem(values["privateKey"].encode(), rsa_only=True)
        if problem:
            problems.append(("privateKey", "CONNC603", f"`credential.privateKey` {problem}"))
    if connection_type == "git" and "sshPrivateKey" in values:
        problem = private_key_problem(values["sshPrivateKey"].encode())
        if problem:
            problems.append(("sshPrivateKey", "CONNC603", f"`credential.sshPrivateKey` {problem}"))
    if connection_type == "kubernetes":
        problems += _client_certificate(values)
    return problems


def _client_certificate(values: dict[str, str]) -> list[tuple[str, str, str]]:
    pems: dict[str, bytes] = {}
    problems: list[tuple[str, str, str]] = []
    for field in ("clientCertificateData", "clientKeyData"):
        if field in values:
            pem = b64_pem(values[field])
            if pem is None:
                message = f"`credential.{field}` is not base64-encoded PEM (as in a kubeconfig)"
                problems.append((field, "CONNC605", message))
            else:
                pems[field] = pem
    if len(pems) == 2:
        mismatch = certificate_key_mismatch(pems["clientCertificateData"], pems["clientKeyData"])
        if mismatch:
            problems.append(("clientCertificateData", "CONNC604", mismatch))
    return problems
