"""Package-manager configs: maven settings.xml, npm's npmrc, pip's pip.conf.

Each tool finds a credential by comparing a key derived from the URL it is about to fetch
with what the file holds, so connc derives the key the way the tool does, or the tool finds
nothing and gets a 401 (a url written `http://LocalHost:8080/` used to give the npmrc key
`//LocalHost:8080/`, which npm, having lower-cased the host, never looks up):

- npm: `//host[:port]/path/:_authToken` (and `:username`, `:_password`), the "nerf dart" of
  @npmcli/config (nerf-dart.js) and npm-registry-fetch (auth.js, which walks up the request
  URL's path): both take host and path from WHATWG `new URL()`, so the host is lower-cased
  (IDNA for non-ASCII), IPv4 numbers are read as the URL standard reads them, the scheme's
  default port is dropped, a backslash is `/`, `.` and `..` segments are resolved and a few path
  characters are percent-encoded. `npm_registry` does the same; tests compare it with npm's
  own nerf-dart.js. The connection's url is a directory (`/npm/private` is `/npm/private/`), as
  npm-registry-fetch treats a registry, and `registry=` is written in the same form, so that
  npm's own look-up for `npm whoami` or `npm publish` (the nerf dart of `registry`) finds it.
- pip: the credentials travel in the index URL itself, and pip gives them to the other URLs
  of that index (the files a simple page links to, often absolute) only when their netloc is
  the same text (network/auth.py, `_get_index_url`). Servers write links with their host
  lower-cased and without the default port; requests lower-cases the host of the index URL
  but keeps a written `:443`, so the index URL is written in the servers' form.
- maven: a `<server>` is found by its `<id>`, equal to the `<repository>`/`<mirror>` id of
  the POM or settings (`repositoryId`), never by URL: there is no URL to normalise.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from connc.errors import RenderError
from connc.render import textformat as text
from connc.render.context import Output, Resolved
from connc.urls import DEFAULT_PORTS


def write(items: list[Resolved], output: Output) -> None:
    by_format: dict[str, list[Resolved]] = {"maven": [], "npm": [], "pypi": []}
    for resolved in items:
        by_format[resolved.spec["format"]].append(resolved)
    if by_format["maven"]:
        _maven(by_format["maven"], output)
    if by_format["npm"]:
        _npm(by_format["npm"], output)
    if by_format["pypi"]:
        _pip(by_format["pypi"], output)


def _maven(items: list[Resolved], output: Output) -> None:
    import xml.etree.ElementTree as ET  # noqa: N817 - only maven needs it (start-up time)

    settings = ET.Element("settings", {
        "xmlns": "http://maven.apache.org/SETTINGS/1.0.0",
    })
    servers = ET.SubElement(settings, "servers")
    for resolved in items:
        repository_id = str(resolved.spec["repositoryId"])
        # ${...} and {...}, which Maven would interpolate, never get here: the credential
        # contract refuses them (credentials.field_problem), for every command alike.
        username, password = resolved.user_password()
        server = ET.SubElement(servers, "server")
        ET.SubElement(server, "id").text = repository_id
        ET.SubElement(server, "username").text = username
        ET.SubElement(server, "password").text = password
        output.mask(password, username=username, where=resolved.id)
        output.record(resolved, "maven/settings.xml", repositoryId=repository_id)
    ET.indent(settings)
    xml = ET.tostring(settings, encoding="unicode", xml_declaration=False)
    output.files.add("maven/settings.xml", '<?xml version="1.0" encoding="UTF-8"?>\n' + xml + "\n")
    output.env["MAVEN_ARGS"] = f"--settings {output.path('maven/settings.xml')}"


def canonical_host(parts: SplitResult) -> str:
    """`host[:port]` of a URL as the WHATWG URL standard serialises it (what npm compares,
    and how servers spell their own links): host percent-decoded, lower-cased, IDNA-encoded
    when not ASCII, an IPv4 address in dotted decimal, IPv6 compressed and bracketed, the
    scheme's default port dropped.
    """
    host = unquote(parts.hostname or "").lower()
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            host = f"[{host}]"
    else:
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                pass  # node refuses such a host too; the client then finds no credential
        host = _whatwg_ipv4(host) or host
    port = parts.port
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def _whatwg_ipv4(host: str) -> str | None:
    """The URL standard's IPv4 parser: `127.1`, `0x7f.0.0.1` and `2130706433` are 127.0.0.1."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", labels[-1]) or len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if re.fullmatch(r"0x[0-9a-f]*", label):
            numbers.append(int(label[2:] or "0", 16))
        elif re.fullmatch(r"0[0-7]+", label):
            numbers.append(int(label, 8))
        elif re.fullmatch(r"[0-9]+", label):
            numbers.append(int(label))
        else:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    address = numbers[-1] + sum(n << (8 * (3 - i)) for i, n in enumerate(numbers[:-1]))
    return str(ipaddress.IPv4Address(address))


# The URL standard's path percent-encode set (what `new URL()` encodes in a path), beyond
# controls and non-ASCII; `%` itself stays, as do `=`, `;`, `[`, `]`, `'`, `^` and `|`.
_PATH_ENCODE = frozenset(' "#<>?`{}')
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def _whatwg_path(path: str) -> str:
    """A special URL's path as `new URL()` serialises it (WHATWG URL, path state)."""
    segments: list[str] = []
    pieces = path.replace("\\", "/").split("/")[1:]  # a path starts with "/"
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        if piece.lower() in _DOUBLE_DOT:
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif piece.lower() in _SINGLE_DOT:
            if last:
                segments.append("")
        else:
            segments.append("".join(
                quote(char, safe="") if char in _PATH_ENCODE or not " " < char < "\x7f"
                else char for char in piece))
    return "/" + "/".join(segments)


# A registry given on npm's command line (`--registry URL`) goes through nopt's `url` type,
# legacy `url.parse().href`, which also escapes these three that `new URL()` keeps in a path;
# npm then looks the credential up under that spelling. Both spellings get the credential
# (the same path of the same server), so the url works in the npmrc and on the command line.
_LEGACY_ESCAPES = str.maketrans({"'": "%27", "^": "%5E", "|": "%7C"})


def npm_registry(url: str) -> tuple[str, str]:
    """(`registry=` value, nerf-dart key prefix) of a connection url, as npm derives them."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    directory = f"{canonical_host(parts)}{_whatwg_path(path)}"
    return f"{parts.scheme}://{directory}", f"//{directory}"


def _npm(items: list[Resolved], output: Output) -> None:
    lines = _npm_registries(items)
    seen: dict[str, str] = {}
    for resolved in items:
        nerf = npm_registry(resolved.spec["url"])[1]
        if nerf in seen:
            raise RenderError(f"connections `{seen[nerf]}` and `{resolved.id}` are both for "
                              f"the npm registry {nerf}; npm keeps one credential per registry")
        seen[nerf] = resolved.id
        token = resolved.secret("token")
        if token:
            fields = [(":_authToken", token)]
            output.mask(token, where=resolved.id)
        else:
            username, password = resolved.user_password()
            fields = [(":username", username),
                      (":_password", base64.b64encode(password.encode()).decode())]
            output.mask(password, username=username, where=resolved.id)
        for key in dict.fromkeys([nerf, nerf.translate(_LEGACY_ESCAPES)]):
            lines.extend((key + name, value) for name, value in fields)
        output.record(resolved, "npm/npmrc")
    output.files.add("npm/npmrc", text.fill(
        "npmrc", "file", pipeline=text.comment(output.pipeline), lines=text.join(
            text.fill("npmrc", "line", key=text.npmrc_key(key), value=text.npmrc_value(value))
            for key, value in lines)))
    output.env["NPM_CONFIG_USERCONFIG"] = output.path("npm/npmrc")


def _npm_registries(items: list[Resolved]) -> list[tuple[str, str]]:
    """Which registry npm asks for what: `@scope:registry=URL` for each scope a connection
    serves (`npmScopes`), and `registry=URL` for the first connection that names none, the
    default for every other package (npm's own default when all are scoped)."""
    default: list[tuple[str, str]] = []
    scoped: list[tuple[str, str]] = []
    serving: dict[str, str] = {}
    for resolved in items:
        registry = npm_registry(resolved.spec["url"])[0]
        scopes = resolved.spec.get("npmScopes") or []
        for scope in scopes:
            if scope in serving:
                raise RenderError(f"connections `{serving[scope]}` and `{resolved.id}` both "
                                  f"serve the npm scope {scope}; npm reads one registry a scope")
            serving[scope] = resolved.id
            scoped.append((f"{scope}:registry", registry))
        if not scopes and not default:
            default.append(("registry", registry))
    return default + scoped


def _pip(items: list[Resolved], output: Output) -> None:
    urls = []
    seen: dict[str, str] = {}
    for resolved in items:
        username, password = resolved.user_password()
        parts = urlsplit(resolved.spec["url"])
        # The host as the server spells its links (see the module's docstring); the path is
        # left as written: pip joins project names to it as it is, and servers may care.
        index = urlunsplit((parts.scheme, canonical_host(parts), parts.path, "", ""))
        if index.rstrip("/") in seen:
            raise RenderError(f"connections `{seen[index.rstrip('/')]}` and `{resolved.id}` "
                              f"are both for the index {index}; pip would use one "
                              f"credential for both")
        seen[index.rstrip("/")] = resolved.id
        userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
        urls.append(index.replace("://", f"://{userinfo}@", 1))
        output.mask(password, username=username, where=resolved.id)
        output.masks.add(userinfo)
        output.record(resolved, "pip/pip.conf")
    extra = text.Quoted("")
    if urls[1:]:
        extra = text.fill("pip.conf", "extra", urls=text.join(
            text.fill("pip.conf", "extra-url", url=text.ini_value(url)) for url in urls[1:]))
    output.files.add("pip/pip.conf", text.fill(
        "pip.conf", "file", pipeline=text.comment(output.pipeline),
        index_url=text.ini_value(urls[0]), extra=extra))
    output.env["PIP_CONFIG_FILE"] = output.path("pip/pip.conf")
