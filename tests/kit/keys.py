"""Key material for the tests: real, throwaway keys. Age identities (sops recipients), ssh
keys, and PEM keys and certificates for the checks that parse them. EC where any key will do
(fast to generate); RSA only where RSA is the point, generated once per slot and session."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import pyrage
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID


def new_age_key(directory: Path, name: str = "other-key.txt") -> tuple[Path, str]:
    """A fresh age identity in `directory/name`; returns (key file, public key)."""
    identity = pyrage.x25519.Identity.generate()
    key_file = directory / name
    key_file.write_text(f"{identity}\n", encoding="utf-8")
    key_file.chmod(0o600)
    return key_file, str(identity.to_public())


def new_recipient() -> str:
    """The public key of a fresh age identity whose private half nobody keeps."""
    return str(pyrage.x25519.Identity.generate().to_public())


def ssh_key_pair() -> tuple[str, str]:
    """(OpenSSH private key, public key line) of a fresh ed25519 key."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def rsa_key(slot: int = 0) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key, one per `slot` for the session (generating one takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: PrivateKeyTypes,
            fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt,
                             serialization.NoEncryption()).decode()


def certificate_pem(key: ec.EllipticCurvePrivateKey, common_name: str = "connc test") -> bytes:
    """A self-signed certificate for `key`, valid for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)
