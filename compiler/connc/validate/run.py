"""`connc validate`: every check of docs/checks.md, keyless unless asked to decrypt.

Per-file checks run in worker processes (parsing dominates and uses both cores); the
cross-file checks then run on the small summaries the workers send back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TypeVar

from connc import gitattributes, repository
from connc.acceptance import Judged
from connc.encryption import load_rules
from connc.findings import Finding, Severity, finding
from connc.repository import ConnectionSummary, PipelineSummary, stem
from connc.schema import models
from connc.sops.recipients import recipient_of_member_key
from connc.sops.rules import CreationRule, prepare_matching
from connc.validate import pool
from connc.validate.crossfile import check_admins, check_repository, unsealed
from connc.validate.files import (
    CheckContext,
    FileResult,
    check_connection,
    check_pipeline,
    prepare_checks,
    read_model,
)
from connc.validate.keyring import Principals

Checker = Callable[[str, CheckContext], FileResult]
M = TypeVar("M", bound=models.Model)

# Below this many files, starting workers costs more than it saves.
PARALLEL_THRESHOLD = 200
# The workers' deadline: a file takes well under a millisecond, so this allows for a machine
# dozens of times slower or busier than a developer's, and still ends a stuck run.
DEADLINE_SECONDS = 60.0
DEADLINE_SECONDS_PER_FILE = 0.02


@dataclasses.dataclass
class Report:
    findings: list[Finding]
    files: int
    connections: list[ConnectionSummary]
    pipelines: list[PipelineSummary]
    # Files the acceptance predicate refuses (an error that needs that file only), with the
    # first such error: render refuses them, and `diff` must not read them as absent.
    refused: dict[str, Finding]
    members: models.Members | None  # whenever its model accepts it
    config: models.Config | None
    rules: tuple[CreationRule, ...] | None  # one tuple from load to report: `Known.rules`
    admin_recipients: frozenset[str]  # connc.yaml's, as sops records them
    results: dict[str, FileResult]  # each connection and pipeline file's own judgement
    rules_found: list[Finding]  # .sops.yaml's own findings


@dataclasses.dataclass(frozen=True)
class Known:
    """Judgements made of the same bytes against the same `.sops.yaml`, `connc.yaml` and day
    (`connc diff`'s files unchanged between its sides), which could not come out otherwise:
    `files` of connection and pipeline files, and `rules`, `.sops.yaml`'s (its creation rules
    and findings) when it is the same file."""

    files: Mapping[str, FileResult]
    rules: tuple[tuple[CreationRule, ...] | None, list[Finding]] | None = None


def validate(root: Path, *, decrypt: bool = False, today: dt.date | None = None,
             jobs: int | None = None, timeout: float | None = None,
             files: repository.Files = repository.DISK,
             known: Known | None = None,
             across_files: bool = True) -> Report:
    """`timeout`: seconds for the decryptions of `decrypt` (default `content.DEFAULT_TIMEOUT`),
    counted from the start of the run. `files`: where the bytes come from (a checkout, or a
    git revision's objects: `repository.Files`). `known`: judgements taken as they are
    (`Known`). `across_files=False` leaves out the checks across files, whose
    findings only validate itself reports."""

    deadline = None
    if decrypt:
        from connc import process
        from connc.validate.content import DEFAULT_TIMEOUT

        deadline = process.Deadline(DEFAULT_TIMEOUT if timeout is None else timeout,
                                    "--timeout")
    found: list[Finding] = []
    refused: dict[str, Finding] = {}

    def judged(relpath: str, findings: Iterable[Finding]) -> None:
        findings = list(findings)
        found.extend(findings)
        first = next((f for f in findings if f.severity is Severity.ERROR), None)
        if first is not None:
            refused.setdefault(relpath, first)

    assert not (decrypt and files is not repository.DISK), "sops decrypts files on disk"
    config, config_judged = _top_level(root, repository.CONFIG_FILE, models.Config, files)
    if config_judged is not None:
        judged(repository.CONFIG_FILE, config_judged.findings)
    if known is not None and known.rules is not None:
        rules, rule_findings = known.rules  # the same tuple: matched by the same index
    else:
        loaded, rule_findings = load_rules(root, files=files)
        rules = tuple(loaded) if loaded is not None else None
    judged(repository.SOPS_CONFIG, rule_findings)
    members, members_judged = _top_level(root, repository.MEMBERS_FILE, models.Members, files)
    if members_judged is None:
        found.append(finding(repository.MEMBERS_FILE, 1, 1, "CONNC011",
                             "members.yaml is missing: owners, teams and scope members cannot "
                             "be checked"))
    else:
        judged(repository.MEMBERS_FILE, members_judged.findings)
    if across_files and config is not None and config_judged is not None \
            and config_judged.document is not None and members is not None:
        found += check_admins(config, config_judged.document, members.users)
    listing = repository.list_files(root, files)
    for listed in listing.findings:
        judged(listed.path, [listed])
    found += gitattributes.findings(root, files=files)
    context = CheckContext(
        root=str(root),
        rules=rules,
        today=today or dt.datetime.now(dt.UTC).date(),
        warning_days=config.expiry_warning_days if config else 30,
        files=files,
    )
    tasks: list[tuple[Checker, str]] = []
    tasks.extend((check_connection, p) for p in listing.connections)
    tasks.extend((check_pipeline, p) for p in listing.pipelines)
    taken = known.files if known is not None else {}
    new = {result.relpath: result for result in
           _run([task for task in tasks if task[1] not in taken], context, jobs)}
    results = {relpath: taken[relpath] if relpath in taken else new[relpath]
               for _checker, relpath in tasks}
    connections, pipelines = [], []
    for result in results.values():
        judged(result.relpath, result.findings)
        if isinstance(result.summary, ConnectionSummary):
            connections.append(result.summary)
        elif isinstance(result.summary, PipelineSummary):
            pipelines.append(result.summary)
    admin = frozenset(recipient_of_member_key(r) for r in config.admin_recipients) if config \
        else frozenset()
    summarised = {c.relpath for c in connections}
    invalid = frozenset(stem(p, repository.CONNECTION_SUFFIX) for p in listing.connections
                        if p not in summarised)
    require_seals = bool(config and config.require_seals)
    if across_files:
        found += check_repository(connections, pipelines, Principals(members), admin,
                                  members_known=members is not None, invalid=invalid,
                                  require_permissions=bool(
                                      config and config.github_app.require_permissions))
        found += unsealed(connections, require_seals)
    if deadline is not None:
        from connc.validate.content import check_contents

        # The acceptance predicate's refusals start no sops: render would never decrypt them.
        found += check_contents(root, [c for c in connections if c.relpath not in refused],
                                require_seals, deadline)
    count = len(tasks) + sum(files.is_file(root / name) for name in
                             (repository.MEMBERS_FILE, repository.CONFIG_FILE,
                              repository.SOPS_CONFIG))
    return Report(sorted(set(found)), count, connections, pipelines, refused, members, config,
                  rules, admin, results, rule_findings)


def _run(tasks: list[tuple[Checker, str]],
         context: CheckContext, jobs: int | None) -> Iterable[FileResult]:
    workers = jobs or os.cpu_count() or 1
    if workers <= 1 or len(tasks) < PARALLEL_THRESHOLD or not hasattr(os, "fork"):
        return [function(relpath, context) for function, relpath in tasks]
    # Forked workers share the already imported modules and the tasks; they start in
    # milliseconds. Chunks keep the messages few; eight per worker balance an uneven load.
    chunk = max(1, len(tasks) // (workers * 8))
    if context.rules is not None:
        prepare_matching(context.rules)
    prepare_checks()
    context.files.settle()  # the workers read what is here when they are forked
    # Objects alive now are the workers' inherited heap: frozen, the workers' collector skips
    # them instead of traversing (and so copying) those pages on every full collection.
    gc.freeze()
    try:
        return pool.run(partial(_dispatch, context=context), tasks, workers=workers,
                        chunk=chunk, seconds=DEADLINE_SECONDS
                        + DEADLINE_SECONDS_PER_FILE * len(tasks))
    finally:
        gc.unfreeze()


def _dispatch(task: tuple[Checker, str],
              context: CheckContext) -> FileResult:
    function, relpath = task
    return function(relpath, context)


def _top_level(root: Path, relpath: str, model: type[M],
               files: repository.Files) -> tuple[M | None, Judged | None]:
    """members.yaml or connc.yaml, when present: its model (whenever the model accepts it,
    so that other checks can use it) and the judgement of the file."""
    if not repository.present(root / relpath, files):
        return None, None
    return read_model(root, relpath, model, files)
