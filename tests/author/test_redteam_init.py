"""`connc init` in a directory someone prepared (a clone whose `.gitignore` or `.github` is a
symlink git checked out): nothing is written through a link, nothing is written at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from connc.author.init import init
from connc.errors import UsageError
from repokit import TEST_RECIPIENT


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
