"""``modelwire.jobs.store``'s row format: what every store keeps (an encoded value or error) and how a result
row is rendered. The stores themselves, each against the one contract: ``tests/backends/``."""

from __future__ import annotations

import msgspec
import pytest

from modelwire.errors import InvalidInputError
from modelwire.jobs.store import decode_row, encode_row, encode_row_error, render_result


def test_row_encoding_round_trips_values_and_errors() -> None:
    assert decode_row(encode_row({"a": [1, "b"]})) == {"a": [1, "b"]}
    error = decode_row(encode_row_error(InvalidInputError("line 3 is not valid JSON")))
    assert isinstance(error, InvalidInputError)
    assert error.message == "line 3 is not valid JSON"


@pytest.mark.parametrize(
    ("row", "line"),
    [
        ((0, b'{"sentiment":"positive"}', False), {"index": 0, "sentiment": "positive"}),
        ((3, b"{}", False), {"index": 3}),
        ((4, b" { } ", False), {"index": 4, "result": {}}),
        ((1, b"[1,2]", False), {"index": 1, "result": [1, 2]}),
        ((2, b'{"code":"INVALID_ARGUMENT"}', True), {"index": 2, "error": {"code": "INVALID_ARGUMENT"}}),
    ],
)
def test_render_result(row: tuple[int, bytes, bool], line: dict[str, object]) -> None:
    assert msgspec.json.decode(render_result(row)) == line
