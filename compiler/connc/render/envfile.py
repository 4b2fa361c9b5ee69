"""The bundle's `env` file, and the same settings for $GITHUB_ENV. Paths only, never a secret."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from connc.errors import RenderError
from connc.render import textformat as text
from connc.render.context import Output

GIT_INCLUDE = "connc:git-include"  # not a variable: becomes GIT_CONFIG_KEY_n/VALUE_n
BUNDLE = "CONNC_BUNDLE"  # the bundle's own path: `connc clean "$CONNC_BUNDLE"` after `eval`
# The inherited GIT_CONFIG_COUNT, as templates/env.sh takes it too: ASCII digits only, read
# in decimal as git reads it (`010` is 10), at most 9 of them once leading zeros are gone
# (so the next index is computed without overflow, in any shell).
_COUNT = re.compile(r"[0-9]+")
_COUNT_DIGITS = 9
COUNT_WARNING = ("GIT_CONFIG_COUNT is not a decimal number of at most 9 digits; the bundle's "
                 "git settings start at entry 0 and the inherited entries are not used")


def _variables(output: Output) -> list[tuple[str, str]]:
    """The plain variables of the env file, sorted, the bundle's path among them."""
    plain = {name: value for name, value in output.env.items() if name != GIT_INCLUDE}
    plain[BUNDLE] = str(output.out)
    return sorted(plain.items())


def env_file(output: Output) -> str:
    include = output.env.get(GIT_INCLUDE)
    git_include = text.fill("env.sh", "git-include", path=text.shell_quote(include)) \
        if include is not None else text.Quoted("")
    exports = text.join(text.fill("env.sh", "export", name=text.identifier(name),
                                  value=text.shell_quote(value))
                        for name, value in _variables(output))
    return text.fill("env.sh", "file", pipeline=text.comment(output.pipeline),
                     bundle=text.shell_quote(output.out), git_include=git_include,
                     exports=exports)


def git_config_index(environ: Mapping[str, str], warn: Callable[[str], None]) -> int:
    """The index of the bundle's GIT_CONFIG_KEY_n: the inherited count, or 0 with a warning.

    The count is text from the environment: it is matched, never evaluated (int() would take
    " 1_0" or non-ASCII digits, which git and the env file do not).
    """
    raw = environ.get("GIT_CONFIG_COUNT") or "0"  # unset or empty: no entries (as in env.sh)
    digits = raw.lstrip("0") or "0"
    if not _COUNT.fullmatch(raw) or len(digits) > _COUNT_DIGITS:
        warn(COUNT_WARNING)
        return 0
    return int(digits)


def github_env_lines(output: Output, environ: Mapping[str, str],
                     warn: Callable[[str], None]) -> list[str]:
    """The lines for $GITHUB_ENV, appending to any git config already in the environment.

    Each variable is a `NAME<<DELIMITER` heredoc with a fresh random delimiter, as the
    toolkit's `prepareKeyValueMessage` writes them: no value can end its own entry and start
    another, whatever it holds (the runner reads `NAME=value` to the end of the line).
    """
    variables = _variables(output)
    include = output.env.get(GIT_INCLUDE)
    if include:
        index = git_config_index(environ, warn)
        variables += [(f"GIT_CONFIG_KEY_{index}", "include.path"),
                      (f"GIT_CONFIG_VALUE_{index}", include),
                      ("GIT_CONFIG_COUNT", str(index + 1))]
    lines: list[str] = []
    for name, value in variables:
        # 128 random bits, as the toolkit's uuid; os.urandom costs render no import.
        delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
        if delimiter in value:  # never in practice; the toolkit checks it too
            raise RenderError(f"the value of {name} contains its $GITHUB_ENV delimiter")
        lines += [f"{text.identifier(name)}<<{delimiter}", value, delimiter]
    return lines
