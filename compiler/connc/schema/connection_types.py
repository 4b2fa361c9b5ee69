"""Every connection type, once: the one table each part of connc finds a type's parts in.

An entry names the type's models (classes of `schema.models`: its spec, its credential; their
field docstrings are its field docs, for docs/formats.md, the JSON Schemas and `connc new`
alike), the render module that writes it (`render.context.Writer`), the check module that
probes it and asks what it reaches (`check.probe.Probe` and `check.reach.Reacher`), and the
values `connc new` writes where only the user knows the value.

Plain data, no pydantic: render reads this table at start-up. The core imports no command
family, so writers and probes are named by module path; render and check import the modules
they use (`modules`), and tests/core/test_type_registry.py holds every entry complete. Every
type has a writer and a probe: render has nothing to give a pipeline for a type it cannot
write, and `connc check` must be able to try every credential render hands out.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any, Literal

# What `connc new` writes where only the user knows the value: valid, so the new file validates
# and encrypts, and unmistakable (REPLACE-ME, hosts under the reserved .invalid domain). A spec
# still holding one is unfinished: validate reports it keyless (CONNC111), so an unfinished
# scaffold cannot pass CI. (`installationId: 1` and `format: maven` are written too, but as
# real values they cannot be told from a choice.)
PLACEHOLDER = "REPLACE-ME"


@dataclasses.dataclass(frozen=True)
class ConnectionType:
    name: str  # `spec.type`
    spec: str  # the spec model, a class of `connc.schema.models`
    credential: str  # the credential model, a class of `connc.schema.models`
    writer: str  # the render module that writes it into the bundle
    probe: str  # the check module that probes it (`connc check`) and asks what it reaches
    # `connc new`'s value for each spec field without a default, and for a few the user must
    # look at; every other field gets its default or is listed as optional.
    placeholders: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))
    # Stores no secret: render exchanges the CI job's OIDC ID token for a short-lived
    # credential (kubernetes only with `auth: oidc`: `policy.secretless`).
    secretless: bool = False


def _git(name: str, spec: str, credential: str, **placeholders: Any) -> ConnectionType:
    return ConnectionType(name, spec, credential, writer="connc.render.git",
                          probe="connc.check.git", placeholders=MappingProxyType(placeholders))


TYPES: tuple[ConnectionType, ...] = (
    ConnectionType("github-app", "GitHubAppSpec", "GitHubAppCredential",
                   writer="connc.render.git", probe="connc.check.github_app",
                   placeholders=MappingProxyType({"clientId": PLACEHOLDER,
                                                  "installationId": 1})),
    _git("gitlab", "GitLabSpec", "TokenCredential"),
    _git("gitlab-self-hosted", "GitLabSelfHostedSpec", "TokenCredential",
         url="https://gitlab.replace-me.invalid"),
    _git("codeup", "CodeupSpec", "UserPasswordCredential"),
    _git("bitbucket", "BitbucketSpec", "BitbucketCredential"),
    _git("git", "GitSpec", "GitCredential", url="https://git.replace-me.invalid/"),
    ConnectionType("container-registry", "ContainerRegistrySpec", "UserPasswordCredential",
                   writer="connc.render.docker", probe="connc.check.registry",
                   placeholders=MappingProxyType({"registry": "registry.replace-me.invalid"})),
    ConnectionType("kubernetes", "KubernetesSpec", "KubernetesCredential",
                   writer="connc.render.kube", probe="connc.check.kube",
                   placeholders=MappingProxyType(
                       {"server": "https://kubernetes.replace-me.invalid:6443"})),
    ConnectionType("packages", "PackagesSpec", "PackagesCredential",
                   writer="connc.render.packages", probe="connc.check.packages",
                   placeholders=MappingProxyType({
                       "format": "maven", "url": "https://packages.replace-me.invalid/repository/",
                       "repositoryId": PLACEHOLDER})),
    ConnectionType("aws-ecr", "AwsEcrSpec", "SecretlessCredential",
                   writer="connc.render.docker", probe="connc.check.secretless", secretless=True,
                   placeholders=MappingProxyType({
                       "roleArn": f"arn:aws:iam::000000000000:role/{PLACEHOLDER}",
                       "region": "us-east-1",
                       "identity": {"provider": "auto", "audience": "sts.amazonaws.com"}})),
    ConnectionType("pypi-publish", "PypiPublishSpec", "SecretlessCredential",
                   writer="connc.render.pypirc", probe="connc.check.secretless", secretless=True,
                   placeholders=MappingProxyType(
                       {"identity": {"provider": "auto", "audience": "auto"}})),
)
BY_NAME: Mapping[str, ConnectionType] = MappingProxyType({t.name: t for t in TYPES})
NAMES: tuple[str, ...] = tuple(BY_NAME)
SECRETLESS: frozenset[str] = frozenset(t.name for t in TYPES if t.secretless)

# `connc new kubernetes ID --auth oidc`: the stored-secret placeholders, and where the ID token
# comes from; the audience is the API server's OIDC client id, which only the user knows.
KUBERNETES_OIDC_PLACEHOLDERS: Mapping[str, Any] = MappingProxyType({
    **BY_NAME["kubernetes"].placeholders, "auth": "oidc",
    "identity": {"provider": "auto", "audience": PLACEHOLDER}})


def modules(part: Literal["writer", "probe"],
            types: frozenset[str] | None = None) -> dict[str, ModuleType]:
    """`part`'s module of each type (of `types`, by default every type), imported on first
    use: a render imports only the writers its pipeline needs."""
    chosen = TYPES if types is None else [t for t in TYPES if t.name in types]
    return {t.name: importlib.import_module(getattr(t, part)) for t in chosen}
