"""Fixtures of the review tests: the estate of `estate.py`, built once, copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import estate as estates
import pytest


@pytest.fixture(scope="module")
def estate_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("HOME", str(home))
        patch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        yield estates.build(tmp_path_factory.mktemp("estate") / "repo")


@pytest.fixture
def estate(estate_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(estate_template, tmp_path / "repo", symlinks=True))
