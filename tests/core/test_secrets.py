"""connc.secretscan: plaintext that looks like a secret, and plaintext that only looks close."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connc import secrets
from connc.secrets import scan, what_secret
from kit.build import TEST_RECIPIENT
from kit.keys import certificate_pem, ec_key, key_pem

_KEY = ec_key()
PKCS8 = key_pem(_KEY)
SEC1 = key_pem(_KEY, serialization.PrivateFormat.TraditionalOpenSSL)
OPENSSH = key_pem(_KEY, serialization.PrivateFormat.OpenSSH)
CA_PEM = certificate_pem(_KEY, "connc test CA")
CA_DATA = base64.b64encode(CA_PEM).decode()
PUBLIC_PEM = _KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
KNOWN_HOSTS = ("github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9ok"
               "Wi0dh2l9GKJl\n|1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= "
               "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n")


@pytest.mark.parametrize(("value", "label"), [
    ("ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "a GitHub token"),
    ("ghs_" + "Z" * 36, "a GitHub token"),
    ("gho_" + "0" * 36, "a GitHub token"),
    ("github_pat_" + "11ABCDEFG0_" + "x" * 40, "a GitHub token"),
    ("glpat-" + "AbCdEfGhIjKlMnOpQrSt", "a GitLab token"),
    ("xoxb-" + "123456789012-abcdefghij", "a Slack token"),
    ("AKIA" + "IOSFODNN7EXAMPLE", "an AWS access key"),
    ("ASIA" + "IOSFODNN7EXAMPLE", "an AWS access key"),
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "a Stripe key"),
    (PKCS8, "a private key"),
    (SEC1, "a private key"),
    (OPENSSH, "a private key"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n", "a private key"),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE...\n", "a private key"),
    ("AGE-SECRET-KEY-1" + "QYZ8" * 14, "an age secret key"),
    (base64.b64encode(PKCS8.encode()).decode(), "a base64-encoded private key"),
    (base64.b64encode(SEC1.encode()).decode(), "a base64-encoded private key"),
    ("see ghp_" + "a" * 36 + " for access", "a GitHub token"),  # inside prose
])
def test_true_positives_under_any_key(value: str, label: str) -> None:
    assert what_secret("description", value) == label
    assert what_secret(None, value) == label  # a list item


@pytest.mark.parametrize("key", [
    "password", "passwd", "pass", "token", "secret", "privateKey", "private_key", "apiKey",
    "api-key", "API_TOKEN", "accessKey", "secretKey", "clientSecret", "client_secret",
    "sshPrivateKey", "clientKeyData", "auth", "accessToken", "authToken", "secretAccessKey",
])
def test_secret_key_names_are_secrets_whatever_the_value(key: str) -> None:
    assert what_secret(key, "hunter2") == f"a `{key}` value"
    assert what_secret(key, 1234) == f"a `{key}` value"


@pytest.mark.parametrize("value", [None, "", [], {}, "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]"])
def test_empty_or_encrypted_values_under_secret_keys_are_fine(value: object) -> None:
    assert what_secret("password", value) is None


@pytest.mark.parametrize(("key", "value"), [
    ("certificateAuthorityData", CA_DATA),
    ("certificate", CA_PEM.decode()),
    ("publicKey", PUBLIC_PEM),
    ("knownHosts", KNOWN_HOSTS),
    ("recipients", TEST_RECIPIENT),
    ("url", "https://gitlab.example.com/group/project.git"),
    ("url", "ssh://git@github.com/acme/api.git"),
    ("apiUrl", "https://api.github.com"),
    ("registry", "https://index.docker.io/v1/"),
    ("server", "https://kube.example.com:6443"),
    ("description", "Token for the deploy bot; rotate yearly"),
    ("description", "the password lives in credential"),
    ("clientId", "Iv23liABCDEF0123"),
    ("name", "GitHub (acme org)"),
    ("passwordHint", "ask the platform team for it"),
    ("tokenUrl", "https://auth.example.com/token"),
    ("expiresAt", "2027-03-01T00:00:00Z"),
    ("description", "ghp_short"),  # too short to be a token
    ("description", "AKIAIOSFODNN7EXAMPLEX"),  # longer than an access key id
])
def test_false_negatives(key: str, value: str) -> None:
    assert what_secret(key, value) is None


def test_scan_walks_nested_mappings_and_lists_and_skips_top_level_keys() -> None:
    token = "glpat-" + "x" * 20
    data = {
        "metadata": {"description": f"uses {token}", "labels": ["ok", token]},
        "spec": {"extra": {"password": "hunter2"}, "url": "https://gitlab.com"},
        "credential": {"token": "plaintext-but-skipped"},
        "sops": {"age": [{"enc": PKCS8}]},
        "password": None,
    }
    found = dict(scan(data, skip=frozenset({"credential", "sops"})))
    assert found == {
        ("metadata", "description"): "a GitLab token",
        ("metadata", "labels", 1): "a GitLab token",
        ("spec", "extra", "password"): "a `password` value",
    }


def test_scan_does_not_skip_nested_keys_named_like_top_level_ones() -> None:
    data = {"spec": {"credential": {"token": "hunter2"}}}
    assert list(scan(data, skip=frozenset({"credential"}))) == [
        (("spec", "credential", "token"), "a `token` value")]


def test_a_secret_key_holding_a_mapping_is_searched_not_reported() -> None:
    assert list(scan({"auth": {"method": "oidc"}})) == []


def test_labels_never_contain_the_value() -> None:
    secret = "ghp_" + "S3CRET" * 6
    for key in ("password", "description", None):
        label = what_secret(key, secret)
        assert label is not None and "S3CRET" not in label


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_secret_looking_text_holds_one_of_the_anchors(data: st.DataObject) -> None:
    # `_secrets_in` looks for the anchors before it runs the expression: a match without one
    # would be a secret let through unredacted.
    for _label, pattern in secrets._PATTERNS:
        text = data.draw(st.from_regex(pattern, fullmatch=True))
        assert secrets._SECRET_LOOKING.search(text)
        assert any(anchor in text for anchor in secrets._ANCHORS), (pattern, text)


def test_the_anchors_are_looked_for_first() -> None:
    # Each anchor on its own is no secret, and text without any is never searched.
    assert not any(secrets.redact(anchor) != anchor for anchor in secrets._ANCHORS)
    assert secrets.redact("x ghp_" + "a" * 36 + " y") == "x [a GitHub token] y"


@pytest.mark.parametrize(("word", "token", "label"), [
    ("X_", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "a GitHub token"),
    ("token", "glpat-" + "AbCdEfGhIjKlMnOpQrSt", "a GitLab token"),
    ("slack_", "xoxb-" + "123456789012-abcdefghij", "a Slack token"),
    ("key_", "AKIA" + "IOSFODNN7EXAMPLE", "an AWS access key"),
    ("di", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "a Stripe key"),
])
def test_a_token_glued_to_a_word_is_hidden_but_not_flagged(word: str, token: str,
                                                            label: str) -> None:
    # Shown in the clear it would leak; flagged, it would refuse a harmless name.
    assert secrets.redact(f"value {word}{token} here") == f"value {word}[{label}] here"
    assert what_secret("description", word + token) is None
    assert what_secret("description", token) == label


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_is_flagged_is_hidden(data: st.DataObject) -> None:
    for _label, pattern in secrets._PATTERNS:
        prefix = data.draw(st.text(max_size=3))
        text = prefix + data.draw(st.from_regex(pattern, fullmatch=True))
        if what_secret(None, text) is not None:
            assert next(secrets._secrets_in(secrets.redact(text)), None) is None, text
