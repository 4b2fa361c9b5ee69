"""Render one pipeline's bundle: check, decrypt, mint, write — in that order.

Everything that can refuse without a key (the pipeline's file, its team claims, each used
connection's file, scope) runs before the first decryption; only the pipeline's own
connections are read and decrypted, in parallel.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from connc import models, repository, sops
from connc.content import credential_problems
from connc.errors import RenderError, SopsError
from connc.filecheck import CheckContext, check_single, inspect_connection, inspect_pipeline
from connc.findings import Finding, Severity
from connc.render import docker, git, kube, packages
from connc.render.bundle import commit
from connc.render.context import Output, Resolved
from connc.render.envfile import env_file
from connc.scope import ConnectionScope, PipelineScope, decide
from connc.secrets import Secret

WRITERS = (git, docker, kube, packages)  # each: TYPES and write(items, output)


@dataclasses.dataclass
class Rendered:
    output: Output
    manifest: dict[str, object]


def default_out(pipeline_id: str) -> Path:
    runner_temp = os.environ.get("RUNNER_TEMP")
    if runner_temp:
        return Path(runner_temp) / "connc" / pipeline_id
    return Path(tempfile.mkdtemp(prefix=f"connc-{pipeline_id}-"))


def render(root: Path, pipeline_id: str, out: Path | None) -> Rendered:
    if not (root / repository.pipeline_path(pipeline_id)).is_file():
        raise RenderError(f"pipeline `{pipeline_id}` does not exist "
                          f"({repository.pipeline_path(pipeline_id)})")
    context = _context(root)
    pipeline = _pipeline(pipeline_id, context)
    _check_team_claims(root, pipeline)
    connections = _connections(pipeline, context)
    out = (out or default_out(pipeline_id)).absolute()
    if out.is_relative_to(root):
        raise RenderError(f"{out} is inside the repository, where `git add -A` would commit "
                          f"credentials; choose an --out outside it")
    resolved = _decrypt_all(root, pipeline, connections)
    _mint_tokens(resolved)
    output = Output(out=out, pipeline=pipeline_id)
    for writer in WRITERS:
        items = [r for r in resolved if r.connection.spec.type in writer.TYPES]
        if items:
            writer.write(items, output)
    output.files.add("env", env_file(output))
    manifest = _manifest(pipeline_id, output)
    import json

    output.files.add("manifest.json", json.dumps(manifest, indent=2) + "\n")
    commit(out, output.files)
    return Rendered(output, manifest)


def _context(root: Path) -> CheckContext:
    from connc.validate import load_rules

    rules, _found = load_rules(root)  # problems in .sops.yaml are validate's to report
    config = None
    if (root / repository.CONFIG_FILE).is_file():
        parsed, _doc, found = check_single(root, repository.CONFIG_FILE, "Config", models.Config)
        _refuse(found, "connc.yaml")
        config = parsed if isinstance(parsed, models.Config) else None
    return CheckContext(root=str(root), rules=tuple(rules) if rules is not None else None,
                        today=dt.datetime.now(dt.timezone.utc).date(),
                        warning_days=config.expiry_warning_days if config else 30)


def _refuse(found: list[Finding] | tuple[Finding, ...], what: str) -> None:
    errors = [f for f in found if f.severity is Severity.ERROR]
    if errors:
        details = "; ".join(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise RenderError(f"{what} is not valid, run `connc validate`: {details}{more}")


def _pipeline(pipeline_id: str, context: CheckContext) -> models.Pipeline:
    result, pipeline = inspect_pipeline(repository.pipeline_path(pipeline_id), context)
    _refuse(result.findings, f"pipeline `{pipeline_id}`")
    assert pipeline is not None
    return pipeline


def _check_team_claims(root: Path, pipeline: models.Pipeline) -> None:
    """A pipeline reaches team-scoped connections only through teams its owner is in."""
    members, _document, found = check_single(root, repository.MEMBERS_FILE, "Members",
                                             models.Members)
    _refuse(found, repository.MEMBERS_FILE)
    if not isinstance(members, models.Members):
        raise RenderError(f"{repository.MEMBERS_FILE} is missing; it is needed to check "
                          f"the pipeline's owner and teams")
    owner = pipeline.metadata.owner
    if owner not in members.users:
        raise RenderError(f"pipeline `{pipeline.metadata.id}`: owner `{owner}` is not a user "
                          f"in {repository.MEMBERS_FILE}")
    for team in pipeline.metadata.teams:
        if team not in members.teams or owner not in members.teams[team].members:
            raise RenderError(f"pipeline `{pipeline.metadata.id}` claims team `{team}`, which "
                              f"its owner `{owner}` is not a member of")


def _connections(pipeline: models.Pipeline,
                 context: CheckContext) -> list[tuple[str, models.Connection]]:
    pipeline_scope = PipelineScope(pipeline.metadata.id, pipeline.metadata.owner,
                                   tuple(pipeline.metadata.teams))
    root = Path(context.root)
    result = []
    for use in pipeline.uses:
        relpath = repository.connection_path(use.connection)
        if not (root / relpath).exists():
            raise RenderError(f"pipeline `{pipeline.metadata.id}` uses connection "
                              f"`{use.connection}`, which does not exist ({relpath})")
        problem = repository.inside(root, relpath)
        if problem:
            raise RenderError(problem.message, path=relpath)
        checked, connection = inspect_connection(relpath, context)
        _refuse(checked.findings, f"connection `{use.connection}`")
        assert connection is not None
        denial = decide(pipeline_scope, ConnectionScope(
            connection.metadata.id, connection.metadata.owner, connection.scope.visibility,
            tuple(connection.scope.members)))
        if denial:
            raise RenderError(f"{denial.code} {denial.message}")
        result.append((relpath, connection))
    return result


def _decrypt_all(root: Path, pipeline: models.Pipeline,
                 connections: list[tuple[str, models.Connection]]) -> list[Resolved]:
    sops.binary()  # fail on a missing binary before starting threads
    uses = {use.connection: use for use in pipeline.uses}

    def decrypt(item: tuple[str, models.Connection]) -> Resolved:
        relpath, connection = item
        document = sops.decrypt(root, relpath)
        credential = document.get("credential")
        if not isinstance(credential, dict):
            raise RenderError("the decrypted file has no credential", path=relpath)
        problems = credential_problems(connection.spec.type, credential)
        if problems:
            raise RenderError("; ".join(message for _f, _c, message in problems), path=relpath)
        secrets = {k: v for k, v in credential.items() if isinstance(v, Secret)}
        return Resolved(connection, uses[connection.metadata.id], secrets)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(connections)))) as pool:
        futures = [pool.submit(decrypt, item) for item in connections]
        results, errors = [], []
        for future in futures:
            try:
                results.append(future.result())
            except (SopsError, RenderError) as error:
                errors.append(str(error))
    if errors:
        raise RenderError("cannot decrypt: " + "; ".join(errors))
    return results


def _mint_tokens(resolved: list[Resolved]) -> None:
    apps = [r for r in resolved if isinstance(r.connection.spec, models.GitHubAppSpec)]
    if not apps:
        return
    from connc.render.github_tokens import mint

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        list(pool.map(mint, apps))


def _manifest(pipeline_id: str, output: Output) -> dict[str, object]:
    from connc import __version__
    from connc.render.bundle import MARKER

    return {
        "kind": MARKER,
        "version": 1,
        "connc": __version__,
        "pipeline": pipeline_id,
        "createdAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "connections": list(output.manifest.values()),
        "files": sorted(output.files.files) + ["manifest.json"],
        "env": sorted(k for k in output.env if not k.startswith("connc:")),
    }
