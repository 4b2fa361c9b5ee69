"""Package-manager configs: maven settings.xml, npm's npmrc, pip's pip.conf."""

from __future__ import annotations

import base64
from urllib.parse import quote, urlsplit, urlunsplit

from connc.errors import RenderError
from connc.render import textformat as text
from connc.render.context import Output, Resolved

TYPES = frozenset({"packages"})


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
        username, password = resolved.user_password()
        for value in (username, password):
            # Maven expands ${...} in settings.xml and treats {...} as an encrypted password.
            if "${" in value or (value.startswith("{") and value.endswith("}")):
                raise RenderError(f"connection `{resolved.id}`: a value Maven would interpolate "
                                  f"(${{...}} or {{...}}); refused")
        server = ET.SubElement(servers, "server")
        ET.SubElement(server, "id").text = repository_id
        ET.SubElement(server, "username").text = username
        ET.SubElement(server, "password").text = password
        output.mask(password, username=username)
        output.record(resolved, "maven/settings.xml", repositoryId=repository_id)
    ET.indent(settings)
    xml = ET.tostring(settings, encoding="unicode", xml_declaration=False)
    output.files.add("maven/settings.xml", '<?xml version="1.0" encoding="UTF-8"?>\n' + xml + "\n")
    output.env["MAVEN_ARGS"] = f"--settings {output.path('maven/settings.xml')}"


def _npm(items: list[Resolved], output: Output) -> None:
    lines = []
    for resolved in items:
        parts = urlsplit(resolved.spec["url"])
        nerf = f"//{parts.netloc}{parts.path.rstrip('/')}/"  # npm's per-registry key prefix
        token = resolved.secret("token")
        if token:
            lines.append((nerf + ":_authToken", token))
            output.mask(token)
        else:
            username, password = resolved.user_password()
            encoded = base64.b64encode(password.encode()).decode()
            lines.append((nerf + ":username", username))
            lines.append((nerf + ":_password", encoded))
            output.mask(password, username=username)
        output.record(resolved, "npm/npmrc")
    registry = items[0].spec["url"]
    output.files.add("npm/npmrc", text.fill(
        "npmrc", "file", pipeline=text.comment(output.pipeline),
        registry=text.npmrc_value(registry), lines=text.join(
            text.fill("npmrc", "line", key=text.npmrc_key(key), value=text.npmrc_value(value))
            for key, value in lines)))
    output.env["NPM_CONFIG_USERCONFIG"] = output.path("npm/npmrc")


def _pip(items: list[Resolved], output: Output) -> None:
    urls = []
    for resolved in items:
        username, password = resolved.user_password()
        parts = urlsplit(resolved.spec["url"])
        userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
        urls.append(urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, "", "")))
        output.mask(password, username=username)
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
