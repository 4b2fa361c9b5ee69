"""A CI job with a hostile environment, as `connc render` meets it: a GitLab `id_tokens:`
variable holding junk is refused (exit 1) in connc's words, never an internal error (exit 3),
and never quoted; nothing is sent anywhere."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kit.build import connection, key_env, make_repo, pipeline
from kit.run import connc
from kit.servers.hostile import recording_server

SENTINEL = "CANARY-junk-id-token-9a3e"


def _part(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("claims", [
    b"[" * 5000,  # nested past the recursion limit
    json.dumps({"aud": "sts.amazonaws.com", "exp": 2**39}).encode(),  # past year 9999
])
def test_junk_in_the_id_tokens_variable_is_refused(tmp_path: Path, claims: bytes) -> None:
    with recording_server() as sts:
        spec = {"roleArn": "arn:aws:iam::123456789012:role/r", "region": "eu-central-1",
                "stsEndpoint": sts.url() + "/", "ecrEndpoint": sts.url() + "/",
                "identity": {"provider": "gitlab-ci", "audience": "sts.amazonaws.com",
                             "tokenVariable": "AWS_ID_TOKEN"}}
        root = make_repo(tmp_path / "repo", connections={
            "ecr": connection("ecr", type_="aws-ecr", spec=spec, credential={})},
            pipelines={"ci": pipeline("ci", "ecr")})
        value = f"{_part(b'{}')}.{_part(claims)}.{SENTINEL}"
        proc = connc("render", "ci", "--repo", root, "--out", tmp_path / "out",
                     env=key_env(GITLAB_CI="true", AWS_ID_TOKEN=value), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "the GitLab CI variable AWS_ID_TOKEN (connection `ecr`)" in proc.stderr
    assert "internal error" not in proc.stderr and SENTINEL not in proc.stdout + proc.stderr
    assert sts.seen == []
    assert not (tmp_path / "out").exists()
