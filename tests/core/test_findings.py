"""connc.findings: "did you mean" in time that does not grow with the number of names."""

from __future__ import annotations

import difflib
from typing import Any

import pytest

from connc import findings
from connc.findings import suggest


@pytest.mark.parametrize(("word", "meant"), [
    ("alcie", "alice"),  # two letters swapped
    ("platfrom", "platform"),
    ("descripton", "description"),  # one missing
    ("gitlab-acm", "gitlab-acme"),
    ("contentz", "contents"),  # one changed
    ("userss", "users"),  # one added
    ("Platform", "platform"),  # case
    ("api_url", "apiUrl"),  # the separators of another spelling
])
@pytest.mark.parametrize("others", [0, 1_000])
def test_a_typo_is_found_among_few_or_many_names(word: str, meant: str, others: int) -> None:
    names = [meant, "bob", "release", *(f"name{i:04}" for i in range(others))]
    assert suggest(word, names) == f"; did you mean `{meant}`?"


@pytest.mark.parametrize("others", [0, 1_000])
def test_a_far_miss_gets_nothing(others: int) -> None:
    names = ["alice", "bob", *(f"name{i:04}" for i in range(others))]
    assert suggest("zzzzzz", names) == ""


def test_many_findings_against_many_names_compare_few(monkeypatch: pytest.MonkeyPatch) -> None:
    # 45,000 unknown team members against 45,000 users compared each with every user: hours.
    compared: list[int] = []
    compare = difflib.get_close_matches

    def counting(word: str, possibilities: Any, n: int, cutoff: float) -> list[str]:
        compared.append(len(possibilities))
        return compare(word, possibilities, n=n, cutoff=cutoff)

    monkeypatch.setattr(difflib, "get_close_matches", counting)
    users = {f"user{i}": {} for i in range(5_000)}
    hints = [suggest(f"usr{i}", users) for i in range(0, 5_000, 7)]
    assert hints[:3] == ["; did you mean `user0`?", "; did you mean `user7`?",
                         "; did you mean `user14`?"]
    assert max(compared) <= findings._SHORTLIST
    # The index is built once for the collection, not once per finding.
    assert sum(index.names is users for index in findings._NearMisses._recent) == 1


def test_a_changed_collection_is_indexed_again() -> None:
    users = {f"user{i}": {} for i in range(100)}
    assert suggest("carlo", users) == ""
    users["carol"] = {}
    assert suggest("carlo", users) == "; did you mean `carol`?"
