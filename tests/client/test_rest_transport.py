"""REST error translation, in-process: httpx.MockTransport answers, no server."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from modelwire.client._rest import RestTransport, error_from_response, read_answer
from modelwire.client.transport import parse_url
from modelwire.errors import (
    DeadlineExceededError,
    InternalError,
    InvalidInputError,
    ModelNotFoundError,
    ModelwireError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)

Handler = Callable[[httpx.Request], httpx.Response]


def transport(handler: Handler, url: str = "http://model.test") -> RestTransport:
    return RestTransport(parse_url(url, timeout=1.0), transport=httpx.MockTransport(handler))


def error_body(code: str, message: str = "nope", **extra: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "INVALID_ARGUMENT", InvalidInputError),
        (401, "UNAUTHENTICATED", UnauthenticatedError),
        (404, "NOT_FOUND", NotFoundError),
        (413, "PAYLOAD_TOO_LARGE", PayloadTooLargeError),
        (415, "UNSUPPORTED_MEDIA_TYPE", UnsupportedMediaTypeError),
        (429, "RESOURCE_EXHAUSTED", ResourceExhaustedError),
        (503, "UNAVAILABLE", UnavailableError),
        (504, "DEADLINE_EXCEEDED", DeadlineExceededError),
        (500, "INTERNAL", InternalError),
        (500, "SOMETHING_NEW", InternalError),
    ],
)
def test_the_json_error_body_decides_the_error(
    status: int, code: str, expected: type[ModelwireError]
) -> None:
    err = error_from_response(status, {}, error_body(code))
    assert type(err) is expected
    assert err.message == "nope"


def test_field_retry_and_error_id_survive() -> None:
    err = error_from_response(400, {}, error_body("INVALID_ARGUMENT", field="$.texts[2]"))
    assert err.field == "$.texts[2]"
    err = error_from_response(503, {}, error_body("UNAVAILABLE", retry_after_s=2.5))
    assert err.retry_after_s == 2.5
    err = error_from_response(500, {}, error_body("INTERNAL", details={"error_id": "abc123"}))
    assert isinstance(err, InternalError)
    assert err.error_id == "abc123"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, InvalidInputError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (429, ResourceExhaustedError),
        (502, UnavailableError),
        (503, UnavailableError),
        (504, DeadlineExceededError),
        (500, InternalError),
        (418, InternalError),
    ],
)
def test_a_body_that_is_not_ours_falls_back_to_the_status(
    status: int, expected: type[ModelwireError]
) -> None:
    err = error_from_response(status, {"retry-after": "3"}, b"<html>Bad Gateway</html>")
    assert type(err) is expected
    assert f"HTTP {status}" in err.message
    if expected is UnavailableError:
        assert err.retry_after_s == 3.0


def test_a_success_that_is_not_json_is_internal() -> None:
    with pytest.raises(InternalError, match="not JSON"):
        read_answer(200, {}, b"hello")


async def test_requests_go_to_the_v1_routes_with_quoted_names() -> None:
    seen: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), json.loads(request.content)))
        return httpx.Response(200, json={"sentiment": "positive", "confidence": 0.9})

    wire = transport(handler, "http://model.test/prefix/")
    assert await wire.predict("hi", model="a/b", version="2") == {"sentiment": "positive", "confidence": 0.9}
    await wire.predict("hi", model="sentiment", version=None)
    await wire.aclose()
    assert seen == [
        ("POST", "/prefix/v1/models/a%2Fb/versions/2/predict", {"text": "hi"}),
        ("POST", "/prefix/v1/models/sentiment/predict", {"text": "hi"}),
    ]


async def test_batch_items_become_outputs_or_errors_in_place() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {"texts": ["a", "", "c"]}
        return httpx.Response(
            200,
            json={
                "predictions": [
                    {"echo": "a"},
                    {"error": {"code": "INVALID_ARGUMENT", "message": "empty", "field": "$.texts[1]"}},
                    {"echo": "c"},
                ]
            },
        )

    wire = transport(handler)
    first, second, third = await wire.predict_batch(["a", "", "c"], model="echo", version=None)
    await wire.aclose()
    assert first == {"echo": "a"}
    assert isinstance(second, InvalidInputError)
    assert second.field == "$.texts[1]"
    assert third == {"echo": "c"}


async def test_a_batch_answer_of_the_wrong_length_is_internal() -> None:
    wire = transport(lambda request: httpx.Response(200, json={"predictions": [{"echo": "a"}]}))
    with pytest.raises(InternalError, match="one prediction per text"):
        await wire.predict_batch(["a", "b"], model="echo", version=None)
    await wire.aclose()


async def test_error_status_raises_the_server_error() -> None:
    body = error_body("NOT_FOUND", "model 'x' is not served")
    wire = transport(lambda request: httpx.Response(404, content=body))
    with pytest.raises(NotFoundError, match="not served") as caught:
        await wire.predict("hi", model="x", version=None)
    await wire.aclose()
    assert not isinstance(caught.value, ModelNotFoundError)  # the wire carries the code, not the subclass


@pytest.mark.parametrize(
    ("raised", "expected", "match"),
    [
        (httpx.ConnectError("refused"), UnavailableError, "cannot reach"),
        (httpx.ConnectTimeout("slow connect"), UnavailableError, "could not connect"),
        (httpx.ReadTimeout("slow answer"), DeadlineExceededError, "did not answer in time"),
        (httpx.WriteTimeout("slow send"), DeadlineExceededError, "did not answer in time"),
        (httpx.PoolTimeout("busy"), DeadlineExceededError, "did not answer in time"),
        (httpx.RemoteProtocolError("peer closed"), UnavailableError, "cannot reach"),
        (httpx.ReadError("reset"), UnavailableError, "cannot reach"),
        (httpx.DecodingError("bad gzip"), UnavailableError, "failed"),
    ],
)
async def test_httpx_exceptions_become_the_error_tree(
    raised: httpx.HTTPError, expected: type[ModelwireError], match: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    wire = transport(handler)
    with pytest.raises(expected, match=match) as caught:
        await wire.predict("hi", model="sentiment", version=None)
    await wire.aclose()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_health_reads_the_status_codes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.url.path == "/v2/health/live" else 503)

    wire = transport(handler)
    health = await wire.health()
    await wire.aclose()
    assert (health.live, health.ready) == (True, False)


def test_overloaded_is_still_unavailable_to_callers() -> None:
    # A server's OverloadedError arrives as UNAVAILABLE: callers catch UnavailableError for both.
    err = error_from_response(503, {}, error_body("UNAVAILABLE", retry_after_s=1.0))
    assert isinstance(err, UnavailableError)
    assert not isinstance(err, OverloadedError)
