"""`revisions._split_batch`, which cuts `git cat-file --batch`'s answer (read whole from its
spool) into views of the objects asked: for any answer and any list of object ids and sizes
it returns exactly the objects asked, each a view of the answer that covers no byte of a
header or of the newline after an object, or it raises UsageError. Never another
exception, never fewer objects, never an answer with a byte more or less taken as good.

Derandomized and bounded: the same examples every run, a second or two in all.
"""

from __future__ import annotations

from typing import cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connc.diff import revisions
from connc.errors import UsageError

FUZZ = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

# Object ids as git writes them (SHA-1 and SHA-256, in hex), and a few that are not.
_HEX_OIDS = st.sampled_from([40, 64]).flatmap(
    lambda n: st.text("0123456789abcdef", min_size=n, max_size=n).map(str.encode))
_OIDS = st.one_of(_HEX_OIDS, st.binary(max_size=8))
# Objects that look like the frame around them: headers, newlines, NULs, empty ones.
_PIECES = st.sampled_from([b"", b"\n", b"\0", b" blob ", b"blob 0\n", b"\n\n", b"missing\n",
                           b"a" * 40 + b" blob 3\n", b" tree 5\n", b"x: 1\n", b"\xff\xfe"])
_OBJECTS = st.one_of(st.binary(max_size=64),
                     st.lists(_PIECES, max_size=6).map(b"".join))


def _answer(listing: list[tuple[bytes, bytes]]) -> bytes:
    """git's answer to `cat-file --batch` for these (object id, bytes), in this order."""
    return b"".join(oid + b" blob %d\n" % len(data) + data + b"\n" for oid, data in listing)


def _split(answer: bytes | bytearray, oids: list[bytes],
           sizes: dict[bytes, int]) -> list[tuple[bytes, memoryview]] | None:
    """The objects cut from `answer`, or None when it is refused."""
    try:  # a bytearray too: cut as bytes are, and a test can change its frame afterwards
        return list(revisions._split_batch(cast(bytes, answer), oids, sizes,
                                           "git could not read"))
    except UsageError as refused:
        assert refused.message.startswith("git could not read: ")
        return None


@st.composite
def _listings(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """(object id, bytes) in the order asked; an id may come more than once (with its one
    content, as in git)."""
    contents = draw(st.dictionaries(_HEX_OIDS, _OBJECTS, min_size=1, max_size=6))
    order = draw(st.lists(st.sampled_from(sorted(contents)), min_size=1, max_size=8))
    return [(oid, contents[oid]) for oid in order]


@settings(FUZZ, max_examples=150)
@given(_listings())
def test_a_well_formed_answer_comes_out_exactly(listing: list[tuple[bytes, bytes]]) -> None:
    oids = [oid for oid, _data in listing]
    sizes = {oid: len(data) for oid, data in listing}
    answer = bytearray(_answer(listing))
    cut = _split(answer, oids, sizes)
    assert cut is not None
    assert [(oid, bytes(view)) for oid, view in cut] == listing
    assert all(view.obj is answer for _oid, view in cut)  # views of the answer, no copy
    # No view covers a byte of the frame: scrambled, every object reads the same.
    for at in _frame(listing):
        answer[at] ^= 0xFF
    assert set(_joints(listing)) <= set(_frame(listing))
    assert [bytes(view) for _oid, view in cut] == [data for _oid, data in listing]


def _frame(listing: list[tuple[bytes, bytes]]) -> list[int]:
    """Where the headers and the newline after each object are, in `_answer(listing)`."""
    frame, pos = [], 0
    for oid, data in listing:
        header = len(oid) + len(b" blob %d\n" % len(data))
        frame += range(pos, pos + header)
        pos += header + len(data)
        frame.append(pos)
        pos += 1
    return frame


def _joints(listing: list[tuple[bytes, bytes]]) -> list[int]:
    """Where each header's fields begin and end, and each object's newline, in
    `_answer(listing)`."""
    joints, pos = [], 0
    for oid, data in listing:
        size = len(b"%d" % len(data))
        joints += [pos, pos + len(oid), pos + len(oid) + 5, pos + len(oid) + 6,
                   pos + len(oid) + 6 + size - 1, pos + len(oid) + 6 + size]
        pos += len(oid) + 6 + size + 1 + len(data)
        joints.append(pos)
        pos += 1
    return joints


@st.composite
def _damaged(draw: st.DrawFn) -> tuple[bytes, list[bytes], dict[bytes, int]]:
    """An answer and what was asked, either of which may be anything: random bytes, a
    well-formed answer cut, lengthened or changed anywhere, another listing's answer, sizes
    that are not the objects'."""
    listing = draw(_listings())
    oids = [oid for oid, _data in listing]
    sizes = {oid: len(data) for oid, data in listing}
    answer = _answer(listing)
    how = draw(st.sampled_from(["random", "flip", "joint", "insert", "delete", "cut",
                                "append", "sizes", "oids", "order", "other", "missing",
                                "type"]))
    if how == "random":
        answer = draw(st.binary(max_size=300))
    elif how in ("flip", "joint", "insert", "delete", "cut"):
        # Anywhere, in the frame (a header or the newline after an object), or where a
        # header's fields meet; a byte changed is changed (never to itself).
        at = draw(st.sampled_from(_joints(listing)) if how == "joint" else st.one_of(
            st.integers(0, len(answer) - 1), st.sampled_from(_frame(listing)),
            st.sampled_from(_joints(listing))))
        byte = draw(st.integers(0, 255))
        answer = {"insert": answer[:at] + bytes([byte]) + answer[at:],
                  "delete": answer[:at] + answer[at + 1:],
                  "cut": answer[:at]}.get(
            how, answer[:at] + bytes([answer[at] ^ (byte or 1)]) + answer[at + 1:])
    elif how == "append":
        answer += draw(st.one_of(st.binary(min_size=1, max_size=20),
                                 _listings().map(_answer)))
    elif how == "sizes":
        sizes = {oid: draw(st.integers(0, 200)) for oid in sizes}
    elif how == "oids":
        oids = draw(st.lists(_OIDS, max_size=8))
        sizes = {oid: draw(st.integers(0, 200)) for oid in oids}
    elif how == "order":
        oids = draw(st.permutations(oids))
    elif how == "other":
        answer = _answer(draw(_listings()))
    elif how == "missing":  # git's line for an object it does not have
        at = draw(st.integers(0, len(listing) - 1))
        answer = _answer(listing[:at]) + listing[at][0] + b" missing\n" + _answer(
            listing[at + 1:])
    else:
        answer = answer.replace(b" blob ", draw(st.sampled_from(
            [b" tree ", b" commit ", b" blob  ", b" blob +", b" blob 0", b" Blob "])), 1)
    return answer, oids, sizes


@settings(FUZZ, max_examples=500)
@given(_damaged())
def test_any_answer_is_taken_whole_or_refused(
        case: tuple[bytes, list[bytes], dict[bytes, int]]) -> None:
    answer, oids, sizes = case
    cut = _split(answer, oids, sizes)
    if cut is None:
        return
    # Taken: then it is exactly the answer to what was asked, byte for byte.
    assert [oid for oid, _view in cut] == oids
    assert all(len(view) == sizes[oid] for oid, view in cut)
    assert _answer([(oid, bytes(view)) for oid, view in cut]) == answer


def test_nothing_asked_takes_only_an_empty_answer() -> None:
    assert _split(b"", [], {}) == []
    assert _split(b"\n", [], {}) is None
    assert _split(_answer([(b"a" * 40, b"x")]), [], {}) is None
