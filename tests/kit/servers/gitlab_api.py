"""A loopback fake of the GitLab REST API v4 parts `connc check --reach` and `connc approvals
--gitlab-mr` read.

Shapes follow GitLab's documentation: "List all projects" (`GET /api/v4/projects` with
`membership=true` and `min_access_level`; each project with `permissions.project_access` and
`permissions.group_access`), "List repository branches", the access levels of "Group and
project members", and offset pagination: `page`/`per_page` (default 20, at most 100), the
`x-page`, `x-per-page`, `x-next-page`, `x-prev-page`, `x-total`, `x-total-pages` headers and a
`Link` header, where GitLab leaves `x-total`, `x-total-pages` and `rel="last"` out above
10,000 results (`hide_totals` plays that).

Merge requests as "Merge requests API" ("Get single MR": `sha`, `author`), "Merge request
diffs" ("List merge request diff versions", newest first: `head_commit_sha`, `created_at`;
GitLab records one when a push changes the head, and when the target branch moves) and
"Merge request approvals" (`approved_by[]`: `user`, `approved_at`) describe them; commit
signatures as "Get signature of a commit" (`signature_type` PGP with `gpg_key_id`, SSH with
`key.id`, X509; `verification_status`; 404 "Signature Not Found" for an unsigned commit), and
an account's keys as "List SSH keys for user" and "List all GPG keys for given user", which
answer without authentication. Timestamps come from the fake's clock, one second a step.

Tokens are sent as `PRIVATE-TOKEN` or `Authorization: Bearer`, as GitLab takes both, or as
`JOB-TOKEN` for a CI job token, which GitLab takes on a few endpoints only (not merge requests:
`job_tokens_read_merge_requests` plays a GitLab that would). A token without the `api` or
`read_api` scope gets GitLab's 403 `insufficient_scope`; an unknown one 401; a project the
token's account is no member of is 404, as GitLab hides it. The request log never holds a
token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from ._net import LOOPBACK, JsonHandler, serving

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
_PER_PAGE_DEFAULT, _PER_PAGE_MAX = 20, 100


@dataclasses.dataclass
class Project:
    id: int
    path: str  # path_with_namespace
    default_branch: str | None
    branches: list[str]


@dataclasses.dataclass
class Token:
    user: str
    scopes: frozenset[str]
    # project path -> (project access level, group access level); None where there is none
    memberships: dict[str, tuple[int | None, int | None]]


@dataclasses.dataclass(frozen=True)
class Seen:
    path: str
    params: dict[str, str]
    auth: str  # "private-token", "job-token", "bearer" or "none"


@dataclasses.dataclass
class User:
    id: int
    username: str
    ssh_keys: list[int] = dataclasses.field(default_factory=list)  # key ids
    gpg_keys: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class MergeRequest:
    project: Project
    iid: int
    author: User
    sha: str  # the head GitLab has recorded
    versions: list[tuple[str, dt.datetime]]  # (head, created_at), oldest first
    approvals: list[tuple[User, dt.datetime]]


class FakeGitLab:
    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.tokens: dict[str, Token] = {}
        self.hide_totals = False  # as GitLab does above 10,000 results
        self.seen: list[Seen] = []
        self.users: dict[str, User] = {}  # by username, lower case
        self.merge_requests: dict[tuple[int, int], MergeRequest] = {}  # (project id, iid)
        self.signatures: dict[str, dict[str, Any] | None] = {}  # commit sha -> signature
        self.job_tokens: dict[str, str] = {}  # token -> project path
        self.job_tokens_read_merge_requests = False  # GitLab's job token cannot, today
        self.dated_approvals = True  # False: a GitLab whose approvals say no `approved_at`
        self._keys = 700
        self._clock = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
        self._injected: list[tuple[int, Any]] = []
        self._lock = threading.Lock()
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    def tick(self) -> dt.datetime:
        """The fake's clock, one second on: every recorded event has its own moment."""
        self._clock += dt.timedelta(seconds=1)
        return self._clock

    def fail_next(self, status: int, body: Any = None, times: int = 1) -> None:
        """Answer the next `times` requests, whatever they are, with this (JSON) body;
        None: GitLab's `{"message": "<status> <reason>"}`; bytes are sent as they are."""
        if body is None:
            body = {"message": f"{status} {'Unauthorized' if status == 401 else 'Error'}"}
        self._injected.extend((status, body) for _ in range(times))

    # --- accounts, merge requests, signatures -------------------------------------------------

    def add_user(self, username: str, user_id: int | None = None) -> User:
        user = User(user_id if user_id is not None else 5000 + len(self.users), username)
        self.users[username.lower()] = user
        return user

    def user(self, username: str) -> User:
        return self.users.get(username.lower()) or self.add_user(username)

    def add_key(self, username: str, kind: str = "SSH") -> int:
        """A signing key of the account (SSH or PGP); its GitLab id."""
        self._keys += 1
        user = self.user(username)
        (user.ssh_keys if kind == "SSH" else user.gpg_keys).append(self._keys)
        return self._keys

    def add_job_token(self, project: str) -> str:
        token = "glcbt-" + secrets.token_urlsafe(15)
        self.job_tokens[token] = project
        return token

    def add_merge_request(self, project: str, iid: int, author: str, head: str
                          ) -> MergeRequest:
        if project not in self.projects:
            self.add_project(project)
        merge_request = MergeRequest(self.projects[project], iid, self.user(author), head,
                                     [(head, self.tick())], [])
        self.merge_requests[self.projects[project].id, iid] = merge_request
        return merge_request

    def push(self, merge_request: MergeRequest, head: str, *, recorded: bool = True) -> None:
        """A push to the source branch. `recorded=False`: the merge request's `sha` says the
        new head and its diff versions do not, as connc sees it when a push lands between its
        two reads (GitLab's `sha` is its newest version's head)."""
        merge_request.sha = head
        if recorded:
            merge_request.versions.append((head, self.tick()))

    def target_moved(self, merge_request: MergeRequest) -> None:
        """A push to the target branch: a new diff version with the same head."""
        merge_request.versions.append((merge_request.sha, self.tick()))

    def approve(self, merge_request: MergeRequest, username: str) -> None:
        """An account approves (once: approving again first takes the approval back)."""
        user = self.user(username)
        self.unapprove(merge_request, username)
        merge_request.approvals.append((user, self.tick()))

    def unapprove(self, merge_request: MergeRequest, username: str) -> None:
        user = self.user(username)
        merge_request.approvals = [(u, at) for u, at in merge_request.approvals if u is not user]

    def rename_user(self, username: str, new: str) -> None:
        user = self.users.pop(username.lower())
        user.username = new
        self.users[new.lower()] = user

    def sign(self, sha: str, kind: str = "SSH", status: str = "verified",
             key_id: int | None = None) -> None:
        """Record commit `sha` with a signature GitLab verified as `status` (kind "" for an
        unsigned commit)."""
        if not kind:
            self.signatures[sha] = None
        elif kind == "SSH":
            self.signatures[sha] = {
                "signature_type": "SSH", "verification_status": status,
                "key": {"id": key_id, "title": "laptop", "created_at": "2024-01-01T00:00:00.000Z",
                        "expires_at": None, "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake",
                        "usage_type": "auth_and_signing"},
                "commit_source": "gitaly"}
        elif kind == "PGP":
            self.signatures[sha] = {
                "signature_type": "PGP", "verification_status": status, "gpg_key_id": key_id,
                "gpg_key_primary_keyid": "8254AAB3FBD54AC9", "gpg_key_user_name": "Someone",
                "gpg_key_user_email": "someone@example.com", "gpg_key_subkey_id": None,
                "commit_source": "gitaly"}
        else:
            self.signatures[sha] = {
                "signature_type": "X509", "verification_status": status,
                "x509_certificate": {"id": 1, "subject": "CN=someone", "subject_key_identifier":
                                     "BC:BC", "email": "someone@example.com",
                                     "serial_number": 278969561018901340000000000000000000,
                                     "certificate_status": "good", "x509_issuer": {
                                         "id": 1, "subject": "CN=CA", "subject_key_identifier":
                                         "AB:AB", "crl_url": "http://example.com/pki.crl"}},
                "commit_source": "gitaly"}

    def add_project(self, path: str, default_branch: str | None = "main",
                    branches: list[str] | None = None) -> Project:
        project = Project(1000 + len(self.projects), path, default_branch,
                          branches if branches is not None
                          else [default_branch] if default_branch else [])
        self.projects[path] = project
        return project

    def add_token(self, memberships: dict[str, tuple[int | None, int | None]], *,
                  scopes: tuple[str, ...] = ("read_api",), user: str = "ci-bot") -> str:
        token = "glpat-" + secrets.token_urlsafe(15)
        self.tokens[token] = Token(user, frozenset(scopes), dict(memberships))
        return token

    # --- request handling ------------------------------------------------------------------

    def handle(self, path: str, query: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        private, bearer = headers.get("PRIVATE-TOKEN"), headers.get("Authorization", "")
        job = headers.get("JOB-TOKEN")
        presented = private or (bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None)
        with self._lock:
            self.seen.append(Seen(path, params, "private-token" if private else
                                  "bearer" if presented else "job-token" if job else "none"))
            injected = self._injected.pop(0) if self._injected else None
        if injected is not None:
            return injected[0], {}, injected[1]
        parts = path.split("/")
        if len(parts) == 6 and parts[:4] == ["", "api", "v4", "users"] \
                and parts[5] in ("keys", "gpg_keys"):
            return self._keys_of(parts[4], parts[5], path, params)  # public, as on GitLab
        if job is not None and not private and not presented:
            return self._as_job(job, path, params)
        token = self.tokens.get(presented or "")
        if token is None:
            return 401, {}, {"message": "401 Unauthorized"}
        if not token.scopes & {"api", "read_api"}:
            return 403, {}, {"error": "insufficient_scope",
                             "error_description": "The request requires higher privileges "
                                                  "than provided by the access token.",
                             "scope": "api read_api"}
        if path == "/api/v4/projects":
            return self._projects(token, path, params)
        if len(parts) >= 6 and parts[:4] == ["", "api", "v4", "projects"] \
                and parts[5] in ("merge_requests", "repository") and parts[6:7] != ["branches"]:
            project = self._project(parts[4])
            if project is None or project.path not in token.memberships:
                return 404, {}, {"message": "404 Project Not Found"}
            return self._merge_request_api(project, parts[5:], path, params)
        if len(parts) == 7 and parts[:4] == ["", "api", "v4", "projects"] \
                and parts[5:] == ["repository", "branches"]:
            project = next((p for p in self.projects.values() if str(p.id) == parts[4]), None)
            if project is None or project.path not in token.memberships:
                return 404, {}, {"message": "404 Project Not Found"}
            branches = [{"name": name, "merged": False, "protected": name == project.default_branch,
                         "default": name == project.default_branch, "developers_can_push": False,
                         "can_push": False, "web_url": f"{self.url}/{project.path}/-/tree/{name}",
                         "commit": {"id": "0" * 40, "short_id": "0" * 8}}
                        for name in project.branches]
            return self._page(branches, path, params)
        return 404, {}, {"message": "404 Not Found"}

    def _project(self, key: str) -> Project | None:
        """A project by id, or by its URL-encoded path."""
        wanted = urllib.parse.unquote(key)
        return next((p for p in self.projects.values() if str(p.id) == wanted or p.path == wanted),
                    None)

    def _as_job(self, job: str, path: str, params: dict[str, str]
                ) -> tuple[int, dict[str, str], Any]:
        """A CI job token: GitLab takes it on the endpoints it allows, and answers the others
        as it answers an anonymous request: 401."""
        project_path = self.job_tokens.get(job)
        parts = path.split("/")
        if project_path is None or not self.job_tokens_read_merge_requests \
                or parts[:4] != ["", "api", "v4", "projects"] or len(parts) < 6:
            return 401, {}, {"message": "401 Unauthorized"}
        project = self._project(parts[4])
        if project is None or project.path != project_path:
            return 404, {}, {"message": "404 Project Not Found"}
        return self._merge_request_api(project, parts[5:], path, params)

    def _merge_request_api(self, project: Project, rest: list[str], path: str,
                           params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if rest[:2] == ["repository", "commits"] and len(rest) == 4 and rest[3] == "signature":
            if rest[2] not in self.signatures:
                return 404, {}, {"message": "404 Commit Not Found"}
            signature = self.signatures[rest[2]]
            if signature is None:
                return 404, {}, {"message": "404 Signature Not Found"}
            return 200, {}, signature
        if rest[0] != "merge_requests" or len(rest) < 2 or not rest[1].isdigit():
            return 404, {}, {"message": "404 Not Found"}
        merge_request = self.merge_requests.get((project.id, int(rest[1])))
        if merge_request is None:
            return 404, {}, {"message": "404 Not found"}
        if len(rest) == 2:
            return 200, {}, self._merge_request_json(merge_request)
        if rest[2:] == ["versions"]:
            versions = [{"id": 900 + index, "head_commit_sha": head,
                         "base_commit_sha": "b" * 40, "start_commit_sha": "b" * 40,
                         "created_at": _stamp(created),
                         "merge_request_id": 10000 + merge_request.iid,
                         "state": "collected", "real_size": "1", "patch_id_sha": "d" * 40}
                        for index, (head, created) in enumerate(merge_request.versions)]
            return self._page(versions[::-1], path, params)
        if rest[2:] == ["approvals"]:
            return 200, {}, self._approvals_json(merge_request)
        return 404, {}, {"message": "404 Not Found"}

    def _user_json(self, user: User) -> dict[str, Any]:
        return {"id": user.id, "username": user.username, "name": user.username.title(),
                "state": "active", "locked": False,
                "avatar_url": f"https://secure.gravatar.com/avatar/{user.id}",
                "web_url": f"{self.url}/{user.username}"}

    def _merge_request_json(self, merge_request: MergeRequest) -> dict[str, Any]:
        project, created = merge_request.project, merge_request.versions[0][1]
        return {
            "id": 10000 + merge_request.iid, "iid": merge_request.iid, "project_id": project.id,
            "title": "Change access", "description": "", "state": "opened",
            "created_at": _stamp(created), "updated_at": _stamp(merge_request.versions[-1][1]),
            "merged_by": None, "merged_at": None, "closed_by": None, "closed_at": None,
            "target_branch": project.default_branch or "main", "source_branch": "change",
            "author": self._user_json(merge_request.author), "assignees": [], "reviewers": [],
            "source_project_id": project.id, "target_project_id": project.id, "labels": [],
            "draft": False, "work_in_progress": False, "merge_when_pipeline_succeeds": False,
            "merge_status": "can_be_merged", "detailed_merge_status": "mergeable",
            "sha": merge_request.sha, "merge_commit_sha": None, "squash_commit_sha": None,
            "diff_refs": {"base_sha": "b" * 40, "head_sha": merge_request.sha,
                          "start_sha": "b" * 40},
            "references": {"short": f"!{merge_request.iid}",
                           "full": f"{project.path}!{merge_request.iid}"},
            "web_url": f"{self.url}/{project.path}/-/merge_requests/{merge_request.iid}"}

    def _approvals_json(self, merge_request: MergeRequest) -> dict[str, Any]:
        project = merge_request.project
        return {
            "id": 10000 + merge_request.iid, "iid": merge_request.iid, "project_id": project.id,
            "title": "Change access", "description": "", "state": "opened",
            "created_at": _stamp(merge_request.versions[0][1]),
            "updated_at": _stamp(merge_request.versions[-1][1]),
            "merge_status": "can_be_merged", "approved": bool(merge_request.approvals),
            "approvals_required": 0, "approvals_left": 0,
            "user_has_approved": False, "user_can_approve": True,
            "approved_by": [{"user": self._user_json(user),
                             **({"approved_at": _stamp(at)} if self.dated_approvals else {})}
                            for user, at in merge_request.approvals]}

    def _keys_of(self, user_id: str, kind: str, path: str, params: dict[str, str]
                 ) -> tuple[int, dict[str, str], Any]:
        user = next((u for u in self.users.values() if str(u.id) == user_id), None)
        if user is None:
            return 404, {}, {"message": "404 User Not Found"}
        if kind == "keys":
            keys = [{"id": key, "title": f"key {key}", "created_at": "2024-01-01T00:00:00.000Z",
                     "expires_at": None, "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake",
                     "usage_type": "auth_and_signing"} for key in user.ssh_keys]
        else:
            keys = [{"id": key, "key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\nfake\n"
                     "-----END PGP PUBLIC KEY BLOCK-----", "created_at": "2024-01-01T00:00:00.000Z"}
                    for key in user.gpg_keys]
        return self._page(keys, path, params)

    def _projects(self, token: Token, path: str, params: dict[str, str]
                  ) -> tuple[int, dict[str, str], Any]:
        minimum = int(params.get("min_access_level") or 0)
        listed = []
        for project in sorted(self.projects.values(), key=lambda p: p.id):
            levels = token.memberships.get(project.path)
            if levels is None:
                continue
            # (None, None): access through a group the project is shared with, which GitLab
            # lists with both permissions null (gitlab-org/gitlab#3754); the role is unknown.
            if levels != (None, None) and max(level or 0 for level in levels) < minimum:
                continue
            project_level, group_level = levels
            namespace = project.path.rsplit("/", 1)[0]
            listed.append({
                "id": project.id, "description": None, "name": project.path.rsplit("/", 1)[-1],
                "name_with_namespace": project.path.replace("/", " / "),
                "path": project.path.rsplit("/", 1)[-1], "path_with_namespace": project.path,
                "created_at": "2024-01-01T00:00:00.000Z",
                "default_branch": project.default_branch, "visibility": "private",
                "web_url": f"{self.url}/{project.path}",
                "http_url_to_repo": f"{self.url}/{project.path}.git",
                "namespace": {"id": 900, "name": namespace, "path": namespace,
                              "kind": "group", "full_path": namespace},
                "archived": False,
                "permissions": {
                    "project_access": {"access_level": project_level, "notification_level": 3}
                    if project_level is not None else None,
                    "group_access": {"access_level": group_level, "notification_level": 3}
                    if group_level is not None else None,
                },
            })
        return self._page(listed, path, params)

    def _page(self, items: list[Any], path: str, params: dict[str, str]
              ) -> tuple[int, dict[str, str], Any]:
        per_page = min(_positive(params.get("per_page")) or _PER_PAGE_DEFAULT, _PER_PAGE_MAX)
        page = _positive(params.get("page")) or 1
        pages = max(1, -(-len(items) // per_page))
        kept = [(k, v) for k, v in params.items() if k != "page"]

        def link(number: int) -> str:
            return f"{self.url}{path}?{urllib.parse.urlencode([*kept, ('page', str(number))])}"

        rels = ([("prev", page - 1)] if page > 1 else []) + \
            ([("next", page + 1)] if page < pages else []) + [("first", 1)] + \
            ([] if self.hide_totals else [("last", pages)])
        headers = {"x-page": str(page), "x-per-page": str(per_page),
                   "x-next-page": str(page + 1) if page < pages else "",
                   "x-prev-page": str(page - 1) if page > 1 else "",
                   "Link": ", ".join(f'<{link(n)}>; rel="{rel}"' for rel, n in rels)}
        if not self.hide_totals:
            headers.update({"x-total": str(len(items)), "x-total-pages": str(pages)})
        return 200, headers, items[(page - 1) * per_page:page * per_page]


def _stamp(moment: dt.datetime) -> str:
    """GitLab's timestamps: ISO 8601 in UTC, milliseconds, `Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _positive(value: str | None) -> int | None:
    return int(value) or None if value and value.isascii() and value.isdigit() else None


@pytest.fixture
def gitlab_api() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            status, headers, body = fake.handle(path, query, self.headers)
            self.send_json(status, body, headers)

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    fake.url = f"http://{LOOPBACK}:{httpd.server_address[1]}"
    with serving(httpd, "gitlab-api"):
        yield fake
