"""Secretless connections rendered end to end: the CI job's OIDC identity exchanged for
short-lived credentials, consumed by the real clients.

The identity comes from a local issuer through the runner's token endpoint (GitHub Actions)
or a job variable (GitLab CI) (`servers.oidc`); it is traded with moto's STS and ECR (IAM
signature checking on, the role's trust policy evaluated: `servers.aws`), a local index that
implements PyPI's trusted publishing, and an HTTPS Kubernetes API that verifies the token.
Then skopeo pulls, twine uploads and kubectl asks, after `. OUT/env`, as a pipeline step would.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from repo_builder import build_repo, connc, connection, key_env, pipeline
from servers.aws import Aws, aws, aws_server, registry_password, spec  # noqa: F401
from servers.oidc import GitHubTokenService, github_tokens  # noqa: F401

pytestmark = pytest.mark.servers


def secretless(conn_id: str, type_: str, **spec_fields: Any) -> dict[str, Any]:
    """A connection whose credential holds only its seal."""
    return connection(conn_id, type_=type_, spec=spec_fields, credential={})


def render_in_ci(tmp_path: Path, connections: dict[str, dict[str, Any]],
                 ci_env: dict[str, str], *args: str) -> tuple[Path, Any]:
    root = build_repo(tmp_path / "repo", connections=connections,
                      pipelines={"ci": pipeline("ci", *connections)})
    out = tmp_path / "out"
    proc = connc("render", "ci", "--repo", root, "--out", out, *args, env=key_env(**ci_env))
    return out, proc


def test_aws_ecr_renders_a_registry_token(tmp_path: Path, aws: Aws,
                                          github_tokens: GitHubTokenService) -> None:
    out, proc = render_in_ci(tmp_path, {"ecr": secretless("ecr", "aws-ecr", **spec(aws))},
                             github_tokens.github_env())
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "docker/config.json").read_text())
    assert list(config["auths"]) == ["123456789012.dkr.ecr.eu-central-1.amazonaws.com"]
    assert registry_password() not in proc.stdout + proc.stderr
    print(config, aws.assumed, [i.audience for i in github_tokens.issued])
