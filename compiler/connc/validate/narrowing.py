"""Keyless checks of how a pipeline narrows a GitHub App token (spec 4.1).

Permission names and levels are GitHub's, from `data/github_app_permissions.json` (see its
`source`): a name or level GitHub does not have would make it refuse the token request at
render time, in the middle of a job; here it is found on the pull request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path

from connc.documents import Document
from connc.findings import Finding, finding, suggest
from connc.schema import models

_TABLE = Path(__file__).resolve().parents[1] / "data" / "github_app_permissions.json"


@functools.cache
def permission_levels() -> Mapping[str, tuple[str, ...]]:
    """Each GitHub App permission and the levels GitHub offers for it (read, write, admin).

    Read once, on first use: most pipelines ask for no permissions and pay nothing.
    """
    data = json.loads(_TABLE.read_text(encoding="utf-8"))
    return {name: tuple(levels) for name, levels in data["permissions"].items()}


def permission_problem(name: str, level: str) -> tuple[str, str] | None:
    """(code, message) when GitHub has no permission `name`, or not at `level`; else None."""
    levels = permission_levels().get(name)
    if levels is None:
        return "CONNC210", (f"`{name}` is not a GitHub App permission"
                            f"{suggest(name, permission_levels())}")
    if level not in levels:
        offered = " or ".join(f"`{each}`" for each in levels)
        return "CONNC211", f"GitHub offers `{name}` as {offered}, not `{level}`"
    return None


def malformed_name_message(where: str, name: str) -> str:
    """For a key that is not even shaped like a permission name (the model's pattern).

    The key is not quoted (anything could have been pasted there), but the near miss is, for
    the usual slips: `pull-requests`, `Contents`.
    """
    normalised = name.strip().lower().replace("-", "_").replace(" ", "_")
    return (f"`{where}` has a key that is not a GitHub App permission name (lowercase letters "
            f"and underscores){suggest(normalised, permission_levels())}")


def check_permissions(pipeline: models.Pipeline, document: Document,
                      relpath: str) -> list[Finding]:
    """CONNC210 at an unknown permission's name, CONNC211 at a level GitHub does not offer."""
    found = []
    for index, use in enumerate(pipeline.uses):
        for name, level in (use.permissions or {}).items():
            problem = permission_problem(name, level)
            if problem is None:
                continue
            code, message = problem
            path = ("uses", index, "permissions", name)
            line, column = document.position(path, key=code == "CONNC210")
            found.append(finding(relpath, line, column, code,
                                 f"`uses[{index}].permissions`: {message}"))
    return found
