"""Call modelwire over gRPC with an API key (or a JWT), and wait as long as a rate-limit refusal says.

    reply = predict("127.0.0.1:8001", "mw_3f9c2a1b7d4e_...", "I love this product")
    print(reply.sentiment, reply.confidence)

The credential travels as ``authorization: Bearer <key or JWT>`` metadata on every call (``x-api-key:
<key>`` works too). A refusal is a status: UNAUTHENTICATED (no or bad credential), PERMISSION_DENIED (the
message names the missing scope), RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` detail saying how
long to wait.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2, predictor_pb2_grpc


def retry_delay(error: grpc.RpcError) -> float | None:
    """Seconds the server asks to wait (its ``RetryInfo``), or ``None`` when it gave none."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


def predict(target: str, credential: str, text: str, *, model: str = "", attempts: int = 3) -> Any:
    """One prediction; over the rate limit, wait as told and try again (``attempts`` times in all)."""
    metadata = (("authorization", f"Bearer {credential}"),)
    with grpc.insecure_channel(target) as channel:  # grpc.secure_channel(...) when TLS is on
        stub = predictor_pb2_grpc.PredictorStub(channel)
        for attempt in range(attempts):
            try:
                return stub.Predict(
                    predictor_pb2.Input(text=text, model=model), metadata=metadata, timeout=10
                )
            except grpc.RpcError as error:
                delay = retry_delay(error)
                if (
                    error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
                    or delay is None
                    or attempt == attempts - 1
                ):
                    raise
                time.sleep(delay)
    raise AssertionError("unreachable")
