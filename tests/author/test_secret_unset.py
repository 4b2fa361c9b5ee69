"""`connc secret unset ID FIELD` (real sops, the test key): an unused alternative leaves the
file, comments and other values stay, the credential is resealed; refusals change nothing;
and `connc sops` runs the bundled sops where no `sops` is on PATH."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path

import pytest

from connc.author.new import new_connection
from connc.author.secret_set import set_secret
from connc.author.secret_unset import unset_secret
from connc.errors import Refused, UsageError
from connc.findings import has_errors
from connc.process import Deadline
from connc.seal import SEAL_FIELD
from connc.sops import binary
from connc.sops.keys import KeyUnusable
from connc.validate.run import validate
from kit.build import REPO_ROOT, TEST_KEY_FILE, make_repo, sops_env
from kit.keys import certificate_pem, ec_key, key_pem
from kit.run import connc

CANARY = "CANARY-unset-4b1d"
K8S = "connections.d/k8s.sops.yaml"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_repo(tmp_path / "repo")
    new_connection(root, "kubernetes", "k8s", owner="alice")
    (root / K8S).write_text((root / K8S).read_text().replace(
        "https://kubernetes.replace-me.invalid:6443", "https://k8s.example.com:6443"))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    set_secret(root, "k8s", "token", io.BytesIO(CANARY.encode()), deadline=Deadline(60))
    return root


def values(root: Path) -> dict[str, str]:
    return {k: v.reveal() for k, v in binary.decrypt(root, K8S,
                                                     deadline=Deadline(60))["credential"].items()}


def test_the_unused_alternative_is_removed_and_the_file_resealed(repo: Path) -> None:
    key = ec_key()
    for field, pem in (("clientCertificateData", certificate_pem(key)),
                       ("clientKeyData", key_pem(key).encode())):
        set_secret(repo, "k8s", field, io.BytesIO(base64.b64encode(pem)), deadline=Deadline(60))
    before = (repo / K8S).read_text()
    removed = unset_secret(repo, "k8s", "token", deadline=Deadline(60))
    assert removed.messages()[0] == ("removed credential.token from connections.d/k8s.sops.yaml "
                                     "(sops; comments and other values kept) and resealed")
    after = (repo / K8S).read_text()
    assert "    token: ENC[" not in after
    # Comments and the other ciphertexts are kept as they were.
    for line in before.splitlines():
        if line.lstrip().startswith(("#", "clientCertificateData:", "clientKeyData:")):
            assert line in after
    assert set(values(repo)) == {"clientCertificateData", "clientKeyData", SEAL_FIELD}
    found = [f for f in validate(repo, decrypt=True).findings if f.path == K8S]
    assert not has_errors(found), found  # the seal matches, the certificate fits its key
    assert CANARY not in after


@pytest.mark.parametrize(("field", "error", "message"), [
    ("token", Refused, r"holds no complete credential \(token or clientCertificateData \+ "
                       r"clientKeyData\)"),
    ("tokn", UsageError, "did you mean `token`"),
    ("clientKeyData", Refused, "is not in the file; nothing was changed"),
    (SEAL_FIELD, UsageError, "is the credential's seal"),
])
def test_refusals_change_nothing(repo: Path, field: str, error: type[Exception],
                                 message: str) -> None:
    before = (repo / K8S).read_bytes()
    with pytest.raises(error, match=message) as caught:
        unset_secret(repo, "k8s", field, deadline=Deadline(60))
    assert CANARY not in str(caught.value)
    assert (repo / K8S).read_bytes() == before


def test_a_placeholder_left_by_new_is_what_validate_advises_to_unset(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    root = make_repo(tmp_path / "repo")
    new_connection(root, "packages", "npm", owner="alice")
    relpath = "connections.d/npm.sops.yaml"
    (root / relpath).write_text((root / relpath).read_text()
                                .replace("format: maven", "format: npm")
                                .replace("https://packages.replace-me.invalid/repository/",
                                         "https://npm.example.com/")
                                .replace("repositoryId: REPLACE-ME\n", ""))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    set_secret(root, "npm", "token", io.BytesIO(CANARY.encode()), deadline=Deadline(60))
    advice = {f.message for f in validate(root, decrypt=True).findings if f.code == "CONNC607"}
    assert all("`connc secret unset npm " in message for message in advice), advice
    unset_secret(root, "npm", "username", deadline=Deadline(60))
    unset_secret(root, "npm", "password", deadline=Deadline(60))
    assert not has_errors(validate(root, decrypt=True).findings)


def test_without_a_key_nothing_changes(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec_key()
    for field, pem in (("clientCertificateData", certificate_pem(key)),
                       ("clientKeyData", key_pem(key).encode())):
        set_secret(repo, "k8s", field, io.BytesIO(base64.b64encode(pem)), deadline=Deadline(60))
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    before = (repo / K8S).read_bytes()
    with pytest.raises(KeyUnusable):
        unset_secret(repo, "k8s", "token", deadline=Deadline(60))
    assert (repo / K8S).read_bytes() == before


# ---------------------------------------------------------------------------- connc sops


def test_connc_sops_runs_the_bundled_sops_without_one_on_path(repo: Path) -> None:
    env = {**sops_env(TEST_KEY_FILE), "PATH": "/usr/bin:/bin"}
    assert subprocess.run(["sh", "-c", "command -v sops"], env=env,
                          capture_output=True, check=False).returncode != 0
    ran = connc("sops", "decrypt", "--extract", '["spec"]["server"]', K8S, env=env, cwd=repo,
                timeout=60)
    assert (ran.returncode, ran.stdout) == (0, "https://k8s.example.com:6443")
    # sops' own exit code and options: --help is sops', not connc's.
    missing = connc("sops", "decrypt", "connections.d/none.sops.yaml", env=env, cwd=repo,
                    timeout=60)
    assert missing.returncode == 100
    helped = connc("sops", "--help", env=env, timeout=60)
    assert helped.returncode == 0 and "sops - encrypted file editor" in helped.stdout
    # connc's default key file reaches it as it reaches every sops connc runs.
    home = repo.parent / "home"
    (home / ".config" / "connc").mkdir(parents=True)
    (home / ".config" / "connc" / "age.txt").write_bytes(TEST_KEY_FILE.read_bytes())
    bare = {k: v for k, v in env.items() if not k.startswith("SOPS_AGE")}
    found = connc("sops", "decrypt", "--extract", '["credential"]["token"]', K8S,
                  env={**bare, "HOME": str(home)}, cwd=repo, timeout=60)
    assert found.returncode == 0 and found.stdout == CANARY


def test_cli_secret_unset(repo: Path) -> None:
    ran = connc("secret", "unset", "k8s", "token", "--repo", repo, cwd=REPO_ROOT, timeout=60)
    assert ran.returncode == 1 and "holds no complete credential" in ran.stderr
    assert CANARY not in ran.stdout + ran.stderr
