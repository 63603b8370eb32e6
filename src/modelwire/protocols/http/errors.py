"""The one table from ``ErrorCode`` to HTTP status, and the one JSON error shape of the REST API.

``{"error": {"code": "INVALID_ARGUMENT", "message": "...", "field": "$.text"}}`` everywhere, except the
Open Inference Protocol routes (``/v2``), which keep that protocol's ``{"error": "message"}``.
"""

from __future__ import annotations

import logging
import math

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from modelwire.errors import (
    ErrorCode,
    InternalError,
    MethodNotAllowedError,
    ModelwireError,
    NotFoundError,
    UnsupportedMediaTypeError,
    error_from_code,
)

__all__ = [
    "HTTP_STATUS",
    "error_response",
    "handle_http_exception",
    "handle_modelwire_error",
    "handle_unexpected",
]

logger = logging.getLogger("modelwire.rest")

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FAILED_PRECONDITION: 409,
    ErrorCode.ALREADY_EXISTS: 422,  # the IETF Idempotency-Key draft: a key reused with another body
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}

_FROM_STATUS = {status: code for code, status in HTTP_STATUS.items()}
_encoder = msgspec.json.Encoder()


def error_response(exc: ModelwireError, *, v2: bool = False) -> Response:
    body = {"error": exc.message} if v2 else {"error": exc.to_dict()}
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return Response(
        _encoder.encode(body), HTTP_STATUS[exc.code], headers=headers, media_type="application/json"
    )


def _is_v2(request: Request) -> bool:
    return request.url.path.startswith("/v2")


async def handle_modelwire_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelwireError)
    return error_response(exc, v2=_is_v2(request))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    code = _FROM_STATUS.get(exc.status_code, ErrorCode.INVALID_ARGUMENT)
    if exc.status_code == 404:
        err: ModelwireError = NotFoundError(f"no route {request.method} {request.url.path}")
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        err = MethodNotAllowedError(
            f"method {request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        )
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    elif exc.status_code == 415:
        err = UnsupportedMediaTypeError(str(exc.detail))
    else:
        err = error_from_code(code.value, str(exc.detail))
    response = error_response(err, v2=_is_v2(request))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    err = InternalError()
    logger.error(
        "unhandled error on %s %s [error_id=%s]", request.method, request.url.path, err.error_id, exc_info=exc
    )
    return error_response(err, v2=_is_v2(request))
