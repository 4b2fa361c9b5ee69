"""`connc approvals BASE HEAD`: has every widening change of `connc diff` the consent it needs?

Each widening row names its approvers (`compare`): `user:NAME`, `admins`, or `nobody`. They
are resolved against BASE only, the revision the pull request wants to change, so that a pull
request cannot name its own approvers: `admins` are BASE's `connc.yaml` admins who are users
of BASE's `members.yaml`, and a user's forge account is BASE's `github:` (or, where recorded,
`githubId:`). A user, an account or an admin that the change adds consents to nothing in it.
`nobody` is never satisfied; for everything else, an admin's approval stands in.

Consent comes from `--approved-by` (connc user names, for other forges and manual gates) or
from a GitHub pull request: an APPROVED review on its current head commit (a later
CHANGES_REQUESTED or DISMISSED review by the same account withdraws it), or authorship, which
counts only when every commit of the pull request is the author's own: authored and committed
by the author's account, with a signature GitHub verified. Commit metadata is self-asserted,
and anyone who can push to a branch can add to someone's pull request; a verified signature
is what ties a commit to an account, and GitHub verifies it against the committer.

Or from a GitLab merge request: an approval given after GitLab recorded its current head (its
newest diff version), since GitLab's approvals name no commit and, unless a project setting
says otherwise, outlive a push; or authorship, on the same terms as on GitHub, each commit's
signature verified by GitLab with a key of the author's account.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from connc import process
from connc.diff import gitlab, revisions
from connc.diff.compare import ADMINS, NOBODY, Change, Diff
from connc.diff.report import approver
from connc.errors import GitHubError, UsageError
from connc.findings import printable
from connc.github.pulls import COMMITS_LISTED, Account, Commit, PullRequest, PullRequests, Review
from connc.schema import models
from connc.secrets import Secret, redact, redact_data

APPROVED, WITHDRAWN = "APPROVED", frozenset({"CHANGES_REQUESTED", "DISMISSED"})
# The branch GitHub's merge queue builds for a pull request (`merge_group.head_ref`).
_MERGE_GROUP_REF = re.compile(
    r"refs/heads/gh-readonly-queue/(?P<base>.+)/pr-(?P<number>[1-9][0-9]{0,9})-[0-9a-f]{40}")


@dataclasses.dataclass(frozen=True)
class Consenting:
    """The users (of BASE) who consent: by approving, and by authoring the change."""

    approved: frozenset[str]
    authored: str | None = None


@dataclasses.dataclass(frozen=True)
class Consent:
    """One approver's consent: who may give it, whether someone did, for which changes."""

    principal: str  # user:NAME | admins | nobody
    people: tuple[str, ...]  # the users of BASE who can give it
    accounts: tuple[str, ...]  # their forge accounts, for the message
    changes: tuple[Change, ...]
    given_by: str | None  # the user whose consent counts, or None
    via: str | None = None  # approval | authorship | an admin's approval

    @property
    def given(self) -> bool:
        return self.given_by is not None


@dataclasses.dataclass(frozen=True)
class Authorship:
    """Whether the pull request's author consents by authoring it, and why (or why not)."""

    login: str
    user: str | None  # the user of BASE the author's account speaks for
    counts: bool
    why: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    consents: list[Consent]
    source: str  # where consent came from, for the report
    authorship: Authorship | None = None
    notes: tuple[str, ...] = ()

    @property
    def approved(self) -> bool:
        return all(consent.given for consent in self.consents)


@dataclasses.dataclass(frozen=True)
class Forge:
    """Where a forge's account of a user is recorded in members.yaml."""

    login: Callable[[models.User], str | None]  # `github`, `gitlab`
    id: Callable[[models.User], int | None]  # `githubId`, `gitlabId`


GITHUB = Forge(lambda user: user.github, lambda user: user.github_id)
GITLAB = Forge(lambda user: user.gitlab, lambda user: user.gitlab_id)


def consents(result: Diff, consenting: Consenting, forge: Forge = GITHUB) -> list[Consent]:
    """Each approver that a widening change needs, and whether a consenting user gives it;
    the people's accounts on `forge` name them in the report."""
    users = _base_users(result)
    admins = tuple(sorted(a for a in (result.base_side.config.admins
                                      if result.base_side.config is not None else ())
                          if a in users))
    accounts = Accounts(users, forge)
    needed: dict[str, list[Change]] = {}
    for change in result.changes:
        for principal in change.approvers:
            needed.setdefault(principal, []).append(change)
    found = []
    for principal, changes in sorted(needed.items(), key=lambda item: (
            item[0] in (ADMINS, NOBODY), item[0])):
        if principal == NOBODY:
            people: tuple[str, ...] = ()
        elif principal == ADMINS:
            people = admins
        else:
            name = principal.partition(":")[2]
            people = (name,) if name in users else ()
        given_by, via = _given(principal, people, admins, consenting)
        found.append(Consent(principal, people, accounts.shown(people), tuple(changes),
                             given_by, via))
    return found


def _given(principal: str, people: tuple[str, ...], admins: tuple[str, ...],
           consenting: Consenting) -> tuple[str | None, str | None]:
    if principal == NOBODY:
        return None, None
    for person in people:
        if person in consenting.approved:
            return person, "approval"
    if consenting.authored in people:
        return consenting.authored, "authorship"
    # An admin's approval stands in for anyone's; an admin's authorship does not, or one
    # admin alone could redirect every owner's credential.
    for admin in admins:
        if admin in consenting.approved:
            return admin, "an admin's approval"
    return None, None


def _base_users(result: Diff) -> Mapping[str, models.User]:
    members = result.base_side.members
    if result.widened and members is None:
        where = "the working tree" if result.base.commit is None else result.base.name
        raise UsageError(f"BASE ({printable(where or '')}) has no readable members.yaml, so "
                         f"nobody's consent can be resolved; `connc validate` at BASE says why "
                         f"(a repository's first members.yaml is merged by an admin by hand)")
    return members.users if members is not None else {}


class Accounts:
    """Which user of BASE a forge account speaks for: the user who records its id (`githubId`,
    `gitlabId`), or else whose login is its login (`github`, `gitlab`; case-insensitive, as
    both forges compare them). An account that matches two users (CONNC214) speaks for
    neither."""

    def __init__(self, users: Mapping[str, models.User], forge: Forge = GITHUB) -> None:
        self._users = users
        self._forge = forge
        self._by_id: dict[int, list[str]] = {}
        self._by_login: dict[str, list[str]] = {}
        for name, user in users.items():
            login, account_id = forge.login(user), forge.id(user)
            if account_id is not None:
                self._by_id.setdefault(account_id, []).append(name)
            elif login:
                self._by_login.setdefault(login.lower(), []).append(name)

    def speaks_for(self, account: Account) -> str | None:
        names = [*self._by_id.get(account.id, ()), *self._by_login.get(account.login.lower(), ())]
        return names[0] if len(names) == 1 else None

    def shown(self, people: Iterable[str]) -> tuple[str, ...]:
        """The accounts of these users, for messages: a login, else `id N`."""
        found = []
        for person in people:
            login, account_id = self._forge.login(self._users[person]), \
                self._forge.id(self._users[person])
            if login or account_id:
                found.append(login or f"id {account_id}")
        return tuple(found)


# ---------------------------------------------------------------------------- sources


def approved_by(result: Diff, users: str) -> Verdict:
    """`--approved-by alice,bob`: these users of BASE consent (as by approving)."""
    names = {name.strip() for name in users.split(",") if name.strip()}
    if not names:
        raise UsageError("--approved-by needs at least one user name")
    known = _base_users(result)
    unknown = sorted(names - known.keys())
    notes = (f"no user at BASE: {', '.join(printable(n) for n in unknown)} (consents to "
             f"nothing)",) if unknown else ()
    return Verdict(consents(result, Consenting(frozenset(names & known.keys()))),
                   f"--approved-by {', '.join(printable(n) for n in sorted(names))}",
                   notes=notes)


def from_github(result: Diff, number: int | None, timeout: float, *,
                merge_group: str | None = None) -> Verdict:
    """Consent from a GitHub pull request's reviews and authorship, as GitHub Actions
    provides them. `merge_group`: `merge_group.head_ref` of a merge queue event; HEAD is the
    group's commit, which holds the pull request that the ref names, and consent is that pull
    request's, given on its head commit."""
    match = None
    if merge_group is not None:
        match = _MERGE_GROUP_REF.fullmatch(merge_group)
        if match is None:
            raise UsageError(f"--github-merge-group takes the merge queue's branch "
                             f"(refs/heads/gh-readonly-queue/BRANCH/pr-N-SHA, "
                             f"github.event.merge_group.head_ref), not "
                             f"{printable(merge_group)!r}")
        number = int(match["number"])
    if number is None or number <= 0:
        raise UsageError("--github-pr takes a pull request number (1, 2, ...)")
    if result.head.commit is None:
        raise UsageError("with --github-pr, give HEAD: the commit the pull request's reviews "
                         "are on (in GitHub Actions, github.event.pull_request.head.sha)")
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    token = os.environ.get("GITHUB_TOKEN", "")
    if not repository or not token:
        raise UsageError("--github-pr needs GITHUB_REPOSITORY (owner/name) and GITHUB_TOKEN in "
                         "the environment, as GitHub Actions sets them")
    api_url = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    try:
        pulls = PullRequests(api_url, repository, Secret(token), timeout=timeout)
        pull = pulls.pull_request(number)
        if match is not None and pull.base_ref != match["base"]:
            raise UsageError(f"pull request {number} would merge into "
                             f"{printable(pull.base_ref)!r}, not into the merge group's "
                             f"{printable(match['base'])!r}")
        if match is None and pull.head_sha != result.head.commit:
            raise UsageError(f"pull request {number}'s head is {pull.head_sha[:12]}, not HEAD "
                             f"({result.head.commit[:12]}): reviews count on the head commit; "
                             f"diff against it")
        reviews = pulls.reviews(number)
        commits = pulls.commits(number)
    except GitHubError as error:
        raise UsageError(error.message) from None  # the API could not answer: exit 2
    accounts = Accounts(_base_users(result))
    approving = {accounts.speaks_for(a) for a in _approving(reviews, pull.head_sha)}
    author = authorship(pull, commits, accounts.speaks_for(pull.author))
    consenting = Consenting(frozenset(name for name in approving if name is not None),
                            author.user if author.counts else None)
    where = (f"merge group {printable(merge_group)} of pull request #{number}"
             if merge_group is not None else f"pull request #{number}")
    return Verdict(consents(result, consenting),
                   f"{where} (head {pull.head_sha[:12]}, author @{printable(pull.author.login)})",
                   author)


def _approving(reviews: list[Review], head_sha: str) -> list[Account]:
    """Accounts whose latest word on the pull request approves its head commit. An account
    is its id: a login renamed since still speaks for the same account."""
    latest: dict[int, tuple[Account, bool]] = {}
    for review in reviews:  # oldest first
        if review.state == APPROVED:
            latest[review.account.id] = review.account, review.commit_id == head_sha
        elif review.state in WITHDRAWN:
            latest[review.account.id] = review.account, False
    return [account for account, approves in latest.values() if approves]


def authorship(pull: PullRequest, commits: Collection[Commit], user: str | None) -> Authorship:
    """Authorship counts as `user`'s consent only when every commit of the pull request is
    the author's own: authored and committed by the author's account (by id), with a
    signature GitHub verified. GitHub verifies a signature against the committer, so a
    commit authored in someone's name but committed by another is the other's."""
    login = pull.author.login

    def no(why: str) -> Authorship:
        return Authorship(login, user, False, why)

    if user is None:
        return no(f"@{printable(login)} speaks for no user of members.yaml at BASE")
    if pull.commits > COMMITS_LISTED:
        return no(f"the pull request has {pull.commits} commits and GitHub lists "
                  f"{COMMITS_LISTED}: the others cannot be checked")
    if len(commits) != pull.commits or pull.head_sha not in {c.sha for c in commits}:
        return no(f"GitHub listed {len(commits)} commits of {pull.commits}, up to another "
                  f"head than {pull.head_sha[:12]}: the pull request changed while connc "
                  f"read it; run again")
    for commit in commits:
        sha = printable(commit.sha[:12]) or "(no sha)"
        if commit.author is None or commit.author.id != pull.author.id:
            by = f"@{printable(commit.author.login)}" if commit.author else \
                "an email of no GitHub account"
            return no(f"commit {sha} is authored by {by}")
        if commit.committer is None or commit.committer.id != pull.author.id:
            by = f"@{printable(commit.committer.login)}" if commit.committer else \
                "an email of no GitHub account"
            return no(f"commit {sha} is committed by {by}, whom its signature would be "
                      f"checked against")
        if not commit.verified:
            return no(f"commit {sha} is not signed" if commit.reason == "unsigned" else
                      f"commit {sha}'s signature is not verified by GitHub "
                      f"({printable(commit.reason) or 'no reason given'})")
    return Authorship(login, user, True, f"every commit ({len(commits)}) is "
                                         f"@{printable(login)}'s, signed and verified by GitHub")


# ---------------------------------------------------------------------------- GitLab

# Authorship is checked commit by commit, a signature request each: a merge request with more
# commits is authored by nobody, and needs an approval.
GITLAB_COMMITS_CHECKED = 100


class Signatures(Protocol):
    """What authorship asks GitLab (`gitlab.MergeRequests`)."""

    def signature(self, sha: str) -> gitlab.Signature: ...

    def keys(self, user_id: int, kind: str) -> frozenset[int]: ...


def from_gitlab(result: Diff, repo: Path, number: int, timeout: float) -> Verdict:
    """Consent from a GitLab merge request's approvals and authorship, read as a merge request
    pipeline lets it: CI_API_V4_URL, the project (CI_MERGE_REQUEST_PROJECT_ID, which is the
    merge request's also when the pipeline runs in a fork, else CI_PROJECT_ID), and a token
    (GITLAB_TOKEN, else CI_JOB_TOKEN)."""
    if number <= 0:
        raise UsageError("--gitlab-mr takes a merge request IID (1, 2, ...; "
                         "CI_MERGE_REQUEST_IID in a merge request pipeline)")
    if result.head.commit is None:
        raise UsageError("with --gitlab-mr, give HEAD: the merge request's head commit, which "
                         "its approvals are judged on (in a merge request pipeline, "
                         "CI_COMMIT_SHA)")
    client = _gitlab_client(timeout)
    merge_request = client.merge_request(number)
    head = merge_request.head_sha
    if head != result.head.commit:
        raise UsageError(f"merge request !{number}'s head is {head[:12]}, not HEAD "
                         f"({result.head.commit[:12]}): approvals count on the head; diff "
                         f"against it")
    since = head_recorded(client.versions(number), head)
    if since is None:
        raise UsageError(f"merge request !{number}: GitLab's newest diff version is not of its "
                         f"head {head[:12]} (the merge request changed while connc read it): "
                         f"when the head was recorded is unknown; run the job again")
    counted, notes = approvals_since(client.approvals(number), since)
    accounts = Accounts(_base_users(result), GITLAB)
    author = gitlab_authorship(merge_request, _commits(repo, result),
                               accounts.speaks_for(merge_request.author), client)
    consenting = Consenting(frozenset(name for name in map(accounts.speaks_for, counted)
                                      if name is not None),
                            author.user if author.counts else None)
    return Verdict(consents(result, consenting, GITLAB),
                   f"merge request !{number} (head {head[:12]}, author "
                   f"@{printable(merge_request.author.login)})", author, tuple(notes))


def _gitlab_client(timeout: float) -> gitlab.MergeRequests:
    api_url = os.environ.get("CI_API_V4_URL", "")
    project = os.environ.get("CI_MERGE_REQUEST_PROJECT_ID") or \
        os.environ.get("CI_PROJECT_ID", "")
    variable = "GITLAB_TOKEN" if os.environ.get("GITLAB_TOKEN") else "CI_JOB_TOKEN"
    token = os.environ.get(variable, "")
    missing = [name for name, value in (("CI_API_V4_URL", api_url), ("CI_PROJECT_ID", project),
                                        ("GITLAB_TOKEN (or CI_JOB_TOKEN)", token)) if not value]
    if missing:
        raise UsageError(f"--gitlab-mr needs {', '.join(missing)} in the environment, as a "
                         f"GitLab merge request pipeline sets them (GITLAB_TOKEN: a masked "
                         f"CI/CD variable)")
    return gitlab.MergeRequests(api_url, project, gitlab.Token(Secret(token), variable),
                                timeout=timeout)


def head_recorded(versions: Iterable[gitlab.Version], head: str) -> dt.datetime | None:
    """When GitLab recorded `head` as the merge request's head: the oldest of the newest diff
    versions that all have it (a push to the target branch can add a version with the same
    head). None when the newest version has another head, or there is none."""
    since = None
    for version in versions:  # newest first
        if version.head_sha != head:
            break
        since = version.created_at
    return since


def approvals_since(approvals: Iterable[gitlab.Approval], since: dt.datetime
                    ) -> tuple[list[Account], list[str]]:
    """The accounts that approved after `since`, when GitLab recorded the head, and notes on
    those whose approval does not count. GitLab's approvals name no commit and outlive a push
    (unless the project removes them, and then only some seconds after the push): an approval
    older than the head was given to something else. One GitLab does not date counts for
    nobody."""
    counted, older, undated = [], [], []
    for approval in approvals:
        if approval.approved_at is None:
            undated.append(approval.account)
        elif approval.approved_at > since:
            counted.append(approval.account)
        else:
            older.append(approval.account)
    notes = []
    if older:
        notes.append(f"approved before GitLab recorded the head "
                     f"({since:%Y-%m-%d %H:%M:%S} UTC), which does not count: {_logins(older)}")
    if undated:
        notes.append(f"GitLab does not say when {_logins(undated)} approved, so it cannot be "
                     f"told whether the head was approved: it does not count")
    return counted, notes


def _logins(accounts: Iterable[Account]) -> str:
    return ", ".join(f"@{printable(account.login)}" for account in accounts)


def _commits(repo: Path, result: Diff) -> list[revisions.CommitEmails] | str:
    """The merge request's commits as git lists them between BASE and HEAD, or why not.
    GitLab's own list has no count to check it against; git's is of the very commits judged."""
    assert result.base.commit is not None and result.head.commit is not None
    deadline = process.Deadline(revisions.TIMEOUT)  # every git process of this listing
    top, _prefix = revisions.open_repository(repo, deadline)
    if revisions.shallow(top, deadline):
        return ("the clone is shallow, so git may not list every commit between BASE and "
                "HEAD (GIT_DEPTH: 0 fetches them all)")
    commits = revisions.commits_between(top, result.base.commit, result.head.commit,
                                        GITLAB_COMMITS_CHECKED, deadline)
    if commits is None:
        return (f"it has more than {GITLAB_COMMITS_CHECKED} commits between BASE and HEAD, "
                f"more than connc checks")
    return commits


def gitlab_authorship(merge_request: gitlab.MergeRequest,
                      commits: Collection[revisions.CommitEmails] | str, user: str | None,
                      signatures: Signatures) -> Authorship:
    """Authorship counts as `user`'s consent only when every commit is the author's own: its
    author's email is its committer's, and GitLab verified its signature (which ties the
    committer's email to the key's account) made with a key of the author's account. A
    commit GitLab made (web editor: `verified_system`) or signed with an X.509 certificate
    (which GitLab ties to no account's key) is nobody's."""
    login = printable(merge_request.author.login)

    def no(why: str) -> Authorship:
        return Authorship(login, user, False, why)

    if user is None:
        return no(f"@{login} speaks for no user of members.yaml at BASE")
    if isinstance(commits, str):
        return no(commits)
    if not commits:
        return no("git lists no commit between BASE and HEAD")
    keys: dict[str, frozenset[int]] = {}
    for commit in commits:
        sha = printable(commit.sha[:12])
        if commit.author.lower() != commit.committer.lower():
            return no(f"commit {sha} has another author than its committer, whom its "
                      f"signature would be checked against")
        signature = signatures.signature(commit.sha)
        if signature.status == "unsigned":
            return no(f"commit {sha} is not signed")
        if signature.status != "verified":
            return no(f"commit {sha}'s signature is not verified by GitLab ({signature.status})")
        if signature.kind not in gitlab.KEY_LISTS or signature.key_id is None:
            return no(f"commit {sha}'s signature ({signature.kind}) names no key of an "
                      f"account")
        if signature.kind not in keys:
            keys[signature.kind] = signatures.keys(merge_request.author.id, signature.kind)
        if signature.key_id not in keys[signature.kind]:
            return no(f"commit {sha} is signed with a key that is not @{login}'s")
    return Authorship(login, user, True, f"every commit ({len(commits)}) is @{login}'s, signed "
                                         f"and verified by GitLab")


# ---------------------------------------------------------------------------- report


def _who(consent: Consent) -> str:
    name = approver(consent.principal)
    if consent.principal == ADMINS:
        name = f"an admin ({', '.join(consent.people) or 'no user of BASE is one'})"
    elif consent.principal != NOBODY and not consent.people:
        name += " (no user at BASE: an admin's approval stands in)"
    accounts = ", ".join(printable(account if account.startswith("id ") else f"@{account}")
                         for account in consent.accounts)
    return f"{name} [{accounts}]" if accounts else name


def _what(change: Change) -> str:
    values = ", ".join(f"{key} {printable(value)}" for key, value in change.values.items()
                       if value)
    return f"{change.section}: {change.change} ({values})"


def _authorship_line(authorship: Authorship) -> str:
    if authorship.counts:
        return (f"authorship of @{printable(authorship.login)} counts as "
                f"{authorship.user}'s consent: {authorship.why}")
    return f"authorship of @{printable(authorship.login)} does not count: {authorship.why}"


def as_text(verdict: Verdict, out: TextIO) -> None:
    # Names come from files and from the forge: redacted like every other text connc shows.
    out.write(redact("".join(_text_lines(verdict))))


def _text_lines(verdict: Verdict) -> Iterable[str]:
    if not verdict.consents:
        yield "connc approvals: no change widens access; no consent is needed\n"
        return
    missing = [c for c in verdict.consents if not c.given]
    yield (f"connc approvals: {len(verdict.consents) - len(missing)} of "
           f"{len(verdict.consents)} consents given, from {verdict.source}\n")
    if verdict.authorship is not None:
        yield f"{_authorship_line(verdict.authorship)}\n"
    for note in verdict.notes:
        yield f"{note}\n"
    for title, group in (("missing", missing),
                         ("given", [c for c in verdict.consents if c.given])):
        if not group:
            continue
        yield f"\n{title}:\n"
        for consent in group:
            by = f", by {consent.given_by} ({consent.via})" if consent.given_by else ""
            count = len(consent.changes)
            yield f"  {_who(consent)}{by}: {count} change{'s' if count != 1 else ''}\n"
            for change in consent.changes[:20]:
                yield f"    - {_what(change)}\n"
            if count > 20:
                yield f"    - ... and {count - 20} more (`connc diff` lists them)\n"


def as_json(verdict: Verdict, out: TextIO) -> None:
    authorship: dict[str, Any] | None = None
    if verdict.authorship is not None:
        authorship = dataclasses.asdict(verdict.authorship)
    out.write(json.dumps(redact_data({  # serialised whole, written once (as `connc diff`)
        "approved": verdict.approved, "source": verdict.source, "authorship": authorship,
        "notes": list(verdict.notes), "consents": [
            {"approver": c.principal, "people": list(c.people), "accounts": list(c.accounts),
             "given": c.given, "by": c.given_by, "via": c.via,
             "changes": [{"section": ch.section, "change": ch.change, **ch.values}
                         for ch in c.changes]}
            for c in verdict.consents]}), indent=2, ensure_ascii=False) + "\n")


FORMATS = {"text": as_text, "json": as_json}
