"""Exit codes as the README promises: 2 when the environment or the command line is at fault.

An OUT that cannot exist, a file system that refuses the bundle, a standard output that is
full or closed: none is a bug of connc (exit 3) nor a fault of the repository (exit 1). Each is
run as a pipeline runs connc: a fresh interpreter, real files, real descriptors.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.build import connection, key_env, make_repo, pipeline
from kit.run import argv

NOT_MADE = "the bundle cannot be made at"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield make_repo(tmp_path_factory.mktemp("exit") / "repo",
                        connections={"gl": connection("gl", spec={"url": "https://gl.example"})},
                        pipelines={"deploy": pipeline("deploy", "gl")})


def run(*args: str | Path, shell_redirect: str = "", stdout: int | None = subprocess.PIPE,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m connc ARGS`, its stdout as given, or as `sh` redirects it (`>&-`)."""
    command = argv(*args)
    if shell_redirect:
        command = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *command]
    return subprocess.run(command, env=env or key_env(), stdin=subprocess.DEVNULL,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60,
                          check=False)


def assert_environment_error(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("connc: error: ")
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr


def assert_no_bundle(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if "connc" in p.name or p.name == "out"] == []


# ---------------------------------------------------------------------------- OUT


@pytest.mark.parametrize("where", ["under a file", "a long name", "a name too long to stage",
                                   "under /proc", "under /dev/null"])
def test_an_out_that_cannot_exist_is_refused_before_decrypting(repo: Path, tmp_path: Path,
                                                               where: str) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    out = {"under a file": tmp_path / "file" / "out",
           "a long name": tmp_path / ("x" * 300),
           # 250 characters are a valid name, but not with the staging directory's around it.
           "a name too long to stage": tmp_path / ("y" * 250),
           "under /proc": Path("/proc/connc-test-out"),
           "under /dev/null": Path("/dev/null/out")}[where]
    proc = run("render", "deploy", "--repo", repo, "--out", out)
    # The message says where, so it comes from the check before any decryption.
    assert_environment_error(proc, NOT_MADE)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_runner_temp_that_is_a_file(repo: Path, tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner-temp"
    runner_temp.write_text("")
    proc = run("render", "deploy", "--repo", repo, env=key_env(RUNNER_TEMP=str(runner_temp)))
    assert_environment_error(proc, NOT_MADE, str(runner_temp / "connc" / "deploy"))


def test_a_read_only_file_system(repo: Path, tmp_path: Path) -> None:
    # A private mount namespace (no privilege needed where user namespaces are allowed) with
    # a read-only tmpfs where OUT's parent is.
    mount = tmp_path / "ro"
    mount.mkdir()
    unshare = shutil.which("unshare")
    read_only = [unshare or "unshare", "-rm", "sh", "-c",
                 f'mount -t tmpfs -o ro tmpfs {mount} && exec "$@"', "sh"]
    if unshare is None or subprocess.run([*read_only, "true"], capture_output=True,
                                         check=False).returncode != 0:
        pytest.skip("no private mount namespace here (unshare -rm) for a read-only file system")
    proc = subprocess.run([*read_only, *argv("render", "deploy", "--repo", repo, "--out",
                                             mount / "out")],
                          env=key_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert_environment_error(proc, NOT_MADE, "Read-only file system")


# ---------------------------------------------------------------------------- standard output


def buffering(buffered: bool) -> dict[str, str]:
    """Python buffers stdout unless PYTHONUNBUFFERED is set: a full stdout then fails at the
    first write, or only when the buffer is flushed (at exit, where Python makes it 120)."""
    env = key_env()
    env.pop("PYTHONUNBUFFERED", None)
    return env if buffered else {**env, "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [["validate"], ["validate", "--format", "json"], ["access"],
                                  ["keys"], ["validate", "--help"], ["--version"]])
def test_stdout_full(repo: Path, args: list[str], buffered: bool) -> None:
    with open("/dev/full", "w") as full:
        proc = run(*args, *(["--repo", repo] if args[0] in ("validate", "access", "keys")
                            and "--help" not in args else []), stdout=full.fileno(),
                   env=buffering(buffered))
    assert_environment_error(proc, "No space left on device")


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("output_format", ["shell", "json"])
def test_render_to_a_full_stdout_takes_its_bundle_back(repo: Path, tmp_path: Path,
                                                       output_format: str,
                                                       buffered: bool) -> None:
    # Nothing tells the caller where the bundle is, or loads it: it must not stay behind.
    with open("/dev/full", "w") as full:
        proc = run("render", "deploy", "--repo", repo, "--out", tmp_path / "out",
                   "--format", output_format, stdout=full.fileno(), env=buffering(buffered))
    assert_environment_error(proc, "could not be handed over", "No space left on device")
    assert_no_bundle(tmp_path)


@pytest.mark.parametrize("redirect", [">&-", "2>&-"])
@pytest.mark.parametrize("args", [["validate"], ["render", "deploy"]])
def test_closed_stdout_or_stderr(repo: Path, tmp_path: Path, redirect: str,
                                 args: list[str]) -> None:
    out = ["--out", str(tmp_path / "out")] if args[0] == "render" else []
    proc = run(*args, "--repo", repo, *out, shell_redirect=redirect,
               stdout=subprocess.DEVNULL if redirect == "2>&-" else subprocess.PIPE)
    assert proc.returncode == 2
    if redirect == ">&-":
        assert_environment_error(proc, "standard output or standard error is closed")
    assert_no_bundle(tmp_path)


# ---------------------------------------------------------------------------- other paths


@pytest.mark.parametrize("args", [["schema", "--out", "{file}/schemas"],
                                  ["keys", "new", "{file}/key.txt"],
                                  ["init", "{file}/repo", "--owner", "alice", "--new-key",
                                   "{tmp}/key.txt"]])
def test_a_path_under_a_file_names_the_path(tmp_path: Path, args: list[str]) -> None:
    # Whatever command meets it: the file system's answer about a path the user gave.
    (tmp_path / "file").write_text("")
    proc = run(*(word.format(file=tmp_path / "file", tmp=tmp_path) for word in args))
    assert_environment_error(proc, str(tmp_path / "file"))
