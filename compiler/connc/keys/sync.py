"""`connc keys sync [ID... | --all] [--dry-run]`: each file's recipients made exactly what its
scope and its users need, through sops itself, then resealed.

The recipients a file needs (`Keyring.needed`): connc.yaml's admin recipients, the owner's
keys, and the runner keys of the pipelines that use it. Members of a custom scope get no key
of their own: they use the connection through their pipelines. Every key added is one the
safety invariant allows (`Keyring.allows`); that is asserted, not assumed.

How, so that sops and connc agree: the derived creation rules are written into `.sops.yaml`
(`keys.rules`), `sops updatekeys` rewrites each file from them, and `connc seal`'s own code
reseals it — a key holder's sync approves the plaintext it derived the keys from, and the
plan says what changed since the last seal.

Whole files or nothing: all of it happens in a staging directory inside the repository
(`.connc/keys-sync-*`: on the same file system, and ignored by the .gitignore of `connc init`),
on copies at the same relative paths beside the new `.sops.yaml`, from which sops runs. Only
when every file is updated, checked and resealed are they moved into place, each with one
`os.replace`, with SIGINT and SIGTERM held back for those few milliseconds: Ctrl-C or a
cancelled job leaves the repository as it was, or finished. Only a SIGKILL among the renames
can leave some files done and others not — each whole, and the next sync finishes the rest.
It also removes a staging directory a SIGKILL left; it holds a lock on the repository while
it runs, and moves nothing when a file it would replace changed since it planned (a secret
rotated meanwhile is never put back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from connc import documents, process, repository
from connc.author import seal as sealing
from connc.errors import Refused, UsageError
from connc.findings import printable
from connc.keys import rules as derived
from connc.keys.current import Current, check_complete
from connc.repository import ConnectionSummary
from connc.sops import binary
from connc.sops.metadata import read_metadata
from connc.sops.recipients import shown_recipient
from connc.sops.rules import RulesError, first_matching_rule, read_rules
from connc.validate.keyring import Keyring

# connc's working directory in a repository: the .gitignore of `connc init` keeps it out of git.
WORK_DIR = ".connc"
STAGING_PREFIX = "keys-sync-"
_STAGING = re.compile(rf"{re.escape(STAGING_PREFIX)}[a-z0-9_]{{8}}")  # mkdtemp's names


@dataclasses.dataclass(frozen=True)
class Change:
    """One selected file: its recipients now and after the sync."""

    id: str
    relpath: str
    before: frozenset[str]
    after: frozenset[str]
    regroup: bool = False  # same recipients in several key groups: one group after

    @property
    def added(self) -> list[str]:
        return sorted(self.after - self.before)

    @property
    def removed(self) -> list[str]:
        return sorted(self.before - self.after)

    @property
    def rewrites(self) -> bool:
        return self.before != self.after or self.regroup


@dataclasses.dataclass(frozen=True)
class Plan:
    changes: list[Change]
    rules: derived.Rewrite | None  # None: .sops.yaml stays as it is
    skipped: list[str]  # connection files with errors, left out of --all

    @property
    def rewritten(self) -> list[Change]:
        return [c for c in self.changes if c.rewrites]


def select(current: Current, ids: tuple[str, ...], every: bool) -> tuple[list[str], list[str]]:
    """(ids to sync, connection files left out of --all because they have errors)."""
    if every == bool(ids):
        raise UsageError("give connection ids, or --all")
    if every:
        connections = f"{repository.CONNECTIONS_DIR}/"
        return sorted(current.connections), [p for p in current.unread
                                             if p.startswith(connections)]
    for connection_id in ids:
        repository.check_id(connection_id, "connection")
    return list(dict.fromkeys(ids)), []


def plan(current: Current, ids: list[str], skipped: list[str]) -> Plan:
    """What the sync would do, keyless; refuses when the keys cannot be derived."""
    check_complete(current, ids)
    keyring = current.keyring
    changes = []
    for connection_id in ids:
        connection = current.connections[connection_id]
        after = keyring.needed(connection)
        if not after:
            raise Refused(f"nobody would hold a key to `{connection_id}`: its owner "
                          f"`{connection.owner}` declares none in members.yaml, connc.yaml has "
                          f"no adminRecipients, and no pipeline that uses it has a runner key",
                          path=connection.relpath)
        _never_widen(keyring, connection, after)
        regroup = after == connection.recipients and _groups(current.root, connection) > 1
        changes.append(Change(connection_id, connection.relpath, connection.recipients, after,
                              regroup))
    return Plan(changes, _rules(current, changes), skipped)


def _never_widen(keyring: Keyring, connection: ConnectionSummary, keys: frozenset[str]) -> None:
    """The safety invariant, for every key the sync writes. A failure is a bug in connc (exit
    3), never the user's doing; raised explicitly, so that `python -O` keeps the check."""
    widening = sorted(r for r in keys if not keyring.allows(connection, r))
    if widening:
        raise AssertionError(f"keys sync would add {widening} to {connection.relpath}, "
                             f"outside its scope")


def _groups(root: Path, connection: ConnectionSummary) -> int:
    """How many key groups the file's sops block has (the summary keeps only recipients)."""
    document, _found = documents.read(root, connection.relpath, "Connection")
    data = document.data if document is not None else None
    block = data.get("sops") if isinstance(data, dict) else None
    return len(read_metadata(block).key_groups.groups)


def _rules(current: Current, changes: list[Change]) -> derived.Rewrite | None:
    """The new .sops.yaml: derived rules for the synced files, and for every other file that
    a derived rule decides now, the same keys as before (it is not synced, so not changed)."""
    root = current.root
    # One reading of the file for the rules, their nodes and the text edited; a .sops.yaml
    # that does not parse or holds invalid rules was refused already (`check_complete`).
    text = (root / repository.SOPS_CONFIG).read_text(encoding="utf-8")
    try:
        document = documents.parse(text)
        rules = read_rules(document.data, lambda path: document.position(path)[0])
    except (documents.YamlProblem, RulesError) as error:
        raise Refused(f".sops.yaml: {printable(error.message)}",
                      path=repository.SOPS_CONFIG) from None
    paths = repository.list_files(root).connections
    keys = {c.id: c.after for c in changes}
    raw = document.data["creation_rules"]
    for relpath in paths:
        connection_id = repository.stem(relpath, repository.CONNECTION_SUFFIX)
        rule = first_matching_rule(rules, relpath)
        if connection_id not in keys and rule is not None \
                and derived.derived_ids(raw[rule.index]) is not None:
            keys[connection_id] = rule.recipients
    holders = {r: current.keyring.holder_text(r) for r in frozenset().union(*keys.values())}
    rewrite = derived.rewrite(text, document, rules, keys, holders, paths)
    derived.check(rules, rewrite.rules, {c.id: c.after for c in changes}, paths)
    return None if rewrite.text == text else rewrite


# ---------------------------------------------------------------------------- output


def plan_lines(current: Current, plan: Plan,
               sealed: dict[str, tuple[sealing.Sealing, dict[str, Any]]]) -> list[str]:
    """The plan, file by file: recipients added and removed (whose each is), the seal
    changes the sync approves, the rules; what to rotate."""
    keyring = current.keyring
    lines = []
    for change in plan.rewritten:
        lines.append(f"{change.relpath}:")
        lines += [f"  + {shown_recipient(r)} ({keyring.holder_text(r)})" for r in change.added]
        lines += [f"  - {shown_recipient(r)} ({keyring.holder_text(r)}): it could read the "
                  f"credential of `{change.id}`, and can still read it in git's history: rotate "
                  f"it (`connc secret set {change.id} FIELD`)" for r in change.removed]
        if change.regroup:
            lines.append("  one key group instead of several (any one key decrypts)")
        done = sealed.get(change.id)
        if done is not None and done[0].rewritten:
            lines.append(f"  {done[0].message(done[1], dry_run=True)}")
    unchanged = len(plan.changes) - len(plan.rewritten)
    if unchanged:
        lines.append(f"{unchanged} file{'s' if unchanged != 1 else ''} already "
                     f"{'have' if unchanged != 1 else 'has'} exactly the keys "
                     f"{'they need' if unchanged != 1 else 'it needs'}")
    if plan.rules is not None:
        where = (f", ahead of rule {plan.rules.ahead_of}" if plan.rules.ahead_of else "")
        lines.append(f"{repository.SOPS_CONFIG}: would write "
                     f"{plan.rules.derived} derived creation rule"
                     f"{'s' if plan.rules.derived != 1 else ''} (one per set of keys){where}")
    for relpath in plan.skipped:
        lines.append(f"{relpath}: not synced, it has errors (`connc validate`)")
    rotate = sorted({c.id for c in plan.rewritten if c.removed})
    if len(rotate) == 1:
        lines.append(f"rotate the credential of `{rotate[0]}`: a key removed from it could "
                     f"read it")
    elif rotate:
        lines.append(f"rotate the credentials of {', '.join(f'`{i}`' for i in rotate)}: a key "
                     f"removed from them could read them")
    if not plan.rewritten and plan.rules is None:
        lines.append("nothing to change")
    return lines


# ---------------------------------------------------------------------------- applying


# The sync's own work: a file's recipients drift from `.sops.yaml` until it is done.
_SYNC_FIXES = sealing.SEALING_FIXES | {"CONNC405"}


def preview_seals(root: Path, plan: Plan, deadline: process.Deadline
                  ) -> dict[str, tuple[sealing.Sealing, dict[str, Any]]]:
    """What resealing the rewritten files would approve (decrypts each: needs a key)."""
    ids = [c.id for c in plan.rewritten]
    return {done.id: (done, view)
            for done, view in sealing.seal_all(root, ids, dry_run=True, deadline=deadline,
                                               allow=_SYNC_FIXES)}


def snapshot(root: Path, plan: Plan) -> dict[str, bytes | None]:
    """The files the sync will replace, as they are when it plans: staged from these bytes,
    and replaced only if they are still these (`apply`)."""
    return {relpath: _content(root / relpath) for relpath in
            [repository.SOPS_CONFIG, *(c.relpath for c in plan.rewritten)]}


def _content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def apply(current: Current, plan: Plan, originals: dict[str, bytes | None],
          deadline: process.Deadline) -> None:
    """Carry the plan out (under `locked`, which the plan was made under too), from the
    files as `snapshot` read them."""
    root = current.root
    work, made = _work_dir(root)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=work))
    try:
        _stage(current, plan, staging, originals, deadline)
    except BaseException:
        with _interrupts_deferred():
            _remove(staging, work if made else None)
        raise
    # Every file is ready. The renames (each whole) and the clean-up take milliseconds: an
    # interrupt now waits for them, so a sync stopped by Ctrl-C or SIGTERM changed either
    # nothing or everything (only a SIGKILL can leave some files renamed, each whole).
    with _interrupts_deferred():
        # The lock keeps other syncs out, not `connc secret set`, an editor or `git pull`:
        # a file changed since the plan is not replaced by a copy of what it was (a rotated
        # secret put back), and then nothing is.
        changed = [r for r, data in originals.items() if _content(root / r) != data]
        if changed:
            _remove(staging, work if made else None)
            raise Refused(f"{', '.join(changed)} changed while the sync ran; nothing was "
                          f"changed: run `connc keys sync` again")
        if plan.rules is not None:
            os.replace(staging / repository.SOPS_CONFIG, root / repository.SOPS_CONFIG)
        for change in plan.rewritten:
            os.replace(staging / change.relpath, root / change.relpath)
        _remove(staging, work if made else None)


def _remove(staging: Path, work: Path | None) -> None:
    """The staging directory, and `.connc/` when this sync made it and it is empty now."""
    shutil.rmtree(staging, ignore_errors=True)
    if work is not None:
        with contextlib.suppress(OSError):
            work.rmdir()


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back until the block is done; then delivered as usual."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stage(current: Current, plan: Plan, staging: Path,
           originals: dict[str, bytes | None], deadline: process.Deadline) -> None:
    root = current.root
    config = root / repository.SOPS_CONFIG
    staged_config = staging / repository.SOPS_CONFIG
    if plan.rules is not None:
        staged_config.write_text(plan.rules.text, encoding="utf-8")
    else:
        staged_config.write_bytes(_original(originals, repository.SOPS_CONFIG))
    os.chmod(staged_config, config.stat().st_mode & 0o7777)
    (staging / repository.CONNECTIONS_DIR).mkdir()
    for change in plan.rewritten:
        staged = staging / change.relpath
        staged.write_bytes(_original(originals, change.relpath))
        shutil.copymode(root / change.relpath, staged)
        binary.update_keys(staging, change.relpath, deadline=deadline)
        _verify(current, staging, change)
    # connc seal's own code, on the staged copies: the sync approves the plaintext it
    # derived the keys from (the plan showed what changed since the last seal).
    sealing.seal_all(staging, [c.id for c in plan.rewritten], dry_run=False, deadline=deadline,
                     allow=_SYNC_FIXES)


def _original(originals: dict[str, bytes | None], relpath: str) -> bytes:
    data = originals.get(relpath)
    if data is None:
        raise Refused(f"{relpath} could not be read; nothing was changed", path=relpath)
    return data


def _verify(current: Current, staging: Path, change: Change) -> None:
    """The staged file has exactly the derived recipients, in one group, all allowed."""
    document, _found = documents.read(staging, change.relpath, "Connection")
    data = document.data if document is not None else None
    metadata = read_metadata(data.get("sops") if isinstance(data, dict) else None)
    connection = current.connections[change.id]
    if metadata.recipients != change.after or len(metadata.key_groups.groups) != 1:
        raise Refused("after `sops updatekeys` the file's recipients are not the derived ones; "
                      "nothing was changed", path=change.relpath)
    _never_widen(current.keyring, connection, metadata.recipients)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One sync at a time in a repository: a lock on its directory, no file left behind."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError("another `connc keys sync` is running in this repository") from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
                raise
        yield
    finally:
        os.close(fd)


def _work_dir(root: Path) -> tuple[Path, bool]:
    """`.connc/` in the repository (same file system, so renames are atomic), made 0700 if
    missing (then True); never through a symlink, which could put the copies anywhere."""
    work = root / WORK_DIR
    try:
        work.mkdir(mode=0o700)
    except FileExistsError:
        if work.is_symlink() or not work.is_dir():
            raise UsageError(f"{WORK_DIR} in the repository is not a directory (or is a "
                             f"symlink); connc keeps its staging copies there") from None
        return work, False
    return work, True


def _sweep(root: Path) -> None:
    """Remove staging directories an earlier sync left when it was killed (it held the lock,
    which we hold now, so none is in use). Only directories, never through a symlink."""
    work = root / WORK_DIR
    if work.is_symlink() or not work.is_dir():
        return
    with os.scandir(work) as entries:
        stale = [work / e.name for e in entries
                 if _STAGING.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    for directory in stale:
        shutil.rmtree(directory, ignore_errors=True)


def run(root: Path, ids: tuple[str, ...], every: bool, dry_run: bool,
        echo: Callable[[str], None], timeout: float) -> None:
    """The command: read, plan, print the plan, then (unless a dry run) carry it out. The
    plan is printed before anything is written; a dry run needs the key all the same, to say
    which seal changes the sync would approve."""
    from connc.keys.current import read

    deadline = process.Deadline(timeout, "--timeout")  # every sops of the run, together
    with locked(root):
        _sweep(root)
        current = read(root)
        chosen, skipped = select(current, ids, every)
        planned = plan(current, chosen, skipped)
        originals = snapshot(root, planned)
        binary.executable()  # a missing binary is an environment error, before any decryption
        sealed = preview_seals(root, planned, deadline) if planned.rewritten else {}
        for line in plan_lines(current, planned, sealed):
            echo(line)
        if dry_run:
            echo("dry run: nothing was changed")
            return
        if not planned.rewritten and planned.rules is None:
            return
        apply(current, planned, originals, deadline)
    files = len(planned.rewritten)
    echo(f"updated {files} connection file{'s' if files != 1 else ''}"
         f"{' and .sops.yaml' if planned.rules is not None else ''} (sops updatekeys, resealed); "
         f"next: `connc validate --strict`, then commit")
