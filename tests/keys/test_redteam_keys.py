"""Attacks on `connc keys sync`: by someone with write access to a branch and no key (a
pipeline file that claims what render would refuse it must not buy its runner a key), and by
whatever else writes the repository while a sync runs (nothing it wrote is undone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from keykit import SENTINEL, recipients_of

from kit.build import REPO_ROOT, TEST_KEY_FILE, pipeline, write
from kit.keys import new_age_key
from kit.run import connc


def _evil_pipeline(repo: Path, tmp_path: Path, uses: str, *, owner: str,
                   teams: list[str] | None = None) -> tuple[Path, str]:
    key_file, runner = new_age_key(tmp_path, "mallory-runner.txt")
    evil = pipeline("evil", uses, owner=owner, teams=teams)
    evil["metadata"]["recipients"] = [runner]
    write(repo, "pipelines.d/evil.yaml", evil)
    return key_file, runner


def test_a_false_team_claim_gets_no_key(repo: Path, tmp_path: Path) -> None:
    """bob is not in team ops: render refuses his pipeline's claim to it, so a sync must not
    encrypt ops' connection to that pipeline's runner key (its holder could `sops decrypt`
    the file without ever running render)."""
    key_file, runner = _evil_pipeline(repo, tmp_path, "shared", owner="bob", teams=["ops"])
    ran = connc("keys", "sync", "--repo", str(repo), "shared", key=TEST_KEY_FILE, cwd=REPO_ROOT)
    assert ran.returncode == 0, ran.stderr
    assert runner not in ran.stdout
    assert f"age:{runner}" not in recipients_of(repo, "connections.d/shared.sops.yaml")
    rendered = connc("render", "evil", "--repo", str(repo), "--out",
                     str(tmp_path / "bundle"), key=key_file, cwd=REPO_ROOT)
    assert rendered.returncode == 1 and "claims team `ops`" in rendered.stderr
    assert SENTINEL not in rendered.stdout + rendered.stderr


def test_a_key_added_for_a_false_claim_is_outside_the_scope(repo: Path, tmp_path: Path,
                                                            estate: dict[str, Any]) -> None:
    """validate's safety check agrees: such a key on the file is outside its scope."""
    from keykit import _add_recipient

    _key_file, runner = _evil_pipeline(repo, tmp_path, "shared", owner="bob", teams=["ops"])
    _add_recipient(repo, "connections.d/shared.sops.yaml", runner)
    ran = connc("validate", "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert "CONNC204" in ran.stdout
    assert any("CONNC408" in line and "shared.sops.yaml" in line and runner in line
               for line in ran.stdout.splitlines()), ran.stdout


def test_a_pipeline_of_no_user_gets_no_key_to_a_public_connection(repo: Path,
                                                                    tmp_path: Path) -> None:
    """A public connection admits every pipeline render accepts; a pipeline whose owner is
    not a user is not one of them."""
    _key_file, runner = _evil_pipeline(repo, tmp_path, "registry", owner="mallory")
    ran = connc("keys", "sync", "--repo", str(repo), "registry", key=TEST_KEY_FILE, cwd=REPO_ROOT)
    assert ran.returncode == 0, ran.stderr
    assert f"age:{runner}" not in recipients_of(repo, "connections.d/registry.sops.yaml")


def test_a_secret_rotated_while_the_sync_runs_is_never_reverted(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`connc secret set` in another terminal (or an editor, or `git pull`) while a sync
    works on its staged copies: the sync must not move its older copy over the file and put
    the leaked value back. It refuses, and changes nothing."""
    import io

    from connc import process
    from connc.author.secret_set import set_secret
    from connc.errors import Refused
    from connc.keys import sync
    from connc.sops import binary

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    update_keys = binary.update_keys
    rotated = "rotated-while-syncing-5c0e"

    def concurrently(staging: Path, relpath: str, *, deadline: process.Deadline) -> None:
        update_keys(staging, relpath, deadline=deadline)
        set_secret(repo, "db", "token", io.BytesIO(rotated.encode()), deadline=deadline)

    monkeypatch.setattr(binary, "update_keys", concurrently)
    config = (repo / ".sops.yaml").read_bytes()
    with pytest.raises(Refused, match=r"connections.d/db.sops.yaml changed while"):
        sync.run(repo, ("db",), False, False, lambda _line: None, 60)
    assert binary.decrypt(repo, "connections.d/db.sops.yaml",
                          deadline=process.Deadline(60))["credential"]["token"].reveal() \
        == rotated
    assert (repo / ".sops.yaml").read_bytes() == config
    assert not list(repo.glob(".connc/keys-sync-*"))
