"""Open Inference Protocol tensors in the domain, free of any transport.

Both the REST ``/v2`` routes (JSON and the binary-tensor extension) and the gRPC
``GRPCInferenceService`` (typed contents and ``raw_*_contents``) convert to and from these types, and
share the raw little-endian codec below.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwire.errors import InvalidInputError
from modelwire.model.base import Datatype, ModelInfo, TensorSpec

__all__ = [
    "InferRequest",
    "InferResponse",
    "RequestedOutput",
    "Tensor",
    "decode_raw",
    "encode_raw",
    "instances_to_tensors",
    "tensors_to_instances",
]

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


@dataclass(slots=True)
class Tensor:
    """A named, typed, shaped tensor; ``data`` is flat (row-major)."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool = False


@dataclass(slots=True)
class InferRequest:
    inputs: list[Tensor]
    id: str | None = None
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def _count(shape: Sequence[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def decode_raw(datatype: str, raw: bytes, shape: Sequence[int]) -> list[Any]:
    """Decode little-endian raw tensor bytes (BYTES: 4-byte length prefix per element) to a flat list."""
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"shape {list(shape)} has a negative dimension")
    expected = _count(shape)
    if datatype == "BYTES":
        out: list[Any] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InvalidInputError("BYTES tensor is truncated (incomplete length prefix)")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise InvalidInputError("BYTES tensor is truncated (element shorter than its length)")
            out.append(raw[offset : offset + length])
            offset += length
        if len(out) != expected:
            raise InvalidInputError(
                f"BYTES tensor holds {len(out)} elements, shape {list(shape)} needs {expected}"
            )
        return out
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise InvalidInputError(f"unsupported datatype {datatype!r}")
    itemsize = np.dtype(dtype).itemsize
    if len(raw) != expected * itemsize:
        raise InvalidInputError(
            f"{datatype} tensor holds {len(raw)} bytes ({len(raw) / itemsize:g} elements), "
            f"shape {list(shape)} needs {expected}"
        )
    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    values: list[Any] = array.tolist()
    return values


def encode_raw(datatype: str, data: Sequence[Any]) -> bytes:
    """The inverse of ``decode_raw``."""
    if datatype == "BYTES":
        parts = []
        for item in data:
            blob = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(blob)))
            parts.append(blob)
        return b"".join(parts)
    dtype = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
    return np.asarray(data, dtype=dtype).tobytes()


def _rows(tensor: Tensor, spec: TensorSpec | None) -> list[Any]:
    shape = list(tensor.shape)
    if not shape:
        raise InvalidInputError(f"input {tensor.name!r} needs a batch dimension")
    if any(d < 0 for d in shape):
        raise InvalidInputError(
            f"input {tensor.name!r} has a negative dimension in shape {shape}",
            field=f"inputs.{tensor.name}.shape",
        )
    if _count(shape) != len(tensor.data):
        raise InvalidInputError(
            f"input {tensor.name!r} has {len(tensor.data)} elements but shape {shape} needs {_count(shape)}",
            field=f"inputs.{tensor.name}.data",
        )
    data: list[Any] = tensor.data
    if tensor.datatype == "BYTES":
        try:
            data = [v.decode("utf-8") if isinstance(v, bytes | bytearray) else v for v in data]
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"input {tensor.name!r} is not valid UTF-8: {exc}") from exc
    batch = shape[0]
    inner = shape[1:]
    declared_rank = len(spec.shape) if spec is not None else len(shape)
    # A client sending [N, 1] for a declared [N] input means N scalars (tritonclient users often do).
    if declared_rank == 1 and all(d == 1 for d in inner):
        return list(data)
    width = _count(inner)
    if not inner:
        return list(data)
    rows = [data[i * width : (i + 1) * width] for i in range(batch)]
    if len(inner) > 1:
        return [np.asarray(row, dtype=object).reshape(inner).tolist() for row in rows]
    return rows


def tensors_to_instances(info: ModelInfo, inputs: Sequence[Tensor]) -> list[Any]:
    """Split request tensors along the batch dimension into the instances ``Model.predict`` takes."""
    if not inputs:
        raise InvalidInputError("the request has no inputs", field="inputs")
    specs = {spec.name: spec for spec in info.inputs}
    if len(info.inputs) == 1 and len(inputs) == 1:
        tensor = inputs[0]
        spec = info.inputs[0]
        if tensor.name != spec.name:
            raise InvalidInputError(
                f"unknown input {tensor.name!r}; the model takes {spec.name!r}", field="inputs"
            )
        _check_type(tensor, spec)
        return _rows(tensor, spec)
    names = {t.name for t in inputs}
    missing = set(specs) - names
    unknown = names - set(specs)
    if missing or unknown:
        raise InvalidInputError(
            f"inputs must be exactly {sorted(specs)}; missing {sorted(missing)}, unknown {sorted(unknown)}",
            field="inputs",
        )
    columns = {}
    for tensor in inputs:
        _check_type(tensor, specs[tensor.name])
        columns[tensor.name] = _rows(tensor, specs[tensor.name])
    sizes = {len(rows) for rows in columns.values()}
    if len(sizes) != 1:
        raise InvalidInputError("all inputs must have the same batch size", field="inputs")
    (size,) = sizes
    return [{name: rows[i] for name, rows in columns.items()} for i in range(size)]


def _check_type(tensor: Tensor, spec: TensorSpec) -> None:
    if tensor.datatype != spec.datatype.value:
        raise InvalidInputError(
            f"input {tensor.name!r} must be {spec.datatype.value}, not {tensor.datatype}",
            field=f"inputs.{tensor.name}.datatype",
        )


def _infer_datatype(value: Any) -> str:
    while isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, bool):
        return Datatype.BOOL.value
    if isinstance(value, int):
        return Datatype.INT64.value
    if isinstance(value, float):
        return Datatype.FP64.value
    return Datatype.BYTES.value


def _flatten(values: list[Any]) -> tuple[list[Any], list[int]]:
    array = np.asarray(values, dtype=object)
    return array.reshape(-1).tolist(), list(array.shape)


def instances_to_tensors(
    info: ModelInfo, outputs: Sequence[Any], requested: Sequence[str] = ()
) -> list[Tensor]:
    """Stack per-instance outputs back into tensors (one per output name)."""
    specs = {spec.name: spec for spec in info.outputs}
    if outputs and isinstance(outputs[0], dict):
        names = list(outputs[0])
        columns = {name: [out[name] for out in outputs] for name in names}
    else:
        name = info.outputs[0].name if info.outputs else "output"
        columns = {name: list(outputs)}
    if requested:
        unknown = [n for n in requested if n not in columns]
        if unknown:
            raise InvalidInputError(
                f"unknown outputs {unknown}; the model has {sorted(columns)}", field="outputs"
            )
        columns = {n: columns[n] for n in requested}
    tensors = []
    for name, values in columns.items():
        flat, shape = _flatten(values)
        spec = specs.get(name)
        datatype = spec.datatype.value if spec is not None else _infer_datatype(values)
        tensors.append(Tensor(name, datatype, shape, flat))
    return tensors
