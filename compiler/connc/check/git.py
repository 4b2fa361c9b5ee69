"""`connc check` for git connections: the bundle's credential helper, then `git ls-remote`.

It renders a bundle of its one connection and runs git after `. BUNDLE/env`, so a pass
proves the bundle a pipeline would get, not only the credential. git's stderr is matched
against known messages (in the C locale) and never shown: it can quote a URL or a remote's
text.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from connc.check.probe import Context, ProbeFailure, Result, http_get, status_failure
from connc.render import git as git_writer
from connc.render.context import Resolved

# github-app is a git type for render (its token is a git credential); check mints it instead.
TYPES = git_writer.TYPES - {"github-app"}

_UPLOAD_PACK = "application/x-git-upload-pack-advertisement"


def probe(resolved: Resolved, context: Context) -> Result:
    url = str(resolved.spec["url"])
    if shutil.which("git") is None:
        raise ProbeFailure("git is not installed here; git connections are checked with it")
    bundle = context.bundle(resolved)
    if url.startswith("ssh://"):
        return _git_ssh(url, bundle, context)
    return _git_https(url, bundle, context)


def _git_https(url: str, bundle: Path, context: Context) -> Result:
    """Smart-HTTP discovery with the credential the bundle's helper gives for `url`, sent up
    front (git itself waits for a 401, so a public repository would prove nothing); then, for
    a repository, `git ls-remote` through the bundle."""
    basic = _helper_credential(url, bundle, context)
    answer = http_get(url.rstrip("/") + "/info/refs", context, basic=basic,
                      params={"service": "git-upload-pack"},
                      headers={"User-Agent": "git/2 (connc check)"})  # hosts serve git/ agents
    if answer.status not in (200, 404):
        return Result(False, status_failure(answer.status), url)
    if answer.status == 404 or not answer.headers.get("Content-Type", "").startswith(_UPLOAD_PACK):
        return Result(True, "credential accepted; the url is a path prefix, not a repository, "
                            "so access to a repository is not proven", url)
    listed = context.run(bundle, ["git", "ls-remote", url, "HEAD"])
    if listed.returncode != 0:
        return Result(False, "the service accepted the credential, but git ls-remote through the "
                             f"bundle failed: {_git_failure(listed.stderr)}", url)
    return Result(True, "git ls-remote through the bundle succeeded", url)


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
