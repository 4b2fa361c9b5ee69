"""docs/checks.md documents every finding code, with the title and severity that connc prints."""

from __future__ import annotations

import re
from pathlib import Path

from connc.findings import CODES

CHECKS = Path(__file__).resolve().parents[2] / "docs" / "checks.md"

# `## CONNC301 — title`, then, after a blank line, `**Severity:** error`.
SECTION = re.compile(r"^## (CONNC\d{3}) — (.+)\n\n\*\*Severity:\*\* (error|warning)$", re.MULTILINE)


def documented() -> dict[str, tuple[str, str]]:
    text = CHECKS.read_text(encoding="utf-8")
    sections = {code: (title, severity) for code, title, severity in SECTION.findall(text)}
    headings = re.findall(r"^## (CONNC\d{3})\b", text, re.MULTILINE)
    assert len(headings) == len(set(headings)), "a code is documented twice"
    assert set(headings) == set(sections), "every heading is followed by its severity line"
    return sections


def test_every_code_is_documented_and_nothing_else() -> None:
    assert set(documented()) == set(CODES)


def test_titles_and_severities_match_the_code_table() -> None:
    expected = {code: (title, severity.value) for code, (severity, title) in CODES.items()}
    assert documented() == expected


def test_codes_are_in_order() -> None:
    headings = re.findall(r"^## (CONNC\d{3})\b", CHECKS.read_text(encoding="utf-8"), re.MULTILINE)
    assert headings == sorted(headings)
