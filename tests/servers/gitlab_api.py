"""A loopback fake of the GitLab REST API v4 parts `connc check --reach` reads.

Shapes follow GitLab's documentation: "List all projects" (`GET /api/v4/projects` with
`membership=true` and `min_access_level`; each project with `permissions.project_access` and
`permissions.group_access`), "List repository branches", the access levels of "Group and
project members", and offset pagination: `page`/`per_page` (default 20, at most 100), the
`x-page`, `x-per-page`, `x-next-page`, `x-prev-page`, `x-total`, `x-total-pages` headers and a
`Link` header, where GitLab leaves `x-total`, `x-total-pages` and `rel="last"` out above
10,000 results (`hide_totals` plays that).

Tokens are sent as `PRIVATE-TOKEN` or `Authorization: Bearer`, as GitLab takes both. A token
without the `api` or `read_api` scope gets GitLab's 403 `insufficient_scope`; an unknown one
401. The request log never holds a token.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ._net import LOOPBACK, serving

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
    auth: str  # "private-token", "bearer" or "none"


class FakeGitLab:
    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.tokens: dict[str, Token] = {}
        self.hide_totals = False  # as GitLab does above 10,000 results
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.url = ""

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
        presented = private or (bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None)
        with self._lock:
            self.seen.append(Seen(path, params, "private-token" if private else
                                  "bearer" if presented else "none"))
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
        parts = path.split("/")
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


def _positive(value: str | None) -> int | None:
    return int(value) or None if value and value.isascii() and value.isdigit() else None


@pytest.fixture
def gitlab_api() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            status, headers, body = fake.handle(path, query, self.headers)
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    fake.url = f"http://{LOOPBACK}:{httpd.server_address[1]}"
    with serving(httpd, "gitlab-api"):
        yield fake
