"""The committed demo repository (the project root) validates and renders, as the README says."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from kit.build import REPO_ROOT
from kit.run import connc

DEMO_KEY = REPO_ROOT / "demo" / "demo-age-key.txt"


def _connc(*args: str | Path, key: bool = False) -> subprocess.CompletedProcess[str]:
    return connc(*args, key=DEMO_KEY if key else None, cwd=REPO_ROOT)


def test_the_demo_key_is_labelled_as_a_demo_key() -> None:
    assert "DEMO KEY" in DEMO_KEY.read_text().splitlines()[0]


def test_the_demo_validates_keyless_and_with_the_key() -> None:
    for proc in (_connc("validate", "--strict", "--format", "json"),
                 _connc("validate", "--strict", "--decrypt", "--format", "json", key=True)):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["findings"] == []


def test_the_demo_covers_every_type_and_visibility() -> None:
    from connc.documents import parse
    from connc.schema import connection_types

    types, visibilities, member_kinds = set(), set(), set()
    for path in (REPO_ROOT / "connections.d").glob("*.sops.yaml"):
        data = parse(path.read_text()).data
        types.add(data["spec"]["type"])
        visibilities.add(data["scope"]["visibility"])
        member_kinds |= {m.split(":")[0] for m in data["scope"].get("members", [])}
    assert types == set(connection_types.NAMES)
    assert visibilities == {"private", "public", "custom"}
    assert member_kinds == {"user", "team", "pipeline"}


def test_the_demo_pipeline_renders_with_the_demo_key(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    proc = _connc("render", "--pipeline", "demo", "--out", out, "--format", "json", key=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert {"git/askpass", "docker/config.json", "kube/config", "maven/settings.xml",
            "npm/npmrc", "pip/pip.conf"} <= set(manifest["files"])
    assert os.stat(out).st_mode & 0o777 == 0o700
