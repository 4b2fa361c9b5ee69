"""Validate's view of one file: the one acceptance predicate (`acceptance.judge`) with the
pydantic models as its model step, and the small summary the cross-file checks need.

They run in worker processes, so everything here is picklable: each file yields its findings
plus a summary.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from connc import acceptance, repository, seal
from connc.acceptance import Context, Judged
from connc.documents import Document
from connc.findings import Finding
from connc.repository import ConnectionSummary, PipelineSummary, UseSummary
from connc.schema import models, policy
from connc.sops.metadata import SopsMetadata, value_fingerprint
from connc.sops.recipients import recipient_of_member_key
from connc.validate.modelerrors import findings_from

CheckContext = Context  # the name validate's callers know it by


@dataclasses.dataclass(frozen=True)
class FileResult:
    relpath: str
    findings: tuple[Finding, ...]
    summary: ConnectionSummary | PipelineSummary | None = None


def prepare_checks() -> None:
    """Build now what judging a file builds on first use — the models' validators (built on
    first use for render's sake) and the certificate reader — in validate's parent before
    the fork: the workers inherit them instead of each building its own, and a second
    validate in the process (`connc diff`'s HEAD) finds them built."""
    import cryptography.x509  # noqa: F401  # what `credentials.certificates_problem` imports

    for model in models.DOCUMENTS.values():
        model.model_rebuild(force=True)


def pydantic_model(document: Document, relpath: str,
                   kind: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The model step of the predicate for validate: every error at its key's line:column."""
    model = models.DOCUMENTS[kind]
    try:
        parsed = model.model_validate(document.data)
    except ValidationError as error:
        return None, findings_from(error, model, document, relpath)
    return parsed.model_dump(by_alias=True), []


def judge(root: Path, relpath: str, kind: str, context: Context | None = None, *,
          listed: bool = False, files: repository.Files = repository.DISK) -> Judged:
    return acceptance.judge(root, relpath, kind, context, pydantic_model, listed=listed,
                            files=files)


M = TypeVar("M", bound=models.Model)


def read_model(root: Path, relpath: str, model: type[M],
               files: repository.Files = repository.DISK) -> tuple[M | None, Judged]:
    """A top-level file (members.yaml, connc.yaml) as its model, whenever the model accepts
    it (the judgement says whether anything else refuses it)."""
    judged = judge(root, relpath, model.__name__, files=files)
    return (model.model_validate(judged.data) if judged.data is not None else None), judged


def check_connection(relpath: str, context: Context) -> FileResult:
    """Every single-file check of a connection, and its summary when it is valid."""
    judged = judge(Path(context.root), relpath, "Connection", context, listed=True)
    summary = None
    if judged.data is not None and judged.document is not None:
        summary = _connection_summary(judged.data, judged.document, relpath, judged.sops)
    return FileResult(relpath, tuple(judged.findings), summary)


def _connection_summary(data: dict[str, Any], document: Document, relpath: str,
                        metadata: SopsMetadata | None) -> ConnectionSummary:
    credential, scope = data["credential"], data["scope"]
    ciphertexts = frozenset(
        fingerprint for value in credential.values()
        if isinstance(value, str) and (fingerprint := value_fingerprint(value)) is not None)
    spec = seal.canonical_spec(data["spec"])
    return ConnectionSummary(
        relpath=relpath,
        id=data["metadata"]["id"],
        id_pos=document.position(("metadata", "id")),
        owner=data["metadata"]["owner"],
        owner_pos=document.position(("metadata", "owner")),
        visibility=scope["visibility"],
        members=tuple((m, document.position(("scope", "members", i)))
                      for i, m in enumerate(scope["members"])),
        type=data["spec"]["type"],
        spec=tuple((key, seal.encode(value)) for key, value in sorted(spec.items())),
        sealed=seal.SEAL_FIELD in credential,
        recipients=metadata.recipients if metadata else frozenset(),
        sops_pos=document.position(("sops",), key=True),
        wrapped_keys=metadata.wrapped_keys if metadata else frozenset(),
        ciphertexts=ciphertexts,
        credential_pos=document.position(("credential",), key=True),
        lastmodified=metadata.lastmodified if metadata else None,
        expires=_day(data["metadata"].get("expiresAt")),
        secretless=policy.secretless(data["spec"]),
    )


def _day(expires: object) -> str | None:
    return policy.parse_date(expires).isoformat() if isinstance(expires, str) else None


# ---------------------------------------------------------------------------- pipelines

_GITHUB_ONLY_OPTIONS = ("repositories", "permissions", "refresh")


def check_pipeline(relpath: str, context: Context) -> FileResult:
    judged = judge(Path(context.root), relpath, "Pipeline", context, listed=True)
    summary = None
    if judged.data is not None and judged.document is not None:
        summary = _pipeline_summary(judged.data, judged.document, relpath)
    return FileResult(relpath, tuple(judged.findings), summary)


def _pipeline_summary(data: dict[str, Any], document: Document,
                      relpath: str) -> PipelineSummary:
    uses = []
    for index, use in enumerate(data["uses"]):
        raw = document.data["uses"][index]
        options = tuple((name, document.position(("uses", index, name), key=True))
                        for name in _GITHUB_ONLY_OPTIONS if name in raw)
        repositories, permissions = use["repositories"], use["permissions"]
        uses.append(UseSummary(
            use["connection"], document.position(("uses", index, "connection")), options,
            repositories=tuple(repositories) if repositories is not None else None,
            permissions=tuple(sorted(permissions.items())) if permissions is not None else None,
            refresh=use["refresh"]))
    metadata = data["metadata"]
    return PipelineSummary(
        relpath=relpath,
        id=metadata["id"],
        id_pos=document.position(("metadata", "id")),
        owner=metadata["owner"],
        owner_pos=document.position(("metadata", "owner")),
        teams=tuple((t, document.position(("metadata", "teams", i)))
                    for i, t in enumerate(metadata["teams"])),
        recipients=frozenset(recipient_of_member_key(r) for r in metadata["recipients"]),
        uses=tuple(uses),
    )
