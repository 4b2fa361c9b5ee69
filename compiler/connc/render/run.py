"""Render one pipeline's bundle: check, decrypt, mint, write, in that order.

Everything that can refuse without a key (the pipeline's file, its team claims, each used
connection's file, scope) runs before the first decryption, and only the pipeline's own
connections are read. Render runs on every pipeline start, so it checks files against the
schemas generated from the models (`render.inputs`) instead of loading pydantic, and the
decryptions (sops processes, `credentials.CONCURRENT` at a time) run while the writers are
being imported. One deadline (`--timeout`, `DEFAULT_TIMEOUT` seconds) bounds every
decryption of the run together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from connc import credentials, process, repository, seal
from connc.errors import RenderError, SopsError, UsageError
from connc.findings import suggest
from connc.render import inputs
from connc.render.bundle import check_target
from connc.render.context import Output, Resolved
from connc.schema.policy import control_character
from connc.scope import ConnectionScope, PipelineScope, decide
from connc.sops import binary, keys

# Seconds for the whole run. A render decrypts a pipeline's few connections in well under a
# second; this leaves room for a slow KMS and ends a hung one within a CI step's patience.
DEFAULT_TIMEOUT = 120.0
TIMEOUT_RANGE = (1.0, 3600.0)  # what --timeout takes (the CLI and the plain-line parser)


def command(pipeline_id: str, repo: str | None, out: str | None, output_format: str,
            timeout: float = DEFAULT_TIMEOUT) -> None:
    """`connc render`: check the options, render, print in the chosen format."""
    from connc.render.output import check_format, emit

    deadline = process.Deadline(timeout, "--timeout")
    repository.check_id(pipeline_id, "pipeline")
    check_format(output_format)  # before anything is decrypted, minted or written
    output, manifest = render(repository.find_root(repo), pipeline_id,
                              Path(out) if out else None, deadline)
    emit(output, manifest, output_format)


def default_out(pipeline_id: str) -> Path:
    """$RUNNER_TEMP/connc/ID, else ID inside a new private directory of the system temp dir.

    The system temp dir is shared by every local user, so no name there may be known before
    it is ours: the staging directory beside OUT would reveal OUT's name before the rename,
    and another user could create it first. So the name in the temp dir is a mkdtemp
    directory (0700 from its creation, random name) and the bundle and its staging go inside,
    where nobody else can list or create anything. A render that writes no bundle removes it
    at exit; `connc clean` removes it with the bundle.
    """
    runner_temp = os.environ.get("RUNNER_TEMP")
    if runner_temp:
        return Path(runner_temp) / "connc" / pipeline_id
    from connc.render.bundle import private_parent

    return private_parent(pipeline_id) / pipeline_id


def render(root: Path, pipeline_id: str, out: Path | None,
           deadline: process.Deadline) -> tuple[Output, dict[str, object]]:
    pipeline_file = repository.pipeline_path(pipeline_id)
    if not repository.present(root / pipeline_file):
        raise RenderError(f"pipeline `{pipeline_id}` does not exist ({pipeline_file})"
                          f"{suggest(pipeline_id, repository.ids(root, 'pipeline'))}")
    out = _target(root, out or default_out(pipeline_id))
    pipeline = inputs.read(root, pipeline_file, "Pipeline")
    _check_team_claims(root, pipeline)
    settings = inputs.policy(root)
    connections = _connections(root, pipeline, settings)
    inputs.refuse_checkout(root, [pipeline_file, *repository.TOP_FILES,
                                  *(repository.connection_path(cid) for cid, _ in connections)])
    binary.executable()  # a missing binary is an environment error, before any process starts
    # One sops process per connection, a few at a time; while the first decrypt, this
    # process imports the writers. Leaving the block reaps them (kills any still running
    # after a failure or an interrupt).
    with credentials.Openings(root, [(repository.connection_path(cid), seal.view_of(data))
                                     for cid, data in connections],
                              deadline=deadline, require_seal=settings.require_seals) as pending:
        from connc.render import compose

        resolved = _collect(pipeline, connections, pending)
    return compose.write_bundle(out, pipeline_id, resolved)


def _target(root: Path, out: Path) -> Path:
    """OUT as an absolute path, refused before anything is decrypted or minted if a bundle
    may not go there (commit checks it again, just before the rename)."""
    out = out.absolute()
    if control_character(str(out)):  # $GITHUB_ENV lines
        raise RenderError("the --out path contains a control character; refused")
    # resolve(): a symlink (or `..`) must not take the bundle into the repository.
    if out.resolve().is_relative_to(root.resolve()):
        raise RenderError(f"{out} is inside the repository, where `git add -A` would commit "
                          f"credentials; choose an --out outside it")
    check_target(out)
    return out


def _check_team_claims(root: Path, pipeline: dict[str, Any]) -> None:
    """A pipeline reaches team-scoped connections only through teams its owner is in."""
    if not repository.present(root / repository.MEMBERS_FILE):
        raise RenderError(f"{repository.MEMBERS_FILE} is missing; it is needed to check the "
                          f"pipeline's owner and teams")
    metadata = pipeline["metadata"]
    owner = metadata["owner"]
    # All of it, as validate reads it: a file validate refuses is never half used here.
    members = inputs.read(root, repository.MEMBERS_FILE, "Members")
    if owner not in members["users"]:
        raise RenderError(f"pipeline `{metadata['id']}`: owner `{owner}` is not a user in "
                          f"{repository.MEMBERS_FILE}")
    for team in metadata["teams"]:
        if team not in members["teams"] or owner not in members["teams"][team]["members"]:
            raise RenderError(f"pipeline `{metadata['id']}` claims team `{team}`, which its "
                              f"owner `{owner}` is not a member of")


def _connections(root: Path, pipeline: dict[str, Any],
                 settings: inputs.Policy) -> list[tuple[str, dict[str, Any]]]:
    """(id, checked document) of each connection used; scope decided keyless."""
    metadata = pipeline["metadata"]
    scope = PipelineScope(metadata["id"], metadata["owner"], tuple(metadata["teams"]))
    result = []
    for use in pipeline["uses"]:
        connection_id = use["connection"]
        relpath = repository.connection_path(connection_id)
        if not repository.present(root / relpath):
            raise RenderError(f"pipeline `{metadata['id']}` uses connection `{connection_id}`, "
                              f"which does not exist ({relpath})")
        data = inputs.read_connection(root, connection_id, settings)
        denial = decide(scope, ConnectionScope(
            connection_id, data["metadata"]["owner"], data["scope"]["visibility"],
            tuple(data["scope"]["members"])))
        if denial:
            raise RenderError(f"{denial.code} {denial.message}")
        result.append((connection_id, data))
    return result


def _collect(pipeline: dict[str, Any], connections: list[tuple[str, dict[str, Any]]],
             pending: credentials.Openings) -> list[Resolved]:
    uses = {use["connection"]: use for use in pipeline["uses"]}
    resolved, errors, no_key = [], [], []
    for (connection_id, data), opening in zip(connections, pending, strict=True):
        what = f"connection `{connection_id}` ({opening.relpath})"
        try:
            opened = opening.result()
        except keys.NotARecipient as error:
            no_key.append(error)
            continue
        except SopsError as error:
            errors.append(f"{what}: cannot decrypt: {error.message}")
            continue
        if opened.problems:
            errors.append(f"{what}: " + "; ".join(m for _f, _c, m in opened.problems))
            continue
        resolved.append(Resolved(connection_id, data["spec"], uses[connection_id],
                                 opened.values))
    if no_key:  # this runner holds no key for them: an environment error (exit 2), said once
        raise UsageError("\n".join([keys.summary(no_key), *errors]))
    if errors:
        raise RenderError("; ".join(errors))
    return resolved
