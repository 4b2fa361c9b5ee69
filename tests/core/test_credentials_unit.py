"""connc.credentials in-process: `Opening` against files the real sops encrypted with the test
key (the seal's every verdict), `Openings`' bound on sops processes and its cleanup, and the
field contract every command applies to a decrypted value.

Messages name fields, never values: every case carries a canary the messages must not hold.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from connc import credentials, process, seal
from connc.credentials import (
    SECRET_PLACEHOLDER,
    Opened,
    Opening,
    Openings,
    certificates_problem,
    credential_problems,
    field_problem,
)
from connc.errors import UsageError
from connc.secrets import Secret
from connc.sops import binary
from kit import fakesops
from kit.build import TEST_KEY_FILE, connection, encrypt, make_repo, write
from kit.keys import certificate_pem, ec_key, key_pem, rsa_key, ssh_key_pair

CANARY = "canary-cred-unit-5e2f9a"
URL = "https://gitlab.com/group/project"


def _gitlab(conn_id: str, **fields: Any) -> dict[str, Any]:
    return connection(conn_id, spec={"url": URL},
                      credential={"token": CANARY, "username": "bot"}, **fields)


# The files, encrypted once for the module: (document as written, sealed?) by id.
FILES: dict[str, tuple[dict[str, Any], bool]] = {
    "sealed": (_gitlab("sealed"), True),
    "public": (_gitlab("public", visibility="public"), True),
    "team": (_gitlab("team", visibility="custom", members=["team:a", "team:b"]), True),
    "unsealed": (_gitlab("unsealed"), False),
    "forged": (connection("forged", spec={"url": URL},
                          credential={"token": CANARY, seal.SEAL_FIELD: '{"v": 1}'}), False),
    "secretless": ({**connection("secretless", type_="aws-ecr"), "credential": {}}, False),
    "placeholder": (connection("placeholder", spec={"url": URL},
                               credential={"token": SECRET_PLACEHOLDER}), True),
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("credentials") / "repo")
    for conn_id, (document, sealed) in FILES.items():
        relpath = f"connections.d/{conn_id}.sops.yaml"
        write(root, relpath, document)
        encrypt(root, relpath, sealed=sealed)
    # No credential at all: sops encrypts nothing, the file is still a sops file.
    nothing = {k: v for k, v in _gitlab("bare").items() if k != "credential"}
    write(root, "connections.d/bare.sops.yaml", nothing)
    encrypt(root, "connections.d/bare.sops.yaml", sealed=False)
    return root


@pytest.fixture
def repo(estate: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    return estate


def _view(conn_id: str, **changes: Any) -> dict[str, Any]:
    """The view of FILES[conn_id] as the file reads now: the sealed view, then `changes`."""
    document = FILES[conn_id][0]
    view = seal.view(document["metadata"]["id"], document["metadata"]["owner"],
                     document["scope"]["visibility"], document["scope"].get("members") or [],
                     document["spec"])
    for key, value in changes.items():
        if key in ("visibility", "members"):
            view["scope"][key] = value
        elif key == "url":
            view["spec"][key] = value
        else:
            view[key] = value
    return view


def _open(root: Path, conn_id: str, current: dict[str, Any] | None = None, *,
          require_seal: bool = False) -> Opened:
    opened = Opening(root, f"connections.d/{conn_id}.sops.yaml",
                     current if current is not None else _view(conn_id),
                     deadline=process.Deadline(60), require_seal=require_seal).result()
    shown = repr(opened) + "".join(message for _f, _c, message in opened.problems)
    assert CANARY not in shown
    return opened


def _codes(opened: Opened) -> list[tuple[str, str]]:
    return [(field, code) for field, code, _message in opened.problems]


# ---------------------------------------------------------------------------- the seal


def test_the_view_this_module_builds_is_the_one_a_seal_records() -> None:
    # The helper above must agree with what `connc new` seals, or every case below lies.
    assert _view("sealed") == seal.view_of_plaintext(FILES["sealed"][0])


def test_a_sealed_unchanged_credential_opens_with_its_values(repo: Path) -> None:
    opened = _open(repo, "sealed")
    assert opened.problems == [] and opened.wider_seal == ()
    assert set(opened.values) == {"token", "username"}  # the seal is not a value
    assert all(isinstance(value, Secret) for value in opened.values.values())
    assert opened.values["token"].reveal() == CANARY


@pytest.mark.parametrize("require_seal", [False, True])
def test_no_seal_is_a_problem_only_when_required(repo: Path, require_seal: bool) -> None:
    opened = _open(repo, "unsealed", require_seal=require_seal)
    if not require_seal:
        assert opened.problems == []
        return
    [(field, code, message)] = opened.problems
    assert (field, code) == (seal.SEAL_FIELD, "CONNC413")
    assert "requireSeals: true" in message and "`connc seal unsealed`" in message


def test_a_secretless_connection_needs_its_seal_whatever_requireSeals_says(repo: Path) -> None:
    [(field, code, message)] = _open(repo, "secretless", require_seal=False).problems
    assert (field, code) == (seal.SEAL_FIELD, "CONNC413")
    assert "secretless" in message and "`connc seal secretless`" in message


def test_a_value_that_is_not_a_seal_connc_wrote(repo: Path) -> None:
    opened = _open(repo, "forged")
    [(field, code, message)] = opened.problems
    assert (field, code) == (seal.SEAL_FIELD, "CONNC608")
    assert "is not a seal connc wrote" in message and "`connc seal forged`" in message
    assert seal.SEAL_FIELD not in opened.values


def test_a_credential_sealed_for_another_connection(repo: Path) -> None:
    # A credential block copied into another file: `connc seal` must not be the way out.
    [(field, code, message)] = _open(repo, "sealed", _view("sealed", id="copy")).problems
    assert (field, code) == (seal.SEAL_FIELD, "CONNC608")
    assert "sealed for another connection" in message
    assert "connc seal" not in message and "`connc new`" in message


def test_changed_fields_are_named_in_order(repo: Path) -> None:
    current = _view("sealed", owner="bob", url="https://gitlab.com/elsewhere")
    [(field, code, message)] = _open(repo, "sealed", current).problems
    assert (field, code) == (seal.SEAL_FIELD, "CONNC608")
    # A new owner is never a narrower scope (the owner may always use the connection).
    assert ("the plaintext changed since the credential was sealed: owner, scope, spec.url;"
            in message)
    assert "https://gitlab.com/elsewhere" not in message  # names, not values


@pytest.mark.parametrize(("conn_id", "changes", "named"), [
    ("sealed", {"visibility": "public"}, "scope.visibility"),
    ("team", {"members": ["team:a", "team:c"]}, "scope.members"),
    ("team", {"visibility": "public", "members": []}, "scope.visibility, scope.members"),
])
def test_a_wider_scope_needs_a_reseal(repo: Path, conn_id: str, changes: dict[str, Any],
                                      named: str) -> None:
    [(_field, code, message)] = _open(repo, conn_id, _view(conn_id, **changes)).problems
    assert code == "CONNC608" and f"sealed: {named};" in message


@pytest.mark.parametrize(("conn_id", "changes", "wider"), [
    ("public", {"visibility": "private"}, ("scope.visibility",)),
    ("team", {"members": ["team:a"]}, ("scope.members",)),
    ("team", {"visibility": "private", "members": []},
     ("scope.visibility", "scope.members")),
])
def test_a_narrower_scope_opens_and_says_its_seal_is_wider(
        repo: Path, conn_id: str, changes: dict[str, Any], wider: tuple[str, ...]) -> None:
    opened = _open(repo, conn_id, _view(conn_id, **changes))
    assert opened.problems == []
    assert opened.wider_seal == wider
    assert opened.values["token"].reveal() == CANARY


def test_no_credential_at_all(repo: Path) -> None:
    current = seal.view_of_plaintext(_gitlab("bare"))
    assert _codes(_open(repo, "bare", current)) == [("", "CONNC601")]


def test_the_field_contract_applies_after_the_seal(repo: Path) -> None:
    [(field, code, message)] = _open(repo, "placeholder").problems
    assert (field, code) == ("token", "CONNC607")
    assert "`connc secret set placeholder token`" in message


def test_without_a_key_the_opening_raises_and_leaves_nothing(
        estate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    with pytest.raises(UsageError) as caught:  # SopsError, or the key's own explanation
        _open(estate, "sealed")
    assert CANARY not in str(caught.value)


# ---------------------------------------------------------------------------- Openings


def _count_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    started: list[str] = []
    real = binary.Running.__init__

    def counting(self: binary.Running, args: list[str], **kwargs: Any) -> None:
        started.append(kwargs["relpath"])
        real(self, args, **kwargs)

    monkeypatch.setattr(binary.Running, "__init__", counting)
    return started


def test_openings_yield_in_order_with_at_most_concurrent_sops(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _count_starts(monkeypatch)
    ids = ["sealed", "public", "team"] * 4  # 12: more than CONCURRENT
    assert len(ids) > credentials.CONCURRENT
    connections = [(f"connections.d/{i}.sops.yaml", _view(i)) for i in ids]
    with Openings(repo, connections, deadline=process.Deadline(60)) as openings:
        # The first ones start at once, while the caller does other work; no more.
        assert len(started) == credentials.CONCURRENT
        for index, opening in enumerate(openings):
            # Holding opening `index`: it and the ones before it were started, and at most
            # CONCURRENT - 1 after it.
            assert len(started) == min(index + credentials.CONCURRENT, len(ids))
            assert opening.relpath == connections[index][0]
            assert opening.result().problems == []
    assert started == [relpath for relpath, _view in connections]


def test_leaving_openings_stops_every_sops_still_running(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, "hang"), pids)
    connections = [("connections.d/sealed.sops.yaml", _view("sealed"))] * 3
    with pytest.raises(RuntimeError), Openings(repo, connections,
                                               deadline=process.Deadline(60)) as openings:
        fakesops.wait_for(pids, 3)
        next(iter(openings))
        raise RuntimeError("another connection failed")
    assert len(fakesops.started(pids)) == 3
    assert fakesops.none_left(fakesops.started(pids), seconds=2)


def _spawned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pid of every process connc starts from now on (the fake may be killed before it
    could write its own)."""
    pids: list[int] = []
    real = process.Process.__init__

    def recording(self: process.Process, args: Any, **kwargs: Any) -> None:
        real(self, args, **kwargs)
        pids.append(self.pid)

    monkeypatch.setattr(process.Process, "__init__", recording)
    return pids


def test_a_failure_while_starting_stops_the_ones_already_started(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = str(fakesops.write(tmp_path, "hang"))
    fakesops.use(monkeypatch, Path(fake), tmp_path / "pids")
    calls = iter([fake, fake, str(tmp_path / "no-such-sops")])
    monkeypatch.setattr(binary, "executable", lambda: next(calls))
    spawned = _spawned(monkeypatch)
    connections = [("connections.d/sealed.sops.yaml", _view("sealed"))] * 5
    with pytest.raises(UsageError, match="no-such-sops is not installed"):
        Openings(repo, connections, deadline=process.Deadline(60))
    assert len(spawned) == 2
    assert fakesops.none_left(spawned, seconds=2)


def test_an_opening_cancelled_stops_its_sops(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids = tmp_path / "pids"
    fakesops.use(monkeypatch, fakesops.write(tmp_path, "hang"), pids)
    opening = Opening(repo, "connections.d/sealed.sops.yaml", _view("sealed"),
                      deadline=process.Deadline(60))
    [pid] = fakesops.wait_for(pids, 1)
    opening.cancel()
    assert fakesops.none_left([pid], seconds=2)
    opening.cancel()  # twice is harmless: after a failure, close() cancels every one again


def test_an_opening_after_the_deadline_starts_nothing(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _count_starts(monkeypatch)
    deadline = process.Deadline(0.01, "--timeout")
    time.sleep(0.05)
    assert deadline.expired
    with pytest.raises(process.DeadlineExceeded, match="--timeout SECONDS gives it longer"):
        Openings(repo, [("connections.d/sealed.sops.yaml", _view("sealed"))],
                 deadline=deadline)
    assert len(started) == 1  # asked, and refused before any process was spawned


# ---------------------------------------------------------------------------- the field contract
# `credential_problems` / `field_problem` without sops: what `secret set`, `validate --decrypt`,
# render and check all apply to each value.

GITLAB = {"type": "gitlab", "url": URL}


def _problem(field: str, text: str, spec: dict[str, Any] = GITLAB) -> tuple[str, str] | None:
    found = field_problem("conn", spec, field, text)
    if found is not None:
        assert CANARY not in found[1]
    return found


@pytest.mark.parametrize(("field", "text", "code"), [
    ("token", "", "CONNC602"),
    ("token", " \n\t", "CONNC602"),
    ("token", f"  {SECRET_PLACEHOLDER}\n", "CONNC607"),
    ("token", f"{CANARY}\x1b[2J", "CONNC606"),
    ("token", f"{CANARY}\nsecond-line", "CONNC606"),  # one line, unless a multi-line field
    ("password", f"{CANARY}\r", "CONNC606"),
    ("username", f"bot:{CANARY}", "CONNC609"),
    ("privateKey", f"not a key {CANARY}", "CONNC603"),
])
def test_a_value_the_contract_refuses(field: str, text: str, code: str) -> None:
    found = _problem(field, text)
    assert found is not None and found[0] == code
    assert f"`credential.{field}`" in found[1]


def test_a_plain_token_passes() -> None:
    assert _problem("token", CANARY) is None
    assert credential_problems("conn", GITLAB, {"token": Secret(CANARY),
                                                "note": 3}) == []  # non-Secrets: not values


@pytest.mark.parametrize(("package_format", "field", "text", "said"), [
    ("maven", "password", f"${{env.{CANARY}}}", "Maven would interpolate"),
    ("maven", "token", f"{{{CANARY}}}", "encrypted password"),
    ("pypi", "password", f" {CANARY}", "pip.conf"),
    ("npm", "token", f"{CANARY} ", ".npmrc"),
    ("npm", "password", "true", "a word npm reads as a value"),
])
def test_package_formats_refuse_what_their_files_cannot_carry(
        package_format: str, field: str, text: str, said: str) -> None:
    found = _problem(field, text, {"type": "packages", "format": package_format})
    assert found is not None and found[0] == "CONNC609" and said in found[1]
    # The same value is fine for another format, or outside `packages`.
    assert _problem(field, text, {"type": "packages", "format": "cargo"}) is None


def test_the_placeholder_of_a_package_login_says_how_to_drop_it() -> None:
    packages = {"type": "packages", "format": "npm"}
    found = _problem("username", SECRET_PLACEHOLDER, packages)
    assert found is not None
    assert "`connc secret unset conn username`" in found[1]
    found = _problem("token", SECRET_PLACEHOLDER, packages)
    assert found is not None and "unset" not in found[1]


# ---------------------------------------------------------------------------- PEM fields


def _ec_pem() -> str:
    return key_pem(ec_key())


def _openssh_pem() -> str:
    return ssh_key_pair()[0]


@pytest.mark.parametrize("make", [_ec_pem, _openssh_pem,
                                  lambda: key_pem(ec_key(),
                                                  serialization.PrivateFormat.TraditionalOpenSSL)])
@pytest.mark.parametrize("field", ["privateKey", "sshPrivateKey"])
def test_private_keys_span_lines_and_parse(field: str, make: Any) -> None:
    assert _problem(field, make(), {"type": "ssh"}) is None


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8,
                                 serialization.PrivateFormat.TraditionalOpenSSL])
def test_a_github_app_key_is_rsa(fmt: serialization.PrivateFormat) -> None:
    app = {"type": "github-app"}
    assert _problem("privateKey", key_pem(rsa_key(), fmt), app) is None
    found = _problem("privateKey", _ec_pem(), app)
    assert found == ("CONNC603", "`credential.privateKey` is not an RSA private key (GitHub "
                                 "Apps use RSA keys, PKCS#1 or PKCS#8 PEM)")


def test_a_key_encrypted_with_a_passphrase_is_refused() -> None:
    locked = ec_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"pass")).decode()
    found = _problem("privateKey", locked, {"type": "ssh"})
    assert found is not None and found[0] == "CONNC603"
    assert "unencrypted PEM or OpenSSH" in found[1]


def test_a_key_pasted_with_escaped_newlines_is_refused() -> None:
    # What the credential contract says today (issue: one PEM contract); a change to repair
    # such keys everywhere changes this test on purpose.
    escaped = _ec_pem().replace("\n", "\\n")
    found = _problem("privateKey", escaped, {"type": "ssh"})
    assert found is not None and found[0] == "CONNC603"


def _b64(data: bytes, wrap: int = 0) -> str:
    text = base64.b64encode(data).decode()
    if not wrap:
        return text
    return "\n".join(text[i:i + wrap] for i in range(0, len(text), wrap))


KUBE = {"type": "kubernetes", "server": "https://kube.example.com"}


def _kube(**values: str) -> list[tuple[str, str]]:
    problems = credential_problems("conn", KUBE, {k: Secret(v) for k, v in values.items()})
    for _field, _code, message in problems:
        assert all(v not in message for v in values.values())
    return [(field, code) for field, code, _message in problems]


def test_a_client_certificate_and_its_key_wrapped_as_base64_does() -> None:
    key = ec_key()
    assert _kube(clientCertificateData=_b64(certificate_pem(key), wrap=76),
                 clientKeyData=_b64(key_pem(key).encode(), wrap=76)) == []


def test_a_client_certificate_issued_for_another_key() -> None:
    assert _kube(clientCertificateData=_b64(certificate_pem(ec_key())),
                 clientKeyData=_b64(key_pem(ec_key()).encode())) == [
        ("clientCertificateData", "CONNC604")]


@pytest.mark.parametrize("value", [
    f"not base64 {CANARY}",
    _b64(b"no PEM header here, only " + CANARY.encode()),
])
def test_data_fields_are_base64_pem(value: str) -> None:
    key = ec_key()
    assert _kube(clientCertificateData=value,
                 clientKeyData=_b64(key_pem(key).encode())) == [
        ("clientCertificateData", "CONNC605")]
    assert _kube(clientKeyData=value) == [("clientKeyData", "CONNC605")]


def test_certificate_authority_data() -> None:
    assert certificates_problem(_b64(certificate_pem(ec_key()), wrap=64)) is None
    assert certificates_problem("%%%") == "is not base64-encoded PEM"
    assert certificates_problem(_b64(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                     b"CERTIFICATE-----\n")) == \
        "does not hold a valid PEM certificate"


def test_the_multiline_fields_are_the_pem_and_data_fields() -> None:
    # A line break is a value's end everywhere else (git's credential protocol, .npmrc).
    for field in ("privateKey", "sshPrivateKey", "clientCertificateData", "clientKeyData"):
        assert credentials.control_character_problem(field, "a\nb") is None
        assert credentials.control_character_problem(field, "a\rb") is not None
    assert credentials.control_character_problem("token", "a\nb") is not None

