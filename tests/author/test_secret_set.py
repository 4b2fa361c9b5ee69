"""`connc secret set`: one value changes, through stdin only; comments and the rest stay."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import pytest

from connc.author import secret_set as secretset
from connc.author.new import SECRET_PLACEHOLDER, new_connection
from connc.author.secret_set import set_secret, value_from_bytes
from connc.errors import Refused, UsageError
from connc.findings import Finding, has_errors
from connc.process import Deadline
from connc.seal import SEAL_FIELD
from connc.sops import binary
from connc.sops.keys import KeyUnusable
from connc.validate.run import validate
from kit.build import REPO_ROOT, TEST_KEY_FILE, connection, make_repo, write
from kit.keys import ec_key, key_pem, rsa_key
from kit.run import connc, spy_on_processes

CANARY = "CANARY-s3cr3t-7f2e9a"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo")
    for connection_type, connection_id in [("container-registry", "registry"),
                                           ("kubernetes", "k8s"), ("github-app", "gh"),
                                           ("gitlab", "gl")]:
        new_connection(root, connection_type, connection_id, owner="alice")
    return root


@pytest.fixture
def with_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))


def path(connection_id: str) -> str:
    return f"connections.d/{connection_id}.sops.yaml"


def stdin(value: str | bytes) -> io.BytesIO:
    return io.BytesIO(value.encode() if isinstance(value, str) else value)


def credential(root: Path, connection_id: str) -> dict[str, str]:
    """The secrets of a connection (its seal, which every write renews, apart)."""
    values = binary.decrypt(root, path(connection_id), deadline=Deadline(60))["credential"]
    assert SEAL_FIELD in values
    return {k: v.reveal() for k, v in values.items() if k != SEAL_FIELD}


def finished(found: list[Finding]) -> list[Finding]:
    """Findings but the scaffold's spec placeholders (CONNC111), which these tests keep."""
    return [f for f in found if f.code != "CONNC111"]


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith(prefix)]


# ---------------------------------------------------------------------------- changing one value


@pytest.mark.usefixtures("with_key")
def test_changes_one_value_and_keeps_comments_and_the_rest(repo: Path) -> None:
    before = (repo / path("registry")).read_text()
    changed = set_secret(repo, "registry", "password", stdin(f"{CANARY}\n"), deadline=Deadline(60))
    after = (repo / path("registry")).read_text()
    assert changed.relpath == path("registry") and not changed.added
    assert credential(repo, "registry") == {"username": SECRET_PLACEHOLDER, "password": CANARY}
    assert CANARY not in after
    assert lines_starting(before, "#") == lines_starting(after, "#")  # every comment, as is
    assert lines_starting(before, "username:") == lines_starting(after, "username:")
    assert lines_starting(before, "password:") != lines_starting(after, "password:")
    changed_lines = set(after.splitlines()) ^ set(before.splitlines())
    changed_keys = {line.split(":")[0].strip() for line in changed_lines}
    assert {"password", "mac"} <= changed_keys <= {"password", "mac", "lastmodified",
                                                              SEAL_FIELD}
    assert not has_errors(finished(validate(repo).findings), strict=True)


@pytest.mark.usefixtures("with_key")
def test_one_trailing_newline_is_dropped(repo: Path) -> None:
    set_secret(repo, "gl", "token", stdin("glpat-one\r\n"), deadline=Deadline(60))
    assert credential(repo, "gl")["token"] == "glpat-one"
    with pytest.raises(Refused, match="contains a newline"):
        set_secret(repo, "gl", "token", stdin("glpat-two\n\n"), deadline=Deadline(60))
    assert credential(repo, "gl")["token"] == "glpat-one"


@pytest.mark.usefixtures("with_key")
def test_a_pem_key_spans_lines(repo: Path) -> None:
    pem = key_pem(rsa_key())
    set_secret(repo, "gh", "privateKey", stdin(pem.replace("\n", "\r\n")), deadline=Deadline(60))
    assert credential(repo, "gh")["privateKey"] == pem.removesuffix("\n")
    # Other connections of the fixture still hold `connc new` placeholders (CONNC607).
    found = [f for f in validate(repo, decrypt=True).findings if f.path == path("gh")]
    assert not has_errors(finished(found))


@pytest.mark.usefixtures("with_key")
def test_a_field_of_another_alternative_is_added_with_a_reminder(repo: Path) -> None:
    changed = set_secret(repo, "gl", "username", stdin("deploy-bot"), deadline=Deadline(60))
    assert changed.added and changed.other_alternative == []
    key_data = base64.b64encode(key_pem(ec_key()).encode()).decode()
    changed = set_secret(repo, "k8s", "clientKeyData", stdin(key_data), deadline=Deadline(60))
    assert changed.added and changed.other_alternative == ["token"]
    [reminder] = [m for m in changed.messages() if "still set" in m]
    assert "connc secret unset k8s token" in reminder


@pytest.mark.usefixtures("with_key")
def test_expires_at_reminder(repo: Path) -> None:
    write(repo, path("dated"), connection("dated", expiresAt="2099-01-31",
                                          credential={"token": "old"}))
    binary.encrypt_in_place(repo, path("dated"), deadline=Deadline(60))
    changed = set_secret(repo, "dated", "token", stdin("new"), deadline=Deadline(60))
    assert any("metadata.expiresAt is 2099-01-31" in m for m in changed.messages())


# ---------------------------------------------------------------------------- refusals


def test_unknown_field_with_suggestion_before_reading_stdin(repo: Path) -> None:
    class Unread(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the value was read before the field was checked")

    with pytest.raises(UsageError, match=r"no credential field `pasword` .*did you mean `password`"):
        set_secret(repo, "registry", "pasword", Unread(), deadline=Deadline(60))


@pytest.mark.parametrize(("value", "message"), [
    ("", "is empty"),
    ("\n", "is empty"),
    ("   ", "is empty"),
    ("a\tb", "control character U\\+0009"),
    ("a\x1bb", "control character U\\+001B"),
    ("line\nline", "contains a newline"),
    (b"\xff\xfe", "is not UTF-8"),
])
@pytest.mark.usefixtures("with_key")  # the old seal is verified before the value is read
def test_refused_values_change_nothing(repo: Path, value: str | bytes, message: str) -> None:
    before = (repo / path("registry")).read_bytes()
    with pytest.raises(Refused, match=message):
        set_secret(repo, "registry", "password", stdin(value), deadline=Deadline(60))
    assert (repo / path("registry")).read_bytes() == before


@pytest.mark.usefixtures("with_key")
def test_a_key_that_does_not_parse_is_refused(repo: Path) -> None:
    with pytest.raises(Refused, match="privateKey` is not"):
        set_secret(repo, "gh", "privateKey", stdin(f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n"),
                   deadline=Deadline(60))


def test_unknown_connection_with_suggestion(repo: Path) -> None:
    with pytest.raises(UsageError, match="no connection `registy`; did you mean `registry`"):
        set_secret(repo, "registy", "password", stdin("x"), deadline=Deadline(60))


@pytest.mark.parametrize("bad_id", ["../registry", "Registry", ""])
def test_bad_id(repo: Path, bad_id: str) -> None:
    with pytest.raises(UsageError, match="an id is"):
        set_secret(repo, bad_id, "password", stdin("x"), deadline=Deadline(60))


def test_a_plaintext_file_is_refused(repo: Path) -> None:
    write(repo, path("plain"), connection("plain"))
    with pytest.raises(UsageError, match="not encrypted: run `connc sops encrypt --in-place"):
        set_secret(repo, "plain", "token", stdin("x"), deadline=Deadline(60))


def test_without_a_key_sops_fails_with_our_message(repo: Path) -> None:
    with pytest.raises(KeyUnusable) as caught:
        set_secret(repo, "registry", "password", stdin(CANARY), deadline=Deadline(60))
    assert "SOPS_AGE_KEY_FILE" in caught.value.message and CANARY not in str(caught.value)


# ---------------------------------------------------------------------------- a terminal


class Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.usefixtures("with_key")
def test_a_terminal_is_asked_twice_hidden(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([CANARY, CANARY])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(secretset.getpass, "getpass", fake_getpass)
    set_secret(repo, "registry", "password", Terminal(), deadline=Deadline(60))
    assert prompts == ["password: ", "password (again): "]
    assert credential(repo, "registry")["password"] == CANARY


@pytest.mark.usefixtures("with_key")
def test_a_terminal_typo_changes_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr(secretset.getpass, "getpass", lambda prompt="": next(answers))
    with pytest.raises(UsageError, match="the two entries differ"):
        set_secret(repo, "registry", "password", Terminal(), deadline=Deadline(60))


@pytest.mark.usefixtures("with_key")
def test_a_multiline_field_is_not_typed(repo: Path) -> None:
    with pytest.raises(UsageError, match="spans several lines"):
        set_secret(repo, "gh", "privateKey", Terminal(), deadline=Deadline(60))


def test_value_from_bytes_strips_only_one_newline() -> None:
    assert value_from_bytes("token", b"v\n").reveal() == "v"
    assert value_from_bytes("token", b"v\n\n").reveal() == "v\n"
    assert value_from_bytes("token", b"v").reveal() == "v"
    assert value_from_bytes("privateKey", b"a\r\nb\r\n").reveal() == "a\nb"


# ---------------------------------------------------------------------------- canary


@pytest.mark.usefixtures("with_key")
def test_the_value_goes_through_stdin_only(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_processes(monkeypatch)
    set_secret(repo, "registry", "password", stdin(CANARY), deadline=Deadline(60))
    # The old seal read first (it must allow the plaintext now), then the value, then the
    # seal of the plaintext it now belongs to.
    verify, value, sealing = calls
    assert verify["args"][1:4] == ["--config", os.devnull, "decrypt"]
    assert not verify["input"]
    for call in (value, sealing):
        assert call["args"][1:3] == ["set", "--value-stdin"]
        assert not any(CANARY in arg for arg in call["args"])
        assert not any(CANARY in value for value in call["env"].values())
    assert CANARY.encode() in value["input"] and CANARY.encode() not in sealing["input"]
    assert SEAL_FIELD in sealing["args"][-1]


@pytest.mark.parametrize(("connection_id", "field", "expected"), [
    ("registry", "password", 0),
    ("registry", "pasword", 2),
    ("nope", "password", 2),
    ("gh", "privateKey", 1),  # a value refused: exit 1
])
def test_cli_never_prints_the_value(repo: Path, connection_id: str, field: str,
                                    expected: int) -> None:
    result = connc("secret", "set", connection_id, field, "--repo", repo,
                   input=f"{CANARY}\n", cwd=REPO_ROOT, timeout=60)
    assert result.returncode == expected, result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert result.stdout == ""


def test_cli_without_a_key_exits_2_without_the_value(repo: Path) -> None:
    result = connc("secret", "set", "registry", "password", "--repo", repo, input=CANARY,
                   key=None, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 2  # no key is the environment's fault
    assert "no usable key" in result.stderr and CANARY not in result.stderr


# ---------------------------------------------------------------------------- CONNC402's fix


@pytest.mark.usefixtures("with_key")
def test_a_plaintext_value_is_replaced_as_validate_advises(repo: Path) -> None:
    # A value pasted in plaintext under `credential` (CONNC402): the advised command works.
    text = (repo / path("gl")).read_text()
    (repo / path("gl")).write_text(text.replace("credential:\n", "credential:\n    username: "
                                                "pasted-in-clear\n", 1))
    assert any(f.code == "CONNC402" for f in validate(repo).findings)
    changed = set_secret(repo, "gl", "username", stdin("deploy-bot"), deadline=Deadline(60))
    assert changed.was_plaintext and any("rotate it" in line for line in changed.messages())
    assert credential(repo, "gl")["username"] == "deploy-bot"
    assert "pasted-in-clear" not in (repo / path("gl")).read_text()
    assert not any(f.code == "CONNC402" for f in validate(repo).findings)


@pytest.mark.usefixtures("with_key")
def test_another_plaintext_value_is_named_first(repo: Path) -> None:
    text = (repo / path("gl")).read_text()
    (repo / path("gl")).write_text(text.replace("credential:\n", "credential:\n    username: "
                                                "pasted-in-clear\n", 1))
    before = (repo / path("gl")).read_text()
    with pytest.raises(Refused, match="`credential.username` is plaintext.*secret set gl username"):
        set_secret(repo, "gl", "token", stdin(CANARY), deadline=Deadline(60))
    assert (repo / path("gl")).read_text() == before
