"""Checks across files: ids, references, scope of use, and who can decrypt what."""

from __future__ import annotations

from collections.abc import Collection

from connc.documents import Document
from connc.findings import Finding, Severity, finding, suggest
from connc.repository import CONFIG_FILE, MEMBERS_FILE, ConnectionSummary, PipelineSummary
from connc.schema import models
from connc.scope import connection_scope, decide, pipeline_scope
from connc.sopsmeta import recipient_of_member_key, shown_recipient


class Principals:
    """users and teams of members.yaml, with their recipients in sops' form.

    The recipients are converted once, here: the scope checks ask for them per connection,
    and converting them on each call made a repository of 10,000 connections spend seconds
    re-parsing the same few hundred keys.
    """

    def __init__(self, members: models.Members | None) -> None:
        self.users = dict(members.users) if members else {}
        self.teams = dict(members.teams) if members else {}
        self._users = {name: frozenset(recipient_of_member_key(r) for r in user.recipients)
                       for name, user in self.users.items()}
        self._teams = {name: frozenset(recipient_of_member_key(r) for r in team.recipients)
                       .union(*(self.user_recipients(u) for u in team.members))
                       for name, team in self.teams.items()}
        self._all = frozenset().union(*self._users.values(), *self._teams.values())

    def user_recipients(self, user: str) -> frozenset[str]:
        return self._users.get(user, frozenset())

    def team_recipients(self, team: str) -> frozenset[str]:
        return self._teams.get(team, frozenset())

    def all_recipients(self) -> frozenset[str]:
        return self._all

    def holder(self, recipient: str, pipelines: dict[str, PipelineSummary]) -> str:
        """Who declares a key, for a message: `user:carol`, `pipeline:deploy`, or nobody."""
        owners = [f"user:{name}" for name, keys in self._users.items() if recipient in keys]
        owners += [f"pipeline:{pid}" for pid, pipeline in pipelines.items()
                   if recipient in pipeline.recipients]
        owners += [f"team:{name}" for name, team in self.teams.items()
                   if recipient in {recipient_of_member_key(r) for r in team.recipients}]
        return ", ".join(owners) or "declared by no principal"


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
                     principals: Principals, admin_recipients: set[str],
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
        pipelines_by_id = {p.id: p for p in pipelines}
        # Who may decrypt a public connection: the same for all of them, so computed once.
        everyone = principals.all_recipients().union(*(p.recipients for p in pipelines))
        for connection in connections:
            found += _recipients_in_scope(connection, principals, pipelines_by_id, everyone,
                                          admin_recipients)
    return found


def unsealed(connections: list[ConnectionSummary], require_seals: bool) -> list[Finding]:
    """CONNC413 for each credential without a seal (its key name is plaintext: keyless)."""
    severity = Severity.ERROR if require_seals else Severity.WARNING
    policy = ("connc.yaml sets requireSeals: true, so render and check refuse it"
              if require_seals else "with `requireSeals: true` in connc.yaml, render would refuse it")
    return [finding(c.relpath, *c.credential_pos, "CONNC413",
                    f"the credential of `{c.id}` is not sealed: nothing binds it to its endpoint, "
                    f"scope and id ({policy}); a key holder seals it with `connc seal {c.id}`",
                    severity)
            # A file sops never encrypted is CONNC401 already: one problem, one finding.
            for c in connections if not c.sealed and c.recipients]


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


def _recipients_in_scope(connection: ConnectionSummary, principals: Principals,
                         pipelines: dict[str, PipelineSummary], everyone: frozenset[str],
                         admin_recipients: set[str]) -> list[Finding]:
    """Everyone who can decrypt must be allowed to use (spec section 2, by cryptography).

    `everyone`: the recipients of all principals and pipelines, who may use a public connection.
    """
    named: dict[str, frozenset[str]] = {f"user:{connection.owner}":
                                        principals.user_recipients(connection.owner)}
    if connection.visibility == "public":
        allowed = everyone
    else:
        if connection.visibility == "custom":
            for member, _pos in connection.members:
                named[member] = _member_recipients(member, principals, pipelines)
        allowed = frozenset().union(*named.values())
    outside = sorted(connection.recipients - allowed - admin_recipients)
    found = []
    if outside:
        shown = ", ".join(f"{shown_recipient(r)} ({principals.holder(r, pipelines)})"
                          for r in outside)
        found.append(finding(connection.relpath, *connection.sops_pos, "CONNC408",
                             f"recipient(s) {shown} are outside the scope of `{connection.id}` "
                             f"(and not adminRecipients) and can decrypt it: remove them from "
                             f"the .sops.yaml rule, run `connc sops updatekeys {connection.relpath}`, "
                             f"and rotate the credential, which they could read"))
    if connection.visibility != "public":
        for member, recipients in named.items():
            if not recipients:
                found.append(finding(connection.relpath, *connection.sops_pos, "CONNC409",
                                     f"`{member}` is in the scope of `{connection.id}` but has no "
                                     f"recipient, so cryptography does not back its access"))
            elif not recipients & connection.recipients:
                found.append(finding(connection.relpath, *connection.sops_pos, "CONNC409",
                                     f"`{member}` is in the scope of `{connection.id}` but none "
                                     f"of its keys is among the file's recipients: add one to the "
                                     f".sops.yaml rule and run "
                                     f"`connc sops updatekeys {connection.relpath}`"))
    return found


def _member_recipients(member: str, principals: Principals,
                       pipelines: dict[str, PipelineSummary]) -> frozenset[str]:
    kind, _, name = member.partition(":")
    if kind == "user":
        return principals.user_recipients(name)
    if kind == "team":
        return principals.team_recipients(name)
    pipeline = pipelines.get(name)
    if pipeline is None:
        return frozenset()
    if pipeline.recipients:
        return pipeline.recipients
    return frozenset().union(*(principals.team_recipients(team) for team, _pos in pipeline.teams))
