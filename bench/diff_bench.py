"""`connc diff` and `connc approvals` against `connc validate` on the same repository.

    .venv/bin/python bench/diff_bench.py [--size 10000] [--runs 5] [--reuse]

The generated repository of SIZE connections (bench/generate.py) is committed in a git
repository of its own (bench/out/diff-SIZE), and a pull request on top of it: twenty
connections edited (an endpoint, a member added), five pipelines added, a user joining a team.
Timed, interleaved, from the repository:
- `connc validate --format json` at the head (every file, every check);
- `connc diff BASE HEAD --format json` (both revisions read from git's objects, compared);
- `connc approvals BASE HEAD --approved-by USER --format json` (the diff, then the consent).
diff and approvals exit 1 here (access widened, consent missing): that is their answer, not
an error, so those two exit codes count as done.
Target: diff / validate <= 1.0 and approvals / validate <= 1.0 at N = 10,000, the review gate
on every pull request as fast as the check it sits beside.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from measure import bench, environment, load_average, round_ratio
from validate_bench import BIN, repository

TARGET_RATIO = 1.0
GIT = ["git", "-c", "user.name=connc bench", "-c", "user.email=bench@connc.invalid",
       "-c", "commit.gpgsign=false"]


def committed(size: int, reuse: bool) -> tuple[Path, str, str]:
    """A git repository holding the generated one at BASE and a pull request at HEAD."""
    source = repository(size, reuse)
    repo = source.parent / f"diff-{size}"
    marker = repo / ".connc-bench-diff"
    if reuse and marker.exists():
        base, head = json.loads(marker.read_text())
        return repo, base, head
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(source, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    pull_request(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a pull request")
    head = git(repo, "rev-parse", "HEAD")
    marker.write_text(json.dumps([base, head]))
    return repo, base, head


def pull_request(repo: Path) -> None:
    """Edits a reviewer meets every day, keyless: endpoints, members, pipelines, a team."""
    connections = sorted((repo / "connections.d").iterdir())
    for path in connections[:: max(1, len(connections) // 20)][:20]:
        text = path.read_text()
        if "    members:\n" in text:
            text = text.replace("    members:\n", "    members:\n        - user:newcomer\n", 1)
        else:
            text = text.replace("spec:\n", "spec:\n    # reviewed\n", 1)
        path.write_text(text)
    pipelines = sorted((repo / "pipelines.d").iterdir())
    for number, source in enumerate(pipelines[:5]):
        document = yaml.safe_load(source.read_text())
        document["metadata"]["id"] = f"added-{number}"
        (repo / "pipelines.d" / f"added-{number}.yaml").write_text(yaml.safe_dump(document))
    members = yaml.safe_load((repo / "members.yaml").read_text())
    members["users"]["newcomer"] = {}
    team = sorted(members["teams"])[0]
    members["teams"][team]["members"].append("newcomer")
    (repo / "members.yaml").write_text(yaml.safe_dump(members, sort_keys=False))


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def answers(argv: list[str]) -> list[str]:
    """Run `argv`, counting exit 0 and 1 (its verdict) as done and anything else as failed."""
    return ["sh", "-c", f"{shlex.join(argv)} >/dev/null; [ $? -le 1 ]"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="connections in the repository")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the repositories generated earlier for the same size")
    args = parser.parse_args()
    repo, base, head = committed(args.size, args.reuse)
    connc = str(BIN / "connc")
    # Whoever consents, the whole diff is read: the verdict only changes the exit code.
    admin = sorted(yaml.safe_load((repo / "members.yaml").read_text())["users"])[0]
    print(f"before: {load_average()}", file=sys.stderr)
    stats = bench({
        "connc validate": [connc, "validate", "--repo", ".", "--format", "json"],
        "connc diff": answers([connc, "diff", "--repo", ".", base, head, "--format", "json"]),
        "connc approvals": answers([connc, "approvals", "--repo", ".", base, head,
                                    "--approved-by", admin, "--format", "json"]),
    }, args.runs, cwd=repo, env=environment())
    print("| N | command | median s | min-max s | largest process MB | tree RSS MB |\n"
          "|---|---|---|---|---|---|")
    for name, s in stats.items():
        low, high = s.spread
        print(f"| {args.size:,} | {name} | {s.median:.2f} | {low:.2f}-{high:.2f} | "
              f"{s.memory.largest_mb:.0f} | {s.memory.tree_rss_mb:.0f} |")
    validate = stats["connc validate"]
    for name in ("connc diff", "connc approvals"):
        of_medians = stats[name].median / validate.median
        by_round = round_ratio(stats[name], validate)
        print(f"\n{name} / connc validate = {by_round:.2f}, median of the rounds' ratios "
              f"(of the medians: {of_medians:.2f}) "
              f"(target <= {TARGET_RATIO}: {'met' if by_round <= TARGET_RATIO else 'MISSED'})")
    print(f"after: {load_average()}")


if __name__ == "__main__":
    main()
