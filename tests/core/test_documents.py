"""connc.yamldoc: one YAML document with 1-based positions, and every way a file can be bad."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connc.documents import MAX_DEPTH, MAX_NODES, Document, YamlProblem, decode, parse

NESTED = """\
apiVersion: connc/v1
metadata:
  id: github-acme
  teams: [platform, ops]
uses:
  - connection: github-acme
    repositories:
      - api
      - web
  - {connection: registry-prod, refresh: true}
"""


def problem(text: str) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        parse(text)
    return caught.value


# ---------------------------------------------------------------------------- positions


@pytest.mark.parametrize(("path", "key", "expected"), [
    (("apiVersion",), False, (1, 13)),
    (("apiVersion",), True, (1, 1)),
    (("metadata", "id"), False, (3, 7)),
    (("metadata", "id"), True, (3, 3)),
    (("metadata", "teams", 0), False, (4, 11)),
    (("metadata", "teams", 1), False, (4, 21)),
    (("uses", 0), False, (6, 5)),
    (("uses", 0, "connection"), False, (6, 17)),
    (("uses", 0, "repositories"), True, (7, 5)),
    (("uses", 0, "repositories", 1), False, (9, 9)),
    (("uses", 1, "connection"), False, (10, 18)),
    (("uses", 1, "refresh"), True, (10, 33)),
    (("uses", 1, "refresh"), False, (10, 42)),
])
def test_position_of_keys_and_values_is_one_based(path: tuple[str | int, ...], key: bool,
                                                    expected: tuple[int, int]) -> None:
    assert parse(NESTED).position(path, key=key) == expected


def test_position_of_a_missing_path_is_its_nearest_parent() -> None:
    document = parse(NESTED)
    assert document.position(("metadata", "owner")) == document.position(("metadata",))
    assert document.position(("uses", 7, "connection")) == document.position(("uses",))
    assert document.position(("metadata", "teams", "x")) == (4, 10)


def test_position_of_the_document_is_its_first_value() -> None:
    assert parse("\n\n# comment\nkind: Members\n").position(()) == (4, 1)


def test_position_of_a_key_written_as_a_number() -> None:
    document = parse("users:\n  42: {}\n")
    assert document.data == {"users": {"42": {}}}
    assert document.position(("users", "42"), key=True) == (2, 3)


class _CountedItems(list):  # type: ignore[type-arg]
    """A mapping node's (key, value) list that counts how often it is read through."""

    reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().__iter__()

    def __reversed__(self):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().__reversed__()


def test_each_mapping_is_read_once_however_many_positions_are_asked() -> None:
    # 45,000 findings in one mapping used to scan it 45,000 times (quadratic): now an index
    # of its keys is built on the first lookup, and each lookup is O(1).
    users = 2_000
    document = parse("users:\n" + "".join(f"  u{i}: {{bad: {i}}}\n" for i in range(users)))
    mapping = document.root.value[0][1]
    mapping.value = _CountedItems(mapping.value)
    _CountedItems.reads = 0
    positions = [document.position(("users", f"u{i}", "bad")) for i in range(users)]
    assert positions == [(i + 2, 12 + len(str(i))) for i in range(users)]
    assert _CountedItems.reads == 1


def test_the_last_of_duplicate_keys_has_the_position() -> None:
    document = parse("a: 1\nb: 2\na: 3\n")
    assert document.data == {"a": 3, "b": 2}
    assert document.position(("a",)) == (3, 4)


def test_a_document_pickles_without_its_index() -> None:
    import pickle

    document = parse(NESTED)
    before = document.position(("uses", 1, "refresh"))
    copy = pickle.loads(pickle.dumps(document))
    assert copy.position(("uses", 1, "refresh")) == before


# ---------------------------------------------------------------------------- values


def test_scalars_become_python_values_and_dates_stay_text() -> None:
    data = parse(
        "int: 4242\nhex: 0x1f\nunderscored: 1_000\nfloat: 1.5\nyes: true\nno: off\n"
        "null: ~\nquoted: '4242'\ndate: 2027-03-01\nstamp: 2027-03-01T00:00:00Z\n"
    ).data
    assert data == {"int": 4242, "hex": 31, "underscored": 1000, "float": 1.5, "yes": True,
                    "no": False, "null": None, "quoted": "4242", "date": "2027-03-01",
                    "stamp": "2027-03-01T00:00:00Z"}


def test_non_string_keys_become_strings() -> None:
    assert parse("1: a\ntrue: b\n~: c\n").data == {"1": "a", "true": "b", "~": "c"}


def test_aliases_expand_to_copies() -> None:
    assert parse("a: &x [1, 2]\nb: *x\n").data == {"a": [1, 2], "b": [1, 2]}


# ---------------------------------------------------------------------------- duplicate keys


def test_duplicate_keys_are_reported_at_the_repeat_and_the_last_value_kept() -> None:
    document = parse("kind: Members\nusers:\n  bob: {}\n  alice: {}\n  bob: {name: B}\n")
    assert document.duplicate_keys == [("bob", 5, 3)]
    assert document.data["users"]["bob"] == {"name": "B"}
    # A finding about the value must point at the value that was kept.
    assert document.position(("users", "bob", "name")) == (5, 15)


def test_duplicate_keys_in_flow_mappings_and_nested_lists() -> None:
    document = parse("uses:\n  - {connection: a, connection: b}\n")
    assert document.duplicate_keys == [("connection", 2, 21)]
    assert document.data == {"uses": [{"connection": "b"}]}


def test_no_duplicates_in_a_clean_document() -> None:
    assert parse(NESTED).duplicate_keys == []


# ---------------------------------------------------------------------------- bad documents


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n\n  # another\n"])
def test_empty_files(text: str) -> None:
    assert problem(text).code == "CONNC004"


def test_several_documents_point_at_the_second() -> None:
    found = problem("kind: Members\n---\nkind: Pipeline\n")
    assert (found.code, found.line, found.column) == ("CONNC005", 3, 1)


def test_one_document_with_explicit_markers_is_fine() -> None:
    assert parse("---\nkind: Members\n...\n").data == {"kind": "Members"}


def test_syntax_error_points_at_its_line_and_column() -> None:
    found = problem("metadata:\n  id: x\n  name: [unclosed\nkind: y\n")
    assert found.code == "CONNC001"
    assert found.line == 4
    assert "[unclosed" not in found.message


@pytest.mark.parametrize(("text", "line", "column"), [
    ("a: 1\nb: x\x07y\n", 2, 5),
    ("a: 1\r\nb: 2\r\nc: \x00\n", 3, 4),  # CRLF: one break
    ("a: 1\rb: \x01\n", 2, 4),  # CR alone: a break, as editors and libyaml count
    ("a: é😀\nb: 'x\x08'\n", 2, 6),  # libyaml counts bytes; the column counts characters
    ("a: 1  # \x1b[31m\n", 1, 9),
    ("a: \x9f\n", 1, 4),
    ("a: \ufffe\n", 1, 4),
])
def test_a_character_yaml_forbids_is_reported_at_its_own_position(text: str, line: int,
                                                                   column: int) -> None:
    found = problem(text)
    assert (found.code, found.line, found.column) == ("CONNC001", line, column)
    [char] = [c for c in text if not c.isprintable() and c not in "\r\n"]
    assert found.message.startswith(f"U+{ord(char):04X} is a character YAML does not allow")


def test_tab_indentation_gets_a_hint() -> None:
    found = problem("metadata:\n\tid: x\n")
    assert (found.code, found.line) == ("CONNC001", 2)
    assert "tab" in found.message


def test_alias_bomb_is_bounded() -> None:
    # Nine levels of ten aliases each: a billion values if expanded, a few bytes on disk.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    found = problem("\n".join(lines) + "\n")
    assert found.code == "CONNC009"
    assert str(MAX_NODES) in found.message


def test_many_aliases_below_the_bound_are_fine() -> None:
    text = "a: &a [1, 2, 3]\nb: [" + ", ".join(["*a"] * 100) + "]\n"
    assert len(parse(text).data["b"]) == 100


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "&a [1, [2, *a]]\n"])
def test_recursive_alias_is_a_problem_not_a_crash(text: str) -> None:
    assert problem(text).code == "CONNC009"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000])
def test_deep_nesting_is_a_problem_not_a_crash(depth: int) -> None:
    assert problem("a: " + "[" * depth + "]" * depth + "\n").code == "CONNC001"


def test_nesting_to_the_bound_is_fine() -> None:
    depth = MAX_DEPTH - 1  # the root mapping is one level
    assert isinstance(parse("a: " + "[" * depth + "]" * depth + "\n"), Document)


# ---------------------------------------------------------------------------- bytes


def test_bom_is_stripped_and_reported() -> None:
    text, had_bom = decode(b"\xef\xbb\xbfkind: Members\n")
    assert (text, had_bom) == ("kind: Members\n", True)
    assert parse(text).data == {"kind": "Members"}


def test_plain_utf8_has_no_bom() -> None:
    assert decode("name: Zoë\n".encode()) == ("name: Zoë\n", False)


def test_non_utf8_points_at_its_line() -> None:
    with pytest.raises(YamlProblem) as caught:
        decode(b"kind: Members\nusers:\n  zo\xeb: {}\n")
    assert (caught.value.code, caught.value.line) == ("CONNC010", 3)
    assert "byte 25" in caught.value.message


def test_utf16_is_not_utf8() -> None:
    with pytest.raises(YamlProblem) as caught:
        decode("kind: Members\n".encode("utf-16"))
    assert caught.value.code == "CONNC010"


# ---------------------------------------------------------------------------- hidden breaks


def hidden(raw: bytes) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        decode(raw)
    return caught.value


@pytest.mark.parametrize("char", ["\u0085", "\u2028", "\u2029"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_hidden_line_break_is_refused_at_its_own_position(char: str, newline: str) -> None:
    # Python's splitlines() also breaks at these (and at \x1c, \x0c): an editor does not.
    text = newline.join(["kind: Pipeline", "metadata:  # \x1c\x0c",
                         f"  id: x  # moved…{char}  owner: bob", ""])
    found = hidden(text.encode())
    assert (found.code, found.line, found.column) == ("CONNC015", 3, 18)
    assert f"U+{ord(char):04X}" in found.message


def test_the_position_after_a_byte_order_mark_counts_as_other_findings_do() -> None:
    found = hidden("\ufeffa: 1  # x\u2029\n".encode())
    assert (found.line, found.column) == (1, 10)


def test_the_first_hidden_break_is_named() -> None:
    found = hidden("a: 1\nb: 2 \u2028 \x85\n".encode())
    assert (found.line, found.column, "LS" in found.message) == (2, 6, True)


@pytest.mark.parametrize("text", ["a: …\n", "a: — ’ “x”\n", "a: Â\n", "a: \u2027\u202a\n"])
def test_neighbours_of_the_hidden_breaks_are_text(text: str) -> None:
    # Their UTF-8 shares the lead bytes (E2 80, C2) that make the reader look closer.
    assert decode(text.encode()) == (text, False)


@given(st.text(st.characters(blacklist_characters="\x85\u2028\u2029",
                             blacklist_categories=("Cs",))))
def test_text_without_them_decodes_unchanged(text: str) -> None:
    assert decode(text.encode()) == (text.removeprefix("\ufeff"), text.startswith("\ufeff"))
