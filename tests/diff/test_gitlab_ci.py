"""docs/ci/gitlab-merge-request.yml runs as GitLab would run it in a merge request pipeline:
each job's `script` in one bash, with GitLab's variables, in a checkout of the estate, against
the local fake of GitLab's API (`before_script` installs connc, which the test's PATH has)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mergerequest import IID, merge_request, pipeline_env, with_gitlab_accounts

from kit.build import REPO_ROOT, commit, git, replace
from kit.servers.gitlab_api import FakeGitLab, gitlab_api  # noqa: F401

TEMPLATE = REPO_ROOT / "docs" / "ci" / "gitlab-merge-request.yml"
BIN = Path(sys.executable).parent


def jobs() -> dict[str, dict[str, Any]]:
    """The template's jobs, each with what it `extends` merged in, as GitLab merges it."""
    document = yaml.safe_load(TEMPLATE.read_text())
    resolved = {}
    for name, job in document.items():
        if name.startswith("."):
            continue
        base = document[job["extends"]] if "extends" in job else {}
        resolved[name] = {**base, **job, "variables": {**base.get("variables", {}),
                                                        **job.get("variables", {})}}
    return resolved


def run_job(job: dict[str, Any], repo: Path, env: dict[str, str]
            ) -> subprocess.CompletedProcess[str]:
    script = "set -eo pipefail\n" + "\n".join(job["script"])
    variables = {key: str(value) for key, value in job["variables"].items()}
    return subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True,
                          env={**variables, **env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"},
                          timeout=180, check=False)


def test_the_template_is_gitlab_ci() -> None:
    schema = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                             "vendor.gitlab-ci", str(TEMPLATE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert set(jobs()) == {"validate", "access-diff", "access-review"}
    for job in jobs().values():
        assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in job["rules"]
        assert job["variables"]["GIT_DEPTH"] == "0"  # history, for diff and approvals


def test_a_merge_request_pipeline(gitlab_api: FakeGitLab, estate: Path) -> None:
    base = with_gitlab_accounts(estate)
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - alice")
    head = commit(estate, "alice joins the data team")
    mr = merge_request(gitlab_api, head)
    env = pipeline_env(gitlab_api, CI_PIPELINE_SOURCE="merge_request_event",
                       CI_MERGE_REQUEST_IID=str(IID), CI_MERGE_REQUEST_DIFF_BASE_SHA=base,
                       CI_COMMIT_SHA=head, CI_PROJECT_DIR=str(estate))
    gitlab_api.sign(head, kind="")
    template = jobs()

    validated = run_job(template["validate"], estate, env)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    diffed = run_job(template["access-diff"], estate, env)
    assert diffed.returncode == 0, diffed.stderr  # access widened: reported, not failed
    report = (estate / template["access-diff"]["artifacts"]["paths"][0]).read_text()
    assert "member added" in report and "alice" in report

    reviewed = run_job(template["access-review"], estate, env)
    assert reviewed.returncode == 1, reviewed.stdout + reviewed.stderr  # no admin approved yet
    assert "missing:\n  an admin (carol) [@carold]" in reviewed.stdout

    gitlab_api.approve(mr, "carold")  # then the pipeline is run again
    reviewed = run_job(template["access-review"], estate, env)
    assert reviewed.returncode == 0, reviewed.stdout + reviewed.stderr
    assert f"from merge request !{IID} (head {head[:12]}" in reviewed.stdout

    for ran in (validated, diffed, reviewed):
        assert env["GITLAB_TOKEN"] not in ran.stdout + ran.stderr


@pytest.mark.parametrize("merged_results", [False, True])
def test_the_head_in_a_merged_results_pipeline(gitlab_api: FakeGitLab, estate: Path,
                                               merged_results: bool) -> None:
    # In a merged results pipeline, CI_COMMIT_SHA is the merge of the merge request into its
    # target; the merge request's head is CI_MERGE_REQUEST_SOURCE_BRANCH_SHA.
    base = with_gitlab_accounts(estate)
    replace(estate, "members.yaml", "members:\n    - dave", "members:\n    - dave\n    - alice")
    head = commit(estate, "alice joins the data team")
    variables = {"CI_COMMIT_SHA": head}
    if merged_results:
        git(estate, "checkout", "-q", "--detach", base)
        git(estate, "merge", "-q", "--no-ff", "-m", "merged result", head)
        variables = {"CI_COMMIT_SHA": git(estate, "rev-parse", "HEAD").strip(),
                     "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": head}
    gitlab_api.approve(merge_request(gitlab_api, head), "carold")
    env = pipeline_env(gitlab_api, CI_PIPELINE_SOURCE="merge_request_event",
                       CI_MERGE_REQUEST_IID=str(IID), CI_MERGE_REQUEST_DIFF_BASE_SHA=base,
                       **variables)
    reviewed = run_job(jobs()["access-review"], estate, env)
    assert reviewed.returncode == 0, reviewed.stdout + reviewed.stderr
