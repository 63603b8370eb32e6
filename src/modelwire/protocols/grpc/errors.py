"""The one table from ``ErrorCode`` to gRPC status, and the one boundary where errors become statuses.

Every error status carries rich details (``grpc-status-details-bin``, read with ``grpc_status.rpc_status``):
``google.rpc.ErrorInfo`` always (``reason`` is modelwire's ``ErrorCode``, so a client can rebuild the exact
error; ``metadata`` holds ``error_id`` for INTERNAL and ``reason`` for the errors that have one, such as
``MODEL_NOT_FOUND``), ``BadRequest`` when the error names a field, and
``RetryInfo`` when trying again later makes sense.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from modelwire.errors import ErrorCode, InternalError, ModelwireError

__all__ = ["ERROR_DOMAIN", "GRPC_STATUS", "abort_with_error", "error_message", "map_errors", "to_status"]

logger = logging.getLogger("modelwire.grpc")

ERROR_DOMAIN = "modelwire"

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.METHOD_NOT_ALLOWED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def error_message(exc: ModelwireError) -> str:
    """The status message: INTERNAL ones carry the error id the server logged."""
    if isinstance(exc, InternalError):
        return f"{exc.message} (error_id={exc.error_id})"
    return exc.message


def to_status(exc: ModelwireError) -> grpc.Status:
    """The status (code, message, rich details as trailing metadata) that renders ``exc``."""
    code = GRPC_STATUS[exc.code]
    metadata = {str(k): str(v) for k, v in exc.details.items() if isinstance(v, str | int | float)}
    if exc.reason is not None:
        metadata["reason"] = exc.reason
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=exc.code.value, domain=ERROR_DOMAIN, metadata=metadata))
    ]
    if exc.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.message)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if exc.retry_after_s is not None:
        seconds = max(0.0, exc.retry_after_s)
        delay = duration_pb2.Duration(seconds=math.floor(seconds), nanos=int((seconds % 1) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code.value[0], message=error_message(exc), details=details)
    return rpc_status.to_status(status)


async def abort_with_error(context: grpc.aio.ServicerContext[Any, Any], exc: ModelwireError) -> NoReturn:
    """End the call with ``exc``'s status. Never returns (grpc raises to unwind the handler)."""
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover


def _internal(exc: Exception, where: str) -> InternalError:
    err = InternalError()
    logger.error("unhandled error in %s [error_id=%s]", where, err.error_id, exc_info=exc)
    return err


F = TypeVar("F", bound=Callable[..., Any])


def map_errors(method: F) -> F:
    """Decorate a servicer method (coroutine or async generator) so that what it raises becomes a status.

    ``ModelwireError`` renders through ``GRPC_STATUS``; anything else is logged with an error id and
    answered INTERNAL with that id (never a traceback). Cancellation passes through.
    """
    where = method.__qualname__

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except ModelwireError as exc:
                await abort_with_error(context, exc)
            except (grpc.aio.AbortError, grpc.aio.UsageError):
                raise
            except Exception as exc:  # noqa: BLE001 - the boundary: anything else is INTERNAL
                await abort_with_error(context, _internal(exc, where))

        return cast(F, stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await cast(Callable[..., Awaitable[Any]], method)(self, request, context)
        except ModelwireError as exc:
            await abort_with_error(context, exc)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: anything else is INTERNAL
            await abort_with_error(context, _internal(exc, where))

    return cast(F, unary)
