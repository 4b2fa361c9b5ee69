"""connc.models: the documents of docs/formats.md, and what each model refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from connc.documents import parse
from connc.github import apps
from connc.schema import connection_types, models
from connc.validate.modelerrors import findings_from

SPEC = TypeAdapter(models.ConnectionSpec)

# Every spec example of section 1.2, by type.
SPEC_EXAMPLES: list[dict[str, Any]] = [
    {"type": "github-app", "clientId": "Iv23liABCDEF", "installationId": 4242},
    {"type": "github-app", "appId": 12345, "installationId": 4242},
    {"type": "github-app", "url": "https://ghe.example.com", "clientId": "Iv23liABCDEF",
     "apiUrl": "https://ghe.example.com/api/v3", "installationId": 1},
    {"type": "gitlab"},
    {"type": "gitlab", "url": "https://gitlab.com/acme"},
    {"type": "gitlab-self-hosted", "url": "https://git.example.com/org-a/"},
    {"type": "codeup"},
    {"type": "codeup", "url": "https://codeup.aliyun.com/acme"},
    {"type": "bitbucket"},
    {"type": "git", "url": "https://git.example.com/org-a/"},
    {"type": "git", "url": "ssh://git@git.example.com:2222/org/repo.git",
     "knownHosts": "[git.example.com]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq"},
    {"type": "container-registry", "registry": "registry.example.com"},
    {"type": "container-registry", "registry": "registry.example.com:5000"},
    {"type": "container-registry", "registry": "https://index.docker.io/v1/"},
    {"type": "container-registry", "registry": "ghcr.io/acme"},
    {"type": "kubernetes", "server": "https://kube.example.com:6443"},
    {"type": "kubernetes", "server": "https://10.0.0.1:6443", "namespace": "ci",
     "insecureSkipTlsVerify": True},
    {"type": "packages", "format": "maven", "url": "https://repo.example.com/maven2",
     "repositoryId": "acme-releases"},
    {"type": "packages", "format": "npm", "url": "https://npm.example.com/"},
    {"type": "packages", "format": "pypi", "url": "https://pypi.example.com/simple"},
    # Secretless (1.5).
    {"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci-push",
     "region": "eu-central-1", "identity": {"audience": "sts.amazonaws.com"}},
    {"type": "aws-ecr", "roleArn": "arn:aws-cn:iam::123456789012:role/path/ci",
     "region": "cn-north-1", "registryIds": ["123456789012", "210987654321"],
     "sessionDurationSeconds": 3600, "roleSessionName": "release",
     "registry": "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
     "stsEndpoint": "https://sts.cn-north-1.amazonaws.com.cn",
     "ecrEndpoint": "https://api.ecr.cn-north-1.amazonaws.com.cn",
     "identity": {"provider": "gitlab-ci", "audience": "sts.amazonaws.com",
                  "tokenVariable": "AWS_ID_TOKEN", "issuer": "https://gitlab.com"}},
    {"type": "pypi-publish", "identity": {"audience": "auto"}},
    {"type": "pypi-publish", "url": "https://test.pypi.org/legacy/", "repositoryName": "pypi",
     "identity": {"provider": "github-actions", "audience": "testpypi",
                  "issuer": "https://token.actions.githubusercontent.com"}},
    {"type": "kubernetes", "server": "https://kube.example.com:6443", "auth": "oidc",
     "identity": {"audience": "kubernetes"}, "refresh": "exec"},
]

# Secretless specs that validate refuses keyless, and why.
SECRETLESS_REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::12345:role/ci", "region": "us-east-1",
      "identity": {"audience": "sts.amazonaws.com"}}, "roleArn"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:user/ci", "region": "us-east-1",
      "identity": {"audience": "sts.amazonaws.com"}}, "roleArn"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "US-EAST-1",
      "identity": {"audience": "sts.amazonaws.com"}}, "region"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "cn-north-1",
      "identity": {"audience": "sts.amazonaws.com"}}, "partition"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "us-east-1",
      "sessionDurationSeconds": 60, "identity": {"audience": "sts.amazonaws.com"}}, "900"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "us-east-1",
      "stsEndpoint": "http://sts.example.com", "identity": {"audience": "sts.amazonaws.com"}},
     "http"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "us-east-1",
      "identity": {"audience": "auto"}}, "auto"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "us-east-1",
      "identity": {"audience": "sts amazonaws"}}, "audience"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "us-east-1",
      "identity": {"provider": "gitlab-ci", "audience": "sts.amazonaws.com"}}, "tokenVariable"),
    ({"type": "aws-ecr", "roleArn": "arn:aws:iam::123456789012:role/ci", "region": "us-east-1"},
     "identity"),
    ({"type": "pypi-publish", "url": "https://upload.pypi.org/legacy/",
      "identity": {"audience": "pypi", "issuer": "http://token.example.com"}}, "issuer"),
    ({"type": "kubernetes", "server": "https://k.example.com", "auth": "oidc"}, "identity"),
    ({"type": "kubernetes", "server": "https://k.example.com", "refresh": "exec"}, "oidc"),
    ({"type": "kubernetes", "server": "https://k.example.com", "auth": "oidc",
      "insecureSkipTlsVerify": True, "identity": {"audience": "k"}}, "verified"),
    ({"type": "kubernetes", "server": "https://k.example.com", "auth": "oidc", "refresh": "exec",
      "identity": {"provider": "gitlab-ci", "audience": "k", "tokenVariable": "K"}}, "static"),
    ({"type": "kubernetes", "server": "https://k.example.com", "auth": "token"}, "auth"),
]


@pytest.mark.parametrize(("spec", "why"), SECRETLESS_REFUSED, ids=lambda v: str(v)[:40])
def test_secretless_shapes_are_checked_keyless(spec: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError) as refused:
        SPEC.validate_python(spec)
    assert why.lower() in str(refused.value).lower()

DEFAULTS = {
    "github-app": {"url": "https://github.com", "api_url": "https://api.github.com"},
    "gitlab": {"url": "https://gitlab.com"},
    "codeup": {"url": "https://codeup.aliyun.com"},
    "bitbucket": {"url": "https://bitbucket.org"},
}

CONNECTION_EXAMPLE = """\
apiVersion: connc/v1
kind: Connection
metadata:
  id: github-acme
  name: GitHub (acme org)
  owner: alice
  description: optional text
  expiresAt: 2027-03-01
scope:
  visibility: custom
  members: [team:platform, user:bob, pipeline:api-release]
spec:
  type: github-app
  clientId: Iv23liABCDEF
  installationId: 4242
credential:
  privateKey: ENC[AES256_GCM,data:YWJj,iv:aXY=,tag:dGFn,type:str]
sops: {age: []}
"""

PIPELINE_EXAMPLE = """\
apiVersion: connc/v1
kind: Pipeline
metadata:
  id: api-release
  owner: alice
  teams: [platform]
  recipients: [age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j]
uses:
  - connection: github-acme
    repositories: [api]
    permissions: {contents: write, pull_requests: read}
    refresh: true
  - connection: registry-prod
  - connection: k8s-prod
"""

MEMBERS_EXAMPLE = """\
apiVersion: connc/v1
kind: Members
users:
  alice: {name: Alice Chen, recipients: [age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j]}
  bob: {}
teams:
  platform: {members: [alice, bob], recipients: [age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j]}
"""

CONFIG_EXAMPLE = """\
apiVersion: connc/v1
kind: Config
adminRecipients: [age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j]
expiryWarningDays: 30
"""


def error_types(model: Any, data: Any) -> list[str]:
    validate = model.validate_python if isinstance(model, TypeAdapter) else model.model_validate
    with pytest.raises(ValidationError) as caught:
        validate(data)
    return [error["type"] for error in caught.value.errors()]


# ---------------------------------------------------------------------------- examples


@pytest.mark.parametrize("example", SPEC_EXAMPLES, ids=lambda e: e["type"])
def test_every_spec_example_is_accepted(example: dict[str, Any]) -> None:
    spec = SPEC.validate_python(example)
    assert spec.type == example["type"]
    for field, value in DEFAULTS.get(example["type"], {}).items():
        if to_yaml_name(field) not in example:
            assert getattr(spec, field) == value


def to_yaml_name(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def test_every_type_has_an_example_and_a_credential_model() -> None:
    assert {e["type"] for e in SPEC_EXAMPLES} == set(connection_types.NAMES)
    assert set(models.CREDENTIALS) == set(connection_types.NAMES)


@pytest.mark.parametrize(("text", "model"), [
    (CONNECTION_EXAMPLE, models.Connection),
    (PIPELINE_EXAMPLE, models.Pipeline),
    (MEMBERS_EXAMPLE, models.Members),
    (CONFIG_EXAMPLE, models.Config),
])
def test_document_examples_are_accepted(text: str, model: type[BaseModel]) -> None:
    model.model_validate(parse(text).data)


def test_connection_example_reads_as_written() -> None:
    connection = models.Connection.model_validate(parse(CONNECTION_EXAMPLE).data)
    assert connection.metadata.expires_at == "2027-03-01"
    assert connection.scope.members == ["team:platform", "user:bob", "pipeline:api-release"]
    assert isinstance(connection.spec, models.GitHubAppSpec)
    assert apps.issuer(connection.spec.model_dump(by_alias=True)) == "Iv23liABCDEF"


@pytest.mark.parametrize("written", ["2027-03-01", "2027-03-01T00:00:00Z"])
def test_expires_at_in_both_forms(written: str) -> None:
    # sops rewrites a date as a timestamp; both must be accepted.
    metadata = models.ConnectionMetadata.model_validate(
        {"id": "a", "name": "a", "owner": "alice", "expiresAt": written})
    assert metadata.expires_at is not None


# ---------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(("type_", "fields"), [
    (type_, sorted(alternative))
    for type_, credential in models.CREDENTIALS.items()
    for alternative in credential.alternatives
])
def test_each_credential_alternative_validates(type_: str, fields: list[str]) -> None:
    credential = models.CREDENTIALS[type_]
    assert set(fields) <= credential.field_names()
    credential.model_validate({field: "value" for field in fields})


def test_credential_field_names_are_yaml_names() -> None:
    assert models.KubernetesCredential.field_names() == {
        "token", "clientCertificateData", "clientKeyData"}


# ---------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url", [
    "http://localhost:8080", "http://127.0.0.1:3000/api", "http://[::1]:5000/",
    "http://git.localhost/org", "http://127.1.2.3",
])
def test_http_is_allowed_on_loopback(url: str) -> None:
    SPEC.validate_python({"type": "gitlab-self-hosted", "url": url})
    SPEC.validate_python({"type": "kubernetes", "server": url})
    SPEC.validate_python({"type": "container-registry", "registry": url})


@pytest.mark.parametrize("url", [
    "http://gitlab.example.com", "http://10.0.0.1", "http://localhost.example.com",
    "http://[::2]/",
])
def test_http_is_refused_elsewhere(url: str) -> None:
    assert error_types(SPEC, {"type": "gitlab-self-hosted", "url": url}) == ["url_insecure"]
    assert error_types(SPEC, {"type": "container-registry", "registry": url}) == ["url_insecure"]


@pytest.mark.parametrize(("url", "error"), [
    ("gitlab.example.com", "url_invalid"),
    ("ftp://gitlab.example.com", "url_invalid"),
    ("https://", "url_invalid"),
    ("https://user:pass@gitlab.example.com", "url_credentials"),
    ("https://oauth2@gitlab.example.com", "url_credentials"),
    ("https://gitlab.example.com/?private_token=x", "url_invalid"),
    ("https://gitlab.example.com/#x", "url_invalid"),
    ("https://gitlab.example.com\n/x", "url_invalid"),
    ("https://gitlab.example.com/a b", "url_invalid"),
    ("https://gitlab.example.com:99999/", "url_invalid"),
    ("https://gitlab.example.com:port/", "url_invalid"),
    ("https://[not-an-ip]/", "url_invalid"),
])
def test_malformed_urls(url: str, error: str) -> None:
    assert error_types(SPEC, {"type": "gitlab-self-hosted", "url": url}) == [error]


def test_ssh_is_only_for_git() -> None:
    ssh = "ssh://git@git.example.com/org/repo.git"
    SPEC.validate_python({"type": "git", "url": ssh, "knownHosts": "git.example.com ssh-ed25519 A"})
    assert error_types(SPEC, {"type": "gitlab-self-hosted", "url": ssh}) == ["url_invalid"]


def test_ssh_needs_known_hosts() -> None:
    assert error_types(SPEC, {"type": "git", "url": "ssh://git@h/r.git"}) == ["missing"]
    assert error_types(SPEC, {"type": "git", "url": "ssh://git@h/r.git",
                              "knownHosts": "  \n"}) == ["missing"]


@pytest.mark.parametrize("registry", ["reg istry", "registry.example.com:abc", "a/b?c",
                                      "registry.example.com:123456"])
def test_bad_registries(registry: str) -> None:
    assert error_types(SPEC, {"type": "container-registry", "registry": registry}) == [
        "url_invalid"]


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("spec", [
    {"type": "github-app", "installationId": 1},
    {"type": "github-app", "clientId": "Iv23li", "appId": 7, "installationId": 1},
])
def test_github_app_needs_client_id_xor_app_id(spec: dict[str, Any]) -> None:
    assert error_types(SPEC, spec) == ["one_of"]


def test_github_app_issuer_is_the_app_id_as_text() -> None:
    spec = SPEC.validate_python({"type": "github-app", "appId": 7, "installationId": 1})
    assert isinstance(spec, models.GitHubAppSpec)
    assert apps.issuer(spec.model_dump(by_alias=True)) == "7"


@pytest.mark.parametrize("installation", [0, -1, "many"])
def test_github_app_installation_id_is_a_positive_integer(installation: object) -> None:
    assert error_types(SPEC, {"type": "github-app", "appId": 7, "installationId": installation})


def test_maven_needs_repository_id() -> None:
    assert error_types(SPEC, {"type": "packages", "format": "maven",
                              "url": "https://repo.example.com"}) == ["missing"]
    assert error_types(SPEC, {"type": "packages", "format": "gradle",
                              "url": "https://repo.example.com"}) == ["literal_error"]


def test_kubernetes_namespace_is_a_dns_label() -> None:
    assert error_types(SPEC, {"type": "kubernetes", "server": "https://k",
                              "namespace": "Not_Valid"}) == ["string_pattern_mismatch"]


@pytest.mark.parametrize(("model", "data"), [
    (SPEC, {"type": "gitlab", "token": "x"}),
    (SPEC, {"type": "kubernetes", "server": "https://k", "insecureSkipTLSVerify": True}),
    (models.Scope, {"visibility": "public", "member": ["user:bob"]}),
    (models.Use, {"connection": "a", "permission": {"contents": "read"}}),
    (models.User, {"name": "Bob", "email": "bob@example.com"}),
    (models.Team, {"members": [], "owner": "bob"}),
    (models.Config, {"apiVersion": "connc/v1", "kind": "Config", "expiryDays": 3}),
    (models.GitHubAppCredential, {"privateKey": "x", "appId": "y"}),
])
def test_unknown_fields_are_errors(model: Any, data: dict[str, Any]) -> None:
    assert error_types(model, data) == ["extra_forbidden"]


def test_only_the_yaml_spelling_is_accepted() -> None:
    # A second spelling (`insecure_skip_tls_verify`) would be a second reader: render's
    # checker knows the YAML names only, so the models must too.
    assert error_types(models.KubernetesSpec, {"type": "kubernetes", "server": "https://k",
                                               "insecure_skip_tls_verify": True}) \
        == ["extra_forbidden"]


@pytest.mark.parametrize(("field", "value"), [
    ("id", "GitHub"), ("id", "-lead"), ("id", "trail-"), ("id", "a" * 64), ("id", "under_score"),
    ("owner", "has space"), ("owner", "-x"), ("name", ""),
])
def test_metadata_patterns(field: str, value: str) -> None:
    data = {"id": "ok", "name": "ok", "owner": "alice", field: value}
    assert error_types(models.ConnectionMetadata, data)


@pytest.mark.parametrize("member", ["bob", "group:x", "user:", "user:-x", "user:a b"])
def test_scope_members_need_a_kind(member: str) -> None:
    assert error_types(models.Scope, {"visibility": "custom", "members": [member]}) == [
        "string_pattern_mismatch"]


@pytest.mark.parametrize("visibility", ["internal", "Public", None])
def test_visibility_values(visibility: object) -> None:
    assert error_types(models.Scope, {"visibility": visibility}) == ["literal_error"]


def test_permissions_are_read_write_or_admin() -> None:
    assert error_types(models.Use, {"connection": "a", "permissions": {"contents": "all"}}) == [
        "literal_error"]


def test_models_are_frozen() -> None:
    scope = models.Scope(visibility="public")
    with pytest.raises(ValidationError):
        scope.visibility = "private"  # type: ignore[misc]


def test_validation_errors_never_echo_the_input() -> None:
    canary = "CANARY-s3cr3t-7f2a9"
    data = yaml.safe_load(CONNECTION_EXAMPLE)
    data["metadata"].update(id=canary, expiresAt=canary, extra=canary)
    data["scope"]["visibility"] = canary
    data["spec"].update(installationId=canary, url=f"https://{canary}@h", apiUrl=f"http://{canary}")
    with pytest.raises(ValidationError) as caught:
        models.Connection.model_validate(data)
    assert canary not in str(caught.value)
    assert canary not in repr(caught.value.errors(include_input=False))


# ---------------------------------------------------------------------------- as findings


def test_model_errors_become_findings_at_the_key_or_value() -> None:
    text = CONNECTION_EXAMPLE.replace("  clientId: Iv23liABCDEF\n", "  clientID: Iv23liABCDEF\n")
    text = text.replace("visibility: custom", "visibility: secret")
    text = text.replace("  name: GitHub (acme org)\n", "")
    document = parse(text)
    with pytest.raises(ValidationError) as caught:
        models.Connection.model_validate(document.data)
    found = {(f.code, f.line, f.column): f.message
             for f in findings_from(caught.value, models.Connection, document, "c.sops.yaml")}
    assert found[("CONNC103", 3, 1)] == "`metadata.name` is required"
    assert found[("CONNC102", 9, 15)].startswith("`scope.visibility`:")
    assert found[("CONNC101", 13, 3)] == (
        "unknown field `spec.clientID`; did you mean `clientId`?")


def test_an_unknown_type_suggests_the_nearest_at_its_value() -> None:
    document = parse(CONNECTION_EXAMPLE.replace("type: github-app", "type: github_app"))
    with pytest.raises(ValidationError) as caught:
        models.Connection.model_validate(document.data)
    [error] = findings_from(caught.value, models.Connection, document, "c.sops.yaml")
    assert (error.code, error.line, error.column) == ("CONNC102", 13, 9)
    assert "did you mean `github-app`?" in error.message


def test_the_seal_key_is_no_credential_field_of_any_type() -> None:
    # `connc-seal` is reserved: a type with a field of that name would have it sealed over.
    from connc.seal import SEAL_FIELD

    assert all(SEAL_FIELD not in model.field_names() for model in models.CREDENTIALS.values())
