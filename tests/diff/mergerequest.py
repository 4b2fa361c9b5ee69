"""Running `connc approvals --gitlab-mr` as a GitLab merge request pipeline does, against the
local fake of GitLab's API (tests/kit/servers/gitlab_api.py), on the estate of `estate.py` with
GitLab accounts recorded at BASE."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

from estate import MEMBERS

from kit.build import REPO_ROOT, commit, sops_env, write
from kit.run import connc
from kit.servers.gitlab_api import REPORTER, FakeGitLab, MergeRequest

PROJECT = "acme/connections"
IID = 7
# The estate's users and their GitLab accounts (their GitHub ones differ on purpose).
ACCOUNTS = {"alice": "achen", "bob": "bob.m", "carol": "carold", "dave": "dave-o"}


def with_gitlab_accounts(repo: Path, **fields: dict[str, Any]) -> str:
    """Record each user's GitLab account in members.yaml (plus `fields` per user) and commit:
    the BASE a merge request is judged against."""
    members = copy.deepcopy(MEMBERS)
    for name, username in ACCOUNTS.items():
        members["users"][name]["gitlab"] = username
        members["users"][name].update(fields.get(name, {}))
    write(repo, "members.yaml", members)
    return commit(repo, "GitLab accounts")


def pipeline_env(fake: FakeGitLab, **variables: str) -> dict[str, str]:
    """The environment of a merge request pipeline's job: GitLab's variables for the fake's
    project, and GITLAB_TOKEN a member's token (unless `variables` say otherwise)."""
    env = {key: value for key, value in sops_env().items()
           if not key.startswith(("CI_", "GITLAB_"))}
    project = fake.projects.get(PROJECT) or fake.add_project(PROJECT)
    env.update(CI_API_V4_URL=fake.api_url, CI_PROJECT_ID=str(project.id),
               GITLAB_TOKEN=fake.add_token({PROJECT: (REPORTER, None)}))
    env.update(variables)
    return {key: value for key, value in env.items() if value}


def approvals(fake: FakeGitLab, repo: Path, base: str, head: str, *args: str,
              **variables: str) -> subprocess.CompletedProcess[str]:
    """`connc approvals BASE HEAD --gitlab-mr 7 --format json` (`args` may override it)."""
    env = pipeline_env(fake, **variables)
    ran = connc("approvals", "--repo", repo, base, head, "--gitlab-mr", IID, "--format", "json",
                *args, env=env, cwd=REPO_ROOT)
    for name in ("GITLAB_TOKEN", "CI_JOB_TOKEN"):  # a token is never printed
        assert not env.get(name) or env[name] not in ran.stdout + ran.stderr
    return ran


def merge_request(fake: FakeGitLab, head: str, author: str = "dave-o") -> MergeRequest:
    return fake.add_merge_request(PROJECT, IID, author, head)


def verdict(ran: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """approver -> the user who gave that consent, or None."""
    data: dict[str, Any] = json.loads(ran.stdout)
    return {c["approver"]: c["by"] for c in data["consents"]}
