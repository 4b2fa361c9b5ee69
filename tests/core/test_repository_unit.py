"""connc.repository in-process: ids and the paths made of them, what `list_files` reads and
refuses (symlinks, non-files, misnamed files), and `inside`, the guard of every other read.

Names in doubt on a case-insensitive or normalising file system are test_names.py's; here only
how the listing treats them next to the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from connc import repository
from connc.errors import UsageError
from connc.repository import Listing, check_id, inside, list_files, names_in_doubt


@pytest.mark.parametrize("value", ["a", "db", "k8s-prod", "0", "a" * 63, "9-x-9"])
def test_ids(value: str) -> None:
    assert repository.is_id(value) and check_id(value) == value


@pytest.mark.parametrize("value", [
    "", "A", "-a", "a-", "a" * 64, "a_b", "a.b", "../etc", "a/b", "a\n", "é", "a b",
    "k8s\u200d", "\u212a8s",
])
def test_not_ids(value: str) -> None:
    assert not repository.is_id(value)
    with pytest.raises(UsageError) as caught:
        check_id(value, "connection")
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("connection ")
    assert "1-63 lowercase letters, digits and dashes" in caught.value.message


def test_an_id_is_shown_printable() -> None:
    with pytest.raises(UsageError) as caught:
        check_id("x\x1b[2Jy\nz")
    assert "\x1b" not in caught.value.message and "\n" not in caught.value.message


def test_paths_come_only_from_checked_ids() -> None:
    assert repository.connection_path("db") == "connections.d/db.sops.yaml"
    assert repository.pipeline_path("deploy") == "pipelines.d/deploy.yaml"
    for make in (repository.connection_path, repository.pipeline_path):
        with pytest.raises(UsageError):
            make("../../etc/passwd")
    assert repository.stem("connections.d/db.sops.yaml", ".sops.yaml") == "db"
    assert repository.stem("pipelines.d/deploy.yaml", ".yaml") == "deploy"


@pytest.mark.parametrize(("relpath", "read"), [
    ("members.yaml", True), ("connc.yaml", True), (".sops.yaml", True),
    ("connections.d/db.sops.yaml", True), ("connections.d/Not-An-Id.sops.yaml", True),
    ("pipelines.d/deploy.yaml", True),
    ("connections.d/db.yaml", False), ("connections.d/sub/db.sops.yaml", False),
    ("pipelines.d/sub/x.yaml", False), ("README.md", False), (".gitattributes", False),
    ("other/db.sops.yaml", False), ("members.yml", False),
])
def test_read_by_render(relpath: str, read: bool) -> None:
    assert repository.read_by_render(relpath) is read


@pytest.mark.parametrize(("directory", "name", "read"), [
    ("", "members.yaml", True), ("", "connections.d", True), ("", ".gitattributes", True),
    ("", "README.md", False), ("connections.d", "db.sops.yaml", True),
    ("connections.d", "DB.sops.yaml", False), ("connections.d", "db.yaml", False),
    ("pipelines.d", "deploy.yaml", True), ("pipelines.d", ".gitattributes", True),
])
def test_reads(directory: str, name: str, read: bool) -> None:
    assert repository.reads(directory, name) is read


# ---------------------------------------------------------------------------- the listing


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository layout with one valid file of each kind (contents are not read here)."""
    root = tmp_path / "repo"
    (root / "connections.d").mkdir(parents=True)
    (root / "pipelines.d").mkdir()
    (root / "members.yaml").write_text("x")
    (root / "connections.d" / "db.sops.yaml").write_text("x")
    (root / "pipelines.d" / "deploy.yaml").write_text("x")
    return root


def _found(listing: Listing) -> list[tuple[str, str]]:
    return sorted((item.path, item.code) for item in listing.findings)


def test_the_files_of_the_layout_are_listed(root: Path) -> None:
    for name in ("b.sops.yaml", "a.sops.yaml"):
        (root / "connections.d" / name).write_text("x")
    listing = list_files(root)
    assert listing.connections == ["connections.d/a.sops.yaml", "connections.d/b.sops.yaml",
                                   "connections.d/db.sops.yaml"]  # sorted, not listdir's order
    assert listing.pipelines == ["pipelines.d/deploy.yaml"]
    assert listing.findings == []


def test_a_layout_without_its_directories_lists_nothing(tmp_path: Path) -> None:
    (tmp_path / "members.yaml").write_text("x")
    assert list_files(tmp_path) == Listing([], [], [])
    assert list_files(tmp_path / "absent") == Listing([], [], [])


def test_misnamed_and_hidden_entries(root: Path) -> None:
    for name in ("notes.txt", "db.yml", "x.yaml"):
        (root / "connections.d" / name).write_text("x")
    (root / "connections.d" / ".keep").write_text("")
    (root / "pipelines.d" / "x.yml").write_text("x")
    listing = list_files(root)
    assert listing.connections == ["connections.d/db.sops.yaml"]
    assert _found(listing) == [("connections.d/db.yml", "CONNC012"),
                               ("connections.d/notes.txt", "CONNC012"),
                               ("connections.d/x.yaml", "CONNC012"),
                               ("pipelines.d/x.yml", "CONNC012")]
    assert "named <id>.sops.yaml" in listing.findings[0].message


def test_a_symlinked_file_is_refused_wherever_it_points(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.sops.yaml"
    outside.write_text("x")
    links = root / "connections.d"
    (links / "out.sops.yaml").symlink_to(outside)
    (links / "in.sops.yaml").symlink_to(links / "db.sops.yaml")  # even inside the repository
    (links / "dangling.sops.yaml").symlink_to(tmp_path / "nowhere")
    (root / "pipelines.d" / "p.yaml").symlink_to(root / "pipelines.d" / "deploy.yaml")
    listing = list_files(root)
    assert listing.connections == ["connections.d/db.sops.yaml"]
    assert listing.pipelines == ["pipelines.d/deploy.yaml"]
    assert _found(listing) == [("connections.d/dangling.sops.yaml", "CONNC007"),
                               ("connections.d/in.sops.yaml", "CONNC007"),
                               ("connections.d/out.sops.yaml", "CONNC007"),
                               ("pipelines.d/p.yaml", "CONNC007")]
    assert all("is a symlink" in item.message for item in listing.findings)


def test_a_symlinked_directory_is_refused_and_not_read(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.sops.yaml").write_text("x")
    (elsewhere / "X.sops.yaml").write_text("x")  # in doubt, but never looked at
    (root / "connections.d" / "db.sops.yaml").unlink()
    (root / "connections.d").rmdir()
    (root / "connections.d").symlink_to(elsewhere, target_is_directory=True)
    listing = list_files(root)
    assert listing.connections == []
    assert _found(listing) == [("connections.d", "CONNC007")]
    assert "connc reads no file in it" in listing.findings[0].message
    assert names_in_doubt(root) == []


@pytest.mark.parametrize(("make", "code"), [
    (lambda path: path.write_text("x"), "CONNC008"),
    (lambda path: path.symlink_to(path.parent / "nowhere"), "CONNC007"),
])
def test_a_directory_of_the_layout_that_is_no_directory(
        root: Path, make: Callable[[Path], object], code: str) -> None:
    for entry in (root / "pipelines.d").iterdir():
        entry.unlink()
    (root / "pipelines.d").rmdir()
    make(root / "pipelines.d")
    listing = list_files(root)
    assert listing.pipelines == []
    assert _found(listing) == [("pipelines.d", code)]


def test_entries_that_are_not_regular_files(root: Path) -> None:
    (root / "connections.d" / "dir.sops.yaml").mkdir()
    os.mkfifo(root / "connections.d" / "fifo.sops.yaml")
    listing = list_files(root)  # returns: a FIFO is never opened
    assert listing.connections == ["connections.d/db.sops.yaml"]
    assert _found(listing) == [("connections.d/dir.sops.yaml", "CONNC008"),
                               ("connections.d/fifo.sops.yaml", "CONNC008")]
    messages = sorted(item.message for item in listing.findings)
    assert messages == ["a directory where connc expects a connection file",
                        "not a regular file where connc expects a connection file"]


def test_names_in_doubt_are_reported_and_not_listed(root: Path) -> None:
    (root / "connections.d" / "DB.sops.yaml").write_text("y")
    (root / "Members.yaml").write_text("y")
    listing = list_files(root)
    assert listing.connections == []
    assert _found(listing) == [("Members.yaml", "CONNC016"), ("connections.d/DB.sops.yaml",
                                                              "CONNC016"),
                               ("connections.d/db.sops.yaml", "CONNC016"),
                               ("members.yaml", "CONNC016")]
    assert sorted(names_in_doubt(root)) == sorted(listing.findings)


# ---------------------------------------------------------------------------- inside


def test_inside_accepts_a_regular_file(root: Path) -> None:
    assert inside(root, "members.yaml") is None
    assert inside(root, "connections.d/db.sops.yaml") is None


def test_inside_refuses_a_path_through_a_symlinked_directory(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "db.sops.yaml").write_text("x")
    (root / "linked.d").symlink_to(elsewhere, target_is_directory=True)
    problem = inside(root, "linked.d/db.sops.yaml")
    assert problem is not None and (problem.path, problem.code) == ("linked.d/db.sops.yaml",
                                                                    "CONNC007")


@pytest.mark.parametrize(("relpath", "said"), [
    (".sops.yaml", "not a regular file where connc expects the file .sops.yaml"),
    ("pipelines.d/absent.yaml", "not a regular file where connc expects a pipeline file"),
    ("connections.d", "a directory where connc expects the file connections.d"),
])
def test_inside_refuses_what_is_not_a_regular_file(root: Path, relpath: str, said: str) -> None:
    problem = inside(root, relpath)
    assert problem is not None and problem.code == "CONNC008" and problem.message == said


def test_a_dangling_symlink_is_present_not_missing(root: Path) -> None:
    (root / "connc.yaml").symlink_to(root / "nowhere")
    assert repository.present(root / "connc.yaml")
    assert not repository.present(root / "absent.yaml")
    problem = inside(root, "connc.yaml")
    assert problem is not None and problem.code == "CONNC007"


@pytest.mark.parametrize("name", ["connections.d", "pipelines.d", "members.yaml"])
def test_any_one_of_the_layout_makes_a_repository(tmp_path: Path, name: str) -> None:
    assert not repository.has_layout(tmp_path)
    (tmp_path / name).mkdir()
    assert repository.has_layout(tmp_path)


def test_a_repository_reached_through_a_link_outside_every_work_tree_is_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/src -> /data/src`: the machine's own link, above any git work tree, is followed;
    only a link inside one (which a pull request can commit) is refused."""
    from connc.errors import UsageError

    real = tmp_path / "data" / "repo"
    (real / "connections.d").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "home" / "src")
    through = tmp_path / "home" / "src" / "repo"
    assert repository.find_root(through) == real.resolve()
    monkeypatch.chdir(through)
    monkeypatch.setenv("PWD", str(through))
    assert repository.find_root() == real.resolve()
    (real / ".git").mkdir()  # now the link... is still above the work tree: followed
    assert repository.find_root(through) == real.resolve()
    os.symlink(real, tmp_path / "data" / "inner")  # a link beside the work tree, not in it
    (tmp_path / "data" / ".git").mkdir()  # now /data is a work tree holding both
    with pytest.raises(UsageError, match="a symlink inside a git work tree"):
        repository.find_root(tmp_path / "data" / "inner")
    monkeypatch.chdir(tmp_path / "data" / "inner")
    monkeypatch.setenv("PWD", str(tmp_path / "data" / "inner"))
    with pytest.raises(UsageError, match="a symlink inside a git work tree"):
        repository.find_root()
    monkeypatch.setenv("PWD", "/elsewhere")  # a $PWD that does not name it is not used
    assert repository.find_root() == real.resolve()
