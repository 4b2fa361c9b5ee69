"""`connc check --reach`: what each credential opens, next to what its pipelines use.

The connections are selected, read, decrypted and seal-checked exactly as `connc check` does
(`run.each_connection`), then each type's `reach` asks its service (see `check.reach`). What
pipelines use comes from pipelines.d, read as render reads it; scope of use is decided as
render decides it, so a pipeline that lists a connection it may not use gets nothing.

One deadline, `--timeout` seconds after the run starts, bounds every request and tool run of
the whole run (a minted GitHub token is still revoked after it: `http.detached`). Every
string a service sent is printed only after the credential, and anything the run sent with
it, is redacted from it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from connc import http, process, repository
from connc.check.probe import Context
from connc.check.reach import Ask, Reacher, Use, redacted
from connc.check.reach_report import Row, as_json, as_text, counts
from connc.check.run import FAILED, NOT_CHECKED, OK, Outcome, each_connection, select
from connc.errors import ConncError, ExitCode
from connc.render import inputs
from connc.render.context import Resolved
from connc.schema import connection_types
from connc.scope import ConnectionScope, PipelineScope, decide

# Each type's probe module, which also asks what its credential reaches.
REACHERS: dict[str, Reacher] = {name: cast(Reacher, module)
                                for name, module in connection_types.modules("probe").items()}


@dataclasses.dataclass(frozen=True)
class PipelineUse:
    """A `uses` entry, with the pipeline's scope (decided against each connection later)."""

    scope: PipelineScope
    entry: dict[str, Any]


def run(root: Path, ids: Sequence[str], output_format: str, timeout: float, branches: bool,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> ExitCode:
    """The command: ask, report, and the exit code (0; 1 when a connection failed)."""
    selected = select(root, ids)
    uses, unreadable = pipeline_uses(root)
    rows = reach_all(root, selected, uses, timeout=timeout, branches=branches)
    (as_json if output_format == "json" else as_text)(rows, out)
    tally = counts(rows)
    print(f"connc: {tally[OK]} asked, {tally[FAILED]} failed, {tally[NOT_CHECKED]} not checked; "
          f"{tally['warnings']} warnings", file=err)
    if unreadable:
        print(f"connc: {', '.join(unreadable)} cannot be read; what those pipelines use is not "
              f"counted (run `connc validate`)", file=err)
    if not rows:
        print("connc: no connections to check", file=err)
    elif all(row.outcome.status == NOT_CHECKED for row in rows):
        print("connc: no connection could be decrypted here; set a sops key "
              "(SOPS_AGE_KEY_FILE, ...) that is one of their recipients", file=err)
        return ExitCode.USAGE
    return ExitCode.FINDINGS if tally[FAILED] else ExitCode.OK


def reach_all(root: Path, selected: Sequence[str], uses: dict[str, list[PipelineUse]], *,
              timeout: float, branches: bool) -> list[Row]:
    """One row per selected connection, asked in parallel under one deadline."""
    run_deadline = process.Deadline(timeout, "--timeout")  # decryptions included

    def act(resolved: Resolved, data: dict[str, Any], workdir: Path,
            cancel: process.Cancel) -> Row:
        context = Context(workdir, timeout, run_deadline)
        ask = Ask(branches, tuple(_use(use, data) for use in uses.get(resolved.id, ())))
        with http.limits(deadline=run_deadline):
            found = REACHERS[resolved.type].reach(resolved, context, ask)
        secrets = {value.reveal() for value in resolved.credential.values()} | context.sent
        shown = redacted(found, secrets)
        return Row(Outcome(resolved.id, resolved.type, OK, shown.summary, shown.target), shown)

    return each_connection(root, selected, act, Row, deadline=run_deadline)


def pipeline_uses(root: Path) -> tuple[dict[str, list[PipelineUse]], list[str]]:
    """Each connection's `uses` entries in pipelines.d, and the pipeline files that cannot be
    read (validate names why)."""
    found: dict[str, list[PipelineUse]] = {}
    unreadable = []
    for relpath in repository.list_files(root).pipelines:
        try:
            pipeline = inputs.read(root, relpath, "Pipeline")
        except ConncError:
            unreadable.append(relpath)
            continue
        metadata = pipeline["metadata"]
        scope = PipelineScope(metadata["id"], metadata["owner"], tuple(metadata["teams"]))
        for entry in pipeline["uses"]:
            found.setdefault(entry["connection"], []).append(PipelineUse(scope, entry))
    return found, unreadable


def _use(use: PipelineUse, data: dict[str, Any]) -> Use:
    connection = ConnectionScope(data["metadata"]["id"], data["metadata"]["owner"],
                                 data["scope"]["visibility"], tuple(data["scope"]["members"]))
    repositories = use.entry.get("repositories")
    permissions = use.entry.get("permissions")
    return Use(use.scope.id, decide(use.scope, connection) is None,
               tuple(repositories) if repositories is not None else None,
               dict(permissions) if permissions is not None else None,
               bool(use.entry.get("refresh")))
