"""Key errors name the key: a missing key file, a file that is no age identity, a public key
where the identity belongs, and a key that is not among a file's recipients each get their own
message, said once however many connections fail, never quoting a key or a line of a file
(canaries: the identity, and a secret pasted where a key belongs). Real sops, real age keys."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from connc.errors import SopsError
from connc.process import Deadline
from connc.sops import binary
from kit.build import (
    REPO_ROOT,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    connection,
    make_repo,
    pipeline,
    sops_env,
    sops_rules,
    write,
)
from kit.keys import new_age_key
from kit.run import connc

CANARY = "hunter2-canary-7f3a"
IDS = ("one", "two", "three")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", connections={
        cid: connection(cid, spec={"url": f"https://gitlab.example.com/{cid}"}) for cid in IDS
    }, pipelines={"build": pipeline("build", *IDS)})


def render(repo: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return connc("render", "build", "--repo", repo, "--out", out, env={**sops_env(), **env},
                 cwd=REPO_ROOT)


def refused(ran: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The one message of a refusal: exit 2, on stderr, nothing on stdout, no secret."""
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and "Traceback" not in ran.stderr
    for secret in secrets:
        assert secret not in ran.stderr
    assert ran.stderr.count("connc: error:") == 1
    assert all(len(line) < 400 for line in ran.stderr.splitlines()), ran.stderr
    return ran.stderr


def identity_of(key_file: Path) -> str:
    return next(line for line in key_file.read_text().splitlines()
                if line.startswith("AGE-SECRET-KEY-1"))


def test_a_missing_key_file_is_named(repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "keys" / "age.txt"
    message = refused(render(repo, tmp_path / "out", SOPS_AGE_KEY_FILE=str(missing)))
    assert f"no usable key: SOPS_AGE_KEY_FILE={missing}: no such file" in message


def test_a_file_that_is_no_identity_is_never_quoted(repo: Path, tmp_path: Path) -> None:
    pasted = write(tmp_path, "token.txt", f"{CANARY}\n")
    message = refused(render(repo, tmp_path / "out", SOPS_AGE_KEY_FILE=str(pasted)), CANARY)
    assert f"SOPS_AGE_KEY_FILE={pasted}: not an age identity (line 1" in message


def test_a_public_key_where_the_identity_belongs(repo: Path, tmp_path: Path) -> None:
    public = write(tmp_path, "public.txt", f"# my key\n{TEST_RECIPIENT}\n")
    message = refused(render(repo, tmp_path / "out", SOPS_AGE_KEY_FILE=str(public)))
    assert f"holds the public key {TEST_RECIPIENT} where sops needs the identity" in message
    # The same in the variable that holds a key itself.
    message = refused(render(repo, tmp_path / "out", SOPS_AGE_KEY=TEST_RECIPIENT))
    assert "SOPS_AGE_KEY: holds the public key" in message


def test_a_damaged_identity_is_not_quoted(repo: Path, tmp_path: Path) -> None:
    damaged = identity_of(TEST_KEY_FILE)[:-6] + "QQQQQQ"
    key = write(tmp_path, "damaged.txt", f"{damaged}\n")
    message = refused(render(repo, tmp_path / "out", SOPS_AGE_KEY_FILE=str(key)),
                      damaged, damaged[16:40])
    assert "line 1 looks like an age identity but does not parse" in message


def test_no_key_at_all_says_where_connc_looked(repo: Path, tmp_path: Path) -> None:
    message = refused(render(repo, tmp_path / "out"))
    assert "SOPS_AGE_KEY_FILE is not set" in message
    assert str(Path.home() / ".config" / "connc" / "age.txt") in message


def test_a_key_that_is_no_recipient_is_named_once(repo: Path, tmp_path: Path) -> None:
    other_key, other_public = new_age_key(tmp_path)
    message = refused(render(repo, tmp_path / "out", SOPS_AGE_KEY_FILE=str(other_key)),
                      identity_of(other_key))
    first, *files = message.strip().splitlines()
    assert first == (f"connc: error: no usable key: your key {other_public} "
                     f"(SOPS_AGE_KEY_FILE={other_key}) is not among the recipients of 3 files:")
    assert files == [f"  connections.d/{cid}.sops.yaml: {TEST_RECIPIENT}" for cid in IDS]
    assert not (tmp_path / "out").exists()


def test_one_file_no_key_opens_names_its_recipients(repo: Path, tmp_path: Path) -> None:
    other_key, other_public = new_age_key(tmp_path)
    with pytest.raises(SopsError) as caught, pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOPS_AGE_KEY_FILE", str(other_key))
        binary.decrypt(repo, "connections.d/one.sops.yaml", deadline=Deadline(60))
    assert caught.value.no_key
    assert caught.value.message == (f"no usable key: your key {other_public} (SOPS_AGE_KEY_FILE="
                                    f"{other_key}) is not among this file's recipients "
                                    f"{TEST_RECIPIENT}")


def test_validate_decrypt_and_check_say_it_once(repo: Path, tmp_path: Path) -> None:
    other_key, other_public = new_age_key(tmp_path)
    for command in (["validate", "--decrypt"], ["check"]):
        ran = connc(*command, "--repo", repo, key=tmp_path / "nowhere.txt", cwd=REPO_ROOT)
        assert refused(ran).count("no such file") == 1, command
    ran = connc("validate", "--decrypt", "--repo", repo, key=other_key, cwd=REPO_ROOT)
    assert refused(ran, identity_of(other_key)).count(other_public) == 1


def test_connc_finds_the_key_init_suggests_with_nothing_set(repo: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    default = Path.home() / ".config" / "connc" / "age.txt"
    default.parent.mkdir(parents=True)
    default.write_bytes(TEST_KEY_FILE.read_bytes())
    ran = render(repo, tmp_path / "out")
    assert ran.returncode == 0, ran.stderr
    # XDG_CONFIG_HOME moves it, as it moves sops' own default.
    config = tmp_path / "config"
    (config / "connc").mkdir(parents=True)
    default.rename(config / "connc" / "age.txt")
    assert render(repo, tmp_path / "out2").returncode == 2
    assert render(repo, tmp_path / "out3", XDG_CONFIG_HOME=str(config)).returncode == 0
    # A key the user chose wins: connc adds its default only when no age variable is set.
    other_key, _public = new_age_key(tmp_path)
    refused(render(repo, tmp_path / "out4", XDG_CONFIG_HOME=str(config),
                   SOPS_AGE_KEY_FILE=str(other_key)))


# ---------------------------------------------------------------------------- sops' reason


def test_a_malformed_recipient_keeps_sops_reason(tmp_path: Path) -> None:
    bogus = "age1" + "q" * 58
    root = make_repo(tmp_path / "repo", rules=sops_rules(bogus), encrypt_all=False)
    write(root, "connections.d/gl.sops.yaml", connection("gl", credential={"token": CANARY}))
    with pytest.raises(SopsError) as caught:
        binary.encrypt_in_place(root, "connections.d/gl.sops.yaml", deadline=Deadline(60))
    assert caught.value.message == (f"sops could not process the file: the recipient {bogus} in "
                                    f".sops.yaml is not a valid age public key (invalid checksum)")


def test_a_secret_key_as_recipient_is_left_out_of_sops_reason(tmp_path: Path) -> None:
    pasted = f"AGE-SECRET-KEY-1{CANARY.upper()}"
    root = make_repo(tmp_path / "repo", rules=sops_rules(pasted), encrypt_all=False)
    write(root, "connections.d/gl.sops.yaml", connection("gl"))
    direct = subprocess.run([binary.executable(), "encrypt", "connections.d/gl.sops.yaml"], cwd=root,
                            env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert pasted in direct.stderr  # what connc must not pass on
    with pytest.raises(SopsError) as caught:
        binary.encrypt_in_place(root, "connections.d/gl.sops.yaml", deadline=Deadline(60))
    assert pasted not in str(caught.value) and CANARY.upper() not in str(caught.value)
    assert "a recipient in .sops.yaml is not a public key sops knows" in caught.value.message


@pytest.mark.parametrize(("stderr", "expected"), [
    (b'failed to parse input, unknown recipient type: "hunter2"\n',
     "a recipient in .sops.yaml is not a public key sops knows (age1..., a KMS ARN, ...)"),
    (b"Error unmarshalling input yaml: yaml: line 3: mapping values are not allowed in this "
     b"context\n", "the file is not valid YAML (line 3: mapping values are not allowed in this "
                   "context)"),
    # A parser message quoting the file is no known shape: nothing of it is kept.
    (b"Error unmarshalling input yaml: yaml: line 3: cannot unmarshal !!str `hunter2`\n", None),
    (b'  line 3: mapping key "hunter2" already defined at line 2\n',
     "the file has a duplicate key (line 3, first at line 2)"),
    (b"Cannot decrypt MAC: Input string hunter2 does not match sops' data format\n", None),
    (b"\xff\xfe binary \x1b[31m\n", None),
])
def test_only_known_lines_of_sops_stderr_are_kept(stderr: bytes, expected: str | None) -> None:
    assert binary.reason(stderr) == expected
    assert "hunter2" not in binary.explain(1, stderr)
