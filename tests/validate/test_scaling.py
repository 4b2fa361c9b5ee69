"""validate does work linear in the number of findings.

A pull request can write a members.yaml of a megabyte with a finding on every line. Each
finding looks up its position and a "did you mean" among the repository's names: when either
scanned all of them, 45,000 bad lines took minutes (quadratic). Now both are indexed once.
The test counts the work (mapping entries read, names compared), not seconds: a loaded
machine changes seconds, not counts.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
from yaml.nodes import MappingNode, Node, SequenceNode

from connc import documents
from connc.validate.run import validate
from kit.build import make_repo, write

SIZE = 3_000


def _members(size: int) -> str:
    # Every user has the GitHub account of the first (a position in `users` for each), and a
    # team lists as many names that are near misses of users (a suggestion among them all).
    users = "".join(f"  user{i}: {{github: shared}}\n" for i in range(size))
    members = "".join(f"      - usr{i}\n" for i in range(size))
    return (f"apiVersion: connc/v1\nkind: Members\nusers:\n{users}"
            f"teams:\n  platform:\n    members:\n{members}")


class _Entries(list):  # type: ignore[type-arg]
    """A mapping node's (key, value) pairs, counting how often they are read through."""

    reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().__iter__()

    def __reversed__(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().__reversed__()


def test_each_finding_costs_the_same_however_many_there_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path / "repo")
    write(root, "members.yaml", _members(SIZE))
    mappings: list[_Entries] = []
    parse = documents.parse

    def counting_parse(text: str) -> documents.Document:
        document = parse(text)
        pending: list[Node] = [document.root]
        while pending:
            node = pending.pop()
            if isinstance(node, MappingNode):
                node.value = _Entries(node.value)
                mappings.append(node.value)
                pending += [child for pair in node.value for child in pair]
            elif isinstance(node, SequenceNode):
                pending += node.value
        for entries in mappings:
            entries.reads = 0  # from here on: the checks and their findings
        return document

    compared: list[int] = []
    compare = difflib.get_close_matches

    def counting_compare(word: str, possibilities: Any, n: int, cutoff: float) -> list[str]:
        compared.append(len(possibilities))
        return compare(word, possibilities, n=n, cutoff=cutoff)

    monkeypatch.setattr(documents, "parse", counting_parse)
    monkeypatch.setattr(difflib, "get_close_matches", counting_compare)
    report = validate(root)

    assert sorted({f.code for f in report.findings}) == ["CONNC206", "CONNC214"]
    assert len(report.findings) == 2 * SIZE - 1
    assert report.findings[-1].message.endswith(f"did you mean `user{SIZE - 1}`?")
    # Each mapping is read once more at most (its index), not once for each finding in it;
    # each suggestion compares a few names, not every user.
    assert max(entries.reads for entries in mappings) <= 1
    assert len(compared) == SIZE and max(compared) <= 16
