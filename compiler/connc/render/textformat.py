"""Text outputs (shell scripts, git config, ini files) from templates that take quoted values only.

A template file (`templates/`) holds named sections, each starting at a line `@@ NAME`; a
section's placeholders `@{name}` are filled by `fill` with `Quoted` values, which only the
quoting functions below make, each for its target (shell, git config, ini, npmrc). So a value
cannot reach an output unquoted: a plain `str` is refused, as are a missing value and an
unused one. Values are substituted in one pass and never re-read, so `@{...}` inside a value
is text. Repetition (one `case` arm per URL, one export per variable) is the writer's loop
over `fill`, joined with `join`.

Why not jinja2 (the spec's first choice): its import alone cost a third of render's start-up,
and render runs at every pipeline start; this module does the one thing render needed from it
and enforces the quoting, which a template engine leaves to each template's author.
Values with control characters never get here: `Resolved.secret` refuses them first, and
the quoting functions refuse them again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from connc.errors import RenderError
from connc.schema.policy import control_character

_TEMPLATES = Path(__file__).parent / "templates"
_SECTION = re.compile(r"^@@ ([a-z-]+)\n", re.MULTILINE)
# A placeholder alone on its line takes the whole line: the value brings its own newlines.
_PLACEHOLDER = re.compile(r"^@\{([a-z_]+)\}\n|@\{([a-z_]+)\}", re.MULTILINE)
_IDENTIFIER = re.compile(r"[A-Z_][A-Z0-9_]*")


class Quoted(str):
    """Text quoted for the format it goes into: the only kind of value `fill` accepts."""

    __slots__ = ()


def _no_control(value: str, target: str) -> str:
    if control_character(value):
        raise RenderError(f"a value for {target} contains a control character; refused")
    return value


def shell_quote(value: object) -> Quoted:
    """POSIX single quotes: nothing inside is special except the quote itself."""
    text = _no_control(str(value), "a shell script")
    return Quoted("'" + text.replace("'", "'\"'\"'") + "'")


def git_quote(value: object) -> Quoted:
    """A git config value in double quotes (backslash and quote escaped)."""
    text = _no_control(str(value), "git config")
    return Quoted('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def ini_value(value: object) -> Quoted:
    """pip.conf: configparser keeps a value verbatim to the end of the line."""
    text = _no_control(str(value), "an ini file")
    if text != text.strip():
        raise RenderError("a value for an ini file has leading or trailing spaces; refused")
    return Quoted(text)


# npm reads .npmrc with the `ini` package, then @npmcli/config expands `${NAME}` (and
# `${NAME?}`) from the environment in every key and every value; a run of backslashes before
# `${` escapes it (env-replace.js). This is its pattern, so `_npm_env_escape` marks exactly
# the text it would replace.
_NPM_ENV = re.compile(r"(?<!\\)(\\*)(\$\{[^${}?]+\??\})")
# A key that ini reads back unchanged when written bare. ini takes the text up to the first
# `=` and trims it, ends a bare key at `;` or `#` (a comment), treats `\` as an escape,
# JSON-decodes a key that starts and ends with a quote, and makes a key ending in `[]` an
# array; so bare is for printable ASCII without those, everything else is JSON-quoted.
_NPMRC_BARE_KEY = re.compile(r"[A-Za-z0-9/:._~%@!$&()*+,-]+")


def _npm_env_escape(text: str) -> str:
    """`text` with every `${...}` npm would expand escaped, so npm reads back `text` itself."""
    return _NPM_ENV.sub(lambda m: "\\" * (2 * len(m[1]) + 1) + m[2], text)


def npmrc_value(value: object) -> Quoted:
    """.npmrc value: npm's ini parser JSON-decodes a double-quoted value, so ; and # stay
    literal; `${...}` is escaped so that npm does not expand it from its environment.

    What npm would change whatever the quoting is refused: leading or trailing spaces (it
    trims the decoded value) and the words true, false, null (ini turns them into JSON values,
    quoted or not) and undefined (@npmcli/config's parseField does, for untyped keys such as
    `//host/:_authToken`).
    """
    text = _no_control(str(value), "an .npmrc file")
    if text != text.strip():
        raise RenderError("a value for an .npmrc file has leading or trailing spaces, which "
                          "npm would trim; refused")
    if text in ("true", "false", "null", "undefined"):
        raise RenderError(f"npm reads the .npmrc value `{text}` as the value {text}, not as "
                          f"text; refused")
    # ensure_ascii (the default) writes U+2028 and U+2029 as \u escapes: ini's line pattern
    # (`.` in JavaScript) would not match a line holding them, and the key would be lost.
    return Quoted(json.dumps(_npm_env_escape(text)))


def npmrc_key(value: object) -> Quoted:
    """.npmrc key (`//host/path/:_authToken`), written so that npm reads back exactly `value`.

    Bare when nothing in it is special to ini; else JSON-quoted, which ini decodes. `=` cannot
    stand in a key even quoted (ini splits the line at the first `=` before it unquotes), so
    it is written `\\u003d`: bare, `//host/x=y/:_authToken=TOKEN` reads as key `//host/x` with
    the rest, token included, as its value, which `npm config list` prints in clear.
    """
    text = _npm_env_escape(_no_control(str(value), "an .npmrc file"))
    if text.endswith("[]"):
        raise RenderError("an .npmrc key ending in `[]` would be read as a list; refused")
    if _NPMRC_BARE_KEY.fullmatch(text):
        return Quoted(text)
    return Quoted(json.dumps(text).replace("=", "\\u003d"))


def comment(value: object) -> Quoted:
    """Text in a comment line of any of the formats: one line, shown as it is."""
    return Quoted(_no_control(str(value), "a comment"))


def number(value: int) -> Quoted:
    return Quoted(str(int(value)))


def identifier(name: str) -> Quoted:
    """An environment variable name, as connc's writers choose them."""
    if not _IDENTIFIER.fullmatch(name):
        raise RenderError(f"{name!r} is not a variable name")  # a connc bug, not user input
    return Quoted(name)


def join(parts: Iterable[Quoted], separator: str = "") -> Quoted:
    parts = list(parts)
    if not all(isinstance(part, Quoted) for part in parts):
        raise TypeError("join takes quoted parts only")
    return Quoted(separator.join(parts))


@cache
def _sections(template: str) -> dict[str, str]:
    text = (_TEMPLATES / template).read_text(encoding="utf-8")
    pieces = _SECTION.split(text)
    # pieces: [before the first section (must be empty), name, body, name, body, ...]
    if pieces[0].strip():
        raise RenderError(f"template {template}: text before its first `@@` section")
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


def fill(template: str, section: str, **values: Quoted) -> Quoted:
    """Section `section` of `template` with each `@{name}` replaced by `values[name]`."""
    text = _sections(template)[section]
    used: set[str] = set()

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise RenderError(f"template {template}/{section} needs @{{{name}}}")  # a bug
        quoted = values[name]
        if not isinstance(quoted, Quoted):
            raise TypeError(f"@{{{name}}} in {template}/{section} is not quoted for its target")
        used.add(name)
        return quoted

    filled = _PLACEHOLDER.sub(value, text)
    unused = values.keys() - used
    if unused:
        raise TypeError(f"{template}/{section} has no @{{{sorted(unused)[0]}}}")
    return Quoted(filled)
