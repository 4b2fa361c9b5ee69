"""`connc check --reach` against local services built from each API's documented shapes: what
each credential opens, paginated and bounded, next to what the pipelines that use it get; the
refusals, timeouts and redaction of every path.

Every run goes through `checkkit.run_check` (or, where a test must point connc at a fake in
place of a public host, `reach_in_process`), which asserts that no secret of the test shows in
stdout or stderr and that nothing is left in the temp dir.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from checkkit import canary, run_check

from connc.check import bitbucket as bitbucket_reach
from connc.check import reach as reach_model
from connc.check import reach_report, reach_run
from kit.build import connection, key_env, make_repo
from kit.keys import ssh_key_pair
from kit.run import connc, popen
from kit.servers.bitbucket_api import FakeBitbucket, bitbucket_api  # noqa: F401
from kit.servers.git_http import GitHttpServer, git_env, git_server, run_git  # noqa: F401
from kit.servers.github_fake import FakeGitHub, github_api  # noqa: F401
from kit.servers.gitlab_api import DEVELOPER, MAINTAINER, OWNER, REPORTER, FakeGitLab, gitlab_api  # noqa: F401
from kit.servers.hostile import Reply, Seen, recording_server, trickling_server
from kit.servers.kube_api import TOKEN_USER, KubeApiServer, kube_server  # noqa: F401
from kit.servers.registry import RegistryServer, registry_server  # noqa: F401
from kit.servers.sshd import SshServer, ssh_server  # noqa: F401

pytestmark = pytest.mark.servers


def uses(pipeline_id: str, *entries: dict[str, Any], owner: str = "alice") -> dict[str, Any]:
    return {"apiVersion": "connc/v1", "kind": "Pipeline",
            "metadata": {"id": pipeline_id, "owner": owner}, "uses": list(entries)}


def gets(reach: dict[str, Any]) -> dict[str, str]:
    return {use["pipeline"]: use["gets"] for use in reach["uses"]}


def names(reach: dict[str, Any]) -> list[str]:
    return [item["name"] for item in reach["items"]]


def squeezed(text: str) -> list[str]:
    """Text output, each line with its runs of blanks (column padding) made one."""
    return [" ".join(line.split()) for line in text.splitlines()]


# --- GitHub App ----------------------------------------------------------------------------


def _app(github: FakeGitHub, conn_id: str = "gh-app", **scope: Any) -> dict[str, Any]:
    return connection(conn_id, type_="github-app",
                      credential={"privateKey": github.private_key_pem},
                      spec={"apiUrl": github.url, "appId": int(github.app_id),
                            "installationId": github.installation_id}, **scope)


def test_github_app_installation_paginated_against_each_narrowing(github_api: FakeGitHub,
                                                                  tmp_path: Path) -> None:
    """250 repositories over three pages; one pipeline narrows, one does not: the row says
    what each gets, and the one that does not narrow is a warning. The token minted to list
    them holds metadata: read alone and is revoked."""
    github_api.repositories = [f"svc-{n:03}" for n in range(250)]
    github_api.default_branches["svc-001"] = "trunk"
    token = "ghs_" + canary().replace("-", "")
    github_api.queue_token(token)
    root = make_repo(tmp_path / "repo", connections={"gh-app": _app(github_api)}, pipelines={
        "api-release": uses("api-release", {"connection": "gh-app",
                                            "repositories": ["svc-001", "svc-002"],
                                            "permissions": {"contents": "write"}}),
        "nightly": uses("nightly", {"connection": "gh-app"}),
    })
    ran = run_check(root, tmp_path, "--reach", hidden=[token, github_api.private_key_pem])
    assert ran.proc.returncode == 0, ran.proc.stdout + ran.proc.stderr
    reach = ran.reach("gh-app")
    assert (reach["kind"], reach["total"], reach["complete"]) == ("repositories", 250, True)
    assert len(reach["items"]) == 250
    assert reach["items"][1] == {"name": "octo-org/svc-001", "defaultBranch": "trunk",
                                 "access": None, "branches": None, "wildcard": False}
    assert ran.message("gh-app") == (
        f"installation {github_api.installation_id} of octo-org (all repositories) reaches "
        f"250 repositories; the token minted to list them (metadata: read) was revoked")
    assert gets(reach) == {
        "api-release": "repositories svc-001, svc-002; contents: write",
        "nightly": "all 250 repositories of the installation (no `repositories`); every "
                   "permission of the installation (contents: write, metadata: read, "
                   "packages: read, pull_requests: write)"}
    assert reach["warnings"] == [
        "pipeline `nightly` sets no `repositories`: its token opens all 250 repositories of "
        "the installation; list the ones it needs in its `uses` entry"]
    [minted] = github_api.minted
    assert (minted.repositories, minted.permissions) == (None, {"metadata": "read"})
    assert github_api.revoked == [token]
    listed = [r for r in github_api.requests if r.path == "/installation/repositories"]
    assert [r.params.get("page") for r in listed] == [None, "2", "3"]
    assert {r.params["per_page"] for r in listed} == {"100"}


def test_github_app_reaching_beyond_every_narrowing_names_the_selection(
        github_api: FakeGitHub, tmp_path: Path) -> None:
    github_api.repositories = ["app", "infra", "docs", "site", "tools"]
    root = make_repo(tmp_path / "repo", connections={"gh-app": _app(github_api)}, pipelines={
        "deploy": uses("deploy", {"connection": "gh-app", "repositories": ["app", "ghost"],
                                  "permissions": {"contents": "read",
                                                  "issues": "write"}}),
        "docs": uses("docs", {"connection": "gh-app", "repositories": ["docs"],
                              "permissions": {"contents": "read"}, "refresh": True}),
    })
    ran = run_check(root, tmp_path, "--reach", hidden=[github_api.private_key_pem])
    reach = ran.reach("gh-app")
    assert gets(reach) == {
        "deploy": "repositories app, ghost (not reached); contents: read, issues: write "
                  "(issues beyond the installation's grant: its render fails)",
        "docs": "repositories docs; contents: read; and the App key itself, which opens the "
                "whole installation (refresh: true)"}
    url = (f"https://github.com/organizations/octo-org/settings/installations/"
           f"{github_api.installation_id}")
    assert reach["warnings"] == [
        f"pipeline `deploy` names ghost, which installation {github_api.installation_id} "
        f"does not reach: its render fails (HTTP 422)",
        f"installation {github_api.installation_id} reaches 5 repositories, its pipelines "
        f"name 2 (app, docs): on GitHub, set its repository access to \"Only select "
        f"repositories\" and choose those ({url})",
        f"installation {github_api.installation_id} holds permissions no pipeline asks for "
        f"(contents: write, packages: read, pull_requests: write): remove them from the App's "
        f"permissions on GitHub, or lower them to what the pipelines ask"]
    # Not a warning: a narrowing that matches the installation.
    github_api.repositories = ["app", "docs"]
    github_api.permissions = {"contents": "read", "metadata": "read", "issues": "write"}
    assert run_check(root, tmp_path, "--reach").reach("gh-app")["warnings"][1:] == []


def test_text_output(github_api: FakeGitHub, tmp_path: Path) -> None:
    """The check's line, then what the credential reaches, what each pipeline gets, and the
    warnings; the summary on stderr."""
    root = make_repo(tmp_path / "repo", connections={"gh-app": _app(github_api)}, pipelines={
        "deploy": uses("deploy", {"connection": "gh-app", "repositories": ["app"],
                                  "permissions": {"contents": "read"}})})
    proc = connc("check", "--reach", "--repo", root, env=key_env(), timeout=60)
    installation = github_api.installation_id
    assert proc.stdout.splitlines() == [
        f"ok           gh-app  github-app  {github_api.url}/app/installations/{installation}: "
        f"installation {installation} of octo-org (all repositories) reaches 3 repositories; "
        f"the token minted to list them (metadata: read) was revoked",
        "    reaches    octo-org/app    default branch main",
        "               octo-org/docs   default branch main",
        "               octo-org/infra  default branch main",
        "    used by    deploy  repositories app; contents: read",
        f"    warning    installation {installation} reaches 3 repositories, its pipelines name "
        f"1 (app): on GitHub, set its repository access to \"Only select repositories\" and "
        f"choose those (https://github.com/organizations/octo-org/settings/installations/"
        f"{installation})",
        f"    warning    installation {installation} holds permissions no pipeline asks for "
        f"(contents: write, packages: read, pull_requests: write): remove them from the App's "
        f"permissions on GitHub, or lower them to what the pipelines ask",
    ]
    assert proc.stderr == "connc: 1 asked, 0 failed, 0 not checked; 2 warnings\n"
    assert proc.returncode == 0  # warnings inform; only a failed connection fails the run


def test_github_app_branches_bounded_and_the_token_asks_contents(github_api: FakeGitHub,
                                                                 tmp_path: Path) -> None:
    github_api.repositories = ["app", "infra"]
    github_api.branches["app"] = ["main", "release/1.0", "feature/x"]
    github_api.branches["infra"] = [f"b{n:03}" for n in range(130)]
    root = make_repo(tmp_path / "repo", connections={"gh-app": _app(github_api)})
    ran = run_check(root, tmp_path, "--reach", "--branches")
    reach = ran.reach("gh-app")
    app, infra = reach["items"]
    assert app["branches"] == {"names": ["main", "release/1.0", "feature/x"], "total": None,
                               "complete": True}
    assert len(infra["branches"]["names"]) == 100
    assert infra["branches"]["complete"] is False
    assert gets(reach) == {} and reach["uses"] == []
    [minted] = github_api.minted
    assert minted.permissions == {"metadata": "read", "contents": "read"}
    assert github_api.revoked == [minted.token]

    text = squeezed(connc("check", "--reach", "--branches", "--repo", root,
                          env=key_env(), timeout=60).stdout)
    assert "reaches octo-org/app default branch main branches main, release/1.0, " \
           "feature/x" in text
    assert any(line.endswith("b099 and more (the service does not count them)")
               for line in text)
    assert "used by no pipeline" in text

    # Without `contents`, the branches are not asked, and the row says why.
    github_api.permissions = {"metadata": "read", "pull_requests": "read"}
    reach = run_check(root, tmp_path, "--reach", "--branches").reach("gh-app")
    assert all(item["branches"] is None for item in reach["items"])
    assert reach["notes"] == ["branches not asked: the installation has no `contents` "
                              "permission, which listing branches needs"]
    assert github_api.minted[-1].permissions == {"metadata": "read"}


def test_github_app_listing_is_bounded(github_api: FakeGitHub, tmp_path: Path) -> None:
    github_api.repositories = [f"r{n:04}" for n in range(reach_model.MAX_LISTED + 120)]
    root = make_repo(tmp_path / "repo", connections={"gh-app": _app(github_api)})
    reach = run_check(root, tmp_path, "--reach").reach("gh-app")
    assert len(reach["items"]) == reach_model.MAX_LISTED
    assert (reach["total"], reach["complete"]) == (reach_model.MAX_LISTED + 120, False)
    text = connc("check", "--reach", "--repo", root, env=key_env(), timeout=60).stdout
    shown = reach_report.TEXT_ITEMS
    assert (f"\n               and {reach_model.MAX_LISTED + 120 - shown} more (--format json "
            f"lists {reach_model.MAX_LISTED - shown} of them)\n") in text
    assert sum(r.path == "/installation/repositories" for r in github_api.requests) == 2 * 5


def test_github_app_a_failed_listing_still_revokes(github_api: FakeGitHub,
                                                   tmp_path: Path) -> None:
    token = "ghs_" + canary().replace("-", "")
    github_api.queue_token(token)
    github_api.listing_failure = 403
    root = make_repo(tmp_path / "repo", connections={"gh-app": _app(github_api)})
    ran = run_check(root, tmp_path, "--reach", hidden=[token, github_api.private_key_pem])
    assert ran.proc.returncode == 1
    assert ran.status("gh-app") == "failed"
    assert ran.outcomes["gh-app"]["reach"] is None
    assert "list the installation's repositories" in ran.message("gh-app")
    assert "HTTP 403" in ran.message("gh-app")
    assert ran.message("gh-app").endswith("; the token minted to ask was revoked")
    assert github_api.revoked == [token]
    assert "Traceback" not in ran.proc.stderr


def test_github_app_refused_jwt_mints_nothing(github_api: FakeGitHub, tmp_path: Path) -> None:
    connection_doc = _app(github_api)
    connection_doc["credential"]["privateKey"] = github_api.other_private_key_pem
    root = make_repo(tmp_path / "repo", connections={"gh-app": connection_doc})
    ran = run_check(root, tmp_path, "--reach", hidden=[github_api.other_private_key_pem])
    assert ran.proc.returncode == 1
    assert "HTTP 401" in ran.message("gh-app") and "clock" in ran.message("gh-app")
    assert github_api.minted == []


def test_one_deadline_bounds_the_whole_run(github_api: FakeGitHub, tmp_path: Path) -> None:
    """Two connections whose services trickle one byte at a time: `--timeout` is the whole
    run's budget, so both end with it, in parallel, and each says so in one line."""
    with trickling_server() as slow:
        slow_app = _app(github_api, "slow-app")
        slow_app["spec"]["apiUrl"] = slow.url
        root = make_repo(tmp_path / "repo", connections={
            "slow-app": slow_app,
            "slow-gitlab": connection("slow-gitlab", type_="gitlab-self-hosted",
                                      spec={"url": slow.url + "/acme"},
                                      credential={"token": canary()})})
        started = time.monotonic()
        ran = run_check(root, tmp_path, "--reach", "--timeout", "1.5",
                        hidden=[github_api.private_key_pem])
        elapsed = time.monotonic() - started
    assert elapsed < 9, elapsed
    assert ran.proc.returncode == 1
    assert "no answer within 1.5 s" in ran.message("slow-app")
    assert ran.message("slow-gitlab") == "timeout: no answer from 127.0.0.1 within 1.5 s"


def test_the_deadline_is_the_runs_not_each_requests(tmp_path: Path) -> None:
    """A catalog that answers every page in 0.4 s and never ends: each request is well within
    `--timeout 2`, and the run still ends at 2 s, not after hundreds of pages."""
    password = canary()

    def slow_page(seen: Seen) -> Reply:
        time.sleep(0.4)
        n = len(seen.path)
        return Reply(200, {"Content-Type": "application/json",
                           "Link": f'</v2/_catalog?last=r{n}&n=100>; rel="next"'},
                     json.dumps({"repositories": [f"r{n}-{len(str(time.time()))}"]}).encode())

    with recording_server({"/v2/_catalog": slow_page}) as server:
        root = make_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
            credential={"username": "reader", "password": password})})
        started = time.monotonic()
        ran = run_check(root, tmp_path, "--reach", "--timeout", "2", hidden=[password])
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    assert ran.message("reg") == "timeout: no answer from 127.0.0.1 within 2 s"
    assert 2 <= len(server.seen) <= 8


def test_sigterm_ends_a_reach_at_once(tmp_path: Path) -> None:
    with trickling_server() as slow:
        root = make_repo(tmp_path / "repo", connections={
            f"slow-{n}": connection(f"slow-{n}", type_="gitlab-self-hosted",
                                    spec={"url": slow.url + "/acme"},
                                    credential={"token": canary()}) for n in range(2)})
        temp = tmp_path / "check-tmp"
        temp.mkdir()
        process = popen(
            "check", "--reach", "--repo", root,
            env=key_env(TMPDIR=str(temp)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            deadline = time.monotonic() + 15
            while slow.server.accepted < 2:
                assert time.monotonic() < deadline, "the requests never reached the server"
                time.sleep(0.02)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _stdout, stderr = process.communicate(timeout=15)
            ended = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, stderr
    assert ended < 3, ended
    assert list(temp.iterdir()) == []


# --- GitLab --------------------------------------------------------------------------------


def _gitlab(gitlab: FakeGitLab, conn_id: str, token: str, path: str = "/acme",
            type_: str = "gitlab-self-hosted") -> dict[str, Any]:
    return connection(conn_id, type_=type_, spec={"url": gitlab.url + path},
                      credential={"token": token})


def test_gitlab_projects_with_roles_paginated_and_beyond_the_url(gitlab_api: FakeGitLab,
                                                                tmp_path: Path) -> None:
    for n in range(120):
        gitlab_api.add_project(f"acme/svc-{n:03}")
    gitlab_api.add_project("acme/empty", default_branch=None)
    gitlab_api.add_project("other/secret-sauce")
    gitlab_api.add_project("personal/dotfiles", default_branch="master")
    memberships: dict[str, tuple[int | None, int | None]] = {
        f"acme/svc-{n:03}": (None, DEVELOPER) for n in range(120)}
    memberships["acme/svc-000"] = (MAINTAINER, REPORTER)
    memberships.update({"acme/empty": (None, None), "other/secret-sauce": (OWNER, None),
                        "personal/dotfiles": (OWNER, None)})
    token = gitlab_api.add_token(memberships)
    root = make_repo(tmp_path / "repo",
                     connections={"gl": _gitlab(gitlab_api, "gl", token)},
                     pipelines={"build": uses("build", {"connection": "gl"})})
    ran = run_check(root, tmp_path, "--reach", hidden=[token])
    assert ran.proc.returncode == 0, ran.proc.stdout
    reach = ran.reach("gl")
    assert (reach["kind"], reach["total"], reach["complete"]) == ("projects", 123, True)
    by_name = {item["name"]: item for item in reach["items"]}
    assert by_name["acme/svc-000"]["access"] == "Maintainer"  # the higher of the two
    assert by_name["acme/svc-001"]["access"] == "Developer"
    assert by_name["acme/empty"]["access"] is None
    assert by_name["acme/empty"]["defaultBranch"] is None
    assert by_name["personal/dotfiles"]["defaultBranch"] == "master"
    assert reach["notes"] == ["role unknown for 1 project: GitLab's list leaves it out where "
                              "access comes through a shared group"]
    host = "127.0.0.1"
    assert gets(reach) == {"build": f"projects under acme/ on {host} (121 of those the "
                                    f"credential reaches)"}
    assert reach["warnings"] == [
        "the credential reaches 2 projects outside acme/, where this connection is used "
        "(other/secret-sauce, personal/dotfiles): a group access token of acme would match"]
    listed = [s for s in gitlab_api.seen if s.path == "/api/v4/projects"]
    assert [s.params.get("page") for s in listed] == [None, "2"]
    assert listed[0].params == {"membership": "true", "min_access_level": "10",
                                "per_page": "100"}
    assert {s.auth for s in gitlab_api.seen} == {"bearer"}

    text = squeezed(connc("check", "--reach", "--repo", root, env=key_env(), timeout=60).stdout)
    assert "reaches acme/empty default branch unknown role unknown" in text
    assert "acme/svc-000 default branch main Maintainer" in text


def test_gitlab_beyond_ten_thousand_and_the_bound(gitlab_api: FakeGitLab, tmp_path: Path) -> None:
    """GitLab stops counting above 10,000: the listing stops at the bound, and says the rest
    goes on uncounted, rather than inventing a number."""
    gitlab_api.hide_totals = True
    for n in range(reach_model.MAX_LISTED + 30):
        gitlab_api.add_project(f"acme/p{n:04}")
    token = gitlab_api.add_token({p: (REPORTER, None) for p in gitlab_api.projects})
    root = make_repo(tmp_path / "repo", connections={"gl": _gitlab(gitlab_api, "gl", token)})
    ran = run_check(root, tmp_path, "--reach", hidden=[token])
    reach = ran.reach("gl")
    assert (reach["total"], reach["complete"]) == (None, False)
    assert len(reach["items"]) == reach_model.MAX_LISTED
    assert ran.message("gl").startswith(
        f"the token is a member of at least {reach_model.MAX_LISTED} projects (GitLab stops "
        f"counting above 10,000)")


def test_gitlab_branches_and_refusals(gitlab_api: FakeGitLab, tmp_path: Path) -> None:
    gitlab_api.add_project("acme/api", branches=["main", "dev"])
    good = gitlab_api.add_token({"acme/api": (DEVELOPER, None)})
    clone_only = gitlab_api.add_token({"acme/api": (DEVELOPER, None)},
                                      scopes=("read_repository",))
    wrong = canary()
    root = make_repo(tmp_path / "repo", connections={
        "gl": _gitlab(gitlab_api, "gl", good, "/acme/api.git"),
        "gl-clone-only": _gitlab(gitlab_api, "gl-clone-only", clone_only),
        "gl-wrong": _gitlab(gitlab_api, "gl-wrong", wrong)})
    ran = run_check(root, tmp_path, "--reach", "--branches", hidden=[good, clone_only, wrong])
    assert ran.proc.returncode == 1
    [item] = ran.reach("gl")["items"]
    assert item["branches"] == {"names": ["main", "dev"], "total": 2, "complete": True}
    assert ran.reach("gl")["warnings"] == []
    clone = ran.reach("gl-clone-only")
    assert (ran.status("gl-clone-only"), clone["asked"]) == ("ok", False)
    assert ran.message("gl-clone-only").startswith(
        "cannot be asked: the token has no API scope (read_api or api); GitLab answered "
        "HTTP 403")
    assert ran.status("gl-wrong") == "failed"
    assert ran.message("gl-wrong") == "auth refused (HTTP 401)"
    assert ran.outcomes["gl-wrong"]["target"] == f"{gitlab_api.url}/api/v4/projects?membership=true"


def test_a_service_echoing_the_credential_is_redacted(gitlab_api: FakeGitLab,
                                                      tmp_path: Path) -> None:
    """A hostile or broken server that puts the token it was sent into a project path or a
    branch name: the output shows `[redacted]`, never the token."""
    token = gitlab_api.add_token({})
    gitlab_api.add_project(f"acme/{token}", default_branch=token, branches=[token, "main"])
    gitlab_api.tokens[token].memberships[f"acme/{token}"] = (DEVELOPER, None)
    root = make_repo(tmp_path / "repo", connections={"gl": _gitlab(gitlab_api, "gl", token)})
    ran = run_check(root, tmp_path, "--reach", "--branches", hidden=[token])
    [item] = ran.reach("gl")["items"]
    assert item["name"] == "acme/[redacted]"
    assert item["defaultBranch"] == "[redacted]"
    assert item["branches"]["names"] == ["[redacted]", "main"]
    text = connc("check", "--reach", "--branches", "--repo", root, env=key_env(), timeout=60)
    assert token not in text.stdout + text.stderr
    assert "acme/[redacted]" in text.stdout


# --- Bitbucket -----------------------------------------------------------------------------


def reach_in_process(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str,
                     hidden: Iterable[str] = (), branches: bool = False
                     ) -> tuple[int, dict[str, dict[str, Any]], str]:
    """`reach_run.run` in this process (so a test can point connc at a fake in place of a
    public API); (exit code, rows by id, text output); no secret in any output."""
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", key_env()["SOPS_AGE_KEY_FILE"])
    out, err = io.StringIO(), io.StringIO()
    code = reach_run.run(root, list(args), "json", 30, branches, out, err)
    text_out = io.StringIO()
    reach_run.run(root, list(args), "text", 30, branches, text_out, io.StringIO())
    for secret in hidden:
        for shown in (out.getvalue(), err.getvalue(), text_out.getvalue()):
            assert secret not in shown
    rows = {row["id"]: row for row in json.loads(out.getvalue())["connections"]}
    return code, rows, text_out.getvalue()


def test_bitbucket_cloud_repositories(bitbucket_api: FakeBitbucket, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Bitbucket Cloud's API is at api.bitbucket.org: the test points that at the fake."""
    monkeypatch.setattr(bitbucket_reach, "CLOUD_APIS", {"127.0.0.1": bitbucket_api.api})
    for n in range(130):
        bitbucket_api.add_repository(f"acme/r{n:03}")
    bitbucket_api.add_repository("acme/api", branches=["main", "hotfix"])
    bitbucket_api.add_repository("elsewhere/tool", mainbranch="master")
    token, password, wrong, refused = canary(), canary(), canary(), canary()
    everything = sorted(bitbucket_api.repositories)
    bitbucket_api.allow_token(token, ["acme/api"])  # a repository access token
    bitbucket_api.allow_password("ci-user", password, everything)  # a user's app password
    bitbucket_api.allow_token(refused, ["acme/api"])
    bitbucket_api.refuse(refused)

    def bb(conn_id: str, path: str, credential: dict[str, str]) -> dict[str, Any]:
        return connection(conn_id, type_="bitbucket", spec={"url": bitbucket_api.url + path},
                          credential=credential)

    root = make_repo(tmp_path / "repo", connections={
        "bb-token": bb("bb-token", "/acme/api.git", {"token": token}),
        "bb-user": bb("bb-user", "/acme", {"username": "ci-user", "password": password}),
        "bb-wrong": bb("bb-wrong", "/acme", {"token": wrong}),
        "bb-refused": bb("bb-refused", "/acme", {"token": refused})})
    code, rows, text = reach_in_process(root, monkeypatch, hidden=[token, password, wrong,
                                                                  refused], branches=True)
    assert code == 1
    token_reach = rows["bb-token"]["reach"]
    assert token_reach["items"] == [{"name": "acme/api", "defaultBranch": "main",
                                     "access": None, "wildcard": False,
                                     "branches": {"names": ["main", "hotfix"], "total": 2,
                                                  "complete": True}}]
    assert token_reach["warnings"] == []
    user_reach = rows["bb-user"]["reach"]
    assert (user_reach["total"], user_reach["complete"]) == (132, True)
    assert user_reach["warnings"] == [
        "the credential reaches 1 repository outside acme/, where this connection is used "
        "(elsewhere/tool): a workspace (or project) access token of acme would match"]
    assert (rows["bb-wrong"]["status"], rows["bb-wrong"]["message"]) == (
        "failed", "auth refused (HTTP 401)")
    assert rows["bb-refused"]["reach"]["asked"] is False
    assert "cannot be asked: Bitbucket refused to list" in rows["bb-refused"]["message"]
    assert bitbucket_api.paths.count("/2.0/repositories") >= 2 + 1  # two pages, one token
    assert "reaches acme/api default branch main branches main, hotfix" in squeezed(text)


def test_bitbucket_off_the_cloud_lists_the_urls_branches(git_server: GitHttpServer,
                                                         tmp_path: Path) -> None:
    url = git_server.add_repo("org-a/api.git")
    password = canary()
    git_server.add_account("bot", password, "org-a")
    root = make_repo(tmp_path / "repo", connections={"bb-dc": connection(
        "bb-dc", type_="bitbucket", spec={"url": url},
        credential={"username": "bot", "password": password})})
    ran = run_check(root, tmp_path, "--reach", hidden=[password])
    assert ran.proc.returncode == 0, ran.proc.stdout
    assert ran.message("bb-dc") == (
        "this is not Bitbucket Cloud (bitbucket.org), and the API of Bitbucket Data Center is "
        "not asked, so the repositories it opens cannot be asked; 1 branch of the url's "
        "repository (default branch main)")


# --- generic git and Codeup ----------------------------------------------------------------


def test_generic_git_branches_prefix_and_codeup(git_server: GitHttpServer,
                                                tmp_path: Path) -> None:
    url = git_server.add_repo("org-a/api.git")
    head = git_server.head("org-a/api.git")
    for branch in ("release/1.0", "dev"):
        run_git(["update-ref", f"refs/heads/{branch}", head], git_env(tmp_path),
                cwd=git_server.root / "org-a/api.git")
    password, wrong = canary(), canary()
    git_server.add_account("bot", password, "org-a")

    def git_conn(conn_id: str, type_: str, url: str, secret: str) -> dict[str, Any]:
        return connection(conn_id, type_=type_, spec={"url": url},
                          credential={"username": "bot", "password": secret})

    root = make_repo(tmp_path / "repo", connections={
        "repo": git_conn("repo", "git", url, password),
        "prefix": git_conn("prefix", "git", f"{git_server.url}/org-a", password),
        "codeup": git_conn("codeup", "codeup", url, password),
        "wrong": git_conn("wrong", "git", url, wrong),
    }, pipelines={"build": uses("build", {"connection": "repo"})})
    ran = run_check(root, tmp_path, "--reach", hidden=[password, wrong])
    assert ran.proc.returncode == 1
    [item] = ran.reach("repo")["items"]
    assert item["name"] == url and item["defaultBranch"] == "main"
    assert item["branches"] == {"names": ["dev", "main", "release/1.0"], "total": 3,
                                "complete": True}
    assert ran.message("repo") == "3 branches of the url's repository (default branch main)"
    assert gets(ran.reach("repo")) == {"build": "this repository"}
    prefix = ran.reach("prefix")
    assert prefix["asked"] is False and prefix["items"] == []
    assert ran.message("prefix") == ("the url is a path prefix, not a repository, and git has "
                                     "no way to list the repositories under it: what the "
                                     "credential opens there is unknown")
    assert ran.message("codeup").startswith("Codeup's API takes an organization's access "
                                            "token in a header of its own")
    assert ran.message("codeup").endswith("; 3 branches of the url's repository (default "
                                          "branch main)")
    assert (ran.status("wrong"), ran.message("wrong")) == ("failed", "auth refused (HTTP 401)")


def test_git_over_ssh_branches(ssh_server: tuple[SshServer, Path], tmp_path: Path) -> None:
    server, authorized = ssh_server
    key, public = ssh_key_pair()
    authorized.write_text(public + "\n")
    url = server.add_repo("infra.git")
    root = make_repo(tmp_path / "repo", connections={"ssh": connection(
        "ssh", type_="git", spec={"url": url, "knownHosts": server.host_key_line},
        credential={"sshPrivateKey": key})})
    ran = run_check(root, tmp_path, "--reach", hidden=[key])
    assert ran.proc.returncode == 0, ran.proc.stdout
    [item] = ran.reach("ssh")["items"]
    assert item["branches"]["names"] == ["main"] and item["defaultBranch"] == "main"


# --- container registries ------------------------------------------------------------------


def test_registry_catalog_real_registry(registry_server: RegistryServer, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real docker-registry with htpasswd: its catalog, page by page (a page of two to
    see its `Link` followed); a wrong password fails as the credential, not as the catalog."""
    for repo in ("reach/alpha", "reach/beta", "reach/gamma"):
        registry_server.push_test_image(repo)
    wrong = canary()
    root = make_repo(tmp_path / "repo", connections={
        f"reg-{name}": connection(f"reg-{name}", type_="container-registry",
                                  spec={"registry": registry_server.host},
                                  credential={"username": registry_server.username,
                                              "password": password})
        for name, password in (("ok", registry_server.password), ("wrong", wrong))})
    ran = run_check(root, tmp_path, "--reach", hidden=[registry_server.password, wrong])
    assert ran.proc.returncode == 1
    reach = ran.reach("reg-ok")
    assert {"reach/alpha", "reach/beta", "reach/gamma"} <= set(names(reach))
    assert reach["complete"] is True and reach["kind"] == "catalog"
    assert (ran.status("reg-wrong"), ran.message("reg-wrong")) == ("failed",
                                                                   "auth refused (HTTP 401)")

    monkeypatch.setattr(reach_model, "PAGE_SIZE", 2)
    monkeypatch.setattr("connc.check.registry.PAGE_SIZE", 2)
    code, rows, _text = reach_in_process(root, monkeypatch, "reg-ok",
                                         hidden=[registry_server.password])
    assert code == 0
    paged = rows["reg-ok"]["reach"]
    assert names(paged) == names(reach) and paged["complete"] is True


def test_registry_catalog_not_permitted_and_token_scope(tmp_path: Path) -> None:
    """A registry with a token service (Docker Hub, Harbor, GitLab's) whose token service
    accepts the credential but grants no `registry:catalog:*`: not permitted, not guessed."""
    password, token = canary(), canary()
    basic = "Basic " + base64.b64encode(f"reader:{password}".encode()).decode()
    with recording_server() as server:
        realm = server.url() + "/token"
        challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",'
                                         f'scope="registry:catalog:*"'}

        # With or without the token: it was issued without the catalog scope.
        server.routes["/v2/_catalog"] = Reply(401, challenge)
        server.routes["/token"] = lambda seen: Reply(
            200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()) \
            if seen.headers.get("Authorization") == basic else Reply(401)
        root = make_repo(tmp_path / "repo", connections={
            "reg": connection("reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
                              credential={"username": "reader", "password": password}),
            "reg-wrong": connection("reg-wrong", type_="container-registry",
                                    spec={"registry": f"127.0.0.1:{server.port}"},
                                    credential={"username": "reader", "password": canary()})})
        ran = run_check(root, tmp_path, "--reach", hidden=[password, token])
    assert ran.status("reg") == "ok"
    assert ran.reach("reg")["asked"] is False
    assert ran.message("reg").startswith("catalog not permitted (HTTP 401): the registry does "
                                         "not list its repositories to this credential")
    assert ran.message("reg-wrong") == "the token service 127.0.0.1: auth refused (HTTP 401)"
    token_asks = [parse_qs(urlsplit(s.path).query) for s in server.seen
                  if s.path.startswith("/token?")]
    assert len(token_asks) == 2
    assert all(ask["scope"] == ["registry:catalog:*"] for ask in token_asks)


def test_registry_next_page_elsewhere_is_not_followed(tmp_path: Path) -> None:
    password = canary()
    with recording_server() as other, recording_server() as server:
        page = json.dumps({"repositories": ["a", "b"]}).encode()
        server.routes["/v2/_catalog"] = Reply(
            200, {"Content-Type": "application/json",
                  "Link": f'<{other.url("localhost")}/v2/_catalog?last=b&n=100>; rel="next"'},
            page)
        root = make_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
            credential={"username": "reader", "password": password})})
        ran = run_check(root, tmp_path, "--reach", hidden=[password])
    assert ran.status("reg") == "failed"
    assert ran.message("reg") == ("refused: the next page is at localhost, not at 127.0.0.1; "
                                  "connc does not send the credential there")
    assert other.seen == []


@pytest.mark.parametrize(("second", "message"), [
    (Reply(500), "server error (HTTP 500) on a later page of the list"),
    (Reply(200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"),
     "the answer is not the list the API documents (not this service, or an answer cut off "
     "at its size limit)"),
])
def test_a_broken_later_page_is_one_line(second: Reply, message: str, tmp_path: Path) -> None:
    password = canary()

    def catalog(seen: Seen) -> Reply:
        if "last=" in seen.path:
            return second
        return Reply(200, {"Content-Type": "application/json",
                           "Link": '</v2/_catalog?last=a&n=100>; rel="next"'},
                     json.dumps({"repositories": ["a"]}).encode())

    with recording_server({"/v2/_catalog": catalog}) as server:
        root = make_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
            credential={"username": "reader", "password": password})})
        ran = run_check(root, tmp_path, "--reach", hidden=[password])
    assert (ran.status("reg"), ran.message("reg")) == ("failed", message)
    assert ran.outcomes["reg"]["target"] == f"http://127.0.0.1:{server.port}/v2/_catalog"
    assert "Traceback" not in ran.proc.stderr


def test_no_catalog_and_no_gitlab_api_are_said(tmp_path: Path) -> None:
    password, token = canary(), canary()
    with recording_server({"/v2/": Reply(200)}) as server:
        root = make_repo(tmp_path / "repo", connections={
            "reg": connection("reg", type_="container-registry",
                              spec={"registry": f"127.0.0.1:{server.port}"},
                              credential={"username": "reader", "password": password}),
            "gl": connection("gl", type_="gitlab-self-hosted",
                             spec={"url": server.url() + "/acme"}, credential={"token": token})})
        ran = run_check(root, tmp_path, "--reach", hidden=[password, token])
    assert (ran.status("reg"), ran.reach("reg")["asked"]) == ("ok", False)
    assert ran.message("reg").startswith("catalog not permitted (HTTP 404)")
    assert (ran.status("gl"), ran.message("gl")) == (
        "failed", f"not found (HTTP 404); is there a GitLab API v4 at 127.0.0.1:{server.port}?")


# --- Kubernetes ----------------------------------------------------------------------------


def test_kubernetes_rules_with_wildcards(kube_server: KubeApiServer, tmp_path: Path) -> None:
    kube_server.grant(TOKEN_USER, "prod", ["get", "list", "watch"], ["pods", "services"])
    kube_server.grant(TOKEN_USER, "prod", ["*"], ["deployments"], ("apps",))
    kube_server.grant(TOKEN_USER, "other", ["*"], ["*"], ("*",))
    wrong = canary()
    ca = base64.b64encode(kube_server.ca_pem).decode()
    cert, key = kube_server.make_client_cert("cert-user")
    kube_server.grant("cert-user", "default", ["get"], ["configmaps"])

    def kube(conn_id: str, credential: dict[str, str], **spec: str) -> dict[str, Any]:
        return connection(conn_id, type_="kubernetes", credential=credential,
                          spec={"server": kube_server.server, "certificateAuthorityData": ca,
                                **spec})

    root = make_repo(tmp_path / "repo", connections={
        "k8s": kube("k8s", {"token": kube_server.token}, namespace="prod"),
        "k8s-cert": kube("k8s-cert", {"clientCertificateData": base64.b64encode(cert).decode(),
                                      "clientKeyData": base64.b64encode(key).decode()}),
        "k8s-wrong": kube("k8s-wrong", {"token": wrong}, namespace="prod")},
        pipelines={"deploy": uses("deploy", {"connection": "k8s"})})
    ran = run_check(root, tmp_path, "--reach",
                    hidden=[kube_server.token, wrong, key.decode()])
    assert ran.proc.returncode == 1
    reach = ran.reach("k8s")
    rules = {item["name"]: item["wildcard"] for item in reach["items"]}
    assert rules["get, list, watch on pods, services (API groups \"\")"] is False
    assert rules["* on deployments (API groups apps)"] is True
    assert not any("other" in name for name in rules)
    assert ran.message("k8s") == f"in namespace prod: {len(rules)} rules, 1 with wildcards"
    assert reach["warnings"] == [
        "the credential may use wildcards in namespace prod (* on deployments (API groups "
        "apps)): bind it to a Role that lists the verbs and resources its pipelines use"]
    assert gets(reach) == {"deploy": "all of it: the kubeconfig's context is namespace prod, "
                                     "and connc narrows nothing further"}
    assert {r["spec"]["namespace"] for r in kube_server.reviews} == {"prod", "default"}
    assert "get on configmaps (API groups \"\")" in names(ran.reach("k8s-cert"))
    assert ran.message("k8s-wrong") == "auth refused (HTTP 401)"

    kube_server.incomplete = True
    reach = run_check(root, tmp_path, "--reach", "k8s").reach("k8s")
    assert reach["notes"] == ["the server says the list is incomplete (an authorizer that "
                              "cannot list rules): what is listed is granted, what is not may "
                              "be granted too"]

    kube_server.forbid_reviews = True
    ran = run_check(root, tmp_path, "--reach", "k8s", hidden=[kube_server.token])
    assert (ran.status("k8s"), ran.reach("k8s")["asked"]) == ("ok", False)
    assert ran.message("k8s") == ("cannot be asked: the server refused the rules review (HTTP "
                                  "403), so what the credential may do in namespace prod is "
                                  "unknown")


# --- packages ------------------------------------------------------------------------------


def test_packages_say_what_the_index_says(tmp_path: Path) -> None:
    token, password = canary(), canary()
    basic = "Basic " + base64.b64encode(f"reader:{password}".encode()).decode()
    with recording_server() as index:
        index.routes["/npm/-/whoami"] = lambda seen: Reply(
            200, {"Content-Type": "application/json"}, b'{"username": "npm-bot"}') \
            if seen.headers.get("Authorization") == f"Bearer {token}" else Reply(401)
        index.routes["/maven/"] = lambda seen: Reply(
            200 if seen.headers.get("Authorization") == basic else 401)
        root = make_repo(tmp_path / "repo", connections={
            "npm": connection("npm", type_="packages", credential={"token": token},
                              spec={"format": "npm", "url": index.url() + "/npm/"}),
            "mvn": connection("mvn", type_="packages",
                              credential={"username": "reader", "password": password},
                              spec={"format": "maven", "url": index.url() + "/maven/",
                                    "repositoryId": "releases"}),
            "npm-wrong": connection("npm-wrong", type_="packages", credential={"token": canary()},
                                    spec={"format": "npm", "url": index.url() + "/npm/"})})
        ran = run_check(root, tmp_path, "--reach", hidden=[token, password])
    assert ran.message("npm") == ("the registry knows the credential as npm-bot; which packages "
                                  "it may publish is not asked")
    assert names(ran.reach("npm")) == ["npm-bot"]
    assert ran.reach("mvn")["asked"] is False
    assert "cannot be asked: Maven repositories have no API" in ran.message("mvn")
    assert ran.message("npm-wrong") == "auth refused (HTTP 401)"


# --- uses, scope, output, usage ------------------------------------------------------------


def test_a_pipeline_denied_by_scope_gets_nothing(tmp_path: Path) -> None:
    password = canary()
    with recording_server() as index:
        index.routes["/simple/"] = Reply(200)
        root = make_repo(tmp_path / "repo", connections={"idx": connection(
            "idx", type_="packages", credential={"username": "u", "password": password},
            spec={"format": "pypi", "url": index.url() + "/simple/"})},
            pipelines={"mine": uses("mine", {"connection": "idx"}),
                       "theirs": uses("theirs", {"connection": "idx"}, owner="bob")})
        ran = run_check(root, tmp_path, "--reach", hidden=[password])
    assert gets(ran.reach("idx")) == {
        "mine": f"the credential for {index.url()}/simple/",
        "theirs": "nothing: its scope of use does not admit the pipeline (render refuses it)"}


def test_usage_and_keys(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={"idx": connection(
        "idx", type_="packages", credential={"username": "u", "password": "p"},
        spec={"format": "pypi", "url": "http://127.0.0.1:1/simple/"})})
    branches_alone = connc("check", "--branches", "--repo", root, env=key_env(), timeout=60)
    assert branches_alone.returncode == 2
    assert "--branches lists branches with --reach" in branches_alone.stderr
    no_key = connc("check", "--reach", "--repo", root,
                   env={**key_env(), "SOPS_AGE_KEY_FILE": "/nonexistent"}, timeout=60)
    assert no_key.returncode == 2
    assert "no usable key: SOPS_AGE_KEY_FILE=/nonexistent: no such file" in no_key.stderr
