"""``RemoteModel``: a model served by model services, called over gRPC. The gateway's registry holds these.

It is a ``Model`` like any other, so the gateway's ``DataPlane`` (limits, deadlines, metrics) and every
adapter (REST, WebSocket, SSE, jobs, its own gRPC port) serve it unchanged. ``predict`` forwards the batch
with the remaining time budget (``core/deadline.py``) as the gRPC timeout and the trace context as
metadata:

- text instances go to ``modelwire.v1.Predictor``: ``Predict`` for one, ``PredictStream`` for a batch (its
  per-item errors stay per item);
- anything else goes to the Open Inference Protocol's ``ModelInfer`` as raw tensors, built from the model's
  metadata with the core's own tensor codec (a failed item fails the whole batch there).

An upstream status becomes the same ``ModelwireError`` again (``client._grpc.map_grpc_errors`` reads the
``ErrorInfo`` the model service sent), so the REST table maps it as if the model ran here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from modelwire.client._grpc import _output, _stream_error, map_grpc_errors
from modelwire.core.deadline import remaining_s
from modelwire.core.tensors import Tensor, decode_raw, encode_raw, instances_to_tensors, tensors_to_instances
from modelwire.errors import DeadlineExceededError, ErrorCode, InternalError, ModelwireError
from modelwire.model.base import Datatype, Model, ModelInfo, TensorSpec
from modelwire.observability.tracing import trace_metadata
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc

__all__ = ["RemoteModel", "UpstreamGroup", "info_from_metadata"]

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
_INTEGERS = {d.value for d in Datatype if d.value.startswith(("INT", "UINT"))}


class UpstreamGroup:
    """The channel to a group of model services serving the same models, with its stubs."""

    def __init__(self, channel: grpc.aio.Channel, where: str, auth: tuple[tuple[str, str], ...] = ()) -> None:
        self.channel = channel
        self.where = where
        self.auth = auth
        """``authorization`` metadata for model services whose auth is on (``gateway.upstream_key``)."""
        self.predictor = pb_grpc.PredictorStub(channel)
        self.inference = oip_grpc.GRPCInferenceServiceStub(channel)


Groups = Callable[[str, str], UpstreamGroup]
"""``(name, version) -> UpstreamGroup``: where calls for that model go now (``Router.group``)."""


@dataclass(frozen=True, slots=True)
class _Call:
    group: UpstreamGroup
    timeout_s: float | None
    metadata: tuple[tuple[str, str], ...]


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

    def __init__(self, info: ModelInfo, groups: Groups) -> None:
        super().__init__(info.name, info.version)
        self.remote_info = info
        self.platform = info.platform  # type: ignore[misc]  # the upstream's, per instance
        self._groups = groups

    def info(self) -> ModelInfo:
        return self.remote_info

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        timeout = remaining_s()
        if timeout is not None and timeout <= 0:
            raise DeadlineExceededError(f"no time left to call the model services for {self.name!r}")
        group = self._groups(self.name, self.version)
        call = _Call(group, timeout, group.auth + trace_metadata())
        try:
            with map_grpc_errors(group.where):
                if all(isinstance(item, str) for item in batch):
                    if len(batch) == 1:
                        results = [await self._predict(call, batch[0])]
                    else:
                        results = await self._predict_stream(call, batch)
                else:
                    results = await self._infer(call, batch)
        except InternalError as exc:
            _log_internal(self.name, exc)
            raise
        for result in results:
            if isinstance(result, InternalError):
                _log_internal(self.name, result)
        return results

    async def predict_stream(self, instance: Any) -> AsyncIterator[Any]:
        (result,) = await self.predict([instance])
        if isinstance(result, ModelwireError):
            raise result
        yield result

    async def _predict(self, call: _Call, text: str) -> Any:
        request = pb.Input(text=text, model=self.name, version=self.version)
        try:
            with map_grpc_errors(call.group.where):
                reply = await call.group.predictor.Predict(
                    request, timeout=call.timeout_s, metadata=call.metadata
                )
        except ModelwireError as exc:
            if exc.code in CALL_ERRORS:
                raise
            return exc
        return self._result(_output(reply))

    async def _predict_stream(self, call: _Call, texts: Sequence[str]) -> list[Any]:
        inputs = [
            pb.StreamInput(id=str(i), text=text, model=self.name, version=self.version)
            for i, text in enumerate(texts)
        ]
        results: list[Any] = [None] * len(texts)
        stream = call.group.predictor.PredictStream(
            iter(inputs), timeout=call.timeout_s, metadata=call.metadata
        )
        try:
            async for reply in stream:
                index = int(reply.id) if reply.id.isdigit() else -1
                if not 0 <= index < len(texts):
                    raise InternalError(f"a model service answered an unknown input ({reply.id!r:.20})")
                if reply.WhichOneof("result") == "error":
                    results[index] = _stream_error(reply.error)
                else:
                    results[index] = self._result(_output(reply.output))
        finally:
            stream.cancel()
        answered = sum(result is not None for result in results)
        if answered != len(texts):
            raise InternalError(f"a model service answered {answered} of {len(texts)} inputs")
        return results

    async def _infer(self, call: _Call, batch: Sequence[Any]) -> list[Any]:
        info = self.remote_info
        as_outputs = ModelInfo(info.name, info.version, info.platform, (), info.inputs)
        request = oip.ModelInferRequest(model_name=self.name, model_version=self.version)
        for tensor in instances_to_tensors(as_outputs, batch):
            request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            request.raw_input_contents.append(encode_raw(tensor.datatype, tensor.data))
        reply = await call.group.inference.ModelInfer(request, timeout=call.timeout_s, metadata=call.metadata)
        raw = list(reply.raw_output_contents)  # a raw request is answered raw
        tensors = [
            Tensor(out.name, out.datatype, list(out.shape), decode_raw(out.datatype, raw[i], list(out.shape)))
            for i, out in enumerate(reply.outputs)
        ]
        as_inputs = ModelInfo(info.name, info.version, info.platform, info.outputs, ())
        return tensors_to_instances(as_inputs, tensors)

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
