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
import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal, Union
from urllib.parse import urlsplit

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

API_VERSION = "connc/v1"
ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$"
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


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(value: str, schemes: tuple[str, ...]) -> str:
    if any(char <= " " or char == "\x7f" for char in value):
        # urlsplit silently drops tabs and newlines, but the value is used as written: in a git
        # config or a kubeconfig a newline would inject a line of its own.
        raise PydanticCustomError("url_invalid", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        # urllib's messages quote the bad host or port, and a URL may hold a pasted secret.
        raise PydanticCustomError(
            "url_invalid", "must be an absolute URL with scheme {schemes}, a valid host and port",
            {"schemes": " or ".join(schemes)}) from None
    if parts.scheme not in schemes + ("http",) or not parts.hostname:
        raise PydanticCustomError(
            "url_invalid", "must be an absolute URL with scheme {schemes}",
            {"schemes": " or ".join(schemes)})
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise PydanticCustomError(
            "url_insecure", "plain http:// is refused except on loopback hosts; use https://")
    # In ssh://git@host/... the user is the login name every git host expects, not a secret.
    if parts.password or (parts.username and parts.scheme != "ssh"):
        raise PydanticCustomError(
            "url_credentials", "must not carry credentials; they belong in `credential`")
    if parts.query or parts.fragment:
        raise PydanticCustomError("url_invalid", "must not have a query or fragment")
    return value


def _https(value: str) -> str:
    return _checked_url(value, ("https",))


def _git_url(value: str) -> str:
    return _checked_url(value, ("https", "ssh"))


HttpsUrl = Annotated[str, AfterValidator(_https)]
GitUrl = Annotated[str, AfterValidator(_git_url)]


def _registry(value: str) -> str:
    # docker config.json keys: "host[:port]" or Docker Hub's legacy "https://index.docker.io/v1/".
    if value.startswith(("https://", "http://")):
        return _https(value)
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]+)?", value):
        raise PydanticCustomError("url_invalid", "must be host[:port] or an https:// URL")
    return value


# ---------------------------------------------------------------------------- connection specs


class GitHubAppSpec(Model):
    type: Literal["github-app"]
    url: HttpsUrl = "https://github.com"
    api_url: HttpsUrl = "https://api.github.com"
    client_id: str | None = None
    app_id: int | None = None
    installation_id: int = Field(gt=0)

    @model_validator(mode="after")
    def _one_app_identifier(self) -> GitHubAppSpec:
        if (self.client_id is None) == (self.app_id is None):
            raise PydanticCustomError("one_of", "set exactly one of clientId or appId")
        return self

    @property
    def issuer(self) -> str:
        return self.client_id if self.client_id is not None else str(self.app_id)


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

    @model_validator(mode="after")
    def _ssh_needs_known_hosts(self) -> GitSpec:
        if self.url.startswith("ssh://") and not (self.known_hosts or "").strip():
            raise PydanticCustomError(
                "missing", "an ssh:// url needs knownHosts (the server's host key to pin)")
        return self


class ContainerRegistrySpec(Model):
    type: Literal["container-registry"]
    registry: Annotated[str, AfterValidator(_registry)]


class KubernetesSpec(Model):
    type: Literal["kubernetes"]
    server: HttpsUrl
    certificate_authority_data: str | None = None
    namespace: str | None = Field(default=None, pattern=ID_PATTERN)
    insecure_skip_tls_verify: bool = False


class PackagesSpec(Model):
    type: Literal["packages"]
    format: Literal["maven", "npm", "pypi"]
    url: HttpsUrl
    repository_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")

    @model_validator(mode="after")
    def _maven_needs_repository_id(self) -> PackagesSpec:
        if self.format == "maven" and not self.repository_id:
            raise PydanticCustomError("missing", "maven needs repositoryId (the <server> id)")
        return self


ConnectionSpec = Annotated[
    Union[
        Annotated[GitHubAppSpec, Tag("github-app")],
        Annotated[GitLabSpec, Tag("gitlab")],
        Annotated[GitLabSelfHostedSpec, Tag("gitlab-self-hosted")],
        Annotated[CodeupSpec, Tag("codeup")],
        Annotated[BitbucketSpec, Tag("bitbucket")],
        Annotated[GitSpec, Tag("git")],
        Annotated[ContainerRegistrySpec, Tag("container-registry")],
        Annotated[KubernetesSpec, Tag("kubernetes")],
        Annotated[PackagesSpec, Tag("packages")],
    ],
    Discriminator("type"),
]

GIT_TYPES = frozenset({"github-app", "gitlab", "gitlab-self-hosted", "codeup", "bitbucket", "git"})


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
    recipients: list[Recipient] = []


class Team(Model):
    members: list[Name] = []
    recipients: list[Recipient] = []


class Members(Model):
    api_version: Literal["connc/v1"]
    kind: Literal["Members"]
    users: dict[Name, User] = {}
    teams: dict[Name, Team] = {}


class Config(Model):
    api_version: Literal["connc/v1"]
    kind: Literal["Config"]
    admin_recipients: list[Recipient] = []
    expiry_warning_days: int = Field(default=30, ge=0)


DOCUMENTS: dict[str, type[Model]] = {
    "Connection": Connection,
    "Pipeline": Pipeline,
    "Members": Members,
    "Config": Config,
}
