"""The documents of a connection repository, as pydantic models.

One model per file kind (Connection, Pipeline, Members, Config) and one spec model plus one
credential model per connection type. The JSON Schemas in `schema/` are generated from these
(`connc schema`), so editors and connc agree on what a valid file is.

Keyless validation sees the `credential` subtree only as encrypted strings, so a connection's
`credential` is validated in two steps: its field *names* against the type's credential model
(they are plaintext even in an encrypted file), and, with `--decrypt`, its values.
"""

from __future__ import annotations

import functools
import operator
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from connc.repository import ID_PATTERN
from connc.schema import connection_types, policy
from connc.schema.policy import NPM_SCOPE_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$"
# GitHub logins: letters, digits and single inner hyphens, at most 39 characters (GitHub's
# own rule; the hyphen rule needs lookaround, which JSON Schema regexes lack, so it is checked
# here in shape only and GitHub answers for the rest).
GITHUB_LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$"
# GitLab usernames: letters, digits, `_`, `-` and `.`, not starting with `-` nor ending with
# `.` (GitLab's own rule also refuses a `.git` or `.atom` ending: such a name matches nobody).
GITLAB_USERNAME_PATTERN = r"^(?:[A-Za-z0-9_.][A-Za-z0-9_.-]{0,253}[A-Za-z0-9_-]|[A-Za-z0-9_])$"
MEMBER_PATTERN = r"^(user|team|pipeline):[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # A field's docstring is its description: in the JSON Schemas (editors show it) and
        # in docs/formats.md, generated from these models.
        use_attribute_docstrings=True,
        alias_generator=to_camel,
        # Only the YAML spelling (`apiUrl`): a second spelling (`api_url`) is a second reader.
        populate_by_name=False,
        frozen=True,
        # Keep the user's spelling in errors; never echo the input value (it may be a secret).
        hide_input_in_errors=True,
        # Build validators on first use: render validates only the models it needs.
        defer_build=True,
        # No coercion: `refresh: "yes"`, `installationId: "42"` or `1.0` are not what they
        # seem, and render's checker (schema.check) takes exactly what these models take.
        strict=True,
    )


# ---------------------------------------------------------------------------- URLs


def _value_check(name: str) -> Callable[[str], str]:
    """A validator running the named `policy` check (also named in the JSON Schema)."""
    check = policy.VALUE_CHECKS[name]

    def validate(value: str) -> str:
        try:
            check(value)
        except policy.Violation as violation:
            raise PydanticCustomError(violation.kind, violation.message) from None
        return value

    return validate


HttpsUrl = Annotated[str, AfterValidator(_value_check("https-url")),
                     Field(json_schema_extra={"x-connc-check": "https-url"})]
GitUrl = Annotated[str, AfterValidator(_value_check("git-url")),
                   Field(json_schema_extra={"x-connc-check": "git-url"})]
Registry = Annotated[str, AfterValidator(_value_check("registry")),
                     Field(json_schema_extra={"x-connc-check": "registry"})]
# A day, as written (the shape in the schema, for editors; the calendar in `policy`).
Date = Annotated[str, Field(pattern=policy.DATE_PATTERN), AfterValidator(_value_check("date")),
                 Field(json_schema_extra={"x-connc-check": "date"})]
# GitHub's ids are 64-bit; a bound keeps a 5,000-digit number from reaching a URL or an int().
GitHubId = Annotated[int, Field(gt=0, le=2**63 - 1)]


def _object_rules(*names: str) -> Any:
    """A model validator running the named `policy` rules, also named in the JSON Schema."""

    def validate(self: BaseModel) -> BaseModel:
        # After field validation, so that field errors are all reported first.
        data = self.model_dump(by_alias=True)
        for name in names:
            try:
                policy.OBJECT_RULES[name](data)
            except policy.Violation as violation:
                raise PydanticCustomError(violation.kind, violation.message) from None
        return self

    return model_validator(mode="after")(validate)


# ---------------------------------------------------------------------------- CI identity
# Secretless connections (aws-ecr, pypi-publish, kubernetes with `auth: oidc`) store no secret:
# render exchanges the CI job's OIDC ID token for a short-lived credential. Where that token
# comes from, and for which audience, is plaintext: sealed, and a row in `connc diff`.


class Identity(Model):
    provider: Literal["auto", "github-actions", "gitlab-ci"] = "auto"
    """Where render gets the job's ID token: `github-actions` (requested from the runner, fresh for each exchange; the job needs `permissions: id-token: write`), `gitlab-ci` (the `id_tokens:` variable named by `tokenVariable`), or `auto`, the CI system render runs in (GITHUB_ACTIONS / GITLAB_CI)."""
    audience: Annotated[str, Field(pattern=policy.AUDIENCE_PATTERN)]
    """The token's `aud`: requested from GitHub, checked in GitLab's token. The service's own value (`sts.amazonaws.com` for AWS, the API server's OIDC client id); `auto` for pypi-publish asks the index."""
    token_variable: Annotated[str, Field(pattern=policy.VARIABLE_PATTERN)] | None = None
    """GitLab CI, required there: the variable of the job's `id_tokens:` that holds the token."""
    issuer: HttpsUrl | None = None
    """Refuse a token whose `iss` is not this (`https://token.actions.githubusercontent.com`, `https://gitlab.com`)."""
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": ["gitlab-needs-token-variable"]})
    _rules = _object_rules("gitlab-needs-token-variable")


# ---------------------------------------------------------------------------- connection specs


class GitHubAppSpec(Model):
    type: Literal["github-app"]
    """`github-app`: a GitHub App installation; render mints a one-hour installation token."""
    url: HttpsUrl = "https://github.com"
    """GitHub's web URL, as in clone URLs (`https://HOST` for GitHub Enterprise Server); a path (`https://github.com/acme`) limits the credential to repositories under it."""
    api_url: HttpsUrl = "https://api.github.com"
    """The REST API the token is minted at: `https://HOST/api/v3` for GitHub Enterprise Server."""
    client_id: str | None = None
    """The App's client ID (`Iv23li...`), on the App's General page (Settings > Developer settings > GitHub Apps > the App); or `appId`, exactly one of the two."""
    app_id: GitHubId | None = None
    """The App's numeric ID, on the same page, instead of `clientId`."""
    installation_id: GitHubId
    """The installation's id: the number at the end of its settings page URL (`.../settings/installations/ID`)."""
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": ["one-app-identifier"]})
    _rules = _object_rules("one-app-identifier")


class GitLabSpec(Model):
    type: Literal["gitlab"]
    """`gitlab`: GitLab.com with a project, group or personal access token."""
    url: HttpsUrl = "https://gitlab.com"
    """GitLab's URL; a path limits the credential to the projects under it."""


class GitLabSelfHostedSpec(Model):
    type: Literal["gitlab-self-hosted"]
    """`gitlab-self-hosted`: your own GitLab (API v4 or later)."""
    url: HttpsUrl
    """Your GitLab's URL; a path limits the credential to the projects under it."""


class CodeupSpec(Model):
    type: Literal["codeup"]
    """`codeup`: Alibaba Cloud Codeup with an HTTPS clone account."""
    url: HttpsUrl = "https://codeup.aliyun.com"
    """Codeup's URL; a path limits the credential to the repositories under it."""


class BitbucketSpec(Model):
    type: Literal["bitbucket"]
    """`bitbucket`: Bitbucket with an access token or an app password."""
    url: HttpsUrl = "https://bitbucket.org"
    """Bitbucket's URL; a path limits the credential to the repositories under it."""


class GitSpec(Model):
    type: Literal["git"]
    """`git`: any git server, over https (username + password) or ssh (a key)."""
    url: GitUrl
    """`https://HOST/PATH` or `ssh://USER@HOST[:PORT]/PATH`; a path limits the credential to the repositories under it."""
    known_hosts: str | None = None  # ssh: the host keys to pin, as in ~/.ssh/known_hosts
    """ssh only, required there: the server's host keys, as lines of `known_hosts`, for this url's host only (CONNC110); check what `ssh-keyscan HOST` prints against the host's documentation."""
    model_config = ConfigDict(json_schema_extra={
        "x-connc-rules": ["ssh-needs-known-hosts", "known-hosts-pin-own-host"]})
    _rules = _object_rules("ssh-needs-known-hosts", "known-hosts-pin-own-host")


class ContainerRegistrySpec(Model):
    type: Literal["container-registry"]
    """`container-registry`: a Docker/OCI registry."""
    registry: Registry
    """`host[:port]` as in image names; Docker Hub is `https://index.docker.io/v1/`."""


class KubernetesSpec(Model):
    type: Literal["kubernetes"]
    """`kubernetes`: a cluster's API server, rendered as one kubeconfig context."""
    server: HttpsUrl
    """The API server URL, as in a kubeconfig's `clusters[].cluster.server`."""
    certificate_authority_data: str | None = None
    """The cluster CA, base64 PEM as in a kubeconfig; without it, the system trust."""
    namespace: str | None = Field(default=None, pattern=ID_PATTERN)
    """The context's default namespace."""
    insecure_skip_tls_verify: bool = False
    """`true` skips verifying the server (a warning, CONNC108; never with CA data)."""
    auth: Literal["oidc"] | None = None
    """`oidc`: secretless; the CI job's OIDC ID token is the bearer (`identity`, `refresh`), and `credential` holds only its seal. Without it, the credential holds a token or a client certificate."""
    identity: Identity | None = None
    """With `auth: oidc`, required there: where render gets the job's ID token, and for which audience (the API server's OIDC client id, its `--oidc-client-id`)."""
    refresh: Literal["exec", "static"] | None = None
    """With `auth: oidc`: `exec`, the kubeconfig runs `connc id-token` for a fresh token whenever kubectl needs one (GitHub Actions); `static`, the token render got (it lives as long as the CI system made it; GitLab's cannot be re-minted). Default: exec under GitHub Actions, static under GitLab CI."""
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": [
        "verify-or-skip-tls", "oidc-settings-only-with-oidc", "literal-audience",
        "gitlab-tokens-are-static"]})
    _rules = _object_rules("verify-or-skip-tls", "oidc-settings-only-with-oidc",
                           "literal-audience", "gitlab-tokens-are-static")


class PackagesSpec(Model):
    type: Literal["packages"]
    """`packages`: a Maven repository, an npm registry or a PyPI index."""
    format: Literal["maven", "npm", "pypi"]
    """`maven`, `npm` or `pypi`: which tool's configuration is rendered."""
    url: HttpsUrl
    """The repository URL (a PyPI index ends in `/simple/`)."""
    repository_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    """maven only, required there: the `<server>` id, as the `<repository>` id in your pom.xml."""
    npm_scopes: list[Annotated[str, Field(pattern=NPM_SCOPE_PATTERN)]] | None = None
    """npm only: the package scopes this registry serves (`[@acme]`), written `@acme:registry=URL`; other packages still come from the default registry. Without it, this registry is the default (`registry=URL`)."""
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": [
        "maven-needs-repository-id", "npm-scopes-only-for-npm"]})
    _rules = _object_rules("maven-needs-repository-id", "npm-scopes-only-for-npm")


class AwsEcrSpec(Model):
    type: Literal["aws-ecr"]
    """`aws-ecr`: Amazon ECR, secretless: render assumes `roleArn` with the job's ID token (STS AssumeRoleWithWebIdentity), asks ECR for a 12-hour registry token, and writes only that."""
    role_arn: Annotated[str, Field(pattern=policy.ROLE_ARN_PATTERN)]
    """The IAM role to assume, `arn:aws:iam::ACCOUNT:role/NAME`; its trust policy names the CI's OIDC provider, the audience and the subjects (repositories, branches) allowed."""
    region: Annotated[str, Field(pattern=policy.REGION_PATTERN)]
    """The registry's region (`eu-central-1`)."""
    registry_ids: list[Annotated[str, Field(pattern=r"^[0-9]{12}$")]] | None = None
    """The accounts whose registries the token is for; default: the role's account."""
    session_duration_seconds: int = Field(default=900, ge=900, le=43200)
    """How long the STS session lives (900 to 43200 s); render uses it once, for one ECR call, so the shortest is the default. The registry token itself lasts 12 hours."""
    role_session_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9+=,.@_-]{2,64}$")] | None = None
    """The session name CloudTrail shows; default `connc-ID` (the connection id)."""
    registry: Registry | None = None
    """The `auths` key docker finds the token under; default `ACCOUNT.dkr.ecr.REGION.amazonaws.com` for each of `registryIds` (or the role's account)."""
    sts_endpoint: HttpsUrl | None = None
    """STS's URL; default `https://sts.REGION.amazonaws.com` (`.amazonaws.com.cn` in China)."""
    ecr_endpoint: HttpsUrl | None = None
    """ECR's API URL; default `https://api.ecr.REGION.amazonaws.com`."""
    identity: Identity
    """Where render gets the job's ID token; AWS's audience is `sts.amazonaws.com`."""
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": [
        "aws-partition-matches-region", "literal-audience"]})
    _rules = _object_rules("aws-partition-matches-region", "literal-audience")


class PypiPublishSpec(Model):
    type: Literal["pypi-publish"]
    """`pypi-publish`: PyPI trusted publishing, secretless: render trades the job's ID token for a 15-minute upload token (`twine upload --config-file "$CONNC_BUNDLE/pypi/pypirc" -r ID`)."""
    url: HttpsUrl = "https://upload.pypi.org/legacy/"
    """The upload URL (TestPyPI: `https://test.pypi.org/legacy/`); the token is minted at `/_/oidc/mint-token` on its host."""
    repository_name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    """A second name for the pypirc section (the first is the connection id): `pypi` makes it twine's default, so `twine upload` needs no `-r`."""
    identity: Identity
    """Where render gets the job's ID token; `audience: auto` asks the index (PyPI's is `pypi`)."""


def _named(name: str) -> Any:
    """The class of this module that `schema.connection_types` names."""
    return globals()[name]


def spec_models() -> dict[str, type[Model]]:
    """The spec model of each type, as `schema.connection_types` names it."""
    return {entry.name: _named(entry.spec) for entry in connection_types.TYPES}


# One of the spec models, chosen by `type`: the union is built from the table at import, so
# mypy sees only their base class.
if typing.TYPE_CHECKING:
    ConnectionSpec: TypeAlias = Model
else:
    ConnectionSpec = Annotated[
        functools.reduce(operator.or_, [Annotated[model, Tag(name)]
                                        for name, model in spec_models().items()]),
        Discriminator("type"),
    ]


# ---------------------------------------------------------------------------- credentials
# Decrypted values. `alternatives` lists the acceptable sets of required fields; the first
# set whose fields are all present wins. Field names are plaintext in the encrypted file, so
# keyless validation checks names and alternatives too.


class Credential(Model):
    alternatives: ClassVar[tuple[frozenset[str], ...]] = ()

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.alias or n for n, f in cls.model_fields.items())


def _alternatives(*sets: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(s.split()) for s in sets)


class GitHubAppCredential(Credential):
    alternatives = _alternatives("privateKey")
    private_key: str
    """The App's private key (PEM, PKCS#1 or PKCS#8), from "Generate a private key" on the App's General page; pipelines get short-lived installation tokens."""


class TokenCredential(Credential):  # gitlab, gitlab-self-hosted
    alternatives = _alternatives("token")
    token: str
    """A project, group or personal access token with read_repository (write_repository to push): Settings > Access tokens."""
    username: str | None = None
    """The git username; default `oauth2` (a deploy token has its own)."""


class UserPasswordCredential(Credential):  # codeup, container-registry
    alternatives = _alternatives("username password")
    username: str
    """The account (a robot or service account)."""
    password: str
    """Its password or access token."""


class BitbucketCredential(Credential):
    alternatives = _alternatives("token", "username password")
    token: str | None = None
    """A repository, project or workspace access token (Repository settings > Access tokens; git user `x-token-auth`)."""
    username: str | None = None
    """With `password`, instead of `token`: the account."""
    password: str | None = None
    """With `username`: an app password."""


class GitCredential(Credential):
    alternatives = _alternatives("username password", "sshPrivateKey")
    username: str | None = None
    """https: the account."""
    password: str | None = None
    """https: its password or token."""
    ssh_private_key: str | None = None
    """ssh: the private key (OpenSSH or PEM, unencrypted)."""


class KubernetesCredential(Credential):
    alternatives = _alternatives("token", "clientCertificateData clientKeyData")
    token: str | None = None
    """A service account token (`kubectl create token SA --duration=...`, or a token Secret)."""
    client_certificate_data: str | None = None
    """Instead of `token`: a client certificate, base64 PEM as in a kubeconfig."""
    client_key_data: str | None = None
    """Its key, base64 PEM."""


class PackagesCredential(Credential):
    alternatives = _alternatives("username password", "token")
    username: str | None = None
    """The repository account."""
    password: str | None = None
    """Its password or token."""
    token: str | None = None
    """npm: an auth token, instead of username + password."""


class SecretlessCredential(Credential):  # aws-ecr, pypi-publish
    """Nothing stored: `credential` holds only its seal, which binds the plaintext above."""

    alternatives = (frozenset(),)


CREDENTIALS: dict[str, type[Credential]] = {
    entry.name: _named(entry.credential) for entry in connection_types.TYPES}


# ---------------------------------------------------------------------------- documents

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
MemberRef = Annotated[str, Field(pattern=MEMBER_PATTERN)]
Recipient = Annotated[str, Field(min_length=1)]


class ConnectionMetadata(Model):
    id: Id
    """Lowercase letters, digits and dashes, 1 to 63; the file is `connections.d/ID.sops.yaml`; pipelines refer to it."""
    name: str = Field(min_length=1)
    """A display name."""
    owner: Name
    """The user (in members.yaml) who owns the connection and consents to changes of it."""
    description: str | None = None
    """What the connection is for."""
    expires_at: Date | None = None
    """When the credential expires (YYYY-MM-DD): validate warns 30 days before (connc.yaml `expiryWarningDays`), and refuses it after."""


class Scope(Model):
    visibility: Literal["private", "public", "custom"]
    """Who may use it: `private` (the owner's pipelines), `public` (every pipeline), `custom` (the owner's and those of `members`)."""
    members: list[MemberRef] = []
    """custom only: `user:NAME`, `team:NAME`, `pipeline:ID` whose pipelines may use it."""


class Connection(Model):
    """A connection file; `credential` values are sops ENC[...] strings when encrypted."""

    api_version: Literal["connc/v1"]
    """`connc/v1`."""
    kind: Literal["Connection"]
    """`Connection`."""
    metadata: ConnectionMetadata
    """Identity and ownership."""
    scope: Scope
    """Scope of use."""
    spec: ConnectionSpec
    """Plaintext settings, by `type` (below): where the credential goes and what it trusts."""
    credential: dict[str, Any]
    """The only encrypted part (sops), with the type's fields (below) and connc's seal, `connc-seal`."""
    sops: dict[str, Any] | None = None
    """Written by sops."""


Permission = Literal["read", "write", "admin"]


class Use(Model):
    connection: Id
    """The id of a connection this pipeline uses."""
    repositories: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]] | None = None
    """github-app only: narrow the minted token to these repositories (bare names)."""
    permissions: dict[Annotated[str, Field(pattern=r"^[a-z_]+$")], Permission] | None = None
    """github-app only: narrow the token to these App permissions (`contents: read`, ...)."""
    refresh: bool = False
    """github-app only: the bundle keeps the App key and re-mints before expiry (jobs longer than an hour)."""


class PipelineMetadata(Model):
    id: Id
    """As a connection id; the file is `pipelines.d/ID.yaml` and `connc render ID` renders it."""
    owner: Name
    """The user who owns the pipeline: its private connections and `user:` memberships count."""
    name: str | None = None
    """A display name."""
    description: str | None = None
    """What the pipeline does."""
    teams: list[Name] = []
    """Teams (in members.yaml) the pipeline claims; the owner must be a member of each."""
    recipients: list[Recipient] = []
    """The pipeline's own keys (its runner's), for `pipeline:ID` members."""


class Pipeline(Model):
    api_version: Literal["connc/v1"]
    """`connc/v1`."""
    kind: Literal["Pipeline"]
    """`Pipeline`."""
    metadata: PipelineMetadata
    """Identity, owner, teams."""
    uses: list[Use] = []
    """The connections the pipeline uses, each once."""


class User(Model):
    name: str | None = None
    """A display name."""
    github: Annotated[str, Field(pattern=GITHUB_LOGIN_PATTERN)] | None = None
    """The GitHub account whose reviews count as this user's consent (`connc approvals`)."""
    github_id: Annotated[int, Field(gt=0, strict=True)] | None = None
    """That account's numeric id (`gh api users/LOGIN --jq .id`): when set, reviews and commits count by the id, not the login, which can be renamed and registered again by someone else."""
    gitlab: Annotated[str, Field(pattern=GITLAB_USERNAME_PATTERN)] | None = None
    """The GitLab account whose merge request approvals count as this user's consent (`connc approvals --gitlab-mr`)."""
    gitlab_id: Annotated[int, Field(gt=0, strict=True)] | None = None
    """That account's numeric id (`GET /users?username=NAME`, its `id`): when set, approvals and commits count by the id, not the username, which can be changed and registered again by someone else."""
    recipients: list[Recipient] = []
    """The user's public keys (age1..., KMS ARNs, PGP fingerprints), for scope backed by cryptography."""


class Team(Model):
    members: list[Name] = []
    """Users of the team."""
    recipients: list[Recipient] = []
    """The team's own keys (e.g. its runner's)."""


class Members(Model):
    api_version: Literal["connc/v1"]
    """`connc/v1`."""
    kind: Literal["Members"]
    """`Members`."""
    users: dict[Name, User] = {}
    """Users by name: the principals that own connections and pipelines."""
    teams: dict[Name, Team] = {}
    """Teams by name."""


class GitHubAppPolicy(Model):
    require_permissions: bool = False
    """Every use of a github-app connection declares `permissions` (CONNC212)."""


class Config(Model):
    api_version: Literal["connc/v1"]
    """`connc/v1`."""
    kind: Literal["Config"]
    """`Config`."""
    admin_recipients: list[Recipient] = []
    """Break-glass keys allowed on every connection file, whatever its scope."""
    expiry_warning_days: int = Field(default=30, ge=0, le=100_000)
    """Days before `expiresAt` when validate starts to warn."""
    admins: list[Name] = []
    """Users who consent to members, keys and policy changes (`connc approvals`)."""
    require_seals: bool = False
    """render and check refuse a credential without a seal; validate reports one as an error."""
    github_app: GitHubAppPolicy = GitHubAppPolicy()
    """GitHub App policy."""


DOCUMENTS: dict[str, type[Model]] = {
    "Connection": Connection,
    "Pipeline": Pipeline,
    "Members": Members,
    "Config": Config,
}
