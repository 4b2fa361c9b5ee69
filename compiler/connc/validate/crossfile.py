"""Checks across files: ids, references, scope of use, and who can decrypt what."""

from __future__ import annotations

from collections.abc import Collection

from connc.documents import Document
from connc.findings import Finding, Severity, finding, suggest
from connc.repository import CONFIG_FILE, MEMBERS_FILE, ConnectionSummary, PipelineSummary
from connc.schema import models
from connc.scope import connection_scope, decide, pipeline_scope
from connc.sops.recipients import shown_recipient
from connc.validate.keyring import Keyring, Principals


def check_admins(config: models.Config, document: Document,
                 users: Collection[str]) -> list[Finding]:
    """CONNC215: an admin who is not a user can consent to nothing, and a later pull request
    could add a user of that name (so call it only when members.yaml was read)."""
    found = []
    for index, admin in enumerate(config.admins):
        if admin not in users:
            line, column = document.position(("admins", index))
            found.append(finding(CONFIG_FILE, line, column, "CONNC215",
                                 f"admin `{admin}` is not a user in {MEMBERS_FILE}"
                                 f"{suggest(admin, users)}"))
    return found


def check_repository(connections: list[ConnectionSummary], pipelines: list[PipelineSummary],
                     principals: Principals, admin_recipients: Collection[str],
                     members_known: bool, invalid: frozenset[str] = frozenset(), *,
                     require_permissions: bool = False) -> list[Finding]:
    """`invalid`: ids of connection files that exist but failed their own checks;
    `require_permissions`: connc.yaml's `githubApp.requirePermissions`."""
    found: list[Finding] = []
    found += _duplicate_ids(connections, "connection")
    found += _duplicate_ids(pipelines, "pipeline")
    by_id = {c.id: c for c in connections}
    pipeline_ids = {p.id for p in pipelines}
    if members_known:
        for connection in connections:
            found += _connection_references(connection, principals, pipeline_ids)
        for pipeline in pipelines:
            found += _pipeline_references(pipeline, principals)
    for pipeline in pipelines:
        found += _uses(pipeline, by_id, invalid, require_permissions)
    found += _copied_credentials(connections)
    # Spec 2: when members declare recipients, scope is enforced by cryptography too. Admin
    # (break-glass) keys alone do not turn it on: they may decrypt everything anyway.
    enforcing = bool(principals.all_recipients() or any(p.recipients for p in pipelines))
    if enforcing and members_known:
        keyring = Keyring(connections, pipelines, principals, admin_recipients)
        for connection in connections:
            found += _recipients_in_scope(connection, keyring)
            found += _pipelines_can_decrypt(connection, keyring)
    return found


def unsealed(connections: list[ConnectionSummary], require_seals: bool) -> list[Finding]:
    """CONNC413 for each credential without a seal (its key name is plaintext: keyless)."""
    found = []
    for c in connections:
        if c.sealed or not c.recipients:
            continue  # a file sops never encrypted is CONNC401 already: one problem, one finding
        if c.secretless:
            # Its seal is the only thing a key holder wrote: without it, anyone with a branch
            # could declare the connection, and render would exchange the job's identity for it.
            found.append(finding(
                c.relpath, *c.credential_pos, "CONNC413",
                f"the credential of `{c.id}` is not sealed, and a secretless connection's "
                f"credential is its seal: render and check refuse it (whatever requireSeals "
                f"says); a key holder seals it with `connc seal {c.id}`", Severity.ERROR))
            continue
        policy = ("connc.yaml sets requireSeals: true, so render and check refuse it"
                  if require_seals
                  else "with `requireSeals: true` in connc.yaml, render would refuse it")
        found.append(finding(
            c.relpath, *c.credential_pos, "CONNC413",
            f"the credential of `{c.id}` is not sealed: nothing binds it to its endpoint, "
            f"scope and id ({policy}); a key holder seals it with `connc seal {c.id}`",
            Severity.ERROR if require_seals else Severity.WARNING))
    return found


def _duplicate_ids(summaries: list[ConnectionSummary] | list[PipelineSummary],
                   kind: str) -> list[Finding]:
    first: dict[str, str] = {}
    found = []
    for summary in summaries:
        if summary.id in first:
            found.append(finding(summary.relpath, *summary.id_pos, "CONNC106",
                                 f"{kind} id `{summary.id}` is also used by {first[summary.id]}"))
        else:
            first[summary.id] = summary.relpath
    return found


def _connection_references(connection: ConnectionSummary, principals: Principals,
                           pipeline_ids: set[str]) -> list[Finding]:
    found = []
    if connection.owner not in principals.users:
        found.append(finding(connection.relpath, *connection.owner_pos, "CONNC201",
                             f"owner `{connection.owner}` is not a user in {MEMBERS_FILE}"
                             f"{suggest(connection.owner, principals.users)}"))
    known: dict[str, Collection[str]] = {
        "user": principals.users, "team": principals.teams, "pipeline": pipeline_ids}
    for member, pos in connection.members:
        kind, _, name = member.partition(":")
        if name not in known[kind]:
            where = "pipelines.d/" if kind == "pipeline" else MEMBERS_FILE
            found.append(finding(connection.relpath, *pos, "CONNC202",
                                 f"scope member `{member}` does not exist (no {kind} `{name}` in "
                                 f"{where}){suggest(name, known[kind])}"))
    return found


def _pipeline_references(pipeline: PipelineSummary, principals: Principals) -> list[Finding]:
    found = []
    if pipeline.owner not in principals.users:
        found.append(finding(pipeline.relpath, *pipeline.owner_pos, "CONNC201",
                             f"owner `{pipeline.owner}` is not a user in {MEMBERS_FILE}"
                             f"{suggest(pipeline.owner, principals.users)}"))
    for team, pos in pipeline.teams:
        spec = principals.teams.get(team)
        if spec is None:
            found.append(finding(pipeline.relpath, *pos, "CONNC203",
                                 f"team `{team}` is not in {MEMBERS_FILE}"
                                 f"{suggest(team, principals.teams)}"))
        elif pipeline.owner not in spec.members:
            found.append(finding(pipeline.relpath, *pos, "CONNC204",
                                 f"the owner `{pipeline.owner}` is not a member of team `{team}`; "
                                 f"a pipeline can only claim its owner's teams"))
    return found


def _uses(pipeline: PipelineSummary, by_id: dict[str, ConnectionSummary],
          invalid: frozenset[str], require_permissions: bool) -> list[Finding]:
    found = []
    scope = pipeline_scope(pipeline)
    for use in pipeline.uses:
        connection = by_id.get(use.connection)
        if connection is None and use.connection in invalid:
            continue  # the file exists; its own findings say what is wrong with it
        if connection is None:
            found.append(finding(pipeline.relpath, *use.pos, "CONNC205",
                                 f"connection `{use.connection}` does not exist in connections.d/"
                                 f"{suggest(use.connection, by_id)}"))
            continue
        denial = decide(scope, connection_scope(connection))
        if denial:
            found.append(finding(pipeline.relpath, *use.pos, denial.code, denial.message))
        if connection.type != "github-app":
            for option, pos in use.github_options:
                found.append(finding(pipeline.relpath, *pos, "CONNC207",
                                     f"`{option}` applies to github-app connections only; "
                                     f"`{use.connection}` is {connection.type}"))
        elif require_permissions and not use.permissions:
            # Absent or null: GitHub's default, the whole installation. An empty mapping
            # names nothing either (render refuses it).
            found.append(finding(pipeline.relpath, *use.pos, "CONNC212",
                                 f"`{use.connection}` is a github-app connection and connc.yaml "
                                 f"sets `githubApp.requirePermissions`: declare the `permissions` "
                                 f"this pipeline needs (without them the token gets everything "
                                 f"the installation has)"))
    return found


def _copied_credentials(connections: list[ConnectionSummary]) -> list[Finding]:
    seen: dict[bytes, str] = {}
    found = []
    for connection in connections:
        for fingerprint in sorted(connection.wrapped_keys | connection.ciphertexts):
            original = seen.get(fingerprint)
            if original is not None and original != connection.relpath:
                found.append(finding(connection.relpath, *connection.credential_pos, "CONNC410",
                                     f"the encrypted credential was copied from {original}; a "
                                     f"copy shares its data key and cannot be rotated on its own. "
                                     f"Write new values with `connc secret set`"))
                break
            seen.setdefault(fingerprint, connection.relpath)
    return found


def _recipients_in_scope(connection: ConnectionSummary, keyring: Keyring) -> list[Finding]:
    """Safety (CONNC408): everyone who can decrypt may use the connection; and CONNC409: a
    principal the scope names has no key at all, or the owner holds none to this file."""
    outside = keyring.outside(connection)
    found = []
    if outside:
        shown = ", ".join(f"{shown_recipient(r)} ({keyring.holder_text(r)})" for r in outside)
        found.append(finding(connection.relpath, *connection.sops_pos, "CONNC408",
                             f"recipient(s) {shown} are outside the scope of `{connection.id}` "
                             f"(no admin recipient, not its owner's, no member's, no key of a "
                             f"pipeline that may use it) and can decrypt it: a key holder runs "
                             f"`connc keys sync {connection.id}`, which removes them; then rotate "
                             f"the credential, which they could read"))
    if connection.visibility == "public":
        return found
    for member, recipients in keyring.named(connection):
        if not recipients:
            found.append(finding(connection.relpath, *connection.sops_pos, "CONNC409",
                                 f"`{member}` is in the scope of `{connection.id}` but has no "
                                 f"recipient, so cryptography does not back its access"))
        elif member == f"user:{connection.owner}" and not recipients & connection.recipients:
            found.append(finding(connection.relpath, *connection.sops_pos, "CONNC409",
                                 f"the owner `{connection.owner}` holds no key to "
                                 f"`{connection.id}` (none of their keys is among the file's "
                                 f"recipients), so they cannot rotate or seal it: a key holder "
                                 f"runs `connc keys sync {connection.id}`"))
    return found


def _pipelines_can_decrypt(connection: ConnectionSummary, keyring: Keyring) -> list[Finding]:
    """Liveness (CONNC414): a pipeline that uses the connection, and may, and declares runner
    keys of which none is a recipient, cannot render it. Reported on its `uses` entry."""
    found = []
    for pipeline_id, runner in keyring.undecryptable(connection):
        pipeline = keyring.pipelines[pipeline_id]
        # The first use of that id; a duplicate pipeline id (CONNC106) may hold another file's.
        pos = next((use.pos for use in pipeline.uses if use.connection == connection.id),
                   pipeline.id_pos)
        keys = ", ".join(shown_recipient(k) for k in sorted(runner.keys))
        found.append(finding(pipeline.relpath, *pos, "CONNC414",
                             f"`connc render {pipeline_id}` will fail: it uses `{connection.id}` "
                             f"but none of its runner keys ({keys}, from {runner.source}) is a "
                             f"recipient of {connection.relpath}; a key holder runs "
                             f"`connc keys sync {connection.id}`, which adds them"))
    return found
