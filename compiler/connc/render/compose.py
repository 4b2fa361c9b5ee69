"""From decrypted connections to the bundle on disk: mint tokens, run the writers, commit."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from connc.render import docker, git, kube, packages
from connc.render.bundle import MARKER, commit
from connc.render.context import Output, Resolved
from connc.render.envfile import env_file

WRITERS = (git, docker, kube, packages)  # each has TYPES and write(items, output)


def write_bundle(out: Path, pipeline_id: str,
                 resolved: list[Resolved]) -> tuple[Output, dict[str, object]]:
    _mint_tokens(resolved)
    output = Output(out=out, pipeline=pipeline_id)
    for writer in WRITERS:
        items = [r for r in resolved if r.type in writer.TYPES]
        if items:
            writer.write(items, output)
    output.files.add("env", env_file(output))
    manifest = _manifest(pipeline_id, output)
    output.files.add("manifest.json", json.dumps(manifest, indent=2) + "\n")
    commit(out, output.files)
    return output, manifest


def _mint_tokens(resolved: list[Resolved]) -> None:
    apps = [r for r in resolved if r.type == "github-app"]
    if not apps:
        return
    from connc.render.github_tokens import mint

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        list(pool.map(mint, apps))


def _manifest(pipeline_id: str, output: Output) -> dict[str, object]:
    from connc import __version__

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
