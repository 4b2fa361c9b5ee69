"""`connc diff` in time and memory linear in what git holds, not in what a blob expands to.

A pull request is keyless and anyone's: git stores 200 MiB of zeros in 200 KB, and one blob
can sit at a thousand paths. diff asks every size first, never reads a blob over its file's
limit (the file is refused with CONNC006, as validate refuses it in a checkout), streams the
rest to disk, and bounds what a revision's files may hold together.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zlib
from pathlib import Path

from connc.diff import revisions
from connc.documents import MAX_FILE_BYTES
from kit.build import REPO_ROOT, commit, git, make_repo, pipeline, sops_env

BIG = 200 * 1024 * 1024


def _zero_blob(repo: Path, size: int) -> str:
    """A blob of `size` zeros, written as git's loose object directly: hashed and deflated
    (level 1) a MiB at a time, in a fraction of what `git hash-object` takes."""
    digest, deflate = hashlib.sha1(), zlib.compressobj(1)
    header = b"blob %d\0" % size
    digest.update(header)
    parts = [deflate.compress(header)]
    zeros = bytes(1024 * 1024)
    for _ in range(size // len(zeros)):
        digest.update(zeros)
        parts.append(deflate.compress(zeros))
    parts.append(deflate.flush())
    oid = digest.hexdigest()
    directory = repo / ".git" / "objects" / oid[:2]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / oid[2:]).write_bytes(b"".join(parts))
    return oid


def _add(repo: Path, oid: str, relpaths: list[str]) -> None:
    """`relpaths` in the index as `oid` (never written to the work tree)."""
    index_info = "".join(f"100644 {oid}\t{relpath}\n" for relpath in relpaths)
    subprocess.run(["git", "update-index", "--add", "--index-info"], cwd=repo,
                   input=index_info.encode(), check=True, timeout=60)


def _base(tmp_path: Path) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo", pipelines={"p": pipeline("p")})
    git(repo, "init", "-q")
    return repo, commit(repo, "base")


# connc's entry point, and at its exit its own peak RSS (VmHWM, in kB) written to argv[1]. Not
# the rusage of wait4: it counts the parent's pages a child held between fork and exec.
_MEASURED = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(l.split()[1] for l in status if l.startswith("VmHWM:")))
atexit.register(peak)
sys.argv[0] = "connc"
runpy.run_module("connc", run_name="__main__", alter_sys=True)
"""


def _diff(repo: Path, base: str, head: str,
          tmp_path: Path) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in bytes) of `connc diff BASE HEAD --format json`."""
    report = tmp_path / "peak"
    proc = subprocess.run([sys.executable, "-c", _MEASURED, str(report), "diff", base, head,
                           "--repo", str(repo), "--format", "json"], cwd=REPO_ROOT,
                          env=sops_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr, int(report.read_text()) * 1024


def test_a_huge_blob_is_refused_unread(tmp_path: Path) -> None:
    repo, base = _base(tmp_path)
    oid = _zero_blob(repo, BIG)
    _add(repo, oid, ["connections.d/zeros.sops.yaml", "connections.d/more-zeros.sops.yaml"])
    git(repo, "commit", "-q", "-m", "zeros")
    head = git(repo, "rev-parse", "HEAD").strip()
    code, out, err, peak = _diff(repo, base, head, tmp_path)
    assert code == 1, err  # a file render would read and cannot: a widening row, fails closed
    rows = json.dumps(json.loads(out))
    assert "connections.d/zeros.sops.yaml" in rows and "CONNC006" in rows
    # Read whole, one blob alone would be 200 MiB (the two, and their copies, 840 MB).
    assert peak < 100 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB"


def test_one_blob_at_many_paths_is_bounded_in_total(tmp_path: Path) -> None:
    repo, base = _base(tmp_path)
    oid = _zero_blob(repo, MAX_FILE_BYTES)  # each copy exactly at the limit: each one read
    copies = revisions.MAX_REVISION_BYTES // MAX_FILE_BYTES + 1
    _add(repo, oid, [f"connections.d/z{n}.sops.yaml" for n in range(copies)])
    git(repo, "commit", "-q", "-m", "copies")
    head = git(repo, "rev-parse", "HEAD").strip()
    code, _out, err, _peak = _diff(repo, base, head, tmp_path)
    assert code == 2, err
    assert f"connc reads at most {revisions.MAX_REVISION_BYTES} bytes of a revision" in err
