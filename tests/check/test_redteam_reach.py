"""`connc check --reach` against a hostile service: whatever it echoes of the credential it
was sent, in whatever form the request carried it, is never printed; and reach leaves no
credential live on a service that it learns nothing from."""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

from checkkit import canary, run_check

from repo_builder import build_repo, connc, connection, key_env
from servers.hostile import Reply, Seen, recording_server
from servers.oidc import GitHubTokenService, github_tokens  # noqa: F401
from servers.pypi_index import TrustedIndex, trusted_index  # noqa: F401


def test_an_echoed_basic_header_or_encoded_password_is_redacted(tmp_path: Path) -> None:
    """A registry that lists, as repository names, the Basic header it was sent (base64 of
    user:password), the password URL-encoded, and the password base64-encoded."""
    password = canary() + "/+="  # characters that URL encoding changes
    basic = base64.b64encode(f"reader:{password}".encode()).decode()
    echoed = [basic, quote(password, safe=""), base64.b64encode(password.encode()).decode()]

    def catalog(seen: Seen) -> Reply:
        if "Authorization" not in seen.headers:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="registry"'})
        return Reply(200, {"Content-Type": "application/json"},
                     json.dumps({"repositories": [f"x/{form}" for form in echoed]}).encode())

    with recording_server({"/v2/_catalog": catalog}) as server:
        root = build_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
            credential={"username": "reader", "password": password})})
        ran = run_check(root, tmp_path, "--reach", hidden=[password, *echoed])
        text = connc("check", "--reach", "--repo", root, env=key_env())
    assert ran.status("reg") == "ok", ran.outcomes
    assert [item["name"] for item in ran.reach("reg")["items"]] == ["x/[redacted]"] * 3
    for form in [password, *echoed]:
        assert form not in text.stdout + text.stderr



def test_reach_mints_no_upload_token_it_learns_nothing_from(
        tmp_path: Path, trusted_index: TrustedIndex, github_tokens: GitHubTokenService) -> None:
    """`--reach` changes nothing on a service. A trusted-publishing mint leaves an upload
    token live for 15 minutes (it cannot be revoked) and a line in the project's security
    log, and an index says nothing of what that token may upload: reach asks nothing."""
    root = build_repo(tmp_path / "repo", connections={"pub": connection(
        "pub", type_="pypi-publish", spec={"url": trusted_index.url,
                                           "identity": {"audience": "pypi"}},
        credential={})})
    ran = run_check(root, tmp_path, "--reach", env=github_tokens.github_env())
    assert ran.status("pub") == "ok", ran.outcomes
    assert ran.reach("pub")["asked"] is False
    assert trusted_index.minted == {} and trusted_index.seen_jti == set()
    assert github_tokens.issued == []  # not even an ID token was asked for
