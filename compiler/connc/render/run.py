"""Render one pipeline's bundle: check, decrypt, mint, write, in that order.

Everything that can refuse without a key (the pipeline's file, its team claims, each used
connection's file, scope) runs before the first decryption, and only the pipeline's own
connections are read. Render runs on every pipeline start, so it checks files against the
schemas generated from the models (`schemacheck`) instead of loading pydantic, and the
decryptions (sops processes) run while the writers are being imported.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connc import repository, schemacheck, sops
from connc.credentials import credential_problems
from connc.documents import check_kind, expiry_finding, id_matches_stem, read_checked, stem
from connc.encryption import check as check_encryption
from connc.encryption import load_rules
from connc.errors import RenderError, SopsError
from connc.findings import Finding, Severity, dotted
from connc.render.bundle import check_target
from connc.render.context import Output, Resolved
from connc.scope import ConnectionScope, PipelineScope, decide
from connc.secrets import Secret
from connc.yamldoc import Document


def default_out(pipeline_id: str) -> Path:
    """$RUNNER_TEMP/connc/ID, else a fresh name in the temp dir.

    The temp dir name is not created here (no mkdtemp): the bundle's rename creates it, so a
    render that fails leaves no empty directory behind. The random part makes it unguessable.
    """
    runner_temp = os.environ.get("RUNNER_TEMP")
    if runner_temp:
        return Path(runner_temp) / "connc" / pipeline_id
    return Path(tempfile.gettempdir()) / f"connc-{pipeline_id}-{os.urandom(6).hex()}"


def render(root: Path, pipeline_id: str, out: Path | None) -> tuple[Output, dict[str, object]]:
    pipeline_file = repository.pipeline_path(pipeline_id)
    if not (root / pipeline_file).is_file():
        raise RenderError(f"pipeline `{pipeline_id}` does not exist ({pipeline_file})")
    out = _target(root, out or default_out(pipeline_id))
    pipeline = read_input(root, pipeline_file, "Pipeline", "pipeline", ".yaml")
    _check_team_claims(root, pipeline)
    connections = _connections(root, pipeline)
    sops.binary()  # a missing binary is an environment error, before any process starts
    # One sops process per connection, all at once; while they decrypt, this process
    # imports the writers and compiles the templates.
    pending = [sops.Decryption(root, relpath) for _id, relpath, _data in connections]
    try:
        from connc.render import compose, textformat

        textformat.warm_up()
        resolved = _collect(pipeline, connections, pending)
    finally:
        for decryption in pending:
            decryption.cancel()  # reaps them; kills any still running after a failure
    return compose.write_bundle(out, pipeline_id, resolved)


def _target(root: Path, out: Path) -> Path:
    """OUT as an absolute path, refused before anything is decrypted or minted if a bundle
    may not go there (commit checks it again, just before the rename)."""
    out = out.absolute()
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in str(out)):  # $GITHUB_ENV lines
        raise RenderError("the --out path contains a control character; refused")
    # resolve(): a symlink (or `..`) must not take the bundle into the repository.
    if out.resolve().is_relative_to(root.resolve()):
        raise RenderError(f"{out} is inside the repository, where `git add -A` would commit "
                          f"credentials; choose an --out outside it")
    check_target(out)
    return out


def _refuse(found: list[Finding], what: str) -> None:
    errors = [f for f in found if f.severity is Severity.ERROR]
    if errors:
        details = "; ".join(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}"
                            for f in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise RenderError(f"{what} is not valid (run `connc validate`): {details}{more}")


def read_input(root: Path, relpath: str, kind: str, schema: str, suffix: str | None = None,
          extra: Any = None, only: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """One file, checked against its generated schema; refused with validate's wording.

    `only` narrows the document to the part this render uses before the schema check.
    """
    document, found = read_checked(root, relpath)
    if document is None:
        _refuse(found, relpath)
        raise RenderError(f"{relpath} cannot be read")
    wrong_kind = check_kind(document, relpath, kind)
    if wrong_kind:
        found.append(wrong_kind)
    if suffix:
        mismatch = id_matches_stem(document, relpath, suffix)
        if mismatch:
            found.append(mismatch)
    if extra is not None:
        found += extra(document, relpath)
    _refuse(found, relpath)
    try:
        data = only(document.data) if only is not None else document.data
        checked: dict[str, Any] = schemacheck.check(data, schemacheck.load(schema))
    except schemacheck.Problem as problem:
        line, column = document.position(problem.path)
        raise RenderError(f"{relpath}:{line}:{column}: `{dotted(problem.path)}` "
                          f"{problem.message} (run `connc validate`)") from None
    return checked


def _check_team_claims(root: Path, pipeline: dict[str, Any]) -> None:
    """A pipeline reaches team-scoped connections only through teams its owner is in."""
    if not repository.present(root / repository.MEMBERS_FILE):
        raise RenderError(f"{repository.MEMBERS_FILE} is missing; it is needed to check the "
                          f"pipeline's owner and teams")
    metadata = pipeline["metadata"]
    owner = metadata["owner"]
    members = read_input(root, repository.MEMBERS_FILE, "Members", "members",
                    only=lambda data: _principals_of(data, owner, metadata["teams"]))
    if owner not in members["users"]:
        raise RenderError(f"pipeline `{metadata['id']}`: owner `{owner}` is not a user in "
                          f"{repository.MEMBERS_FILE}")
    for team in metadata["teams"]:
        if team not in members["teams"] or owner not in members["teams"][team]["members"]:
            raise RenderError(f"pipeline `{metadata['id']}` claims team `{team}`, which its "
                              f"owner `{owner}` is not a member of")


def _principals_of(data: Any, owner: str, teams: list[str]) -> Any:
    """members.yaml narrowed to the owner and the claimed teams: a large organisation's file
    is not schema-checked whole on every pipeline start (validate checks all of it)."""
    if not isinstance(data, dict):
        return data
    narrowed = dict(data)
    for key, wanted in (("users", [owner]), ("teams", teams)):
        entries = data.get(key)
        if isinstance(entries, dict):
            narrowed[key] = {name: entries[name] for name in wanted if name in entries}
    return narrowed


def _connections(root: Path, pipeline: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, relpath, checked document) of each connection used; scope decided keyless."""
    file_checks = _connection_file_checks(root)
    metadata = pipeline["metadata"]
    scope = PipelineScope(metadata["id"], metadata["owner"], tuple(metadata["teams"]))
    result = []
    for use in pipeline["uses"]:
        connection_id = use["connection"]
        relpath = repository.connection_path(connection_id)
        if not repository.present(root / relpath):
            raise RenderError(f"pipeline `{metadata['id']}` uses connection `{connection_id}`, "
                              f"which does not exist ({relpath})")
        data = read_input(root, relpath, "Connection", "connection", ".sops.yaml", file_checks)
        denial = decide(scope, ConnectionScope(
            connection_id, data["metadata"]["owner"], data["scope"]["visibility"],
            tuple(data["scope"]["members"])))
        if denial:
            raise RenderError(f"{denial.code} {denial.message}")
        result.append((connection_id, relpath, data))
    return result


def _connection_file_checks(root: Path) -> Callable[[Document, str], list[Finding]]:
    """Encryption against .sops.yaml and expiry, as validate checks them."""
    rules, _found = load_rules(root)  # a broken .sops.yaml is validate's to report
    rule_set = tuple(rules) if rules is not None else None
    today = dt.datetime.now(dt.UTC).date()
    warning_days = _warning_days(root)

    def checks(document: Document, relpath: str) -> list[Finding]:
        found = check_encryption(document, relpath, rule_set)
        meta = document.data.get("metadata") if isinstance(document.data, dict) else None
        if isinstance(meta, dict):
            expired = expiry_finding(meta.get("expiresAt"), stem(relpath, ".sops.yaml"),
                                     document, relpath, today, warning_days)
            if expired:
                found.append(expired)
        return found

    return checks


def _warning_days(root: Path) -> int:
    if not repository.present(root / repository.CONFIG_FILE):
        return 30
    config = read_input(root, repository.CONFIG_FILE, "Config", "config")
    return int(config["expiryWarningDays"])


def _collect(pipeline: dict[str, Any], connections: list[tuple[str, str, dict[str, Any]]],
             pending: list[sops.Decryption]) -> list[Resolved]:
    uses = {use["connection"]: use for use in pipeline["uses"]}
    resolved, errors = [], []
    for (connection_id, relpath, data), decryption in zip(connections, pending, strict=True):
        what = f"connection `{connection_id}` ({relpath})"
        try:
            document = decryption.result()
        except SopsError as error:
            errors.append(f"{what}: cannot decrypt: {error.message}")
            continue
        credential = document.get("credential")
        if not isinstance(credential, dict):
            errors.append(f"{what}: the decrypted file has no credential")
            continue
        problems = credential_problems(data["spec"]["type"], credential)
        if problems:
            errors.append(f"{what}: " + "; ".join(message for _f, _c, message in problems))
            continue
        values = {k: v for k, v in credential.items() if isinstance(v, Secret)}
        resolved.append(Resolved(connection_id, data["spec"], uses[connection_id], values))
    if errors:
        raise RenderError("; ".join(errors))
    return resolved
