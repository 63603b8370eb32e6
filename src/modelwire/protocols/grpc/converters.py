"""Protobuf <-> domain, for both gRPC services. Pure functions: no I/O, no calls into the core.

The Open Inference Protocol carries tensor data either typed (``contents``, one repeated field per datatype)
or raw (``raw_input_contents``: little-endian bytes, the same codec as REST's binary extension). A request
sent raw is answered raw, since that is what tritonclient.grpc sends and reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc

from modelwire.core.dataplane import TRAFFIC_KEY_HEADER, CallContext
from modelwire.core.instance_codec import decode_instance
from modelwire.core.tensors import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    decode_raw,
    encode_raw,
)
from modelwire.errors import InternalError, InvalidInputError, ModelwireError
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb

__all__ = [
    "DEFAULT_MODEL",
    "InferConverter",
    "PredictCall",
    "PredictConverter",
    "call_context",
    "metadata_from_domain",
    "send_version",
]

DEFAULT_MODEL = "sentiment"

# Which InferTensorContents field holds each datatype (FP16 travels raw only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def call_context(context: grpc.aio.ServicerContext[Any, Any]) -> CallContext:
    """The client's deadline, moved onto the core's ``time.monotonic()`` clock."""
    remaining: float | None = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    key = next((str(v) for k, v in context.invocation_metadata() or () if k == TRAFFIC_KEY_HEADER), None)
    return CallContext(protocol="grpc", deadline=deadline, traffic_key=key)


def send_version(context: grpc.aio.ServicerContext[Any, Any], version: str | None) -> None:
    """The ``model-version`` trailing metadata: which version answered."""
    if version is not None:
        context.set_trailing_metadata((("model-version", version),))


# -- modelwire.v1.Predictor --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PredictCall:
    """One Predictor input in domain terms."""

    model: str
    version: str | None
    instance: Any
    """The ``text``, or the decoded ``instance`` when that is set (any value the model takes)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


class PredictConverter:
    """``Input``/``StreamInput`` to a ``PredictCall``; a model output or item error back to protobuf."""

    @staticmethod
    def to_domain(message: Any, max_depth: int) -> PredictCall:
        instance = decode_instance(message.instance, max_depth) if message.instance else message.text
        return PredictCall(message.model or DEFAULT_MODEL, message.version or None, instance)

    @staticmethod
    def from_domain(result: Any, model: str, version: str) -> Any:
        output = pb.Output(model=model, version=version)
        fields = _jsonable(result) if isinstance(result, dict) else {"output": _jsonable(result)}
        sentiment, confidence = fields.get("sentiment"), fields.get("confidence")
        if isinstance(sentiment, str):
            output.sentiment = sentiment
        if isinstance(confidence, int | float):
            output.confidence = float(confidence)
        output.result.update(fields)
        return output

    @staticmethod
    def models_from_domain(models: list[dict[str, Any]]) -> Any:
        """``DataPlane.list_models()`` as a ``ListModelsResponse``."""
        return pb.ListModelsResponse(models=[pb.Model(**model) for model in models])

    @staticmethod
    def error_from_domain(exc: ModelwireError) -> Any:
        error = pb.Error(
            code=exc.code.value, message=exc.message, field=exc.field or "", reason=exc.reason or ""
        )
        if isinstance(exc, InternalError):
            error.error_id = exc.error_id
        return error


# -- inference.GRPCInferenceService ------------------------------------------------------------------------


def _parameters(entries: Any) -> dict[str, Any]:
    out = {}
    for key, parameter in entries.items():
        which = parameter.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(parameter, which)
    return out


def _set_parameters(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        elif isinstance(value, str):
            target[key].string_param = value


def _typed(tensor: Any, index: int) -> list[Any]:
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise InvalidInputError(
            f"input {tensor.name!r}: {tensor.datatype} data must be sent in raw_input_contents",
            field=f"inputs[{index}].datatype",
        )
    return list(getattr(tensor.contents, field))


class InferConverter:
    """``ModelInferRequest`` to the domain ``InferRequest``; ``InferResponse`` to ``ModelInferResponse``."""

    @staticmethod
    def to_domain(message: Any) -> tuple[InferRequest, bool]:
        """The request, and whether it came raw (then the response goes raw too)."""
        raw = list(message.raw_input_contents)
        if raw and len(raw) != len(message.inputs):
            raise InvalidInputError(
                f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs",
                field="raw_input_contents",
            )
        inputs = []
        for i, tensor in enumerate(message.inputs):
            shape = list(tensor.shape)
            data = decode_raw(tensor.datatype, raw[i], shape) if raw else _typed(tensor, i)
            inputs.append(Tensor(tensor.name, tensor.datatype, shape, data, _parameters(tensor.parameters)))
        outputs = [RequestedOutput(o.name) for o in message.outputs]
        request = InferRequest(inputs, message.id or None, outputs, _parameters(message.parameters))
        return request, bool(raw)

    @staticmethod
    def from_domain(response: InferResponse, *, raw: bool) -> Any:
        raw = raw or any(t.datatype not in _CONTENTS for t in response.outputs)
        message = oip.ModelInferResponse(
            model_name=response.model_name, model_version=response.model_version, id=response.id or ""
        )
        _set_parameters(message.parameters, response.parameters)
        for tensor in response.outputs:
            out = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            if raw:
                message.raw_output_contents.append(encode_raw(tensor.datatype, tensor.data))
            elif tensor.datatype == "BYTES":
                out.contents.bytes_contents.extend(
                    v if isinstance(v, bytes) else str(v).encode() for v in tensor.data
                )
            else:
                getattr(out.contents, _CONTENTS[tensor.datatype]).extend(tensor.data)
        return message


def metadata_from_domain(metadata: dict[str, Any]) -> Any:
    """``DataPlane.model_metadata()`` as a ``ModelMetadataResponse``."""

    def tensors(specs: list[dict[str, Any]]) -> list[Any]:
        return [oip.ModelMetadataResponse.TensorMetadata(**spec) for spec in specs]

    return oip.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=tensors(metadata["inputs"]),
        outputs=tensors(metadata["outputs"]),
    )
