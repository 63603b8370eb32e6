"""The streams' pure parts, on values alone: URLs, close codes, SSE messages, events, the choice of wire."""

from __future__ import annotations

import pytest

from modelwire import (
    ConfigurationError,
    Event,
    InternalError,
    InvalidInputError,
    PayloadTooLargeError,
    ResourceExhaustedError,
    UnavailableError,
)
from modelwire.client._rest import _sse_event
from modelwire.client._ws import error_from_close, ws_url
from modelwire.client.transport import choose_wire, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/v1/ws"),
        ("https://models.example:443/", "wss://models.example:443/v1/ws"),
        ("http://h:1/prefix/", "ws://h:1/prefix/v1/ws"),
    ],
)
def test_ws_url(url: str, expected: str) -> None:
    assert ws_url(url, "/v1/ws") == expected


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (1013, ResourceExhaustedError),  # dropped for reading too slowly
        (1009, PayloadTooLargeError),
        (1008, InvalidInputError),
        (1011, InternalError),
        (1001, UnavailableError),
        (1006, UnavailableError),
        (None, UnavailableError),
    ],
)
def test_close_codes_become_the_error_tree(code: int | None, error: type[Exception]) -> None:
    exc = error_from_close(code, "the reason")
    assert isinstance(exc, error)
    assert exc.message == "the reason"


def test_a_close_without_reason_names_its_code() -> None:
    assert "4000" in error_from_close(4000, "").message


def test_sse_event_message() -> None:
    raw = _sse_event("model.loaded", '{"id": 5, "topic": "models", "type": "model.loaded", "data": {}}', "5")
    assert Event.from_dict(raw) == Event(5, "models", "model.loaded", 0.0, {})


def test_sse_dropped_subscriber_raises_resource_exhausted() -> None:
    with pytest.raises(ResourceExhaustedError, match="dropped"):
        _sse_event("error", '{"code": "RESOURCE_EXHAUSTED", "message": "dropped: 1024 events"}', "")


def test_sse_reset_is_an_event_without_id() -> None:
    event = Event.from_dict(_sse_event("reset", '{"reason": "too old", "last_event_id": "1"}', ""))
    assert event.is_reset
    assert event.id is None
    assert event.data == {"reason": "too old", "last_event_id": "1"}


@pytest.mark.parametrize("data", ["not json", "[1, 2]"])
def test_sse_malformed_data_is_internal(data: str) -> None:
    with pytest.raises(InternalError):
        _sse_event("metrics", data, "1")


def test_event_from_odd_values() -> None:
    event = Event.from_dict({"id": "x", "topic": None, "type": 3, "time": "soon", "data": [1]})
    assert event == Event(None, "", "3", 0.0, {})


@pytest.mark.parametrize(
    ("url", "requested", "expected"),
    [
        ("http://h:1", None, "sse"),
        ("http://h:1", "ws", "ws"),
        ("grpc://h:1", None, "grpc"),
        ("grpc://h:1", "grpc", "grpc"),
    ],
)
def test_choose_wire(url: str, requested: str | None, expected: str) -> None:
    endpoint = parse_url(url, timeout=None)
    assert choose_wire(endpoint, requested, ("sse", "ws", "grpc"), "sse") == expected


def test_choose_wire_refuses_a_predict_stream_over_sse() -> None:
    with pytest.raises(ConfigurationError, match="unknown transport"):
        choose_wire(parse_url("http://h:1", timeout=None), "sse", ("ws", "grpc"), "ws")
