"""The ErrorCode -> gRPC status table and the rich details each status carries (no server needed)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from modelwire.errors import (
    ErrorCode,
    InternalError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from modelwire.protocols.grpc.converters import call_context
from modelwire.protocols.grpc.errors import GRPC_STATUS, to_status


def _details(status: grpc.Status) -> dict[str, Any]:
    (blob,) = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    out: dict[str, Any] = {}
    for packed in status_pb2.Status.FromString(blob).details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                out[kind.DESCRIPTOR.name] = message
    return out


def test_every_error_code_has_a_status() -> None:
    assert set(GRPC_STATUS) == set(ErrorCode)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorCode.DEADLINE_EXCEEDED, grpc.StatusCode.DEADLINE_EXCEEDED),
        (ErrorCode.RESOURCE_EXHAUSTED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ErrorCode.PAYLOAD_TOO_LARGE, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ErrorCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (ErrorCode.INTERNAL, grpc.StatusCode.INTERNAL),
        (ErrorCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED),
        (ErrorCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_status_codes(code: ErrorCode, status: grpc.StatusCode) -> None:
    assert GRPC_STATUS[code] is status


def test_error_info_names_the_error_code() -> None:
    status = to_status(PayloadTooLargeError("too big"))
    assert status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status.details == "too big"
    info = _details(status)["ErrorInfo"]
    assert (info.reason, info.domain) == ("PAYLOAD_TOO_LARGE", "modelwire")
    assert set(_details(to_status(ModelNotFoundError("x")))) == {"ErrorInfo"}


def test_bad_request_names_the_field() -> None:
    status = to_status(InvalidInputError("must be BYTES", field="inputs.text.datatype"))
    (violation,) = _details(status)["BadRequest"].field_violations
    assert (violation.field, violation.description) == ("inputs.text.datatype", "must be BYTES")


def test_retry_info_says_when_to_retry() -> None:
    status = to_status(OverloadedError("busy", retry_after_s=1.5))
    assert status.code is grpc.StatusCode.UNAVAILABLE
    delay = _details(status)["RetryInfo"].retry_delay
    assert (delay.seconds, delay.nanos) == (1, 500_000_000)


def test_internal_carries_its_error_id() -> None:
    error = InternalError(error_id="abc123")
    status = to_status(error)
    assert status.details == "internal error (error_id=abc123)"
    assert _details(status)["ErrorInfo"].metadata["error_id"] == "abc123"


class _Context:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("traffic-key", "user-7"),)


def test_call_context_moves_the_deadline_to_the_monotonic_clock() -> None:
    import time

    before = time.monotonic()
    ctx = call_context(_Context(2.0))  # type: ignore[arg-type]
    assert ctx.protocol == "grpc"
    assert ctx.deadline is not None
    assert before + 2.0 <= ctx.deadline <= time.monotonic() + 2.0
    assert call_context(_Context(None)).deadline is None  # type: ignore[arg-type]
    assert ctx.traffic_key == "user-7"  # what a sticky canary split follows
