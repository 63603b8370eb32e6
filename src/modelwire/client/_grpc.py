"""The gRPC wire, over grpc.aio with the generated ``modelwire.v1.Predictor`` stubs and grpc.health.v1.

``map_grpc_errors`` is the one place a grpc exception becomes a ``ModelwireError``: the modelwire
``ErrorCode`` comes from the status's ``google.rpc.ErrorInfo`` detail when the server sent one (with the
field from ``BadRequest`` and the delay from ``RetryInfo``), else from the gRPC status code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelwire.client.results import Health
from modelwire.client.tls import untrusted_hint
from modelwire.client.transport import Endpoint, Output
from modelwire.errors import (
    DeadlineExceededError,
    ErrorCode,
    InternalError,
    ModelwireError,
    UnavailableError,
    error_from_code,
)
from modelwire.protocols.grpc._generated.modelwire.v1 import (
    events_pb2,
    events_pb2_grpc,
    predictor_pb2,
    predictor_pb2_grpc,
)

__all__ = ["GrpcTransport", "error_from_status", "map_grpc_errors"]

_STATUS_CODES: dict[grpc.StatusCode, ErrorCode] = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: ErrorCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS: ErrorCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED: ErrorCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: ErrorCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ErrorCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED: ErrorCode.UNAVAILABLE,
}
_DETAILS_KEY = "grpc-status-details-bin"
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


def _rich_details(metadata: Any) -> dict[str, Any]:
    """``code``, ``field``, ``retry_after_s`` and ``error_id`` from the status's google.rpc details."""
    raw = next((value for key, value in metadata or () if key == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return {}
    found: dict[str, Any] = {}
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:  # a malformed detail is ignored: the status code still counts
        return {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found["code"] = info.reason
            if info.metadata.get("reason"):
                found["reason"] = info.metadata["reason"]
            if info.metadata.get("error_id"):
                found["error_id"] = info.metadata["error_id"]
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                found["field"] = bad.field_violations[0].field
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            found["retry_after_s"] = retry.retry_delay.ToTimedelta().total_seconds()
    return found


def channel_failed(code: grpc.StatusCode, metadata: Any) -> bool:
    """The status is the channel's own failure (refused, reset), not an answer of the server."""
    return code is grpc.StatusCode.UNAVAILABLE and "code" not in _rich_details(metadata)


def error_from_status(code: grpc.StatusCode, message: str, metadata: Any, target: str) -> ModelwireError:
    """The error a non-OK gRPC status stands for."""
    rich = _rich_details(metadata)
    if "code" not in rich and code is grpc.StatusCode.UNAVAILABLE:
        # No ErrorInfo: the channel itself failed (refused, reset), not the server's answer.
        reason = f"cannot reach {target}: {message}"
        return UnavailableError(untrusted_hint(reason) or reason)
    wire_code = rich.get("code") or _STATUS_CODES.get(code, ErrorCode.INTERNAL).value
    details = None
    if "error_id" in rich:
        details = {"error_id": rich["error_id"]}
        message = message.removesuffix(f" (error_id={rich['error_id']})")  # REST keeps the id out of it too
    return error_from_code(
        wire_code,
        message or code.name,
        reason=rich.get("reason"),
        field=rich.get("field"),
        retry_after_s=rich.get("retry_after_s"),
        details=details,
    )


@contextlib.contextmanager
def map_grpc_errors(target: str) -> Iterator[None]:
    """Translate grpc's exceptions into the modelwire error tree."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise error_from_status(exc.code(), exc.details() or "", exc.trailing_metadata(), target) from None


def _output(message: Any) -> Output:
    if message.result.fields:
        result: dict[str, Any] = json_format.MessageToDict(message.result)
        # A Struct is a map, so its keys come back sorted: put the seed's two first again, as REST has them.
        seed = {key: result.pop(key) for key in ("sentiment", "confidence") if key in result}
        return seed | result
    return {"sentiment": message.sentiment, "confidence": message.confidence}


def _stream_error(error: Any) -> ModelwireError:
    return error_from_code(
        error.code or ErrorCode.INTERNAL.value,
        error.message,
        reason=error.reason or None,
        field=error.field or None,
        details={"error_id": error.error_id} if error.error_id else None,
    )


class GrpcTransport:
    """``Predictor``'s Predict (one text), PredictStream (a batch) and ListModels; grpc.health.v1."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._target = endpoint.target
        if endpoint.scheme == "grpcs":
            self._channel = grpc.aio.secure_channel(self._target, endpoint.tls.grpc_credentials())
        else:
            self._channel = grpc.aio.insecure_channel(self._target)
        self._timeout = endpoint.timeout
        self._metadata = tuple((key.lower(), value) for key, value in endpoint.headers.items())
        self._predictor = predictor_pb2_grpc.PredictorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._events = events_pb2_grpc.EventsStub(self._channel)

    async def predict(self, text: str, *, model: str, version: str | None) -> Output:
        request = predictor_pb2.Input(text=text, model=model, version=version or "")
        with map_grpc_errors(self._target):
            reply = await self._predictor.Predict(request, timeout=self._timeout, metadata=self._metadata)
        return _output(reply)

    async def predict_batch(
        self, texts: Sequence[str], *, model: str, version: str | None
    ) -> list[Output | ModelwireError]:
        async def inputs() -> AsyncIterator[Any]:
            for i, text in enumerate(texts):
                yield predictor_pb2.StreamInput(id=str(i), text=text, model=model, version=version or "")

        results: list[Output | ModelwireError | None] = [None] * len(texts)
        call = self._predictor.PredictStream(inputs(), timeout=self._timeout, metadata=self._metadata)
        try:
            with map_grpc_errors(self._target):
                async for reply in call:
                    index = int(reply.id) if reply.id.isdigit() else -1
                    if not 0 <= index < len(texts):
                        raise InternalError(f"the server answered an unknown input ({reply.id!r:.20})")
                    which = reply.WhichOneof("result")
                    results[index] = _stream_error(reply.error) if which == "error" else _output(reply.output)
        finally:
            call.cancel()  # a no-op once the stream ended; frees it if we stop reading early
        done = [r for r in results if r is not None]
        if len(done) != len(texts):
            raise InternalError(f"the server answered {len(done)} of {len(texts)} inputs")
        return done

    async def stream_predict(
        self, texts: AsyncIterator[str], *, model: str | None, version: str | None
    ) -> AsyncGenerator[tuple[int, Output | ModelwireError]]:
        """``PredictStream`` fed as the caller yields texts. No deadline on the call: ``timeout`` bounds
        each wait for an answer while inputs are outstanding."""
        sent = 0
        done_sending = False
        progress = asyncio.Event()
        failed: list[Exception] = []  # the caller's iterable raised: grpc would only log it

        async def inputs() -> AsyncIterator[Any]:
            nonlocal sent, done_sending
            try:
                async for text in texts:
                    yield predictor_pb2.StreamInput(
                        id=str(sent), text=text, model=model or "", version=version or ""
                    )
                    sent += 1
                    progress.set()
                done_sending = True
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                failed.append(exc)
            finally:
                progress.set()

        call = self._predictor.PredictStream(inputs(), metadata=self._metadata)
        ended = asyncio.ensure_future(call.code())  # done when the call ends (say, it never connected)
        received = 0
        try:
            while True:
                if failed:
                    raise failed[0]
                if received == sent and not done_sending and not ended.done():
                    # Nothing outstanding: wait for the caller's next input, or for the call to end.
                    waiter = asyncio.ensure_future(progress.wait())
                    try:
                        await asyncio.wait((waiter, ended), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    progress.clear()
                    continue
                wait = self._timeout if received < sent else None
                with map_grpc_errors(self._target):
                    try:
                        async with asyncio.timeout(wait):
                            reply = await call.read()
                    except TimeoutError:
                        raise DeadlineExceededError(f"no answer from {self._target} in {wait:g} s") from None
                if reply is _EOF:
                    break
                index = int(reply.id) if reply.id.isdigit() else -1
                if not 0 <= index < sent:
                    raise InternalError(f"the server answered an unknown input ({reply.id!r:.20})")
                received += 1
                which = reply.WhichOneof("result")
                yield index, _stream_error(reply.error) if which == "error" else _output(reply.output)
        finally:
            call.cancel()
            ended.cancel()
        if received != sent:
            raise InternalError(f"the server answered {received} of {sent} inputs")

    async def events(self, topics: Sequence[str], *, last_event_id: int | None) -> AsyncGenerator[Output]:
        """``Events/Subscribe``; no deadline (a subscription lasts until cancelled or the server stops)."""
        request = events_pb2.SubscribeRequest(
            topics=list(topics), last_event_id="" if last_event_id is None else str(last_event_id)
        )
        call = self._events.Subscribe(request, metadata=self._metadata)
        try:
            while True:
                with map_grpc_errors(self._target):
                    reply = await call.read()
                if reply is _EOF:
                    return
                yield {
                    "id": reply.id or None,
                    "topic": reply.topic,
                    "type": reply.type,
                    "time": reply.time,
                    "data": json_format.MessageToDict(reply.data),
                }
        finally:
            call.cancel()

    async def models(self) -> list[Output]:
        with map_grpc_errors(self._target):
            reply = await self._predictor.ListModels(
                predictor_pb2.ListModelsRequest(), timeout=self._timeout, metadata=self._metadata
            )
        return [
            json_format.MessageToDict(
                model, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for model in reply.models
        ]

    async def health(self) -> Health:
        request = health_pb2.HealthCheckRequest(service="")
        with map_grpc_errors(self._target):
            reply = await self._health.Check(request, timeout=self._timeout, metadata=self._metadata)
        return Health(live=True, ready=reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def aclose(self) -> None:
        await self._channel.close(None)
