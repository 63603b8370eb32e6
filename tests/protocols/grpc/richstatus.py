"""Reading the google.rpc details a modelwire error status carries."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

KINDS = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo)


def rich_details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The details of an error status, by message name (``ErrorInfo``, ``BadRequest``, ``RetryInfo``)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the status carries no rich details"
    out: dict[str, Any] = {}
    for packed in status.details:
        for kind in KINDS:
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                out[kind.DESCRIPTOR.name] = message
    return out
