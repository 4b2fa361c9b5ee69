"""Secretless connections rendered end to end: the CI job's OIDC identity exchanged for
short-lived credentials, consumed by the real clients.

The identity comes from a local issuer through the runner's token endpoint (GitHub Actions)
or a job variable (GitLab CI) (`kit.servers.oidc`); it is traded with moto's STS and ECR (IAM
signature checking on, the role's trust policy evaluated: `kit.servers.aws`), a local index that
implements PyPI's trusted publishing, and an HTTPS Kubernetes API that verifies the token.
Then skopeo pulls, twine uploads and kubectl asks, after `. OUT/env`, as a pipeline step would.
Every run, failures included, is searched for every secret the exchange saw (`_leaks`).
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit.actions_runner import log_lines, parse_command
from kit.build import connection, encrypt, key_env, make_repo, pipeline, replace, sourced, write
from kit.run import connc
from kit.servers._net import clean_env, remove_tree, stop_process
from kit.servers.aws import ACCOUNT, Aws, aws, aws_server, registry_password, spec  # noqa: F401
from kit.servers.kube_api import KubeApiServer, kube_server  # noqa: F401
from kit.servers.oidc import (  # noqa: F401
    GitHubTokenService,
    OidcIssuer,
    github_tokens,
    gitlab_env,
    gitlab_issuer,
)
from kit.servers.pypi_index import TrustedIndex, trusted_index, wheel  # noqa: F401
from kit.servers.registry import start_registry

pytestmark = pytest.mark.servers
ECR_HOST = f"{ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com"


def secretless(conn_id: str, type_: str, **spec_fields: Any) -> dict[str, Any]:
    """A connection whose credential holds only its seal."""
    return connection(conn_id, type_=type_, spec=spec_fields, credential={})


def render_in_ci(tmp_path: Path, connections: dict[str, dict[str, Any]],
                 ci_env: dict[str, str], *args: str,
                 uses: list[str] | None = None) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path / "repo"
    if not root.exists():
        make_repo(root, connections=connections,
                  pipelines={"ci": pipeline("ci", *(uses or connections))})
    out = tmp_path / "out"
    proc = connc("render", "ci", "--repo", root, "--out", out, *args, env=key_env(**ci_env),
                 timeout=60)
    return out, proc


def session_secrets() -> list[str]:
    """Every STS session moto handed out: keys that must never leave connc."""
    from moto.sts.models import sts_backends

    return [value for role in sts_backends[ACCOUNT]["aws"].assumed_roles
            for value in (role.access_key_id, role.secret_access_key, role.session_token)]


def _leaks(proc: subprocess.CompletedProcess[str], out: Path, secrets: list[str], *,
           bundle_files: tuple[str, ...] = ()) -> list[str]:
    """Which secrets (or their base64) show in stdout, stderr, the manifest, the env file, or
    bundle files that must not hold them. `::add-mask::` lines are the one place allowed."""
    shown = "\n".join(line for line in log_lines(proc.stdout)
                      if (parse_command(line) or ("",))[0] != "add-mask") + proc.stderr
    for name in ("manifest.json", "env", *bundle_files):
        if (out / name).is_file():
            shown += (out / name).read_text()
    forms = {form for secret in secrets if secret
             for form in (secret, base64.b64encode(secret.encode()).decode())}
    return sorted(form[:12] + "..." for form in forms if form in shown)


# --- aws-ecr --------------------------------------------------------------------------------


def test_aws_ecr_token_pulls_with_skopeo(tmp_path: Path, aws: Aws,
                                         github_tokens: GitHubTokenService) -> None:
    """STS with the job's identity, ECR with the session, the token in docker's auths: skopeo
    pulls from a registry whose htpasswd holds the token moto issues."""
    workdir = Path(tempfile.mkdtemp(prefix="connc-ecr-registry-"))
    registry, process = start_registry(workdir, "AWS", registry_password())
    try:
        image = registry.push_test_image("app")
        out, proc = render_in_ci(tmp_path, {"ecr": secretless(
            "ecr", "aws-ecr", **spec(aws, registry=registry.host))}, github_tokens.github_env())
        assert proc.returncode == 0, proc.stderr
        home = tmp_path / "home"
        home.mkdir()
        pulled = sourced(out, ["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"],
                         clean_env(home))
        assert pulled.returncode == 0, pulled.stderr
    finally:
        stop_process(process)
        remove_tree(workdir)
    # One fresh ID token, for AWS's audience; one STS session named after the connection.
    assert [issued.audience for issued in github_tokens.issued] == ["sts.amazonaws.com"]
    assert aws.assumed == ["connc-ecr"]
    manifest = json.loads((out / "manifest.json").read_text())
    [entry] = manifest["connections"]
    assert entry["type"] == "aws-ecr" and entry["registries"] == [registry.host]
    assert entry["expiresAt"].endswith("Z")
    # The session keys stay in connc; the ID token is in no file.
    assert _leaks(proc, out, session_secrets() + github_tokens.tokens,
                  bundle_files=("docker/config.json",)) == []
    assert _leaks(proc, out, [registry_password()]) == []


def test_aws_ecr_default_registry_is_the_roles_accounts(tmp_path: Path, aws: Aws,
                                                        github_tokens: GitHubTokenService) -> None:
    github_env = tmp_path / "github_env"
    github_env.touch()
    out, proc = render_in_ci(tmp_path, {"ecr": secretless("ecr", "aws-ecr", **spec(
        aws, roleSessionName="release-42"))}, github_tokens.github_env(
        GITHUB_ENV=str(github_env)), "--format", "github")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "docker/config.json").read_text())
    assert list(config["auths"]) == [ECR_HOST]
    assert aws.assumed[-1] == "release-42"
    # Under --format github, the registry password, docker's auth and the ID token are masked.
    masks = {parsed[2] for parsed in map(parse_command, log_lines(proc.stdout))
             if parsed and parsed[0] == "add-mask"}
    auth = config["auths"][ECR_HOST]["auth"]
    assert {registry_password(), auth, *github_tokens.tokens[-1:]} <= masks
    assert _leaks(proc, out, session_secrets() + github_tokens.tokens + [registry_password()],
                  bundle_files=()) == []


def test_aws_ecr_refusals_name_the_cause_and_leak_nothing(tmp_path: Path, aws: Aws,
                                                          github_tokens: GitHubTokenService) -> None:
    connections = {"ecr": secretless("ecr", "aws-ecr", **spec(aws))}
    # moto's own registry token expired in 2015: never written.
    aws.stock_expiry = True
    out, proc = render_in_ci(tmp_path, connections, github_tokens.github_env())
    assert proc.returncode == 1, proc.stderr
    assert "expired at 2015-01-01T00:00:00Z, before render could use it" in proc.stderr
    assert not out.exists()
    aws.stock_expiry = False
    # A job the role's trust policy does not name (another repository's subject).
    github_tokens.issuer = OidcIssuer(github_tokens.issuer.issuer, "repo:evil/app:ref:refs/heads/main")
    out, proc = render_in_ci(tmp_path, connections, github_tokens.github_env())
    assert proc.returncode == 1
    assert "STS (127.0.0.1) refused with HTTP" in proc.stderr
    assert "(AccessDenied: the role's trust policy does not allow" in proc.stderr
    assert aws.refused == ["trust policy"]
    assert _leaks(proc, out, session_secrets() + github_tokens.tokens) == []


def test_a_signature_moto_cannot_verify_is_refused(aws: Aws) -> None:
    """moto checks signatures: a session key that is not the session's fails ECR's call."""
    from connc.errors import RenderError
    from connc.identity import aws as exchange_aws
    from connc.secrets import Secret

    forged = exchange_aws.Session(Secret("ASIAFORGEDFORGED0000"), Secret("x" * 40),
                                  Secret("token"), None)
    with pytest.raises(RenderError, match="ECR .* refused with HTTP 403"):
        exchange_aws.authorization_token(spec(aws, type="aws-ecr", sessionDurationSeconds=900),
                                         forged, "ecr")


# --- refusals before any token is requested --------------------------------------------------


def test_pull_request_target_is_refused_before_any_request(
        tmp_path: Path, aws: Aws, github_tokens: GitHubTokenService) -> None:
    out, proc = render_in_ci(tmp_path, {"ecr": secretless("ecr", "aws-ecr", **spec(aws))},
                             github_tokens.github_env(GITHUB_EVENT_NAME="pull_request_target"))
    assert proc.returncode == 1
    assert "`pull_request_target`" in proc.stderr
    assert github_tokens.issued == [] and aws.assumed == [] and not out.exists()


def test_a_job_without_identity_says_what_to_add(tmp_path: Path, aws: Aws,
                                                 github_tokens: GitHubTokenService) -> None:
    connections = {"ecr": secretless("ecr", "aws-ecr", **spec(aws))}
    out, proc = render_in_ci(tmp_path, connections, {"GITHUB_ACTIONS": "true"})
    assert proc.returncode == 2
    assert "add `permissions: id-token: write` to the job" in proc.stderr
    out, proc = render_in_ci(tmp_path, connections, {})
    assert proc.returncode == 2
    assert "not a GitHub Actions or GitLab CI job" in proc.stderr
    assert aws.assumed == []


def test_scope_and_seal_are_checked_before_any_token_is_requested(
        tmp_path: Path, aws: Aws, github_tokens: GitHubTokenService) -> None:
    ecr = secretless("ecr", "aws-ecr", **spec(aws))
    bobs = secretless("bobs-ecr", "aws-ecr", **spec(aws))
    bobs["metadata"]["owner"] = "bob"
    root = make_repo(tmp_path / "repo", connections={"ecr": ecr, "bobs-ecr": bobs},
                     pipelines={"ci": pipeline("ci", "ecr"),
                                 "denied": pipeline("denied", "bobs-ecr")})
    env = key_env(**github_tokens.github_env())
    denied = connc("render", "denied", "--repo", root, "--out", tmp_path / "o1", env=env,
                   timeout=60)
    assert denied.returncode == 1 and "CONNC301" in denied.stderr
    # A role redirected in review without a reseal: the seal refuses it, before any request.
    replace(root, "connections.d/ecr.sops.yaml", "role/ci-push", "role/admin")
    tampered = connc("render", "ci", "--repo", root, "--out", tmp_path / "o2", env=env, timeout=60)
    assert tampered.returncode == 1
    assert "spec.roleArn" in tampered.stderr and "connc seal ecr" in tampered.stderr
    assert github_tokens.issued == [] and aws.assumed == []


def test_a_secretless_connection_without_its_seal_is_refused_whatever_requireSeals_says(
        tmp_path: Path, aws: Aws, github_tokens: GitHubTokenService) -> None:
    # Its credential stores nothing but the seal: unsealed, it could have been written by
    # anyone with a branch and no key, naming a role their pipeline's identity may assume.
    root = make_repo(tmp_path / "repo", connections={},
                     pipelines={"ci": pipeline("ci", "ecr")})
    relpath = "connections.d/ecr.sops.yaml"
    write(root, relpath, secretless("ecr", "aws-ecr", **spec(aws)))
    encrypt(root, relpath, sealed=False)
    assert not (root / "connc.yaml").exists()  # no requireSeals
    checked = connc("validate", "--repo", root, timeout=60)
    assert checked.returncode == 1 and "CONNC413" in checked.stdout
    assert "secretless" in checked.stdout
    env = key_env(**github_tokens.github_env())
    refused = connc("render", "ci", "--repo", root, "--out", tmp_path / "out", env=env, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert "has no seal" in refused.stderr and "connc seal ecr" in refused.stderr
    assert github_tokens.issued == [] and aws.assumed == []
    assert not (tmp_path / "out").exists()


# --- GitLab CI ------------------------------------------------------------------------------


def test_gitlab_token_is_checked_for_its_audience_and_issuer(tmp_path: Path, aws: Aws) -> None:
    issuer = gitlab_issuer()
    identity = {"provider": "gitlab-ci", "audience": "sts.amazonaws.com",
                "tokenVariable": "AWS_ID_TOKEN", "issuer": issuer.issuer}
    connections = {"ecr": secretless("ecr", "aws-ecr", **spec(aws, identity=identity))}
    # A token for another audience is never sent.
    env = gitlab_env(issuer, "AWS_ID_TOKEN", "https://gitlab.example.com")
    out, proc = render_in_ci(tmp_path, connections, env)
    assert proc.returncode == 1
    assert "is for audience https://gitlab.example.com, not sts.amazonaws.com" in proc.stderr
    assert aws.assumed == [] and aws.refused == []
    # Nor one from another issuer.
    other = OidcIssuer("https://gitlab.other.example", issuer.subject)
    out, proc = render_in_ci(tmp_path, connections,
                             gitlab_env(other, "AWS_ID_TOKEN", "sts.amazonaws.com"))
    assert proc.returncode == 1
    assert f"not by {issuer.issuer} (`identity.issuer`)" in proc.stderr
    assert aws.assumed == []
    # The variable the job did not declare.
    out, proc = render_in_ci(tmp_path, connections, {"GITLAB_CI": "true"})
    assert proc.returncode == 2
    assert "id_tokens: {AWS_ID_TOKEN: {aud: AUDIENCE}}" in proc.stderr
    assert _leaks(proc, out, [env["AWS_ID_TOKEN"]]) == []


# --- pypi-publish ---------------------------------------------------------------------------


def test_pypi_publish_uploads_with_twine(tmp_path: Path, trusted_index: TrustedIndex,
                                         github_tokens: GitHubTokenService) -> None:
    connections = {"pub": secretless("pub", "pypi-publish", url=trusted_index.url,
                                     repositoryName="pypi", identity={"audience": "auto"})}
    out, proc = render_in_ci(tmp_path, connections, github_tokens.github_env())
    assert proc.returncode == 0, proc.stderr
    name, data = wheel("connc_demo", "1.0")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / name).write_bytes(data)
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    twine = str(Path(sys.executable).parent / "twine")
    for section in ("pub", "pypi"):  # the connection id, and its repositoryName
        uploaded = sourced(out, ["sh", "-c", f'exec "$0" upload --non-interactive '
                                             f'--config-file "$CONNC_BUNDLE/pypi/pypirc" '
                                             f'-r {section} "$1"', twine, dist / name], env)
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert trusted_index.uploads == [name, name]
    # The audience was asked of the index, and one ID token minted one upload token.
    assert [issued.audience for issued in github_tokens.issued] == ["pypi"]
    [entry] = json.loads((out / "manifest.json").read_text())["connections"]
    assert entry["sections"] == ["pub", "pypi"] and entry["expiresAt"].endswith("Z")
    assert _leaks(proc, out, [*trusted_index.minted, *github_tokens.tokens]) == []
    # Rendered again: a fresh ID token (the index refuses one used before).
    out2 = tmp_path / "out2"
    again = connc("render", "ci", "--repo", tmp_path / "repo", "--out", out2,
                  env=key_env(**github_tokens.github_env()), timeout=60)
    assert again.returncode == 0, again.stderr
    assert len({issued.jti for issued in github_tokens.issued}) == 2
    assert trusted_index.refusals == []


def test_pypi_refusals(tmp_path: Path, trusted_index: TrustedIndex,
                       github_tokens: GitHubTokenService) -> None:
    trusted_index.publishers = {"other/project"}
    connections = {"pub": secretless("pub", "pypi-publish", url=trusted_index.url,
                                     identity={"audience": "pypi"})}
    out, proc = render_in_ci(tmp_path, connections, github_tokens.github_env())
    assert proc.returncode == 1
    assert "invalid-publisher: the index has no trusted publisher matching this job" \
        in proc.stderr
    assert "(details)" not in proc.stderr  # warehouse's descriptions are not echoed
    assert _leaks(proc, out, github_tokens.tokens) == []


def test_gitlab_refuses_two_mints_with_one_token(tmp_path: Path,
                                                 trusted_index: TrustedIndex) -> None:
    identity = {"provider": "gitlab-ci", "audience": "pypi", "tokenVariable": "PYPI_ID_TOKEN"}
    connections = {name: secretless(name, "pypi-publish", url=trusted_index.url,
                                    identity=identity) for name in ("pub-a", "pub-b")}
    env = gitlab_env(trusted_index.issuer, "PYPI_ID_TOKEN", "pypi")
    out, proc = render_in_ci(tmp_path, connections, env)
    assert proc.returncode == 1
    assert "both mint with the GitLab CI variable PYPI_ID_TOKEN" in proc.stderr
    assert trusted_index.seen_jti == set()  # refused before any request


# --- kubernetes, auth: oidc -----------------------------------------------------------------


def _kube(server: KubeApiServer, identity: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return secretless("k8s", "kubernetes", server=server.server, auth="oidc",
                      certificateAuthorityData=base64.b64encode(server.ca_pem).decode(),
                      identity=identity, **extra)


def test_kubernetes_exec_fetches_a_fresh_token_for_each_kubectl(
        tmp_path: Path, kube_server: KubeApiServer, github_tokens: GitHubTokenService) -> None:
    kube_server.trust_oidc(github_tokens.issuer, "kubernetes")
    out, proc = render_in_ci(tmp_path, {"k8s": _kube(kube_server, {"audience": "kubernetes"})},
                             github_tokens.github_env())
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load((out / "kube/config").read_text())
    user = config["users"][0]["user"]
    assert set(user) == {"exec"} and user["exec"]["args"][-1] == "--exec-credential"
    assert "eyJ" not in (out / "kube/config").read_text()  # no token in the bundle
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, **github_tokens.github_env())
    for _ in range(2):
        ran = sourced(out, ["kubectl", "get", "--raw", "/version"], env)
        assert ran.returncode == 0, ran.stderr
    # render asked for one (so that a job without identity fails there), and each kubectl
    # its own (client-go keeps a credential for its process only).
    audiences = {issued.audience for issued in github_tokens.issued}
    assert audiences == {"kubernetes"} and len(github_tokens.issued) >= 3
    sent = set(kube_server.oidc_tokens)
    assert len(sent) >= 2 and github_tokens.issued[0].jti not in sent
    assert sent <= {issued.jti for issued in github_tokens.issued}
    assert {r.auth for r in kube_server.log} == {"oidc"}
    [entry] = json.loads((out / "manifest.json").read_text())["connections"]
    assert entry["refresh"] == "exec" and entry["expiresAt"] is None
    assert _leaks(proc, out, github_tokens.tokens, bundle_files=("kube/config",)) == []


def test_kubernetes_static_under_gitlab(tmp_path: Path, kube_server: KubeApiServer) -> None:
    issuer = gitlab_issuer()
    kube_server.trust_oidc(issuer, "kubernetes")
    env = gitlab_env(issuer, "KUBE_ID_TOKEN", "kubernetes")
    identity = {"provider": "gitlab-ci", "audience": "kubernetes",
                "tokenVariable": "KUBE_ID_TOKEN"}
    out, proc = render_in_ci(tmp_path, {"k8s": _kube(kube_server, identity)}, env)
    assert proc.returncode == 0, proc.stderr
    home = tmp_path / "home"
    home.mkdir()
    ran = sourced(out, ["kubectl", "get", "--raw", "/version"], clean_env(home))
    assert ran.returncode == 0, ran.stderr
    assert {r.auth for r in kube_server.log} == {"oidc"}
    [entry] = json.loads((out / "manifest.json").read_text())["connections"]
    assert entry["refresh"] == "static" and entry["expiresAt"].endswith("Z")
    assert _leaks(proc, out, [env["KUBE_ID_TOKEN"]]) == []


def test_id_token_prints_for_kubectl_only(tmp_path: Path,
                                          github_tokens: GitHubTokenService) -> None:
    args = ("id-token", "--audience", "kubernetes", "--exec-credential")
    by_hand = connc(*args, env=key_env(**github_tokens.github_env()), timeout=60)
    assert by_hand.returncode == 1 and "for kubectl only" in by_hand.stderr
    assert github_tokens.issued == []
    ran = connc(*args, env=key_env(**github_tokens.github_env(KUBERNETES_EXEC_INFO="{}")),
                timeout=60)
    assert ran.returncode == 0, ran.stderr
    credential = json.loads(ran.stdout)
    assert credential["kind"] == "ExecCredential"
    assert credential["status"]["token"] == github_tokens.tokens[0]
    assert credential["status"]["expirationTimestamp"].endswith("Z")
    assert ran.stderr == ""
    refused = connc(*args, env=key_env(**github_tokens.github_env(
        KUBERNETES_EXEC_INFO="{}", GITHUB_EVENT_NAME="pull_request_target")), timeout=60)
    assert refused.returncode == 1 and len(github_tokens.issued) == 1


# --- every request: the URL policy, no redirect elsewhere ----------------------------------


def test_an_exchange_never_follows_a_redirect_to_another_host() -> None:
    from connc.errors import RenderError
    from connc.identity import pypi
    from connc.identity.token import parse
    from kit.servers.hostile import Reply, recording_server
    from kit.servers.oidc import github_issuer

    token = parse(github_issuer().issue("pypi"), "t")
    with recording_server() as server:
        server.routes["/_/oidc/mint-token"] = Reply(307, {
            "Location": f"{server.url('localhost')}/_/oidc/mint-token"})
        # Exchanges follow no redirect at all: the answer is refused as it is.
        with pytest.raises(RenderError, match=r"refused to mint an upload token \(HTTP 307\)"
                           ) as refused:
            pypi.mint(f"{server.url()}/legacy/", token, "pub")
    assert len(server.seen) == 1  # the other origin never saw the token
    assert token.value.reveal() not in str(refused.value)


def test_the_runner_refusing_a_token_says_what_to_check(
        tmp_path: Path, aws: Aws, github_tokens: GitHubTokenService) -> None:
    github_tokens.status = 403
    out, proc = render_in_ci(tmp_path, {"ecr": secretless("ecr", "aws-ecr", **spec(aws))},
                             github_tokens.github_env())
    assert proc.returncode == 1
    assert "answered HTTP 403 to the ID token request (is `id-token: write` granted?)" \
        in proc.stderr
    assert _leaks(proc, out, [github_tokens.request_token]) == []
    # A service that is not there: named, nothing else.
    unreachable = spec(aws, stsEndpoint="http://127.0.0.1:9")
    github_tokens.status = None
    out, proc = render_in_ci(tmp_path / "again", {"ecr": secretless("ecr", "aws-ecr",
                                                                   **unreachable)},
                             github_tokens.github_env())
    assert proc.returncode == 1 and "STS: cannot connect to 127.0.0.1" in proc.stderr
    assert _leaks(proc, out, github_tokens.tokens + [github_tokens.request_token]) == []
