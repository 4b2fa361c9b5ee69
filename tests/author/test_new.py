"""`connc new`: every type's template validates at once, is encrypted, and never leaves
plaintext behind; refusals happen before anything is written."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from connc.author import new as scaffold
from connc.author.new import NotCreated, new_connection
from connc.errors import SopsError, UsageError
from connc.findings import has_errors
from connc.process import Deadline
from connc.schema import connection_types, models
from connc.schema.connection_types import PLACEHOLDER
from connc.seal import SEAL_FIELD
from connc.sops import binary
from connc.validate.run import validate
from kit.build import MEMBERS, REPO_ROOT, TEST_KEY_FILE, make_repo, pipeline, sops_rules, write
from kit.run import connc

TYPES = connection_types.NAMES


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", pipelines={"deploy": pipeline("deploy")})


def relpath(connection_id: str) -> str:
    return f"connections.d/{connection_id}.sops.yaml"


def connection_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "connections.d").iterdir())


def decrypted(root: Path, connection_id: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    return binary.decrypt(root, relpath(connection_id), deadline=Deadline(60))


# ---------------------------------------------------------------------------- templates


@pytest.mark.parametrize("connection_type", TYPES)
def test_every_type_validates_encrypted_with_placeholders(
        repo: Path, connection_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    created = new_connection(repo, connection_type, "new-conn", owner="alice")
    assert created.relpath == relpath("new-conn")
    report = validate(repo)
    # Only the placeholders only the user can fill in stand out (CONNC111), so an unfinished
    # scaffold cannot pass CI; everything else validates.
    written = connection_types.BY_NAME[connection_type].placeholders
    placeholders = [f for f, v in written.items()
                    if v == PLACEHOLDER or ".invalid" in str(v)
                    or str(v).endswith(f"/{PLACEHOLDER}")]
    assert sorted(f.message.split("`")[1] for f in report.findings) == sorted(
        f"spec.{field}" for field in placeholders), report.findings
    assert {f.code for f in report.findings} <= {"CONNC111"}
    text = (repo / created.relpath).read_text()
    document = yaml.safe_load(text)
    assert document["metadata"] == {"id": "new-conn", "name": "new-conn", "owner": "alice"}
    assert document["scope"] == {"visibility": "private"}
    assert document["sops"]["encrypted_regex"] == "^credential$"
    assert set(document["credential"]) == {*models.CREDENTIALS[connection_type].alternatives[0],
                                           SEAL_FIELD}  # every credential connc writes is sealed
    assert all(value.startswith("ENC[AES256_GCM,") for value in document["credential"].values())
    assert scaffold.SECRET_PLACEHOLDER not in text
    credential = decrypted(repo, "new-conn", monkeypatch)["credential"]
    secretless = not models.CREDENTIALS[connection_type].model_fields
    assert {value.reveal() for key, value in credential.items()
            if key != SEAL_FIELD} == (set() if secretless else {scaffold.SECRET_PLACEHOLDER})
    # The help survives encryption as plaintext comments, and marks every placeholder.
    assert ("connc secret set new-conn" in text) != secretless
    assert text.count(f"# {PLACEHOLDER}:") == len(written)


@pytest.mark.parametrize("connection_type", TYPES)
def test_templates_say_what_the_models_say(connection_type: str) -> None:
    """The help above each field is its model docstring, the text docs/formats.md shows: a
    field added to a model is described in the template with nothing else to write."""
    text = scaffold.dump(scaffold.document(connection_type, "new-conn", "alice", "custom",
                                           ["team:ops"]))
    comments = " ".join(line.split("#", 1)[1].strip() for line in text.splitlines()
                        if line.lstrip().startswith("#"))
    spec = models.spec_models()[connection_type]
    documented = [spec, models.ConnectionMetadata, models.Scope]
    if models.CREDENTIALS[connection_type].model_fields:
        documented.append(models.CREDENTIALS[connection_type])
    for model in documented:
        for name, field in model.model_fields.items():
            assert field.description and field.description in comments, (model, name)
    written, _optional = scaffold._spec_fields(
        connection_type, connection_types.BY_NAME[connection_type].placeholders)
    spec.model_validate({"type": connection_type, **written})


def test_help_lists_every_type() -> None:
    result = connc("new", "--help", key=None, cwd=REPO_ROOT)
    assert result.returncode == 0
    listed = " ".join(result.stdout.split())
    for connection_type in TYPES:
        assert connection_type in listed


def test_kubernetes_defaults_to_a_token_and_lists_optional_fields(repo: Path) -> None:
    new_connection(repo, "kubernetes", "k8s", owner="alice")
    text = (repo / relpath("k8s")).read_text()
    document = yaml.safe_load(text)
    assert set(document["credential"]) == {"token", SEAL_FIELD}
    assert document["spec"] == {"type": "kubernetes",
                                "server": "https://kubernetes.replace-me.invalid:6443"}
    for optional in ("certificateAuthorityData", "namespace", "insecureSkipTlsVerify"):
        assert f"# Optional `{optional}`" in text
    assert "connc secret unset k8s token" in text


def test_kubernetes_oidc_holds_only_its_seal(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    created = new_connection(repo, "kubernetes", "k8s-ci", owner="alice", auth="oidc")
    text = (repo / relpath("k8s-ci")).read_text()
    document = yaml.safe_load(text)
    assert set(document["credential"]) == {SEAL_FIELD}
    assert document["spec"] == {
        "type": "kubernetes", "server": "https://kubernetes.replace-me.invalid:6443",
        "auth": "oidc", "identity": {"provider": "auto", "audience": PLACEHOLDER}}
    # validate names the audience only the user knows, at its line.
    found = [f for f in validate(repo).findings if f.path == relpath("k8s-ci")]
    assert sorted(f.message.split("`")[1] for f in found) == ["spec.identity.audience",
                                                             "spec.server"]
    assert all(f.code == "CONNC111" for f in found)
    assert "# Optional `refresh`" in text and "connc secret set" not in text
    assert created.credential_fields == []
    assert not any("secret set" in line for line in created.next_steps())
    with pytest.raises(UsageError, match="kubernetes"):
        new_connection(repo, "gitlab", "gl", owner="alice", auth="oidc")


def test_aws_ecr_scaffold(repo: Path) -> None:
    new_connection(repo, "aws-ecr", "ecr", owner="alice")
    text = (repo / relpath("ecr")).read_text()
    spec = yaml.safe_load(text)["spec"]
    assert spec == {"type": "aws-ecr", "roleArn": "arn:aws:iam::000000000000:role/REPLACE-ME",
                    "region": "us-east-1", "sessionDurationSeconds": 900,
                    "identity": {"provider": "auto", "audience": "sts.amazonaws.com"}}
    assert "secretless" in text.splitlines()[0]


def test_github_app_writes_defaults_and_placeholders(repo: Path) -> None:
    new_connection(repo, "github-app", "gh", owner="alice")
    spec = yaml.safe_load((repo / relpath("gh")).read_text())["spec"]
    assert spec == {"type": "github-app", "url": "https://github.com",
                    "apiUrl": "https://api.github.com", "clientId": "REPLACE-ME",
                    "installationId": 1}


# ---------------------------------------------------------------------------- scope and owner


def test_custom_with_members(repo: Path) -> None:
    members = ("team:platform", "user:bob", "pipeline:deploy")
    new_connection(repo, "gitlab", "shared", owner="alice", visibility="custom", members=members)
    document = yaml.safe_load((repo / relpath("shared")).read_text())
    assert document["scope"] == {"visibility": "custom", "members": list(members)}
    assert not has_errors(validate(repo).findings)


def test_public(repo: Path) -> None:
    new_connection(repo, "codeup", "everyone", owner="bob", visibility="public")
    document = yaml.safe_load((repo / relpath("everyone")).read_text())
    assert document["scope"] == {"visibility": "public"}
    assert document["metadata"]["owner"] == "bob"


def test_owner_defaults_to_the_only_user(tmp_path: Path) -> None:
    members = {**MEMBERS, "users": {"carol": {}}, "teams": {}}
    root = make_repo(tmp_path / "repo", members=members)
    assert new_connection(root, "gitlab", "gl").owner == "carol"


def test_owner_is_required_with_several_users(repo: Path) -> None:
    with pytest.raises(UsageError, match=r"pass --owner USER: members.yaml has 2 users \(alice, bob\)"):
        new_connection(repo, "gitlab", "gl")
    assert connection_files(repo) == []


def test_owner_is_required_without_members(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", members=None)
    with pytest.raises(UsageError, match="pass --owner USER"):
        new_connection(root, "gitlab", "gl")


@pytest.mark.parametrize(("options", "code"), [
    ({"owner": "alicia"}, "CONNC201"),
    ({"owner": "alice", "visibility": "custom", "members": ("team:platfrom",)}, "CONNC202"),
    ({"owner": "alice", "visibility": "custom", "members": ("pipeline:nope",)}, "CONNC202"),
    ({"owner": "alice", "visibility": "custom", "members": ("group:x",)}, "CONNC102"),
])
def test_a_file_that_would_not_validate_is_removed(repo: Path, options: dict[str, Any],
                                                   code: str) -> None:
    with pytest.raises(NotCreated) as caught:
        new_connection(repo, "gitlab", "gl", **options)
    assert [f.code for f in caught.value.findings] == [code]
    assert connection_files(repo) == []


def test_recipient_outside_the_scope_is_refused(tmp_path: Path) -> None:
    """When members declare keys, a rule that encrypts to someone outside the scope fails."""
    members = {**MEMBERS, "users": {"alice": {"recipients": ["age1" + "q" * 58]}, "bob": {}}}
    root = make_repo(tmp_path / "repo", members=members)
    with pytest.raises(NotCreated) as caught:
        new_connection(root, "gitlab", "gl", owner="alice")
    # And alice's own key is not among the file's recipients (a warning of its own).
    assert [f.code for f in caught.value.findings] == ["CONNC408", "CONNC409"]
    assert connection_files(root) == []


# ---------------------------------------------------------------------------- refusals


def test_refuses_an_existing_id(repo: Path) -> None:
    new_connection(repo, "gitlab", "gl", owner="alice")
    before = (repo / relpath("gl")).read_bytes()
    with pytest.raises(UsageError, match="exists already"):
        new_connection(repo, "codeup", "gl", owner="alice")
    assert (repo / relpath("gl")).read_bytes() == before


def test_refuses_a_dangling_symlink(repo: Path) -> None:
    (repo / relpath("gl")).symlink_to(repo / "elsewhere.yaml")
    with pytest.raises(UsageError, match="exists already"):
        new_connection(repo, "gitlab", "gl", owner="alice")
    assert not (repo / "elsewhere.yaml").exists()


@pytest.mark.parametrize("bad_id", ["Gitlab", "-gl", "gl-", "../gl", "a/b", "x" * 64, ""])
def test_refuses_a_bad_id(repo: Path, bad_id: str) -> None:
    with pytest.raises(UsageError, match="an id is"):
        new_connection(repo, "gitlab", bad_id, owner="alice")
    assert connection_files(repo) == []


def test_refuses_an_unknown_type_with_a_suggestion(repo: Path) -> None:
    with pytest.raises(UsageError, match="did you mean `kubernetes`"):
        new_connection(repo, "kubernets", "k8s", owner="alice")


@pytest.mark.parametrize("visibility", ["private", "public"])
def test_member_needs_custom(repo: Path, visibility: str) -> None:
    with pytest.raises(UsageError, match="--member needs --visibility custom"):
        new_connection(repo, "gitlab", "gl", owner="alice", visibility=visibility,
                       members=("user:bob",))
    assert connection_files(repo) == []


# ---------------------------------------------------------------------------- no plaintext left


def test_no_matching_sops_rule_leaves_nothing(tmp_path: Path) -> None:
    rules = sops_rules()
    rules["creation_rules"][0]["path_regex"] = r"^elsewhere/.*$"
    root = make_repo(tmp_path / "repo", rules=rules)
    with pytest.raises(SopsError):
        new_connection(root, "gitlab", "gl", owner="alice")
    assert connection_files(root) == []


def test_a_rule_that_encrypts_too_much_leaves_nothing(tmp_path: Path) -> None:
    rules = sops_rules()
    del rules["creation_rules"][0]["encrypted_regex"]
    root = make_repo(tmp_path / "repo", rules=rules)
    with pytest.raises(NotCreated):
        new_connection(root, "gitlab", "gl", owner="alice")
    assert connection_files(root) == []


def test_plaintext_is_0600_and_removed_when_interrupted(repo: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def interrupted(root: Path, path: str, *, deadline: object) -> None:
        seen.append(stat.S_IMODE((root / path).stat().st_mode))
        raise KeyboardInterrupt

    monkeypatch.setattr(binary, "encrypt_in_place", interrupted)
    with pytest.raises(KeyboardInterrupt):
        new_connection(repo, "gitlab", "gl", owner="alice")
    assert seen == [0o600]
    assert connection_files(repo) == []


def test_validation_failure_after_encryption_removes_the_file(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import connc.validate.run

    def broken(root: Path) -> None:
        raise RuntimeError("validate crashed")

    monkeypatch.setattr(connc.validate.run, "validate", broken)
    with pytest.raises(RuntimeError):
        new_connection(repo, "gitlab", "gl", owner="alice")
    assert connection_files(repo) == []


def test_creates_connections_dir(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    (root / "connections.d").rmdir()
    new_connection(root, "gitlab", "gl", owner="alice")
    assert connection_files(root) == ["gl.sops.yaml"]


def test_connections_dir_that_is_a_file(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    (root / "connections.d").rmdir()
    (root / "connections.d").write_text("not a directory")
    with pytest.raises(UsageError, match="cannot create connections.d/"):
        new_connection(root, "gitlab", "gl", owner="alice")


# ---------------------------------------------------------------------------- the command


def test_cli_prints_the_path_then_next_steps_and_validates(repo: Path) -> None:
    result = connc("new", "github-app", "gh-acme", "--owner", "alice", "--repo", str(repo),
                   key=None, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "connections.d/gh-acme.sops.yaml\n"
    assert "       connc secret set gh-acme privateKey\n" in result.stderr
    assert "1. replace spec.clientId in" in result.stderr
    assert "  spec.installationId: 1 is valid as it is, so nothing reports it" in result.stderr
    # Exactly the placeholders it names, where it names them: nothing else is reported.
    checked = connc("validate", "--strict", "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert checked.returncode == 1
    named = re.findall(r"^  (\S+:\d+): (spec\.\w+) \(CONNC111\)$", result.stderr, re.MULTILINE)
    reported = re.findall(r"^(\S+:\d+):\d+: error CONNC111 `(spec\.\w+)`", checked.stdout,
                          re.MULTILINE)
    assert named == reported and len(named) == 1
    assert checked.stdout.count("\n") == 2  # the one, and the summary
    text = (repo / relpath("gh-acme")).read_text()
    (repo / relpath("gh-acme")).write_text(text.replace("clientId: REPLACE-ME",
                                                        "clientId: Iv23liReal"))
    checked = connc("validate", "--strict", "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert checked.returncode == 0, checked.stdout


def test_cli_custom_members(repo: Path) -> None:
    result = connc("new", "kubernetes", "k8s", "--owner", "alice", "--visibility", "custom",
                   "--member", "team:platform", "--member", "pipeline:deploy",
                   "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    scope = yaml.safe_load((repo / relpath("k8s")).read_text())["scope"]
    assert scope == {"visibility": "custom", "members": ["team:platform", "pipeline:deploy"]}


def test_cli_refusals_exit_2_with_one_line(repo: Path) -> None:
    result = connc("new", "gitlab", "gl", "--owner", "alice", "--member", "user:bob",
                   "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.startswith("connc: error: --member needs --visibility custom")
    assert result.stderr.count("\n") == 1


def test_cli_refused_new_names_no_line_of_the_removed_file(repo: Path) -> None:
    result = connc("new", "gitlab", "gl", "--owner", "alicia", "--repo", str(repo), key=None,
                   cwd=REPO_ROOT)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("connc: error: connections.d/gl.sops.yaml would not validate, so "
                             "nothing was written:\n  error CONNC201 owner `alicia` is not a "
                             "user in members.yaml; did you mean `alice`?\n")
    assert connection_files(repo) == []


@pytest.mark.parametrize(("given", "meant"), [
    ("npm", "`packages` with `format: npm` in its spec"),
    ("PyPI", "`packages` with `format: pypi` in its spec"),
    ("k8s", "`kubernetes`"),
    ("docker", "`container-registry`"),
    ("github", "`github-app`"),
    ("gitlb", "`gitlab`"),
])
def test_unknown_types_get_the_type_meant(repo: Path, given: str, meant: str) -> None:
    with pytest.raises(UsageError, match=re.escape(f"did you mean {meant}?")):
        new_connection(repo, given, "conn", owner="alice")
    assert connection_files(repo) == []


def test_cli_default_repo_is_the_current_directory(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    result = connc("new", "bitbucket", "bb", "--owner", "bob", cwd=root, key=None)
    assert result.returncode == 0, result.stderr
    assert connection_files(root) == ["bb.sops.yaml"]
    write(root, "pipelines.d/p.yaml", pipeline("p", "bb", owner="bob"))
    assert not has_errors(validate(root).findings)
