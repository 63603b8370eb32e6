"""Request and response bodies of the REST API (msgspec structs; their JSON Schemas feed the OpenAPI doc)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "ModelList",
    "ModelSummary",
    "ModelVersion",
    "NonEmpty",
    "PredictRequest",
    "Prediction",
    "Predictions",
    "V2InferRequest",
    "V2Input",
    "V2RequestedOutput",
]


NonEmpty = msgspec.Meta(min_length=1)
"""A batch holds at least one item (``minItems: 1`` in the OpenAPI document; an empty batch is 400)."""


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of ``text`` (one input), ``texts`` (a batch), ``instance`` or ``instances`` (any model)."""

    text: str | msgspec.UnsetType = msgspec.UNSET
    texts: Annotated[list[str], NonEmpty] | msgspec.UnsetType = msgspec.UNSET
    instance: Any | msgspec.UnsetType = msgspec.UNSET
    instances: Annotated[list[Any], NonEmpty] | msgspec.UnsetType = msgspec.UNSET


class Prediction(msgspec.Struct):
    """The default sentiment model's answer (other models answer their own output object)."""

    sentiment: str
    confidence: float


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    reason: str | None = None
    """Which error of its code: MODEL_NOT_FOUND, JOB_NOT_FOUND, MODEL_NOT_READY, OVERLOADED."""
    field: str | None = None
    retry_after_s: float | None = None
    details: dict[str, Any] | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Predictions(msgspec.Struct):
    """One entry per input, in order: the model's output, or ``{"error": {...}}`` for an item that failed."""

    predictions: list[Prediction | ErrorBody | Any]


class ModelVersion(msgspec.Struct):
    version: str
    ready: bool


class ModelSummary(msgspec.Struct):
    name: str
    default_version: str
    versions: list[ModelVersion]
    platform: str


class ModelList(msgspec.Struct):
    models: list[ModelSummary]


class V2Input(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] = {}


class V2RequestedOutput(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    parameters: dict[str, Any] = {}


class V2InferRequest(msgspec.Struct, forbid_unknown_fields=True):
    inputs: list[V2Input]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[V2RequestedOutput] = []
