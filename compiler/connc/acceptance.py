"""The one acceptance predicate: may connc use this repository file, and what is wrong with it.

Every command judges a file here, the same way: `validate` reports the findings, `render`,
`check` and `seal` refuse a file with an error, `diff` reads each side through `validate`.
A file one command accepts and another refuses would let review and release judge two
different files, so nothing here depends on who asks.

The steps: the one reader (`documents.read`: layout, size, UTF-8, YAML, kind, id against
file name), the plaintext-secret scan, the model, the encryption of a connection against
`.sops.yaml`, and the checks that need this one file only (credential field names, expiry,
placeholders, GitHub permission names, a connection used twice, team members). The model
step alone has two implementations, injected as a `ModelCheck`: validate's pydantic models
(a finding at every key) and render's checker of the generated JSON Schemas (no pydantic on
its start-up path). tests/core/test_predicate.py holds the two to the same answers; every
other step is this module's, on the data either one returns: YAML names, defaults filled in.

No pydantic here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from connc import documents, encryption, repository
from connc.documents import Document
from connc.findings import Finding, Severity, dotted, finding, suggest
from connc.repository import MEMBERS_FILE
from connc.schema import check as schema_check
from connc.schema import policy
from connc.sops.metadata import SopsMetadata, read_metadata
from connc.sops.rules import CreationRule

SEAL_FIELD = "connc-seal"  # `seal.SEAL_FIELD`; here so that the predicate imports no seal


@dataclasses.dataclass(frozen=True)
class Context:
    """What judging a file needs besides the file. Picklable: validate's workers get it."""

    root: str
    rules: tuple[CreationRule, ...] | None  # None: .sops.yaml unusable (reported on its own)
    today: dt.date
    warning_days: int
    files: repository.Files = repository.DISK  # where the bytes come from (`repository.Files`)


@dataclasses.dataclass
class Judged:
    relpath: str
    kind: str
    document: Document | None  # None when the file could not be read as its kind
    data: dict[str, Any] | None  # as the model reads it; None when the model refuses it
    findings: list[Finding]
    sops: SopsMetadata | None = None  # a connection's `sops:` block, read once

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]


# (document, relpath, kind) -> (the data as the model reads it, or None; the model's findings)
ModelCheck = Callable[[Document, str, str], tuple[dict[str, Any] | None, list[Finding]]]

_SCHEMAS = {"Connection": "connection", "Pipeline": "pipeline", "Members": "members",
            "Config": "config"}


def schema_model(document: Document, relpath: str,
                 kind: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The model step without pydantic: the generated JSON Schema (render, check, seal).

    It stops at the first problem, which is all a refusal needs; validate's models report
    every one.
    """
    try:
        checked: dict[str, Any] = schema_check.check(document.data,
                                                     schema_check.load(_SCHEMAS[kind]))
    except schema_check.Problem as problem:
        line, column = document.position(problem.path)
        code = "CONNC101" if problem.message == "is not a known field" else \
            "CONNC103" if problem.message == "is required" else \
            "CONNC107" if problem.kind in policy.URL_VIOLATIONS else "CONNC102"
        return None, [finding(relpath, line, column, code,
                              f"`{dotted(problem.path)}` {problem.message}")]
    return checked, []


def judge(root: Path, relpath: str, kind: str, context: Context | None, model: ModelCheck, *,
          listed: bool = False, files: repository.Files = repository.DISK) -> Judged:
    """Every check of one file that needs no other file. `context` is needed for connections
    only (rules, today); `listed`: the path came from `repository.list_files`, which already
    refused symlinks and non-files; `files`: where the bytes come from (`context.files` when
    there is a context)."""
    files = context.files if context is not None else files
    document, found = documents.read(root, relpath, kind, listed=listed, files=files)
    if document is None:
        return Judged(relpath, kind, None, None, found)
    # In a connection, `credential` is encrypted and `sops` is sops' own metadata.
    skip = frozenset({"credential", "sops"}) if kind == "Connection" else frozenset()
    found += encryption.plaintext_findings(document, relpath, skip)
    data, model_findings = model(document, relpath, kind)
    found = _drop_shadowed(found + model_findings)
    judged = Judged(relpath, kind, document, data, found)
    if kind == "Connection":
        assert context is not None, "a connection is judged against .sops.yaml and a date"
        _connection(judged, document, context)
    elif kind == "Pipeline" and data is not None:
        found += duplicate_uses(data, document, relpath)
        found += github_permissions(data, document, relpath)
    elif kind == "Members" and data is not None:
        found += team_members(data, document) + shared_logins(data, document)
    return judged


def _drop_shadowed(found: list[Finding]) -> list[Finding]:
    """A plaintext secret under an unknown key is one problem, reported as the secret."""
    secret_at = {(f.line, f.column) for f in found if f.code == "CONNC403"}
    return [f for f in found if not (f.code == "CONNC101" and (f.line, f.column) in secret_at)]


# ---------------------------------------------------------------------------- connections


def _connection(judged: Judged, document: Document, context: Context) -> None:
    sops_block = document.data.get("sops")
    judged.sops = read_metadata(sops_block) if sops_block is not None else None
    judged.findings += encryption.check(document, judged.relpath, context.rules, judged.sops)
    if judged.data is not None:
        judged.findings += connection_semantics(judged.data, document, judged.relpath, context)


def connection_semantics(data: Mapping[str, Any], document: Document, relpath: str,
                         context: Context) -> list[Finding]:
    """What a valid connection's model cannot say: credential names, expiry, placeholders,
    members that do nothing, TLS and CA data."""
    found = credential_names(data, document, relpath)
    metadata, spec, scope = data["metadata"], data["spec"], data["scope"]
    expired = documents.expiry_finding(metadata.get("expiresAt"), metadata["id"], document,
                                       relpath, context.today, context.warning_days)
    if expired:
        found.append(expired)
    for field in policy.placeholders_left(spec):
        line, column = document.position(("spec", *field.split(".")))
        found.append(finding(relpath, line, column, "CONNC111",
                             f"`spec.{field}` still holds the placeholder of `connc new`; "
                             f"replace it with the real value"))
    if scope["members"] and scope["visibility"] != "custom":
        line, column = document.position(("scope", "members"), key=True)
        found.append(finding(relpath, line, column, "CONNC209",
                             f"`scope.members` has no effect when visibility is "
                             f"{scope['visibility']}; use `visibility: custom` or remove it"))
    scopes = spec.get("npmScopes") or []
    for index, npm_scope in enumerate(scopes):
        if npm_scope in scopes[:index]:  # the npm writer would refuse its own connection
            line, column = document.position(("spec", "npmScopes", index))
            found.append(finding(relpath, line, column, "CONNC102",
                                 f"`spec.npmScopes[{index}]` repeats `{npm_scope}`; list each "
                                 f"scope once"))
    if spec["type"] == "kubernetes":
        if spec.get("insecureSkipTlsVerify"):  # with certificateAuthorityData: a model error
            line, column = document.position(("spec", "insecureSkipTlsVerify"))
            found.append(finding(relpath, line, column, "CONNC108",
                                 "`spec.insecureSkipTlsVerify: true` lets anyone on the path "
                                 "impersonate the cluster; set certificateAuthorityData"))
        if spec.get("certificateAuthorityData"):
            from connc.credentials import certificates_problem

            problem = certificates_problem(spec["certificateAuthorityData"])
            if problem:
                line, column = document.position(("spec", "certificateAuthorityData"))
                found.append(finding(relpath, line, column, "CONNC109",
                                     f"`spec.certificateAuthorityData` {problem}"))
    return found


def credential_fields(connection_type: str) -> tuple[frozenset[str],
                                                     tuple[frozenset[str], ...]]:
    """(every credential field name, the sets of them that make a usable credential) of a
    type: the models' table (`models.CREDENTIALS`), as the generated schema carries it."""
    entry = schema_check.load("connection")["x-connc-credentials"][connection_type]
    return (frozenset(entry["fields"]),
            tuple(frozenset(alternative) for alternative in entry["alternatives"]))


def credential_names(data: Mapping[str, Any], document: Document,
                     relpath: str) -> list[Finding]:
    """Credential field names are plaintext, so a missing or misspelt one is found keyless."""
    connection_type = data["spec"]["type"]
    allowed, _alternatives = credential_fields(connection_type)
    secretless = policy.secretless(data["spec"])
    if secretless:
        allowed = frozenset()  # a kubernetes connection with `auth: oidc` stores nothing either
    credential = data["credential"]
    present = set(credential) - {SEAL_FIELD}
    found = []
    for key in credential:
        if key not in allowed and key != SEAL_FIELD:
            line, column = document.position(("credential", key), key=True)
            found.append(finding(relpath, line, column, "CONNC101", (
                f"`credential.{key}`: a secretless {connection_type} connection stores no "
                f"secret (render exchanges the CI job's identity); `credential` holds only "
                f"its seal, so remove it with `connc secret unset`") if secretless else (
                f"unknown field `credential.{key}` for type "
                f"{connection_type}{suggest(key, allowed)}")))
    applicable = applicable_alternatives(data["spec"])
    if not any(required <= present for required in applicable):
        needs = " or ".join(" + ".join(f"`{f}`" for f in sorted(s)) for s in applicable)
        line, column = document.position(("credential",), key=True)
        found.append(finding(relpath, line, column, "CONNC103",
                             f"`credential` of a {connection_type} connection needs {needs}"))
    return found


def applicable_alternatives(spec: Mapping[str, Any]) -> tuple[frozenset[str], ...]:
    """The credential alternatives a spec can use: a git connection's url decides between
    username + password (https) and an ssh key (ssh)."""
    _fields, alternatives = credential_fields(spec["type"])
    if policy.secretless(spec):
        return (frozenset(),)  # nothing stored: the seal alone
    if spec["type"] == "git":
        ssh = str(spec["url"]).startswith("ssh://")
        return tuple(a for a in alternatives if ("sshPrivateKey" in a) == ssh)
    return alternatives


# ---------------------------------------------------------------------------- pipelines


def duplicate_uses(data: Mapping[str, Any], document: Document, relpath: str) -> list[Finding]:
    """CONNC208: a connection listed twice (render would otherwise decrypt it twice, and the
    second entry's narrowing would silently win)."""
    seen: set[str] = set()
    found = []
    for index, use in enumerate(data["uses"]):
        if use["connection"] in seen:
            line, column = document.position(("uses", index, "connection"))
            found.append(finding(relpath, line, column, "CONNC208",
                                 f"connection `{use['connection']}` is used twice; merge the "
                                 f"entries"))
        seen.add(use["connection"])
    return found


def github_permissions(data: Mapping[str, Any], document: Document,
                       relpath: str) -> list[Finding]:
    """CONNC210 at an unknown permission's name, CONNC211 at a level GitHub does not offer."""
    found = []
    for index, use in enumerate(data["uses"]):
        for name, level in (use.get("permissions") or {}).items():
            problem = policy.github_permission_problem(name, level)
            if problem is None:
                continue
            code, message = problem
            path = ("uses", index, "permissions", name)
            line, column = document.position(path, key=code == "CONNC210")
            found.append(finding(relpath, line, column, code,
                                 f"`uses[{index}].permissions`: {message}"))
    return found


# ---------------------------------------------------------------------------- members


def team_members(data: Mapping[str, Any], document: Document) -> list[Finding]:
    """CONNC206: a team member who is not a user."""
    users = data["users"]
    found = []
    for team, spec in data["teams"].items():
        for index, user in enumerate(spec["members"]):
            if user not in users:
                line, column = document.position(("teams", team, "members", index))
                found.append(finding(MEMBERS_FILE, line, column, "CONNC206",
                                     f"team `{team}` lists `{user}`, who is not under `users`"
                                     f"{suggest(user, users)}"))
    return found


def shared_logins(data: Mapping[str, Any], document: Document) -> list[Finding]:
    """CONNC214: a review or approval by an account (its login, or where recorded its id)
    counts as the consent of its user (`connc approvals`), so an account shared by two users
    would let one person consent for both."""
    first: dict[tuple[str, str], str] = {}
    found = []
    for name, user in data["users"].items():
        # GitHub logins and GitLab usernames are case-insensitive; ids are numbers.
        for field, forge in (("github", "GitHub"), ("githubId", "GitHub"),
                             ("gitlab", "GitLab"), ("gitlabId", "GitLab")):
            value = user.get(field)
            if not value:
                continue
            key = str(value).lower()
            if (field, key) not in first:
                first[field, key] = name
                continue
            shown = f"account id {value}" if field.endswith("Id") else \
                f"account `{value}` (names are case-insensitive)"
            line, column = document.position(("users", name, field))
            found.append(finding(MEMBERS_FILE, line, column, "CONNC214",
                                 f"user `{name}` has the {forge} {shown} of user "
                                 f"`{first[field, key]}`; its approvals would count as the "
                                 f"consent of both"))
    return found
