"""Text outputs (shell scripts, git config, ini files) from sandboxed jinja2 templates.

Every value passes through a quoting filter for its target; StrictUndefined makes a missing
value an error instead of an empty string. Values with control characters never get here:
`Resolved.secret` refuses them first, and the filters refuse them again.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from connc.errors import RenderError
from connc.schema.policy import control_character


def _no_control(value: str, target: str) -> str:
    if control_character(value):
        raise RenderError(f"a value for {target} contains a control character; refused")
    return value


def shell_quote(value: object) -> str:
    """POSIX single quotes: nothing inside is special except the quote itself."""
    text = _no_control(str(value), "a shell script")
    return "'" + text.replace("'", "'\"'\"'") + "'"


def git_quote(value: object) -> str:
    """A git config value in double quotes (backslash and quote escaped)."""
    text = _no_control(str(value), "git config")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ini_value(value: object) -> str:
    """pip.conf: configparser keeps a value verbatim to the end of the line."""
    text = _no_control(str(value), "an ini file")
    if text != text.strip():
        raise RenderError("a value for an ini file has leading or trailing spaces; refused")
    return text


def npmrc_value(value: object) -> str:
    """.npmrc: npm's ini parser JSON-decodes a double-quoted value, so ; and # stay literal."""
    return json.dumps(_no_control(str(value), "an .npmrc file"))


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(shell=shell_quote, git=git_quote, ini=ini_value, npmrc=npmrc_value)
    return env


TEMPLATES = ("env.sh.j2", "askpass.sh.j2", "gitconfig.j2", "npmrc.j2", "pip.conf.j2")


@cache
def _template(name: str) -> Any:
    # Beside this module (not importlib.resources: render's start-up pays for every import).
    return _environment().from_string(
        (Path(__file__).parent / "templates" / name).read_text(encoding="utf-8"))


def warm_up() -> None:
    """Compile every template now: render calls this while sops decrypts in other processes."""
    for name in TEMPLATES:
        _template(name)


def render_template(name: str, **values: Any) -> str:
    return str(_template(name).render(**values))
