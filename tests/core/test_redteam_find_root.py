"""A user who runs connc in a directory an attacker prepared: the search for the repository
root (from a subdirectory, as git's) never adopts a parent that someone else can write —
`/tmp` holding another user's `members.yaml` and `.sops.yaml`, or a directory another user
owns. `connc secret set` there would encrypt the value typed to the attacker's key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connc.errors import UsageError
from connc.repository import find_root
from kit.build import make_repo
from kit.run import connc

SENTINEL = "CANARY-typed-into-a-trap-51d7"


def _layout_above(parent: Path) -> Path:
    """connc's layout in `parent` (an attacker's, in a trap), and a directory below it."""
    make_repo(parent)
    mine = parent / "mine"
    mine.mkdir()
    return mine


def test_a_world_writable_parent_is_never_the_root(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    mine = _layout_above(shared)
    shared.chmod(0o1777)  # as /tmp is
    monkeypatch.chdir(mine)
    with pytest.raises(UsageError, match=r"every user may write to.*--repo") as refused:
        find_root()
    assert str(shared) in str(refused.value)
    # The command a user would type there: refused, nothing encrypted to anyone.
    ran = connc("secret", "set", "gl", "token", cwd=mine, input=SENTINEL, timeout=60)
    assert ran.returncode == 2 and "every user may write to" in ran.stderr
    assert SENTINEL not in ran.stdout + ran.stderr
    # Named explicitly, it is the user's choice.
    assert find_root(shared) == shared.resolve()


def test_a_checkout_made_with_umask_0000_is_found(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """GitLab's docker executor checks out with umask 0000: a world-writable directory, not
    a shared one like /tmp (no sticky bit), and the job's own."""
    checkout = tmp_path / "builds" / "project"
    below = _layout_above(checkout)
    checkout.chmod(0o777)
    monkeypatch.chdir(below)
    assert find_root() == checkout


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_parent_another_user_owns_is_never_the_root(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    mine = _layout_above(theirs)
    os.chown(theirs, 4242, 4242)
    monkeypatch.chdir(mine)
    with pytest.raises(UsageError, match=r"owned by another user.*--repo"):
        find_root()
    # The directory connc is started in may be another user's (a CI container's root user
    # in a checkout the runner's user owns): being there is choosing it.
    monkeypatch.chdir(theirs)
    assert find_root() == theirs
