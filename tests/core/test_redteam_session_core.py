"""The core's newest fast paths, tried as an attacker: stdin written without blocking
(`process.Process`), and redaction that looks for anchors first and redacts each distinct
string once (`secrets`)."""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connc import process, secrets
from connc.secrets import redact, redact_data


def test_a_child_that_stops_reading_its_stdin_ends_at_the_deadline() -> None:
    # It reads part of a write (the pipe has some room, less than a piece), then sleeps: a
    # blocking write would wait for it past the deadline.
    started = time.monotonic()
    with pytest.raises(process.Timeout):
        process.run(["sh", "-c", "head -c 100000 >/dev/null; exec sleep 60"], timeout=1,
                    stdin=b"x" * (8 * 1024 * 1024))
    assert time.monotonic() - started < 10


def test_a_child_that_reads_in_small_pieces_gets_every_byte_in_order() -> None:
    # Each write takes what the pipe has room for: a partial write loses nothing.
    data = os.urandom(3 * 1024 * 1024 + 17)
    done = process.run(["dd", "bs=512", "status=none"], timeout=60, stdin=data)
    assert done.returncode == 0 and done.stdout == data


def test_a_child_that_dies_in_the_middle_of_its_stdin_is_answered_by_its_exit_code() -> None:
    started = time.monotonic()
    done = process.run(["sh", "-c", "head -c 100000; exit 4"], timeout=30,
                       stdin=b"y" * (16 * 1024 * 1024))
    assert done.returncode == 4 and done.stdout == b"y" * 100000
    assert time.monotonic() - started < 10


_FILLER = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@st.composite
def _secret_looking(draw: st.DrawFn) -> str:
    _label, pattern = draw(st.sampled_from(secrets._PATTERNS))
    return draw(st.from_regex(pattern, fullmatch=True))


@st.composite
def _texts(draw: st.DrawFn) -> str:
    return draw(_FILLER) + (draw(_secret_looking()) if draw(st.booleans()) else "") \
        + draw(_FILLER)


_DATA = st.recursive(st.none() | st.integers() | _texts(),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_texts(), inner, max_size=4), max_leaves=12)


def _redacted_one_by_one(data: object) -> object:
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {_redacted_one_by_one(k): _redacted_one_by_one(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_redacted_one_by_one(v) for v in data]
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA, repeated=_texts())
def test_each_distinct_string_redacted_once_is_each_string_redacted(data: object,
                                                                    repeated: str) -> None:
    # The same string as a key and as values, at several depths: remembered once, shown the
    # same everywhere, and never let through where the one-by-one walk would redact it.
    report = {"rows": [data, {repeated: repeated}, [repeated, data]], repeated: data}
    shown = redact_data(report)
    assert shown == _redacted_one_by_one(report)
    assert not any(next(secrets._secrets_in(text), None) for text in _strings(shown))
    assert json.loads(json.dumps(shown, ensure_ascii=False)) == shown


def _strings(data: object) -> list[str]:  # keys too
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return []
