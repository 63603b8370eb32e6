"""The one error tree.

Every error modelwire raises on purpose is a ``ModelwireError`` and carries a transport-neutral
``ErrorCode``. Each transport maps the code once, in one table (``protocols/http/errors.py``,
``protocols/grpc/errors.py``); nothing else decides a status.

    ModelwireError
    ├── ConfigurationError          settings, model sources, ports in use       INTERNAL (start-up only)
    ├── InvalidInputError           malformed or wrongly typed input             INVALID_ARGUMENT
    │   ├── PayloadTooLargeError    body or item over a configured limit         PAYLOAD_TOO_LARGE
    │   └── MethodNotAllowedError   a route called with the wrong method         METHOD_NOT_ALLOWED
    ├── UnsupportedMediaTypeError   a body the endpoint cannot read              UNSUPPORTED_MEDIA_TYPE
    ├── NotFoundError               unknown route                                NOT_FOUND
    │   ├── ModelNotFoundError      unknown model or version                     NOT_FOUND (MODEL_NOT_FOUND)
    │   └── JobNotFoundError        unknown (or purged) job id                   NOT_FOUND (JOB_NOT_FOUND)
    ├── FailedPreconditionError     the target's state forbids it (cancel a     FAILED_PRECONDITION
    │                               finished job, retry one that did not fail)
    ├── IdempotencyKeyReusedError   an Idempotency-Key sent with another body    ALREADY_EXISTS
    ├── UnauthenticatedError        no or bad credentials                        UNAUTHENTICATED
    ├── PermissionDeniedError       credentials lack a scope                     PERMISSION_DENIED
    ├── ResourceExhaustedError      a quota ran out (rate limits)                RESOURCE_EXHAUSTED
    │   └── SlowConsumerError       an event subscriber fell too far behind      RESOURCE_EXHAUSTED
    ├── DeadlineExceededError       the time budget ran out                      DEADLINE_EXCEEDED
    ├── UnavailableError            not ready, shutting down                     UNAVAILABLE
    │   ├── ModelNotReadyError      model known but not loaded                   UNAVAILABLE (MODEL_NOT_READY)
    │   └── OverloadedError         too much in flight (load shedding)           UNAVAILABLE (OVERLOADED)
    └── InternalError               anything unexpected, with an ``error_id``    INTERNAL
        └── ModelError              the model itself raised                      INTERNAL

A subclass a client should tell from its parent has a ``reason`` (in brackets above): the REST error body's
``reason``, the ``reason`` in gRPC's ``google.rpc.ErrorInfo`` metadata and in WebSocket error replies.
``error_from_code`` rebuilds the subclass from it, so ``ModelNotFoundError`` reaches the client on every wire.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

__all__ = [
    "ConfigurationError",
    "DeadlineExceededError",
    "ErrorCode",
    "FailedPreconditionError",
    "IdempotencyKeyReusedError",
    "InternalError",
    "InvalidInputError",
    "JobNotFoundError",
    "MethodNotAllowedError",
    "ModelError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelwireError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SlowConsumerError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "error_from_code",
]


class ErrorCode(enum.StrEnum):
    """What went wrong, in words every transport can map."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class ModelwireError(Exception):
    """Root of every error modelwire raises on purpose.

    ``field`` names the offending input as a JSON path (``$.texts[3]``) when there is one;
    ``retry_after_s`` tells a client when trying again makes sense.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    reason: str | None = None
    """Which error of its ``code`` this is, for clients (``MODEL_NOT_FOUND``); ``None`` for the base ones."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The transport-neutral description every adapter renders."""
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.field is not None:
            out["field"] = self.field
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
        if self.details:
            out["details"] = self.details
        return out


class ConfigurationError(ModelwireError):
    """Settings, model sources or ports that cannot work; raised at start-up."""


class InvalidInputError(ModelwireError):
    code = ErrorCode.INVALID_ARGUMENT


class PayloadTooLargeError(InvalidInputError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class MethodNotAllowedError(InvalidInputError):
    code = ErrorCode.METHOD_NOT_ALLOWED


class UnsupportedMediaTypeError(ModelwireError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class NotFoundError(ModelwireError):
    code = ErrorCode.NOT_FOUND


class ModelNotFoundError(NotFoundError):
    """Unknown model name, or a version the model does not have."""

    reason = "MODEL_NOT_FOUND"


class JobNotFoundError(NotFoundError):
    """No job with that id (never submitted, or removed after its retention)."""

    reason = "JOB_NOT_FOUND"


class FailedPreconditionError(ModelwireError):
    """The target's current state does not allow the operation: cancel a finished job, retry a running one."""

    code = ErrorCode.FAILED_PRECONDITION


class IdempotencyKeyReusedError(ModelwireError):
    """An ``Idempotency-Key`` already names a request with a different body."""

    code = ErrorCode.ALREADY_EXISTS


class UnauthenticatedError(ModelwireError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(ModelwireError):
    code = ErrorCode.PERMISSION_DENIED


class ResourceExhaustedError(ModelwireError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class SlowConsumerError(ResourceExhaustedError):
    """An event subscriber did not keep up: its bounded queue filled, so it was dropped."""


class DeadlineExceededError(ModelwireError):
    code = ErrorCode.DEADLINE_EXCEEDED


class UnavailableError(ModelwireError):
    code = ErrorCode.UNAVAILABLE


class ModelNotReadyError(UnavailableError):
    """The model exists but is not loaded (yet, or any more)."""

    reason = "MODEL_NOT_READY"


class OverloadedError(UnavailableError):
    """More work in flight than the server accepts; try again after ``retry_after_s``."""

    reason = "OVERLOADED"


class InternalError(ModelwireError):
    """Something unexpected. Carries an ``error_id`` that is also in the server log; never a traceback."""

    code = ErrorCode.INTERNAL

    def __init__(self, message: str = "internal error", *, error_id: str | None = None) -> None:
        self.error_id = error_id or uuid.uuid4().hex[:16]
        super().__init__(message, details={"error_id": self.error_id})


class ModelError(InternalError):
    """The model's own code raised while predicting."""


_BY_CODE: dict[ErrorCode, type[ModelwireError]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidInputError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaTypeError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.FAILED_PRECONDITION: FailedPreconditionError,
    ErrorCode.ALREADY_EXISTS: IdempotencyKeyReusedError,
    ErrorCode.METHOD_NOT_ALLOWED: MethodNotAllowedError,
    ErrorCode.UNAUTHENTICATED: UnauthenticatedError,
    ErrorCode.PERMISSION_DENIED: PermissionDeniedError,
    ErrorCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    ErrorCode.UNAVAILABLE: UnavailableError,
}


_BY_REASON: dict[str, type[ModelwireError]] = {
    cls.reason: cls  # type: ignore[misc]
    for cls in (ModelNotFoundError, JobNotFoundError, ModelNotReadyError, OverloadedError)
}


def error_from_code(code: str, message: str, *, reason: str | None = None, **kwargs: Any) -> ModelwireError:
    """Rebuild an error from its wire description (used by the client): the subclass ``reason`` names
    when it has that ``code``, else the class of the code."""
    try:
        err_code = ErrorCode(code)
    except ValueError:
        err_code = ErrorCode.INTERNAL
    if err_code is ErrorCode.INTERNAL:
        details = kwargs.get("details") or {}
        return InternalError(message, error_id=details.get("error_id"))
    cls = _BY_REASON.get(reason or "")
    if cls is None or cls.code is not err_code:
        cls = _BY_CODE[err_code]
    return cls(message, **kwargs)
