"""``core/nesting.py``: the depth checks agree with a plain recursive count, whatever strings hide inside."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelwire.core.nesting import check_depth, check_json_depth
from modelwire.errors import InvalidInputError
from modelwire.jobs.uploads import NdjsonRows


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def refused(check: Any, *args: Any) -> bool:
    error: InvalidInputError | None = None
    try:
        check(*args)
    except InvalidInputError as exc:
        error = exc
    if error is None:
        return False
    assert error.details == {"max_json_depth": args[1]}
    assert "limits.max_json_depth" in error.message
    return True


TRICKY = ["[", "]", "{", "}", '"', "\\", '\\"', "\\\\", "[[[[[", '"]]]]', "\\n", "é", "x"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.lists(st.sampled_from(TRICKY), max_size=4).map("".join),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(TRICKY), inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, limit=st.integers(2, 8))
def test_the_json_scan_matches_a_recursive_count(value: Any, limit: int) -> None:
    text = json.dumps(value)
    expected = depth_of(value) > limit
    assert refused(check_json_depth, text.encode(), limit) is expected
    assert refused(check_json_depth, text, limit) is expected  # a WebSocket text frame
    assert refused(check_depth, value, limit) is expected
    assert refused(check_depth, value, limit, msgspec.msgpack.encode(value)) is expected


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b"[" * 32 + b"]" * 32, False),
        (b"[" * 33 + b"]" * 33, True),
        (b'["' + b"[" * 100 + b'"]', False),  # brackets inside a string
        (b'["\\"' + b"[" * 40 + b'"]', False),  # ... after an escaped quote
        (b'["\\\\",' + b"[" * 40 + b"]" * 40 + b"]", True),  # an escaped backslash ends no string
        (b'{"k\\"[[": ' + b"[" * 31 + b"]" * 31 + b"}", False),
    ],
)
def test_strings_and_escapes_do_not_count(body: bytes, deep: bool) -> None:
    msgspec.json.decode(body)
    assert refused(check_json_depth, body, 32) is deep


def test_a_deep_upload_line_is_that_rows_error() -> None:
    rows = NdjsonRows(max_depth=4)
    got = rows.feed(b'"ok"\n[[[[["too deep"]]]]]\n' + b"[" * 5000 + b"]" * 5000 + b"\n[[1]]\n")
    assert got[0] == "ok"
    assert got[3] == [[1]]
    for row in got[1:3]:
        assert isinstance(row, InvalidInputError)
        assert "limits.max_json_depth" in row.message
