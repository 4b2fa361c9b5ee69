"""`connc approvals --gitlab-mr`: consent from a GitLab merge request (a local fake of the API).

The estate (conftest.py) with GitLab accounts at BASE (mergerequest.py): bob owns the cluster
`k8s` (GitLab account bob.m), carol is the admin (carold), dave (dave-o) a team member. The
merge request redirects the cluster's server, which needs bob's consent, and adds alice to a
team, which needs an admin's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest
from estate import K8S
from mergerequest import (
    IID,
    PROJECT,
    approvals,
    merge_request,
    pipeline_env,
    verdict,
    with_gitlab_accounts,
)

from connc.diff import gitlab
from connc.diff.approvals import (
    GITLAB,
    Accounts,
    approvals_since,
    gitlab_authorship,
    head_recorded,
)
from connc.diff.revisions import CommitEmails
from connc.diff.run import diff
from connc.github.pulls import Account
from connc.schema.models import User
from connc.secrets import Secret
from kit.build import GIT_IDENTITY, commit, git, replace, write
from kit.run import connc
from kit.servers.github_fake import unresponsive_server
from kit.servers.gitlab_api import FakeGitLab, gitlab_api  # noqa: F401

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def change(estate: Path) -> tuple[Path, str, str]:
    """A merge request's commit: (repository, base sha, head sha)."""
    base = with_gitlab_accounts(estate)
    replace(estate, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - alice")
    return estate, base, commit(estate, "redirect the cluster")


def test_approvals_given_on_the_head_count(gitlab_api: FakeGitLab,
                                           change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, head)
    gitlab_api.sign(head, kind="")  # unsigned
    gitlab_api.approve(mr, "Bob.M")  # usernames are case-insensitive
    gitlab_api.approve(mr, "carold")
    ran = approvals(gitlab_api, repo, base, head, "--format", "text")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines()[:2] == [
        f"connc approvals: 2 of 2 consents given, from merge request !{IID} (head "
        f"{head[:12]}, author @dave-o)",
        f"authorship of @dave-o does not count: commit {head[:12]} is not signed"]
    assert "bob [@bob.m], by bob (approval)" in ran.stdout  # GitLab accounts, not GitHub's
    assert {seen.auth for seen in gitlab_api.seen} == {"private-token"}
    project = gitlab_api.projects[PROJECT].id
    assert [seen.path for seen in gitlab_api.seen] == [
        f"/api/v4/projects/{project}/merge_requests/{IID}",
        f"/api/v4/projects/{project}/merge_requests/{IID}/versions",
        f"/api/v4/projects/{project}/merge_requests/{IID}/approvals",
        f"/api/v4/projects/{project}/repository/commits/{head}/signature"]


def test_an_approval_from_before_a_push_does_not_count(gitlab_api: FakeGitLab,
                                                        change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, base)
    gitlab_api.approve(mr, "bob.m")
    gitlab_api.approve(mr, "carold")
    gitlab_api.push(mr, head)  # GitLab keeps approvals across a push unless told not to
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 1, ran.stderr
    assert verdict(ran) == {"user:bob": None, "admins": None}
    recorded = mr.versions[-1][1]
    assert json.loads(ran.stdout)["notes"] == [
        f"approved before GitLab recorded the head ({recorded:%Y-%m-%d %H:%M:%S} UTC), which "
        f"does not count: @bob.m, @carold"]
    gitlab_api.approve(mr, "bob.m")  # approved again, on the head
    gitlab_api.approve(mr, "carold")
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 0 and json.loads(ran.stdout)["notes"] == []


def test_the_target_branch_moving_keeps_approvals(gitlab_api: FakeGitLab,
                                                  change: tuple[Path, str, str]) -> None:
    # A push to the target branch adds a diff version with the same head: approvals of that
    # head still count. More such versions than a page holds are read page by page.
    repo, base, head = change
    mr = merge_request(gitlab_api, head)
    gitlab_api.approve(mr, "bob.m")
    gitlab_api.approve(mr, "carold")
    for _ in range(120):
        gitlab_api.target_moved(mr)
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    pages = [seen.params.get("page") for seen in gitlab_api.seen
             if seen.path.endswith("/versions")]
    assert pages == ["1", "2"]


def test_a_push_between_connc_s_reads_exits_2(gitlab_api: FakeGitLab,
                                                change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, base)
    gitlab_api.approve(mr, "bob.m")
    gitlab_api.push(mr, head, recorded=False)  # its sha says HEAD, its versions do not
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 2 and ran.stdout == ""
    assert "GitLab's newest diff version is not of its head" in ran.stderr


def test_approvals_gitlab_does_not_date_count_for_nobody(gitlab_api: FakeGitLab,
                                                         change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    gitlab_api.dated_approvals = False
    mr = merge_request(gitlab_api, head)
    gitlab_api.approve(mr, "bob.m")
    gitlab_api.approve(mr, "carold")
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 1 and verdict(ran) == {"user:bob": None, "admins": None}
    assert json.loads(ran.stdout)["notes"] == [
        "GitLab does not say when @bob.m, @carold approved, so it cannot be told whether the "
        "head was approved: it does not count"]


def test_an_admins_approval_stands_in_and_authorship_does_not(
        gitlab_api: FakeGitLab, change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, head, author="carold")
    gitlab_api.sign(head, "SSH", key_id=gitlab_api.add_key("carold"))
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 1  # carol's authorship is her own consent only
    assert verdict(ran) == {"user:bob": None, "admins": "carol"}
    gitlab_api.approve(mr, "carold")  # carol approves her own merge request, if GitLab lets her
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 0 and verdict(ran) == {"user:bob": "carol", "admins": "carol"}


def test_the_author_consents_by_signed_commits(gitlab_api: FakeGitLab,
                                               change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    second = head
    replace(repo, K8S, "server: https://evil.example", "server: https://evil.example:8443")
    head = commit(repo, "and the port")
    mr = merge_request(gitlab_api, head, author="bob.m")
    gitlab_api.sign(second, "PGP", key_id=gitlab_api.add_key("bob.m", "PGP"))
    for _ in range(150):  # bob's SSH keys span two pages; he signed with the last one
        gitlab_api.add_key("bob.m")
    gitlab_api.sign(head, "SSH", key_id=gitlab_api.add_key("bob.m"))
    gitlab_api.approve(mr, "carold")
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    data = json.loads(ran.stdout)
    assert data["authorship"] == {"login": "bob.m", "user": "bob", "counts": True,
                                  "why": "every commit (2) is @bob.m's, signed and verified by "
                                         "GitLab"}
    assert [(c["by"], c["via"]) for c in data["consents"]] == [
        ("bob", "authorship"), ("carol", "approval")]
    user = gitlab_api.user("bob.m").id
    assert [seen.params.get("page") for seen in gitlab_api.seen
            if seen.path == f"/api/v4/users/{user}/keys"] == ["1", "2"]


@pytest.mark.parametrize(("signed", "why"), [
    ({"kind": "SSH", "key": "other"}, "is signed with a key that is not @bob.m's"),
    ({"kind": "SSH", "status": "other_user"}, "not verified by GitLab (other_user)"),
    ({"kind": "SSH", "status": "verified_system"}, "not verified by GitLab (verified_system)"),
    ({"kind": "X509"}, "signature (X509) names no key of an account"),
    ({"kind": ""}, "is not signed"),
    ({}, "not verified by GitLab (unknown commit)"),
])
def test_authorship_that_does_not_count(gitlab_api: FakeGitLab, change: tuple[Path, str, str],
                                        signed: dict[str, str], why: str) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, head, author="bob.m")
    owner = "mallory" if signed.get("key") == "other" else "bob.m"
    if signed:
        gitlab_api.sign(head, signed["kind"], signed.get("status", "verified"),
                        gitlab_api.add_key(owner) if signed["kind"] else None)
    gitlab_api.approve(mr, "carold")
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 0  # carol's approval stands in
    data = json.loads(ran.stdout)
    assert data["authorship"]["counts"] is False and why in data["authorship"]["why"]
    assert [c["via"] for c in data["consents"]] == ["an admin's approval", "approval"]


def test_a_shallow_clone_authors_nothing(gitlab_api: FakeGitLab, change: tuple[Path, str, str],
                                         tmp_path: Path) -> None:
    repo, base, head = change
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{repo}", str(clone))
    mr = merge_request(gitlab_api, head, author="bob.m")
    gitlab_api.sign(head, "SSH", key_id=gitlab_api.add_key("bob.m"))
    ran = approvals(gitlab_api, clone, base, head)
    assert ran.returncode == 1, ran.stderr
    assert json.loads(ran.stdout)["authorship"]["why"].startswith("the clone is shallow")
    gitlab_api.approve(mr, "bob.m")  # an approval needs no history
    gitlab_api.approve(mr, "carold")
    assert approvals(gitlab_api, clone, base, head).returncode == 0


def test_accounts_are_matched_by_gitlab_id(gitlab_api: FakeGitLab, estate: Path) -> None:
    bob = gitlab_api.add_user("bob.m")
    base = with_gitlab_accounts(estate, bob={"gitlabId": bob.id})
    replace(estate, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    head = commit(estate, "redirect the cluster")
    mr = merge_request(gitlab_api, head)
    gitlab_api.rename_user("bob.m", "bob.renamed")  # the account is the same
    gitlab_api.approve(mr, "bob.renamed")
    ran = approvals(gitlab_api, estate, base, head)
    assert ran.returncode == 0 and verdict(ran) == {"user:bob": "bob"}
    gitlab_api.unapprove(mr, "bob.renamed")
    gitlab_api.add_user("bob.m")  # the username given up, registered by someone else
    gitlab_api.approve(mr, "bob.m")
    ran = approvals(gitlab_api, estate, base, head)
    assert ran.returncode == 1 and verdict(ran) == {"user:bob": None}


def test_a_user_the_merge_request_adds_consents_to_nothing(gitlab_api: FakeGitLab,
                                                           estate: Path) -> None:
    base = with_gitlab_accounts(estate)
    replace(estate, "members.yaml", "users:\n", "users:\n  erin:\n    gitlab: erin-x\n")
    replace(estate, "connections.d/reg.sops.yaml", "owner: bob", "owner: erin")
    head = commit(estate, "erin takes the registry")
    mr = merge_request(gitlab_api, head, author="erin-x")
    gitlab_api.sign(head, "SSH", key_id=gitlab_api.add_key("erin-x"))
    gitlab_api.approve(mr, "erin-x")
    gitlab_api.approve(mr, "bob.m")
    ran = approvals(gitlab_api, estate, base, head)
    assert ran.returncode == 1
    assert verdict(ran) == {"user:bob": "bob", "user:erin": None, "admins": None}
    assert json.loads(ran.stdout)["authorship"]["why"] == \
        "@erin-x speaks for no user of members.yaml at BASE"


def test_an_account_two_users_share_speaks_for_neither(gitlab_api: FakeGitLab,
                                                       estate: Path) -> None:
    base = with_gitlab_accounts(estate, carol={"gitlab": "BOB.M"})  # CONNC214 at BASE
    replace(estate, K8S, "server: https://k8s.example.com:6443", "server: https://evil.example")
    head = commit(estate, "redirect the cluster")
    gitlab_api.approve(merge_request(gitlab_api, head), "bob.m")
    ran = approvals(gitlab_api, estate, base, head)
    assert ran.returncode == 1 and verdict(ran)["user:bob"] is None


def test_a_gitlab_account_changed_needs_an_admin(estate: Path) -> None:
    base = with_gitlab_accounts(estate, bob={"gitlabId": 5001})
    replace(estate, "members.yaml", "gitlab: carold", "gitlab: mallory")
    replace(estate, "members.yaml", "gitlabId: 5001", "gitlabId: 5002")
    head = commit(estate, "new accounts")
    rows = [(c.values["user"], c.values["before"], c.values["after"], c.widens, c.approvers)
            for c in diff(estate, base, head).changes if c.section == "users"]
    assert rows == [
        ("bob", "bobm, gitlab bob.m (id 5001)", "bobm, gitlab bob.m (id 5002)", True,
         ("admins",)),
        ("carol", "carold, gitlab carold", "carold, gitlab mallory", True, ("admins",))]


# ---------------------------------------------------------------------------- the pipeline


def test_the_job_token_is_sent_as_gitlab_takes_it(gitlab_api: FakeGitLab,
                                                  change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, head)
    gitlab_api.approve(mr, "bob.m")
    gitlab_api.approve(mr, "carold")
    job = gitlab_api.add_job_token(PROJECT)
    ran = approvals(gitlab_api, repo, base, head, GITLAB_TOKEN="", CI_JOB_TOKEN=job)
    assert ran.returncode == 2  # GitLab's job token cannot read merge requests
    assert "GitLab refused the token in CI_JOB_TOKEN (HTTP 401)" in ran.stderr
    assert "set GITLAB_TOKEN to a project access token" in ran.stderr
    gitlab_api.job_tokens_read_merge_requests = True  # a GitLab whose job token may
    ran = approvals(gitlab_api, repo, base, head, GITLAB_TOKEN="", CI_JOB_TOKEN=job)
    assert ran.returncode == 0, ran.stderr
    assert {seen.auth for seen in gitlab_api.seen} == {"job-token"}


def test_the_merge_requests_project_in_a_fork_pipeline(gitlab_api: FakeGitLab,
                                                       change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    mr = merge_request(gitlab_api, head)
    gitlab_api.approve(mr, "bob.m")
    gitlab_api.approve(mr, "carold")
    ran = approvals(gitlab_api, repo, base, head, CI_PROJECT_ID="4242",  # the fork's
                    CI_MERGE_REQUEST_PROJECT_ID=str(mr.project.id))
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize("failure", ["unknown-token", "no-scope", "not-a-member", "500",
                                     "not-json", "echo", "redirect"])
def test_api_failures_exit_2_without_the_token(gitlab_api: FakeGitLab,
                                               change: tuple[Path, str, str],
                                               failure: str) -> None:
    repo, base, head = change
    merge_request(gitlab_api, head)
    variables = {}
    if failure == "unknown-token":
        variables["GITLAB_TOKEN"] = "glpat-" + "u" * 20
    elif failure == "no-scope":
        variables["GITLAB_TOKEN"] = gitlab_api.add_token({PROJECT: (30, None)},
                                                         scopes=("read_repository",))
    elif failure == "not-a-member":
        variables["GITLAB_TOKEN"] = gitlab_api.add_token({"other/project": (30, None)})
    elif failure == "not-json":
        gitlab_api.fail_next(200, b"<html>GitLab is not responding</html>")
    elif failure == "echo":  # `approvals` asserts that the token is never printed
        token = gitlab_api.add_token({PROJECT: (30, None)})
        variables["GITLAB_TOKEN"] = token
        gitlab_api.fail_next(403, {"message": f"403 Forbidden - {token}"})
    elif failure == "redirect":
        gitlab_api.fail_next(302, {"message": "moved"})
    else:
        gitlab_api.fail_next(int(failure))
    ran = approvals(gitlab_api, repo, base, head, **variables)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stdout == "" and "Traceback" not in ran.stderr
    assert ran.stderr.startswith(f"connc: error: merge request !{IID} of project ")
    expected = {"unknown-token": "GitLab refused the token in GITLAB_TOKEN (HTTP 401)",
                "no-scope": "has no API scope (HTTP 403); it needs read_api",
                "not-a-member": "not found (HTTP 404)", "500": "GitLab failed (HTTP 500)",
                "not-json": "GitLab's answer is not JSON",
                "echo": "refused it to the token in GITLAB_TOKEN (HTTP 403)",
                "redirect": "which connc does not follow"}
    assert expected[failure] in ran.stderr
    assert "glpat-" not in ran.stderr  # nothing GitLab sent back is shown


def test_a_token_gitlab_echoes_in_a_name_is_not_shown(gitlab_api: FakeGitLab,
                                                     change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    env = pipeline_env(gitlab_api)
    token = env["GITLAB_TOKEN"]
    mr = merge_request(gitlab_api, base, author=f"x{token}")
    gitlab_api.approve(mr, f"y{token}")
    gitlab_api.push(mr, head)
    gitlab_api.sign(head, "SSH", f"bad{token}", 1)
    ran = approvals(gitlab_api, repo, base, head, "--format", "text", GITLAB_TOKEN=token)
    assert ran.returncode == 1  # and `approvals` asserts that the token is not printed
    assert "@y[redacted]" in ran.stdout and "author @x[redacted]" in ran.stdout


def test_an_api_that_never_answers_exits_2(gitlab_api: FakeGitLab,
                                           change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    with unresponsive_server() as url:
        ran = approvals(gitlab_api, repo, base, head, "--timeout", "0.5",
                        CI_API_V4_URL=f"{url}/api/v4")
    assert ran.returncode == 2 and "no answer from 127.0.0.1 within 0.5 s" in ran.stderr


def test_plain_http_off_loopback_is_refused(gitlab_api: FakeGitLab,
                                            change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    ran = approvals(gitlab_api, repo, base, head,
                    CI_API_V4_URL="http://gitlab.example.com/api/v4")
    assert ran.returncode == 2
    assert "plain http to gitlab.example.com is refused" in ran.stderr
    assert gitlab_api.seen == []


@pytest.mark.parametrize(("args", "variables", "message"), [
    (["--gitlab-mr", "0"], {}, "--gitlab-mr takes a merge request IID"),
    (["--gitlab-mr", "7", "--approved-by", "bob"], {}, "give one of --github-pr N, "
                                                        "--github-merge-group REF, --gitlab-mr N"),
    ([], {"CI_API_V4_URL": "", "GITLAB_TOKEN": ""},
     "--gitlab-mr needs CI_API_V4_URL, GITLAB_TOKEN (or CI_JOB_TOKEN) in the environment"),
    ([], {"CI_PROJECT_ID": "../../users"}, "the project must be GitLab's project id"),
    ([], {"CI_API_V4_URL": "gitlab.example.com"}, "CI_API_V4_URL must be GitLab's API URL"),
])
def test_bad_input_exits_2(gitlab_api: FakeGitLab, change: tuple[Path, str, str],
                           args: list[str], variables: dict[str, str], message: str) -> None:
    repo, base, head = change
    ran = approvals(gitlab_api, repo, base, head, *args, **variables)
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


def test_head_must_be_given_and_be_the_merge_requests(gitlab_api: FakeGitLab,
                                                      change: tuple[Path, str, str]) -> None:
    repo, base, head = change
    merge_request(gitlab_api, base)
    ran = approvals(gitlab_api, repo, base, head)
    assert ran.returncode == 2 and "approvals count on the head" in ran.stderr
    bare = connc("approvals", "--repo", repo, base, "--gitlab-mr", "7",
                 env=pipeline_env(gitlab_api), timeout=60)
    assert bare.returncode == 2 and "with --gitlab-mr, give HEAD" in bare.stderr


# ---------------------------------------------------------------------------- units


def version(head: str, seconds: int) -> gitlab.Version:
    return gitlab.Version(head, T0 + dt.timedelta(seconds=seconds))


def test_when_the_head_was_recorded() -> None:
    a, b = "a" * 40, "b" * 40
    assert head_recorded([version(a, 9), version(a, 5), version(b, 3), version(a, 1)], a) == \
        T0 + dt.timedelta(seconds=5)  # the newest run of versions with the head: A, B, A
    assert head_recorded([version(b, 9), version(a, 5)], a) is None
    assert head_recorded([], a) is None


def test_approvals_since() -> None:
    alice, bob, carol = Account("achen", 1), Account("bob.m", 2), Account("carold", 3)
    counted, notes = approvals_since([
        gitlab.Approval(alice, T0 + dt.timedelta(milliseconds=1)),
        gitlab.Approval(bob, T0),  # at the very moment: not after it
        gitlab.Approval(carol, None)], T0)
    assert counted == [alice]
    assert notes == ["approved before GitLab recorded the head (2025-03-01 09:00:00 UTC), which "
                     "does not count: @bob.m",
                     "GitLab does not say when @carold approved, so it cannot be told whether "
                     "the head was approved: it does not count"]


class Signed:
    """What GitLab says of each commit's signature, and of each account's keys."""

    def __init__(self, signatures: dict[str, gitlab.Signature],
                 keys: dict[tuple[int, str], frozenset[int]]) -> None:
        self.signatures, self.key_lists = signatures, keys
        self.asked: list[str] = []

    def signature(self, sha: str) -> gitlab.Signature:
        self.asked.append(sha)
        return self.signatures[sha]

    def keys(self, user_id: int, kind: str) -> frozenset[int]:
        self.asked.append(f"{kind} keys of {user_id}")
        return self.key_lists.get((user_id, kind), frozenset())


BOB = Account("bob.m", 42)
A, B = "a" * 40, "b" * 40


@pytest.mark.parametrize(("commits", "signatures", "why"), [
    ([CommitEmails(A, "bob@x", "BOB@x")], {A: gitlab.Signature("SSH", "verified", 7)}, None),
    ([CommitEmails(A, "bob@x", "bob@x"), CommitEmails(B, "bob@x", "bob@x")],
     {A: gitlab.Signature("PGP", "verified", 9), B: gitlab.Signature("SSH", "verified", 7)}, None),
    ([CommitEmails(A, "eve@x", "bob@x")], {}, "another author than its committer"),
    ([CommitEmails(A, "bob@x", "bob@x")], {A: gitlab.Signature("", "unsigned")}, "not signed"),
    ([CommitEmails(A, "bob@x", "bob@x")], {A: gitlab.Signature("SSH", "verified", 8)},
     "a key that is not @bob.m's"),
    ([CommitEmails(A, "bob@x", "bob@x")], {A: gitlab.Signature("PGP", "verified", 7)},
     "a key that is not @bob.m's"),  # the id of his SSH key: another kind's list
    ([CommitEmails(A, "bob@x", "bob@x")], {A: gitlab.Signature("SSH", "unverified_key", 7)},
     "not verified by GitLab (unverified_key)"),
    ([CommitEmails(A, "bob@x", "bob@x")], {A: gitlab.Signature("X509", "verified")},
     "signature (X509) names no key"),
    ([], {}, "git lists no commit"),
    ("the clone is shallow", {}, "the clone is shallow"),
])
def test_gitlab_authorship(commits: list[CommitEmails] | str,
                           signatures: dict[str, gitlab.Signature], why: str | None) -> None:
    signed = Signed(signatures, {(42, "SSH"): frozenset({7}), (42, "PGP"): frozenset({9})})
    decided = gitlab_authorship(gitlab.MergeRequest(IID, BOB, A), commits, "bob", signed)
    assert decided.counts is (why is None), decided
    assert why is None or why in decided.why
    assert decided.user == "bob" and decided.login == "bob.m"


def test_authorship_stops_at_the_first_commit_that_is_not_the_authors() -> None:
    signed = Signed({A: gitlab.Signature("", "unsigned")}, {})
    commits = [CommitEmails(A, "bob@x", "bob@x"), CommitEmails(B, "bob@x", "bob@x")]
    decided = gitlab_authorship(gitlab.MergeRequest(IID, BOB, B), commits, "bob", signed)
    assert not decided.counts and signed.asked == [A]
    assert gitlab_authorship(gitlab.MergeRequest(IID, BOB, B), commits, None, signed).why == \
        "@bob.m speaks for no user of members.yaml at BASE"


def test_gitlab_accounts_of_base_users() -> None:
    users = {name: User.model_validate(fields) for name, fields in {
        "alice": {"github": "achen", "gitlab": "alice.c", "gitlabId": 7001},
        "bob": {"gitlab": "Bob.M"}, "carol": {"gitlabId": 7003}, "dave": {"github": "dave-o"},
        "erin": {"gitlab": "bob.m"}, "frank": {"gitlab": "frank"}}.items()}
    accounts = Accounts(users, GITLAB)
    assert accounts.speaks_for(Account("alice-renamed", 7001)) == "alice"
    assert accounts.speaks_for(Account("alice.c", 9999)) is None  # re-registered elsewhere
    assert accounts.speaks_for(Account("BOB.m", 1)) is None  # bob and erin share it
    assert accounts.speaks_for(Account("Frank", 2)) == "frank"
    assert accounts.speaks_for(Account("dave-o", 3)) is None  # a GitHub login only
    assert accounts.shown(["alice", "carol", "dave"]) == ("alice.c", "id 7003")


def test_the_client_refuses_what_it_cannot_send(tmp_path: Path) -> None:
    token = gitlab.Token(Secret("glpat-canary-0123456789"), "GITLAB_TOKEN")
    header = gitlab._TokenHeader(token)
    assert "canary" not in repr(header) and token.header == "PRIVATE-TOKEN"
    assert gitlab.Token(Secret("x"), "CI_JOB_TOKEN").header == "JOB-TOKEN"
    with pytest.raises(Exception, match="project id") as raised:
        gitlab.MergeRequests("https://gitlab.example.com/api/v4", "1/../../x?", token)
    assert "canary" not in str(raised.value)


def test_git_lists_the_commits_between_base_and_head(tmp_path: Path) -> None:
    from connc.diff.revisions import commits_between, shallow
    from connc.process import Deadline

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    base = commit(repo, "base")
    first = commit(repo, "one")
    write(repo, "file", "x")
    env = {**os.environ, **GIT_IDENTITY, "GIT_AUTHOR_EMAIL": "other@example.com"}
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "two"], cwd=repo, env=env,
                   check=True)
    second = git(repo, "rev-parse", "HEAD").strip()
    deadline = Deadline(60)
    assert commits_between(repo, base, second, 5, deadline) == [
        CommitEmails(first, "test@connc.invalid", "test@connc.invalid"),
        CommitEmails(second, "other@example.com", "test@connc.invalid")]
    assert commits_between(repo, base, second, 1, deadline) is None  # more than the limit
    assert commits_between(repo, second, second, 5, deadline) == []
    assert not shallow(repo, deadline)
