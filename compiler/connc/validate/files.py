"""Checks that need one file only. They run in worker processes, so everything here is
picklable: each file yields its findings plus a small summary for the cross-file checks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connc import documents, encryption, seal, secrets
from connc.documents import Document, expiry_finding
from connc.findings import Finding, finding, suggest
from connc.repository import ConnectionSummary, PipelineSummary, UseSummary
from connc.schema import models
from connc.schema.policy import placeholders_left
from connc.sopsmeta import CreationRule, SopsMetadata, read_metadata, value_fingerprint
from connc.validate.modelerrors import findings_from
from connc.validate.narrowing import check_permissions


@dataclasses.dataclass(frozen=True)
class CheckContext:
    root: str
    rules: tuple[CreationRule, ...] | None  # None: .sops.yaml unusable (reported once elsewhere)
    today: dt.date
    warning_days: int


@dataclasses.dataclass(frozen=True)
class FileResult:
    relpath: str
    findings: tuple[Finding, ...]
    summary: ConnectionSummary | PipelineSummary | None = None


def check_single(root: Path, relpath: str, kind: str, model: type[BaseModel], *,
                 listed: bool = False) -> tuple[BaseModel | None, Document | None, list[Finding]]:
    """Read one file (`documents.read`), scan it for plaintext secrets, check its model.

    The document comes back whenever it was read, the model only when it is valid.
    """
    document, found = documents.read(root, relpath, kind, listed=listed)
    if document is None:
        return None, None, found
    # In a connection, `credential` is encrypted and `sops` is sops' own metadata.
    skip = frozenset({"credential", "sops"}) if kind == "Connection" else frozenset()
    found += secrets.plaintext_findings(document, relpath, skip)
    parsed, model_findings = validate_model(document, relpath, model)
    return parsed, document, _drop_shadowed(found + model_findings)


def validate_model(document: Document, relpath: str, model: type[BaseModel],
                   data: Any = None) -> tuple[BaseModel | None, list[Finding]]:
    try:
        return model.model_validate(document.data if data is None else data), []
    except ValidationError as error:
        return None, findings_from(error, model, document, relpath)


def _drop_shadowed(found: list[Finding]) -> list[Finding]:
    """A plaintext secret under an unknown key is one problem, reported as the secret."""
    secret_at = {(f.line, f.column) for f in found if f.code == "CONNC403"}
    return [f for f in found if not (f.code == "CONNC101" and (f.line, f.column) in secret_at)]


# ---------------------------------------------------------------------------- connections


def check_connection(relpath: str, context: CheckContext) -> FileResult:
    """Every single-file check of a connection, and its summary when it is valid."""
    connection, document, found = check_single(Path(context.root), relpath, "Connection",
                                               models.Connection, listed=True)
    if document is None:
        return FileResult(relpath, tuple(found))
    sops_block = document.data.get("sops") if isinstance(document.data, dict) else None
    metadata = read_metadata(sops_block) if sops_block is not None else None  # read once
    found += encryption.check(document, relpath, context.rules, metadata)
    if isinstance(connection, models.Connection):
        found += _connection_semantics(connection, document, relpath, context)
        summary = _connection_summary(connection, document, relpath, metadata)
        return FileResult(relpath, tuple(found), summary)
    return FileResult(relpath, tuple(found))


def _connection_semantics(connection: models.Connection, document: Document, relpath: str,
                          context: CheckContext) -> list[Finding]:
    found = check_credential_names(connection, document, relpath)
    expired = expiry_finding(connection.metadata.expires_at, connection.metadata.id,
                             document, relpath, context.today, context.warning_days)
    if expired:
        found.append(expired)
    spec = connection.spec
    for field in placeholders_left(spec.model_dump(by_alias=True)):
        line, column = document.position(("spec", field))
        found.append(finding(relpath, line, column, "CONNC111",
                             f"`spec.{field}` still holds the placeholder of `connc new`; "
                             f"replace it with the real value"))
    if connection.scope.members and connection.scope.visibility != "custom":
        line, column = document.position(("scope", "members"), key=True)
        found.append(finding(relpath, line, column, "CONNC209",
                             f"`scope.members` has no effect when visibility is "
                             f"{connection.scope.visibility}; use `visibility: custom` or remove it"))
    if isinstance(spec, models.KubernetesSpec):
        if spec.insecure_skip_tls_verify:  # with certificateAuthorityData: a model error
            line, column = document.position(("spec", "insecureSkipTlsVerify"))
            found.append(finding(relpath, line, column, "CONNC108",
                                 "`spec.insecureSkipTlsVerify: true` lets anyone on the path "
                                 "impersonate the cluster; set certificateAuthorityData"))
        if spec.certificate_authority_data:
            from connc.credentials import certificates_problem

            problem = certificates_problem(spec.certificate_authority_data)
            if problem:
                line, column = document.position(("spec", "certificateAuthorityData"))
                found.append(finding(relpath, line, column, "CONNC109",
                                     f"`spec.certificateAuthorityData` {problem}"))
    return found


def _connection_summary(connection: models.Connection, document: Document, relpath: str,
                        metadata: SopsMetadata | None) -> ConnectionSummary:
    ciphertexts = frozenset(
        fingerprint for value in connection.credential.values()
        if isinstance(value, str) and (fingerprint := value_fingerprint(value)) is not None)
    spec = seal.canonical_spec(connection.spec.model_dump(by_alias=True))
    return ConnectionSummary(
        relpath=relpath,
        id=connection.metadata.id,
        id_pos=document.position(("metadata", "id")),
        owner=connection.metadata.owner,
        owner_pos=document.position(("metadata", "owner")),
        visibility=connection.scope.visibility,
        members=tuple((m, document.position(("scope", "members", i)))
                      for i, m in enumerate(connection.scope.members)),
        type=connection.spec.type,
        spec=tuple((key, seal.encode(value)) for key, value in sorted(spec.items())),
        sealed=seal.SEAL_FIELD in connection.credential,
        recipients=metadata.recipients if metadata else frozenset(),
        sops_pos=document.position(("sops",), key=True),
        wrapped_keys=metadata.wrapped_keys if metadata else frozenset(),
        ciphertexts=ciphertexts,
        credential_pos=document.position(("credential",), key=True),
    )


# ---------------------------------------------------------------------------- pipelines

_GITHUB_ONLY_OPTIONS = ("repositories", "permissions", "refresh")


def check_pipeline(relpath: str, context: CheckContext) -> FileResult:
    pipeline, document, found = check_single(Path(context.root), relpath, "Pipeline",
                                             models.Pipeline, listed=True)
    if isinstance(pipeline, models.Pipeline) and document is not None:
        found += _duplicate_uses(pipeline, document, relpath)
        found += check_permissions(pipeline, document, relpath)
        summary = _pipeline_summary(pipeline, document, relpath)
        return FileResult(relpath, tuple(found), summary)
    return FileResult(relpath, tuple(found))


def _duplicate_uses(pipeline: models.Pipeline, document: Document, relpath: str) -> list[Finding]:
    seen: set[str] = set()
    found = []
    for index, use in enumerate(pipeline.uses):
        if use.connection in seen:
            line, column = document.position(("uses", index, "connection"))
            found.append(finding(relpath, line, column, "CONNC208",
                                 f"connection `{use.connection}` is used twice; merge the entries"))
        seen.add(use.connection)
    return found


def _pipeline_summary(pipeline: models.Pipeline, document: Document,
                      relpath: str) -> PipelineSummary:
    from connc.sopsmeta import recipient_of_member_key

    uses = []
    for index, use in enumerate(pipeline.uses):
        raw = document.data["uses"][index]
        options = tuple((name, document.position(("uses", index, name), key=True))
                        for name in _GITHUB_ONLY_OPTIONS if name in raw)
        uses.append(UseSummary(
            use.connection, document.position(("uses", index, "connection")), options,
            repositories=tuple(use.repositories) if use.repositories is not None else None,
            permissions=tuple(sorted(use.permissions.items()))
            if use.permissions is not None else None,
            refresh=use.refresh))
    return PipelineSummary(
        relpath=relpath,
        id=pipeline.metadata.id,
        id_pos=document.position(("metadata", "id")),
        owner=pipeline.metadata.owner,
        owner_pos=document.position(("metadata", "owner")),
        teams=tuple((t, document.position(("metadata", "teams", i)))
                    for i, t in enumerate(pipeline.metadata.teams)),
        recipients=frozenset(recipient_of_member_key(r) for r in pipeline.metadata.recipients),
        uses=tuple(uses),
    )


def check_credential_names(connection: models.Connection, document: Document,
                           relpath: str) -> list[Finding]:
    """Credential field names are plaintext, so a missing or misspelt one is found keyless."""
    model = models.CREDENTIALS[connection.spec.type]
    allowed = model.field_names()
    present = set(connection.credential) - {seal.SEAL_FIELD}
    found = []
    for key in connection.credential:
        if key not in allowed and key != seal.SEAL_FIELD:
            line, column = document.position(("credential", key), key=True)
            found.append(finding(relpath, line, column, "CONNC101",
                                 f"unknown field `credential.{key}` for type "
                                 f"{connection.spec.type}{suggest(key, allowed)}"))
    alternatives = _applicable(connection, model.alternatives)
    if not any(required <= present for required in alternatives):
        needs = " or ".join(" + ".join(f"`{f}`" for f in sorted(s)) for s in alternatives)
        line, column = document.position(("credential",), key=True)
        found.append(finding(relpath, line, column, "CONNC103",
                             f"`credential` of a {connection.spec.type} connection needs {needs}"))
    return found


def _applicable(connection: models.Connection,
                alternatives: tuple[frozenset[str], ...]) -> tuple[frozenset[str], ...]:
    spec = connection.spec
    if isinstance(spec, models.GitSpec):
        ssh = str(spec.url).startswith("ssh://")
        return tuple(a for a in alternatives if ("sshPrivateKey" in a) == ssh)
    return alternatives
