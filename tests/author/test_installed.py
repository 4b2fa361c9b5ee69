"""The workflows `connc init` writes install the connc that wrote them, from where it came —
tested with real installs of this working tree into fresh virtualenvs, offline: from a local
directory (which CI cannot install from: init says so), from a git URL pinned to a commit (the
written requirement installs that commit again), from a package index, and from a wheel file.

pip builds connc with the test environment's setuptools (--no-build-isolation) and installs
it alone (--no-deps); its dependencies come from the test environment through a .pth file that
lists them without connc itself. --isolated: no user pip configuration, no index, no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connc.author import installed
from kit.build import REPO_ROOT, TEST_RECIPIENT, clone_of_working_tree, git

VERSION = "0.1.0"


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test environment's packages, connc's own installation left out."""
    farm = tmp_path_factory.mktemp("dependencies")
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and
                Path(p, "pydantic").is_dir())
    for entry in site.iterdir():
        if entry.name.startswith(("connc", "__editable__.connc")) or entry.suffix == ".pth":
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This working tree, committed in a repository of its own: (its path, the commit)."""
    clone = clone_of_working_tree(tmp_path_factory.mktemp("source") / "connc")
    return clone, git(clone, "rev-parse", "HEAD").strip()


class Venv:
    def __init__(self, path: Path, dependencies: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                       timeout=120)
        self.python = path / "bin" / "python"
        site = subprocess.run([str(self.python), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                              text=True, check=True, timeout=60).stdout.strip()
        Path(site, "test-dependencies.pth").write_text(f"{dependencies}\n")
        self.site = Path(site)

    def pip_install(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        ran = subprocess.run([sys.executable, "-m", "pip", "--python", str(self.python),
                              "--isolated", "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--no-index", *args], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr

    def direct_url(self) -> dict[str, object] | None:
        path = self.site / f"connc-{VERSION}.dist-info" / "direct_url.json"
        return json.loads(path.read_text()) if path.exists() else None

    def init(self, repo: Path) -> tuple[str, str]:
        """`connc init` with this installation: (what its workflows install, its messages)."""
        ran = subprocess.run([str(self.python), "-m", "connc", "init", str(repo), "--owner",
                              "alice", "--recipient", TEST_RECIPIENT], capture_output=True,
                             text=True, timeout=120, check=False, cwd=repo.parent)
        assert ran.returncode == 0, ran.stderr
        requirements = set()
        for workflow in ("validate.yml", "access-review.yml"):
            jobs = yaml.safe_load((repo / ".github" / "workflows" / workflow).read_text())["jobs"]
            requirements |= {step["env"]["CONNC"] for job in jobs.values()
                             for step in job["steps"] if "CONNC" in step.get("env", {})}
        [requirement] = requirements
        return requirement, ran.stderr


def test_from_a_local_directory_init_says_ci_cannot_install_it(
        tmp_path: Path, dependencies: Path, source: tuple[Path, str]) -> None:
    clone, _commit = source
    venv = Venv(tmp_path / "venv", dependencies)
    venv.pip_install(str(clone))
    assert venv.direct_url() == {"dir_info": {}, "url": clone.as_uri()}
    requirement, said = venv.init(tmp_path / "repo")
    assert requirement == f"connc=={VERSION}"
    assert (f"connc: warning: the workflows install connc=={VERSION}, a guess: it was installed "
            f"from the directory {clone}, which CI cannot install from.") in said
    assert "--connc-requirement" in said


def test_from_git_pinned_to_a_commit_the_workflows_install_that_commit(
        tmp_path: Path, dependencies: Path, source: tuple[Path, str]) -> None:
    clone, commit = source
    # file://localhost/...: the packaging of pip 23 refuses a VCS URL with an empty host.
    url = f"git+file://localhost{clone}"
    venv = Venv(tmp_path / "venv", dependencies)
    venv.pip_install(f"connc @ {url}@{commit}")
    requirement, said = venv.init(tmp_path / "repo")
    assert requirement == f"connc @ {url}@{commit}"
    # A repository on this disk: written as it is, and said to be out of CI's reach.
    assert f"the repository {clone} is on this machine, where CI cannot clone it" in said
    # The written requirement installs the same commit again.
    again = Venv(tmp_path / "again", dependencies)
    again.pip_install(requirement)
    recorded = again.direct_url()
    assert recorded is not None and recorded["vcs_info"] == {  # type: ignore[comparison-overlap]
        "vcs": "git", "commit_id": commit, "requested_revision": commit}


def test_from_a_package_index_the_workflows_install_this_version(
        tmp_path: Path, dependencies: Path, source: tuple[Path, str]) -> None:
    clone, _commit = source
    wheels = tmp_path / "index"
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(wheels), str(clone)],
                   check=True, timeout=300, capture_output=True)
    venv = Venv(tmp_path / "venv", dependencies)
    venv.pip_install("--find-links", str(wheels), f"connc=={VERSION}")
    assert venv.direct_url() is None  # an index install records no URL (PEP 610)
    requirement, said = venv.init(tmp_path / "repo")
    assert requirement == f"connc=={VERSION}"
    assert f"the workflows install connc=={VERSION} (from a package index" in said
    assert "warning" not in said

    # The same wheel as a file: the requirement names it with its hash, and says it is local.
    direct = Venv(tmp_path / "direct", dependencies)
    [wheel] = wheels.glob("connc-*.whl")
    direct.pip_install(str(wheel))
    requirement, said = direct.init(tmp_path / "repo2")
    assert requirement.startswith(f"connc @ {wheel.as_uri()}#sha256=")
    assert f"the file {wheel} is on this machine, where CI cannot read it" in said


@pytest.mark.parametrize(("recorded", "requirement", "problem"), [
    ({"url": "https://github.com/acme/connc.git",
      "vcs_info": {"vcs": "git", "commit_id": "a" * 40, "requested_revision": "main"}},
     f"connc @ git+https://github.com/acme/connc.git@{'a' * 40}", None),
    ({"url": "https://git.example.com/tools.git", "subdirectory": "connc",
      "vcs_info": {"vcs": "git", "commit_id": "b" * 40}},
     f"connc @ git+https://git.example.com/tools.git@{'b' * 40}#subdirectory=connc", None),
    # A credential left in the URL never reaches a workflow file.
    ({"url": "https://ci-bot:hunter2@git.example.com:8443/connc.git",
      "vcs_info": {"vcs": "git", "commit_id": "c" * 40}},
     f"connc @ git+https://git.example.com:8443/connc.git@{'c' * 40}", None),
    ({"url": "https://files.example.com/connc-0.1.0-py3-none-any.whl",
      "archive_info": {"hashes": {"sha256": "d" * 64}}},
     f"connc @ https://files.example.com/connc-0.1.0-py3-none-any.whl#sha256={'d' * 64}", None),
    ({"url": "https://files.example.com/connc%20x.whl", "archive_info": {}},
     f"connc=={VERSION}", "is not a requirement a workflow can carry"),
    ({"url": "file:///home/a/connc", "dir_info": {"editable": True}},
     f"connc=={VERSION}", "installed from the directory /home/a/connc"),
    ({"url": 7}, f"connc=={VERSION}", "unreadable"),
])
def test_every_recorded_source(monkeypatch: pytest.MonkeyPatch, recorded: dict[str, object],
                               requirement: str, problem: str | None) -> None:
    class Distribution:
        version = VERSION

        def read_text(self, name: str) -> str | None:
            return json.dumps(recorded) if name == "direct_url.json" else None

    monkeypatch.setattr(installed.metadata, "distribution", lambda name: Distribution())
    found = installed.source()
    assert found.requirement == requirement
    assert (found.problem is None) if problem is None else (problem in (found.problem or ""))
    assert "hunter2" not in found.requirement + found.origin


def test_the_gitlab_example_installs_a_pinned_commit(
        tmp_path: Path, dependencies: Path, source: tuple[Path, str]) -> None:
    """docs/ci/gitlab-ci.yml's requirement, with its placeholders filled, installs."""
    job = yaml.safe_load((REPO_ROOT / "docs" / "ci" / "gitlab-ci.yml").read_text())["deploy"]
    example = job["variables"]["CONNC"]
    assert example == "connc @ git+https://github.com/OWNER/connc@COMMIT"
    assert any('pip install --quiet "$CONNC"' in line for line in job["before_script"])
    clone, commit = source
    venv = Venv(tmp_path / "venv", dependencies)
    venv.pip_install(example.replace("https://github.com/OWNER/connc", f"file://localhost{clone}")
                     .replace("COMMIT", commit))
    recorded = venv.direct_url()
    assert recorded is not None and recorded["vcs_info"]["commit_id"] == commit  # type: ignore[index]
