"""Running `connc approvals` as the access-review workflow does, against a local fake of the
GitHub API (tests/kit/servers/github_fake.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from kit.build import REPO_ROOT, sops_env
from kit.run import connc
from kit.servers.github_fake import DEFAULT_PULL_REPO, FakeGitHub

NUMBER = 7


def approvals(repo: Path, *args: str, api: str = "", token: str = "",
              ) -> subprocess.CompletedProcess[str]:
    env = {**sops_env(), "GITHUB_REPOSITORY": DEFAULT_PULL_REPO}
    if api:
        env.update(GITHUB_API_URL=api, GITHUB_TOKEN=token)
    return connc("approvals", "--repo", repo, *args, env=env, cwd=REPO_ROOT)


def github(fake: FakeGitHub, change: tuple[Path, str, str], *extra: str,
           token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`connc approvals BASE HEAD --github-pr 7 --format json` (`extra` may override it)."""
    repo, base, head = change
    ran = approvals(repo, base, head, "--github-pr", str(NUMBER), "--format", "json", *extra,
                    api=fake.url, token=token if token is not None else fake.repo_token)
    assert fake.repo_token not in ran.stdout + ran.stderr  # the token is never printed
    return ran


def verdict(ran: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """approver -> the user who gave that consent, or None."""
    data: dict[str, Any] = json.loads(ran.stdout)
    return {c["approver"]: c["by"] for c in data["consents"]}
