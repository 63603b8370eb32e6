"""``modelwire.v1.Predictor``: the seed's Predict and the bidirectional PredictStream, over the DataPlane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelwire.errors import InvalidInputError, ModelwireError
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.converters import PredictCall, PredictConverter, call_context, send_version
from modelwire.protocols.grpc.errors import map_errors

__all__ = ["PredictorServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class PredictorServicer(pb_grpc.PredictorServicer):  # type: ignore[misc]
    """Parses ``Input``/``StreamInput``, calls ``services.dataplane``, renders ``Output``/``StreamOutput``.

    Errors of a whole call become gRPC statuses (``errors.map_errors``); in a stream, an item's error is
    sent on that item's ``StreamOutput`` and the stream goes on.
    """

    def __init__(self, services: Facades) -> None:
        self._dataplane = services.dataplane
        self._max_depth = services.settings.limits.max_json_depth

    def _version(self, call: PredictCall) -> str:
        return self._dataplane.resolve_version(call.model, call.version)

    @map_errors
    async def Predict(self, request: Any, context: Context) -> Any:
        call = PredictConverter.to_domain(request, self._max_depth)
        ctx = call_context(context)
        result = await self._dataplane.predict(call.model, call.instance, version=call.version, ctx=ctx)
        version = ctx.served.version or self._version(call)
        send_version(context, version)
        return PredictConverter.from_domain(result, call.model, version)

    @map_errors
    async def ListModels(self, request: Any, context: Context) -> Any:
        return PredictConverter.models_from_domain(self._dataplane.list_models())

    @map_errors
    async def PredictStream(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        call = PredictConverter.to_domain(first, self._max_depth)

        async def items() -> AsyncIterator[tuple[str, Any]]:
            yield first.id, call.instance
            async for message in request_iterator:
                other = PredictConverter.to_domain(message, self._max_depth)
                named = message.model or message.version
                if named and (other.model, other.version) != (call.model, call.version):
                    raise InvalidInputError(
                        f"one stream serves one model: {call.model!r} was chosen by its first input",
                        field="model",
                    )
                yield message.id, other.instance

        ctx = call_context(context)
        # one stream, one version (a split sticky per entity follows the first input's entity)
        version = self._dataplane.pick_version(call.model, call.version, ctx=ctx, instances=[call.instance])
        send_version(context, version)
        results = self._dataplane.stream(call.model, items(), version=version, ctx=ctx)
        async for request_id, result in results:
            if isinstance(result, ModelwireError):
                yield pb.StreamOutput(id=request_id, error=PredictConverter.error_from_domain(result))
            else:
                yield pb.StreamOutput(
                    id=request_id, output=PredictConverter.from_domain(result, call.model, version)
                )
