"""`connc check` for git connections: the bundle's credential helper, then `git ls-remote`.

It renders a bundle of its one connection and runs git after `. BUNDLE/env`, so a pass
proves the bundle a pipeline would get, not only the credential. git's stderr is matched
against known messages (in the C locale) and never shown: it can quote a URL or a remote's
text.

`--reach` asks the host's API where it has one a stored credential may use (GitLab's,
Bitbucket Cloud's: `gitlab`, `bitbucket`); for generic git, Codeup and other hosts it lists
the branches of the url's repository with `git ls-remote`, through the same bundle.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from connc.check import bitbucket, gitlab
from connc.check.probe import Context, ProbeFailure, Result, http_get, status_failure
from connc.check.reach import (
    MAX_LISTED,
    Ask,
    Grant,
    Item,
    Listed,
    Reach,
    counted,
    denied_grants,
    name,
)
from connc.render.context import Resolved

_UPLOAD_PACK = "application/x-git-upload-pack-advertisement"


def probe(resolved: Resolved, context: Context) -> Result:
    url = str(resolved.spec["url"])
    if shutil.which("git") is None:
        raise ProbeFailure("git is not installed here; git connections are checked with it")
    bundle = context.bundle(resolved)
    if url.startswith("ssh://"):
        return _git_ssh(url, bundle, context)
    return _git_https(url, bundle, context)


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    url = str(resolved.spec["url"])
    if resolved.type in gitlab.TYPES:
        return gitlab.reach(resolved, context, ask)
    api = bitbucket.api_for(url) if resolved.type in bitbucket.TYPES else None
    if api is not None:
        return bitbucket.reach(resolved, context, ask, api)
    return _branches_of_url(resolved, context, ask, _NO_API.get(resolved.type, ""))


# Why a type's repositories are not asked, said before what `git ls-remote` shows instead.
_NO_API = {
    "codeup": "Codeup's API takes an organization's access token in a header of its own, not "
              "the clone username and password this connection holds, so the repositories it "
              "opens cannot be asked",
    "bitbucket": "this is not Bitbucket Cloud (bitbucket.org), and the API of Bitbucket Data "
                 "Center is not asked, so the repositories it opens cannot be asked",
}


def _branches_of_url(resolved: Resolved, context: Context, ask: Ask, no_api: str) -> Reach:
    """`git ls-remote --symref URL HEAD refs/heads/*` through the bundle: the repository's
    branches and its default branch. A url that is a path prefix has no branches, and git
    has no way to list the repositories under it: then reach is unknown, and said to be."""
    url = str(resolved.spec["url"])
    if shutil.which("git") is None:
        raise ProbeFailure("git is not installed here; git connections are asked with it")
    bundle = context.bundle(resolved)
    if not url.startswith("ssh://") and not _is_repository(url, bundle, context):
        return _prefix_only(url, ask, no_api)
    listed = context.run(bundle, ["git", "ls-remote", "--symref", url, "HEAD", "refs/heads/*"])
    if listed.returncode != 0:
        failure = _ssh_failure(listed.stderr) if url.startswith("ssh://") else \
            _git_failure(listed.stderr)
        if url.startswith("ssh://") and failure is None:
            return _prefix_only(url, ask, no_api)  # ssh got through; no repository there
        raise ProbeFailure(failure or "git ls-remote failed", url)
    default, names = _heads(listed.stdout)
    shown = Listed(tuple(names[:MAX_LISTED]), len(names), len(names) <= MAX_LISTED)
    item = Item(url, default, branches=shown)
    head = f"default branch {default}" if default else "default branch unknown"
    summary = f"{counted(len(names), 'branch', 'branches')} of the url's repository ({head})"
    return Reach(url, f"{no_api}; {summary}" if no_api else summary, "branches",
                 items=(item,), total=1,
                 grants=tuple([Grant(use.pipeline, "this repository") for use in ask.allowed()]
                              + denied_grants(ask)))


def _prefix_only(url: str, ask: Ask, no_api: str) -> Reach:
    unknown = ("the url is a path prefix, not a repository, and git has no way to list the "
               "repositories under it: what the credential opens there is unknown")
    return Reach(url, f"{no_api}; {unknown}" if no_api else unknown, "branches", asked=False,
                 grants=tuple([Grant(use.pipeline, f"repositories under {url}")
                               for use in ask.allowed()] + denied_grants(ask)))


def _heads(stdout: str) -> tuple[str | None, list[str]]:
    """(default branch, branch names) from `git ls-remote --symref` output."""
    default, names = None, []
    for line in stdout.splitlines():
        left, _, ref = line.partition("\t")
        if ref == "HEAD" and left.startswith("ref: refs/heads/"):
            default = name(left[len("ref: refs/heads/"):])
        elif ref.startswith("refs/heads/"):
            names.append(name(ref[len("refs/heads/"):]) or "?")
    return default, sorted(names, key=str.lower)


def _git_https(url: str, bundle: Path, context: Context) -> Result:
    """The credential sent up front (`_is_repository`); then, for a repository,
    `git ls-remote` through the bundle."""
    if not _is_repository(url, bundle, context):
        return Result(True, "credential accepted; the url is a path prefix, not a repository, "
                            "so access to a repository is not proven", url)
    listed = context.run(bundle, ["git", "ls-remote", url, "HEAD"])
    if listed.returncode != 0:
        return Result(False, "the service accepted the credential, but git ls-remote through the "
                             f"bundle failed: {_git_failure(listed.stderr)}", url)
    return Result(True, "git ls-remote through the bundle succeeded", url)


def _is_repository(url: str, bundle: Path, context: Context) -> bool:
    """Smart-HTTP discovery with the credential the bundle's helper gives for `url`, sent up
    front (git itself waits for a 401, so a public repository would prove nothing): whether
    the url is a repository (else a path prefix, or a whole host). ProbeFailure when the
    host refuses the credential."""
    basic = _helper_credential(url, bundle, context)
    answer = http_get(url.rstrip("/") + "/info/refs", context, basic=basic,
                      params={"service": "git-upload-pack"},
                      headers={"User-Agent": "git/2 (connc check)"})  # hosts serve git/ agents
    if answer.status not in (200, 404):
        raise ProbeFailure(status_failure(answer.status), url)
    return answer.status == 200 and answer.headers.get("Content-Type", "").startswith(
        _UPLOAD_PACK)


def _helper_credential(url: str, bundle: Path, context: Context) -> tuple[str, str]:
    """What the bundle's credential helper answers git for `url` (`git credential fill`)."""
    parts = urlsplit(url)
    request = f"protocol={parts.scheme}\nhost={parts.netloc}\n"
    if parts.path.strip("/"):
        request += f"path={parts.path.strip('/')}\n"
    filled = context.run(bundle, ["git", "credential", "fill"], stdin=request + "\n")
    answer = dict(line.split("=", 1) for line in filled.stdout.splitlines() if "=" in line)
    if filled.returncode != 0 or not answer.get("username") or not answer.get("password"):
        raise ProbeFailure("the bundle's credential helper gave git no credential for the url "
                           "(a connc bug; please report it)")
    return answer["username"], answer["password"]


def _git_ssh(url: str, bundle: Path, context: Context) -> Result:
    listed = context.run(bundle, ["git", "ls-remote", url, "HEAD"])
    if listed.returncode == 0:
        return Result(True, "git ls-remote over ssh with the bundle's key succeeded", url)
    failure = _ssh_failure(listed.stderr)
    if failure:
        return Result(False, failure, url)
    # ssh got through (its own failures are matched above), then the remote found no
    # repository: an ssh url may be a path prefix, as an https one may.
    return Result(True, "the server accepted the key; git found no repository it may read at "
                        "the url (a path prefix?), so access to a repository is not proven", url)


_SSH_FAILURES = (
    ("Permission denied", "auth refused: the server did not accept the key"),
    ("Host key verification failed", "the server's host key does not match spec.knownHosts"),
    ("Could not resolve hostname", "unreachable: the host name does not resolve"),
    ("Connection refused", "unreachable: connection refused"),
    ("No route to host", "unreachable: no route to host"),
    ("Network is unreachable", "unreachable: network is unreachable"),
    ("timed out", "timeout: the server did not answer"),
    ("kex_exchange_identification", "unreachable: the server closed the connection"),
    ("Connection closed", "unreachable: the server closed the connection"),
    ("Connection reset", "unreachable: the server reset the connection"),
    ("Load key", "ssh could not load the bundle's key"),
    ("Bad configuration option", "ssh refused the bundle's options (a connc bug?)"),
)


def _ssh_failure(stderr: str) -> str | None:
    return next((reason for pattern, reason in _SSH_FAILURES if pattern in stderr), None)


_GIT_FAILURES = (
    ("Authentication failed", "auth refused (HTTP 401)"),
    ("returned error: 403", "auth refused (HTTP 403)"),
    ("not found", "not found (HTTP 404)"),
    ("SSL", "TLS error (for a private CA set GIT_SSL_CAINFO)"),
    ("certificate", "TLS error (for a private CA set GIT_SSL_CAINFO)"),
    ("Could not resolve host", "unreachable: the host name does not resolve"),
    ("Failed to connect", "unreachable: cannot connect"),
    ("timed out", "timeout"),
    ("too slow", "timeout"),
)


def _git_failure(stderr: str) -> str:
    return next((reason for pattern, reason in _GIT_FAILURES if pattern in stderr),
                "git failed")
