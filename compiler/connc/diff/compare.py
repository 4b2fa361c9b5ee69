"""`connc diff BASE [HEAD]`: what a change does to access (spec section 5).

Each side is read the way `validate` reads a repository — keyless, into per-file summaries —
and the two are compared: grants (the same scope decision as `connc access`), connection scopes
and owners, sops recipients, team membership, pipeline owners and teams. A revision is read
from git's objects into a temp dir (`ls-tree` + `cat-file --batch`), so the user's working tree
and index are never touched. HEAD omitted means the working tree, read in place.

A file that cannot be read (a parse or model error) grants nothing on that side, as `render`
refuses it, so it counts as absent there and is listed under "Not read". Treating it as absent
is what keeps the verdict fail-closed: the change that repairs such a file shows its grants as
added.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO, TypeVar

from connc import models, repository
from connc.access import grant_states
from connc.errors import UsageError
from connc.filecheck import ConnectionSummary, PipelineSummary, check_single
from connc.sopsmeta import recipient_of_member_key, shown_recipient
from connc.validate import validate

_FILES = (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR, repository.MEMBERS_FILE,
          repository.CONFIG_FILE, repository.SOPS_CONFIG)
_VISIBILITY_RANK = {"private": 0, "custom": 1, "public": 2}
# A grant's state for one (pipeline, connection): "" none, "denied" listed in `uses` but not
# allowed (render refuses it, so it grants nothing), "may" allowed, "uses" allowed and used.
_GRANT_RANK = {"": 0, "denied": 0, "may": 1, "uses": 2}
_GIT_TIMEOUT_SECONDS = 120

M = TypeVar("M", bound=models.Model)
T = TypeVar("T")

# Markdown and JSON sections, in the order a reviewer reads them.
SECTIONS = {
    "grants": "Grants",
    "scopes": "Connection scopes and owners",
    "recipients": "Recipients",
    "teams": "Team members",
    "claims": "Pipeline owners and teams",
    "connections": "Connections",
    "pipelines": "Pipelines",
    "unread": "Not read",
}
_NOTES = {
    "grants": "`uses`: allowed and used; `may`: allowed, not used; `denied`: used but not "
              "allowed (render refuses it). Pipeline `*`: every pipeline (a public connection).",
    "recipients": "Who can decrypt each connection, from its sops metadata.",
    "unread": "These files could not be read (`connc validate` says why); such a file "
              "grants nothing, as render refuses it, so it is compared as absent on that side.",
}
_COLLAPSE_ROWS = 30  # a longer table goes in a <details> block, to keep the comment short


@dataclasses.dataclass(frozen=True)
class Change:
    section: str  # a key of SECTIONS
    change: str  # added, removed, changed, visibility widened, member added, ...
    values: dict[str, str]  # the table's columns, the same keys for every row of a section
    widens: bool = False


@dataclasses.dataclass(frozen=True)
class Revision:
    name: str | None  # None: the working tree
    commit: str | None


@dataclasses.dataclass(frozen=True)
class Diff:
    base: Revision
    head: Revision
    changes: list[Change]

    @property
    def widened(self) -> bool:
        return any(change.widens for change in self.changes)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One side of the diff: what `validate` could read, keyed by id."""

    connections: dict[str, ConnectionSummary]
    pipelines: dict[str, PipelineSummary]
    grants: dict[tuple[str, str], str]  # (pipeline, connection) -> state
    teams: dict[str, frozenset[str]]
    principals: dict[str, str]  # recipient -> who it belongs to, for display
    unread: dict[str, str]  # relpath -> why it was not read
    files: int


def diff(repo: Path, base: str, head: str | None = None) -> Diff:
    top, prefix = _open(repo)
    base_rev = Revision(base, _commit(top, base))
    head_rev = Revision(head, _commit(top, head) if head is not None else None)
    with tempfile.TemporaryDirectory(prefix="connc-diff-") as tmp:
        before = _read_revision(top, prefix, base_rev, Path(tmp, "base"))
        if head_rev.commit is None:
            after = _snapshot(repo.resolve(), {})
        else:
            after = _read_revision(top, prefix, head_rev, Path(tmp, "head"))
    if before.files == 0 and after.files == 0:
        raise UsageError(f"{repo} is not a connection repository at either revision: neither "
                         f"has {repository.CONNECTIONS_DIR}/, {repository.PIPELINES_DIR}/ or "
                         f"{repository.MEMBERS_FILE}")
    return Diff(base_rev, head_rev, compare(before, after))


def compare(base: Snapshot, head: Snapshot) -> list[Change]:
    changes = [*_grants(base, head), *_scopes(base, head), *_recipients(base, head),
               *_teams(base, head), *_claims(base, head), *_files(base, head),
               *_unread(base, head)]
    # Within a section, what widens access first.
    order = list(SECTIONS)
    return sorted(changes, key=lambda c: (order.index(c.section), not c.widens))


# ---------------------------------------------------------------------------- git


def _git(args: list[str], cwd: Path, error: str, *, stdin: bytes | None = None,
         show_stderr: bool = False) -> bytes:
    """Run git; on failure raise `error` (git's stderr only when asked: it names no contents)."""
    command = ["git", "--no-pager", "--literal-pathspecs", "-c", "core.quotepath=off", *args]
    try:
        proc = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True,
                              stdin=None if stdin is not None else subprocess.DEVNULL,
                              env=_git_env(), timeout=_GIT_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed; connc diff reads revisions with it") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"{error}: git did not finish within {_GIT_TIMEOUT_SECONDS}s") from None
    except OSError as exc:
        raise UsageError(f"cannot run git: {exc.strerror}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"{error} ({_printable(detail[0])})" if show_stderr and detail
                         else error)
    return proc.stdout


def _git_env() -> dict[str, str]:
    # A hook (pre-commit, `git rebase --exec`) exports GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE
    # for its own repository; they must not redirect the repository --repo names. The user's
    # config (safe.directory, for one) still applies.
    kept = ("GIT_EXEC_PATH", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
            "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") or k.startswith(kept)}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat", LC_ALL="C")
    return env


def _open(repo: Path) -> tuple[Path, str]:
    """The git work tree holding `repo`, and `repo`'s path inside it ("" or "dir/")."""
    if not repo.is_dir():
        raise UsageError(f"{repo} is not a directory")
    out = _git(["rev-parse", "--show-toplevel"], repo, f"{repo} is not in a git work tree",
               show_stderr=True)
    top = Path(os.fsdecode(out.rstrip(b"\n"))).resolve()
    prefix = repo.resolve().relative_to(top).as_posix()
    return top, "" if prefix == "." else f"{prefix}/"


def _commit(top: Path, revision: str) -> str:
    # A leading "-" would be read as an option; git has no other use for it in a revision.
    if not revision or revision.startswith("-"):
        raise UsageError(f"bad revision {_printable(revision)!r}")
    out = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
               f"unknown revision {_printable(revision)!r}: not a commit in {top}")
    return out.decode().strip()


def _read_revision(top: Path, prefix: str, revision: Revision, dest: Path) -> Snapshot:
    """Write the revision's connc files into `dest` and read them as `validate` does."""
    assert revision.commit is not None
    error = f"git could not read revision {_printable(revision.name or '')!r}"
    listing = _git(["ls-tree", "-r", "-z", revision.commit, "--",
                    *(prefix + name for name in _FILES)], top, error)
    blobs, skipped = [], {}
    for record in filter(None, listing.split(b"\0")):
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid = meta.split(b" ")
        relpath = os.fsdecode(raw_path)[len(prefix):]
        parts = relpath.split("/")
        if kind != b"blob" or mode == b"120000" or {"", ".", ".."} & set(parts):
            # Symlinks and submodules are not followed: a revision is read as data only.
            skipped[relpath] = "not a regular file"
        else:
            blobs.append((relpath, oid))
    dest.mkdir(parents=True)
    if blobs:
        contents = _git(["cat-file", "--batch"], top, error,
                        stdin=b"".join(oid + b"\n" for _, oid in blobs))
        for (relpath, _oid), data in zip(blobs, _batch_contents(contents, error), strict=True):
            target = dest / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return _snapshot(dest, skipped)


def _batch_contents(out: bytes, error: str) -> Iterable[bytes]:
    """The objects of `git cat-file --batch` output: "<oid> <type> <size>\\n<data>\\n" each."""
    position = 0
    while position < len(out):
        header_end = out.index(b"\n", position)
        header = out[position:header_end].split(b" ")
        if len(header) != 3:  # "<oid> missing": a damaged or incomplete clone
            raise UsageError(f"{error}: an object is missing")
        size = int(header[2])
        yield out[header_end + 1:header_end + 1 + size]
        position = header_end + 1 + size + 1


# ---------------------------------------------------------------------------- one side


def _snapshot(root: Path, skipped: dict[str, str]) -> Snapshot:
    report = validate(root)
    listing = repository.list_files(root)
    read = {c.relpath for c in report.connections} | {p.relpath for p in report.pipelines}
    unread = dict(skipped)
    unread.update((p, "has errors") for p in listing.connections + listing.pipelines
                  if p not in read)
    members = _parsed(root, repository.MEMBERS_FILE, "Members", models.Members, unread)
    config = _parsed(root, repository.CONFIG_FILE, "Config", models.Config, unread)
    teams = {name: frozenset(team.members)
             for name, team in (members.teams.items() if members else ())}
    return Snapshot(
        connections={c.id: c for c in report.connections},
        pipelines={p.id: p for p in report.pipelines},
        grants=grant_states(report.connections, report.pipelines), teams=teams,
        principals=_principals(members, config, report.pipelines),
        unread=unread, files=report.files,
    )


def _parsed(root: Path, relpath: str, kind: str, model: type[M],
            unread: dict[str, str]) -> M | None:
    if not repository.present(root / relpath):
        return None
    parsed, _document, _found = check_single(root, relpath, kind, model)
    if isinstance(parsed, model):
        return parsed
    unread.setdefault(relpath, "has errors")
    return None


def _principals(members: models.Members | None, config: models.Config | None,
                pipelines: list[PipelineSummary]) -> dict[str, str]:
    owners: dict[str, list[str]] = {}

    def add(keys: Iterable[str], principal: str) -> None:
        for key in keys:
            owners.setdefault(recipient_of_member_key(key), []).append(principal)

    if members:
        for name, user in members.users.items():
            add(user.recipients, f"user:{name}")
        for name, team in members.teams.items():
            add(team.recipients, f"team:{name}")
    if config:
        add(config.admin_recipients, "admin")
    for pipeline in pipelines:  # summaries hold recipients in recipient_id form already
        for recipient in pipeline.recipients:
            owners.setdefault(recipient, []).append(f"pipeline:{pipeline.id}")
    return {recipient: ", ".join(names) for recipient, names in owners.items()}


# ---------------------------------------------------------------------------- comparisons


def _state(side: Snapshot, pipeline: str, connection: str) -> str:
    """A grant's state, counting the "may" of a public connection's grant to EVERYONE."""
    state = side.grants.get((pipeline, connection), "")
    target = side.connections.get(connection)
    if (not state and pipeline in side.pipelines and target is not None
            and target.visibility == "public"):
        return "may"
    return state


def _grants(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for pair in sorted(base.grants.keys() | head.grants.keys()):
        before, after = _state(base, *pair), _state(head, *pair)
        if before == after:
            continue
        change = "added" if not before else "removed" if not after else "changed"
        yield Change("grants", change, {"pipeline": pair[0], "connection": pair[1],
                                        "before": before, "after": after},
                     widens=_GRANT_RANK[after] > _GRANT_RANK[before])


def _common(before: dict[str, T], after: dict[str, T]) -> Iterable[tuple[str, T, T]]:
    for key in sorted(before.keys() & after.keys()):
        yield key, before[key], after[key]


def _scopes(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for cid, old, new in _common(base.connections, head.connections):
        row = {"connection": cid}
        if old.owner != new.owner:
            # The owner may always use its connection: a new owner is a principal added.
            yield Change("scopes", "owner changed", row | {"before": old.owner,
                                                           "after": new.owner}, widens=True)
        if old.visibility != new.visibility:
            wider = _VISIBILITY_RANK[new.visibility] > _VISIBILITY_RANK[old.visibility]
            yield Change("scopes", f"visibility {'widened' if wider else 'narrowed'}",
                         row | {"before": old.visibility, "after": new.visibility},
                         widens=wider)
        old_members = {m for m, _pos in old.members}
        new_members = {m for m, _pos in new.members}
        for member in sorted(new_members - old_members):
            # Members only count when the scope is custom (validate warns otherwise).
            yield Change("scopes", "member added", row | {"before": "", "after": member},
                         widens=new.visibility == "custom")
        for member in sorted(old_members - new_members):
            yield Change("scopes", "member removed", row | {"before": member, "after": ""})


def _recipients(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for cid, old, new in _common(base.connections, head.connections):
        for side, recipients, change in ((head, new.recipients - old.recipients, "added"),
                                         (base, old.recipients - new.recipients, "removed")):
            for recipient in sorted(recipients):
                yield Change("recipients", change,
                             {"connection": cid, "recipient": shown_recipient(recipient),
                              "principal": side.principals.get(recipient, "")},
                             widens=change == "added")


def _teams(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for team in sorted(base.teams.keys() | head.teams.keys()):
        old, new = base.teams.get(team, frozenset()), head.teams.get(team, frozenset())
        # render lets a pipeline claim a team its owner is in: a member added widens.
        for user in sorted(new - old):
            yield Change("teams", "member added", {"team": team, "user": user}, widens=True)
        for user in sorted(old - new):
            yield Change("teams", "member removed", {"team": team, "user": user})


def _claims(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for pid, old, new in _common(base.pipelines, head.pipelines):
        row = {"pipeline": pid}
        if old.owner != new.owner:
            yield Change("claims", "owner changed", row | {"before": old.owner,
                                                           "after": new.owner}, widens=True)
        old_teams, new_teams = {t for t, _pos in old.teams}, {t for t, _pos in new.teams}
        for team in sorted(new_teams - old_teams):
            yield Change("claims", "team added", row | {"before": "", "after": team},
                         widens=True)
        for team in sorted(old_teams - new_teams):
            yield Change("claims", "team removed", row | {"before": team, "after": ""})


def _files(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for change, source, other in (("added", head, base), ("removed", base, head)):
        for cid in sorted(source.connections.keys() - other.connections.keys()):
            connection = source.connections[cid]
            # A new credential is access that did not exist; its grants are listed too.
            yield Change("connections", change,
                         {"connection": cid, "type": connection.type,
                          "owner": connection.owner, "visibility": connection.visibility},
                         widens=change == "added")
        for pid in sorted(source.pipelines.keys() - other.pipelines.keys()):
            pipeline = source.pipelines[pid]
            # A new pipeline's access is in its grants; the pipeline itself grants nothing.
            yield Change("pipelines", change,
                         {"pipeline": pid, "owner": pipeline.owner,
                          "teams": ", ".join(t for t, _pos in pipeline.teams)})


def _unread(base: Snapshot, head: Snapshot) -> Iterable[Change]:
    for side, snapshot in (("base", base), ("head", head)):
        for relpath, why in sorted(snapshot.unread.items()):
            yield Change("unread", why, {"file": relpath, "at": side})


# ---------------------------------------------------------------------------- output


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)


def _code(value: str) -> str:
    """A Markdown code span that survives any value, inside a table cell."""
    if not value:
        return "—"
    text = _printable(value).replace("|", "\\|")  # GFM unescapes \| inside a table's spans
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _side(revision: Revision) -> str:
    if revision.commit is None:
        return "the working tree"
    return f"{_code(revision.name or '')} ({revision.commit[:12]})"


def as_markdown(result: Diff, out: TextIO) -> None:
    out.write(f"## connc diff: {_side(result.base)} → {_side(result.head)}\n\n")
    widening = sum(change.widens for change in result.changes)
    total = f"{len(result.changes)} change{'s' if len(result.changes) != 1 else ''}"
    if widening:
        verb = "widens" if widening == 1 else "widen"
        out.write(f"**⚠️ Access widened**: {widening} of {total} {verb} access "
                  f"(marked ⚠️).\n")
    elif result.changes:
        out.write(f"**No access widened**: {total}, none widens access.\n")
    else:
        out.write("**No access widened**: nothing that affects access changed.\n")
    for section, title in SECTIONS.items():
        rows = [change for change in result.changes if change.section == section]
        if rows:
            out.write(f"\n### {title}\n\n")
            if section in _NOTES:
                out.write(f"{_NOTES[section]}\n\n")
            _table(rows, out)


def _table(rows: list[Change], out: TextIO) -> None:
    columns = list(rows[0].values)
    lines = ["| | change | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in rows:
        cells = [_code(row.values[column]) for column in columns]
        lines.append(f"| {'⚠️' if row.widens else ''} | {row.change} | "
                     + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    if len(rows) > _COLLAPSE_ROWS:
        table = f"<details><summary>{len(rows)} rows</summary>\n\n{table}\n</details>\n"
    out.write(table)


def as_json(result: Diff, out: TextIO) -> None:
    def revision(rev: Revision) -> dict[str, str | None]:
        return {"revision": rev.name, "commit": rev.commit}

    changes: dict[str, list[dict[str, str | bool | None]]] = {key: [] for key in SECTIONS}
    for change in result.changes:
        changes[change.section].append({"change": change.change, "widens": change.widens,
                                        **{k: v or None for k, v in change.values.items()}})
    json.dump({"base": revision(result.base), "head": revision(result.head),
               "widened": result.widened, "changes": changes}, out, indent=2,
              ensure_ascii=False)
    out.write("\n")


FORMATS = {"markdown": as_markdown, "json": as_json}
