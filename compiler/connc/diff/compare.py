"""`connc diff BASE [HEAD]`: every change that could move a credential (docs/diff.md), and whose
consent it needs (docs/approvals.md).

Each side is read the way `validate` reads a repository (`snapshot`) and the two are
compared: grants (the same scope decision as `connc access`), connection scopes and owners,
every `spec` field, the GitHub App narrowing of each use, sops recipients of files and keys of
principals, team membership, users and their forge accounts, pipeline owners and teams,
`.sops.yaml` and `connc.yaml`, and files whose identity is in doubt. Each change is a row; a
row that widens access is marked, names the principals whose consent it needs
(`approvers`), and makes the verdict "widened" (exit 1). Narrowing never needs consent.

Approvers are principals: `user:NAME` (that user), `admins` (any admin of `connc.yaml`),
`nobody` (no consent makes it safe: the file must be fixed). The owner who consents for a
connection is its owner at BASE, who answers for it now; a new connection's is its owner at
HEAD. Who an approver is as a person is resolved against BASE by `connc approvals`, so a pull
request cannot name its own approvers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import TypeVar

from connc import repository
from connc.diff.revisions import Revision
from connc.diff.snapshot import Rule, Snapshot
from connc.repository import ConnectionSummary, PipelineSummary, UseSummary
from connc.schema import models
from connc.scope import changed_rows, connection_scope, default_role, narrower_or_equal
from connc.secrets import redact
from connc.sops.recipients import recipient_of_member_key, shown_recipient
from connc.validate.keyring import Principals

# A grant's state for one (pipeline, connection): "" none, "denied" listed in `uses` but not
# allowed (render refuses it, so it grants nothing), "may" allowed, "uses" allowed and used.
_GRANT_RANK = {"": 0, "denied": 0, "may": 1, "uses": 2}
_LEVEL_RANK = {"read": 1, "write": 2, "admin": 3}
_SHOWN = 80  # characters of a spec value a row shows (CA data is long)
ADMINS, NOBODY = "admins", "nobody"

T = TypeVar("T")

# Markdown and JSON sections, in the order a reviewer reads them.
SECTIONS = {
    "grants": "Grants",
    "scopes": "Connection scopes and owners",
    "specs": "Connection endpoints and settings",
    "narrowing": "GitHub App token narrowing",
    "recipients": "Recipients of connection files",
    "keys": "Keys of principals",
    "teams": "Team members",
    "users": "Users and their accounts",
    "claims": "Pipeline owners, teams and defaults",
    "connections": "Connections",
    "credentials": "Credential blocks moved, copied, restored, replaced or kept past expiry",
    "pipelines": "Pipelines",
    "policy": ".sops.yaml and connc.yaml",
    "integrity": "Files whose identity is in doubt",
    "unread": "Files render refuses",
}


@dataclasses.dataclass(frozen=True)
class Change:
    section: str  # a key of SECTIONS
    change: str  # added, removed, changed, visibility widened, member added, ...
    values: dict[str, str]  # the table's columns, the same keys for every row of a section
    widens: bool = False
    approvers: tuple[str, ...] = ()  # principals whose consent it needs, each of them
    reseal: bool = False  # a sealed field changed: the credential will not render until resealed

    def __post_init__(self) -> None:
        # Every row, every format: what looks like a secret is shown as its kind.
        object.__setattr__(self, "change", redact(self.change))
        object.__setattr__(self, "values", {k: redact(v) for k, v in self.values.items()})


@dataclasses.dataclass(frozen=True)
class Diff:
    base: Revision
    head: Revision
    changes: list[Change]
    base_side: Snapshot
    head_side: Snapshot

    @property
    def widened(self) -> bool:
        return any(change.widens for change in self.changes)


def compare(base: Snapshot, head: Snapshot) -> list[Change]:
    changes = [*_grants(base, head), *_scopes(base, head), *_specs(base, head),
               *_narrowing(base, head), *_recipients(base, head), *_keys(base, head),
               *_teams(base, head), *_users(base, head), *_claims(base, head),
               *_files(base, head), *_credentials(base, head), *_policy(base, head),
               *_integrity(base, head),
               *_unread(base, head)]
    # Within a section, what widens access first.
    order = list(SECTIONS)
    return sorted(changes, key=lambda c: (order.index(c.section), not c.widens))


def _row(section: str, change: str, values: dict[str, str], widens: bool,
         approvers: Iterable[str], reseal: bool = False) -> Change:
    """A row; the approvers count only when it widens (narrowing is free)."""
    return Change(section, change, values, widens,
                  tuple(dict.fromkeys(approvers)) if widens else (), reseal and widens)


def _owner(cid: str, base: Snapshot, head: Snapshot) -> str:
    """The owner who consents for a connection: at BASE, else (a new one) at HEAD."""
    connection = base.connections.get(cid) or head.connections.get(cid)
    return f"user:{connection.owner}" if connection is not None else ADMINS


def _sealed(cid: str, base: Snapshot) -> bool:
    connection = base.connections.get(cid)
    return connection is not None and connection.sealed


def _common(before: Mapping[str, T], after: Mapping[str, T]) -> Iterable[tuple[str, T, T]]:
    """What both sides hold by one key. A file both sides hold the same bytes of is judged
    once (`snapshot`), so its summary is one object on both sides: `old is new` says, in
    constant time, that it did not change."""
    for key in sorted(before.keys() & after.keys()):
        yield key, before[key], after[key]


# ---------------------------------------------------------------------------- connections


def _state(side: Snapshot, pipeline: str, connection: str) -> str:
    """A grant's state, counting the "may" of a public connection's grant to EVERYONE."""
    state = side.grants.row(pipeline).get(connection, "")
    target = side.connections.get(connection)
    if (not state and pipeline in side.pipelines and target is not None
            and target.visibility == "public"):
        return "may"
    return state


def _grants(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    # Only a pair whose recorded state differs can differ in `_state` (which adds the "may" of
    # a public connection only to pairs recorded on one side): of a million, most are equal,
    # and a pipeline's are compared at once.
    differing = []
    for pid, before_row, after_row in changed_rows(base.grants, head.grants):
        if before_row != after_row:
            differing += [(pid, cid) for cid in before_row.keys() | after_row.keys()
                          if before_row.get(cid) != after_row.get(cid)]
    for pair in sorted(differing):
        before, after = _state(base, *pair), _state(head, *pair)
        if before == after:
            continue
        change = "added" if not before else "removed" if not after else "changed"
        approvers = [_owner(pair[1], base, head)]
        if after == "uses":
            approvers += _chosen_by(*pair, base)
        yield _row("grants", change, {"pipeline": pair[0], "connection": pair[1],
                                      "before": before, "after": after},
                   _GRANT_RANK[after] > _GRANT_RANK[before], approvers)


def _chosen_by(pipeline: str, connection: str, base: Snapshot) -> list[str]:
    """A pipeline's owner chooses what its bundle holds. A connection's owner consents to
    lending it, but a connection added to someone else's pipeline can become that pipeline's
    tools' default (`scope.default_role`: kubectl's context, npm's registry, pip's index-url),
    so its owner could send all the pipeline fetches or publishes, and with it the
    pipeline's other credentials (a package of theirs runs beside them), to a host of theirs. So a use new to a pipeline of BASE (or one naming a connection BASE did
    not have, which whoever adds it would fill) needs the pipeline's owner at BASE too. A new
    pipeline's owner consents to all of it (`_files`)."""
    chosen = base.pipelines.get(pipeline)
    if chosen is None:
        return []
    if connection in base.connections and any(use.connection == connection
                                              for use in chosen.uses):
        return []
    return [f"user:{chosen.owner}"]


def _scopes(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for cid, old, new in _common(base.connections, head.connections):
        if old is new:
            continue  # one judgement of one file for both sides (`snapshot`): nothing changed
        row = {"connection": cid}
        sealed = old.sealed
        if old.owner != new.owner:
            # The owner may always use its connection: a new owner is a principal added,
            # and both the one who hands it over and the one who takes it consent.
            yield _row("scopes", "owner changed", row | {"before": old.owner, "after": new.owner},
                       True, [f"user:{old.owner}", f"user:{new.owner}"], sealed)
        # Widening is decided once, by the order render applies (`scope.narrower_or_equal`):
        # public -> custom with members is narrower overall, and widens nothing.
        wider = not narrower_or_equal(
            connection_scope(old),
            dataclasses.replace(connection_scope(new), owner=old.owner))  # owner: its own row
        if old.visibility != new.visibility:
            yield _row("scopes", f"visibility {'widened' if wider else 'narrowed'}",
                       row | {"before": old.visibility, "after": new.visibility}, wider,
                       [f"user:{old.owner}"], sealed)
        old_members = {m for m, _pos in old.members}
        new_members = {m for m, _pos in new.members}
        for member in sorted(new_members - old_members):
            yield _row("scopes", "member added", row | {"before": "", "after": member},
                       wider and new.visibility == "custom", [f"user:{old.owner}"], sealed)
        for member in sorted(old_members - new_members):
            yield _row("scopes", "member removed", row | {"before": member, "after": ""},
                       False, ())


def _specs(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """Any spec field: the credential goes to another host, or trusts another key."""
    for cid, old, new in _common(base.connections, head.connections):
        if old is new:
            continue
        before, after = dict(old.spec), dict(new.spec)
        for field in sorted(before.keys() | after.keys()):
            if before.get(field) != after.get(field):
                change = "added" if field not in before else \
                    "removed" if field not in after else "changed"
                was, now = _shown(before.get(field), after.get(field))
                yield _row("specs", change,
                           {"connection": cid, "field": f"spec.{field}",
                            "before": was, "after": now},
                           True, [f"user:{old.owner}"], old.sealed)


def _shown(before: str | None, after: str | None) -> tuple[str, str]:
    """Two values of a field as a row shows them: whole when they fit, else each with its
    start and, from the same place, where the two first differ. Cut at the end only, a long
    server URL redirected by a suffix to its host (`...corp.example.com.evil.example`) showed
    the same text before and after."""
    old, new = _text(before), _text(after)
    if len(old) <= _SHOWN and len(new) <= _SHOWN:
        return old, new
    differs = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                   min(len(old), len(new)))
    return _window(old, differs), _window(new, differs)


def _text(encoded: str | None) -> str:
    if encoded is None:
        return ""
    value = json.loads(encoded)
    return redact(value if isinstance(value, str) else json.dumps(value))  # before it is cut


def _window(text: str, differs: int) -> str:
    """`text` within _SHOWN characters, keeping its start and what is at `differs`."""
    context = _SHOWN // 4
    if differs > 2 * context and len(text) > _SHOWN:
        text = text[:context] + "…" + text[differs - context:]
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _uses(side: Snapshot) -> dict[tuple[str, str], UseSummary]:
    return {(pid, use.connection): use for pid, pipeline in side.pipelines.items()
            for use in pipeline.uses}


def _narrowing(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """A github-app use that now reaches more repositories, permissions, or keeps the key."""
    before_uses = _uses(base)
    for (pid, cid), new in sorted(_uses(head).items()):
        connection = head.connections.get(cid)
        if connection is None or connection.type != "github-app":
            continue
        old = before_uses.get((pid, cid))
        row = {"pipeline": pid, "connection": cid}
        approvers = [_owner(cid, base, head)]
        if old is None:
            # A new use: its grant row says it; what the grant hands over beyond a narrowed
            # token is said here, so that its owner does not approve it unseen.
            yield from _new_use(new, row, approvers)
            continue
        if old.repositories is not None and new.repositories != old.repositories:
            added = sorted(set(new.repositories or ()) - set(old.repositories))
            widens = new.repositories is None or bool(added)
            yield _row("narrowing", "repositories", row | {
                "before": ", ".join(old.repositories),
                "after": "all of the installation's" if new.repositories is None
                else ", ".join(new.repositories)}, widens, approvers)
        if old.permissions is not None and new.permissions != old.permissions:
            was, now = dict(old.permissions), dict(new.permissions or ())
            widens = new.permissions is None or any(
                _LEVEL_RANK.get(level, 9) > _LEVEL_RANK.get(was.get(name, ""), 0)
                for name, level in now.items())
            yield _row("narrowing", "permissions", row | {
                "before": _permissions(was),
                "after": "all of the installation's" if new.permissions is None
                else _permissions(now)}, widens, approvers)
        if new.refresh != old.refresh:
            yield _row("narrowing", "refresh", row | {
                "before": str(old.refresh).lower(), "after": str(new.refresh).lower()},
                new.refresh, approvers)


def _new_use(new: UseSummary, row: dict[str, str], approvers: list[str]) -> Iterable[Change]:
    everything = "all of the installation's"
    if new.repositories is None:
        yield _row("narrowing", "repositories", row | {"before": "", "after": everything},
                   True, approvers)
    if new.permissions is None:
        yield _row("narrowing", "permissions", row | {"before": "", "after": everything},
                   True, approvers)
    if new.refresh:  # the App's private key enters the pipeline's bundle
        yield _row("narrowing", "refresh", row | {"before": "", "after": "true"}, True,
                   approvers)


def _permissions(permissions: Mapping[str, str]) -> str:
    return ", ".join(f"{name}: {level}" for name, level in sorted(permissions.items()))


def _recipients(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for cid, old, new in _common(base.connections, head.connections):
        if old is new:
            continue
        for side, recipients, change in ((head, new.recipients - old.recipients, "added"),
                                         (base, old.recipients - new.recipients, "removed")):
            for recipient in sorted(recipients):
                yield _row("recipients", change,
                           {"connection": cid, "recipient": shown_recipient(recipient),
                            "principal": side.principals.get(recipient, "")},
                           change == "added", [f"user:{old.owner}"])


def _files(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for change, source, other in (("added", head, base), ("removed", base, head)):
        for cid in sorted(source.connections.keys() - other.connections.keys()):
            connection = source.connections[cid]
            # A new credential is access that did not exist; its grants are listed too.
            yield _row("connections", change,
                       {"connection": cid, "type": connection.type,
                        "owner": connection.owner, "visibility": connection.visibility},
                       change == "added", [f"user:{connection.owner}"])
        for pid in sorted(source.pipelines.keys() - other.pipelines.keys()):
            pipeline = source.pipelines[pid]
            # A new pipeline claims its owner's identity and teams: the owner consents.
            yield _row("pipelines", change,
                       {"pipeline": pid, "owner": pipeline.owner,
                        "teams": ", ".join(t for t, _pos in pipeline.teams)},
                       change == "added", [f"user:{pipeline.owner}"])


def _credentials(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """What a key holder approved travels with a credential block, not with its file name.

    A block is known by its data key and ciphertexts (sops metadata, plaintext): one seen at
    BASE under another id was moved or copied here, and its owner at BASE consents (a new
    file's own owner would, otherwise, be the only one asked, or a seal renewed with
    `--all` would approve the move). A block older than the one BASE had (sops'
    `lastmodified`, bound to the MAC) was put back: an older credential, maybe one rotated
    away, and its owner consents whatever else changed. An expired credential whose
    `expiresAt` moves later (or goes) is kept in use past what its owner set.
    """
    held: dict[bytes, set[str]] | None = None  # built when a block holds something new

    def holders(fingerprints: frozenset[bytes]) -> set[str]:
        nonlocal held
        if held is None:
            held = {}
            for cid, connection in base.connections.items():
                for fingerprint in connection.wrapped_keys | connection.ciphertexts:
                    held.setdefault(fingerprint, set()).add(cid)
        return {source for fingerprint in fingerprints for source in held.get(fingerprint, ())}

    today = dt.datetime.now(dt.UTC).date().isoformat()
    for cid, new in sorted(head.connections.items()):
        old = base.connections.get(cid)
        if old is new:
            continue
        own = (old.wrapped_keys | old.ciphertexts) if old is not None else frozenset()
        arrived = (new.wrapped_keys | new.ciphertexts) - own
        sources = sorted(holders(arrived) - {cid}) if arrived else []
        for source in sources:
            yield _row("credentials",
                       "copied here" if source in head.connections else "moved here",
                       {"connection": cid, "from": source, "before": "", "after": ""},
                       True, [f"user:{base.connections[source].owner}"])
        if old is None or sources:
            continue
        if _older(new.lastmodified, old.lastmodified):
            yield _row("credentials", "restored an older block",
                       {"connection": cid, "from": "", "before": old.lastmodified or "",
                        "after": new.lastmodified or ""}, True, [f"user:{old.owner}"])
        elif _replaced(old, new):
            yield _row("credentials", "replaced by another block",
                       {"connection": cid, "from": "", "before": old.lastmodified or "",
                        "after": new.lastmodified or ""}, True, [f"user:{old.owner}"])
        if old.expires is not None and old.expires <= today and (
                new.expires is None or new.expires > old.expires):
            yield _row("credentials", "expiry extended",
                       {"connection": cid, "from": "", "before": old.expires,
                        "after": new.expires or "(none)"}, True, [f"user:{old.owner}"])


def _replaced(old: ConnectionSummary, new: ConnectionSummary) -> bool:
    """Whether a block was written anew: no ciphertext of BASE's is left, and it holds a
    wrapped data key BASE's did not. Anyone can encrypt to a file's recipients and seal what
    they encrypt, so such a block holds a credential nobody who holds this one wrote here
    (someone's own, or one copied from another repository under the same id), which the
    connection's pipelines would then use at its endpoints with nothing else changed. What
    key holders run keeps one or the other: `sops set` (`connc secret set`, `seal`) keeps the
    data key and its wrapped copies, `sops updatekeys` (`keys sync`) the ciphertexts. Copies of
    BASE's wrapped keys beside the new one (sops takes the first that opens) change nothing."""
    return bool(old.ciphertexts and new.ciphertexts and old.wrapped_keys) \
        and old.ciphertexts.isdisjoint(new.ciphertexts) \
        and not new.wrapped_keys <= old.wrapped_keys


def _older(modified: str | None, than: str | None) -> bool:
    """Whether sops' `lastmodified` is earlier than another (both RFC 3339 in UTC)."""
    if modified is None or than is None:
        return False
    try:
        return _instant(modified) < _instant(than)
    except ValueError:
        return False


def _instant(text: str) -> dt.datetime:
    whole, _, _fraction = text.removesuffix("Z").partition(".")
    return dt.datetime.fromisoformat(whole)


# ---------------------------------------------------------------------------- principals


def _keys(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """Keys added to principals: after `sops updatekeys`, they decrypt what the principal may."""
    before, after = _principal_keys(base), _principal_keys(head)
    for principal in sorted(before.keys() | after.keys()):
        old, new = before.get(principal, frozenset()), after.get(principal, frozenset())
        for recipient in sorted(new - old):
            yield _row("keys", "added", {"principal": principal,
                                         "recipient": shown_recipient(recipient)},
                       True, [ADMINS])
        for recipient in sorted(old - new):
            yield _row("keys", "removed", {"principal": principal,
                                           "recipient": shown_recipient(recipient)}, False, ())


def _principal_keys(side: Snapshot) -> dict[str, frozenset[str]]:
    """Each principal's keys as validate counts them (a team's include its members')."""
    keys = dict(Principals(side.members).standing())
    if side.config is not None:
        keys["adminRecipients"] = frozenset(recipient_of_member_key(v)
                                            for v in side.config.admin_recipients)
    for pid, pipeline in side.pipelines.items():
        keys[f"pipeline:{pid}"] = pipeline.recipients
    return {principal: values for principal, values in keys.items() if values}


def _teams(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    before, after = base.teams, head.teams
    for team in sorted(before.keys() | after.keys()):
        old, new = before.get(team, frozenset()), after.get(team, frozenset())
        # render lets a pipeline claim a team its owner is in: a member added widens.
        for user in sorted(new - old):
            yield _row("teams", "member added", {"team": team, "user": user}, True, [ADMINS])
        for user in sorted(old - new):
            yield _row("teams", "member removed", {"team": team, "user": user}, False, ())


def _users(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """Users are principals and consent identities: adding one, or changing whose forge
    account speaks for one, needs an admin. So does removing one whose name HEAD still uses:
    a later pull request could add a user of that name, whom the name's admin rights,
    ownerships and memberships would go to under a row that says only "user added"."""
    before = base.members.users if base.members is not None else {}
    after = head.members.users if head.members is not None else {}
    for name in sorted(after.keys() - before.keys()):
        yield _row("users", "added", {"user": name, "before": "",
                                      "after": _account(after[name])}, True, [ADMINS])
    for name in sorted(before.keys() - after.keys()):
        still = _named(name, head)
        yield _row("users", "removed, still named" if still else "removed",
                   {"user": name, "before": _account(before[name]), "after": ", ".join(still)},
                   bool(still), [ADMINS])
    for name, old, new in _common(before, after):
        if _account(old) != _account(new):
            # Where an id is recorded, approvals are matched by it and the login is a label.
            widens = any(speaks is not None and speaks != was
                         for speaks, was in zip(_identities(new), _identities(old), strict=True))
            yield _row("users", "account changed",
                       {"user": name, "before": _account(old), "after": _account(new)},
                       widens, [ADMINS])


def _identities(user: models.User) -> tuple[tuple[str, str] | None, ...]:
    """What each forge account is matched by (`connc approvals`): its id, else its login."""
    return tuple(("id", str(account_id)) if account_id is not None
                 else ("login", login.lower()) if login else None
                 for login, account_id in ((user.github, user.github_id),
                                           (user.gitlab, user.gitlab_id)))


def _account(user: models.User) -> str:
    """`achen (id 583231)`; a GitLab account after it, as `gitlab achen2 (id 7)`."""
    shown = []
    for prefix, login, account_id in (("", user.github, user.github_id),
                                      ("gitlab ", user.gitlab, user.gitlab_id)):
        if account_id is not None:
            shown.append(f"{prefix}{login} (id {account_id})" if login
                         else f"{prefix}id {account_id}")
        elif login:
            shown.append(f"{prefix}{login}")
    return ", ".join(shown)


def _named(user: str, side: Snapshot) -> list[str]:
    """Where `side` still uses a user's name: as an admin, an owner, a member."""
    named = ["admin in connc.yaml"] if side.config and user in side.config.admins else []
    named += [f"owner of connection {cid}" for cid, c in sorted(side.connections.items())
              if c.owner == user]
    named += [f"owner of pipeline {pid}" for pid, p in sorted(side.pipelines.items())
              if p.owner == user]
    named += [f"member of team {team}" for team, members in sorted(side.teams.items())
              if user in members]
    named += [f"member of connection {cid}" for cid, c in sorted(side.connections.items())
              if any(member == f"user:{user}" for member, _pos in c.members)]
    return named


def _claims(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for pid, old, new in _common(base.pipelines, head.pipelines):
        if old is new and all(base.connections.get(use.connection)
                              is head.connections.get(use.connection) for use in new.uses):
            continue  # its rows depend on it and on the connections it uses, all unchanged
        row = {"pipeline": pid}
        if old.owner != new.owner:
            # Both, as for a connection: the pipeline's bundle (and what later changes to it
            # need) passes from one to the other.
            yield _row("claims", "owner changed", row | {"before": old.owner,
                                                         "after": new.owner},
                       True, [f"user:{old.owner}", f"user:{new.owner}"])
        for role, was, now in _defaults_changed(old, new, base, head):
            yield _row("claims", f"{role} changed", row | {"before": was, "after": now},
                       True, [f"user:{old.owner}"])
        old_teams, new_teams = {t for t, _pos in old.teams}, {t for t, _pos in new.teams}
        for team in sorted(new_teams - old_teams):
            yield _row("claims", "team added", row | {"before": "", "after": team},
                       True, [f"user:{new.owner}"])
        for team in sorted(old_teams - new_teams):
            yield _row("claims", "team removed", row | {"before": team, "after": ""}, False, ())


def _defaults_changed(old: PipelineSummary, new: PipelineSummary, base: Snapshot,
                      head: Snapshot) -> Iterable[tuple[str, str, str]]:
    """(role, connection before or "", connection after) where a pipeline's tools take
    another connection by default (`scope.default_role`: kubectl's context, npm's registry,
    pip's index-url, twine's default repository): render takes the first use of each role, so
    reordering a pipeline's uses, removing the first of two, or a connection taking a role it
    did not have (an npm registry whose `npmScopes` go: its own owner changes it) sends what the
    pipeline fetches or publishes elsewhere, and no grant changes. A role that goes leaves
    the tool its own default, as removing the use does: narrowing, free."""
    was, now = _defaults(old, base), _defaults(new, head)
    for role in sorted(now):
        if was.get(role) != now[role]:
            yield role, was.get(role, ""), now[role]


def _defaults(pipeline: PipelineSummary, side: Snapshot) -> dict[str, str]:
    """Which of its uses each default of a pipeline's tools comes from."""
    found: dict[str, str] = {}
    for use in pipeline.uses:
        connection = side.connections.get(use.connection)
        if connection is None:
            continue
        role = default_role(connection.type, {key: json.loads(value)
                                              for key, value in connection.spec})
        if role is not None:
            found.setdefault(role, use.connection)
    return found


# ---------------------------------------------------------------------------- policy, files


def _policy(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    yield from _sops_rules(base, head)
    yield from _config(base, head)


def _sops_rules(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """Recipients added to a rule widen; so does any change but a recipient removed (a new
    path_regex or order can send a file to a rule with other recipients)."""
    if base.rules is head.rules:
        return  # one .sops.yaml, read once (`snapshot`)
    old, new = base.rules or (), head.rules or ()
    for index in range(max(len(old), len(new))):
        rule = f"creation rule {index + 1}"
        before = old[index] if index < len(old) else None
        after = new[index] if index < len(new) else None
        values = {"file": ".sops.yaml", "field": rule}
        if before is None or after is None:
            yield _row("policy", "rule added" if before is None else "rule removed",
                       values | {"before": "", "after": ""}, True, [ADMINS])
            continue
        for recipient in sorted(after.recipients - before.recipients):
            yield _row("policy", "recipient added",
                       values | {"before": "", "after": shown_recipient(recipient)},
                       True, [ADMINS])
        for recipient in sorted(before.recipients - after.recipients):
            yield _row("policy", "recipient removed",
                       values | {"before": shown_recipient(recipient), "after": ""}, False, ())
        if before.path_regex != after.path_regex:
            yield _row("policy", "path_regex changed",
                       values | {"before": before.path_regex or "", "after": after.path_regex
                                 or ""}, True, [ADMINS])
        if _group_structure(before, after) != _group_structure(after, before):
            # Who must cooperate to decrypt. Fewer groups needed, or keys moved between
            # groups, can let fewer people open the file; only removals and a higher
            # threshold over the same groups are plainly narrower.
            narrower = (after.recipients <= before.recipients and after.threshold >=
                        before.threshold and len(after.groups) == len(before.groups))
            yield _row("policy", "key groups changed",
                       values | {"before": _groups(before), "after": _groups(after)},
                       not narrower, [ADMINS])
        for (name, was), (_name, now) in zip(before.settings, after.settings, strict=True):
            if was != now:
                yield _row("policy", f"{name} changed", values | {"before": was, "after": now},
                           True, [ADMINS])


def _group_structure(rule: Rule, other: Rule) -> tuple[int, int, frozenset[frozenset[str]]]:
    """Who must cooperate, apart from keys added or removed (rows of their own): the
    threshold, the number of groups, and how the keys both sides share are grouped."""
    shared = rule.recipients & other.recipients
    return (rule.threshold, len(rule.groups),
            frozenset(frozenset(group) & shared for group in rule.groups))


def _groups(rule: Rule) -> str:
    return f"{rule.threshold} of {len(rule.groups)} key group{'s' if len(rule.groups) != 1 else ''}"


def _config(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    old, new = base.config, head.config
    if old == new:
        return
    values = {"file": "connc.yaml"}
    before_admins = set(old.admins) if old is not None else set()
    after_admins = set(new.admins) if new is not None else set()
    for admin in sorted(after_admins - before_admins):
        yield _row("policy", "admin added", values | {"field": "admins", "before": "",
                                                      "after": admin}, True, [ADMINS])
    for admin in sorted(before_admins - after_admins):
        yield _row("policy", "admin removed", values | {"field": "admins", "before": admin,
                                                        "after": ""}, False, ())
    # Policies that protect credentials: switching one off widens.
    for field, was, now in (
            ("requireSeals", old is not None and old.require_seals,
             new is not None and new.require_seals),
            ("githubApp.requirePermissions",
             old is not None and old.github_app.require_permissions,
             new is not None and new.github_app.require_permissions)):
        if was != now:
            yield _row("policy", "turned off" if was else "turned on",
                       values | {"field": field, "before": str(was).lower(),
                                 "after": str(now).lower()}, was, [ADMINS])
    before_days = old.expiry_warning_days if old is not None else None
    after_days = new.expiry_warning_days if new is not None else None
    if before_days != after_days:
        yield _row("policy", "changed", values | {"field": "expiryWarningDays",
                                                  "before": str(before_days or ""),
                                                  "after": str(after_days or "")}, False, ())


def _integrity(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """A file whose identity is in doubt at HEAD makes the verdict fail closed: no consent
    makes a symlink or a duplicated id safe, the file must be fixed. At BASE it is listed
    without widening: it counts as absent there, so whatever the change makes of it shows
    as added, and the change that fixes it can pass."""
    for side, snapshot in (("base", base), ("head", head)):
        for relpath, why in sorted(snapshot.doubtful.items()):
            yield _row("integrity", why, {"file": relpath, "at": side}, side == "head",
                       [NOBODY])


def _unread(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    """Files the acceptance predicate refuses. At HEAD, one that render would read fails
    closed: render refuses it today, but review did not judge it, so an admin must (a change
    no row shows is a security bug; this row is the one for a file diff could not read). At
    BASE it is listed only: it counted as absent there, so what HEAD makes of it shows as
    added."""
    for side, snapshot in (("base", base), ("head", head)):
        for relpath, why in sorted(snapshot.unread.items()):
            widens = side == "head" and repository.read_by_render(relpath)
            yield _row("unread", "refused", {"file": relpath, "at": side, "why": why},
                       widens, [ADMINS])
