"""`connc approvals`: consent from GitHub reviews (a local fake of the API) or --approved-by.

The estate (conftest.py): bob owns the cluster `k8s` (GitHub account bobm), alice the App and
npm (achen), carol is the admin (carold). A pull request redirects the cluster's server, which
needs bob's consent, and adds dave to a team, which needs an admin's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from estate import K8S

from repokit import REPO_ROOT, commit, git, replace, sops_env
from servers.github_fake import (  # noqa: F401
    DEFAULT_PULL_REPO,
    FakeGitHub,
    github_api,
    unresponsive_server,
)

NUMBER = 7


@pytest.fixture
def change(estate: Path) -> tuple[Path, str, str]:
    """A pull request's commit: (repository, base sha, head sha)."""
    base = git(estate, "rev-parse", "HEAD").strip()
    replace(estate, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - alice")
    return estate, base, commit(estate, "redirect the cluster")


def approvals(repo: Path, *args: str, api: str = "", token: str = "",
              ) -> subprocess.CompletedProcess[str]:
    env = {**sops_env(), "GITHUB_REPOSITORY": DEFAULT_PULL_REPO}
    if api:
        env.update(GITHUB_API_URL=api, GITHUB_TOKEN=token)
    return subprocess.run([sys.executable, "-m", "connc", "approvals", "--repo", str(repo), *args],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


def github(fake: FakeGitHub, change: tuple[Path, str, str], *extra: str,
           token: str | None = None) -> subprocess.CompletedProcess[str]:
    repo, base, head = change
    ran = approvals(repo, base, head, "--github-pr", str(NUMBER), "--format", "json", *extra,
                    api=fake.url, token=token if token is not None else fake.repo_token)
    assert fake.repo_token not in ran.stdout + ran.stderr  # the token is never printed
    return ran


def verdict(ran: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ran.stdout)
    return {c["approver"]: c["by"] for c in data["consents"]}


def test_approved_on_the_head_commit(github_api: FakeGitHub,
                                     change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, author="dave-o", head_sha=change[2])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "BobM", "APPROVED")  # any letter case
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change)
    assert ran.returncode == 0, ran.stderr
    assert verdict(ran) == {"user:bob": "bob", "admins": "carol"}


def test_an_approval_of_an_older_commit_does_not_count(github_api: FakeGitHub,
                                                       change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[1])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    github_api.set_head(DEFAULT_PULL_REPO, NUMBER, change[2])  # a push after the reviews
    ran = github(github_api, change)
    assert ran.returncode == 1
    assert verdict(ran) == {"user:bob": None, "admins": None}


def test_changes_requested_or_dismissed_withdraws(github_api: FakeGitHub,
                                                  change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[2])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "CHANGES_REQUESTED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    review = github_api.pull(DEFAULT_PULL_REPO, NUMBER).reviews[-1].id
    github_api.dismiss_review(DEFAULT_PULL_REPO, NUMBER, review)
    ran = github(github_api, change, "--format", "text")
    assert ran.returncode == 1
    assert "missing:" in ran.stdout and "bob [@bobm]" in ran.stdout
    assert "an admin (carol) [@carold]" in ran.stdout


def test_the_author_consents_by_authoring(github_api: FakeGitHub,
                                          change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, author="bobm", head_sha=change[2])
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change)
    assert ran.returncode == 0 and verdict(ran)["user:bob"] == "bob"


def test_reviews_are_read_page_by_page(github_api: FakeGitHub,
                                       change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[2])
    for index in range(230):
        github_api.add_review(DEFAULT_PULL_REPO, NUMBER, f"reviewer-{index}", "COMMENTED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "carold", "APPROVED")
    ran = github(github_api, change)
    assert ran.returncode == 0, ran.stdout
    pages = [r for r in github_api.requests if r.path.endswith("/reviews")]
    assert len(pages) == 3


def test_a_login_two_users_share_speaks_for_neither(github_api: FakeGitHub,
                                                    change: tuple[Path, str, str]) -> None:
    repo, base, _head = change
    git(repo, "checkout", "-q", base)
    replace(repo, "members.yaml", "github: carold", "github: bobm")  # CONNC214 at BASE
    shared_base = commit(repo, "carol's account is bob's")
    replace(repo, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    head = commit(repo, "redirect")
    github_api.add_pull(number=NUMBER, head_sha=head)
    github_api.add_review(DEFAULT_PULL_REPO, NUMBER, "bobm", "APPROVED")
    ran = github(github_api, (repo, shared_base, head))
    # members.yaml is refused at HEAD too (CONNC214), so an admin must also look at it.
    assert ran.returncode == 1 and verdict(ran) == {"user:bob": None, "admins": None}


def test_approved_by_names_users(change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    ran = approvals(repo, base, head, "--approved-by", "bob")
    assert ran.returncode == 1 and "an admin (carol)" in ran.stdout
    ran = approvals(repo, base, head, "--approved-by", "bob,carol")
    assert ran.returncode == 0, ran.stdout
    nothing = approvals(repo, head, head, "--approved-by", "nobody-at-all")
    assert nothing.returncode == 0 and "no consent is needed" in nothing.stdout


# ---------------------------------------------------------------------------- errors: exit 2


@pytest.mark.parametrize("failure", ["404", "502", "not-json", "bad-token"])
def test_api_failures_exit_2(github_api: FakeGitHub, change: tuple[Path, str, str],
                             failure: str) -> None:
    github_api.add_pull(number=NUMBER, head_sha=change[2])
    token = None
    if failure == "404":
        github_api.fail_next(404, times=5)
    elif failure == "502":
        github_api.fail_next(502, times=5)
    elif failure == "not-json":
        github_api.non_json_next(times=5)
    else:
        token = "ghs_" + "x" * 36
    ran = github(github_api, change, token=token)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and ran.stderr.startswith("connc: error: pull request 7 of ")
    assert "Traceback" not in ran.stderr
    if token:
        assert token not in ran.stderr


def test_an_api_that_never_answers_exits_2(change: tuple[Path, str, str]) -> None:
    with unresponsive_server() as url:
        repo, base, head = change
        ran = approvals(repo, base, head, "--github-pr", "7", "--timeout", "0.5", api=url,
                        token="ghs_" + "y" * 36)
    assert ran.returncode == 2 and "no answer within 0.5 s" in ran.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-revision", "HEAD", "--approved-by", "bob"], "unknown revision"),
    (["HEAD~1", "HEAD", "--github-pr", "seven"], "is not a valid integer"),
    (["HEAD~1", "HEAD", "--github-pr", "0"], "takes a pull request number"),
    (["HEAD~1", "HEAD"], "give one of --github-pr N or --approved-by"),
    (["HEAD~1", "--github-pr", "7"], "give HEAD"),
])
def test_bad_input_exits_2(change: tuple[Path, str, str], args: list[str], message: str) -> None:
    ran = approvals(change[0], *args, api="http://127.0.0.1:9", token="ghs_" + "z" * 36)
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_head_must_be_the_pull_requests_head(github_api: FakeGitHub,
                                                 change: tuple[Path, str, str]) -> None:
    github_api.add_pull(number=NUMBER, head_sha="0" * 40)
    ran = github(github_api, change)
    assert ran.returncode == 2 and "reviews count on the head commit" in ran.stderr


def test_missing_environment_exits_2(change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    ran = approvals(repo, base, head, "--github-pr", "7")
    assert ran.returncode == 2 and "GITHUB_TOKEN" in ran.stderr


def test_a_base_without_members_exits_2(change: tuple[Path, str, str]) -> None:
    repo, _base, head = change
    git(repo, "checkout", "-q", "--orphan", "empty")
    git(repo, "rm", "-rq", "--cached", "members.yaml")
    (repo / "members.yaml").unlink()
    empty = commit(repo, "no members")
    ran = approvals(repo, empty, head, "--approved-by", "carol")
    assert ran.returncode == 2 and "no readable members.yaml" in ran.stderr
