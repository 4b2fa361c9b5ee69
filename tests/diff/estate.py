"""An estate of connections for the review tests: every kind of plaintext an attacker with
write access to a branch could edit, committed in a real git repository.

Owners: bob owns the cluster and the registry, alice the GitHub App and the npm registry;
carol is the admin. Each has a GitHub account in members.yaml. The repository is built and
encrypted once per module (sops is the slow part) and copied for each test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.build import TEST_RECIPIENT, commit, connection, git, make_repo, sops_rules, write

K8S = "connections.d/k8s.sops.yaml"
GH = "connections.d/gh.sops.yaml"
NPM = "connections.d/npm.sops.yaml"
REG = "connections.d/reg.sops.yaml"
DEPLOY = "pipelines.d/deploy.yaml"
BUILD = "pipelines.d/build.yaml"

MEMBERS: dict[str, Any] = {
    "apiVersion": "connc/v1", "kind": "Members",
    "users": {"alice": {"github": "achen"}, "bob": {"github": "bobm"},
              "carol": {"github": "carold"}, "dave": {"github": "dave-o"}},
    "teams": {"platform": {"members": ["alice", "bob"]}, "data": {"members": ["dave"]}},
}
CONFIG: dict[str, Any] = {"apiVersion": "connc/v1", "kind": "Config", "admins": ["carol"],
                          "requireSeals": True}


def build(root: Path) -> Path:
    repo = make_repo(root, members=MEMBERS, connections={
        "k8s": connection("k8s", type_="kubernetes", owner="bob", visibility="custom",
                          members=["team:platform"],
                          spec={"server": "https://k8s.example.com:6443"},
                          credential={"token": "fake-kube-token"}),
        "gh": connection("gh", type_="github-app", owner="alice", visibility="custom",
                         members=["team:platform"],
                         spec={"clientId": "Iv23liFake", "installationId": 42},
                         credential={"privateKey": "fake-key"}),
        "npm": connection("npm", type_="packages", owner="alice", visibility="public",
                          spec={"format": "npm", "url": "https://npm.example.com/"},
                          credential={"token": "fake-npm-token"}),
        "reg": connection("reg", type_="container-registry", owner="bob",
                          spec={"registry": "registry.example.com"},
                          credential={"username": "robot", "password": "fake-password"}),
    }, pipelines={
        "deploy": {"apiVersion": "connc/v1", "kind": "Pipeline",
                   "metadata": {"id": "deploy", "owner": "alice", "teams": ["platform"]},
                   "uses": [{"connection": "k8s"},
                            {"connection": "gh", "repositories": ["api", "web"],
                             "permissions": {"contents": "read", "metadata": "read"}},
                            {"connection": "npm"}]},
        "build": {"apiVersion": "connc/v1", "kind": "Pipeline",
                  "metadata": {"id": "build", "owner": "bob"},
                  "uses": [{"connection": "reg"}]},
    })
    write(repo, "connc.yaml", CONFIG)
    write(repo, ".sops.yaml", sops_rules(TEST_RECIPIENT))
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "base")
    return repo
