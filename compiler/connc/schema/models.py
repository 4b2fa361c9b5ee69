"""The documents of a connection repository, as pydantic models.

One model per file kind (Connection, Pipeline, Members, Config) and one spec model plus one
credential model per connection type. The JSON Schemas in `schema/` are generated from these
(`connc schema`), so editors and connc agree on what a valid file is.

Keyless validation sees the `credential` subtree only as encrypted strings, so a connection's
`credential` is validated in two steps: its field *names* against the type's credential model
(they are plaintext even in an encrypted file), and, with `--decrypt`, its values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

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
from connc.schema import policy

NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$"
# GitHub logins: letters, digits and single inner hyphens, at most 39 characters (GitHub's
# own rule; the hyphen rule needs lookaround, which JSON Schema regexes lack, so it is checked
# here in shape only and GitHub answers for the rest).
GITHUB_LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$"
MEMBER_PATTERN = r"^(user|team|pipeline):[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        # Keep the user's spelling in errors; never echo the input value (it may be a secret).
        hide_input_in_errors=True,
        # Build validators on first use: render validates only the models it needs.
        defer_build=True,
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


# ---------------------------------------------------------------------------- connection specs


class GitHubAppSpec(Model):
    type: Literal["github-app"]
    url: HttpsUrl = "https://github.com"
    api_url: HttpsUrl = "https://api.github.com"
    client_id: str | None = None
    app_id: int | None = None
    installation_id: int = Field(gt=0)
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": ["one-app-identifier"]})
    _rules = _object_rules("one-app-identifier")


class GitLabSpec(Model):
    type: Literal["gitlab"]
    url: HttpsUrl = "https://gitlab.com"


class GitLabSelfHostedSpec(Model):
    type: Literal["gitlab-self-hosted"]
    url: HttpsUrl


class CodeupSpec(Model):
    type: Literal["codeup"]
    url: HttpsUrl = "https://codeup.aliyun.com"


class BitbucketSpec(Model):
    type: Literal["bitbucket"]
    url: HttpsUrl = "https://bitbucket.org"


class GitSpec(Model):
    type: Literal["git"]
    url: GitUrl
    known_hosts: str | None = None  # ssh: the host keys to pin, as in ~/.ssh/known_hosts
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": ["ssh-needs-known-hosts"]})
    _rules = _object_rules("ssh-needs-known-hosts")


class ContainerRegistrySpec(Model):
    type: Literal["container-registry"]
    registry: Registry


class KubernetesSpec(Model):
    type: Literal["kubernetes"]
    server: HttpsUrl
    certificate_authority_data: str | None = None
    namespace: str | None = Field(default=None, pattern=ID_PATTERN)
    insecure_skip_tls_verify: bool = False
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": ["verify-or-skip-tls"]})
    _rules = _object_rules("verify-or-skip-tls")


class PackagesSpec(Model):
    type: Literal["packages"]
    format: Literal["maven", "npm", "pypi"]
    url: HttpsUrl
    repository_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    model_config = ConfigDict(json_schema_extra={"x-connc-rules": ["maven-needs-repository-id"]})
    _rules = _object_rules("maven-needs-repository-id")


ConnectionSpec = Annotated[
    Annotated[GitHubAppSpec, Tag("github-app")]
    | Annotated[GitLabSpec, Tag("gitlab")]
    | Annotated[GitLabSelfHostedSpec, Tag("gitlab-self-hosted")]
    | Annotated[CodeupSpec, Tag("codeup")]
    | Annotated[BitbucketSpec, Tag("bitbucket")]
    | Annotated[GitSpec, Tag("git")]
    | Annotated[ContainerRegistrySpec, Tag("container-registry")]
    | Annotated[KubernetesSpec, Tag("kubernetes")]
    | Annotated[PackagesSpec, Tag("packages")],
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


class TokenCredential(Credential):  # gitlab, gitlab-self-hosted
    alternatives = _alternatives("token")
    token: str
    username: str | None = None


class UserPasswordCredential(Credential):  # codeup, container-registry
    alternatives = _alternatives("username password")
    username: str
    password: str


class BitbucketCredential(Credential):
    alternatives = _alternatives("token", "username password")
    token: str | None = None
    username: str | None = None
    password: str | None = None


class GitCredential(Credential):
    alternatives = _alternatives("username password", "sshPrivateKey")
    username: str | None = None
    password: str | None = None
    ssh_private_key: str | None = None


class KubernetesCredential(Credential):
    alternatives = _alternatives("token", "clientCertificateData clientKeyData")
    token: str | None = None
    client_certificate_data: str | None = None
    client_key_data: str | None = None


class PackagesCredential(Credential):
    alternatives = _alternatives("username password", "token")
    username: str | None = None
    password: str | None = None
    token: str | None = None


CREDENTIALS: dict[str, type[Credential]] = {
    "github-app": GitHubAppCredential,
    "gitlab": TokenCredential,
    "gitlab-self-hosted": TokenCredential,
    "codeup": UserPasswordCredential,
    "bitbucket": BitbucketCredential,
    "git": GitCredential,
    "container-registry": UserPasswordCredential,
    "kubernetes": KubernetesCredential,
    "packages": PackagesCredential,
}
CONNECTION_TYPES = tuple(CREDENTIALS)


# ---------------------------------------------------------------------------- documents

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
MemberRef = Annotated[str, Field(pattern=MEMBER_PATTERN)]
Recipient = Annotated[str, Field(min_length=1)]


class ConnectionMetadata(Model):
    id: Id
    name: str = Field(min_length=1)
    owner: Name
    description: str | None = None
    expires_at: dt.date | dt.datetime | None = None


class Scope(Model):
    visibility: Literal["private", "public", "custom"]
    members: list[MemberRef] = []


class Connection(Model):
    """A connection file; `credential` values are sops ENC[...] strings when encrypted."""

    api_version: Literal["connc/v1"]
    kind: Literal["Connection"]
    metadata: ConnectionMetadata
    scope: Scope
    spec: ConnectionSpec
    credential: dict[str, Any]
    sops: dict[str, Any] | None = None


Permission = Literal["read", "write", "admin"]


class Use(Model):
    connection: Id
    repositories: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]] | None = None
    permissions: dict[Annotated[str, Field(pattern=r"^[a-z_]+$")], Permission] | None = None
    refresh: bool = False


class PipelineMetadata(Model):
    id: Id
    owner: Name
    name: str | None = None
    description: str | None = None
    teams: list[Name] = []
    recipients: list[Recipient] = []


class Pipeline(Model):
    api_version: Literal["connc/v1"]
    kind: Literal["Pipeline"]
    metadata: PipelineMetadata
    uses: list[Use] = []


class User(Model):
    name: str | None = None
    github: Annotated[str, Field(pattern=GITHUB_LOGIN_PATTERN)] | None = None
    recipients: list[Recipient] = []


class Team(Model):
    members: list[Name] = []
    recipients: list[Recipient] = []


class Members(Model):
    api_version: Literal["connc/v1"]
    kind: Literal["Members"]
    users: dict[Name, User] = {}
    teams: dict[Name, Team] = {}


class GitHubAppPolicy(Model):
    require_permissions: bool = False


class Config(Model):
    api_version: Literal["connc/v1"]
    kind: Literal["Config"]
    admin_recipients: list[Recipient] = []
    expiry_warning_days: int = Field(default=30, ge=0)
    admins: list[Name] = []
    require_seals: bool = False
    github_app: GitHubAppPolicy = GitHubAppPolicy()


DOCUMENTS: dict[str, type[Model]] = {
    "Connection": Connection,
    "Pipeline": Pipeline,
    "Members": Members,
    "Config": Config,
}
