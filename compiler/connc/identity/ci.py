"""Where a job's ID token comes from: GitHub Actions, GitLab CI, or a file (`connc check`).

* GitHub Actions gives a job with `permissions: id-token: write` a request URL and a bearer
  (ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN); each request, with the
  connection's audience, returns a fresh token that lives five minutes. So every exchange gets
  its own, and the audience is the connection's, never another's.
* GitLab CI puts a token in the variable each `id_tokens:` entry names, with the `aud` the
  job's file gave it; connc reads the variable the connection names and checks that `aud`.
  There is one token per variable per job.
* `connc check --id-token-file FILE`: a token obtained elsewhere, checked the same way.

A pull_request_target job runs with the base repository's identity while it may check out a
pull request's code: render refuses to exchange that identity there (`refuse_untrusted_event`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from connc import __version__, http, urls
from connc.errors import RenderError, UsageError
from connc.findings import printable
from connc.identity import token as tokens
from connc.identity.token import IdToken
from connc.secrets import Secret

GITHUB, GITLAB = "github-actions", "gitlab-ci"
REQUEST_TIMEOUT = 20.0  # seconds, each request; the run's own deadline (http.limits) holds too
USER_AGENT = f"connc/{__version__}"
UNTRUSTED_EVENTS = frozenset({"pull_request_target"})


class NoIdentity(UsageError):
    """This job has no ID token to give (not in CI, or not allowed one): exit 2."""


class Source(Protocol):
    """Gives ID tokens for a connection's `identity`, checked for `audience`."""

    def provider(self, identity: Mapping[str, Any]) -> str:
        """github-actions, gitlab-ci or file: which CI the tokens come from."""
        ...

    def token(self, identity: Mapping[str, Any], audience: str, *,
              connection: str) -> IdToken: ...


def refuse_untrusted_event(environ: Mapping[str, str]) -> None:
    """A pull_request_target job holds the base repository's trusted identity while it may run
    a pull request's untrusted code: no secretless exchange there."""
    event = environ.get("GITHUB_EVENT_NAME", "")
    if event in UNTRUSTED_EVENTS:
        raise RenderError(f"this job runs on `{event}`, which gives the base repository's "
                          f"identity to a job that may run a pull request's code: connc does "
                          f"not exchange it for credentials there; use a `pull_request` job "
                          f"(no identity) or a job after the merge")


def ci_provider(requested: str, environ: Mapping[str, str]) -> str:
    """The CI system tokens come from: the connection's `identity.provider`, or, for `auto`,
    the one this job runs in."""
    in_github = environ.get("GITHUB_ACTIONS") == "true"
    in_gitlab = environ.get("GITLAB_CI") == "true"
    if requested == "auto":
        if in_github:
            return GITHUB
        if in_gitlab:
            return GITLAB
        raise NoIdentity("a secretless connection needs the CI job's OIDC identity, and this "
                         "is not a GitHub Actions or GitLab CI job (neither GITHUB_ACTIONS nor "
                         "GITLAB_CI is set)")
    if requested == GITHUB and not in_github:
        raise NoIdentity("the connection's identity is github-actions, and this is not a "
                         "GitHub Actions job (GITHUB_ACTIONS is not set)")
    if requested == GITLAB and not in_gitlab:
        raise NoIdentity("the connection's identity is gitlab-ci, and this is not a GitLab CI "
                         "job (GITLAB_CI is not set)")
    return requested


class Environment:
    """Tokens from the CI job this process runs in."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)

    def provider(self, identity: Mapping[str, Any]) -> str:
        return ci_provider(str(identity.get("provider", "auto")), self.environ)

    def token(self, identity: Mapping[str, Any], audience: str, *,
              connection: str) -> IdToken:
        refuse_untrusted_event(self.environ)
        if self.provider(identity) == GITHUB:
            found = github_token(self.environ, audience, connection)
            where = f"the ID token GitHub issued for connection `{connection}`"
        else:
            variable = identity.get("tokenVariable")
            if not variable:
                raise NoIdentity(f"connection `{connection}`: under GitLab CI the identity "
                                 f"needs `tokenVariable`, the job's `id_tokens:` variable")
            where = f"the GitLab CI variable {variable} (connection `{connection}`)"
            found = gitlab_token(self.environ, str(variable), connection, where)
        tokens.check(found, identity, audience, where)
        return found


def gitlab_token(environ: Mapping[str, str], variable: str, connection: str,
                 where: str) -> IdToken:
    value = environ.get(variable)
    if not value:
        raise NoIdentity(f"connection `{connection}`: the GitLab CI variable {variable} is not "
                         f"set; declare it in the job: `id_tokens: {{{variable}: {{aud: "
                         f"AUDIENCE}}}}`")
    return tokens.parse(value, where)


class _Bearer:
    """requests auth hook: the runner's request token, never in a header mapping we keep."""

    __slots__ = ("_token",)

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(**********)"


def github_token(environ: Mapping[str, str], audience: str, connection: str) -> IdToken:
    """A fresh token from the runner, for `audience` (what @actions/core's getIDToken asks)."""
    url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    bearer = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not bearer:
        raise NoIdentity(f"connection `{connection}` needs the job's OIDC identity, and GitHub "
                         f"gave this job none: add `permissions: id-token: write` to the job "
                         f"(or the workflow); pull requests from forks never get one")
    host = urls.host_of(url)
    try:
        answer = http.request("GET", url, params={"audience": audience}, timeout=REQUEST_TIMEOUT,
                              headers={"Accept": "application/json; api-version=2.0",
                                       "User-Agent": USER_AGENT},
                              auth=_Bearer(Secret(bearer)), max_bytes=tokens.MAX_TOKEN_BYTES)
    except http.Failure as failure:
        raise RenderError(f"connection `{connection}`: cannot get the job's ID token: "
                          f"{failure.message}") from None
    if answer.status != 200:
        raise RenderError(f"connection `{connection}`: GitHub's token service ({host}) answered "
                          f"HTTP {answer.status} to the ID token request"
                          f"{' (is `id-token: write` granted?)' if answer.status in (401, 403) else ''}")
    body = answer.json()
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise RenderError(f"connection `{connection}`: GitHub's token service ({host}) answered "
                          f"without a token")
    return tokens.parse(value, f"the ID token GitHub issued for connection `{connection}`")


class TokenFile:
    """`connc check --id-token-file`: a token obtained elsewhere, read for each exchange."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def provider(self, identity: Mapping[str, Any]) -> str:
        return "file"

    def token(self, identity: Mapping[str, Any], audience: str, *,
              connection: str) -> IdToken:
        where = f"the token of --id-token-file (connection `{connection}`)"
        shown = printable(str(self.path), 200)
        try:
            # Non-blocking, and a regular file only: a FIFO (or a device) put where the token
            # was expected would block the read past every deadline.
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as error:
            raise UsageError(f"--id-token-file {shown}: {error.strerror}") from None
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise UsageError(f"--id-token-file {shown}: not a regular file")
            try:
                data = handle.read(tokens.MAX_TOKEN_BYTES + 1)
            except OSError as error:
                raise UsageError(f"--id-token-file {shown}: {error.strerror}") from None
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise tokens.TokenProblem(f"{where} is not a JWT (not ASCII)") from None
        found = tokens.parse(text, where)
        tokens.check(found, identity, audience, where)
        return found
