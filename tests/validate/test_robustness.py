"""Bad input never stops `connc validate`: each bad file is one finding that names it, and the
run goes on to report the other files. Usage mistakes are exit 2 with a clear message.

Most cases run in-process (fast); a few run `python -m connc validate` to prove the exit code
and that nothing reaches stderr (no traceback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from connc.findings import Finding
from connc.validate.run import validate
from kit.build import REPO_ROOT, connection, make_repo, pipeline, write
from kit.run import connc

BadFile = Callable[[Path, str], None]

# The other file broken in its own way: its finding must survive whatever the bad file does.
OTHER = "pipelines.d/other.yaml"
OTHER_DOCUMENT = {**pipeline("other", "gl"), "colour": "blue"}


def _text(content: str | bytes) -> BadFile:
    def make(root: Path, relpath: str) -> None:
        write(root, relpath, content)

    return make


def _fifo(root: Path, relpath: str) -> None:
    os.mkfifo(root / relpath)


def _directory(root: Path, relpath: str) -> None:
    (root / relpath).mkdir()
    write(root, f"{relpath}/inner.yaml", "a: 1\n")


def _outside_symlink(root: Path, relpath: str) -> None:
    outside = root.parent / "outside.yaml"
    outside.write_text("apiVersion: connc/v1\n")
    (root / relpath).symlink_to(outside)


def _dangling_outside_symlink(root: Path, relpath: str) -> None:
    (root / relpath).symlink_to(root.parent / "nowhere" / "x.yaml")


def _huge(root: Path, relpath: str) -> None:
    # 50 MB without writing 50 MB: a sparse file. connc must refuse it by size, unread.
    with open(root / relpath, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)


def _alias_bomb() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


VALID_CONNECTION = "apiVersion: connc/v1\nkind: Connection\nmetadata:\n  id: bad\n"

# (case id, bad content, the code it must produce)
BAD_CONTENT: list[tuple[str, BadFile, str]] = [
    ("empty", _text(""), "CONNC004"),
    ("whitespace", _text("\n   \n\n"), "CONNC004"),
    ("comments-only", _text("# nothing here\n"), "CONNC004"),
    ("non-utf8", _text(b"apiVersion: connc/v1\nkind: \xff\xfe\x00Connection\n"), "CONNC010"),
    ("utf16", _text("apiVersion: connc/v1\n".encode("utf-16")), "CONNC010"),
    ("alias-bomb", _text(_alias_bomb()), "CONNC009"),
    ("recursive-alias", _text("a: &a [*a]\n"), "CONNC009"),
    ("deep-nesting", _text("a: " + "[" * 2000 + "]" * 2000 + "\n"), "CONNC001"),
    ("50mb", _huge, "CONNC006"),
    ("symlink-out", _outside_symlink, "CONNC007"),
    ("dangling-symlink-out", _dangling_outside_symlink, "CONNC007"),
    ("directory", _directory, "CONNC008"),
    ("fifo", _fifo, "CONNC008"),
    ("bom", _text(b"\xef\xbb\xbf" + VALID_CONNECTION.encode()), "CONNC013"),
    ("tabs", _text("apiVersion: connc/v1\nmetadata:\n\tid: bad\n"), "CONNC001"),
    ("syntax", _text("apiVersion: connc/v1\nmetadata: {id: bad\n"), "CONNC001"),
    ("two-documents", _text(VALID_CONNECTION + "---\n" + VALID_CONNECTION), "CONNC005"),
    ("list", _text("- apiVersion: connc/v1\n- kind: Connection\n"), "CONNC102"),
    ("scalar", _text("just some text\n"), "CONNC102"),
    ("null", _text("~\n"), "CONNC102"),
    ("duplicate-key", _text("apiVersion: connc/v1\napiVersion: connc/v1\n"), "CONNC002"),
]
CASE_IDS = [case[0] for case in BAD_CONTENT]

# Every place connc reads a file from.
PLACES = {
    "connection": "connections.d/bad.sops.yaml",
    "pipeline": "pipelines.d/bad.yaml",
    "members": "members.yaml",
    "sops-config": ".sops.yaml",
    "config": "connc.yaml",
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid repository, encrypted once per module; each test copies it."""
    root = tmp_path_factory.mktemp("template") / "repo"
    return make_repo(root, connections={"gl": connection("gl")},
                     pipelines={"p1": pipeline("p1", "gl")})


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    write(root, OTHER, OTHER_DOCUMENT)
    return root


def codes_for(findings: list[Finding], relpath: str) -> set[str]:
    return {f.code for f in findings if f.path == relpath}


def assert_other_file_still_reported(findings: list[Finding]) -> None:
    assert "CONNC101" in codes_for(findings, OTHER), "the run stopped at the bad file"


# ---------------------------------------------------------------------------- in-process


@pytest.mark.parametrize(("case", "make", "code"), BAD_CONTENT, ids=CASE_IDS)
@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
def test_bad_file_is_one_finding_and_the_run_goes_on(repo: Path, place: str, case: str,
                                                     make: BadFile, code: str) -> None:
    target = repo / place
    if target.exists() or target.is_symlink():
        target.unlink()
    make(repo, place)
    findings = validate(repo).findings
    if place == ".sops.yaml" and code == "CONNC102":
        code = "CONNC014"  # a .sops.yaml of the wrong shape has its own code
    assert code in codes_for(findings, place)
    assert all(f.line >= 1 and f.column >= 1 for f in findings)
    assert_other_file_still_reported(findings)


def test_a_second_bad_connection_does_not_hide_the_first(repo: Path) -> None:
    for (case, make, _code) in BAD_CONTENT:
        make(repo, f"connections.d/{case}.sops.yaml")
    findings = validate(repo).findings
    for case, _make, code in BAD_CONTENT:
        assert code in codes_for(findings, f"connections.d/{case}.sops.yaml"), case
    assert_other_file_still_reported(findings)
    # The valid connection and pipeline are still checked (and still fine).
    assert not codes_for(findings, "connections.d/gl.sops.yaml")
    assert not codes_for(findings, "pipelines.d/p1.yaml")


def test_missing_members_is_one_finding(repo: Path) -> None:
    (repo / "members.yaml").unlink()
    findings = validate(repo).findings
    assert codes_for(findings, "members.yaml") == {"CONNC011"}
    assert_other_file_still_reported(findings)
    # Without members, references are not checked (no flood of unknown-owner findings).
    assert "CONNC201" not in {f.code for f in findings}


def test_missing_sops_config_is_one_finding(repo: Path) -> None:
    (repo / ".sops.yaml").unlink()
    findings = validate(repo).findings
    assert codes_for(findings, ".sops.yaml") == {"CONNC014"}
    assert_other_file_still_reported(findings)


def test_symlinked_directory_leaving_the_repository(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write(outside, "stolen.yaml", pipeline("stolen"))
    (repo / "pipelines.d" / "p1.yaml").rename(outside / "p1.yaml")
    (repo / "pipelines.d" / "other.yaml").unlink()
    (repo / "pipelines.d").rmdir()
    (repo / "pipelines.d").symlink_to(outside)
    findings = validate(repo).findings
    # The directory is refused whole: none of its files is read.
    assert codes_for(findings, "pipelines.d") == {"CONNC007"}
    assert not codes_for(findings, "pipelines.d/stolen.yaml")
    assert not codes_for(findings, "pipelines.d/p1.yaml")


def test_symlink_inside_the_repository_is_refused_too(repo: Path) -> None:
    # pipelines.d/p2.yaml -> ../docs/p2.yaml would make render use a file no review of
    # pipelines.d/ covers (docs/diff.md): every symlink is refused, wherever it points.
    write(repo, "docs/p2.yaml", pipeline("p2"))
    (repo / "pipelines.d" / "p2.yaml").symlink_to("../docs/p2.yaml")
    (repo / "pipelines.d" / "p3.yaml").symlink_to(repo / "pipelines.d" / "p1.yaml")
    findings = validate(repo).findings
    assert codes_for(findings, "pipelines.d/p2.yaml") == {"CONNC007"}
    assert codes_for(findings, "pipelines.d/p3.yaml") == {"CONNC007"}


def test_misnamed_files_are_reported_not_read(repo: Path) -> None:
    write(repo, "connections.d/gl.yaml", b"\xff")
    write(repo, "pipelines.d/p3.yml", "")
    write(repo, "pipelines.d/.hidden.yaml", b"\xff")  # editors' swap files and the like
    findings = validate(repo).findings
    assert codes_for(findings, "connections.d/gl.yaml") == {"CONNC012"}
    assert codes_for(findings, "pipelines.d/p3.yml") == {"CONNC012"}
    assert not codes_for(findings, "pipelines.d/.hidden.yaml")


def test_bom_file_is_still_checked(repo: Path) -> None:
    text = (repo / "pipelines.d" / "p1.yaml").read_text()
    write(repo, "pipelines.d/p1.yaml", b"\xef\xbb\xbf" + text.replace("gl", "nope").encode())
    assert codes_for(validate(repo).findings, "pipelines.d/p1.yaml") == {"CONNC013", "CONNC205"}


def test_connection_that_is_a_list_of_connections(repo: Path) -> None:
    documents = [connection("a"), connection("b")]
    write(repo, "connections.d/both.sops.yaml", json.dumps(documents))
    findings = validate(repo).findings
    assert codes_for(findings, "connections.d/both.sops.yaml") == {"CONNC102"}


@pytest.mark.parametrize("text", [
    ("apiVersion: connc/v1\nkind: Connection\nmetadata: [id, name]\nscope: 3\nspec: null\n"
     "credential: [a]\nsops: text\n"),
    ("apiVersion: connc/v1\nkind: Connection\nmetadata: {id: [x], owner: {a: 1}}\n"
     "scope: {visibility: [custom], members: {a: b}}\nspec: {type: {x: 1}}\n"
     "credential: {a: {b: c}}\n"),
    ("apiVersion: connc/v1\nkind: Connection\nsops: {age: 3, key_groups: 4, mac: [], "
     "lastmodified: {}, encrypted_regex: 5}\ncredential: {token: 'ENC[x]'}\n"),
    "apiVersion: connc/v1\nkind: Connection\n? [complex, key]\n: 1\n? {a: b}\n: 2\n",
    ("apiVersion: connc/v1\nkind: Connection\nmetadata: {id: x, name: x, owner: alice, "
     "expiresAt: 99999-99-99}\nscope: {visibility: private}\nspec: {type: kubernetes, "
     "server: 'https://[::1', certificateAuthorityData: '%%%'}\ncredential: {}\n"),
])
def test_wrong_shapes_everywhere_are_findings_not_crashes(repo: Path, text: str) -> None:
    write(repo, "connections.d/shapes.sops.yaml", text)
    findings = validate(repo).findings
    assert codes_for(findings, "connections.d/shapes.sops.yaml")
    assert_other_file_still_reported(findings)


@pytest.mark.parametrize("text", [
    "apiVersion: connc/v1\nkind: Pipeline\nmetadata: {id: p9, owner: alice}\nuses: gl\n",
    "apiVersion: connc/v1\nkind: Pipeline\nmetadata: {id: p9, owner: alice}\nuses: [gl, 3, null]\n",
    ("apiVersion: connc/v1\nkind: Pipeline\nmetadata: {id: p9, owner: alice, teams: platform}\n"
     "uses: [{connection: [gl], repositories: api, permissions: [read]}]\n"),
    "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\nuses:\n",
])
def test_wrong_pipeline_shapes(repo: Path, text: str) -> None:
    write(repo, "pipelines.d/p9.yaml", text)
    findings = validate(repo).findings
    assert codes_for(findings, "pipelines.d/p9.yaml")
    assert_other_file_still_reported(findings)


@pytest.mark.parametrize("text", [
    "apiVersion: connc/v1\nkind: Members\nusers: [alice, bob]\nteams: {platform: [alice]}\n",
    "apiVersion: connc/v1\nkind: Members\nusers: {alice: 3, bob: {recipients: age1x}}\n",
    "apiVersion: connc/v1\nkind: Members\nusers: {alice: {}}\nteams: {t: {members: [ghost]}}\n",
])
def test_wrong_members_shapes(repo: Path, text: str) -> None:
    write(repo, "members.yaml", text)
    findings = validate(repo).findings
    assert codes_for(findings, "members.yaml")
    assert_other_file_still_reported(findings)


@pytest.mark.parametrize("text", [
    "creation_rules: {age: x}\n",
    "creation_rules: [3]\n",
    "creation_rules:\n  - path_regex: '(['\n",
    "creation_rules:\n  - path_regex: [a]\n    age: 3\n    key_groups: 4\n",
    "creation_rules:\n  - key_groups: [3, {age: 3, merge: 5}]\n",
])
def test_wrong_sops_config_shapes(repo: Path, text: str) -> None:
    write(repo, ".sops.yaml", text)
    findings = validate(repo).findings
    assert_other_file_still_reported(findings)
    assert codes_for(findings, ".sops.yaml") or codes_for(findings, "connections.d/gl.sops.yaml")


# ---------------------------------------------------------------------------- subprocess


def test_cli_reports_every_bad_file_with_no_traceback(repo: Path) -> None:
    for case in ("empty", "non-utf8", "alias-bomb", "50mb", "symlink-out", "directory", "fifo",
                 "tabs", "two-documents", "list"):
        make = next(m for c, m, _code in BAD_CONTENT if c == case)
        make(repo, f"connections.d/{case}.sops.yaml")
    (repo / "members.yaml").unlink()
    result = connc("validate", "--repo", str(repo), "--format", "json", key=None, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert result.stderr == ""
    paths = {f["path"] for f in json.loads(result.stdout)["findings"]}
    assert paths >= {f"connections.d/{case}.sops.yaml" for case in (
        "empty", "non-utf8", "alias-bomb", "50mb", "symlink-out", "directory", "fifo", "tabs",
        "two-documents", "list")} | {"members.yaml", OTHER}


def test_cli_text_output_names_the_file_and_position(repo: Path) -> None:
    write(repo, "connections.d/tabs.sops.yaml", "apiVersion: connc/v1\nmetadata:\n\tid: x\n")
    result = connc("validate", "--repo", str(repo), "--format", "text", key=None, cwd=REPO_ROOT)
    assert result.returncode == 1 and result.stderr == ""
    assert "connections.d/tabs.sops.yaml:3:1: error CONNC001" in result.stdout
    assert f"{OTHER}:" in result.stdout


@pytest.mark.parametrize(("make_repo_arg", "message"), [
    (lambda tmp: tmp / "does-not-exist", "is not a directory"),
    (lambda tmp: write(tmp, "a-file.yaml", "a: 1\n"), "is a file"),
    (lambda tmp: tmp, "is not a connection repository"),
])
def test_bad_repo_argument_is_a_usage_error(tmp_path: Path, make_repo_arg: Callable[[Path], Path],
                                            message: str) -> None:
    result = connc("validate", "--repo", str(make_repo_arg(tmp_path)), key=None, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_unknown_option_is_a_usage_error(repo: Path) -> None:
    result = connc("validate", "--repo", str(repo), "--format", "yaml", key=None, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
