"""One side of `connc diff`: a repository read the way `validate` reads it, keyed by id.

Both sides are read exactly as render reads them (spec 5.1): the same reader, the same
layout, the same refusal of symlinks. What validate rejects, render refuses, so it grants
nothing on that side: such a file counts as absent there and is listed under "Not read".
Treating it as absent keeps the verdict fail-closed: the change that repairs such a file shows
its grants as added. A file whose identity cannot be trusted (a symlink, an id that does not
match its file name, an id used twice) is more than unread: the side itself is in doubt, and
the verdict fails closed on it (`integrity`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from connc import encryption, repository
from connc.repository import ConnectionSummary, PipelineSummary
from connc.schema import models
from connc.scope import grant_states
from connc.sopsmeta import recipient_of_member_key
from connc.validate.files import check_single
from connc.validate.run import validate

M = TypeVar("M", bound=models.Model)

# Findings that put a file's identity in doubt: render would refuse it, but which file a
# reviewer thinks is which may not be what render reads. (Two files with one id are always
# one file whose id does not match its name: render reads `pipelines.d/ID.yaml`, the other
# is the doubtful one.)
_IDENTITY = {"CONNC007": "a symlink", "CONNC105": "its id does not match its file name",
             "CONNC016": repository.NAME_IN_DOUBT,
             "CONNC017": "makes git rewrite connc files on checkout or export"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """A `.sops.yaml` creation rule as compared: what decides who can decrypt which file."""

    path_regex: str | None
    recipients: frozenset[str]
    settings: tuple[tuple[str, str], ...]  # encrypted_regex, mac_only_encrypted
    groups: tuple[tuple[str, ...], ...]  # key groups, order-free (sopsmeta.KeyGroups)
    threshold: int  # groups needed to decrypt


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One side of the diff: what `validate` could read, keyed by id."""

    connections: dict[str, ConnectionSummary]
    pipelines: dict[str, PipelineSummary]
    grants: dict[tuple[str, str], str]  # (pipeline, connection) -> state
    members: models.Members | None
    config: models.Config | None
    rules: tuple[Rule, ...] | None  # None: no readable .sops.yaml
    principals: dict[str, str]  # recipient -> who it belongs to, for display
    unread: dict[str, str]  # relpath -> why it was not read
    doubtful: dict[str, str]  # relpath -> why its identity is in doubt (fails closed)
    files: int

    @property
    def teams(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(team.members)
                for name, team in (self.members.teams.items() if self.members else ())}


def snapshot(root: Path, skipped: dict[str, str]) -> Snapshot:
    """`skipped`: paths of a revision that were not written out (symlinks, submodules)."""
    report = validate(root)
    doubtful = {relpath: why for relpath, why in skipped.items()}
    for found in report.findings:
        if found.code in _IDENTITY:
            # A .gitattributes is in doubt by the line that rewrites (the files are read).
            where = f"{found.path}:{found.line}" if found.code == "CONNC017" else found.path
            doubtful.setdefault(where, _IDENTITY[found.code])
    connections = [c for c in report.connections if c.relpath not in doubtful]
    pipelines = [p for p in report.pipelines if p.relpath not in doubtful]
    read = {c.relpath for c in connections} | {p.relpath for p in pipelines}
    listing = repository.list_files(root)
    unread = {p: "has errors" for p in listing.connections + listing.pipelines
              if p not in read and p not in doubtful}
    members = _parsed(root, repository.MEMBERS_FILE, "Members", models.Members, unread,
                      doubtful)
    config = _parsed(root, repository.CONFIG_FILE, "Config", models.Config, unread, doubtful)
    return Snapshot(
        connections={c.id: c for c in connections},
        pipelines={p.id: p for p in pipelines},
        grants=grant_states(connections, pipelines), members=members, config=config,
        rules=_rules(root, unread, doubtful),
        principals=_principals(members, config, pipelines),
        unread=unread, doubtful=doubtful, files=report.files,
    )


def _parsed(root: Path, relpath: str, kind: str, model: type[M], unread: dict[str, str],
            doubtful: dict[str, str]) -> M | None:
    if not repository.present(root / relpath) or relpath in doubtful:
        return None
    parsed, _document, _found = check_single(root, relpath, kind, model)
    if isinstance(parsed, model):
        return parsed
    unread.setdefault(relpath, "has errors")
    return None


def _rules(root: Path, unread: dict[str, str],
           doubtful: dict[str, str]) -> tuple[Rule, ...] | None:
    if not repository.present(root / repository.SOPS_CONFIG) \
            or repository.SOPS_CONFIG in doubtful:
        return None
    rules, _found = encryption.load_rules(root)
    if rules is None:
        unread.setdefault(repository.SOPS_CONFIG, "has errors")
        return None
    return tuple(Rule(rule.path_regex.pattern if rule.path_regex is not None else None,
                      rule.recipients,
                      (("encrypted_regex", str(rule.encrypted_regex)),
                       ("mac_only_encrypted", str(rule.mac_only_encrypted).lower())),
                      *rule.key_groups.canonical())
                 for rule in rules)


def _principals(members: models.Members | None, config: models.Config | None,
                pipelines: list[PipelineSummary]) -> dict[str, str]:
    owners: dict[str, list[str]] = {}

    def add(keys: Iterable[str], principal: str) -> None:
        for key in keys:
            owners.setdefault(recipient_of_member_key(key), []).append(principal)

    if members:
        for name, user in members.users.items():
            add(user.recipients, f"user:{name}")
        for name, team in members.teams.items():
            add(team.recipients, f"team:{name}")
    if config:
        add(config.admin_recipients, "admin")
    for pipeline in pipelines:  # summaries hold recipients in recipient_id form already
        for recipient in pipeline.recipients:
            owners.setdefault(recipient, []).append(f"pipeline:{pipeline.id}")
    return {recipient: ", ".join(names) for recipient, names in owners.items()}
