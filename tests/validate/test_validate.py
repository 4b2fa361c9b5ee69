"""`connc.validate.validate`: orchestration across files, in process and in worker processes."""

from __future__ import annotations

from pathlib import Path

from connc.validate.run import PARALLEL_THRESHOLD, validate
from kit.build import REPO_ROOT, connection, make_repo, pipeline
from kit.run import connc


def _codes(root: Path, **kwargs: object) -> set[tuple[str, str]]:
    return {(f.code, f.path) for f in validate(root, **kwargs).findings}  # type: ignore[arg-type]


def test_a_use_of_an_invalid_connection_file_is_not_called_missing(tmp_path: Path) -> None:
    broken = connection("gitlab-main", spec={"url": "http://gitlab.example.com"})
    root = make_repo(tmp_path, connections={"gitlab-main": broken},
                     pipelines={"ci": pipeline("ci", "gitlab-main")})
    codes = _codes(root)
    assert ("CONNC107", "connections.d/gitlab-main.sops.yaml") in codes
    assert not any(code == "CONNC205" for code, _path in codes)


def test_workers_and_a_single_process_find_the_same(tmp_path: Path) -> None:
    # Enough files to start the worker pool, with findings of both kinds in them.
    conns = {f"c{i}": connection(f"c{i}", spec={"url": f"https://gitlab.example.com/g{i}"},
                                 credential={"token": f"t{i}"})
             for i in range(PARALLEL_THRESHOLD // 2)}
    conns["c0"]["metadata"]["ownr"] = "alice"
    pipes = {f"p{i}": pipeline(f"p{i}", f"c{i}", owner="bob" if i % 7 == 0 else "alice")
             for i in range(PARALLEL_THRESHOLD // 2)}
    root = make_repo(tmp_path, connections=conns, pipelines=pipes, encrypt_all=False)
    serial = validate(root, jobs=1).findings
    parallel = validate(root, jobs=2).findings
    assert serial == parallel
    assert {"CONNC101", "CONNC301", "CONNC401"} <= {f.code for f in serial}


def test_a_file_where_a_directory_belongs_is_reported(tmp_path: Path) -> None:
    root = make_repo(tmp_path, pipelines={})
    (root / "pipelines.d").rmdir()
    (root / "pipelines.d").write_text("not a directory\n")
    assert ("CONNC008", "pipelines.d") in _codes(root)


def test_decrypt_without_any_key_is_an_environment_error(tmp_path: Path) -> None:
    # No file decrypts: the key is missing, which is no finding of the files (exit 2).
    repo = make_repo(tmp_path / "repo", connections={"gl": connection("gl")})
    ran = connc("validate", "--repo", str(repo), "--decrypt", key=None, cwd=REPO_ROOT)
    assert ran.returncode == 2 and "no usable key: SOPS_AGE_KEY_FILE is not set" in ran.stderr
    assert "CONNC601" not in ran.stdout


def test_a_github_account_id_two_users_share(tmp_path: Path) -> None:
    # CONNC214: reviews by that account would count as the consent of both users.
    members = {"apiVersion": "connc/v1", "kind": "Members", "users": {
        "alice": {"github": "achen", "githubId": 583231},
        "bob": {"github": "bobm", "githubId": 583231},
        "carol": {"githubId": 583232}}}
    found = [f for f in validate(make_repo(tmp_path, members=members)).findings
             if f.code == "CONNC214"]
    assert [(f.path, f.line) for f in found] == [("members.yaml", 9)]
    assert "account id 583231 of user `alice`" in found[0].message


def test_a_gitlab_account_two_users_share(tmp_path: Path) -> None:
    # CONNC214: approvals by that account would count as the consent of both users.
    members = {"apiVersion": "connc/v1", "kind": "Members", "users": {
        "alice": {"github": "achen", "gitlab": "achen"},  # one person, two forges: fine
        "bob": {"gitlab": "AChen"},
        "carol": {"gitlab": "carol", "gitlabId": 7},
        "dave": {"gitlabId": 7}}}
    found = [f for f in validate(make_repo(tmp_path, members=members)).findings
             if f.code == "CONNC214"]
    assert [(f.line, f.message) for f in found] == [
        (8, "user `bob` has the GitLab account `AChen` (names are case-insensitive) of user "
             "`alice`; its approvals would count as the consent of both"),
        (13, "user `dave` has the GitLab account id 7 of user `carol`; its approvals would "
             "count as the consent of both")]
