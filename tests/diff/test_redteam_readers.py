"""Every reader of a repository file reads it as connc does. `.sops.yaml` has a second reader
besides connc: sops, which reads it with Go's YAML, and decides from it who a file is
encrypted to (`connc new`, `sops updatekeys`, which CONNC405 advises). Go's YAML merges a
`<<` key and decodes a `!!binary` tag; connc's reader took `<<` for one more key and
`!!binary` for its text. A recipient added that way was sops' and no row of `connc diff`.

Tried as an attacker with write access to a branch and no key.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from connc.sops import binary
from kit.build import REPO_ROOT, TEST_RECIPIENT, commit, sops_env, write
from kit.keys import new_recipient
from kit.run import connc

RULE = ("creation_rules:\n"
        "- path_regex: ^connections\\.d/.*\\.sops\\.yaml$\n"
        "  encrypted_regex: ^credential$\n"
        "  mac_only_encrypted: true\n")


def _rules(attacker: str) -> dict[str, str]:
    both = f"{TEST_RECIPIENT},{attacker}"
    return {
        # sops takes key_groups, when a rule has them, over its top-level keys.
        "merge-key": RULE + f"  age: {TEST_RECIPIENT}\n"
                            f"  <<: {{key_groups: [{{age: [{TEST_RECIPIENT}, {attacker}]}}]}}\n",
        "binary-tag": RULE + f"  age: !!binary {base64.b64encode(both.encode()).decode()}\n",
    }


def _recipients_sops_uses(repo: Path) -> set[str]:
    """Who sops encrypts a new connection file to under this `.sops.yaml`."""
    write(repo, "connections.d/probe.sops.yaml", "credential: {token: t}\n")
    done = subprocess.run([binary.executable(), "encrypt", "--in-place", "connections.d/probe.sops.yaml"],
                          cwd=repo, env=sops_env(), capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    text = (repo / "connections.d/probe.sops.yaml").read_text()
    (repo / "connections.d/probe.sops.yaml").unlink()
    return {line.split("recipient:")[1].strip() for line in text.splitlines()
            if "recipient:" in line}


@pytest.mark.parametrize("how", ["merge-key", "binary-tag"])
def test_a_sops_rule_connc_reads_otherwise_than_sops_fails_closed(estate: Path,
                                                                   how: str) -> None:
    attacker = new_recipient()
    write(estate, ".sops.yaml", _rules(attacker)[how])
    # What the change does: sops now encrypts to the attacker's key as well.
    assert _recipients_sops_uses(estate) == {TEST_RECIPIENT, attacker}
    line = 6 if how == "merge-key" else 5
    found = json.loads(connc("validate", "--repo", str(estate), "--format",
                             "json", key=None, cwd=REPO_ROOT).stdout)["findings"]
    assert [(f["path"], f["line"], f["code"]) for f in found if f["severity"] == "error"] == [
        (".sops.yaml", line, "CONNC001")]
    commit(estate)
    proc = connc("diff", "--repo", str(estate), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    assert proc.returncode == 1
    unread = json.loads(proc.stdout)["changes"]["unread"]
    assert [(r["file"], r["at"], r["why"], r["approvers"]) for r in unread] == [
        (".sops.yaml", "head", f"CONNC001 at line {line}", ["admins"])]
