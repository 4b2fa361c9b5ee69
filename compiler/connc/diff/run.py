"""`connc diff`: read both sides, compare them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from connc import process, repository
from connc.diff import revisions
from connc.diff.compare import Diff, compare
from connc.diff.revisions import Revision, open_repository, resolve, write_revision
from connc.diff.snapshot import Snapshot, snapshot
from connc.errors import UsageError


def diff(repo: Path, base: str, head: str | None = None) -> Diff:
    deadline = process.Deadline(revisions.TIMEOUT)  # every git process of the run
    top, prefix = open_repository(repo, deadline)
    base_rev = resolve(top, base, deadline)
    head_rev = resolve(top, head, deadline) if head is not None else Revision(None, None)
    with tempfile.TemporaryDirectory(prefix="connc-diff-") as tmp:
        before = _read(top, prefix, base_rev, Path(tmp, "base"), deadline)
        if head_rev.commit is None:
            after = snapshot(repo.resolve(), {})
        else:
            after = _read(top, prefix, head_rev, Path(tmp, "head"), deadline)
    if before.files == 0 and after.files == 0:
        raise UsageError(f"{repo} is not a connection repository at either revision: neither "
                         f"has {repository.CONNECTIONS_DIR}/, {repository.PIPELINES_DIR}/ or "
                         f"{repository.MEMBERS_FILE}")
    return Diff(base_rev, head_rev, compare(before, after), before, after)


def _read(top: Path, prefix: str, revision: Revision, dest: Path,
          deadline: process.Deadline) -> Snapshot:
    root, skipped = write_revision(top, prefix, revision, dest, deadline)
    return snapshot(root, skipped)
