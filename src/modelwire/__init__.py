"""modelwire: one model server for every wire (REST, HTTP/2, gRPC, the Open Inference Protocol)."""

from __future__ import annotations

from modelwire._version import __version__
from modelwire.cli import run
from modelwire.client import AsyncClient, Client, Health, ModelSummary, ModelVersionStatus, Prediction
from modelwire.errors import (
    ConfigurationError,
    DeadlineExceededError,
    ErrorCode,
    InternalError,
    InvalidInputError,
    ModelError,
    ModelNotFoundError,
    ModelNotReadyError,
    ModelwireError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from modelwire.model.base import Datatype, Model, TensorSpec
from modelwire.settings import Settings

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigurationError",
    "Datatype",
    "DeadlineExceededError",
    "ErrorCode",
    "Health",
    "InternalError",
    "InvalidInputError",
    "Model",
    "ModelError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelSummary",
    "ModelVersionStatus",
    "ModelwireError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Prediction",
    "ResourceExhaustedError",
    "Settings",
    "TensorSpec",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "__version__",
    "run",
]
