"""Git credentials for every git-type connection: a credential helper that knows URL paths,
the same script as GIT_ASKPASS, and for ssh:// remotes an ssh config with one block per
connection (its key, its pinned host keys, for its host and port only).

Why a helper and not only GIT_ASKPASS: askpass prompts carry just scheme and host, so two
connections on one host (two organisations) could not be told apart. git's credential
protocol sends the path too when `credential.useHttpPath` is set; the longest prefix wins.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from urllib.parse import unquote, urlsplit

from connc.errors import RenderError
from connc.render import textformat as text
from connc.render.context import Output, Resolved
from connc.schema import policy
from connc.urls import SSH_USER, host_port, ssh_host


@dataclasses.dataclass(frozen=True)
class Entry:
    connection: str
    prefix: str  # what the helper compares: scheme://host[:port][/path], path decoded
    section: str  # the git config subsection: the same, path as written in the url
    username: str
    password: str
    expires_epoch: int | None
    expires_text: str | None
    refresh: bool


def _prefix(url: str) -> tuple[str, str]:
    """(helper prefix, config subsection) of a connection url, in the form git compares.

    git sends a helper the host as the remote URL spells it (`host=Git.Example.com:443`) and
    the path URL-decoded; the askpass script lower-cases the host and drops the scheme's
    default port before comparing, so the prefixes here are written that way too. git's own
    config matching (urlmatch) normalises case and default ports itself.
    """
    parts = urlsplit(url)
    base = f"{parts.scheme}://{host_port(parts.hostname or '', parts.port, parts.scheme)}"
    path = parts.path.strip("/")
    if not path:
        return base, base
    return f"{base}/{unquote(path)}", f"{base}/{path}"


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
        prefix, section = _prefix(resolved.spec["url"])
        entries.append(Entry(
            connection=resolved.id,
            prefix=prefix,
            section=section,
            username=username,
            password=password,
            expires_epoch=int(expires.timestamp()) if expires else None,
            expires_text=expires.isoformat().replace("+00:00", "Z") if expires else None,
            refresh=bool(resolved.use.get("refresh")),
        ))
        output.mask(password, username=username, where=resolved.id)
        output.record(resolved, "git/askpass", "git/config")
        if resolved.type == "github-app":
            from connc.render.github_tokens import write_state

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
            for prefix in sorted({e.section for e in entries}))))
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


# What may stand unquoted in an ssh config `Match host` line: a host name or an IP literal
# (no pattern characters `*?!,`, no spaces, no quotes).
_SSH_HOST = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")


@dataclasses.dataclass(frozen=True)
class SshEntry:
    connection: str
    host: str
    port: int
    user: str | None
    key: str  # bundle-relative paths
    known_hosts: str


def _write_ssh(items: list[Resolved], output: Output) -> None:
    """One ssh config for every ssh connection, one block per connection.

    A single known_hosts and `-i` per key used to give every host every key and every
    connection's pins: one connection's knownHosts could vouch for an impostor on another's
    host. Now a block applies only to its connection's host and port, offers only its key,
    and trusts only its known_hosts file (whose lines `known-hosts-pin-own-host` holds to that
    host). ssh checks the host key before it offers a key, so a key reaches only a server
    that proved it holds a key pinned for that host:port.
    """
    entries: list[SshEntry] = []
    for resolved in items:
        entry = _ssh_entry(resolved)
        key = resolved.required("sshPrivateKey")[0]
        output.files.add(entry.key, key if key.endswith("\n") else key + "\n")
        output.mask(key, where=resolved.id)
        output.files.add(entry.known_hosts,
                         str(resolved.spec.get("knownHosts") or "").strip() + "\n")
        output.record(resolved, entry.key, entry.known_hosts, "git/ssh/config")
        entries.append(entry)
    _refuse_shared_ssh_hosts(entries)
    hosts = [entry.host for entry in entries]
    output.files.add("git/ssh/config", text.fill(
        "ssh_config", "file", pipeline=text.comment(output.pipeline),
        blocks=text.join(_ssh_block(entry, output, shared=hosts.count(entry.host) > 1)
                         for entry in entries)))
    output.env["GIT_SSH_COMMAND"] = shlex.join(["ssh", "-F", output.path("git/ssh/config")])


def _ssh_entry(resolved: Resolved) -> SshEntry:
    url = str(resolved.spec["url"])
    (host, port, _name), user = ssh_host(url), urlsplit(url).username
    if not _SSH_HOST.fullmatch(host):
        raise RenderError(f"connection `{resolved.id}`: the url's host cannot be written into an "
                          f"ssh config (a host name or IP address only); refused")
    if user is not None and not SSH_USER.fullmatch(user):
        raise RenderError(f"connection `{resolved.id}`: the url's user name cannot be written "
                          f"into an ssh config (letters, digits, `._-` only); refused")
    try:
        # Render checked it with the schema already; again here, because this writer is what
        # relies on it (a bundle never trusts a host key line for another connection's host).
        policy.known_hosts_pin_own_host(resolved.spec)
    except policy.Violation as violation:
        raise RenderError(f"connection `{resolved.id}`: {violation.message}") from None
    return SshEntry(resolved.id, host, port, user, f"git/ssh/{resolved.id}.key",
                    f"git/ssh/{resolved.id}.known_hosts")


def _refuse_shared_ssh_hosts(entries: list[SshEntry]) -> None:
    # ssh sees host and port, never the repository path: two connections on one host:port
    # could not be told apart (as two https connections with one prefix cannot).
    seen: dict[tuple[str, int], str] = {}
    for entry in entries:
        where = (entry.host, entry.port)
        if where in seen:
            raise RenderError(f"connections `{seen[where]}` and `{entry.connection}` are both ssh "
                              f"connections to {entry.host} port {entry.port}; ssh could not "
                              f"tell which key to use. Use only one of them in this pipeline")
        seen[where] = entry.connection


def _ssh_block(entry: SshEntry, output: Output, *, shared: bool) -> text.Quoted:
    """A connection's block. `Host` matches the host name only; when two connections share a
    host (on two ports), `Match ... exec` also compares ssh's port (%p), so that each gets
    only its own key and pins. exec runs through $SHELL, hence only when needed."""
    host = _ssh_word(entry.host)
    match = text.fill("ssh_config", "match-port", host=host, port=text.number(entry.port)) \
        if shared else text.fill("ssh_config", "match-host", host=host)
    user = text.fill("ssh_config", "user", user=_ssh_word(entry.user)) if entry.user \
        else text.Quoted("")
    return text.fill("ssh_config", "block", match=match, host=host,
                     port=text.number(entry.port), user=user,
                     key=_ssh_path(output.path(entry.key)),
                     known_hosts=_ssh_path(output.path(entry.known_hosts)))


def _ssh_word(value: str) -> text.Quoted:
    """A host or user name already held to `_SSH_HOST` / `SSH_USER`: nothing to quote."""
    if not (_SSH_HOST.fullmatch(value) or SSH_USER.fullmatch(value)):
        raise RenderError(f"{value!r} cannot stand in an ssh config")  # a connc bug
    return text.Quoted(value)


def _ssh_path(path: str) -> text.Quoted:
    """A bundle path as an ssh config argument: double-quoted, `%` doubled.

    ssh expands %-tokens in IdentityFile and UserKnownHostsFile (so `%%` is a literal `%`)
    and `${VAR}` in the latter; a quote or backslash would end or escape the quoting. OUT is
    the user's choice, so what cannot be written exactly is refused rather than guessed.
    """
    if policy.control_character(path) or any(c in path for c in '"\\') or "${" in path:
        raise RenderError(f"the bundle path {path!r} cannot be written into an ssh config "
                          f"(quotes, backslashes, `${{` and control characters cannot); choose "
                          f"another --out")
    return text.Quoted('"' + path.replace("%", "%%") + '"')
