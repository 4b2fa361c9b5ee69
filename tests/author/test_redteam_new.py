"""`connc new` encrypts by `.sops.yaml` as sops reads it: one that connc refuses (here a merge
key that gives sops another recipient than connc reads) starts no sops process, so no file
is ever encrypted to a key no review showed."""

from __future__ import annotations

from pathlib import Path

import pytest

from connc.author.new import new_connection
from connc.errors import Refused
from connc.sops import binary
from kit.build import TEST_RECIPIENT, make_repo, write
from kit.keys import new_recipient


def test_a_sops_config_connc_refuses_starts_no_sops(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path / "repo")
    write(root, ".sops.yaml", "creation_rules:\n"
          "- path_regex: ^connections\\.d/.*\\.sops\\.yaml$\n"
          "  encrypted_regex: ^credential$\n"
          "  mac_only_encrypted: true\n"
          f"  age: {TEST_RECIPIENT}\n"
          f"  <<: {{key_groups: [{{age: [{TEST_RECIPIENT}, {new_recipient()}]}}]}}\n")
    started: list[str] = []
    monkeypatch.setattr(binary, "encrypt_in_place", lambda _root, path: started.append(path))
    with pytest.raises(Refused, match=r"\.sops\.yaml:6:3: CONNC001 a merge key"):
        new_connection(root, "gitlab", "gl", owner="alice")
    assert started == []
    assert not (root / "connections.d" / "gl.sops.yaml").exists()
