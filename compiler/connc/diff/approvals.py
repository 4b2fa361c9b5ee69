"""`connc approvals BASE HEAD`: has every widening change of `connc diff` the consent it needs?

Each widening row names its approvers (`compare`): `user:NAME`, `admins`, or `nobody`. They
are resolved against BASE, the revision the pull request wants to change, so that a pull
request cannot make its own author an owner, an admin, or the holder of someone's forge
account: `admins` are BASE's `connc.yaml` admins, and a user's forge account is BASE's
`members.yaml` `github:` (a user the change adds is resolved at HEAD; adding one is itself a
change an admin consents to). `nobody` is never satisfied.

Consent comes from `--approved-by` (connc user names, for other forges and manual gates) or
from a GitHub pull request: an APPROVED review on its current head commit (a later
CHANGES_REQUESTED or DISMISSED review by the same account withdraws it), or being its author.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import TextIO

from connc.diff.compare import ADMINS, NOBODY, Change, Diff
from connc.diff.report import approver
from connc.diff.snapshot import Snapshot
from connc.errors import GitHubError, UsageError
from connc.findings import printable
from connc.github import PullRequests, Review
from connc.secrets import Secret

APPROVED, WITHDRAWN = "APPROVED", frozenset({"CHANGES_REQUESTED", "DISMISSED"})


@dataclasses.dataclass(frozen=True)
class Consent:
    """One approver's consent: who may give it, whether someone did, for which changes."""

    principal: str  # user:NAME | admins | nobody
    people: tuple[str, ...]  # the connc users who can give it
    accounts: tuple[str, ...]  # their forge accounts, for the message
    changes: tuple[Change, ...]
    given_by: str | None  # the user whose consent counts, or None

    @property
    def given(self) -> bool:
        return self.given_by is not None


@dataclasses.dataclass(frozen=True)
class Verdict:
    consents: list[Consent]
    source: str  # where consent came from, for the report

    @property
    def approved(self) -> bool:
        return all(consent.given for consent in self.consents)


def consents(result: Diff, consenting: set[str]) -> list[Consent]:
    """Each approver that a widening change needs, and whether a consenting user gives it."""
    if result.widened and result.base_side.members is None:
        where = "the working tree" if result.base.commit is None else result.base.name
        raise UsageError(f"BASE ({printable(where or '')}) has no readable members.yaml, so "
                         f"nobody's consent can be resolved; `connc validate` at BASE says why "
                         f"(a repository's first members.yaml is merged by an admin by hand)")
    needed: dict[str, list[Change]] = {}
    for change in result.changes:
        for principal in change.approvers:
            needed.setdefault(principal, []).append(change)
    found = []
    for principal, changes in sorted(needed.items(), key=lambda item: (
            item[0] in (ADMINS, NOBODY), item[0])):
        people = _people(principal, result.base_side)
        given = next((person for person in people if person in consenting), None)
        found.append(Consent(principal, people, _accounts(people, result), tuple(changes),
                             given))
    return found


def _people(principal: str, base: Snapshot) -> tuple[str, ...]:
    if principal == NOBODY:
        return ()
    if principal == ADMINS:
        return tuple(sorted(base.config.admins)) if base.config is not None else ()
    return (principal.partition(":")[2],)


def _accounts(people: Iterable[str], result: Diff) -> tuple[str, ...]:
    accounts = _github_accounts(result)
    return tuple(login for person in people for login, users in accounts.items()
                 if person in users)


def _github_accounts(result: Diff) -> dict[str, set[str]]:
    """GitHub login (lower case, as GitHub compares them) -> the connc users it speaks for:
    BASE's mapping, and HEAD's for users that only HEAD has."""
    accounts: dict[str, set[str]] = {}
    base = result.base_side.members.users if result.base_side.members else {}
    head = result.head_side.members.users if result.head_side.members else {}
    for name, user in [*base.items(), *((n, u) for n, u in head.items() if n not in base)]:
        if user.github:
            accounts.setdefault(user.github.lower(), set()).add(name)
    return accounts


# ---------------------------------------------------------------------------- sources


def approved_by(result: Diff, users: str) -> Verdict:
    """`--approved-by alice,bob`: these connc users consent."""
    names = {name.strip() for name in users.split(",") if name.strip()}
    if not names:
        raise UsageError("--approved-by needs at least one user name")
    return Verdict(consents(result, names), f"--approved-by {', '.join(sorted(names))}")


def from_github(result: Diff, number: int, timeout: float) -> Verdict:
    """Consent from a GitHub pull request's reviews, as GitHub Actions provides it."""
    if number <= 0:
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
        if pull.head_sha != result.head.commit:
            raise UsageError(f"pull request {number}'s head is {pull.head_sha[:12]}, not HEAD "
                             f"({result.head.commit[:12]}): reviews count on the head commit; "
                             f"diff against it")
        reviews = pulls.reviews(number)
    except GitHubError as error:
        raise UsageError(error.message) from None  # the API could not answer: exit 2
    logins = _approving_logins(reviews, pull.head_sha) | {pull.author.lower()}
    accounts = _github_accounts(result)
    # A login two users share (CONNC214) speaks for neither.
    users = {next(iter(names)) for login, names in accounts.items()
             if login in logins and len(names) == 1}
    return Verdict(consents(result, users),
                   f"pull request #{number} (head {pull.head_sha[:12]}, author "
                   f"@{printable(pull.author)})")


def _approving_logins(reviews: list[Review], head_sha: str) -> set[str]:
    """Logins (lower case) whose latest word on the pull request approves its head commit."""
    approving: dict[str, bool] = {}
    for review in reviews:  # oldest first
        login = review.login.lower()
        if review.state == APPROVED:
            approving[login] = review.commit_id == head_sha
        elif review.state in WITHDRAWN:
            approving[login] = False
    return {login for login, approves in approving.items() if approves}


# ---------------------------------------------------------------------------- report


def _who(consent: Consent) -> str:
    name = approver(consent.principal)
    if consent.principal == ADMINS:
        name = f"an admin ({', '.join(consent.people) or 'connc.yaml names none at BASE'})"
    accounts = ", ".join(f"@{printable(login)}" for login in consent.accounts)
    return f"{name} [{accounts}]" if accounts else name


def _what(change: Change) -> str:
    values = ", ".join(f"{key} {printable(value)}" for key, value in change.values.items()
                       if value)
    return f"{change.section}: {change.change} ({values})"


def as_text(verdict: Verdict, out: TextIO) -> None:
    if not verdict.consents:
        out.write("connc approvals: no change widens access; no consent is needed\n")
        return
    missing = [c for c in verdict.consents if not c.given]
    out.write(f"connc approvals: {len(verdict.consents) - len(missing)} of "
              f"{len(verdict.consents)} consents given, from {verdict.source}\n")
    for title, group in (("missing", missing),
                         ("given", [c for c in verdict.consents if c.given])):
        if not group:
            continue
        out.write(f"\n{title}:\n")
        for consent in group:
            by = f", by {consent.given_by}" if consent.given_by else ""
            count = len(consent.changes)
            out.write(f"  {_who(consent)}{by}: {count} change{'s' if count != 1 else ''}\n")
            for change in consent.changes[:20]:
                out.write(f"    - {_what(change)}\n")
            if count > 20:
                out.write(f"    - ... and {count - 20} more (`connc diff` lists them)\n")


def as_json(verdict: Verdict, out: TextIO) -> None:
    json.dump({"approved": verdict.approved, "source": verdict.source, "consents": [
        {"approver": c.principal, "people": list(c.people), "accounts": list(c.accounts),
         "given": c.given, "by": c.given_by,
         "changes": [{"section": ch.section, "change": ch.change, **ch.values}
                     for ch in c.changes]}
        for c in verdict.consents]}, out, indent=2, ensure_ascii=False)
    out.write("\n")


FORMATS = {"text": as_text, "json": as_json}
