"""Names as a case-insensitive or Unicode-normalising file system opens them (CONNC016).

`repository.fold` is the comparison; `list_files` (validate), `names_in_doubt` (render) and a
revision's listing (diff) judge the same names the same way.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connc import repository
from connc.repository import fold, in_doubt, list_files, names_in_doubt


@pytest.mark.parametrize(("name", "folded"), [
    ("members.yaml", "members.yaml"),
    ("Members.YAML", "members.yaml"),
    ("\u212a8s.sops.yaml", "k8s.sops.yaml"),  # KELVIN SIGN: K in NFD
    ("p\u0131pelines.d", "pipelines.d"),  # dotless i: NTFS upper-cases it to I
    ("\u017fops.yaml", "sops.yaml"),  # long s
    ("connc\u200d.yaml", "connc.yaml"),  # a joiner HFS+ ignores
    ("members.yaml.", "members.yaml"),  # Windows drops trailing dots
    ("members.yaml . ", "members.yaml"),  # and spaces
    ("caf\u00e9.yaml", unicodedata.normalize("NFD", "caf\u00e9.yaml")),
    ("cafe\u0301.yaml", unicodedata.normalize("NFD", "caf\u00e9.yaml")),  # NFC = NFD
])
def test_fold(name: str, folded: str) -> None:
    assert fold(name) == folded


@pytest.mark.parametrize(("directory", "names", "doubtful"), [
    # Exact names connc reads are never in doubt by themselves.
    ("", ["connections.d", "pipelines.d", "members.yaml", ".sops.yaml", "README.md"], []),
    ("", ["Members.yaml"], ["Members.yaml"]),
    ("", ["members.yaml", "MEMBERS.yaml"], ["MEMBERS.yaml", "members.yaml"]),
    ("", ["CONNECTIONS.D"], ["CONNECTIONS.D"]),
    ("", [".GITATTRIBUTES"], [".GITATTRIBUTES"]),
    ("", ["Readme.md", "README.md"], []),  # not read by connc: git's business
    ("connections.d", ["k8s.sops.yaml", "K8S.SOPS.YAML"],
     ["connections.d/K8S.SOPS.YAML", "connections.d/k8s.sops.yaml"]),
    ("connections.d", ["\u212a8s.sops.yaml"], ["connections.d/\u212a8s.sops.yaml"]),
    ("connections.d", ["Notes.txt", "x.yml"], []),
    ("pipelines.d", ["release.yaml", "release.yaml."],
     ["pipelines.d/release.yaml", "pipelines.d/release.yaml."]),
    ("pipelines.d", ["x.sops.yaml"], []),  # not an id: CONNC012's
])
def test_names_in_doubt(directory: str, names: list[str], doubtful: list[str]) -> None:
    assert sorted(in_doubt(directory, names)) == doubtful


def test_a_kelvin_sign_is_shown_escaped() -> None:
    [why] = in_doubt("connections.d", ["\u212a8s.sops.yaml"]).values()
    assert "`\\u212a8s.sops.yaml` is `k8s.sops.yaml`" in why


def test_validate_reads_no_file_in_doubt(tmp_path: Path) -> None:
    (tmp_path / "connections.d").mkdir()
    (tmp_path / "Connections.d").mkdir()
    (tmp_path / "pipelines.d").mkdir()
    for name in ("a.yaml", "A.yaml", "b.yaml", "B.yml"):
        (tmp_path / "pipelines.d" / name).write_text("x")
    (tmp_path / "connections.d" / "c.sops.yaml").write_text("x")
    listing = list_files(tmp_path)
    assert listing.connections == []  # connections.d/ is one directory with Connections.d/
    assert listing.pipelines == ["pipelines.d/b.yaml"]
    assert sorted((f.path, f.code) for f in listing.findings) == [
        ("Connections.d", "CONNC016"), ("connections.d", "CONNC016"),
        ("pipelines.d/A.yaml", "CONNC016"), ("pipelines.d/B.yml", "CONNC012"),
        ("pipelines.d/a.yaml", "CONNC016")]


NAMES = ["members.yaml", "Members.yaml", "connc.yaml", "CONNC.YAML", ".sops.yaml",
         "connections.d", "Connections.d", "pipelines.d", "PIPELINES.D", "README.md",
         ".gitattributes", ".GitAttributes", "members.yaml."]
ENTRIES = ["a.yaml", "A.yaml", "a.sops.yaml", "A.SOPS.YAML", "\u212a.yaml", "k.yaml",
           "b.yml", "\u212a8s.sops.yaml", "k8s.sops.yaml", "c\u0301.yaml", "\u0107.yaml",
           ".gitattributes", ".keep", "x.yaml."]


@settings(max_examples=60, deadline=None)
@given(top=st.sets(st.sampled_from(NAMES)),
       connections=st.sets(st.sampled_from(ENTRIES)), pipelines=st.sets(st.sampled_from(ENTRIES)))
def test_render_and_validate_find_the_same_names(tmp_path_factory: pytest.TempPathFactory,
                                                 top: set[str], connections: set[str],
                                                 pipelines: set[str]) -> None:
    root = tmp_path_factory.mktemp("names")
    for name in top:
        if name.endswith(".d"):
            (root / name).mkdir()
        else:
            (root / name).write_text("x")
    for directory, names in ((repository.CONNECTIONS_DIR, connections),
                             (repository.PIPELINES_DIR, pipelines)):
        if (root / directory).is_dir():
            for name in names:
                (root / directory / name).write_text("x")
    by_validate = {f for f in list_files(root).findings if f.code == "CONNC016"}
    assert by_validate == set(names_in_doubt(root))
