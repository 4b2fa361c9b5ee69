"""Who holds a key to each connection, who may hold one, and who needs one — keyless.

Scope is enforced by cryptography too (docs/production.md), as two invariants over the
plaintext files and the recipients sops records in each connection file:

- safety: every recipient of a connection's file belongs to someone who may use it — an admin
  recipient (connc.yaml), its owner, a member of its scope (a user; a team, with its members;
  a pipeline, with its own keys or else its teams'), or a pipeline that may use it (its
  runner keys). A pipeline that may use a connection is in its scope by definition;
- liveness: every pipeline that uses a connection, and may, holds a key that decrypts it.

A pipeline's claims are honoured as render honours them: a pipeline whose owner is not a user
may use nothing, and it is in a team only when its owner is a member (validate's CONNC201 and
CONNC204 name the others). A pipeline file cannot give itself a key to what render refuses it.

A pipeline's *runner keys* are its `metadata.recipients`, else the own `recipients` of its
teams (a team's runner key): the keys its runner renders with. Team members' personal keys
are people's, not a runner's, so they are not a pipeline's keys. A pipeline with neither
declares no key: connc cannot tell which key its runner holds, and checks nothing for it.

What a file needs (`needed`, what `connc keys sync` writes) is the least that keeps both:
the admin recipients, the owner's keys (to rotate and seal it), and the runner keys of the
pipelines that use it. Members of its scope that use it through no pipeline get no key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from connc.repository import ConnectionSummary, PipelineSummary
from connc.schema import models
from connc.scope import PipelineScope, connection_scope, decide
from connc.sops.recipients import recipient_of_member_key


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
        self._team_own = {name: frozenset(recipient_of_member_key(r) for r in team.recipients)
                          for name, team in self.teams.items()}
        self._teams = {name: own.union(*(self.user_recipients(u)
                                         for u in self.teams[name].members))
                       for name, own in self._team_own.items()}
        self._all = frozenset().union(*self._users.values(), *self._teams.values())

    def user_recipients(self, user: str) -> frozenset[str]:
        return self._users.get(user, frozenset())

    def team_recipients(self, team: str) -> frozenset[str]:
        """`team:<t>` in a scope: the team's own keys and its members'."""
        return self._teams.get(team, frozenset())

    def team_own_recipients(self, team: str) -> frozenset[str]:
        """The team's own keys (e.g. its runner's), without its members'."""
        return self._team_own.get(team, frozenset())

    def all_recipients(self) -> frozenset[str]:
        return self._all

    def recipients(self, principal: str) -> frozenset[str]:
        """The keys that stand for `user:NAME` or `team:NAME` (a team's own and its
        members'): what decrypts what the principal may. The one answer for every command:
        validate's scope checks, `connc keys`, and diff's rows of principals' keys."""
        kind, _, name = principal.partition(":")
        if kind == "user":
            return self.user_recipients(name)
        return self.team_recipients(name) if kind == "team" else frozenset()

    def standing(self) -> Iterable[tuple[str, frozenset[str]]]:
        """Every `user:NAME` and `team:NAME` with its `recipients`."""
        yield from ((f"user:{name}", keys) for name, keys in self._users.items())
        yield from ((f"team:{name}", keys) for name, keys in self._teams.items())

    def declared(self) -> Iterable[tuple[str, frozenset[str]]]:
        """(`user:NAME` or `team:NAME`, the keys it declares itself), for naming holders."""
        yield from ((f"user:{name}", keys) for name, keys in self._users.items())
        yield from ((f"team:{name}", keys) for name, keys in self._team_own.items())


@dataclasses.dataclass(frozen=True)
class RunnerKeys:
    """A pipeline's runner keys, and where they are declared (for messages)."""

    keys: frozenset[str]
    source: str  # "metadata.recipients", "team:a, team:b", or "" when it declares none


class Keyring:
    """The keys of one repository: who declares which key, who may decrypt each connection,
    and who needs to. Built once per run from the summaries, and linear in the repository:
    the scope decisions made are those of each `uses` entry, and for a recipient no named
    principal holds, those of the pipelines that hold it — never pipelines x connections."""

    def __init__(self, connections: list[ConnectionSummary], pipelines: list[PipelineSummary],
                 principals: Principals, admin_recipients: Iterable[str]) -> None:
        self.principals = principals
        self.admin = frozenset(admin_recipients)
        self.pipelines = {p.id: p for p in pipelines}
        self._claims = {p.id: _honoured(p, principals) for p in pipelines}
        # Who may decrypt a public connection: everyone, the same for all of them.
        self.everyone = principals.all_recipients().union(
            *(p.recipients for p in pipelines if self._claims[p.id] is not None))
        self._scopes = {c.id: connection_scope(c) for c in connections}
        self._users: dict[str, list[str]] = {}  # connection -> pipelines that use it, and may
        for pipeline in pipelines:
            scope = self._claims[pipeline.id]
            if scope is None:
                continue
            for use in pipeline.uses:
                connection = self._scopes.get(use.connection)
                if connection is not None and decide(scope, connection) is None:
                    self._users.setdefault(use.connection, []).append(pipeline.id)
        self._runner: dict[str, RunnerKeys] = {}
        self._runner_holders: dict[str, list[str]] | None = None
        self._holders: dict[str, list[str]] | None = None

    # ------------------------------------------------------------------ pipelines

    def runner_keys(self, pipeline_id: str) -> RunnerKeys:
        cached = self._runner.get(pipeline_id)
        if cached is None:
            pipeline = self.pipelines[pipeline_id]
            if pipeline.recipients:
                cached = RunnerKeys(pipeline.recipients, "metadata.recipients")
            else:
                teams = [t for t in self._teams(pipeline_id)
                         if self.principals.team_own_recipients(t)]
                cached = RunnerKeys(
                    frozenset().union(*(self.principals.team_own_recipients(t) for t in teams)),
                    ", ".join(f"team:{t}" for t in teams))
            self._runner[pipeline_id] = cached
        return cached

    def _teams(self, pipeline_id: str) -> tuple[str, ...]:
        """The teams the pipeline claims and its owner is in."""
        scope = self._claims[pipeline_id]
        return scope.teams if scope is not None else ()

    def users(self, connection: ConnectionSummary) -> list[str]:
        """The pipelines that use the connection and may (sorted ids)."""
        return sorted(self._users.get(connection.id, ()))

    # ------------------------------------------------------------------ connections

    def outside(self, connection: ConnectionSummary) -> list[str]:
        """The file's recipients that the safety invariant does not allow (sorted)."""
        rest = connection.recipients - self.admin
        if connection.visibility == "public":
            return sorted(rest - self.everyone)
        rest = rest.difference(*(keys for _member, keys in self.named(connection)))
        return sorted(r for r in rest if not self._held_by_a_pipeline_that_may(connection, r))

    def allows(self, connection: ConnectionSummary, recipient: str) -> bool:
        """May this recipient be on the connection's file? (the safety invariant)"""
        if recipient in self.admin:
            return True
        if connection.visibility == "public":
            return recipient in self.everyone
        return (any(recipient in keys for _member, keys in self.named(connection))
                or self._held_by_a_pipeline_that_may(connection, recipient))

    def _held_by_a_pipeline_that_may(self, connection: ConnectionSummary,
                                     recipient: str) -> bool:
        """Is the recipient a runner key of a pipeline that may use the connection?"""
        if self._runner_holders is None:
            index: dict[str, list[str]] = {}
            for pid in self.pipelines:
                for key in self.runner_keys(pid).keys:
                    index.setdefault(key, []).append(pid)
            self._runner_holders = index
        scope = self._scopes.get(connection.id) or connection_scope(connection)
        return any(claims is not None and decide(claims, scope) is None
                   for claims in (self._claims[pid]
                                  for pid in self._runner_holders.get(recipient, ())))

    def named(self, connection: ConnectionSummary) -> list[tuple[str, frozenset[str]]]:
        """The principals a non-public scope names — its owner, then each member — with the
        keys that stand for each (README.md, The trust model)."""
        named = [(f"user:{connection.owner}",
                  self.principals.user_recipients(connection.owner))]
        if connection.visibility == "custom":
            named += [(member, self._member_recipients(member))
                      for member, _pos in connection.members]
        return named

    def needed(self, connection: ConnectionSummary) -> frozenset[str]:
        """The recipients the file needs: admin, owner, and its users' runner keys."""
        keys = set(self.admin | self.principals.user_recipients(connection.owner))
        for pid in self.users(connection):
            keys |= self.runner_keys(pid).keys
        return frozenset(keys)

    def undecryptable(self, connection: ConnectionSummary) -> list[tuple[str, RunnerKeys]]:
        """The pipelines that use the connection, and may, whose runner keys are declared and
        none of which is a recipient of its file: their render will fail (liveness)."""
        if not connection.recipients:
            return []  # not encrypted at all: CONNC401 / CONNC412 say so
        found = []
        for pid in self.users(connection):
            runner = self.runner_keys(pid)
            if runner.keys and not runner.keys & connection.recipients:
                found.append((pid, runner))
        return found

    def keyless_users(self, connection: ConnectionSummary) -> list[str]:
        """The pipelines that use the connection and declare no runner key at all."""
        return [pid for pid in self.users(connection) if not self.runner_keys(pid).keys]

    # ------------------------------------------------------------------ keys

    def holders(self, recipient: str) -> list[str]:
        """Who declares a key: `admin`, `user:carol`, `team:ops`, `pipeline:deploy`."""
        if self._holders is None:
            index: dict[str, list[str]] = {}
            for key in sorted(self.admin):
                index.setdefault(key, []).append("admin")
            for principal, keys in self.principals.declared():
                for key in keys:
                    index.setdefault(key, []).append(principal)
            for pid in sorted(self.pipelines):
                for key in self.pipelines[pid].recipients:
                    index.setdefault(key, []).append(f"pipeline:{pid}")
            self._holders = index
        return self._holders.get(recipient, [])

    def holder_text(self, recipient: str) -> str:
        return ", ".join(self.holders(recipient)) or "declared by no principal"

    def _member_recipients(self, member: str) -> frozenset[str]:
        kind, _, name = member.partition(":")
        if kind != "pipeline":
            return self.principals.recipients(member)
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            return frozenset()
        if pipeline.recipients:
            return pipeline.recipients
        # `pipeline:<p>` stands for its own recipients, or else its teams'.
        return frozenset().union(*(self.principals.team_recipients(team)
                                   for team in self._teams(name)))


def _honoured(pipeline: PipelineSummary, principals: Principals) -> PipelineScope | None:
    """The pipeline's scope as render honours it: None when its owner is not a user (render
    refuses the pipeline), else with only the teams its owner is a member of."""
    if pipeline.owner not in principals.users:
        return None
    teams = tuple(t for t, _pos in pipeline.teams
                  if t in principals.teams and pipeline.owner in principals.teams[t].members)
    return PipelineScope(pipeline.id, pipeline.owner, teams)
