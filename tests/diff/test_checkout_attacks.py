"""Other bytes than review read: the checkout render reads must be the blob `connc diff` read.

Each attack is a real commit on the estate of conftest.py that changes nothing `diff` compares
in the blobs (comments only, or a name git on Linux keeps apart), while the checkout — a clone,
or a tarball of `git archive` — says `web` (alice's pipeline) is bob's and uses bob's private
registry credential. Before these checks, `connc diff` exited 0 with no row, `connc approvals`
needed no consent, validate passed on the checkout and render wrote bob's password into the
bundle. Now `diff` fails closed (approver nobody), validate reports the line, and render
refuses before anything is decrypted.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit.build import REPO_ROOT, TEST_KEY_FILE, commit, git, write
from kit.run import connc

SECRET = "fake-password"  # bob's private registry credential in the estate
WEB = "pipelines.d/web.yaml"

# alice's `web`, with comments that hide, in the blob, the lines the checkout reads: owner
# bob, the original owner swallowed by a quoted description, and bob's private registry `reg`
# added to `uses`.
ATTACK = """\
apiVersion: connc/v1
kind: Pipeline
metadata:
  id: web  # {hide}  owner: bob{hide}  description: "
  owner: alice  # "
uses:
- connection: npm  # {hide}- connection: reg
"""


@pytest.fixture
def estate(estate: Path) -> Path:
    """The estate with alice's pipeline `web`, which uses her public npm registry."""
    write(estate, WEB, {"apiVersion": "connc/v1", "kind": "Pipeline",
                        "metadata": {"id": "web", "owner": "alice"},
                        "uses": [{"connection": "npm"}]})
    commit(estate, "web")
    return estate


def diff_json(repo: Path) -> tuple[int, dict[str, Any]]:
    ran = connc("diff", "--repo", str(repo), "main~1", "main", "--format", "json", key=None,
                cwd=REPO_ROOT)
    assert ran.returncode in (0, 1), ran.stderr
    return ran.returncode, json.loads(ran.stdout)


def diff_json_after_commit(repo: Path) -> tuple[int, dict[str, Any]]:
    commit(repo)
    return diff_json(repo)


def doubtful_rows(data: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    return [(row["change"], row["file"], row["at"], row["approvers"])
            for row in data["changes"]["integrity"]]


def render(repo: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return connc("render", "web", "--repo", str(repo), "--out", str(out),
                 key=TEST_KEY_FILE, cwd=REPO_ROOT)


def says(text: str) -> tuple[str, list[str]]:
    """Owner and uses, as any YAML 1.1 reader reads the text (PyYAML: NEL breaks lines)."""
    document = yaml.safe_load(text)
    return document["metadata"]["owner"], [use["connection"] for use in document["uses"]]


def assert_refused(ran: subprocess.CompletedProcess[str], out: Path, code: str) -> None:
    assert ran.returncode == 1, ran.stderr
    assert code in ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
    assert not out.exists()


def assert_no_consent_can_pass(estate: Path) -> None:
    ran = connc("approvals", "--repo", str(estate), "main~1", "main",
                "--approved-by", "alice,bob,carol,dave", key=None, cwd=REPO_ROOT)
    assert ran.returncode == 1, ran.stdout


# ---------------------------------------------------------------------------- re-encoding


def test_working_tree_encoding_turns_a_comment_into_yaml(estate: Path, tmp_path: Path) -> None:
    write(estate, ".gitattributes",
          "pipelines.d/web.yaml working-tree-encoding=windows-1252\n")
    # Written as the attribute says the working tree holds it; `git add` stores UTF-8.
    write(estate, WEB, ATTACK.format(hide="Â…").encode("windows-1252"))
    commit(estate, "web: comments")
    blob = git(estate, "show", f"main:{WEB}")
    assert says(blob) == ("alice", ["npm"])  # what review reads: no change
    checkout = tmp_path / "ci"
    git(tmp_path, "clone", "-q", str(estate), str(checkout))
    checked_out = (checkout / WEB).read_bytes()
    assert b"\xc2\x85" in checked_out  # "Â…" in windows-1252: the UTF-8 of NEL
    assert says(checked_out.decode()) == ("bob", ["npm", "reg"])

    code, data = diff_json(estate)
    assert code == 1
    assert doubtful_rows(data) == [("makes git rewrite connc files on checkout or export",
                                    ".gitattributes:1", "head", ["nobody"])]
    assert_no_consent_can_pass(estate)

    ran = connc("validate", "--repo", str(checkout), "--format", "json", key=None, cwd=REPO_ROOT)
    found = {(f["code"], f["path"], f["line"], f["column"])
             for f in json.loads(ran.stdout)["findings"]}
    line = ATTACK.splitlines()[3]
    assert found == {("CONNC015", WEB, 4, line.index("{hide}") + 1),
                     ("CONNC017", ".gitattributes", 1, 1)}
    # Its first reading refuses the NEL; had the bytes stayed YAML, the attribute would.
    assert_refused(render(checkout, tmp_path / "out"), tmp_path / "out",
                   f"{WEB}:4:{line.index('{hide}') + 1}: CONNC015")


def test_nel_alone_is_refused_by_every_reader(estate: Path, tmp_path: Path) -> None:
    # Committed as such, no attribute needed: every command reads it with the one reader.
    write(estate, WEB, ATTACK.format(hide="\u0085"))
    _code, data = diff_json_after_commit(estate)
    # diff does not read the hidden lines either: `web` is not compared as bob's, using reg.
    assert not [row for row in data["changes"]["grants"] if row["connection"] == "reg"]
    ran = connc("validate", "--repo", str(estate), "--format", "json", key=None, cwd=REPO_ROOT)
    assert [(f["code"], f["line"]) for f in json.loads(ran.stdout)["findings"]] == [
        ("CONNC015", 4)]
    ran = render(estate, tmp_path / "out")
    assert ran.returncode == 1 and "CONNC015" in ran.stderr
    assert SECRET not in ran.stdout + ran.stderr


# ---------------------------------------------------------------------------- export


def test_export_subst_in_a_tarball(estate: Path, tmp_path: Path) -> None:
    # `$Format:%n$` is a newline in `git archive`'s output, so the comment becomes YAML there.
    write(estate, ".gitattributes", "pipelines.d/*.yaml export-subst\n")
    write(estate, WEB, ATTACK.format(hide="$Format:%n$"))
    commit(estate, "web: comments")
    assert says(git(estate, "show", f"main:{WEB}")) == ("alice", ["npm"])
    release = tmp_path / "release"
    archive = subprocess.run(["git", "archive", "--format=tar", "main"], cwd=estate,
                             capture_output=True, check=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(release, filter="data")
    assert not (release / ".git").exists()
    assert says((release / WEB).read_text()) == ("bob", ["npm", "reg"])

    code, data = diff_json(estate)
    assert code == 1 and doubtful_rows(data) == [
        ("makes git rewrite connc files on checkout or export", ".gitattributes:1", "head",
         ["nobody"])]
    assert_no_consent_can_pass(estate)
    assert_refused(render(release, tmp_path / "out"), tmp_path / "out", "CONNC017")


def test_an_export_ignored_gitattributes_still_fails_review(estate: Path) -> None:
    # The tarball then carries no .gitattributes for render to read: review is the gate.
    write(estate, ".gitattributes",
          "pipelines.d/*.yaml export-subst\n.gitattributes export-ignore\n")
    write(estate, WEB, ATTACK.format(hide="$Format:%n$"))
    code, data = diff_json_after_commit(estate)
    assert code == 1 and [row[1] for row in doubtful_rows(data)] == [".gitattributes:1"]


@pytest.mark.parametrize("attributes", [
    "connc.yaml export-ignore",  # a tarball without it: requireSeals is off
    "* text=auto",
    "*.yaml filter=lfs diff=lfs merge=lfs -text",
    "[attr]mine ident\nconnections.d/** mine",
    "members.yaml eol=crlf",
])
def test_any_rewriting_attribute_fails_review(estate: Path, attributes: str) -> None:
    write(estate, ".gitattributes", attributes + "\n")
    code, data = diff_json_after_commit(estate)
    assert code == 1
    assert {row[0] for row in doubtful_rows(data)} == {
        "makes git rewrite connc files on checkout or export"}
    assert all(row[2:] == ("head", ["nobody"]) for row in doubtful_rows(data))


def test_the_fix_passes_and_base_is_listed_without_widening(estate: Path) -> None:
    write(estate, ".gitattributes", "* text=auto\n")
    commit(estate, "normalise line ends")
    write(estate, ".gitattributes", "* text=auto\nconnections.d/** -text -eol -crlf -filter "
          "-ident -working-tree-encoding -export-subst -export-ignore\npipelines.d/** -text\n"
          "/members.yaml -text\n/connc.yaml -text\n/.sops.yaml -text\n")
    code, data = diff_json_after_commit(estate)
    assert code == 0, data
    assert doubtful_rows(data) == [("makes git rewrite connc files on checkout or export",
                                    ".gitattributes:1", "base", [])]


def test_render_refuses_only_for_the_files_it_reads(estate: Path, tmp_path: Path) -> None:
    # As for any file render does not read: validate and review still fail on it.
    write(estate, ".gitattributes", "connections.d/gh.sops.yaml ident\n")
    ran = render(estate, tmp_path / "out")
    assert ran.returncode == 0, ran.stderr
    write(estate, ".gitattributes", "connections.d/npm.sops.yaml ident\n")
    assert_refused(render(estate, tmp_path / "out2"), tmp_path / "out2", "CONNC017")


def test_a_parent_directory_gitattributes_counts(tmp_path: Path, estate: Path) -> None:
    # The connection repository as a directory of a larger work tree: `infra/` has one too.
    outer = tmp_path / "mono"
    git(tmp_path, "init", "-q", "-b", "main", str(outer))
    shutil.copytree(estate, outer / "infra", ignore=shutil.ignore_patterns(".git"))
    commit(outer, "base")
    write(outer, ".gitattributes", "infra/pipelines.d/* ident\n")
    commit(outer, "keywords")
    ran = connc("diff", "--repo", str(outer / "infra"), "main~1", "main", "--format", "json",
                key=None, cwd=REPO_ROOT)
    assert ran.returncode == 1, ran.stderr
    assert doubtful_rows(json.loads(ran.stdout)) == [
        ("makes git rewrite connc files on checkout or export", "../.gitattributes:1", "head",
         ["nobody"])]
    ran = connc("validate", "--repo", str(outer / "infra"), "--format", "json", key=None,
                cwd=REPO_ROOT)
    assert [(f["code"], f["path"]) for f in json.loads(ran.stdout)["findings"]] == [
        ("CONNC017", "../.gitattributes")]


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(("relpath", "doubtful"), [
    # Beside web.yaml: one file on macOS and Windows, which one a checkout keeps unknown.
    ("pipelines.d/WEB.YAML", ["pipelines.d/WEB.YAML", "pipelines.d/web.yaml"]),
    ("pipelines.d/Web.yaml", ["pipelines.d/Web.yaml", "pipelines.d/web.yaml"]),
    # A directory git on Linux keeps apart, which macOS merges into pipelines.d/.
    ("Pipelines.d/ci.yaml", ["Pipelines.d", "pipelines.d"]),
    # KELVIN SIGN: normalised, it is the K of k8s.
    ("connections.d/\u212a8s.sops.yaml", ["connections.d/\u212a8s.sops.yaml",
                                          "connections.d/k8s.sops.yaml"]),
    ("Members.yaml", ["Members.yaml", "members.yaml"]),
])
def test_names_one_file_on_a_case_insensitive_system(estate: Path, tmp_path: Path,
                                                      relpath: str,
                                                      doubtful: list[str]) -> None:
    # What the other name says does not matter: which file render would open does.
    write(estate, relpath, ATTACK.format(hide="").replace("alice", "bob"))
    code, data = diff_json_after_commit(estate)
    assert code == 1
    assert doubtful_rows(data) == [
        ("its name is another file's on a case-insensitive file system", path, "head",
         ["nobody"]) for path in sorted(doubtful)]
    ran = connc("validate", "--repo", str(estate), "--format", "json", key=None, cwd=REPO_ROOT)
    assert sorted(f["path"] for f in json.loads(ran.stdout)["findings"]
                  if f["code"] == "CONNC016") == sorted(doubtful)
    assert_refused(render(estate, tmp_path / "out"), tmp_path / "out", "CONNC016")
