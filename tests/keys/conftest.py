"""Fixtures of the keys tests: the repository of `keykit.build`, built once, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import keykit
import pytest


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return keykit.build(tmp_path_factory.mktemp("estate"))


@pytest.fixture
def repo(estate: dict[str, Any], tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(estate["repo"], copy)
    return copy


