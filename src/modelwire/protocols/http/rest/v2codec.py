"""The Open Inference Protocol's HTTP body, JSON and binary-tensor extension, as pure functions.

Binary extension (as Triton and tritonclient speak it): the header ``Inference-Header-Content-Length: N``
says the first N bytes are the JSON request; the rest are the raw tensors, in input order, for inputs whose
``parameters.binary_data_size`` gives their length. Outputs go back binary when the request asks
(``outputs[i].parameters.binary_data`` or request ``parameters.binary_data_output``), the same way.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from modelwire.core.nesting import DEFAULT_MAX_DEPTH
from modelwire.core.tensors import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    decode_raw,
    encode_raw,
)
from modelwire.errors import InvalidInputError
from modelwire.protocols.http.body import decode_json
from modelwire.protocols.http.schemas import V2InferRequest

__all__ = ["HEADER_LENGTH", "decode_request", "encode_response"]

HEADER_LENGTH = "inference-header-content-length"


def _flatten(data: Any, name: str) -> list[Any]:
    if data is None:
        raise InvalidInputError(f"input {name!r} has no data", field=f"$.inputs[{name}].data")
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        try:
            flat: list[Any] = np.asarray(data, dtype=object).reshape(-1).tolist()
        except ValueError as exc:
            raise InvalidInputError(f"input {name!r} data is ragged: {exc}") from None
        return flat
    return data


def decode_request(
    body: bytes, header_length: str | None, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> InferRequest:
    """Parse a JSON or binary-extension infer request into the domain ``InferRequest``."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length {header_length!r} does not fit the body"
            )
        json_size = int(header_length)
        head, binary = body[:json_size], memoryview(body)[json_size:]
    else:
        head, binary = body, memoryview(b"")
    parsed = decode_json(head, V2InferRequest, max_depth=max_depth)
    offset = 0
    inputs = []
    for i, raw in enumerate(parsed.inputs):
        size = raw.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInputError(
                    f"input {raw.name!r}: binary_data_size {size!r} does not fit the body"
                )
            data = decode_raw(raw.datatype, bytes(binary[offset : offset + size]), raw.shape)
            offset += size
        else:
            data = _flatten(raw.data, raw.name)
        params = {k: v for k, v in raw.parameters.items() if k != "binary_data_size"}
        inputs.append(Tensor(raw.name, raw.datatype, list(raw.shape), data, params))
        if raw.datatype not in {"BYTES"} and data and isinstance(data[0], str):
            raise InvalidInputError(
                f"input {raw.name!r} is {raw.datatype} but holds strings", field=f"$.inputs[{i}].data"
            )
    if offset != len(binary):
        raise InvalidInputError(f"{len(binary) - offset} bytes of binary data belong to no input")
    default_binary = bool(parsed.parameters.get("binary_data_output", False))
    outputs = [
        RequestedOutput(o.name, bool(o.parameters.get("binary_data", default_binary))) for o in parsed.outputs
    ]
    return InferRequest(inputs, parsed.id, outputs, dict(parsed.parameters))


def _jsonable(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in tensor.data]
    return tensor.data


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """Render the response; returns (body, JSON header length or None when there is no binary part)."""
    binary_names = {o.name for o in request.outputs if o.binary}
    if not request.outputs and request.parameters.get("binary_data_output"):
        binary_names = {t.name for t in response.outputs}
    blobs: list[bytes] = []
    outputs = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.name in binary_names:
            blob = encode_raw(tensor.datatype, tensor.data)
            blobs.append(blob)
            entry["parameters"] = {"binary_data_size": len(blob)}
        else:
            entry["data"] = _jsonable(tensor)
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        document["id"] = response.id
    document["outputs"] = outputs
    head = msgspec.json.encode(document)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
