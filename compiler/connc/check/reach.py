"""What `connc check --reach` learns about a credential, and what its askers share.

Each probe module (`git`, `github_app`, `registry`, `kube`, `packages`) also has `reach`: it
asks the service what the credential opens (the `Reacher` protocol) and compares that with
what the pipelines that use it get. What a service was not asked, or would not say, is
`None` or `asked=False` here and printed as unknown, never filled in.

Listings are bounded: at most `MAX_LISTED` items per connection, `MAX_BRANCHES` branch names
per repository, branch lists for at most `MAX_BRANCH_LISTS` repositories, `MAX_PAGES` pages
per list; what is left off is counted when the service says how many there are ("and 212
more"), else said to go on.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from connc import http, urls
from connc.check.probe import Answer, Context, ProbeFailure, http_get, status_failure
from connc.findings import printable
from connc.render.context import Resolved, encodings
from connc.secrets import redact

MAX_LISTED = 500  # repositories, projects or images per connection
MAX_BRANCHES = 100  # branch names per repository
MAX_BRANCH_LISTS = 50  # repositories whose branches are asked, with --branches
PAGE_SIZE = 100  # the largest page GitHub, GitLab, Bitbucket and the registry serve
# Pages asked per listing: 500 items take 5 (50 where a registry serves 10 a page), and a
# server whose `next` never ends, or lists nothing on each page, is not asked a thousand times
# with the credential until the deadline.
MAX_PAGES = 100
LISTING_BYTES = 4 * 1024 * 1024  # one page of 100 full repository objects fits easily
_NAME_LIMIT = 200  # characters of a name a service sends that are shown


@dataclasses.dataclass(frozen=True)
class Listed:
    """Names, and whether the list goes on: `total` when the service counts, else None."""

    names: tuple[str, ...]
    total: int | None = None
    complete: bool = True

    def rest(self) -> str:
        """"and 212 more", "and more (not counted)", or ""."""
        if self.complete:
            return ""
        if self.total is not None and self.total > len(self.names):
            return f"and {self.total - len(self.names)} more"
        return "and more (the service does not count them)"

    def as_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "total": self.total, "complete": self.complete}


@dataclasses.dataclass(frozen=True)
class Item:
    """One thing the credential reaches: a repository, a project, an image, a rule."""

    name: str
    default_branch: str | None = None  # None: not applicable, or the service did not say
    access: str | None = None  # the credential's role there, when the service says
    branches: Listed | None = None  # None: not asked (see `Reach.notes`)
    wildcard: bool = False  # a kube rule with `*` verbs, resources or API groups

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "defaultBranch": self.default_branch, "access": self.access,
                "branches": self.branches.as_json() if self.branches else None,
                "wildcard": self.wildcard}


@dataclasses.dataclass(frozen=True)
class Use:
    """One pipeline's `uses` entry for the connection (pipelines.d), and whether its scope of
    use admits the pipeline (render refuses it otherwise)."""

    pipeline: str
    allowed: bool
    repositories: tuple[str, ...] | None = None  # github-app narrowing; None: none declared
    permissions: Mapping[str, str] | None = None
    refresh: bool = False


@dataclasses.dataclass(frozen=True)
class Grant:
    """What one pipeline gets of the reach."""

    pipeline: str
    gets: str


@dataclasses.dataclass(frozen=True)
class Ask:
    """What a run asks of each reacher: branch names too, and the uses to compare with."""

    branches: bool = False
    uses: tuple[Use, ...] = ()

    def allowed(self) -> list[Use]:
        return [use for use in self.uses if use.allowed]


@dataclasses.dataclass(frozen=True)
class Reach:
    """What one credential opens, as its service says, next to what its pipelines get."""

    target: str  # the URL asked
    summary: str  # one line: what was found, or why it cannot be asked
    kind: str  # repositories | projects | branches | catalog | rules | account | repository
    asked: bool = True  # False: the service has no way to say (summary says why)
    items: tuple[Item, ...] = ()
    total: int | None = None  # how many there are, when the service counts
    complete: bool = True  # False: `items` are the first ones only
    grants: tuple[Grant, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what was not asked, or what is unknown, and why

    def listed(self) -> Listed:
        return Listed(tuple(item.name for item in self.items), self.total, self.complete)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "asked": self.asked, "summary": self.summary,
                "total": self.total, "complete": self.complete,
                "items": [item.as_json() for item in self.items],
                "uses": [{"pipeline": g.pipeline, "gets": g.gets} for g in self.grants],
                "warnings": list(self.warnings), "notes": list(self.notes)}


class Reacher(Protocol):
    """A probe module that also asks what a credential of its types reaches."""

    def reach(self, resolved: Resolved, context: Context, ask: Ask) -> Reach: ...


def denied_grants(ask: Ask) -> list[Grant]:
    return [Grant(use.pipeline, "nothing: its scope of use does not admit the pipeline "
                                "(render refuses it)") for use in ask.uses if not use.allowed]


def name(value: object) -> str | None:
    """A name a service sent, fit to print (no control characters, bounded), or None."""
    return printable(value, _NAME_LIMIT) if isinstance(value, str) and value else None


def counted(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


# --- listings --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sender:
    """The credential a listing sends with each page (one of them), and the TLS settings."""

    basic: tuple[str, str] | None = None
    bearer: str | None = None
    verify: str | bool | None = None
    headers: Mapping[str, str] | None = None

    def get(self, url: str, context: Context, params: dict[str, str] | None = None) -> Answer:
        return http_get(url, context, basic=self.basic, bearer=self.bearer, params=params,
                        headers=dict(self.headers or {}), verify=self.verify, read_json=True,
                        max_bytes=LISTING_BYTES)


@dataclasses.dataclass(frozen=True)
class Pages:
    """The first `limit` items of a paginated listing, or the refusal of its first page."""

    items: list[Any]
    total: int | None
    complete: bool
    refused: Answer | None = None  # the first page's answer when it was not 200


def next_link(answer: Answer, url: str) -> str | None:
    """The `rel="next"` URL of a `Link` header (GitHub, GitLab, the registry), absolute."""
    found = http.next_link(answer.headers.get("Link"))
    return urljoin(url, found) if found is not None else None


def pages(url: str, context: Context, sender: Sender, *, params: dict[str, str],
          limit: int, items_of: Callable[[Any], list[Any] | None],
          next_of: Callable[[Answer, str], str | None] = next_link,
          total_of: Callable[[Answer], int | None] = lambda _answer: None) -> Pages:
    """Follow a listing page by page until `limit` items or its end.

    The next page is asked only at the first page's origin: the credential goes nowhere the
    connection does not name. A page that is not JSON of the expected shape, or a later page
    refused, fails the probe with our words.
    """
    first = urls.origin(url)
    found: list[Any] = []
    total: int | None = None
    page_url: str | None = url
    page_params: dict[str, str] | None = params
    asked = 0
    while page_url is not None and len(found) < limit and asked < MAX_PAGES:
        asked += 1
        answer = sender.get(page_url, context, page_params)
        if answer.status != 200:
            if not found:
                return Pages([], None, False, answer)
            raise ProbeFailure(f"{status_failure(answer.status)} on a later page of the list",
                               url)
        items = items_of(answer.body)
        if items is None:
            raise ProbeFailure("the answer is not the list the API documents (not this "
                               "service, or an answer cut off at its size limit)", url)
        if total is None:
            total = total_of(answer)
        found.extend(items)
        page_url, page_params = next_of(answer, page_url), None  # the link carries its query
        if page_url is not None and urls.origin(page_url) != first:
            raise ProbeFailure(f"refused: the next page is at {urls.shown_host(page_url)}, "
                               f"not at {urls.shown_host(url)}; connc does not send the "
                               f"credential there", url)
    complete = page_url is None and len(found) <= limit
    return Pages(found[:limit], total, complete)


def header_int(answer: Answer, header: str) -> int | None:
    value = answer.headers.get(header)
    # ASCII digits only ("²".isdigit() is true, and int() refuses it), and few enough for
    # int() (it refuses more than 4,300): a count no service has is no count.
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() \
        and len(value) <= 18 else None


# --- git hosts: reach against the URL prefix a connection is used for --------------------------


def url_prefix(url: str) -> str:
    """The path a git-type url limits the credential to ("acme", "acme/api"), or ""."""
    path = urlsplit(url).path.strip("/")
    return path.removesuffix(".git").lower()


def within(path: str, prefix: str) -> bool:
    path = path.lower()
    return not prefix or path == prefix or path.startswith(prefix + "/")


def prefix_comparison(reach_items: Iterable[Item], complete: bool, url: str, ask: Ask, *,
                      noun: str, plural: str, advice: Callable[[str, bool], str]
                      ) -> tuple[list[Grant], list[str]]:
    """Grants and warnings of a git host's connection: render answers git only for URLs under
    the connection's url, so that prefix is the use; what the token reaches outside it is
    reach with no use. `advice(prefix, is_repository)` names the token that would match.
    """
    items = list(reach_items)
    prefix = url_prefix(url)
    host = urlsplit(url).hostname or url
    inside = [item.name for item in items if within(item.name, prefix)]
    outside = [item.name for item in items if not within(item.name, prefix)]
    at_least = "" if complete else "at least "
    if prefix:
        gets = (f"{plural} under {prefix}/ on {host} ({at_least}{len(inside)} of those the "
                f"credential reaches)")
    else:
        gets = f"every {noun} the credential reaches on {host} (its url names no path)"
    grants = [Grant(use.pipeline, gets) for use in ask.allowed()] + denied_grants(ask)
    warnings = []
    if prefix and outside:
        is_repository = prefix in {name.lower() for name in inside} or url.endswith(".git")
        shown = ", ".join(outside[:5]) + (", ..." if len(outside) > 5 else "")
        warnings.append(
            f"the credential reaches {at_least}{counted(len(outside), noun, plural)} outside "
            f"{prefix}/, where this connection is used ({shown}): "
            f"{advice(prefix, is_repository)}")
    return grants, warnings


# --- redaction ---------------------------------------------------------------------------------


def redacted(reach: Reach, secrets: Iterable[str]) -> Reach:
    """The reach with every secret this run holds or sent (and each line of a multi-line
    one) replaced, wherever a service echoed it: in a name, a branch, an account."""
    forms = sorted({form for secret in secrets for form in _forms(secret)}, key=len,
                   reverse=True)
    if not forms:
        return reach
    pattern = re.compile("|".join(re.escape(form) for form in forms))
    scrubbed: Reach = _scrub(reach, lambda text: pattern.sub("[redacted]", text))
    return scrubbed


def _forms(secret: str) -> list[str]:
    # Under four characters a value is no credential worth the name, and replacing it would
    # garble every name that contains it (render's masks draw the same line). A service can
    # echo a secret as the request carried it: URL-encoded, base64 (a Basic header's
    # `user:password` is in `Context.sent` as such), so those forms go as render masks them.
    lines = [line.strip() for line in secret.splitlines() if len(line.strip()) >= 8]
    forms = ([secret, *encodings(secret)] if len(secret) >= 4 else []) + lines
    # A name was made printable when it came in (`name`), which shows what looks like a secret
    # as its kind: a secret with such a part is found in that form, not in its own.
    return forms + [shown for shown in map(redact, forms) if shown not in forms]


def _scrub(value: Any, clean: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, tuple):
        return tuple(_scrub(each, clean) for each in value)
    if isinstance(value, Mapping):
        return {clean(k): _scrub(v, clean) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: _scrub(getattr(value, field.name), clean)
                                             for field in dataclasses.fields(value)})
    return value
