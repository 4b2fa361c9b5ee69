"""One secretless connection's exchange, as render (and `connc check`) runs it: an ID token
for the connection's audience, traded at its sealed endpoints, and what the bundle gets.

A credential that expired before render could write it is refused, as an expired stored
secret is: nothing that cannot work is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from connc.errors import RenderError
from connc.identity import aws, pypi
from connc.identity.ci import GITHUB, GITLAB, Environment, Source, refuse_untrusted_event
from connc.identity.token import IdToken, stamp
from connc.secrets import Secret


@dataclasses.dataclass(frozen=True)
class Exchanged:
    """What a secretless connection puts in the bundle."""

    values: dict[str, Secret]  # ecr: username + password; pypi: token; kube static: token
    expires_at: dt.datetime | None  # None: refreshed as needed (kube exec)
    spent: tuple[Secret, ...]  # the ID tokens sent: masked under --format github
    registries: tuple[str, ...] = ()  # ecr: the docker `auths` keys
    refresh: str | None = None  # kubernetes: exec or static

    def __repr__(self) -> str:
        return f"Exchanged(expires_at={self.expires_at!r}, refresh={self.refresh!r})"


def environment(environ: Mapping[str, str] | None = None) -> Environment:
    """The CI job's identity; refuses at once in a pull_request_target job."""
    source = Environment(environ)
    refuse_untrusted_event(source.environ)
    return source


def check_shared(items: Sequence[tuple[str, Mapping[str, Any]]], source: Source) -> None:
    """Refuse, before any request, two pypi-publish connections that would spend one GitLab
    token: an index accepts each ID token once, and GitLab gives one per variable per job."""
    seen: dict[str, str] = {}
    for connection, spec in items:
        identity = spec["identity"]
        if spec["type"] != "pypi-publish" or source.provider(identity) != GITLAB:
            continue
        variable = str(identity.get("tokenVariable"))
        if variable in seen:
            raise RenderError(f"connections `{seen[variable]}` and `{connection}` both mint with "
                              f"the GitLab CI variable {variable}, and an index accepts each ID "
                              f"token once: give each its own `id_tokens:` variable")
        seen[variable] = connection


def exchange(connection: str, spec: Mapping[str, Any], source: Source, *,
             now: dt.datetime | None = None) -> Exchanged:
    identity = spec["identity"]
    if spec["type"] == "aws-ecr":
        id_token = source.token(identity, str(identity["audience"]), connection=connection)
        session = aws.assume_role(spec, id_token, connection)
        _unexpired(session.expires_at, "the STS session", connection, now)
        issued = aws.authorization_token(spec, session, connection)
        _unexpired(issued.expires_at, "the registry token ECR issued", connection, now)
        return Exchanged({"username": Secret(issued.username), "password": issued.password},
                         issued.expires_at, (id_token.value,), tuple(aws.registries(spec)))
    if spec["type"] == "pypi-publish":
        audience = str(identity["audience"])
        if audience == "auto":
            audience = pypi.audience(str(spec["url"]), connection)
        id_token = source.token(identity, audience, connection=connection)
        minted = pypi.mint(str(spec["url"]), id_token, connection)
        _unexpired(minted.expires_at, "the upload token", connection, now)
        return Exchanged({"token": minted.token}, minted.expires_at, (id_token.value,))
    if spec["type"] == "kubernetes":
        return _kubernetes(connection, spec, source)
    raise AssertionError(f"no exchange for type {spec['type']}")  # policy.secretless says which


def _kubernetes(connection: str, spec: Mapping[str, Any], source: Source) -> Exchanged:
    """The ID token is the bearer. `exec`: the kubeconfig asks `connc id-token` for a fresh
    one whenever kubectl needs it; render still asks for one now, so that a job without an
    identity fails here, not at its first kubectl."""
    identity = spec["identity"]
    provider = source.provider(identity)
    # A token file (`connc check`) is one token: used as it is, whatever the kubeconfig does.
    refresh = "static" if provider == "file" else \
        spec.get("refresh") or ("exec" if provider == GITHUB else "static")
    if refresh == "exec" and provider != GITHUB:
        raise RenderError(f"connection `{connection}`: `refresh: exec` needs GitHub Actions, "
                          f"which mints a token on each request; "
                          f"GitLab CI gives one per job: use `refresh: static`")
    id_token: IdToken = source.token(identity, str(identity["audience"]), connection=connection)
    if refresh == "exec":
        return Exchanged({}, None, (id_token.value,), refresh="exec")
    return Exchanged({"token": id_token.value}, id_token.expires_at, (id_token.value,),
                     refresh="static")


def _unexpired(expires_at: dt.datetime | None, what: str, connection: str,
               now: dt.datetime | None) -> None:
    if expires_at is not None and expires_at <= (now or dt.datetime.now(dt.UTC)):
        raise RenderError(f"connection `{connection}`: {what} expired at {stamp(expires_at)}, "
                          f"before render could use it; refused (is this machine's clock "
                          f"right?)")


EXEC_API = "client.authentication.k8s.io/v1"


def exec_credential(connection: str, audience: str, provider: str, issuer: str | None,
                    environ: Mapping[str, str]) -> str:
    """`connc id-token --exec-credential`: kubectl's ExecCredential with a fresh ID token.

    Printed for kubectl only, which runs it from the kubeconfig and reads its stdout: without
    KUBERNETES_EXEC_INFO (client-go sets it for every exec plugin) it refuses, so that the
    token is never printed into a job's log by a step that runs it by hand.
    """
    if "KUBERNETES_EXEC_INFO" not in environ:
        raise RenderError("connc id-token prints an ID token for kubectl only, which runs it "
                          "from a kubeconfig (KUBERNETES_EXEC_INFO is not set); it never "
                          "prints one into a log")
    source = environment(environ)
    identity = {"provider": provider, "audience": audience, "issuer": issuer}
    found = source.token(identity, audience, connection=connection)
    status: dict[str, str] = {"token": found.value.reveal()}
    if found.expires_at is not None:
        status["expirationTimestamp"] = stamp(found.expires_at)
    return json.dumps({"apiVersion": EXEC_API, "kind": "ExecCredential", "status": status})
