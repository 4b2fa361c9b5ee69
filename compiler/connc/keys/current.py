"""The repository's keys as they are now: read as validate reads it, keyless."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from connc import repository
from connc.errors import Refused
from connc.findings import Finding, Severity
from connc.repository import ConnectionSummary
from connc.validate.keyring import Keyring, Principals
from connc.validate.run import Report, validate


@dataclasses.dataclass(frozen=True)
class Current:
    root: Path
    report: Report
    keyring: Keyring
    connections: dict[str, ConnectionSummary]  # by id
    unread: list[str]  # connection and pipeline files that could not be read (their errors)


def read(root: Path) -> Current:
    report = validate(root)
    keyring = Keyring(report.connections, report.pipelines, Principals(report.members),
                      report.admin_recipients)
    listing = repository.list_files(root)
    summarised = {c.relpath for c in report.connections} | {p.relpath for p in report.pipelines}
    unread = [p for p in [*listing.connections, *listing.pipelines] if p not in summarised]
    return Current(root, report, keyring, {c.id: c for c in report.connections}, unread)


# Errors that make a derivation of keys wrong, besides files that could not be read: an id
# that names two files, and any error in the top-level files (an admin key lost to a broken
# connc.yaml would be removed from every file). Anything else — a use that scope denies, a
# stray recipient, a pipeline that cannot decrypt, drift — a sync derives around or repairs.
_BLOCKING = {"CONNC106"}


def check_complete(current: Current, ids: list[str]) -> None:
    """Refuse (exit 1) when the keys cannot be derived from every file they depend on:
    members.yaml, connc.yaml, .sops.yaml, every pipeline, and the selected connections. A
    pipeline file left out would lose its runner key from every file it uses."""
    report = current.report
    problems: list[Finding] = [
        f for f in report.findings if f.severity is Severity.ERROR and (
            f.code in _BLOCKING or f.path in (repository.MEMBERS_FILE, repository.CONFIG_FILE,
                                              repository.SOPS_CONFIG))]
    unread = [p for p in current.unread if p.startswith(f"{repository.PIPELINES_DIR}/")]
    missing = [i for i in ids if i not in current.connections]
    reasons = [f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in problems[:5]]
    if len(problems) > 5:
        reasons.append(f"and {len(problems) - 5} more")
    reasons += [f"{p} could not be read" for p in unread]
    reasons += [f"{repository.connection_path(i)} could not be read" for i in missing]
    if report.members is None and not any(f.path == repository.MEMBERS_FILE for f in problems):
        reasons.append(f"{repository.MEMBERS_FILE} is missing")
    if reasons:
        raise Refused("the keys cannot be derived until these are fixed (`connc validate` "
                      "shows them all); nothing was changed:\n  " + "\n  ".join(reasons))
