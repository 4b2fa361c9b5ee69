"""The bundle's `env` file, and the same settings for $GITHUB_ENV. Paths only, never a secret."""

from __future__ import annotations

import os

from connc.render import textformat as text
from connc.render.context import Output

GIT_INCLUDE = "connc:git-include"  # not a variable: becomes GIT_CONFIG_KEY_n/VALUE_n


def env_file(output: Output) -> str:
    include = output.env.get(GIT_INCLUDE)
    git_include = text.fill("env.sh", "git-include", path=text.shell_quote(include)) \
        if include is not None else text.Quoted("")
    exports = text.join(text.fill("env.sh", "export", name=text.identifier(name),
                                  value=text.shell_quote(value))
                        for name, value in sorted(output.env.items()) if name != GIT_INCLUDE)
    return text.fill("env.sh", "file", pipeline=text.comment(output.pipeline),
                     bundle=text.shell_quote(output.out), git_include=git_include,
                     exports=exports)


def github_env_lines(output: Output, environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """NAME=value lines for $GITHUB_ENV, appending to any git config already in the env."""
    lines = [f"{k}={v}" for k, v in sorted(output.env.items()) if k != GIT_INCLUDE]
    include = output.env.get(GIT_INCLUDE)
    if include:
        try:
            count = int(environ.get("GIT_CONFIG_COUNT", "0") or 0)
        except ValueError:
            count = 0
        lines += [f"GIT_CONFIG_KEY_{count}=include.path", f"GIT_CONFIG_VALUE_{count}={include}",
                  f"GIT_CONFIG_COUNT={count + 1}"]
    return lines
