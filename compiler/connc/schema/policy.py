"""Rules that JSON Schema cannot say, as plain functions without pydantic.

The pydantic models call them from their validators (for `connc validate`), and the
generated JSON Schemas name them (`x-connc-check`, `x-connc-rules`) so that `connc render`
applies the very same rules through `schema.check` without loading pydantic.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


def control_character(text: str, allowed: str = "") -> str | None:
    """The first control character in `text` (other than `allowed`), described, or None.

    The one test connc applies wherever a value lands in a line-based format: git's
    credential protocol, a shell script, a git or ini config, $GITHUB_ENV, a kubeconfig.
    """
    for char in text:
        if (ord(char) < 0x20 or ord(char) == 0x7F) and char not in allowed:
            return "a newline" if char in "\r\n" else f"control character U+{ord(char):04X}"
    return None


class Violation(ValueError):
    """kind is the stable error type (url_invalid, url_insecure, ...); message is for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, schemes: tuple[str, ...]) -> None:
    if " " in value or control_character(value):
        # urlsplit silently drops tabs and newlines, but the value is used as written: in a git
        # config or a kubeconfig a newline would inject a line of its own.
        raise Violation("url_invalid", "must not contain spaces or control characters")
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
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise Violation("url_insecure", "plain http:// is refused except on loopback hosts; "
                                        "use https://")
    # In ssh://git@host/... the user is the login name every git host expects, not a secret.
    if parts.password or (parts.username and parts.scheme != "ssh"):
        raise Violation("url_credentials", "must not carry credentials; they belong in "
                                           "`credential`")
    if parts.query or parts.fragment:
        raise Violation("url_invalid", "must not have a query or fragment")


def check_registry(value: str) -> None:
    # docker config.json keys: "host[:port]" or Docker Hub's legacy "https://index.docker.io/v1/".
    if value.startswith(("https://", "http://")):
        check_url(value, ("https",))
    elif not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]+)?", value):
        raise Violation("url_invalid", "must be host[:port] or an https:// URL")


# Value checks, by the name the schema gives them in `x-connc-check`.
VALUE_CHECKS: dict[str, Callable[[str], None]] = {
    "https-url": lambda value: check_url(value, ("https",)),
    "git-url": lambda value: check_url(value, ("https", "ssh")),
    "registry": check_registry,
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


def maven_needs_repository_id(spec: dict[str, Any]) -> None:
    if spec.get("format") == "maven" and not spec.get("repositoryId"):
        raise Violation("missing", "maven needs repositoryId (the <server> id)")


def verify_or_skip_tls(spec: dict[str, Any]) -> None:
    if spec.get("insecureSkipTlsVerify") and spec.get("certificateAuthorityData"):
        raise Violation("conflict", "insecureSkipTlsVerify cannot be combined with "
                                    "certificateAuthorityData (kubectl refuses both)")


OBJECT_RULES: dict[str, Callable[[dict[str, Any]], None]] = {
    "one-app-identifier": one_app_identifier,
    "ssh-needs-known-hosts": ssh_needs_known_hosts,
    "maven-needs-repository-id": maven_needs_repository_id,
    "verify-or-skip-tls": verify_or_skip_tls,
}
