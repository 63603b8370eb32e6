"""Every error the server renders comes back to the client as the same error, over both wires.

The server's renderers (``protocols/http/errors.py``, ``protocols/grpc/errors.py``) and the client's
readers meet here without sockets, so a change on one side that the other does not follow fails.
"""

from __future__ import annotations

import grpc
import pytest

from modelwire.client._grpc import error_from_status
from modelwire.client._rest import error_from_response
from modelwire.errors import (
    DeadlineExceededError,
    InternalError,
    InvalidInputError,
    MethodNotAllowedError,
    ModelwireError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from modelwire.protocols.grpc.errors import to_status
from modelwire.protocols.http.errors import error_response

ERRORS: list[ModelwireError] = [
    InvalidInputError("text must not be empty", field="$.text"),
    PayloadTooLargeError("too big", field="$.texts[3]"),
    MethodNotAllowedError("use POST"),
    UnsupportedMediaTypeError("send JSON"),
    NotFoundError("model 'x' is not served"),
    UnauthenticatedError("who are you"),
    PermissionDeniedError("not yours"),
    ResourceExhaustedError("slow down", retry_after_s=2.0),
    DeadlineExceededError("too slow"),
    UnavailableError("shutting down", retry_after_s=1.0),
    InternalError("internal error", error_id="0123456789abcdef"),
]


def _assert_same(got: ModelwireError, sent: ModelwireError) -> None:
    assert type(got) is type(sent)
    assert got.code is sent.code
    assert got.message == sent.message
    assert got.field == sent.field
    assert got.retry_after_s == sent.retry_after_s
    if isinstance(sent, InternalError):
        assert isinstance(got, InternalError)
        assert got.error_id == sent.error_id


@pytest.mark.parametrize("sent", ERRORS, ids=lambda e: type(e).__name__)
def test_rest_round_trip(sent: ModelwireError) -> None:
    response = error_response(sent)
    got = error_from_response(response.status_code, response.headers, bytes(response.body))
    _assert_same(got, sent)


@pytest.mark.parametrize("sent", ERRORS, ids=lambda e: type(e).__name__)
def test_grpc_round_trip(sent: ModelwireError) -> None:
    status = to_status(sent)
    got = error_from_status(status.code, status.details, status.trailing_metadata, "host:1")
    _assert_same(got, sent)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInputError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.UNIMPLEMENTED, NotFoundError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.INTERNAL, InternalError),
        (grpc.StatusCode.UNKNOWN, InternalError),
    ],
)
def test_a_bare_grpc_status_maps_by_its_code(code: grpc.StatusCode, expected: type[ModelwireError]) -> None:
    got = error_from_status(code, "from a proxy", None, "host:1")
    assert type(got) is expected


def test_a_bare_unavailable_is_the_channel_failing() -> None:
    got = error_from_status(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", (), "host:1")
    assert isinstance(got, UnavailableError)
    assert got.message.startswith("cannot reach host:1")


def test_malformed_rich_details_are_ignored() -> None:
    got = error_from_status(
        grpc.StatusCode.INVALID_ARGUMENT, "bad", (("grpc-status-details-bin", b"\xff\x00junk"),), "host:1"
    )
    assert isinstance(got, InvalidInputError)
