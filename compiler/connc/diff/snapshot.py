"""One side of `connc diff`: a repository read the way `validate` reads it, keyed by id.

Both sides are read exactly as render reads them: the same reader and the same acceptance
predicate (`acceptance`), so a file is refused here exactly when render would refuse it.
Such a file is listed under "refused" with the first reason; whatever of it could still be
read (a connection whose model is valid but whose encryption drifted) is compared as well,
and what could not counts as absent on that side. At HEAD, a refused file that render would
read is a widening row that needs an admin (`compare._refused`): review never passes over a
file it could not judge. A file whose identity cannot be trusted (a symlink, an id that does
not match its file name, an id used twice) puts the side itself in doubt, and the verdict
fails closed on it (`integrity`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from connc import repository
from connc.findings import Finding
from connc.repository import ConnectionSummary, PipelineSummary
from connc.schema import models
from connc.scope import GrantTable
from connc.sops.recipients import recipient_of_member_key
from connc.sops.rules import CreationRule
from connc.validate.files import FileResult
from connc.validate.keyring import Principals
from connc.validate.run import Known, validate

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
    groups: tuple[tuple[str, ...], ...]  # key groups, order-free (sops.recipients.KeyGroups)
    threshold: int  # groups needed to decrypt


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One side of the diff: what `validate` could read, keyed by id."""

    connections: dict[str, ConnectionSummary]
    pipelines: dict[str, PipelineSummary]
    grants: GrantTable  # pipeline -> connection -> state, a row built when asked for
    members: models.Members | None
    config: models.Config | None
    rules: tuple[Rule, ...] | None  # None: no readable .sops.yaml
    principals: dict[str, str]  # recipient -> who it belongs to, for display
    unread: dict[str, str]  # relpath -> why the acceptance predicate refuses it
    doubtful: dict[str, str]  # relpath -> why its identity is in doubt (fails closed)
    files: int
    # What another side may take as its own judgement of a file (`snapshot`'s `previous`):
    # (relpath, the bytes' identity) -> the judgement; and what every judgement here depended
    # on besides the file (the identities of .sops.yaml and connc.yaml, and the day).
    judged: dict[tuple[str, bytes], FileResult] = dataclasses.field(default_factory=dict)
    judged_against: tuple[object, ...] = ()
    rules_judged: tuple[tuple[CreationRule, ...] | None, list[Finding]] | None = None

    @property
    def teams(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(team.members)
                for name, team in (self.members.teams.items() if self.members else ())}


def snapshot(root: Path, skipped: dict[str, str], *,
             files: repository.Files = repository.DISK, today: dt.date | None = None,
             identities: dict[str, bytes] | None = None,
             previous: Snapshot | None = None) -> Snapshot:
    """`skipped`: paths of a revision that it does not hold (symlinks, submodules). `files`:
    where its bytes are (`diff.revisions.Blobs` for a revision), and `identities` what each
    file it holds is (git's object ids; None for a checkout, whose files have none).
    `previous`: the other side, read first: a file that holds the same bytes as there,
    judged against the same .sops.yaml, connc.yaml and day, is not judged again (its
    judgement could not come out otherwise)."""
    today = today or dt.datetime.now(dt.UTC).date()
    identities = identities if identities is not None else {}
    # b"": absent, an identity too; None: present and unknown, so nothing is taken as judged.
    against = tuple(identities.get(relpath, None if files.lexists(root / relpath) else b"")
                    for relpath in (repository.SOPS_CONFIG, repository.CONFIG_FILE)) + (today,)
    known = None
    if previous is not None and None not in against and previous.judged_against == against:
        known = Known({relpath: result for (relpath, identity), result in previous.judged.items()
                       if identities.get(relpath) == identity}, previous.rules_judged)
    report = validate(root, files=files, today=today, known=known, across_files=False)
    doubtful = {relpath: why for relpath, why in skipped.items()}
    for found in report.findings:
        if found.code in _IDENTITY:
            # A .gitattributes is in doubt by the line that rewrites (the files are read).
            where = f"{found.path}:{found.line}" if found.code == "CONNC017" else found.path
            doubtful.setdefault(where, _IDENTITY[found.code])
    connections = [c for c in report.connections if c.relpath not in doubtful]
    pipelines = [p for p in report.pipelines if p.relpath not in doubtful]
    refused = {relpath: f"{first.code} at line {first.line}"
               for relpath, first in report.refused.items() if relpath not in doubtful}
    # As for connections, what the model accepted is compared even when another check
    # refuses the file (its row says so): a rule or a team change still shows as itself.
    members = report.members if repository.MEMBERS_FILE not in doubtful else None
    config = report.config if repository.CONFIG_FILE not in doubtful else None
    return Snapshot(
        connections={c.id: c for c in connections},
        pipelines={p.id: p for p in pipelines},
        grants=GrantTable(connections, pipelines), members=members, config=config,
        rules=_rules(report.rules, previous) if repository.SOPS_CONFIG not in doubtful
        else None,
        principals=_principals(members, config, pipelines),
        unread=refused, doubtful=doubtful, files=report.files,
        judged={(relpath, identities[relpath]): result
                for relpath, result in report.results.items() if relpath in identities},
        judged_against=against, rules_judged=(report.rules, report.rules_found),
    )


def _rules(rules: tuple[CreationRule, ...] | None,
           previous: Snapshot | None) -> tuple[Rule, ...] | None:
    if rules is None:
        return None
    if previous is not None and previous.rules is not None \
            and previous.rules_judged is not None and previous.rules_judged[0] is rules:
        return previous.rules  # one .sops.yaml, judged once: one object, `compare` skips it
    return tuple(Rule(rule.path_regex.pattern if rule.path_regex is not None else None,
                      rule.recipients,
                      (("encrypted_regex", str(rule.encrypted_regex)),
                       ("mac_only_encrypted", str(rule.mac_only_encrypted).lower())),
                      *rule.key_groups.canonical())
                 for rule in rules)


def _principals(members: models.Members | None, config: models.Config | None,
                pipelines: list[PipelineSummary]) -> dict[str, str]:
    owners: dict[str, list[str]] = {}

    # Who declares each key (a team its own keys only), as validate names holders.
    for principal, keys in Principals(members).declared():
        for key in keys:
            owners.setdefault(key, []).append(principal)
    if config:
        for key in config.admin_recipients:
            owners.setdefault(recipient_of_member_key(key), []).append("admin")
    for pipeline in pipelines:  # summaries hold recipients in recipient_id form already
        for recipient in pipeline.recipients:
            owners.setdefault(recipient, []).append(f"pipeline:{pipeline.id}")
    return {recipient: ", ".join(names) for recipient, names in owners.items()}
