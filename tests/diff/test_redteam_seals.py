"""What a seal does not say: who wrote the secret. Anyone can encrypt to a file's recipients
(they are public keys) and write a seal that matches its plaintext, so a keyless attacker can
put a credential block of his own (or one copied from another repository under the same id)
in place of bob's, with every plaintext field as it was: render's seal check passes, and no
row of `connc diff` showed it. bob's pipelines then sign in as someone else at bob's
endpoints: `npm publish` makes that account the package's owner, a push is theirs.

Tried as dave, with write access to a branch and no key.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from estate import REG

from connc.diff.run import diff
from connc.sops import binary
from kit.build import (
    REPO_ROOT,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    commit,
    encrypt,
    sops_env,
    sops_rules,
    write,
)
from kit.keys import new_recipient
from kit.run import connc


def _substitute(estate: Path, relpath: str, credential: dict[str, str], *,
                padded: bool) -> None:
    """The file's plaintext as it is, a credential of dave's encrypted and sealed anew;
    `padded`: BASE's wrapped data key kept beside dave's (sops takes the first that opens)."""
    base = yaml.safe_load((estate / relpath).read_text())
    document = {key: value for key, value in base.items() if key != "sops"}
    document["credential"] = credential
    write(estate, relpath, document)
    encrypt(estate, relpath)
    if padded:
        document = yaml.safe_load((estate / relpath).read_text())
        document["sops"]["age"] += base["sops"]["age"]
        write(estate, relpath, document)


@pytest.mark.parametrize("padded", [False, True], ids=["new-data-key", "old-key-kept-beside"])
def test_a_credential_replaced_keyless_needs_its_owner(estate: Path, tmp_path: Path,
                                                       padded: bool) -> None:
    _substitute(estate, REG, {"username": "dave", "password": "daves-password"},
                padded=padded)
    commit(estate)
    proc = connc("diff", "--repo", str(estate), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    assert proc.returncode == 1
    rows = json.loads(proc.stdout)["changes"]["credentials"]
    assert [(r["change"], r["connection"], r["approvers"]) for r in rows] == [
        ("replaced by another block", "reg", ["user:bob"])]
    # What it did: bob's pipeline signs in to bob's registry as dave; the seal let it through.
    out = tmp_path / "bundle"
    rendered = connc("render", "build", "--repo", estate, "--out", out)
    assert rendered.returncode == 0, rendered.stderr
    auths = json.loads((out / "docker" / "config.json").read_text())["auths"]
    assert base64.b64decode(auths["registry.example.com"]["auth"]) == b"dave:daves-password"


def _sops(estate: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run([binary.executable(), *args], input=stdin, cwd=estate,
                          env=sops_env(TEST_KEY_FILE), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _credential_rows(estate: Path) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.change, c.approvers) for c in diff(estate, "main~1", "main").changes
            if c.section == "credentials"]


def test_a_rotation_and_a_recipient_added_are_not_replacements(estate: Path) -> None:
    # `sops set` (secret set, seal) keeps the data key; `sops updatekeys` keeps ciphertexts.
    _sops(estate, "set", "--value-stdin", REG, '["credential"]["password"]', stdin='"rotated"')
    commit(estate, "rotated")
    assert _credential_rows(estate) == []
    write(estate, ".sops.yaml", sops_rules(TEST_RECIPIENT, new_recipient()))
    _sops(estate, "updatekeys", "-y", REG)
    commit(estate, "a recipient added")
    assert _credential_rows(estate) == []
    # A new data key and every value encrypted anew is a replacement: the owner's own act.
    _sops(estate, "rotate", "--in-place", REG)
    commit(estate, "a new data key")
    assert _credential_rows(estate) == [("replaced by another block", ("user:bob",))]
