"""Rules that JSON Schema cannot say, as plain functions without pydantic.

The pydantic models call them from their validators (for `connc validate`), and the
generated JSON Schemas name them (`x-connc-check`, `x-connc-rules`) so that `connc render`
applies the very same rules through `schema.check` without loading pydantic.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connc.findings import suggest
from connc.schema import connection_types
from connc.schema.connection_types import PLACEHOLDER
from connc.urls import SSH_USER, plain_http_refused, ssh_host


def control_character(text: str, allowed: str = "") -> str | None:
    """The first control character in `text` (other than `allowed`), described, or None.

    The one test connc applies wherever a value lands in a line-based format: git's
    credential protocol, a shell script, a git or ini config, $GITHUB_ENV, a kubeconfig.
    """
    for char in text:
        if (ord(char) < 0x20 or ord(char) == 0x7F) and char not in allowed:
            return "a newline" if char in "\r\n" else f"control character U+{ord(char):04X}"
    return None


def placeholders_left(spec: Mapping[str, Any]) -> list[str]:
    """The spec fields that still hold the text placeholder `connc new` wrote."""
    entry = connection_types.BY_NAME.get(str(spec.get("type")))
    written = entry.placeholders if entry is not None else {}
    left = [field for field, value in written.items() if spec.get(field) == value
            and isinstance(value, str) and (value == PLACEHOLDER or value.endswith(".invalid")
                                            or ".invalid/" in value or ".invalid:" in value
                                            or value.endswith(f"/{PLACEHOLDER}"))]
    identity = spec.get("identity")
    if isinstance(identity, Mapping) and identity.get("audience") == PLACEHOLDER:
        left.append("identity.audience")  # dotted: a field of `spec.identity`
    return left


class Violation(ValueError):
    """kind is the stable error type (url_invalid, url_insecure, ...); message is for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


# The kinds of a URL's violations: one finding code (CONNC107) in validate and render alike.
URL_VIOLATIONS = frozenset({"url_invalid", "url_insecure", "url_credentials"})

# A URL connc writes into a bundle has one spelling: every tool that reads it (git, curl,
# npm's WHATWG parser, Python's urllib, review) must take it for the same host, port and path.
# So the host is an ASCII host name or a canonical IP address, the port plain digits, and the
# path holds no dot segments, no backslash, and percent-escapes only for what cannot stand as
# it is (`_escape_problem`). Messages name what is wrong, never the value (a URL may hold a
# pasted secret).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|"
                   r"1[0-9][0-9]|[1-9]?[0-9])){3}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_ESCAPE = re.compile(r"%(?P<hex>[0-9A-Fa-f]{2})?")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _host_problem(host: str) -> str | None:
    """Why `host`, as written in a URL (IPv6 in brackets), is not one host for every tool."""
    if host.startswith("["):
        address = host[1:-1] if host.endswith("]") else ""
        if "%" in address:
            return "an IPv6 address with a zone (`%...`) names no host off this machine"
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return "is not an IPv6 address"
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return ("a host name is ASCII letters, digits and inner `-`, in dot-separated labels "
                "of 1 to 63 (an international name in its IDNA form, `xn--...`; no trailing dot)")
    # WHATWG URL parsers (npm, browsers) take a host ending in a number for an IPv4 address,
    # `127.1`, `0x7f000001` and `2130706433` all for 127.0.0.1; others take it for a name.
    if _NUMERIC_LABEL.fullmatch(labels[-1]) and not _IPV4.fullmatch(host):
        return "a numeric host must be an IPv4 address in dotted decimal (as 192.0.2.1)"
    return None


def _escape_problem(path: str) -> str | None:
    """Percent-escapes are for characters that cannot stand in a URL as they are (a space,
    a reserved character, the UTF-8 bytes of a non-ASCII one). Not for a control character
    (a tool that decodes the path would write it into a config line), `/` or `\\` (a path
    segment that tools split differently), `%` (a second decoding would read another URL), or
    a character that stands as it is (one spelling per URL)."""
    for match in _ESCAPE.finditer(path):
        if match["hex"] is None:
            return "a `%` that does not start a percent-escape (`%` and two hex digits)"
        char = chr(int(match["hex"], 16))
        if char < " " or char == "\x7f":
            return "a percent-escape of a control character"
        if char in "/\\%":
            return f"a percent-escape of `{char}`"
        if char in _UNRESERVED:
            return f"a percent-escape of `{char}`, which a URL writes as it is"
    return None


def _path_problem(path: str) -> str | None:
    segments = path.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        return "a `.` or `..` path segment (tools resolve it, review reads it as written)"
    if "" in segments[:-1]:
        return "an empty path segment (`//`)"
    return _escape_problem(path)


def _port_problem(port: str | None) -> str | None:
    if port is not None and (not _PORT.fullmatch(port) or int(port) > 65535):
        return "a port is a number from 1 to 65535, without leading zeros"
    return None


def check_url(value: str, schemes: tuple[str, ...]) -> None:
    if " " in value or control_character(value):
        # urlsplit silently drops tabs and newlines, but the value is used as written: in a git
        # config or a kubeconfig a newline would inject a line of its own.
        raise Violation("url_invalid", "must not contain spaces or control characters")
    if not value.isascii() or "\\" in value:
        raise Violation("url_invalid", "must be ASCII without backslashes (an international "
                                       "host in its IDNA form, `xn--...`; other characters "
                                       "percent-encoded)")
    wanted = " or ".join(schemes)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        # urllib's messages quote the bad host or port, and a URL may hold a pasted secret.
        raise Violation("url_invalid", f"must be an absolute URL with scheme {wanted}, "
                                       f"a valid host and port") from None
    if parts.scheme not in schemes + ("http",) or not parts.hostname:
        raise Violation("url_invalid", f"must be an absolute URL with scheme {wanted}")
    if plain_http_refused(parts.scheme, parts.hostname):
        raise Violation("url_insecure", "plain http:// is refused except on loopback hosts; "
                                        "use https://")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if parts.password is not None or (at and (parts.scheme != "ssh"
                                              or not SSH_USER.fullmatch(userinfo))):
        raise Violation("url_credentials", "must not carry credentials; they belong in "
                                           "`credential`")
    if "?" in value or "#" in value:
        raise Violation("url_invalid", "must not have a query or fragment")
    host, _colon, port = hostport.rpartition(":") if not hostport.endswith("]") \
        and ":" in hostport else (hostport, "", None)
    problem = _host_problem(host) or _port_problem(port) or _path_problem(parts.path)
    if problem:
        raise Violation("url_invalid", f"must name one host, port and path for every tool: "
                                       f"{problem}")


def check_registry(value: str) -> None:
    # docker config.json keys: "host[:port]" or Docker Hub's legacy "https://index.docker.io/v1/".
    if value.startswith(("https://", "http://")):
        check_url(value, ("https",))
        return
    shape = re.fullmatch(r"(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
                         r"(?P<path>/[A-Za-z0-9._/-]+)?", value)
    if shape is None:
        raise Violation("url_invalid", "must be host[:port] or an https:// URL")
    problem = (_host_problem(shape["host"]) or _port_problem(shape["port"])
               or _path_problem(shape["path"] or ""))
    if problem:
        raise Violation("url_invalid", f"must be host[:port] for every tool: {problem}")


# `expiresAt` as people write it (2027-03-01) or as sops rewrites it (2027-03-01T00:00:00Z).
# Python's fromisoformat alone also takes 20270301 and ISO week dates (2027-W09-1), which no
# other tool reading the file would take for the same day, so the shape is fixed first.
DATE_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                r"(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2}))?$")
_DATE = re.compile(DATE_PATTERN.replace("$", r"\Z"))


def parse_date(value: str) -> dt.date:
    """The day an `expiresAt` value names; raises Violation for anything else."""
    if not _DATE.match(value):
        raise Violation("date_invalid", "must be a date, YYYY-MM-DD (or the timestamp sops "
                                        "writes for it, YYYY-MM-DDT00:00:00Z)")
    try:
        return dt.datetime.fromisoformat(value).date() if "T" in value \
            else dt.date.fromisoformat(value)
    except ValueError:
        raise Violation("date_invalid", "is not a day of the calendar (YYYY-MM-DD)") from None


def check_date(value: str) -> None:
    parse_date(value)


# Value checks, by the name the schema gives them in `x-connc-check`.
VALUE_CHECKS: dict[str, Callable[[str], None]] = {
    "https-url": lambda value: check_url(value, ("https",)),
    "git-url": lambda value: check_url(value, ("https", "ssh")),
    "registry": check_registry,
    "date": check_date,
}


# Object rules, by the name the schema gives them in `x-connc-rules`. Each reads the document
# as written (YAML spelling) and returns the field to blame, or raises nothing.
def one_app_identifier(spec: dict[str, Any]) -> None:
    if (spec.get("clientId") is None) == (spec.get("appId") is None):
        raise Violation("one_of", "set exactly one of clientId or appId")


def ssh_needs_known_hosts(spec: dict[str, Any]) -> None:
    url, known_hosts = spec.get("url"), spec.get("knownHosts")
    if isinstance(url, str) and url.startswith("ssh://") and not (known_hosts or "").strip():
        raise Violation("missing", "an ssh:// url needs knownHosts (the server's host key to pin)")


def known_hosts_pin_own_host(spec: dict[str, Any]) -> None:
    """Every line of an ssh connection's knownHosts names exactly its own host.

    Each connection's host keys used to reach ssh for every host of the bundle, so one
    connection's knownHosts could pin an impostor's key (or `@cert-authority *`) for another
    connection's host. The writer now gives each connection a known_hosts file of its own;
    this rule makes the line itself wrong, so that a review sees it and no bundle carries it.
    Messages quote the host field only, never key material.
    """
    url, known_hosts = spec.get("url"), spec.get("knownHosts")
    if not (isinstance(url, str) and url.startswith("ssh://") and isinstance(known_hosts, str)):
        return
    try:
        host, port, name = ssh_host(url)
    except ValueError:
        return  # the url's own check reports it
    if not host:
        return
    pins = 0
    for number, line in enumerate(known_hosts.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if marker not in ("", "@cert-authority", "@revoked") or len(fields) < 3:
            raise Violation("known_hosts_malformed", f"knownHosts line {number} is not "
                                                     f"`[@cert-authority|@revoked] HOST KEYTYPE "
                                                     f"KEY`, as in ~/.ssh/known_hosts")
        for pattern in fields[0].split(","):
            problem = _foreign_pattern(pattern, host, port, name)
            if problem:
                what = f"`{marker}` line" if marker else "line"
                raise Violation("known_hosts_foreign", f"knownHosts {what} {number}: {problem}; "
                                f"a connection pins keys for its own host only ({name}), "
                                f"never for another connection's server")
        pins += marker != "@revoked"
    if not pins:
        raise Violation("missing", f"knownHosts holds no host key line for {name}")


def _foreign_pattern(pattern: str, host: str, port: int, name: str) -> str | None:
    """Why one comma-separated pattern of a known_hosts host field is not exactly `name`."""
    if pattern.startswith("|1|"):
        # Hashed (ssh-keygen -H): accepted only when it is the hash of this very host, which
        # is checkable; any other hash could name any host, and its name cannot be shown.
        return None if _hashes_to(pattern, name) else \
            f"a hashed host name that is not the hash of {name}"
    shown = f"`{pattern}`" if len(pattern) <= 100 and not control_character(pattern) \
        else "a host field"
    if pattern.startswith("!") or any(char in pattern for char in "*?"):
        return f"{shown} is a wildcard or negated pattern, which would pin other hosts too"
    bracketed = re.fullmatch(r"\[([^\]]+)\]:([0-9]{1,5})", pattern)
    pinned_host, pinned_port = (bracketed[1], int(bracketed[2])) if bracketed else (pattern, 22)
    if (pinned_host.lower(), pinned_port) != (host, port):
        return f"{shown} is not this connection's host"
    return None


def _hashes_to(pattern: str, name: str) -> bool:
    # Imported here: only a hashed entry needs them, and render's start-up pays for imports.
    import base64
    import binascii
    import hashlib
    import hmac

    try:
        salt, digest = (base64.b64decode(part, validate=True) for part in pattern[3:].split("|"))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def maven_needs_repository_id(spec: dict[str, Any]) -> None:
    if spec.get("format") == "maven" and not spec.get("repositoryId"):
        raise Violation("missing", "maven needs repositoryId (the <server> id)")


# An npm scope as npm names packages (`@scope/name`): lowercase and URL-safe, so that in an
# .npmrc key (`@scope:registry`) it needs no escaping and cannot end or split the key.
NPM_SCOPE_PATTERN = r"^@[a-z0-9~-][a-z0-9._~-]{0,213}$"


def npm_scopes_only_for_npm(spec: dict[str, Any]) -> None:
    if spec.get("npmScopes") is not None and spec.get("format") != "npm":
        raise Violation("conflict", "npmScopes is for format npm only")


def verify_or_skip_tls(spec: dict[str, Any]) -> None:
    if spec.get("insecureSkipTlsVerify") and spec.get("certificateAuthorityData"):
        raise Violation("conflict", "insecureSkipTlsVerify cannot be combined with "
                                    "certificateAuthorityData (kubectl refuses both)")


OBJECT_RULES: dict[str, Callable[[dict[str, Any]], None]] = {
    "one-app-identifier": one_app_identifier,
    "ssh-needs-known-hosts": ssh_needs_known_hosts,
    "known-hosts-pin-own-host": known_hosts_pin_own_host,
    "maven-needs-repository-id": maven_needs_repository_id,
    "npm-scopes-only-for-npm": npm_scopes_only_for_npm,
    "verify-or-skip-tls": verify_or_skip_tls,
}


# ---------------------------------------------------------------------------- secretless connections
# Connections that store no secret: render exchanges the CI job's OIDC ID token (spec
# `identity`) for a short-lived credential. Their `credential` holds only the seal.

# An OIDC audience as the services spell theirs: printable ASCII without spaces (it travels in
# a query string and a kubeconfig's argument list, both quoted by construction).
AUDIENCE_PATTERN = r"^[!-~]{1,255}$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"  # a CI variable's name
ROLE_ARN_PATTERN = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"


def secretless(spec: Mapping[str, Any]) -> bool:
    """Whether a connection stores no secret and render exchanges the job's identity for one."""
    return spec.get("type") in connection_types.SECRETLESS or (
        spec.get("type") == "kubernetes" and spec.get("auth") == "oidc")


def gitlab_needs_token_variable(identity: dict[str, Any]) -> None:
    if identity.get("provider") == "gitlab-ci" and not identity.get("tokenVariable"):
        raise Violation("missing", "provider gitlab-ci needs tokenVariable (the job's "
                                   "`id_tokens:` variable that holds the token)")


def oidc_settings_only_with_oidc(spec: dict[str, Any]) -> None:
    if spec.get("auth") != "oidc":
        if spec.get("identity") is not None or spec.get("refresh") is not None:
            raise Violation("conflict", "identity and refresh are for `auth: oidc` only")
        return
    if spec.get("identity") is None:
        raise Violation("missing", "`auth: oidc` needs identity (where render gets the job's "
                                   "ID token, and its audience)")
    if spec.get("insecureSkipTlsVerify"):
        # The ID token is a bearer any service of the same audience accepts: never to a server
        # nobody verified.
        raise Violation("conflict", "`auth: oidc` cannot be combined with "
                                    "insecureSkipTlsVerify: the job's identity goes only to a "
                                    "verified server")


def literal_audience(spec: dict[str, Any]) -> None:
    identity = spec.get("identity")
    if isinstance(identity, dict) and identity.get("audience") == "auto":
        raise Violation("audience_auto", "`identity.audience: auto` is for pypi-publish "
                                         "(the index names its audience); give the "
                                         "service's audience")


def gitlab_tokens_are_static(spec: dict[str, Any]) -> None:
    identity = spec.get("identity")
    if isinstance(identity, dict) and identity.get("provider") == "gitlab-ci" \
            and spec.get("refresh") == "exec":
        raise Violation("conflict", "`refresh: exec` needs a token that can be minted again, "
                                    "and GitLab CI gives one per job: use `refresh: static`")


def aws_partition_matches_region(spec: dict[str, Any]) -> None:
    arn, region = spec.get("roleArn"), spec.get("region")
    if not (isinstance(arn, str) and isinstance(region, str)):
        return
    partition = arn.split(":")[1] if arn.count(":") > 1 else ""
    expected = "aws-cn" if region.startswith("cn-") else \
        "aws-us-gov" if region.startswith("us-gov-") else "aws"
    if partition != expected:
        raise Violation("conflict", f"roleArn is in partition {partition or '?'}, but region "
                                    f"{region} is in {expected}")


OBJECT_RULES.update({
    "gitlab-needs-token-variable": gitlab_needs_token_variable,
    "oidc-settings-only-with-oidc": oidc_settings_only_with_oidc,
    "literal-audience": literal_audience,
    "gitlab-tokens-are-static": gitlab_tokens_are_static,
    "aws-partition-matches-region": aws_partition_matches_region,
})


# ---------------------------------------------------------------------------- GitHub App permissions
# Names and levels are GitHub's, from `data/github_app_permissions.json` (see its `source`): a
# name or level GitHub does not have would make it refuse the token request at render time, in
# the middle of a job; validate finds it on the pull request, and render refuses it the same way.

_PERMISSIONS_TABLE = Path(__file__).resolve().parents[1] / "data" / "github_app_permissions.json"


@functools.cache
def github_permission_levels() -> Mapping[str, tuple[str, ...]]:
    """Each GitHub App permission and the levels GitHub offers for it (read, write, admin).

    Read once, on first use: most pipelines ask for no permissions and pay nothing.
    """
    import json

    data = json.loads(_PERMISSIONS_TABLE.read_text(encoding="utf-8"))
    return {name: tuple(levels) for name, levels in data["permissions"].items()}


def github_permission_problem(name: str, level: str) -> tuple[str, str] | None:
    """(code, message) when GitHub has no permission `name`, or not at `level`; else None."""
    levels = github_permission_levels().get(name)
    if levels is None:
        return "CONNC210", (f"`{name}` is not a GitHub App permission"
                            f"{suggest(name, github_permission_levels())}")
    if level not in levels:
        offered = " or ".join(f"`{each}`" for each in levels)
        return "CONNC211", f"GitHub offers `{name}` as {offered}, not `{level}`"
    return None


def malformed_permission_message(where: str, name: str) -> str:
    """For a key that is not even shaped like a permission name (the model's pattern).

    The key is not quoted (anything could have been pasted there), but the near miss is, for
    the usual slips: `pull-requests`, `Contents`.
    """
    normalised = name.strip().lower().replace("-", "_").replace(" ", "_")
    return (f"`{where}` has a key that is not a GitHub App permission name (lowercase letters "
            f"and underscores){suggest(normalised, github_permission_levels())}")
