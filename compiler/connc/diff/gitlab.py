"""The GitLab REST API (v4) as `connc approvals --gitlab-mr` reads it: a merge request, its
diff versions (when GitLab recorded each head), its approvals (by whom, and when), a commit's
signature, and an account's signing keys. GET requests only.

Every request goes through `connc.http`: its timeout, https (plain http on loopback only), no
~/.netrc, no redirect followed (the token goes to the API named and nowhere else: pages are
asked by number, never by a URL GitLab sent). The token is sent in the header GitLab takes
for its kind (`PRIVATE-TOKEN` for an access token, `JOB-TOKEN` for CI_JOB_TOKEN) by a
requests auth hook, never as a plain header value a repr could show.

Text GitLab sends back in an error is never shown: messages are connc's own words and the
HTTP status. A name GitLab sends that may be shown (a username) is made printable, bounded,
and cleared of the token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import quote, urlsplit

from connc import __version__, http
from connc.errors import UsageError
from connc.findings import printable
from connc.github.pulls import Account
from connc.secrets import Secret

if TYPE_CHECKING:
    import requests

PER_PAGE = 100  # the largest page GitLab serves
_MAX_PAGES = 100  # 10,000 items: more than any merge request has; a bound all the same
_NAME_LIMIT = 200
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories
# CI_PROJECT_ID is a number; a project's path (group/sub/name) is taken too, URL-encoded.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_PROJECT = re.compile(rf"[1-9][0-9]{{0,18}}|{_SEGMENT}(?:/{_SEGMENT})+")
# Where each kind of signature names its key, and where GitLab lists an account's keys.
KEY_LISTS = {"PGP": "gpg_keys", "SSH": "keys"}


@dataclasses.dataclass(frozen=True)
class MergeRequest:
    iid: int
    author: Account
    head_sha: str  # `sha`: the head GitLab has recorded for it


@dataclasses.dataclass(frozen=True)
class Version:
    """A diff version: GitLab records one when the merge request's head (or base) changes."""

    head_sha: str
    created_at: dt.datetime  # aware, UTC


@dataclasses.dataclass(frozen=True)
class Approval:
    account: Account
    approved_at: dt.datetime | None  # None: this GitLab does not say when


@dataclasses.dataclass(frozen=True)
class Signature:
    """A commit's signature as GitLab verified it. `status` is GitLab's `verification_status`
    (verified, unverified, other_user, verified_system, ...), or `unsigned`, or `unknown
    commit` when GitLab has no such commit. `key_id` is GitLab's id of the signing key
    (`gpg_key_id`, or the SSH `key.id`), which the keys of an account are listed by."""

    kind: str  # PGP, SSH, X509; "" when unsigned
    status: str
    key_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Token:
    """The credential and the header GitLab takes it in, named after its variable."""

    value: Secret
    variable: str  # GITLAB_TOKEN or CI_JOB_TOKEN

    @property
    def header(self) -> str:
        return "JOB-TOKEN" if self.variable == "CI_JOB_TOKEN" else "PRIVATE-TOKEN"


class MergeRequests:
    """Merge requests of one project, read with one token."""

    def __init__(self, api_url: str, project: str, token: Token, *,
                 timeout: float = 10.0) -> None:
        if not _PROJECT.fullmatch(project):
            raise UsageError(f"the project must be GitLab's project id (CI_PROJECT_ID) or its "
                             f"path, not {printable(project, _NAME_LIMIT)!r}")
        self.api_url = api_url.rstrip("/")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"CI_API_V4_URL must be GitLab's API URL (https://HOST/api/v4), "
                             f"not {printable(self.api_url, _NAME_LIMIT)!r}")
        # Shown in messages: never any user:password@ that may sit in a URL.
        self.display_url = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else "") + parts.path
        self.project = project
        self._project_path = quote(project, safe="")
        self._token = token
        self._timeout = timeout

    # --- what approvals read ----------------------------------------------------------------

    def merge_request(self, iid: int) -> MergeRequest:
        """`GET /projects/:id/merge_requests/:iid`: its author and head."""
        subject = self._subject(iid)
        data = self._json(self._mr_path(iid), subject, "read it")
        data = data if isinstance(data, dict) else {}
        author, head = self._account(data.get("author")), data.get("sha")
        if author is None or not isinstance(head, str) or not _SHA.fullmatch(head):
            raise UsageError(f"{subject}: GitLab's answer has no author or head commit (sha); "
                             f"is {self.display_url} GitLab's API?")
        return MergeRequest(iid, author, head)

    def versions(self, iid: int) -> list[Version]:
        """`GET .../versions`: its diff versions, newest first. A version connc cannot read
        ends the list: what it knows of the head's history then stops there."""
        found = []
        for item in self._pages(f"{self._mr_path(iid)}/versions", self._subject(iid),
                                "list its diff versions"):
            head = item.get("head_commit_sha") if isinstance(item, dict) else None
            created = http.utc_time(item.get("created_at"), naive_is_utc=False) if isinstance(item, dict) else None
            if not isinstance(head, str) or created is None:
                break
            found.append(Version(head, created))
        return found

    def approvals(self, iid: int) -> list[Approval]:
        """`GET .../approvals`: who approved it and, where GitLab says, when. An approval by
        an account GitLab does not describe (a deleted user) speaks for nobody."""
        subject = self._subject(iid)
        data = self._json(f"{self._mr_path(iid)}/approvals", subject, "read its approvals")
        approved_by = data.get("approved_by") if isinstance(data, dict) else None
        if not isinstance(approved_by, list):
            raise UsageError(f"{subject}: GitLab's answer has no approved_by list; is "
                             f"{self.display_url} GitLab's API?")
        found = []
        for item in approved_by:
            account = self._account(item.get("user")) if isinstance(item, dict) else None
            if account is not None:
                found.append(Approval(account, http.utc_time(item.get("approved_at"), naive_is_utc=False)))
        return found

    def signature(self, sha: str) -> Signature:
        """`GET /projects/:id/repository/commits/:sha/signature`."""
        subject = f"commit {sha[:12]} of project {self.project}"
        answer = self._get(f"/projects/{self._project_path}/repository/commits/{sha}/signature",
                           subject, "read its signature", absent_ok=True)
        data = answer.json()
        if answer.status == 404:
            # GitLab says which is missing: the signature (an unsigned commit) or the commit.
            message = data.get("message") if isinstance(data, dict) else None
            unsigned = isinstance(message, str) and "Signature" in message
            return Signature("", "unsigned" if unsigned else "unknown commit")
        data = data if isinstance(data, dict) else {}
        kind, status = data.get("signature_type"), data.get("verification_status")
        key: Any = data.get("gpg_key_id") if kind == "PGP" else \
            _field(data, "key", "id") if kind == "SSH" else None
        return Signature(self._name(kind) or "unknown", self._name(status) or "not given",
                         key if _is_id(key) else None)

    def keys(self, user_id: int, kind: str) -> frozenset[int]:
        """The ids of an account's keys of a signature kind (PGP: `GET /users/:id/gpg_keys`,
        SSH: `GET /users/:id/keys`)."""
        listed = self._pages(f"/users/{user_id}/{KEY_LISTS[kind]}", f"user {user_id}",
                             f"list its {'GPG' if kind == 'PGP' else 'SSH'} keys")
        ids: list[Any] = [item.get("id") for item in listed if isinstance(item, dict)]
        return frozenset(key for key in ids if _is_id(key))

    # --- requests ---------------------------------------------------------------------------

    def _subject(self, iid: int) -> str:
        return f"merge request !{iid} of project {self.project}"

    def _mr_path(self, iid: int) -> str:
        return f"/projects/{self._project_path}/merge_requests/{iid}"

    def _json(self, path: str, subject: str, what: str) -> Any:
        return self._get(path, subject, what).json()  # `_get` checked that it is JSON

    def _pages(self, path: str, subject: str, what: str) -> list[Any]:
        """Every item of a list GitLab pages by offset: the next page is asked by the
        number in `x-next-page`, at the same API (so the token goes nowhere else)."""
        found: list[Any] = []
        page = 1
        for _ in range(_MAX_PAGES):
            answer = self._get(path, subject, what,
                               params={"per_page": str(PER_PAGE), "page": str(page)})
            items = answer.json()
            if not isinstance(items, list):
                raise UsageError(f"{subject}: GitLab's answer to \"{what}\" is not a list; is "
                                 f"{self.display_url} GitLab's API?")
            found.extend(items)
            following = answer.headers.get("x-next-page", "")
            # At most 9 digits: int() refuses more than 4,300, and no list has more pages.
            if not (following.isascii() and following.isdigit() and len(following) <= 9) \
                    or int(following) <= page:
                return found
            page = int(following)
        raise UsageError(f"{subject}: cannot {what}: more than {_MAX_PAGES} pages")

    def _get(self, path: str, subject: str, what: str, *, params: dict[str, str] | None = None,
             absent_ok: bool = False) -> http.Answer:
        failure: http.Failure | None = None
        try:
            answer = http.request("GET", self.api_url + path, timeout=self._timeout,
                                  auth=_TokenHeader(self._token), params=params,
                                  headers={"Accept": "application/json",
                                           "User-Agent": f"connc/{__version__}"})
        except http.Failure as error:
            failure = error
        if failure is not None:  # raised outside the except: no request data rides along
            raise UsageError(f"{subject}: cannot {what} at {self.display_url}: "
                             f"{failure.message}")
        status = answer.status
        if status == 200 or (status == 404 and absent_ok):
            if answer.json() is None:
                raise UsageError(f"{subject}: GitLab's answer is not JSON; is "
                                 f"{self.display_url} GitLab's API (https://HOST/api/v4)?")
            return answer
        raise UsageError(f"{subject}: cannot {what}: {self._refusal(answer)}")

    def _refusal(self, answer: http.Answer) -> str:
        status, token = answer.status, self._token.variable
        job = (" GitLab's job token cannot read merge requests: set GITLAB_TOKEN to a project "
               "access token (role Reporter, scope read_api) in a masked CI/CD variable"
               if token == "CI_JOB_TOKEN" else "")
        if status == 401:
            return f"GitLab refused the token in {token} (HTTP 401).{job}"
        if status == 403:
            data = answer.json()
            if isinstance(data, dict) and data.get("error") == "insufficient_scope":
                return (f"the token in {token} has no API scope (HTTP 403); it needs "
                        f"read_api")
            return (f"GitLab refused it to the token in {token} (HTTP 403): its account "
                    f"needs the Reporter role in the project.{job}")
        if status == 404:
            return (f"not found (HTTP 404) at {self.display_url}: check the number, the "
                    f"project (CI_MERGE_REQUEST_PROJECT_ID or CI_PROJECT_ID), and that "
                    f"{token}'s account can see the project.{job}")
        if status == 429:
            return "GitLab rate-limits these requests (HTTP 429); run the job again later"
        if status >= 500:
            return f"GitLab failed (HTTP {status}); run the job again"
        if 300 <= status < 400:
            return (f"GitLab answered with a redirect (HTTP {status}), which connc does not "
                    f"follow with the token: CI_API_V4_URL must be the API itself "
                    f"(https://HOST/api/v4)")
        return f"unexpected HTTP {status} from {self.display_url}"

    # --- what GitLab sent ---------------------------------------------------------------------

    def _name(self, value: object) -> str | None:
        """A name GitLab sent, as a message may show it: printable, bounded, never the
        token (an echo of it is replaced)."""
        if not isinstance(value, str) or not value:
            return None
        return printable(value.replace(self._token.value.reveal(), "[redacted]"), _NAME_LIMIT)

    def _account(self, user: object) -> Account | None:
        """GitLab's `UserBasic`: an account has a username and a positive integer id."""
        if not isinstance(user, dict) or not _is_id(user.get("id")):
            return None
        username = self._name(user.get("username"))
        return Account(username, user["id"]) if username else None


class _TokenHeader:
    """requests auth hook: the one place the token enters a request."""

    __slots__ = ("_token",)

    def __init__(self, token: Token) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._token.header] = self._token.value.reveal()
        return request

    def __repr__(self) -> str:
        return "_TokenHeader(**********)"


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _field(data: dict[str, Any], *keys: str) -> object:
    value: object = data
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value
