"""Git credentials for every git-type connection: a credential helper that knows URL paths,
the same script as GIT_ASKPASS, and an ssh key with pinned host keys for ssh:// remotes.

Why a helper and not only GIT_ASKPASS: askpass prompts carry just scheme and host, so two
connections on one host (two organisations) could not be told apart. git's credential
protocol sends the path too when `credential.useHttpPath` is set; the longest prefix wins.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from urllib.parse import urlsplit

from connc.errors import RenderError
from connc.render import textformat as text
from connc.render.context import Output, Resolved

TYPES = frozenset({"github-app", "gitlab", "gitlab-self-hosted", "codeup", "bitbucket", "git"})


@dataclasses.dataclass(frozen=True)
class Entry:
    connection: str
    prefix: str  # scheme://host[:port][/path], no trailing slash
    username: str
    password: str
    expires_epoch: int | None
    expires_text: str | None
    refresh: bool


def _prefix(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path.strip("/")
    return f"{parts.scheme}://{host}/{path}" if path else f"{parts.scheme}://{host}"


def _user_and_secret(resolved: Resolved) -> tuple[str, str]:
    # Each host's username convention for tokens.
    if resolved.type == "github-app":
        if resolved.token is None:
            raise RenderError(f"connection `{resolved.id}`: no installation token was minted")
        return "x-access-token", resolved.token.reveal()
    if resolved.type in ("gitlab", "gitlab-self-hosted"):
        return resolved.secret("username") or "oauth2", resolved.required("token")[0]
    if resolved.type == "bitbucket" and resolved.secret("token"):
        return "x-token-auth", resolved.required("token")[0]
    return resolved.user_password()


def write(items: list[Resolved], output: Output) -> None:
    https = [r for r in items if not _is_ssh(r)]
    ssh = [r for r in items if _is_ssh(r)]
    if https:
        _write_https(https, output)
    if ssh:
        _write_ssh(ssh, output)


def _is_ssh(resolved: Resolved) -> bool:
    return resolved.type == "git" and str(resolved.spec["url"]).startswith("ssh://")


def _write_https(items: list[Resolved], output: Output) -> None:
    entries = []
    for resolved in items:
        username, password = _user_and_secret(resolved)
        if ":" in username:
            raise RenderError(f"connection `{resolved.id}`: the username contains ':'; refused")
        expires = resolved.token_expires_at
        entries.append(Entry(
            connection=resolved.id,
            prefix=_prefix(resolved.spec["url"]),
            username=username,
            password=password,
            expires_epoch=int(expires.timestamp()) if expires else None,
            expires_text=expires.isoformat().replace("+00:00", "Z") if expires else None,
            refresh=bool(resolved.use.get("refresh")),
        ))
        output.mask(password, username=username)
        output.record(resolved, "git/askpass", "git/config")
        if resolved.type == "github-app":
            from connc.render.refresh import write_state

            write_state(resolved, output)
    _refuse_duplicate_prefixes(entries)
    # Longest prefix first: the shell `case` takes the first pattern that matches.
    entries.sort(key=lambda e: len(e.prefix), reverse=True)
    askpass = output.path("git/askpass")
    output.files.add("git/askpass", text.fill(
        "askpass.sh", "file", pipeline=text.shell_quote(output.pipeline),
        cases=text.join(_case(entry, output) for entry in entries)), executable=True)
    # "!" makes git run the helper through the shell as written; without it git takes a
    # quoted path for a helper name and runs `git credential-'/path'`, which does not exist.
    helper = text.git_quote("!" + text.shell_quote(askpass))
    output.files.add("git/config", text.fill(
        "gitconfig", "file", pipeline=text.comment(output.pipeline), sections=text.join(
            text.fill("gitconfig", "section", prefix=text.git_quote(prefix), helper=helper)
            for prefix in sorted({e.prefix for e in entries}))))
    output.env["GIT_ASKPASS"] = askpass
    output.env["GIT_TERMINAL_PROMPT"] = "0"
    output.env["connc:git-include"] = output.path("git/config")


def _case(entry: Entry, output: Output) -> text.Quoted:
    """The askpass `case` arm that answers for one URL prefix."""
    connection = text.shell_quote(entry.connection)
    if entry.refresh:
        body = text.fill("askpass.sh", "refresh", python=text.shell_quote(sys.executable),
                         bundle=text.shell_quote(output.out), connection=connection)
    else:
        expiry = text.Quoted("")
        if entry.expires_epoch is not None:
            expiry = text.fill("askpass.sh", "expiry", epoch=text.number(entry.expires_epoch),
                               connection=connection,
                               expires=text.shell_quote(entry.expires_text))
        body = text.join([expiry, text.fill("askpass.sh", "emit",
                                            username=text.shell_quote(entry.username),
                                            password=text.shell_quote(entry.password))])
    prefix = text.shell_quote(entry.prefix)
    return text.fill("askpass.sh", "case", prefix=prefix, body=body)


def _refuse_duplicate_prefixes(entries: list[Entry]) -> None:
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.prefix in seen:
            raise RenderError(f"connections `{seen[entry.prefix]}` and `{entry.connection}` both "
                              f"cover {entry.prefix}; git could not tell which to use. Give one "
                              f"a longer url path prefix, or use only one in this pipeline")
        seen[entry.prefix] = entry.connection


def _write_ssh(items: list[Resolved], output: Output) -> None:
    command = ["ssh", "-F", "/dev/null", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={output.path('git/ssh/known_hosts')}"]
    known_hosts = []
    for resolved in items:
        key = resolved.required("sshPrivateKey")[0]
        relpath = f"git/ssh/{resolved.id}.key"
        output.files.add(relpath, key if key.endswith("\n") else key + "\n")
        output.mask(key)
        command += ["-i", output.path(relpath)]
        known_hosts.append(str(resolved.spec.get("knownHosts") or "").strip())
        output.record(resolved, relpath, "git/ssh/known_hosts")
    output.files.add("git/ssh/known_hosts", "\n".join(known_hosts) + "\n")
    output.env["GIT_SSH_COMMAND"] = shlex.join(command)
