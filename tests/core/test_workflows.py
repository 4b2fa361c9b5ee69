"""The shipped GitHub Actions files: linted (zizmor), schema-checked, pinned, and the render
action's script run under real bash with GitHub's environment and a fake `connc`.

A workflow or action is code that runs with the repository's token and the runner's age key,
yet nothing else in the suite executes it; these tests are its only check before a release.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit.build import REPO_ROOT
from kit.workflows import assert_github_schema, assert_zizmor_finds_nothing

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTION = REPO_ROOT / "actions" / "render" / "action.yml"
SHIPPED = [*WORKFLOWS, ACTION]

# What a pipeline id may be (the action checks the same pattern before using it).
PIPELINE_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
FAKE_KEY = "AGE-SECRET-KEY-1TESTONLYNOTAREALKEYQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def test_shipped_files_exist() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"validate.yml", "access-review.yml"} <= names
    assert ACTION.is_file()


# --- zizmor and GitHub's schemas -----------------------------------------------------------


def test_zizmor_reports_nothing() -> None:
    assert_zizmor_finds_nothing(REPO_ROOT, ".github/workflows", "actions")


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.github-workflows", p) for p in WORKFLOWS] + [("vendor.github-actions", ACTION)],
    ids=lambda v: _rel(v) if isinstance(v, Path) else v,
)
def test_github_schema(schema: str, path: Path) -> None:
    assert_github_schema(schema, path)


# --- pinning and injection, read from the files themselves ---------------------------------


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in doc:  # an action
        return list(doc["runs"].get("steps", []))
    return [s for job in doc.get("jobs", {}).values() for s in job.get("steps", [])]


def _uses(doc: dict[str, Any]) -> list[str]:
    refs = [s["uses"] for s in _steps(doc) if "uses" in s]
    # A job may call a reusable workflow: that is a `uses:` too.
    refs += [j["uses"] for j in doc.get("jobs", {}).values() if "uses" in j]
    return refs


USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?P<comment>#.*)?$")
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[^@]+)?@[0-9a-f]{40}")


@pytest.mark.parametrize("path", SHIPPED, ids=_rel)
def test_uses_pinned_to_commit_sha(path: Path) -> None:
    # A tag can be moved to other code by whoever controls the action's repository; a commit
    # SHA cannot. The comment keeps the release readable for updates.
    parsed = _uses(_load(path))
    lines = [m for line in path.read_text().splitlines() if (m := USES_LINE.match(line))]
    # The line scan (which sees comments) must see every `uses:` the YAML parser sees.
    assert sorted(m["ref"] for m in lines) == sorted(parsed), path
    for m in lines:
        ref = m["ref"]
        if ref.startswith("./"):
            continue  # an action in this repository: same commit as the workflow
        assert PINNED.fullmatch(ref), f"{_rel(path)}: `uses: {ref}` is not pinned to a 40-hex commit SHA"
        assert m["comment"] and re.fullmatch(r"#\s*v\d+\.\d+\.\d+", m["comment"].strip()), (
            f"{_rel(path)}: `uses: {ref}` has no `# vX.Y.Z` comment naming its release"
        )


@pytest.mark.parametrize("path", SHIPPED, ids=_rel)
def test_no_expression_inside_run(path: Path) -> None:
    # `${{ }}` in `run:` is pasted into the script before bash parses it: template injection.
    # Values reach scripts through `env:` only.
    for index, step in enumerate(_steps(_load(path))):
        label = step.get("name") or step.get("id") or f"#{index + 1}"
        assert "${{" not in step.get("run", ""), f"{_rel(path)}: step {label} has `${{{{` in `run:`"


# --- the render action's script, under real bash ---------------------------------------------


def _render_step() -> dict[str, Any]:
    steps = [s for s in _steps(_load(ACTION)) if s.get("id") == "render"]
    assert len(steps) == 1, "action.yml has no single step with id `render`"
    assert steps[0].get("shell") == "bash"
    return steps[0]


INPUT_EXPR = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")


def _input(name: str, inputs: dict[str, str]) -> str:
    declared = _load(ACTION)["inputs"]
    assert name in declared, f"the render step reads undeclared input {name!r}"
    return inputs.get(name, str(declared[name].get("default", "")))


def _step_env(step: dict[str, Any], inputs: dict[str, str]) -> dict[str, str]:
    """The step's `env:` as the runner would evaluate it, for `${{ inputs.NAME }}` values."""
    env: dict[str, str] = {}
    for name, value in step.get("env", {}).items():
        m = INPUT_EXPR.fullmatch(str(value).strip())
        assert m, f"render step env {name}: only `${{{{ inputs.* }}}}` is understood here, got {value!r}"
        env[name] = _input(m.group(1), inputs)
    return env


def _step_script(step: dict[str, Any], inputs: dict[str, str]) -> str:
    """The script as the runner hands it to bash: any `${{ inputs.NAME }}` in `run:` is pasted
    in as text, which is exactly the injection these tests guard against, so a regression
    that brings one back fails the `pwned` checks and not only the lint."""
    return INPUT_EXPR.sub(lambda m: _input(m.group(1), inputs), step["run"])


class StepRun:
    def __init__(self, tmp: Path, proc: subprocess.CompletedProcess[str], record: Path) -> None:
        self.tmp = tmp
        self.proc = proc
        self.record = record
        self.runner_temp = tmp / "runner-temp"
        self.output = (tmp / "github-output").read_text()

    @property
    def connc_ran(self) -> bool:
        return (self.record / "argv").exists()

    def argv(self) -> list[str]:
        return (self.record / "argv").read_text().split("\0")[:-1]

    def recorded(self, name: str) -> str:
        return (self.record / name).read_text().strip()

    def describe(self) -> str:
        return f"exit {self.proc.returncode}\nstdout:\n{self.proc.stdout}\nstderr:\n{self.proc.stderr}"


def _run_render(tmp: Path, inputs: dict[str, str], connc_rc: int = 0) -> StepRun:
    step = _render_step()
    record = tmp / "record"
    record.mkdir()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # The fake records what a real connc would see: its argv (NUL-separated, so newlines in
    # arguments survive), the key file's mode and content, whether AGE_KEY leaked into its
    # environment; then it exits with the status under test.
    fake = bin_dir / "connc"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f"rec={str(record)!r}\n"
        'printf \'%s\\0\' "$@" > "$rec/argv"\n'
        'printf \'%s\\n\' "$SOPS_AGE_KEY_FILE" > "$rec/key-path"\n'
        'stat -c %a "$SOPS_AGE_KEY_FILE" > "$rec/key-mode"\n'
        'cat "$SOPS_AGE_KEY_FILE" > "$rec/key-content"\n'
        'printf \'%s\\n\' "${AGE_KEY-unset}" > "$rec/age-key-env"\n'
        f"exit {connc_rc}\n"
    )
    fake.chmod(0o755)
    runner_temp = tmp / "runner-temp"
    runner_temp.mkdir()
    output = tmp / "github-output"
    output.touch()
    workdir = tmp / "work"
    workdir.mkdir()
    script = tmp / "step.sh"
    script.write_text(_step_script(step, inputs))
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_ACTIONS": "true",
        **_step_env(step, inputs),
    }
    # How the runner starts a `shell: bash` step: bash --noprofile --norc -eo pipefail {0}.
    proc = subprocess.run(
        [shutil.which("bash") or "bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=30,
    )
    return StepRun(tmp, proc, record)


def _key_files(run: StepRun) -> list[Path]:
    return [p for p in run.runner_temp.rglob("*") if "age-key" in p.name]


@pytest.mark.parametrize(
    "bad_id",
    [
        "x$(touch pwned)",
        "x`touch pwned`",
        "x;touch pwned",
        "x\ntouch pwned",
        "../../pwned",
        "Api",
        "-api",
        "api-",
        "a" * 64,
        "",
        "caf\u00e9",
        "api\u2010release",
    ],
    ids=repr,
)
def test_render_refuses_bad_pipeline_id(tmp_path: Path, bad_id: str) -> None:
    assert not PIPELINE_ID.fullmatch(bad_id)
    run = _run_render(tmp_path, {"pipeline": bad_id, "age-key": FAKE_KEY})
    assert run.proc.returncode != 0, run.describe()
    assert "not a pipeline id" in run.proc.stderr, run.describe()
    # The input never ran as shell code, wherever its working directory might have been.
    assert not list(tmp_path.rglob("pwned*")), run.describe()
    assert not list(Path(os.getcwd()).glob("pwned*"))
    assert not (REPO_ROOT / "pwned").exists()
    # Refused before anything else: connc never ran, no key was written, no output set.
    assert not run.connc_ran
    assert _key_files(run) == []
    assert run.output == ""


def test_render_failure_removes_key(tmp_path: Path) -> None:
    run = _run_render(tmp_path, {"pipeline": "api-release", "age-key": FAKE_KEY}, connc_rc=1)
    assert run.proc.returncode != 0, run.describe()
    assert run.connc_ran, run.describe()
    # The key existed while connc ran, and is gone after the failed render.
    assert run.recorded("key-content") == FAKE_KEY
    assert not Path(run.recorded("key-path")).exists()
    assert _key_files(run) == []
    assert "bundle=" not in run.output


def test_render_success(tmp_path: Path) -> None:
    # The repo input too is data: spaces and `$(...)` reach connc verbatim, never run.
    repo = "conn repo/$(touch pwned)"
    run = _run_render(tmp_path, {"pipeline": "api-release", "repo": repo, "age-key": FAKE_KEY})
    assert run.proc.returncode == 0, run.describe()
    bundle = f"{run.runner_temp}/connc/api-release"
    assert run.argv() == [
        "render", "--repo", repo, "--pipeline", "api-release", "--out", bundle, "--format", "github",
    ]
    key_path = Path(run.recorded("key-path"))
    assert key_path.parent == run.runner_temp
    assert run.recorded("key-mode") == "600"
    assert run.recorded("key-content") == FAKE_KEY
    # connc reads the key from the file only; the secret is not in its environment.
    assert run.recorded("age-key-env") == "unset"
    assert not key_path.exists()
    assert _key_files(run) == []
    assert f"bundle={bundle}\n" in run.output.splitlines(keepends=True)
    assert not list(tmp_path.rglob("pwned*"))
    assert FAKE_KEY not in run.proc.stdout + run.proc.stderr


def test_render_default_repo(tmp_path: Path) -> None:
    # Without the repo input the action's default (".", the checked-out workspace) is used.
    run = _run_render(tmp_path, {"pipeline": "demo", "age-key": FAKE_KEY})
    assert run.proc.returncode == 0, run.describe()
    assert run.argv()[1:3] == ["--repo", "."]


def test_render_refuses_empty_key(tmp_path: Path) -> None:
    run = _run_render(tmp_path, {"pipeline": "demo", "age-key": ""})
    assert run.proc.returncode != 0, run.describe()
    assert not run.connc_ran
    assert _key_files(run) == []



@pytest.mark.parametrize("good_id", ["a", "0", "a-b", "api-release", "a" * 63])
def test_render_accepts_pipeline_ids(tmp_path: Path, good_id: str) -> None:
    # The edges of the id pattern: one character, a hyphen inside, 63 characters.
    assert PIPELINE_ID.fullmatch(good_id)
    run = _run_render(tmp_path, {"pipeline": good_id, "age-key": FAKE_KEY})
    assert run.proc.returncode == 0, run.describe()
    assert run.argv()[3:5] == ["--pipeline", good_id]


# --- the access-review workflow's contract ---------------------------------------------------


# This repository's own, and the one `connc init` writes (its one placeholder filled in).
ACCESS_REVIEWS = [REPO_ROOT / ".github" / "workflows" / "access-review.yml",
                  REPO_ROOT / "compiler" / "connc" / "author" / "templates" / "access-review.yml"]


def _access_review(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text().replace("@{connc}", '"connc"'))
    assert isinstance(data, dict), path
    return data


@pytest.mark.parametrize("path", ACCESS_REVIEWS, ids=_rel)
def test_access_review_workflow_shape(path: Path) -> None:
    # What branch protection relies on: the events that re-run the gate when reviews change
    # and when a merge queue builds a group, read-only permissions, event values through env,
    # and diff's exit 1 not failing its step.
    doc = _access_review(path)
    on = doc.get("on", doc.get(True))  # PyYAML 1.1 reads the bare key `on` as True
    assert set(on["pull_request"]["types"]) == {"opened", "synchronize", "reopened", "edited"}
    assert set(on["pull_request_review"]["types"]) == {"submitted", "dismissed", "edited"}
    assert on["merge_group"]["types"] == ["checks_requested"]
    assert set(on) == {"pull_request", "pull_request_review", "merge_group"}
    assert doc["permissions"] == {"contents": "read", "pull-requests": "read"}
    # One group per pull request and per merge group: queued groups must not cancel each other.
    assert doc["concurrency"]["group"] == ("access-review-${{ github.event.pull_request.number"
                                           " || github.event.merge_group.head_ref }}")
    (job,) = doc["jobs"].values()
    assert "permissions" not in job or job["permissions"] == doc["permissions"]
    env = {**doc.get("env", {}), **job.get("env", {})}
    assert env == {
        "BASE_SHA": "${{ github.event.pull_request.base.sha || github.event.merge_group.base_sha }}",
        "HEAD_SHA": "${{ github.event.pull_request.head.sha || github.event.merge_group.head_sha }}",
        "PR_NUMBER": "${{ github.event.pull_request.number }}",
        "MERGE_GROUP_REF": "${{ github.event.merge_group.head_ref }}"}
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert checkout["with"]["persist-credentials"] is False
    runs = [s for s in job["steps"] if "run" in s]
    if path.parts[-2] == "workflows":
        # The gate runs connc as of the base commit: the pull request's own code does not
        # judge it.
        assert any('git worktree add "$RUNNER_TEMP/connc-base" "$BASE_SHA"' in s["run"]
                   and 'pip install "$RUNNER_TEMP/connc-base"' in s["run"] for s in runs)
    diff = next(s for s in runs if "connc diff" in s["run"])
    assert '"$BASE_SHA" "$HEAD_SHA"' in diff["run"] and "$GITHUB_STEP_SUMMARY" in diff["run"]
    assert "|| test $? -eq 1" in diff["run"]
    gate = next(s for s in runs if "connc approvals" in s["run"])
    assert gate["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert "if" not in gate  # a skipped step is a green check
    assert runs.index(diff) < runs.index(gate)


def _run_gate(tmp: Path, path: Path, event: str, env: dict[str, str]) -> tuple[
        subprocess.CompletedProcess[str], list[str] | None]:
    """The gate step's script under bash as the runner starts it, with a fake `connc` that
    records its argv; (the run, connc's argv or None when it did not run)."""
    (job,) = _access_review(path)["jobs"].values()
    gate = next(s for s in job["steps"] if "connc approvals" in s.get("run", ""))
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    record = tmp / "argv"
    fake = bin_dir / "connc"
    fake.write_text(f"#!/usr/bin/env bash\nprintf '%s\\0' \"$@\" > {str(record)!r}\n")
    fake.chmod(0o755)
    script = tmp / "step.sh"
    script.write_text(gate["run"])
    proc = subprocess.run(
        [shutil.which("bash") or "bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=tmp, capture_output=True, text=True, timeout=30,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GITHUB_EVENT_NAME": event,
             "BASE_SHA": "b" * 40, "HEAD_SHA": "h" * 40, "GITHUB_TOKEN": "ghs_x", **env})
    argv = record.read_text().split("\0")[:-1] if record.exists() else None
    return proc, argv


GROUP_REF = "refs/heads/gh-readonly-queue/main/pr-7-" + "b" * 40


@pytest.mark.parametrize("path", ACCESS_REVIEWS, ids=_rel)
@pytest.mark.parametrize(("event", "env", "argv"), [
    ("pull_request", {"PR_NUMBER": "7", "MERGE_GROUP_REF": ""}, ["--github-pr", "7"]),
    ("pull_request_review", {"PR_NUMBER": "7", "MERGE_GROUP_REF": ""}, ["--github-pr", "7"]),
    ("merge_group", {"PR_NUMBER": "", "MERGE_GROUP_REF": GROUP_REF},
     ["--github-merge-group", GROUP_REF]),
    ("push", {"PR_NUMBER": "", "MERGE_GROUP_REF": ""}, None),
    ("pull_request_target", {"PR_NUMBER": "7", "MERGE_GROUP_REF": ""}, None),
])
def test_access_review_gate_per_event(tmp_path: Path, path: Path, event: str,
                                      env: dict[str, str], argv: list[str] | None) -> None:
    proc, ran = _run_gate(tmp_path, path, event, env)
    if argv is None:  # an event the gate does not know fails: never a green check
        assert proc.returncode != 0 and ran is None, proc.stderr
        assert f"no gate for the event {event}" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert ran == ["approvals", "b" * 40, "h" * 40, *argv]
