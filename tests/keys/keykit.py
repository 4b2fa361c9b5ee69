"""The keys tests' repository: two pipelines with runner keys, a team with its own key, and
a key outside a scope, every file encrypted as `connc new` leaves it (the catch-all rule)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from connc import documents
from connc.sops import binary
from connc.sops.metadata import read_metadata
from kit.build import (
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    connection,
    make_repo,
    pipeline,
    sops_env,
    write,
)
from kit.keys import new_age_key

SENTINEL = "keys-sync-canary-7b1d"  # a secret value that must never be printed


def recipients_of(repo: Path, relpath: str) -> set[str]:
    document, _found = documents.read(repo, relpath, "Connection")
    assert document is not None
    return set(read_metadata(document.data["sops"]).recipients)


def files(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file()}


def build(base: Path) -> dict[str, Any]:
    """A repository as `connc new` leaves it (every file encrypted to the catch-all rule: the
    admin key, which is alice's), with two pipelines that have runner keys and a stray key."""
    deploy_key, deploy = new_age_key(base, "runner-deploy.txt")
    ops_key, ops = new_age_key(base, "runner-ops.txt")
    _carol_key, carol = new_age_key(base, "carol.txt")
    members = {"apiVersion": "connc/v1", "kind": "Members",
               "users": {"alice": {"recipients": [TEST_RECIPIENT]}, "bob": {},
                         "carol": {"recipients": [carol]}},
               "teams": {"ops": {"members": ["carol"], "recipients": [ops]}}}
    secret = {"token": SENTINEL}
    connections = {
        cid: connection(cid, credential=secret, spec={"url": f"https://gitlab.com/{cid}"},
                        **scope)
        for cid, scope in (("db", {}), ("registry", {"visibility": "public"}),
                           ("shared", {"visibility": "custom", "members": ["team:ops"]}),
                           ("spare", {}))}
    deploy_pipeline = pipeline("deploy", "db", "registry")
    deploy_pipeline["metadata"]["recipients"] = [deploy]
    repo = make_repo(base / "repo", connections=connections, members=members, pipelines={
        "deploy": deploy_pipeline,
        "build": pipeline("build", "registry", "shared", owner="carol", teams=["ops"]),
    })
    write(repo, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config",
                               "adminRecipients": [TEST_RECIPIENT], "requireSeals": True})
    # carol's key on alice's private `spare`: outside its scope (CONNC408), to be removed.
    _add_recipient(repo, "connections.d/spare.sops.yaml", carol)
    return {"repo": repo, "deploy": (deploy_key, deploy), "ops": (ops_key, ops), "carol": carol}


def _add_recipient(repo: Path, relpath: str, recipient: str) -> None:
    """Encrypt a file to one more key, as someone with the admin key would by hand."""
    done = subprocess.run([binary.executable(), "rotate", "--in-place", "--add-age", recipient,
                           relpath], cwd=repo, env=sops_env(TEST_KEY_FILE), capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr
