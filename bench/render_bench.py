"""`connc render` against a plain loop of `sops decrypt` over the same five files.

    .venv/bin/python bench/render_bench.py [--size 10000] [--runs 15] [--reuse]

In the generated repository of SIZE connections, pipeline `bench-render` uses five connections
(gitlab, git, container-registry, kubernetes, packages/npm) that are real sops encryptions with
the test key. Timed, interleaved, from the repository root with SOPS_AGE_KEY_FILE set:
- connc:     `connc render --pipeline bench-render --out <a new path each run>` (reads the
  pipeline and the repository, checks scope, decrypts the five files in parallel, writes and
  renames the bundle);
- sops loop: `for f in <the five files>; do sops decrypt "$f" >/dev/null; done`, the real sops
  binary connc uses, one after the other: what a hand-written bootstrap script costs at least.
Target: connc / sops loop <= 1.6.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import generate
import yaml
from measure import bench, environment, load_average
from validate_bench import BIN, repository

TARGET_RATIO = 1.6


def render_available() -> bool:
    probe = subprocess.run([str(BIN / "connc"), "render", "--help"], capture_output=True,
                           check=False)
    return probe.returncode == 0


def used_files(repo: Path) -> list[str]:
    path = repo / "pipelines.d" / f"{generate.RENDER_PIPELINE}.yaml"
    pipeline = yaml.safe_load(path.read_text())
    return [f"connections.d/{use['connection']}.sops.yaml" for use in pipeline["uses"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="connections in the repository")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a repository generated earlier for the same size")
    args = parser.parse_args()
    if not render_available():
        sys.exit("`connc render` is not available in this connc (`connc render --help` failed); "
                 "nothing to measure yet")
    from connc.sops.binary import executable

    repo = repository(args.size, args.reuse)
    env = environment(SOPS_AGE_KEY_FILE=str(generate.TEST_KEY_FILE),
                      SOPS_DISABLE_VERSION_CHECK="1")
    files = " ".join(shlex.quote(f) for f in used_files(repo))
    loop = f'for f in {files}; do {shlex.quote(executable())} decrypt "$f" >/dev/null; done'
    print(f"before: {load_average()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        # render refuses an OUT that holds something else, so each run gets a new path.
        outs = (Path(tmp) / f"bundle-{n}" for n in itertools.count())
        stats = bench({
            "connc render": lambda: [str(BIN / "connc"), "render", "--pipeline",
                                     generate.RENDER_PIPELINE, "--out", str(next(outs))],
            "sops decrypt loop": ["sh", "-c", loop],
        }, args.runs, cwd=repo, env=env)
    print("| N | command | median s | min-max s | largest process MB |\n|---|---|---|---|---|")
    for name, s in stats.items():
        low, high = s.spread
        print(f"| {args.size:,} | {name} | {s.median:.3f} | {low:.3f}-{high:.3f} | "
              f"{s.memory.largest_mb:.0f} |")
    ratio = stats["connc render"].median / stats["sops decrypt loop"].median
    print(f"\nconnc render / sops loop = {ratio:.2f} "
          f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    print(f"after: {load_average()}")


if __name__ == "__main__":
    main()
