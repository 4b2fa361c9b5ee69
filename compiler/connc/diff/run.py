"""`connc diff`: read both sides, compare them."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from connc import process, repository
from connc.diff import revisions
from connc.diff.compare import Diff, compare
from connc.diff.revisions import Revision, Tree, open_repository, read_revision, resolve
from connc.diff.snapshot import Snapshot, snapshot
from connc.errors import UsageError


def diff(repo: Path, base: str, head: str | None = None) -> Diff:
    deadline = process.Deadline(revisions.TIMEOUT)  # every git process of the run
    top, prefix = open_repository(repo, deadline)
    base_rev = resolve(top, base, deadline)
    head_rev = resolve(top, head, deadline) if head is not None else Revision(None, None)
    today = dt.datetime.now(dt.UTC).date()  # one day for both sides
    with _stopped_on_failure(deadline):
        base_tree = read_revision(top, prefix, base_rev, deadline)
        before = _snapshot(base_tree, today, None)
        if head_rev.commit is None:
            after = snapshot(repo.resolve(), {}, today=today)
        else:
            # HEAD shares most of its objects and judgements with BASE: each is read and
            # judged once.
            head_tree = read_revision(top, prefix, head_rev, deadline, base_tree)
            del base_tree  # judged: its bytes are HEAD's to share while it is read
            after = _snapshot(head_tree, today, before)
        if before.files == 0 and after.files == 0:
            raise UsageError(f"{repo} is not a connection repository at either revision: "
                             f"neither has {repository.CONNECTIONS_DIR}/, "
                             f"{repository.PIPELINES_DIR}/ or {repository.MEMBERS_FILE}")
        return Diff(base_rev, head_rev, compare(before, after), before, after)


@contextlib.contextmanager
def _stopped_on_failure(deadline: process.Deadline) -> Iterator[None]:
    """A revision's files are read in the background while the run goes on
    (`revisions.Blobs.arrive`): whatever ends the run early (an interrupt, an error) stops
    that git process too, rather than leaving it to the end of the interpreter."""
    try:
        yield
    except BaseException:
        deadline.cancel.set()
        raise


def _snapshot(tree: Tree, today: dt.date, previous: Snapshot | None) -> Snapshot:
    """One revision, read from git's objects (never written out), judged as a checkout of
    it is; what `previous` already judged of the same bytes is not judged again."""
    return snapshot(tree.root, tree.skipped, files=tree.files, identities=tree.identities,
                    today=today, previous=previous)
