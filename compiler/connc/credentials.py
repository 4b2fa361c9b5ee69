"""A connection's credential: decrypting it, and what each field must hold.

`Opening` is the one decrypt path: `render`, `check` and `validate --decrypt` each start one
per connection (a sops process, bounded by the run's deadline) and get the values back as
`Secret`s together with every problem found: the seal against the plaintext (`seal`), then
the field contract (no control characters, parsable keys and certificates, no placeholder
left by `connc new`). `Openings` opens many in order with at most `CONCURRENT` sops processes
at a time: a pipeline may use hundreds of connections. `connc secret set` checks a new value
with the same contract before writing it. Messages name fields, never values.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from connc import process, seal
from connc.schema.policy import control_character, secretless
from connc.secrets import Secret
from connc.sops import binary

# Fields that may span lines: PEM text, and base64 `*Data` that `base64` wraps at 76 columns
# (its line breaks are dropped when rendered, as base64 decoders do). Every other value must
# be one line.
MULTILINE_FIELDS = frozenset({"privateKey", "sshPrivateKey", "clientCertificateData",
                              "clientKeyData"})


def control_character_problem(field: str, value: str) -> str | None:
    what = control_character(value, "\n" if field in MULTILINE_FIELDS else "")
    if what is None:
        return None
    return (f"`credential.{field}` contains {what}, which would inject into git's "
            f"credential protocol or a config file")


# What `connc new` writes for every secret: a credential nobody has set yet.
SECRET_PLACEHOLDER = "REPLACE-WITH-connc-secret-set"


@dataclasses.dataclass(frozen=True)
class Opened:
    values: dict[str, Secret]
    problems: list[tuple[str, str, str]]  # (field, code, message); empty when usable
    # Scope fields where the file is narrower than its seal: usable, but until resealed the
    # file can be widened back without a key (`validate --decrypt` names them, CONNC610).
    wider_seal: tuple[str, ...] = ()


class Opening:
    """A credential being decrypted by its own sops process; `result()` waits for it.

    `current` is the connection's plaintext as its seal records it (`seal.view_of`): the seal
    inside the credential is checked against it, and `require_seal` refuses a credential
    without one (connc.yaml `requireSeals`).
    """

    def __init__(self, root: Path, relpath: str, current: Mapping[str, Any], *,
                 deadline: process.Deadline, require_seal: bool = False) -> None:
        self.relpath, self.type = relpath, str(current["spec"]["type"])
        self._current, self._require_seal = current, require_seal
        self._decryption = binary.Decryption(root, relpath, deadline=deadline)

    def result(self) -> Opened:
        """The values and their problems; raises SopsError when sops cannot decrypt."""
        document = self._decryption.result()
        credential = document.get("credential")
        if not isinstance(credential, dict):
            return Opened({}, [("", "CONNC601", "the decrypted file has no credential")])
        sealed = credential.pop(seal.SEAL_FIELD, None)
        recorded = seal.decode(sealed.reveal()) if isinstance(sealed, Secret) else None
        problems = self._seal_problems(sealed, recorded)
        values = {k: v for k, v in credential.items() if isinstance(v, Secret)}
        wider = tuple(seal.narrowed(recorded, self._current)) if recorded is not None else ()
        return Opened(values, problems + credential_problems(
            self._current["id"], self._current["spec"], credential), wider)

    def _seal_problems(self, sealed: object,
                       recorded: dict[str, Any] | None) -> list[tuple[str, str, str]]:
        connection_id = self._current["id"]
        if sealed is None:
            if secretless(self._current["spec"]):
                # Nothing stored but the seal: without one, nothing shows a key holder ever
                # approved the identity exchange the connection asks for.
                return [(seal.SEAL_FIELD, "CONNC413",
                         f"`credential` has no seal, and a secretless connection's credential is "
                         f"its seal; a key holder seals it with `connc seal {connection_id}`")]
            if not self._require_seal:
                return []
            return [(seal.SEAL_FIELD, "CONNC413",
                     f"`credential` has no seal and connc.yaml sets requireSeals: true; a "
                     f"key holder seals it with `connc seal {connection_id}`")]
        if recorded is None:
            return [(seal.SEAL_FIELD, "CONNC608", f"`credential.{seal.SEAL_FIELD}` is not a "
                                                  f"seal connc wrote; reseal with "
                                                  f"`connc seal {connection_id}`")]
        changed = seal.changes(recorded, self._current)
        if not changed:
            return []
        if "id" in changed:
            return [(seal.SEAL_FIELD, "CONNC608",
                     "the credential was sealed for another connection (a credential block "
                     "moved or copied from another file never renders under a new name, and "
                     "no connc command reseals it so); create this connection with `connc "
                     "new` and set its values with `connc secret set`")]
        return [(seal.SEAL_FIELD, "CONNC608",
                 f"the plaintext changed since the credential was sealed: "
                 f"{', '.join(changed)}; if the change is meant, a key holder approves it "
                 f"with `connc seal {connection_id}`, else revert it")]

    def cancel(self) -> None:
        """Stop sops if it still runs (after another connection failed, or an interrupt)."""
        self._decryption.cancel()


# sops processes at once: a KMS answers several in parallel, and each sops holds up to
# binary.MEMORY_LIMIT, so this also bounds what a run can take (8 x 512 MiB at the worst).
CONCURRENT = 8


class Openings:
    """Openings of many credentials, yielded in order, at most `CONCURRENT` sops processes
    running at a time: each is started when one before it has been collected. Use it as a
    context manager: leaving it (a failure, an interrupt) stops every sops still running.

    `connections`: (relpath, the plaintext as its seal records it) of each.
    """

    def __init__(self, root: Path, connections: Sequence[tuple[str, Mapping[str, Any]]], *,
                 deadline: process.Deadline, require_seal: bool = False) -> None:
        self._root, self._connections = root, list(connections)
        self._deadline, self._require_seal = deadline, require_seal
        self._started: list[Opening] = []
        try:
            self._start(CONCURRENT)  # the first ones run while the caller does other work
        except BaseException:
            self.close()
            raise

    def _start(self, count: int) -> None:
        while len(self._started) < min(count, len(self._connections)):
            relpath, current = self._connections[len(self._started)]
            self._started.append(Opening(self._root, relpath, current, deadline=self._deadline,
                                         require_seal=self._require_seal))

    def __iter__(self) -> Iterator[Opening]:
        for index in range(len(self._connections)):
            self._start(index + CONCURRENT)
            yield self._started[index]
            self._started[index].cancel()  # collected by now, or not wanted: stopped

    def close(self) -> None:
        for opening in self._started:
            opening.cancel()  # reaps them; kills any still running

    def __enter__(self) -> Openings:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def credential_problems(connection_id: str, spec: Mapping[str, Any],
                        credential: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field, code, message) for each problem in a decrypted credential.

    The one contract of every credential field: `secret set`, `validate --decrypt`, render and
    check all apply it, so they accept and refuse the same values with the same message.
    """
    problems: list[tuple[str, str, str]] = []
    values: dict[str, str] = {}
    for field, value in credential.items():
        if not isinstance(value, Secret):
            continue
        problem = field_problem(connection_id, spec, field, value.reveal())
        if problem:
            problems.append((field, *problem))
        else:
            values[field] = value.reveal()
    if spec["type"] == "kubernetes":
        problems += _client_certificate(connection_id, values)
    return problems


def field_problem(connection_id: str, spec: Mapping[str, Any], field: str,
                  text: str) -> tuple[str, str] | None:
    """(code, message) when one credential value is unusable, else None. Names, never values."""
    connection_type = spec["type"]
    if not text.strip():
        return "CONNC602", f"`credential.{field}` is empty"
    if text.strip() == SECRET_PLACEHOLDER:
        return "CONNC607", _placeholder_message(connection_id, spec, field)
    control = control_character_problem(field, text)
    if control:
        return "CONNC606", control
    if field == "username" and ":" in text:
        return "CONNC609", ("`credential.username` contains ':', which HTTP basic auth cannot "
                            "carry (docker's auth field, a URL's user:password)")
    if connection_type == "packages" and field in ("username", "password", "token"):
        package_format = spec.get("format")
        if package_format == "maven" and ("${" in text or (
                text.startswith("{") and text.endswith("}"))):
            return "CONNC609", (f"`credential.{field}` holds ${{...}} or {{...}}, which Maven "
                                f"would interpolate or take for an encrypted password")
        if package_format in ("pypi", "npm") and text != text.strip():
            return "CONNC609", (f"`credential.{field}` starts or ends with spaces, which "
                                f"{'pip.conf' if package_format == 'pypi' else '.npmrc'} "
                                f"cannot keep")
        if package_format == "npm" and text in ("true", "false", "null", "undefined"):
            # npm's ini parser reads these words as values, quoted or not (textformat.npmrc_value).
            return "CONNC609", (f"`credential.{field}` is a word npm reads as a value, not as "
                                f"text")
    if field in ("privateKey", "sshPrivateKey"):
        problem = private_key_problem(text.encode(), rsa_only=connection_type == "github-app")
        if problem:
            return "CONNC603", with_pem_fix(f"`credential.{field}` {problem}", text,
                                            _secret_set_fix(connection_id, field))
    return None


def _placeholder_message(connection_id: str, spec: Mapping[str, Any], field: str) -> str:
    message = (f"`credential.{field}` still holds the placeholder of `connc new`; set it with "
               f"`connc secret set {connection_id} {field}`")
    if spec["type"] == "packages" and field in ("username", "password"):
        # The npm template starts with username + password; a token replaces both.
        message += (f", or, if the connection uses `token`, remove it: `connc secret unset "
                    f"{connection_id} {field}`")
    return message


def _client_certificate(connection_id: str, values: dict[str, str]) -> list[tuple[str, str, str]]:
    pems: dict[str, bytes] = {}
    problems: list[tuple[str, str, str]] = []
    for field in ("clientCertificateData", "clientKeyData"):
        if field in values:
            pem = b64_pem(values[field])
            if pem is None:
                message = with_pem_fix(
                    f"`credential.{field}` is not base64-encoded PEM (as in a kubeconfig)",
                    values[field], _secret_set_fix(connection_id, field))
                problems.append((field, "CONNC605", message))
            else:
                pems[field] = pem
    if len(pems) == 2:
        mismatch = certificate_key_mismatch(pems["clientCertificateData"], pems["clientKeyData"])
        if mismatch:
            # The message names the field that does not parse, if one does not.
            field = "clientKeyData" if mismatch.startswith("clientKeyData") \
                else "clientCertificateData"
            problems.append(("clientCertificateData", "CONNC604", with_pem_fix(
                mismatch, pems[field], _secret_set_fix(connection_id, field))))
    return problems


# A PEM copied from JSON or an environment variable holds the two characters `\n` where its
# lines break. Such a value is refused like any other that does not parse, never repaired (what
# a key holder wrote is what every command reads), and the message says how to write it.
_ESCAPED_BREAK = "\\n"


def with_pem_fix(problem: str, value: str | bytes, fix: str) -> str:
    """`problem`, and, when the PEM `value` holds `\\n` escapes, how to write it instead."""
    escaped = (_ESCAPED_BREAK.encode() in value if isinstance(value, bytes)
               else _ESCAPED_BREAK in value)
    if not escaped:
        return problem
    return (f"{problem}; it holds `\\n` where its lines should break (copied from JSON or an "
            f"environment variable?): {fix}")


def _secret_set_fix(connection_id: str, field: str) -> str:
    if field in ("clientCertificateData", "clientKeyData"):
        source = "client.crt" if field == "clientCertificateData" else "client.key"
        return (f"set it from the PEM file, `base64 < {source} | connc secret set "
                f"{connection_id} {field}`")
    return (f"set it from the key file, with its real line breaks, `connc secret set "
            f"{connection_id} {field} < key.pem`")


# ---------------------------------------------------------------------------- keys and certificates


def b64_pem(value: str) -> bytes | None:
    """Decode a `*Data` field (base64 of PEM, as in a kubeconfig); None when it is not that."""
    try:
        decoded = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if decoded.lstrip().startswith(b"-----BEGIN ") else None


def certificates_problem(data: str) -> str | None:
    """Why base64 PEM certificate data is unusable, or None."""
    from cryptography import x509

    fix = "write it on one line, as `base64 < ca.crt | tr -d '\\n'` prints it"
    pem = b64_pem(data)
    if pem is None:
        return with_pem_fix("is not base64-encoded PEM", data, fix)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        return with_pem_fix("does not hold a valid PEM certificate", pem, fix)
    return None


def private_key_problem(pem: bytes, *, rsa_only: bool = False) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_ssh_private_key,
    )

    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in pem:
            key = load_ssh_private_key(pem, password=None)
        else:
            key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return "is not an unencrypted PEM or OpenSSH private key"
    except Exception:  # noqa: BLE001 - cryptography raises assorted errors on odd input
        return "is not a usable private key"
    if rsa_only and not isinstance(key, rsa.RSAPrivateKey):
        return "is not an RSA private key (GitHub Apps use RSA keys, PKCS#1 or PKCS#8 PEM)"
    return None


def certificate_key_mismatch(cert_pem: bytes, key_pem: bytes) -> str | None:
    """Why a client certificate and key do not belong together, or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "clientCertificateData does not hold a valid PEM certificate"
    try:
        # Only the public half is compared: skip the costly RSA consistency checks.
        key = load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        return "clientKeyData does not hold an unencrypted PEM private key"
    der = Encoding.DER
    spki = PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        return "clientCertificateData was not issued for clientKeyData"
    return None
