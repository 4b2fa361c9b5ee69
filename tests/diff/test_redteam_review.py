"""What a reviewer sees is what changed: a row of `connc diff` never shows a redirect as no
change. Tried as an attacker with write access to a branch and no key."""

from __future__ import annotations

import json
from pathlib import Path

from estate import K8S

from kit.build import REPO_ROOT, commit, replace, write
from kit.run import connc

LONG_HOST = "k8s-production-cluster-eu-west-1-primary-control-plane.internal.corp.example.com"


def test_a_long_endpoint_redirected_by_a_suffix_shows_the_suffix(estate: Path) -> None:
    # Values were cut after 80 characters: both columns read
    # `https://k8s-production-cluster-eu-west-1-primary-control-plane.internal.corp.e…`.
    replace(estate, K8S, "server: https://k8s.example.com:6443",
            f"server: https://{LONG_HOST}:6443")
    commit(estate, "the real cluster")
    replace(estate, K8S, f"{LONG_HOST}:6443", f"{LONG_HOST}.evil.example:6443")
    commit(estate)
    proc = connc("diff", "--repo", str(estate), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    [row] = json.loads(proc.stdout)["changes"]["specs"]
    assert row["before"] != row["after"]
    assert row["after"].endswith(".corp.example.com.evil.example:6443")
    assert row["before"].endswith(".corp.example.com:6443")
    assert row["after"].startswith("https://k8s-")  # the start is kept too
    assert len(row["after"]) <= 80
    markdown = connc("diff", "--repo", str(estate), "main~1", "main", key=None,
                     cwd=REPO_ROOT).stdout
    assert ".corp.example.com.evil.example:6443`" in markdown


def test_a_new_use_says_what_its_token_reaches_and_whether_the_app_key_goes_along(
        estate: Path) -> None:
    # A new use had its grant row only: alice approved "grant added", unaware that the
    # pipeline's bundle would hold her App's private key and a token for every repository.
    write(estate, "pipelines.d/release.yaml", {
        "apiVersion": "connc/v1", "kind": "Pipeline",
        "metadata": {"id": "release", "owner": "bob", "teams": ["platform"]},
        "uses": [{"connection": "gh", "refresh": True}]})
    commit(estate)
    proc = connc("diff", "--repo", str(estate), "main~1", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    rows = json.loads(proc.stdout)["changes"]["narrowing"]
    assert [(r["change"], r["pipeline"], r["after"], r["widens"], r["approvers"])
            for r in rows] == [
        ("repositories", "release", "all of the installation's", True, ["user:alice"]),
        ("permissions", "release", "all of the installation's", True, ["user:alice"]),
        ("refresh", "release", "true", True, ["user:alice"])]
    # A narrowed new use, without refresh, has nothing more to say.
    write(estate, "pipelines.d/release.yaml", {
        "apiVersion": "connc/v1", "kind": "Pipeline",
        "metadata": {"id": "release", "owner": "bob", "teams": ["platform"]},
        "uses": [{"connection": "gh", "repositories": ["api"],
                  "permissions": {"contents": "read"}}]})
    commit(estate)
    proc = connc("diff", "--repo", str(estate), "main~2", "main", "--format", "json", key=None,
                 cwd=REPO_ROOT)
    assert json.loads(proc.stdout)["changes"]["narrowing"] == []
