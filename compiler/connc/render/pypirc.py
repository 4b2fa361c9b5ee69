"""pypi/pypirc: one section per pypi-publish connection, with the upload token it minted.

twine reads it with `--config-file` (`twine upload --config-file "$CONNC_BUNDLE/pypi/pypirc"
-r ID`); the bundle's env stays paths only. Each section is named after its connection id,
and also `repositoryName` when set (`pypi` makes it twine's default, so `-r` can go).
"""

from __future__ import annotations

from connc.errors import RenderError
from connc.render import textformat as text
from connc.render.context import Output, Resolved


def write(items: list[Resolved], output: Output) -> None:
    from connc.identity.token import stamp

    sections: dict[str, Resolved] = {}
    parts = []
    for resolved in items:
        token = resolved.exchanged_value("token")
        output.mask(token, where=resolved.id)
        names = list(dict.fromkeys([resolved.id, *filter(None, [
            resolved.spec.get("repositoryName")])]))
        for name in names:
            if name in sections:
                raise RenderError(f"connections `{sections[name].id}` and `{resolved.id}` both "
                                  f"name the pypirc section {name}; twine reads one")
            sections[name] = resolved
            parts.append(text.fill("pypirc", "section", name=text.ini_value(name),
                                   url=text.ini_value(resolved.spec["url"]),
                                   token=text.ini_value(token)))
        expires = resolved.exchanged.expires_at if resolved.exchanged else None
        output.record(resolved, "pypi/pypirc", repository=str(resolved.spec["url"]),
                      sections=names, expiresAt=stamp(expires) if expires else None)
    output.files.add("pypi/pypirc", text.fill(
        "pypirc", "file", pipeline=text.comment(output.pipeline),
        names=text.join(text.fill("pypirc", "name", name=text.ini_value(name))
                        for name in sections),
        sections=text.join(parts)))
