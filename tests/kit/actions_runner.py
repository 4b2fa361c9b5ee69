"""GitHub's runner, ported from actions/runner, to read connc's output back the way the runner
does: workflow commands (`ActionCommand.TryParseV2`, `UnescapeData`, `UnescapeProperty`) and
environment files (`FileCommandManager`'s `EnvFileKeyValuePairs`: `NAME=value` lines,
`NAME<<DELIMITER` heredocs, lines split at LF on Linux, empty lines skipped). Ported, not taken
from connc, so a test of connc's escaping cannot agree with itself."""

from __future__ import annotations

import re

DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))  # ActionCommand._escapeDataMappings
PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
COMMANDS = {"add-mask", "warning", "error", "notice", "debug", "group", "endgroup"}


def unescape(text: str, mappings: tuple[tuple[str, str], ...]) -> str:
    for escaped, token in mappings:  # one string.Replace per mapping, in the runner's order
        text = text.replace(escaped, token)
    return text


def parse_command(line: str) -> tuple[str, dict[str, str], str] | None:
    """ActionCommand.TryParseV2: (command, properties, data), or None for a plain line."""
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    space = info.find(" ")
    name = info if space < 0 else info[:space]
    if name not in COMMANDS:
        return None
    properties = {}
    if space > 0:
        for prop in info[space + 1:].strip().split(","):
            pair = [part for part in prop.split("=", 1) if part]
            if len(pair) == 2:
                properties[pair[0]] = unescape(pair[1], PROPERTY)
    return name, properties, unescape(message[end + 2:], DATA)


def log_lines(stdout: str) -> list[str]:
    """The runner reads a step's output with .NET's ReadLine: CR, LF and CRLF end a line."""
    return re.split(r"\r\n|\r|\n", stdout.removesuffix("\n"))


def parse_env_file(text: str) -> list[tuple[str, str]]:
    """EnvFileKeyValuePairs on Linux: every (name, value), in order; raises as the runner does."""
    result: list[tuple[str, str]] = []
    index = 0

    def read_line() -> tuple[str, str | None] | None:
        nonlocal index
        if index >= len(text):
            return None
        start, lf = index, text.find("\n", index)
        if lf < 0:
            index = len(text)
            return text[start:], None
        index = lf + 1
        return text[start:lf], "\n"

    while (read := read_line()) is not None:
        line = read[0]
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line.split("=", 1)
        elif heredoc >= 0 and (equals < 0 or heredoc < equals):
            name, delimiter = line.split("<<", 1)
            if not name or not delimiter:
                raise ValueError(f"Invalid format '{line}'. Name must not be empty and "
                                 f"delimiter must not be empty")
            start = end = index
            while True:
                following = read_line()
                if following is None:
                    raise ValueError(f"Invalid value. Matching delimiter not found '{delimiter}'")
                if following[0] == delimiter:
                    break
                if following[1] is None:
                    raise ValueError("Invalid value. EOF marker missing new line.")
                end = index - 1
            value = text[start:end] if end > start else ""
        else:
            raise ValueError(f"Invalid format '{line}'")
        result.append((name, value))
    return result
