"""``RemoteModel``: a model served by model services, called over gRPC. The gateway's registry holds these.

It is a ``Model`` like any other, so the gateway's ``DataPlane`` (limits, deadlines, metrics) and every
adapter (REST, WebSocket, SSE, jobs, its own gRPC port) serve it unchanged. ``predict`` forwards the batch
with the remaining time budget (``core/deadline.py``) as the gRPC timeout and the trace context as
metadata:

every instance goes to ``modelwire.v1.Predictor``: ``Predict`` for one, ``PredictStream`` for a batch (its
per-item errors stay per item). A text crosses as ``text``, any other value unchanged as ``instance``
(MessagePack, ``core/instance_codec.py``): the gateway validates nothing itself, so the model service's
model refuses ``5`` or ``null`` with the same item error a single server gives, in the same place.

With coalescing on (``gateway.coalesce``, the default), every caller's items go through the model's
``Coalescer`` instead (``coalesce.py``): the requests that arrive together become one
``modelwire.v1.BatchPredictor/PredictBatch`` call, each item carrying its caller's trace context and
request id, and each caller gets its own items' answers (or the call's failure) back, as if it had called
alone.

An upstream status becomes the same ``ModelwireError`` again (``client._grpc.map_grpc_errors`` reads the
``ErrorInfo`` the model service sent), so the REST table maps it as if the model ran here.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from modelwire.client._grpc import _output, _stream_error, channel_failed, error_from_status
from modelwire.core.deadline import current_deadline, remaining_s
from modelwire.core.instance_codec import encode_instance
from modelwire.errors import DeadlineExceededError, ErrorCode, InternalError, ModelwireError, UnavailableError
from modelwire.gateway.coalesce import UNSUPPORTED, CallFailed, Coalescer, Item, UpstreamMissing
from modelwire.model.base import Datatype, Model, ModelInfo, TensorSpec
from modelwire.observability.tracing import CLIENT, active_tracer, child_span, sampled, trace_metadata
from modelwire.protocols.grpc._generated.modelwire.v1 import batch_pb2, batch_pb2_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc

__all__ = ["CoalescePolicy", "RemoteModel", "UpstreamGroup", "info_from_metadata"]

logger = logging.getLogger("modelwire.gateway")

# An upstream status with one of these codes fails the whole call; any other is the item's own error
# (the model rejected or failed on that input), as when the model runs in the gateway's process.
CALL_ERRORS = frozenset(
    {
        ErrorCode.NOT_FOUND,
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.RESOURCE_EXHAUSTED,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.UNAVAILABLE,
    }
)
RETRY_AFTER_S = 1.0
"""What a caller is told to wait when the model services cannot be reached (a reconnect takes about that)."""
_INTEGERS = {d.value for d in Datatype if d.value.startswith(("INT", "UINT"))}
_DEADLINE_RETRIES = 2
"""Calls a coalesced caller may send again when a neighbour's earlier deadline ended the call it was in."""


@dataclass(frozen=True, slots=True)
class CoalescePolicy:
    """How a ``RemoteModel`` coalesces (``gateway.coalesce_max_batch`` / ``coalesce_max_calls``)."""

    max_batch: int = 64
    max_calls: int = 2
    max_bytes: int = 8 * 1024 * 1024
    on_batch: Callable[[int], None] | None = None


class UpstreamGroup:
    """The channel to a group of model services serving the same models, with its stubs."""

    def __init__(self, channel: grpc.aio.Channel, where: str, auth: tuple[tuple[str, str], ...] = ()) -> None:
        self.channel = channel
        self.where = where
        self.auth = auth
        """``authorization`` metadata for model services whose auth is on (``gateway.upstream_key``)."""
        self.predictor = pb_grpc.PredictorStub(channel)
        self.batch = batch_pb2_grpc.BatchPredictorStub(channel)


Groups = Callable[[str, str], UpstreamGroup]
"""``(name, version) -> UpstreamGroup``: where calls for that model go now (``Router.group``)."""


@dataclass(frozen=True, slots=True)
class _Call:
    group: UpstreamGroup
    timeout_s: float | None
    metadata: tuple[tuple[str, str], ...]


@contextlib.contextmanager
def _upstream_errors(name: str, where: str) -> Iterator[None]:
    """An upstream status as the ``ModelwireError`` it stands for. A channel that fails (refused, reset)
    is a 503 with ``Retry-After`` naming the model, never the internal address (that goes to the log)."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        if channel_failed(exc.code(), exc.trailing_metadata()):
            logger.warning("cannot reach %s for %r: %s", where, name, exc.details())
            raise UnavailableError(
                f"the model services for {name!r} cannot be reached now; try again shortly",
                retry_after_s=RETRY_AFTER_S,
            ) from None
        raise error_from_status(exc.code(), exc.details() or "", exc.trailing_metadata(), where) from None


def _has_details(exc: grpc.aio.AioRpcError) -> bool:
    metadata: Any = exc.trailing_metadata() or ()
    return any(item[0] == "grpc-status-details-bin" for item in metadata)


def _log_internal(name: str, exc: InternalError) -> None:
    # The same error id is in the model service's log, with the traceback: this line joins the two.
    logger.warning("the model service failed on %s: %s [error_id=%s]", name, exc.message, exc.error_id)


def info_from_metadata(reply: Any, version: str) -> ModelInfo:
    """A ``ModelMetadataResponse`` as the ``ModelInfo`` of one version."""

    def specs(tensors: Any) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t.name, Datatype(t.datatype), tuple(t.shape)) for t in tensors)

    return ModelInfo(reply.name, version, reply.platform, specs(reply.inputs), specs(reply.outputs))


class RemoteModel(Model):
    """One (model, version) of the model services; ``predict`` is a gRPC call to one of them."""

    def __init__(self, info: ModelInfo, groups: Groups, coalesce: CoalescePolicy | None = None) -> None:
        super().__init__(info.name, info.version)
        self.remote_info = info
        self.platform = info.platform  # type: ignore[misc]  # the upstream's, per instance
        self._groups = groups
        self._coalescer = (
            None
            if coalesce is None
            else Coalescer(
                info.name,
                info.version,
                self._send_batch,
                self._result,
                max_batch=coalesce.max_batch,
                max_calls=coalesce.max_calls,
                max_bytes=coalesce.max_bytes,
                on_batch=coalesce.on_batch,
            )
        )

    async def close(self) -> None:
        """Fail what still waits to be sent (the gateway is stopping)."""
        if self._coalescer is not None:
            await self._coalescer.close()

    @property
    def coalescing(self) -> bool:
        return self._coalescer is not None and self._coalescer.supported

    def info(self) -> ModelInfo:
        return self.remote_info

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        tracer = active_tracer()
        if tracer is None or not sampled():  # unsampled: the caller's context goes on as it is
            return await self._forward(batch)
        # Export on: the hop is a CLIENT span, and the model service's span is its child (trace_metadata).
        if self.coalescing:
            service, method = "modelwire.v1.BatchPredictor", "PredictBatch"
        else:
            service, method = "modelwire.v1.Predictor", "Predict" if len(batch) == 1 else "PredictStream"
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "modelwire.batch.size": len(batch),
        }
        with child_span(tracer, f"{service}/{method}", attributes, kind=CLIENT):
            return await self._forward(batch)

    async def _forward(self, batch: Sequence[Any]) -> list[Any]:
        coalescer = self._coalescer
        if coalescer is not None and coalescer.supported:
            return await self._coalesced(coalescer, batch)
        return await self._forward_alone(batch)

    async def _coalesced(self, coalescer: Coalescer, batch: Sequence[Any]) -> list[Any]:
        """This caller's items through the coalescer: its own answers back, or the failure of its call."""
        trace = dict(trace_metadata())
        traceparent, request_id = trace.get("traceparent", ""), trace.get("x-request-id", "")
        results: list[Any] = [None] * len(batch)
        messages: list[tuple[int, batch_pb2.BatchItem]] = []
        for i, value in enumerate(batch):
            message = batch_pb2.BatchItem(traceparent=traceparent, request_id=request_id)
            try:
                if isinstance(value, str):
                    message.text = value
                else:
                    message.instance = encode_instance(value)
            except ModelwireError as exc:  # a value MessagePack cannot hold: that item's error
                results[i] = exc
                continue
            messages.append((i, message))
        sizes = [message.ByteSize() for _, message in messages]
        if sum(sizes) > coalescer.max_bytes:
            return await self._forward_alone(batch)  # too big for one call: a stream, item by item
        for attempt in range(_DEADLINE_RETRIES + 1):
            deadline = current_deadline()
            if deadline is not None and deadline <= time.monotonic():
                raise DeadlineExceededError(f"no time left to call the model services for {self.name!r}")
            pairs = zip(messages, sizes, strict=True)
            answers = await coalescer.run([Item(message, deadline, size) for (_, message), size in pairs])
            failed = next((a for a in answers if isinstance(a, CallFailed)), None)
            if any(answer is UNSUPPORTED for answer in answers):
                return await self._forward_alone(batch)  # an older model service: the old way from now on
            if failed is None:
                break
            error = copy.copy(failed.error)  # one error object per caller: each raise sets its traceback
            left = remaining_s()
            earlier = error.code is ErrorCode.DEADLINE_EXCEEDED and (left is None or left > 0)
            if earlier and attempt < _DEADLINE_RETRIES:
                continue  # a neighbour's earlier deadline ended that call: this caller has time left
            if error.code in CALL_ERRORS:
                if isinstance(error, InternalError):
                    _log_internal(self.name, error)
                raise error
            # Any other status is the model's answer to these items (as Predict's would be): theirs.
            answers = [failed] * len(answers)
            break
        for (i, _message), answer in zip(messages, answers, strict=True):
            results[i] = copy.copy(answer.error) if isinstance(answer, CallFailed) else answer
        if len(batch) == 1 and isinstance(results[0], ModelwireError) and results[0].code in CALL_ERRORS:
            raise results[0]  # one instance: what its own Predict call would have raised
        for result in results:
            if isinstance(result, InternalError):
                _log_internal(self.name, result)
        return results

    async def _send_batch(
        self,
        request: Any,
        timeout: float | None,  # noqa: ASYNC109 - the gRPC call's own deadline, passed on
        metadata: tuple[tuple[str, str], ...],
    ) -> Any:
        """One ``PredictBatch`` to the group serving this version now (``Coalescer``'s ``Send``)."""
        group = self._groups(self.name, self.version)
        with _upstream_errors(self.name, group.where):
            try:
                return await group.batch.PredictBatch(
                    request, timeout=timeout, metadata=group.auth + metadata
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED and not _has_details(exc):
                    raise UpstreamMissing from None  # an older model service, without the method
                raise

    async def _forward_alone(self, batch: Sequence[Any]) -> list[Any]:
        """One call for this caller alone: ``Predict`` for one instance, ``PredictStream`` for several."""
        timeout = remaining_s()
        if timeout is not None and timeout <= 0:
            raise DeadlineExceededError(f"no time left to call the model services for {self.name!r}")
        group = self._groups(self.name, self.version)
        call = _Call(group, timeout, group.auth + trace_metadata())
        inputs: list[pb.StreamInput | None] = []
        results: list[Any] = [None] * len(batch)
        for i, item in enumerate(batch):
            try:
                inputs.append(self._input(i, item))
            except ModelwireError as exc:  # a value MessagePack cannot hold: that item's error
                inputs.append(None)
                results[i] = exc
        sent = [message for message in inputs if message is not None]
        try:
            with _upstream_errors(self.name, group.where):
                if len(sent) == 1:
                    (message,) = sent
                    results[int(message.id)] = await self._predict(call, message)
                elif sent:
                    await self._predict_stream(call, sent, results)
        except InternalError as exc:
            _log_internal(self.name, exc)
            raise
        for result in results:
            if isinstance(result, InternalError):
                _log_internal(self.name, result)
        return results

    def _input(self, index: int, item: Any) -> pb.StreamInput:
        """A text crosses as ``text``; any other value unchanged, as ``instance`` (core/instance_codec.py),
        so the model service's model validates it as a single server's would."""
        message = pb.StreamInput(id=str(index), model=self.name, version=self.version)
        if isinstance(item, str):
            message.text = item
        else:
            message.instance = encode_instance(item)
        return message

    async def predict_stream(self, instance: Any) -> AsyncIterator[Any]:
        (result,) = await self.predict([instance])
        if isinstance(result, ModelwireError):
            raise result
        yield result

    async def _predict(self, call: _Call, message: pb.StreamInput) -> Any:
        request = pb.Input(
            text=message.text, instance=message.instance, model=self.name, version=self.version
        )
        try:
            with _upstream_errors(self.name, call.group.where):
                reply = await call.group.predictor.Predict(
                    request, timeout=call.timeout_s, metadata=call.metadata
                )
        except ModelwireError as exc:
            if exc.code in CALL_ERRORS:
                raise
            return exc
        return self._result(_output(reply))

    async def _predict_stream(
        self, call: _Call, inputs: Sequence[pb.StreamInput], results: list[Any]
    ) -> None:
        """Fill ``results`` at the index each input's id names (the rest were filled before the call)."""
        expected = {message.id for message in inputs}
        stream = call.group.predictor.PredictStream(
            iter(inputs), timeout=call.timeout_s, metadata=call.metadata
        )
        try:
            async for reply in stream:
                if reply.id not in expected:
                    raise InternalError(f"a model service answered an unknown input ({reply.id!r:.20})")
                expected.discard(reply.id)
                if reply.WhichOneof("result") == "error":
                    results[int(reply.id)] = _stream_error(reply.error)
                else:
                    results[int(reply.id)] = self._result(_output(reply.output))
        finally:
            stream.cancel()
        if expected:
            raise InternalError(f"a model service left {len(expected)} of {len(inputs)} inputs unanswered")

    def _result(self, reply: Mapping[str, Any]) -> Any:
        """Undo what the Struct did: a bare value comes back from ``{"output": value}``, declared outputs
        in their declared order, and declared integers from doubles (the only numbers a Struct holds)."""
        if set(reply) == {"output"}:
            return reply["output"]
        output: dict[str, Any] = {}
        for spec in self.remote_info.outputs:  # the declared order first (a Struct sorts its keys)
            if spec.name in reply:
                value = reply[spec.name]
                integral = isinstance(value, float) and value.is_integer()
                output[spec.name] = int(value) if integral and spec.datatype.value in _INTEGERS else value
        return output | {key: value for key, value in reply.items() if key not in output}
