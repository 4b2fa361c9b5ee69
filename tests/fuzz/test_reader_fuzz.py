"""The differential fuzzer of the revision reader (`readerkit`): hostile git trees, each read
in memory by `connc diff` and checked out by git, must be judged alike; `connc diff` between
two of them exits 0 or 1 within bounded time and memory; and HEAD judged with BASE's objects
and judgements compares as HEAD judged alone.

In the suite: the kept cases (each once a failure) and a short exploration, the same seeds
every run. `CONNC_READER_FUZZ_CASES=N` explores N seeds more (`scripts/fuzz` runs 300).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import fuzzkit
import pytest
import readerkit

from connc.diff import revisions
from connc.errors import UsageError

# Cases that once failed, by seed and what they broke: replayed every run.
KEPT = {
    1: "a directory 900 deep in connections.d/ (the reader recursed once per level)",
    5: "a layout file that is a directory holding only a symlink or a submodule",
    8: "a submodule where members.yaml belongs, under a .gitattributes above the repository",
    36: "names in doubt (pipelines.D) under a .gitattributes above the repository: the "
        "reader did not hold them, so the finding counted other files than a checkout's",
}
EXPLORED = range(100, 106)  # the short exploration: a few seconds
LONG = int(os.environ.get("CONNC_READER_FUZZ_CASES", "0"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOPS_AGE_KEY_FILE", str(fuzzkit.TEST_KEY_FILE))
        yield fuzzkit.build_base(tmp_path_factory.mktemp("reader-fuzz") / "repo")


@pytest.fixture(scope="module")
def base(repo: Path) -> readerkit.Tree:
    return readerkit.base_tree(repo)


def _check(repo: Path, base: readerkit.Tree, tmp_path: Path, seed: int, *,
           diff: bool = False) -> None:
    case = readerkit.case(base, seed)
    commit = readerkit.commit(repo, case.tree, f"case-{seed}")
    alike = readerkit.judged_alike(repo, tmp_path / "checkout", commit, case.prefix)
    assert alike is not None, f"seed {seed} {case.shapes}: git cannot check it out"
    on_disk, in_memory = alike
    for what in on_disk:
        assert in_memory[what] == on_disk[what], f"seed {seed} {case.shapes}: {what}"
    # The reuse: the valid repository as BASE, the hostile tree as HEAD, and the other way.
    valid = readerkit.commit(repo, readerkit.valid(base, case.prefix), f"valid-{seed}")
    assert readerkit.reuse_alike(repo, valid, commit, case.prefix), f"seed {seed}: reuse"
    assert readerkit.reuse_alike(repo, commit, valid, case.prefix), f"seed {seed}: reuse"
    if diff:  # as users run it: a process each way
        for before, after in ((valid, commit), (commit, valid)):
            run = readerkit.run_diff(repo, before, after, case.prefix)
            assert run.code in (0, 1) and "Traceback" not in run.output, \
                f"seed {seed} {case.shapes}: exit {run.code}\n{run.output[-2000:]}"


@pytest.mark.parametrize("seed", list(KEPT))
def test_kept_case(repo: Path, base: readerkit.Tree, tmp_path: Path, seed: int) -> None:
    _check(repo, base, tmp_path, seed)


def test_a_short_exploration_finds_nothing(repo: Path, base: readerkit.Tree,
                                           tmp_path: Path) -> None:
    for seed in EXPLORED:
        _check(repo, base, tmp_path, seed)


@pytest.mark.skipif(not LONG, reason="the long run: CONNC_READER_FUZZ_CASES=N")
def test_long_exploration(repo: Path, base: readerkit.Tree, tmp_path: Path) -> None:
    for seed in range(1000, 1000 + LONG):
        _check(repo, base, tmp_path, seed, diff=True)


def test_many_names_in_doubt_are_read_in_linear_time(repo: Path,
                                                      base: readerkit.Tree) -> None:
    """16,000 names that fold into connection files' names (`C00001.sops.yaml`): each was
    checked against every other (16,000 took a minute); a checkout is judged in a second."""
    tree = dict(base)
    readerkit.many(tree, b"connections.d/C%05d.sops.yaml", 16_000, ("100644", b"a: b\n"))
    commit = readerkit.commit(repo, tree, "in-doubt")
    started = time.monotonic()
    revision = readerkit.read_tree(repo, commit, "")
    assert time.monotonic() - started < 15
    assert revision.files.is_dir(revision.root / "connections.d")


def test_files_connc_never_opens_count_toward_no_limit(
        repo: Path, base: readerkit.Tree, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """validate opens the top files and those directly in connections.d/ and pipelines.d/,
    never a file below (`connections.d/old/`): a pull request of such files, however large
    together, is judged as its checkout is, and none of them is read."""
    tree = dict(base)
    for n in range(8):  # 8 distinct blobs of 1 MiB, under a limit of 4 MiB
        readerkit.put(tree, b"connections.d/old/%d.sops.yaml" % n,
                      ("100644", readerkit._filler(1024 * 1024 - n)))
    commit = readerkit.commit(repo, tree, "below")
    monkeypatch.setattr(revisions, "MAX_REVISION_BYTES", 4 * 1024 * 1024)
    revision = readerkit.read_tree(repo, commit, "")
    assert revision.files.is_dir(revision.root / "connections.d" / "old")
    assert all(revision.files.settled_data()[oid] is None for relpath, oid in
               revision.identities.items() if relpath.startswith("connections.d/old/"))
    alike = readerkit.judged_alike(repo, tmp_path / "checkout", commit, "")
    assert alike is not None and alike[0] == alike[1]


@pytest.mark.parametrize("where", [b"", b"ops/"])
def test_a_gitattributes_above_the_repository_that_is_a_directory(
        repo: Path, base: readerkit.Tree, tmp_path: Path, where: bytes) -> None:
    """A directory that holds only a submodule where a `.gitattributes` above a repository in
    a subdirectory belongs: a checkout has the directory (CONNC017: not a regular file)."""
    tree = readerkit.valid(base, readerkit.PREFIX)
    readerkit.put(tree, where + b".gitattributes/sub", ("160000", b"1" * 40))
    commit = readerkit.commit(repo, tree, "attributes-directory")
    alike = readerkit.judged_alike(repo, tmp_path / "checkout", commit, readerkit.PREFIX)
    assert alike is not None and alike[0] == alike[1]
    findings = alike[1]["findings"]
    assert isinstance(findings, list) and "CONNC017" in {found.code for found in findings}


def test_cat_file_output_is_cut_into_its_objects(repo: Path) -> None:
    """`cat-file --batch` output of objects that look like its own headers, empty ones,
    newlines only, every byte: each object comes out whole, and an answer with a byte
    more, a byte less or a byte of its frame changed is refused."""
    contents = [b"", b"\n", b"a", b"\n" * 3, b"x" * 70_000, bytes(range(256)) * 5]
    oids = [readerkit.git(repo, "hash-object", "-w", "--stdin", stdin=data).strip()
            for data in contents]
    contents.append(oids[0] + b" blob 0\n\n")  # an object that is another's answer
    oids.append(readerkit.git(repo, "hash-object", "-w", "--stdin", stdin=contents[-1]).strip())
    sizes = dict(zip(oids, map(len, contents), strict=True))
    output = readerkit.git(repo, "cat-file", "--batch",
                           stdin=b"".join(oid + b"\n" for oid in oids))
    assert [bytes(data) for _oid, data in revisions._split_batch(output, oids, sizes, "e")] \
        == contents
    frame = set()  # where the headers and the newline after each object are
    pos = 0
    for oid, data in zip(oids, contents, strict=True):
        header = len(oid) + len(b" blob %d\n" % len(data))
        frame.update(range(pos, pos + header))
        pos += header + len(data)
        frame.add(pos)
        pos += 1
    rng = random.Random(0)
    for _ in range(300):
        at = rng.choice(sorted(frame))
        damaged = rng.choice([output[:at] + output[at + 1:], output + b"\n",
                              output[:at] + bytes([output[at] ^ 0x21]) + output[at + 1:]])
        with pytest.raises(UsageError):
            list(revisions._split_batch(damaged, oids, sizes, "e"))


def test_diff_between_hostile_trees_exits_0_or_1(repo: Path, base: readerkit.Tree) -> None:
    """As users run it: a hostile HEAD (every shape at once) against the valid BASE."""
    hostile = readerkit.case(base, 7, tuple(readerkit.SHAPES))
    head = readerkit.commit(repo, hostile.tree, "every-shape")
    valid = readerkit.commit(repo, base, "valid")
    run = readerkit.run_diff(repo, valid, head, hostile.prefix)
    assert run.code in (0, 1), run.output[-2000:]
    assert "Traceback" not in run.output


def test_a_side_over_the_revision_limit_is_refused_in_bounded_memory(
        repo: Path, base: readerkit.Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same 1 MiB blob under more names than `MAX_REVISION_BYTES` allows: refused with a
    usage error (exit 2) before any blob is read, in the memory of a normal diff."""
    tree = dict(base)
    blob = readerkit._filler(1024 * 1024)
    names = revisions.MAX_REVISION_BYTES // len(blob) + 1
    readerkit.many(tree, b"connections.d/c%05d.sops.yaml", names, ("100644", blob))
    head = readerkit.commit(repo, tree, "over-the-limit")
    valid = readerkit.commit(repo, base, "valid")
    normal = readerkit.run_diff(repo, valid, valid, "")
    over = readerkit.run_diff(repo, valid, head, "")
    assert over.code == 2 and "connc reads at most" in over.output, over.output[-2000:]
    assert over.peak_rss < normal.peak_rss + 64 * 1024 * 1024


@pytest.mark.skipif(not LONG, reason="the long run: CONNC_READER_FUZZ_CASES=N")
def test_a_side_at_the_revision_limit_is_held_in_bounded_memory(
        repo: Path, base: readerkit.Tree) -> None:
    """HEAD of distinct 1 MiB files up to `MAX_REVISION_BYTES`: diff holds them and little
    more (each is read once, and kept once)."""
    mib = 1024 * 1024
    tree = dict(base)
    for n in range(revisions.MAX_REVISION_BYTES // mib - 2):
        readerkit.put(tree, b"connections.d/c%03d.sops.yaml" % n,
                      ("100644", (b"#%03d" % n).ljust(mib - 1, b"#") + b"\n"))
    head = readerkit.commit(repo, tree, "at-the-limit")
    valid = readerkit.commit(repo, base, "valid")
    normal = readerkit.run_diff(repo, valid, valid, "")
    at_limit = readerkit.run_diff(repo, valid, head, "")
    assert at_limit.code == 1, at_limit.output[-2000:]
    assert at_limit.peak_rss < normal.peak_rss + revisions.MAX_REVISION_BYTES + 64 * mib

