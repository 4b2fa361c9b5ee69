"""Findings as text, JSON or GitHub workflow annotations. Findings go to stdout."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TextIO

from connc.findings import Finding, Severity, workflow_command


def resolve_format(name: str) -> str:
    if name == "auto":
        return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    return name


def summary(findings: list[Finding], files: int) -> dict[str, int]:
    errors = sum(f.severity is Severity.ERROR for f in findings)
    return {"files": files, "errors": errors, "warnings": len(findings) - errors}


def text(findings: list[Finding], files: int, out: TextIO) -> None:
    out.writelines(f"{f.path}:{f.line}:{f.column}: {f.severity.value} {f.code} {f.message}\n" for f in findings)
    out.write(_summary_line(findings, files))


def _summary_line(findings: list[Finding], files: int) -> str:
    counts = summary(findings, files)
    return (f"{counts['files']} files checked: {counts['errors']} errors, "
            f"{counts['warnings']} warnings\n")


def as_json(findings: list[Finding], files: int, out: TextIO) -> None:
    json.dump({"findings": [f.as_dict() for f in findings], "summary": summary(findings, files)},
              out, indent=2)
    out.write("\n")


def github(findings: list[Finding], files: int, out: TextIO) -> None:
    for f in findings:
        level = "error" if f.severity is Severity.ERROR else "warning"
        out.write(workflow_command(level, f.message, file=f.path, line=f.line, col=f.column,
                                   title=f.code))
    out.write(_summary_line(findings, files))


REPORTERS: dict[str, Callable[[list[Finding], int, TextIO], None]] = {
    "text": text,
    "json": as_json,
    "github": github,
}
