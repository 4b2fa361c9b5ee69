"""repository.existing: an id given on the command line names a file, or the usage error
says which id was meant; the repository is listed only when the id misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from connc import repository
from connc.errors import UsageError


def _repo(tmp_path: Path) -> Path:
    for relpath in ("connections.d/registry.sops.yaml", "connections.d/github.sops.yaml",
                    "pipelines.d/deploy.yaml"):
        (tmp_path / relpath).parent.mkdir(exist_ok=True)
        (tmp_path / relpath).write_text("x: 1\n")
    return tmp_path


def test_an_existing_id_gives_its_file(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    assert repository.existing(root, "connection", "registry") == \
        "connections.d/registry.sops.yaml"
    assert repository.existing(root, "pipeline", "deploy") == "pipelines.d/deploy.yaml"


def test_a_missing_id_suggests_a_near_miss(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    with pytest.raises(UsageError) as raised:
        repository.existing(root, "connection", "registy", hint=" (create it)")
    assert str(raised.value) == ("connections.d/registy.sops.yaml: no connection `registy`; "
                                 "did you mean `registry`? (create it)")
    with pytest.raises(UsageError, match=r"no pipeline `deplyo`; did you mean `deploy`\?$"):
        repository.existing(root, "pipeline", "deplyo")
    with pytest.raises(UsageError, match=r"no connection `zzz`$"):
        repository.existing(root, "connection", "zzz")


def test_an_invalid_id_is_refused_before_anything_is_read(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def listed(root: Path) -> None:
        raise AssertionError("listed")

    monkeypatch.setattr(repository, "list_files", listed)
    with pytest.raises(UsageError, match="connection '../x' is not valid"):
        repository.existing(tmp_path, "connection", "../x")
    (tmp_path / "connections.d").mkdir()
    (tmp_path / "connections.d" / "a.sops.yaml").write_text("")
    assert repository.existing(tmp_path, "connection", "a")  # found without a listing


def test_ids(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    assert repository.ids(root, "connection") == ["github", "registry"]
    assert repository.ids(root, "pipeline") == ["deploy"]
