"""`connc validate` against check-jsonschema on the same generated repositories.

    .venv/bin/python bench/validate_bench.py [--sizes 1000 10000] [--runs 5] [--reuse]

For each size N: generate a repository (bench/generate.py), then time, interleaved,
- connc:  `connc validate --repo R --format json` (every check of docs/checks.md, all files);
- check-jsonschema: `check-jsonschema --schemafile connection.schema.json <the N connection
  files>` (schema checks only, connection files only, the schema written by `connc schema`);
- floor:  one Python process that reads every YAML file of R and parses it with
  yaml.CSafeLoader, nothing else: what any Python checker pays at least.
Targets: connc / check-jsonschema <= 0.1 at N = 10,000, and the process tree under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import generate
from measure import Stats, bench, environment, load_average

BIN = Path(sys.executable).parent  # the venv's bin: connc and check-jsonschema live here
FLOOR = """
import sys, yaml
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        yaml.load(f.read(), Loader=yaml.CSafeLoader)
"""
TARGET_RATIO, TARGET_MB, TARGET_N = 0.1, 300, 10_000


def repository(size: int, reuse: bool) -> Path:
    out = generate.default_out(size)
    marker = out / generate.MARKER
    if not (reuse and marker.exists() and json.loads(marker.read_text())["connections"] == size):
        generate.generate(size, out)
    return out


def commands(repo: Path, schema: Path) -> dict[str, list[str]]:
    connections = sorted(str(p.relative_to(repo)) for p in (repo / "connections.d").iterdir())
    pipelines = sorted(str(p.relative_to(repo)) for p in (repo / "pipelines.d").iterdir())
    every_yaml = [".sops.yaml", "connc.yaml", "members.yaml", *connections, *pipelines]
    return {
        "connc validate": [str(BIN / "connc"), "validate", "--repo", ".", "--format", "json"],
        "check-jsonschema": [str(BIN / "check-jsonschema"), "--schemafile", str(schema),
                             *connections],
        "floor (CSafeLoader)": [sys.executable, "-c", FLOOR, *every_yaml],
    }


def table(results: dict[int, dict[str, Stats]]) -> str:
    lines = ["| N | command | median s | min-max s | largest process MB | tree RSS MB "
             "| tree PSS MB |", "|---|---|---|---|---|---|---|"]
    for size, stats in results.items():
        for name, s in stats.items():
            low, high = s.spread
            memory = s.memory
            lines.append(f"| {size:,} | {name} | {s.median:.2f} | {low:.2f}-{high:.2f} | "
                         f"{memory.largest_mb:.0f} | {memory.tree_rss_mb:.0f} | "
                         f"{memory.tree_pss_mb:.0f} |")
    return "\n".join(lines)


def verdicts(results: dict[int, dict[str, Stats]]) -> list[str]:
    lines = []
    for size, stats in results.items():
        connc = stats["connc validate"]
        ratio = connc.median / stats["check-jsonschema"].median
        floor = connc.median / stats["floor (CSafeLoader)"].median
        lines.append(f"N={size:,}: connc/check-jsonschema = {ratio:.3f}, connc/floor = {floor:.2f}")
        if size == TARGET_N:
            memory = connc.memory.tree_rss_mb
            lines.append(f"  target ratio <= {TARGET_RATIO}: "
                         f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}")
            lines.append(f"  target memory < {TARGET_MB} MB (tree RSS, an upper bound): "
                         f"{'met' if memory < TARGET_MB else 'MISSED'} ({memory:.0f} MB)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a repository generated earlier for the same size")
    args = parser.parse_args()
    results = {}
    print(f"before: {load_average()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "connection.schema.json"
        subprocess.run([str(BIN / "connc"), "schema", "--out", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        for size in args.sizes:
            repo = repository(size, args.reuse)
            print(f"N={size:,}: {repo}", file=sys.stderr)
            results[size] = bench(commands(repo, schema), args.runs, cwd=repo, env=environment())
    print(table(results))
    print()
    print("\n".join(verdicts(results)))
    print(f"after: {load_average()}")


if __name__ == "__main__":
    main()
