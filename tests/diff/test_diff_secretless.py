"""`connc diff` on secretless connections: every spec field, `identity` included, is a widening
row that needs the owner, and a reseal (the seal is all their credential holds)."""

from __future__ import annotations

from pathlib import Path

from connc.diff.run import diff
from kit.build import commit, connection, git, make_repo, pipeline, replace

ECR = "connections.d/ecr.sops.yaml"


def test_identity_role_and_endpoints_are_widening_rows(tmp_path: Path) -> None:
    ecr = connection("ecr", type_="aws-ecr", credential={}, spec={
        "roleArn": "arn:aws:iam::123456789012:role/ci-push", "region": "eu-central-1",
        "identity": {"provider": "github-actions", "audience": "sts.amazonaws.com"}})
    repo = make_repo(tmp_path / "repo", connections={"ecr": ecr},
                     pipelines={"ci": pipeline("ci", "ecr")})
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "base")
    replace(repo, ECR, "role/ci-push", "role/admin")
    replace(repo, ECR, "provider: github-actions", "provider: auto")
    replace(repo, ECR, "region: eu-central-1",
            "region: eu-central-1\n    stsEndpoint: https://sts.evil.example")
    assert not any(c.section == "unread" for c in diff(repo, "main").changes)
    result = diff(repo, "main")
    assert result.widened
    specs = {c.values["field"]: c for c in result.changes if c.section == "specs"}
    assert set(specs) == {"spec.roleArn", "spec.identity", "spec.stsEndpoint"}
    assert all(c.widens and c.reseal and c.approvers == ("user:alice",) for c in specs.values())
    assert specs["spec.identity"].values["before"] == \
        '{"audience": "sts.amazonaws.com", "provider": "github-actions"}'
    assert specs["spec.identity"].values["after"] == \
        '{"audience": "sts.amazonaws.com", "provider": "auto"}'
