"""A loopback fake of the Bitbucket Cloud REST API 2.0 parts `connc check --reach` reads.

Shapes follow Bitbucket's documentation: "List repositories" (`GET /2.0/repositories` with
`role=member`) and "List branches" (`GET /2.0/repositories/{workspace}/{repo_slug}/refs/
branches`), both paginated in the body: `values`, `pagelen` (default 10, at most 100), `page`,
`size` (optional: `hide_size` leaves it out, as Bitbucket may) and `next`, a full URL to follow
as given. Repositories carry `full_name`, `slug`, `workspace` and `mainbranch`.

Credentials: an access token (repository, project or workspace) as `Authorization: Bearer`,
or a username with an app password (API token) as HTTP Basic; each sees the repositories it is
given. An unknown one gets 401; one listed in `refuse_listing` gets 403. The log never holds
a credential.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from ._net import LOOPBACK, JsonHandler, serving

_PAGELEN_DEFAULT, _PAGELEN_MAX = 10, 100


@dataclasses.dataclass
class Repository:
    full_name: str
    mainbranch: str | None
    branches: list[str]


class FakeBitbucket:
    def __init__(self) -> None:
        self.repositories: dict[str, Repository] = {}
        self._visible: dict[str, list[str]] = {}  # Authorization header -> full names
        self.refuse_listing: set[str] = set()  # Authorization headers that get 403
        self.hide_size = False
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self.url = ""

    @property
    def api(self) -> str:
        return self.url + "/2.0"

    def add_repository(self, full_name: str, mainbranch: str | None = "main",
                       branches: list[str] | None = None) -> None:
        self.repositories[full_name] = Repository(
            full_name, mainbranch, branches if branches is not None
            else [mainbranch] if mainbranch else [])

    def allow_token(self, token: str, visible: list[str]) -> None:
        self._visible[f"Bearer {token}"] = list(visible)

    def allow_password(self, username: str, password: str, visible: list[str]) -> None:
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._visible[f"Basic {basic}"] = list(visible)

    def refuse(self, token: str) -> None:
        self.refuse_listing.add(f"Bearer {token}")

    def handle(self, path: str, query: str, authorization: str
               ) -> tuple[int, Any]:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        with self._lock:
            self.paths.append(path)
        visible = self._visible.get(authorization)
        if visible is None:
            return 401, {"type": "error", "error": {"message": "Unauthorized"}}
        if authorization in self.refuse_listing:
            return 403, {"type": "error", "error": {"message": "Your credentials lack one or "
                                                               "more required privilege scopes."}}
        if path == "/2.0/repositories" and params.get("role") == "member":
            values = [self._repository_json(self.repositories[name])
                      for name in sorted(visible) if name in self.repositories]
            return self._page(values, path, params)
        parts = path.split("/")
        if len(parts) == 7 and parts[:3] == ["", "2.0", "repositories"] \
                and parts[5:] == ["refs", "branches"]:
            full_name = f"{parts[3]}/{parts[4]}"
            if full_name not in visible or full_name not in self.repositories:
                return 404, {"type": "error", "error": {"message": "Repository not found"}}
            repo = self.repositories[full_name]
            return self._page([{"type": "branch", "name": name,
                                "target": {"type": "commit", "hash": "0" * 40}}
                               for name in repo.branches], path, params)
        return 404, {"type": "error", "error": {"message": "Resource not found"}}

    def _repository_json(self, repo: Repository) -> dict[str, Any]:
        workspace, slug = repo.full_name.split("/", 1)
        return {"type": "repository", "full_name": repo.full_name, "name": slug, "slug": slug,
                "is_private": True, "scm": "git",
                "workspace": {"type": "workspace", "slug": workspace, "name": workspace},
                "mainbranch": {"type": "branch", "name": repo.mainbranch}
                if repo.mainbranch else None,
                "links": {"html": {"href": f"https://bitbucket.org/{repo.full_name}"}}}

    def _page(self, values: list[Any], path: str, params: dict[str, str]) -> tuple[int, Any]:
        pagelen = min(_positive(params.get("pagelen")) or _PAGELEN_DEFAULT, _PAGELEN_MAX)
        page = _positive(params.get("page")) or 1
        body: dict[str, Any] = {"pagelen": pagelen, "page": page,
                                "values": values[(page - 1) * pagelen:page * pagelen]}
        if not self.hide_size:
            body["size"] = len(values)
        kept = [(k, v) for k, v in params.items() if k != "page"]
        if page * pagelen < len(values):
            body["next"] = f"{self.url}{path}?" + urllib.parse.urlencode(
                [*kept, ("page", str(page + 1))])
        return 200, body


def _positive(value: str | None) -> int | None:
    return int(value) or None if value and value.isascii() and value.isdigit() else None


@pytest.fixture
def bitbucket_api() -> Iterator[FakeBitbucket]:
    fake = FakeBitbucket()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            status, body = fake.handle(path, query, self.headers.get("Authorization", ""))
            self.send_json(status, body)

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    fake.url = f"http://{LOOPBACK}:{httpd.server_address[1]}"
    with serving(httpd, "bitbucket-api"):
        yield fake
