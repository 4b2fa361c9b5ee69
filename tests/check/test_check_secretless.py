"""`connc check` for secretless connections: the exchange itself, in CI or with
`--id-token-file`; skipped, and said so, anywhere else."""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from checkkit import run_check

from kit.build import connection, make_repo
from kit.servers._net import remove_tree, stop_process
from kit.servers.aws import Aws, aws, aws_server, registry_password, spec  # noqa: F401
from kit.servers.kube_api import KubeApiServer, kube_server  # noqa: F401
from kit.servers.oidc import GitHubTokenService, github_issuer, github_tokens  # noqa: F401
from kit.servers.pypi_index import TrustedIndex, trusted_index  # noqa: F401
from kit.servers.registry import start_registry

pytestmark = pytest.mark.servers


def secretless(conn_id: str, type_: str, **spec_fields: Any) -> dict[str, Any]:
    return connection(conn_id, type_=type_, spec=spec_fields, credential={})


def test_outside_ci_secretless_connections_are_skipped(tmp_path: Path, aws: Aws,
                                                       trusted_index: TrustedIndex) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "ecr": secretless("ecr", "aws-ecr", **spec(aws)),
        "pub": secretless("pub", "pypi-publish", url=trusted_index.url,
                          identity={"audience": "pypi"})})
    ran = run_check(root, tmp_path)
    assert ran.proc.returncode == 0, ran.proc.stderr
    assert {ran.status("ecr"), ran.status("pub")} == {"skipped"}
    assert "--id-token-file" in ran.message("ecr")
    assert json.loads(ran.proc.stdout)["summary"]["skipped"] == 2
    assert aws.assumed == [] and trusted_index.seen_jti == set()


def test_an_id_token_file_exercises_the_exchanges(tmp_path: Path, aws: Aws,
                                                  trusted_index: TrustedIndex,
                                                  kube_server: KubeApiServer,
                                                  request: pytest.FixtureRequest) -> None:
    issuer = github_issuer()
    kube_server.trust_oidc(issuer, "kubernetes")
    workdir = Path(tempfile.mkdtemp(prefix="connc-ecr-registry-"))
    registry, process = start_registry(workdir, "AWS", registry_password())
    request.addfinalizer(lambda: (stop_process(process), remove_tree(workdir)))
    connections = {
        "ecr": secretless("ecr", "aws-ecr", **spec(aws, registry=registry.host)),
        "pub": secretless("pub", "pypi-publish", url=trusted_index.url,
                          identity={"audience": "pypi"}),
        "k8s": secretless("k8s", "kubernetes", server=kube_server.server, auth="oidc",
                          refresh="exec", identity={"audience": "kubernetes"},
                          certificateAuthorityData=base64.b64encode(
                              kube_server.ca_pem).decode())}
    root = make_repo(tmp_path / "repo", connections=connections)
    tokens = {}
    for audience in ("sts.amazonaws.com", "pypi", "kubernetes"):
        tokens[audience] = tmp_path / f"{audience}.jwt"
        tokens[audience].write_text(issuer.issue(audience))
    secrets = [path.read_text() for path in tokens.values()] + [registry_password()]
    # Each connection with the token of its audience; the others refuse it, unsent.
    for audience, path in tokens.items():
        ran = run_check(root, tmp_path, "--id-token-file", str(path), hidden=secrets)
        assert ran.proc.returncode == 1, ran.proc.stderr
        ok = {"sts.amazonaws.com": "ecr", "pypi": "pub", "kubernetes": "k8s"}[audience]
        assert ran.status(ok) == "ok", ran.outcomes
        for other in {"ecr", "pub", "k8s"} - {ok}:
            assert ran.status(other) == "failed"
            assert f"is for audience {audience}" in ran.message(other)
    assert aws.assumed == ["connc-ecr"]
    assert "STS and ECR issued a registry token; credential accepted" in \
        run_check(root, tmp_path, "ecr", "--id-token-file",
                  str(tokens["sts.amazonaws.com"]), hidden=secrets).message("ecr")
    assert len(trusted_index.minted) == 1
    assert {r.auth for r in kube_server.log} == {"oidc"}


def test_in_ci_the_jobs_identity_is_used(tmp_path: Path, aws: Aws,
                                        github_tokens: GitHubTokenService) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "ecr": secretless("ecr", "aws-ecr", **spec(aws))})
    ran = run_check(root, tmp_path, env=github_tokens.github_env(), hidden=[registry_password()])
    assert ran.status("ecr") == "failed"  # the registry host is AWS's, unreachable here
    assert aws.assumed == ["connc-ecr"]
    assert [issued.audience for issued in github_tokens.issued] == ["sts.amazonaws.com"]
    for token in github_tokens.tokens:
        assert token not in ran.proc.stdout + ran.proc.stderr
