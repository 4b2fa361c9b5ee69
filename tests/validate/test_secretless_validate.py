"""validate, keyless, on secretless connections: shapes, and a credential that holds only its
seal."""

from __future__ import annotations

from pathlib import Path

from connc.validate.run import validate
from kit.build import connection, make_repo, pipeline

ECR_SPEC = {"roleArn": "arn:aws:iam::123456789012:role/ci-push", "region": "eu-central-1",
            "identity": {"audience": "sts.amazonaws.com"}}
KUBE_SPEC = {"server": "https://kube.example.com", "auth": "oidc",
             "identity": {"provider": "gitlab-ci", "audience": "kubernetes",
                          "tokenVariable": "KUBE_ID_TOKEN"}}


def test_secretless_connections_validate_clean(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", connections={
        "ecr": connection("ecr", type_="aws-ecr", spec=ECR_SPEC, credential={}),
        "pub": connection("pub", type_="pypi-publish", spec={"identity": {"audience": "auto"}},
                          credential={}),
        "k8s": connection("k8s", type_="kubernetes", spec=KUBE_SPEC, credential={}),
    }, pipelines={"ci": pipeline("ci", "ecr", "pub", "k8s")})
    assert validate(repo).findings == []


def test_a_stored_secret_in_a_secretless_connection_is_an_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", connections={
        "ecr": connection("ecr", type_="aws-ecr", spec=ECR_SPEC,
                          credential={"password": "kept-anyway"}),
        "k8s": connection("k8s", type_="kubernetes", spec=KUBE_SPEC,
                          credential={"token": "kept-anyway"}),
    })
    found = {(f.path, f.code) for f in validate(repo).findings}
    assert found == {("connections.d/ecr.sops.yaml", "CONNC101"),
                     ("connections.d/k8s.sops.yaml", "CONNC101")}
    messages = [f.message for f in validate(repo).findings]
    assert all("stores no secret" in m and "only its seal" in m for m in messages)
    assert not any("kept-anyway" in m for m in messages)


def test_shapes_are_checked_at_their_line(tmp_path: Path) -> None:
    bad = {**ECR_SPEC, "roleArn": "arn:aws:iam::123:role/x", "stsEndpoint": "http://sts.example"}
    repo = make_repo(tmp_path / "repo", connections={
        "ecr": connection("ecr", type_="aws-ecr", spec=bad, credential={})})
    found = [(f.code, f.message) for f in validate(repo).findings]
    assert ("CONNC102" in {code for code, _ in found}), found
    assert any("spec.roleArn" in message for _, message in found)
    assert any("spec.stsEndpoint" in message and "http" in message for _, message in found)
