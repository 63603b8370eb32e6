"""SSE framing as a pure function, checked against a real client's parser (httpx-sse's decoder)."""

from __future__ import annotations

import json

import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given
from hypothesis import strategies as st

from modelwire.protocols.http.sse.encoding import HEARTBEAT, comment, encode, encode_json


def parse(raw: bytes) -> list[ServerSentEvent]:
    lines, decoder = SSELineDecoder(), SSEDecoder()
    out = []
    for line in [*lines.decode(raw.decode()), *lines.flush()]:
        if (sse := decoder.decode(line)) is not None:
            out.append(sse)
    return out


def test_every_field() -> None:
    assert encode("hello", event="greeting", id=7, retry=1500) == (
        b"retry: 1500\nid: 7\nevent: greeting\ndata: hello\n\n"
    )
    (sse,) = parse(encode("hello", event="greeting", id=7, retry=1500))
    assert (sse.event, sse.data, sse.id, sse.retry) == ("greeting", "hello", "7", 1500)


def test_retry_alone() -> None:
    assert encode(retry=3000) == b"retry: 3000\n\n"


@pytest.mark.parametrize("data", ["a\nb", "a\r\nb", "a\rb"])
def test_multi_line_data_is_split_on_every_line_break(data: str) -> None:
    assert encode(data) == b"data: a\ndata: b\n\n"
    assert parse(encode(data))[0].data == "a\nb"


def test_data_cannot_forge_fields_or_end_the_event() -> None:
    attack = "x\n\nid: 999\nevent: admin\ndata: forged\r\rretry: 1"
    (sse,) = parse(encode(attack, event="real", id=1))
    assert (sse.event, sse.id, sse.retry) == ("real", "1", None)
    assert sse.data == attack.replace("\r", "\n")


def test_leading_spaces_and_colons_in_data_survive() -> None:
    assert parse(encode("  two spaces: and a colon"))[0].data == "  two spaces: and a colon"
    assert parse(encode(":not a comment"))[0].data == ":not a comment"


def test_empty_data_is_one_empty_line() -> None:
    assert encode("") == b"data: \n\n"


@given(st.text(), st.sampled_from(["prediction", "model.loaded"]), st.integers(min_value=0, max_value=2**62))
def test_round_trip_through_a_real_parser(data: str, event: str, event_id: int) -> None:
    (sse,) = parse(encode(data, event=event, id=event_id))
    assert sse.event == event
    assert sse.id == str(event_id)
    assert sse.data == data.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_event_and_id_refuse_line_breaks_and_nul(bad: str) -> None:
    with pytest.raises(ValueError, match="line break or NUL"):
        encode("x", event=bad)
    with pytest.raises(ValueError, match="line break or NUL"):
        encode("x", id=bad)


def test_negative_retry_is_refused() -> None:
    with pytest.raises(ValueError):
        encode(retry=-1)


def test_json_data_is_one_line() -> None:
    value = {"text": "line one\nline two\r\n", "n": 1}
    raw = encode_json(value, event="prediction")
    assert raw.count(b"\ndata: ") == 1
    assert raw.endswith(b"}\n\n")
    assert json.loads(parse(raw)[0].data) == value


def test_comments_are_ignored_by_clients() -> None:
    assert HEARTBEAT == b": heartbeat\n\n"
    assert comment("two\nlines") == b": two\n: lines\n\n"
    assert comment() == b":\n\n"
    assert [(e.event, e.data) for e in parse(HEARTBEAT + comment("x\ny") + encode("after"))] == [
        ("message", "after")
    ]
