"""From decrypted connections to the bundle on disk: mint tokens, run the writers, commit."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

from connc.render import github_tokens
from connc.render.bundle import MARKER, commit
from connc.render.clean import discard, sweep, tell
from connc.render.context import Output, Resolved, Writer
from connc.render.envfile import env_file
from connc.schema import connection_types
from connc.schema.policy import secretless

if TYPE_CHECKING:
    from connc.identity.ci import Source

def write_bundle(out: Path, pipeline_id: str, resolved: list[Resolved], *,
                 identity: Source | None = None) -> tuple[Output, dict[str, object]]:
    """`identity`: where secretless connections get the job's ID token (`connc check` may
    pass a token file); by default, the CI job this process runs in."""
    # Before minting: a staging directory a killed render of OUT left holds live tokens
    #; this render removes it, whatever becomes of its own bundle.
    tell(sweep(out, quick=True))
    _exchange(resolved, identity)  # before minting: a refusal here leaves nothing to revoke
    github_tokens.mint_all(resolved)
    try:
        output = Output(out=out, pipeline=pipeline_id)
        for item in resolved:  # the ID tokens sent: not in the bundle, masked all the same
            for spent in item.exchanged.spent if item.exchanged else ():
                output.mask(spent.reveal(), where=item.id)
        for writer, items in _by_writer(resolved):
            writer.write(items, output)
        output.files.add("env", env_file(output))
        manifest = _manifest(pipeline_id, output)
        output.files.add("manifest.json", json.dumps(manifest, indent=2) + "\n")
        replaced = commit(out, output.files)
    except BaseException:
        github_tokens.revoke_minted(resolved)  # no bundle holds them: not live for an hour
        raise
    if replaced is not None:
        # Nobody can use the replaced bundle's tokens any more: revoke them, not leave them
        # live for their hour. An interrupt here leaves it for the next render or clean.
        tell(discard(replaced, quick=True))
    return output, manifest


def _by_writer(resolved: list[Resolved]) -> list[tuple[Writer, list[Resolved]]]:
    """Each writer the pipeline's types name (`schema.connection_types`; only those are
    imported), in the table's order, with its connections in `uses` order."""
    writers = connection_types.modules("writer", frozenset(r.type for r in resolved))
    return [(cast(Writer, module), [r for r in resolved if writers[r.type] is module])
            for module in dict.fromkeys(writers.values())]


def _exchange(resolved: list[Resolved], identity: Source | None) -> None:
    """Secretless connections: the job's identity for their short-lived credentials, one
    exchange after another, each with an ID token of its own."""
    items = [r for r in resolved if secretless(r.spec)]
    if not items:
        return
    from connc.identity import exchange  # here: most renders exchange nothing

    source = identity if identity is not None else exchange.environment()
    exchange.check_shared([(item.id, item.spec) for item in items], source)
    for item in items:
        item.exchanged = exchange.exchange(item.id, item.spec, source)


def _manifest(pipeline_id: str, output: Output) -> dict[str, object]:
    from connc import __version__

    return {
        "kind": MARKER,
        "version": 1,
        "connc": __version__,
        "pipeline": pipeline_id,
        "createdAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "connections": list(output.manifest.values()),
        "files": sorted(output.files.files) + ["manifest.json"],
        "env": sorted(k for k in output.env if not k.startswith("connc:")),
    }
