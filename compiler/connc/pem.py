"""Parsing of certificates and keys, for content checks. Messages never quote the data."""

from __future__ import annotations

import base64
import binascii


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

    pem = b64_pem(data)
    if pem is None:
        return "is not base64-encoded PEM"
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        return "does not hold a valid PEM certificate"
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
