"""``modelwire.v1.BatchPredictor``: a gateway's coalesced items, run as one batch through the DataPlane.

One ``PredictBatch`` is one ``DataPlane.infer`` of its items (one admission slot, one entry in the model's
batching queue, one call in the request metrics), split only when it holds more than
``limits.max_batch_items``. What would fail a whole request for one item alone (a text over
``limits.max_text_chars``, an ``instance`` that does not decode) is that item's error here, so a bad item
never fails the other callers' items; nor does a model that rejects a whole call for one item (each item
is then run again alone). When every item failed UNAVAILABLE (the model said "busy, try again"),
that is the call's status, as for ``Predict``, so the gateway's retry policy sends the call again. The
call's own failures (unknown model, credentials, overload, the
deadline: the earliest of its items') are its status.

Each item carries its caller's ``traceparent`` and request id: with span export on, each item gets a span of
its own (a child of its caller's span), and an item that failed INTERNAL is logged with its own request id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
from opentelemetry.trace import SpanKind

from modelwire.core.dataplane import CallContext
from modelwire.core.instance_codec import decode_instance
from modelwire.errors import ErrorCode, InternalError, ModelwireError, PayloadTooLargeError
from modelwire.observability.tracing import (
    TraceContext,
    active_tracer,
    current_trace,
    parent_context,
    record_failure,
    reset_trace,
    use_trace,
    valid_request_id,
    wall_ns_ago,
)
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import batch_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import batch_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.converters import DEFAULT_MODEL, PredictConverter, call_context, send_version
from modelwire.protocols.grpc.errors import map_errors

__all__ = ["CALL_ERRORS", "BatchPredictorServicer", "error_to_proto"]

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
"""What fails a ``PredictBatch`` as a whole (its status); any other error is its item's (or items') own."""

logger = logging.getLogger("modelwire.grpc")

Context = grpc.aio.ServicerContext[Any, Any]


def error_to_proto(exc: ModelwireError) -> Any:
    """An item's error as a ``BatchError``: what a unary call's status details would carry."""
    error = pb.BatchError(code=exc.code.value, message=exc.message, field=exc.field or "")
    if exc.reason is not None:
        error.reason = exc.reason
    if isinstance(exc, InternalError):
        error.error_id = exc.error_id
    if exc.retry_after_s is not None:
        error.retry_after_s = max(0.0, exc.retry_after_s)
    return error


class BatchPredictorServicer(pb_grpc.BatchPredictorServicer):  # type: ignore[misc]
    """Parses the items, calls ``DataPlane.infer_served`` once (per ``max_batch_items``), renders each."""

    def __init__(self, services: Facades) -> None:
        self._dataplane = services.dataplane
        self._limits = services.settings.limits

    @map_errors
    async def PredictBatch(self, request: Any, context: Context) -> Any:
        model = request.model or DEFAULT_MODEL
        items = request.items
        results: list[Any] = [None] * len(items)
        ready: list[int] = []
        instances: list[Any] = []
        limit = self._limits.max_text_chars
        for i, item in enumerate(items):
            try:
                depth = self._limits.max_json_depth
                instance = decode_instance(item.instance, depth) if item.instance else item.text
                if isinstance(instance, str) and len(instance) > limit:
                    raise PayloadTooLargeError(
                        f"the text has {len(instance)} characters; the limit is {limit}"
                    )
            except ModelwireError as exc:
                results[i] = exc
                continue
            ready.append(i)
            instances.append(instance)
        ctx = call_context(context)
        version = request.version or None
        started = time.monotonic()
        step = self._limits.max_batch_items
        for first in range(0, len(instances), step):
            chunk, where = instances[first : first + step], ready[first : first + step]
            outputs, version = await self._infer(model, chunk, version, ctx)
            for i, output in zip(where, outputs, strict=True):
                results[i] = output
        if results and all(_unavailable(result) for result in results):
            raise results[0]  # as Predict would: the status the hop's retry policy sends again
        answered = version or self._dataplane.resolve_version(model, None)
        send_version(context, answered)
        if active_tracer() is not None:
            _item_spans(items, results, model, started)
        reply = pb.BatchResponse(version=answered)
        for item, result in zip(items, results, strict=True):
            if isinstance(result, ModelwireError):
                if isinstance(result, InternalError):
                    _log_internal(item, result)
                reply.results.add(id=item.id, error=error_to_proto(result))
            else:
                output = PredictConverter.from_domain(result, model, answered)
                reply.results.add(id=item.id, output=output)
        return reply

    async def _infer(
        self, model: str, instances: list[Any], version: str | None, ctx: CallContext
    ) -> tuple[list[Any], str | None]:
        """One ``infer``; when the model rejected the whole call for one item (a model without batching
        raises for the call), each item again alone, so the error reaches only the item that caused it."""
        try:
            return await self._dataplane.infer_served(model, instances, version=version, ctx=ctx)
        except ModelwireError as exc:
            if exc.code in CALL_ERRORS:
                raise
            if len(instances) == 1:
                return [exc], version
        results: list[Any] = []
        for instance in instances:
            try:
                (result,), version = await self._dataplane.infer_served(
                    model, [instance], version=version, ctx=ctx
                )
            except ModelwireError as exc:
                if exc.code in CALL_ERRORS:
                    raise
                result = exc
            results.append(result)
        return results, version


def _unavailable(result: Any) -> bool:
    return isinstance(result, ModelwireError) and result.code is ErrorCode.UNAVAILABLE


def _log_internal(item: Any, exc: InternalError) -> None:
    """The item's failure, logged under its caller's request id and trace, unless the call's log lines
    already carry them (the call is the first item's: the gateway sends its trace as the call's)."""
    call = current_trace()
    if call is not None and call.request_id == item.request_id:
        return
    token = use_trace(TraceContext.incoming(item.traceparent or None, item.request_id or None))
    try:
        logger.warning("batch item %s failed: %s [error_id=%s]", item.id, exc.message, exc.error_id)
    finally:
        reset_trace(token)


def _item_spans(items: Any, results: list[Any], model: str, started: float) -> None:
    """Export on: one span per item, a child of its caller's span, covering the batch's run."""
    tracer = active_tracer()
    if tracer is None:
        return
    begin = wall_ns_ago(time.monotonic() - started)
    for item, result in zip(items, results, strict=True):
        parent = parent_context(item.traceparent or None)
        attributes: dict[str, str | int] = {
            "modelwire.model": model,
            "modelwire.request_id": valid_request_id(item.request_id or None),
            "modelwire.batch.size": len(items),
        }
        span = tracer.start_span(
            "modelwire.v1.BatchPredictor/PredictBatch item",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=begin,
        )
        if isinstance(result, ModelwireError):
            record_failure(span, result)
        span.end()
