"""Checks that need one file only. They run in worker processes, so everything here is
picklable: each file yields its findings plus a small summary for the cross-file checks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connc import encryption, models, secretscan
from connc.findings import Finding, finding
from connc.modelerrors import dotted, findings_from
from connc.sopsmeta import CreationRule
from connc.yamldoc import MAX_FILE_BYTES, Document, YamlProblem, decode, parse

Pos = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class CheckContext:
    root: str
    rules: tuple[CreationRule, ...] | None  # None: .sops.yaml unusable (reported once elsewhere)
    today: dt.date
    warning_days: int


@dataclasses.dataclass(frozen=True)
class ConnectionSummary:
    relpath: str
    id: str
    id_pos: Pos
    owner: str
    owner_pos: Pos
    visibility: str
    members: tuple[tuple[str, Pos], ...]
    type: str
    recipients: frozenset[str]
    sops_pos: Pos
    wrapped_keys: frozenset[str]
    ciphertexts: frozenset[str]
    credential_pos: Pos


@dataclasses.dataclass(frozen=True)
class UseSummary:
    connection: str
    pos: Pos
    github_options: tuple[tuple[str, Pos], ...]  # options that only github-app accepts


@dataclasses.dataclass(frozen=True)
class PipelineSummary:
    relpath: str
    id: str
    id_pos: Pos
    owner: str
    owner_pos: Pos
    teams: tuple[tuple[str, Pos], ...]
    recipients: frozenset[str]
    uses: tuple[UseSummary, ...]


@dataclasses.dataclass(frozen=True)
class FileResult:
    relpath: str
    findings: tuple[Finding, ...]
    summary: ConnectionSummary | PipelineSummary | None = None


def read_document(root: Path, relpath: str) -> tuple[Document | None, list[Finding]]:
    """Read and parse one file; problems become findings, never exceptions."""
    path = root / relpath
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [finding(relpath, 1, 1, "CONNC006",
                                  f"{size} bytes; connc reads files up to {MAX_FILE_BYTES} bytes")]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [finding(relpath, 1, 1, "CONNC003", f"cannot read the file: {exc.strerror}")]
    found: list[Finding] = []
    try:
        text, had_bom = decode(raw)
        if had_bom:
            found.append(finding(relpath, 1, 1, "CONNC013",
                                 "the file starts with a UTF-8 byte-order mark; save it without one"))
        document = parse(text)
    except YamlProblem as problem:
        return None, found + [finding(relpath, problem.line, problem.column, problem.code,
                                      problem.message)]
    for key, line, column in document.duplicate_keys:
        found.append(finding(relpath, line, column, "CONNC002",
                             f"key `{key}` appears twice in one mapping; the first would be lost"))
    return document, found


def check_kind(document: Document, relpath: str, expected: str) -> Finding | None:
    data = document.data
    if not isinstance(data, dict):
        return finding(relpath, *document.position(()), "CONNC102",
                       f"the document must be a mapping with `kind: {expected}`")
    if data.get("apiVersion") != models.API_VERSION:
        line, column = document.position(("apiVersion",))
        return finding(relpath, line, column, "CONNC104",
                       f"`apiVersion` must be `{models.API_VERSION}`")
    if data.get("kind") != expected:
        line, column = document.position(("kind",))
        return finding(relpath, line, column, "CONNC104",
                       f"`kind` must be `{expected}` for a file in this place")
    return None


def validate_model(document: Document, relpath: str, model: type[BaseModel],
                   data: Any = None) -> tuple[BaseModel | None, list[Finding]]:
    try:
        return model.model_validate(document.data if data is None else data), []
    except ValidationError as error:
        return None, findings_from(error, model, document, relpath)


def _secret_findings(document: Document, relpath: str, skip: frozenset[str]) -> list[Finding]:
    found = []
    for path, label in secretscan.scan(document.data, skip):
        line, column = document.position(path)
        found.append(finding(relpath, line, column, "CONNC403",
                             f"`{dotted(path)}` holds {label} in plaintext; secrets belong under "
                             f"`credential` in a connection file, encrypted with sops"))
    return found


def stem(relpath: str, suffix: str) -> str:
    name = relpath.rsplit("/", 1)[-1]
    return name[: -len(suffix)] if name.endswith(suffix) else name


def _id_matches_stem(document: Document, relpath: str, suffix: str) -> Finding | None:
    metadata = document.data.get("metadata")
    doc_id = metadata.get("id") if isinstance(metadata, dict) else None
    expected = stem(relpath, suffix)
    if isinstance(doc_id, str) and doc_id != expected:
        line, column = document.position(("metadata", "id"))
        # Quote the id only when it is one: an invalid id is reported by the model check, and
        # any text could be pasted there (a token, by mistake).
        shown = f"`{doc_id}`" if re.fullmatch(models.ID_PATTERN, doc_id) else "not a valid id"
        return finding(relpath, line, column, "CONNC105",
                       f"`metadata.id` is {shown} but the file is named `{expected}{suffix}`; "
                       f"rename one so they match")
    return None


def _drop_shadowed(found: list[Finding]) -> list[Finding]:
    """A plaintext secret under an unknown key is one problem, reported as the secret."""
    secret_at = {(f.line, f.column) for f in found if f.code == "CONNC403"}
    return [f for f in found if not (f.code == "CONNC101" and (f.line, f.column) in secret_at)]


# ---------------------------------------------------------------------------- connections


def check_connection(relpath: str, context: CheckContext) -> FileResult:
    return inspect_connection(relpath, context)[0]


def inspect_connection(relpath: str,
                       context: CheckContext) -> tuple[FileResult, models.Connection | None]:
    """Every single-file check of a connection, and its model when it is valid."""
    document, found = read_document(Path(context.root), relpath)
    if document is None:
        return FileResult(relpath, tuple(found)), None
    wrong_kind = check_kind(document, relpath, "Connection")
    if wrong_kind:
        return FileResult(relpath, tuple(found + [wrong_kind])), None
    data = document.data
    found += _secret_findings(document, relpath, frozenset({"credential", "sops"}))
    mismatch = _id_matches_stem(document, relpath, ".sops.yaml")
    if mismatch:
        found.append(mismatch)
    connection, model_findings = validate_model(document, relpath, models.Connection)
    found += model_findings
    found += encryption.check(document, relpath, context.rules)
    if isinstance(connection, models.Connection):
        found += _connection_semantics(connection, document, relpath, context)
        summary = _connection_summary(connection, document, relpath)
        return FileResult(relpath, tuple(_drop_shadowed(found)), summary), connection
    return FileResult(relpath, tuple(_drop_shadowed(found))), None


def _connection_semantics(connection: models.Connection, document: Document, relpath: str,
                          context: CheckContext) -> list[Finding]:
    found = encryption.check_credential_names(connection, document, relpath)
    found += _expiry(connection, document, relpath, context)
    spec = connection.spec
    if connection.scope.members and connection.scope.visibility != "custom":
        line, column = document.position(("scope", "members"), key=True)
        found.append(finding(relpath, line, column, "CONNC209",
                             f"`scope.members` has no effect when visibility is "
                             f"{connection.scope.visibility}; use `visibility: custom` or remove it"))
    if isinstance(spec, models.KubernetesSpec):
        if spec.insecure_skip_tls_verify:
            line, column = document.position(("spec", "insecureSkipTlsVerify"))
            if spec.certificate_authority_data:
                found.append(finding(relpath, line, column, "CONNC102",
                                     "`spec.insecureSkipTlsVerify` cannot be combined with "
                                     "`certificateAuthorityData` (kubectl refuses both)"))
            else:
                found.append(finding(relpath, line, column, "CONNC108",
                                     "`spec.insecureSkipTlsVerify: true` lets anyone on the path "
                                     "impersonate the cluster; set certificateAuthorityData"))
        if spec.certificate_authority_data:
            from connc.pem import certificates_problem

            problem = certificates_problem(spec.certificate_authority_data)
            if problem:
                line, column = document.position(("spec", "certificateAuthorityData"))
                found.append(finding(relpath, line, column, "CONNC109",
                                     f"`spec.certificateAuthorityData` {problem}"))
    return found


def _expiry(connection: models.Connection, document: Document, relpath: str,
            context: CheckContext) -> list[Finding]:
    expires = connection.metadata.expires_at
    if expires is None:
        return []
    day = expires.date() if isinstance(expires, dt.datetime) else expires
    line, column = document.position(("metadata", "expiresAt"))
    if day <= context.today:
        return [finding(relpath, line, column, "CONNC501",
                        f"the credential expired on {day.isoformat()}; rotate it with "
                        f"`connc secret set {connection.metadata.id} FIELD` and update expiresAt")]
    days_left = (day - context.today).days
    if days_left <= context.warning_days:
        return [finding(relpath, line, column, "CONNC502",
                        f"the credential expires on {day.isoformat()}, in {days_left} days; "
                        f"rotate it before then")]
    return []


def _connection_summary(connection: models.Connection, document: Document,
                        relpath: str) -> ConnectionSummary:
    from connc.sopsmeta import ENC_RE, read_metadata

    metadata = read_metadata(connection.sops) if connection.sops is not None else None
    ciphertexts = frozenset(
        match.group("data") + match.group("iv")
        for value in connection.credential.values()
        if isinstance(value, str) and (match := ENC_RE.match(value)) and match.group("data")
    )
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
        recipients=metadata.recipients if metadata else frozenset(),
        sops_pos=document.position(("sops",), key=True),
        wrapped_keys=metadata.wrapped_keys if metadata else frozenset(),
        ciphertexts=ciphertexts,
        credential_pos=document.position(("credential",), key=True),
    )


# ---------------------------------------------------------------------------- pipelines

_GITHUB_ONLY_OPTIONS = ("repositories", "permissions", "refresh")


def check_pipeline(relpath: str, context: CheckContext) -> FileResult:
    return inspect_pipeline(relpath, context)[0]


def inspect_pipeline(relpath: str,
                     context: CheckContext) -> tuple[FileResult, models.Pipeline | None]:
    document, found = read_document(Path(context.root), relpath)
    if document is None:
        return FileResult(relpath, tuple(found)), None
    wrong_kind = check_kind(document, relpath, "Pipeline")
    if wrong_kind:
        return FileResult(relpath, tuple(found + [wrong_kind])), None
    found += _secret_findings(document, relpath, frozenset())
    mismatch = _id_matches_stem(document, relpath, ".yaml")
    if mismatch:
        found.append(mismatch)
    pipeline, model_findings = validate_model(document, relpath, models.Pipeline)
    found += model_findings
    if isinstance(pipeline, models.Pipeline):
        found += _duplicate_uses(pipeline, document, relpath)
        summary = _pipeline_summary(pipeline, document, relpath)
        return FileResult(relpath, tuple(_drop_shadowed(found)), summary), pipeline
    return FileResult(relpath, tuple(_drop_shadowed(found))), None


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
        uses.append(UseSummary(use.connection, document.position(("uses", index, "connection")),
                               options))
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


# ---------------------------------------------------------------------------- members, config


def check_single(root: Path, relpath: str, kind: str,
                 model: type[BaseModel]) -> tuple[BaseModel | None, Document | None, list[Finding]]:
    """members.yaml or connc.yaml: read in the main process, before the workers start."""
    document, found = read_document(root, relpath)
    if document is None:
        return None, None, found
    wrong_kind = check_kind(document, relpath, kind)
    if wrong_kind:
        return None, document, found + [wrong_kind]
    found += _secret_findings(document, relpath, frozenset())
    parsed, model_findings = validate_model(document, relpath, model)
    return parsed, document, _drop_shadowed(found + model_findings)
