"""Authoring in a directory someone prepared: `connc init` in a clone whose `.gitignore` or
`.github` is a symlink git checked out writes nothing through a link (nothing at all), and
`connc new` never encrypts under a `.sops.yaml` of a directory above the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connc import process
from connc.author import installed
from connc.author.init import init
from connc.author.new import new_connection
from connc.errors import SopsError, UsageError
from connc.sops import binary
from kit.build import TEST_RECIPIENT, connection, make_repo, sops_rules, write
from kit.keys import new_age_key


@pytest.mark.parametrize("link", [".gitignore", ".github", ".github/workflows"])
def test_nothing_is_written_through_a_symlink(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "home"
    (outside / "workflows").mkdir(parents=True)
    rc = outside / "bashrc"
    rc.write_text("# the user's own file\n")
    clone = tmp_path / "clone"
    (clone / ".github").mkdir(parents=True)
    target = {".gitignore": rc, ".github": outside, ".github/workflows": outside / "workflows"}
    if link == ".github":
        (clone / ".github").rmdir()
    (clone / link).symlink_to(target[link])
    with pytest.raises(UsageError, match="is a symlink: connc init writes nothing through one"):
        init(clone, owner="alice", recipients=[TEST_RECIPIENT], new_key=None,
             connc_requirement="connc==1.0")
    assert rc.read_text() == "# the user's own file\n"
    assert list((outside / "workflows").iterdir()) == []
    assert {p.name for p in clone.iterdir()} <= {".github", ".gitignore"}  # nothing written


def test_new_never_encrypts_under_a_parent_directorys_sops_config(tmp_path: Path) -> None:
    """A repository without `.sops.yaml` below a directory that has one (someone else's, in
    a shared or prepared directory): sops would take that one and encrypt the new connection
    to whoever it names. `connc new` refuses, and writes nothing."""
    _key, stranger = new_age_key(tmp_path, "stranger.txt")
    rules = sops_rules(stranger)
    rules["creation_rules"][0]["path_regex"] = r"connections\.d/.*\.sops\.yaml$"
    write(tmp_path, ".sops.yaml", rules)
    root = make_repo(tmp_path / "repo")
    (root / ".sops.yaml").unlink()
    with pytest.raises(UsageError, match="has no .sops.yaml"):
        new_connection(root, "gitlab", "gl", owner="alice")
    assert list((root / "connections.d").iterdir()) == []
    # And sops itself is always given the repository's own rules, never one found above it.
    write(root, "connections.d/gl.sops.yaml", connection("gl"))
    with pytest.raises(SopsError):
        binary.encrypt_in_place(root, "connections.d/gl.sops.yaml", deadline=process.Deadline(60))
    assert stranger not in (root / "connections.d" / "gl.sops.yaml").read_text()


class _Installed:
    """A distribution whose direct_url.json says `record`."""

    version = "1.0"

    def __init__(self, record: dict[str, object]) -> None:
        self.record = record

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.record) if name == "direct_url.json" else None


@pytest.mark.parametrize(("record", "problem"), [
    # Cloned over ssh: CI has no key (and `git@` goes with the credentials): said at init.
    ({"url": "ssh://git@github.com/acme/connc.git",
      "vcs_info": {"vcs": "git", "commit_id": "3f2a" * 10}}, "cloned over ssh"),
    # A commit that is no commit id is no record to write into a workflow.
    ({"url": "https://github.com/acme/connc",
      "vcs_info": {"vcs": "git", "commit_id": "main --index-url https://elsewhere"}},
     "unreadable"),
])
def test_init_says_when_the_workflows_cannot_install_it(
        record: dict[str, object], problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installed.metadata, "distribution", lambda _name: _Installed(record))
    found = installed.source()
    assert found.problem is not None and problem in found.problem
    assert "elsewhere" not in found.requirement
