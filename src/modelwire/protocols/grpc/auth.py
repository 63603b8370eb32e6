"""``SecurityInterceptor``: the one place gRPC calls are authenticated, authorized and rate limited.

How it works. A grpc.aio interceptor runs before the request is read and cannot end the call itself, so
it wraps the method's handler instead: the wrapped behaviour, running in the call's own task, reads the
credentials from the call's metadata (``authorization: Bearer <API key or JWT>``, or the API-key header
``auth.api_key_header`` lower-cased, ``x-api-key``), asks ``SecurityPolicy`` (``grpc_scope``,
``authenticate``, ``admit``), sets ``current_principal`` for the servicer (job ownership, per-model keys)
and calls the original behaviour. A refusal ends the call with the status from the one gRPC error table
(``protocols/grpc/errors.py``): UNAUTHENTICATED, PERMISSION_DENIED naming the missing scope,
RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo``.

- Unary-request methods are admitted after the request is parsed, so ``Predict.model`` and
  ``ModelInfer.model_name`` pick per-model rate-limit rules as the model in a REST path does.
- Streaming calls (``PredictStream``, ``ModelStreamInfer``, ``Events/Subscribe``, ``Jobs/Watch``,
  ``Jobs/SubmitStream``, ``Jobs/Results``) are admitted ONCE, when they open: one rate-limit token per
  stream, not per message; request-streaming ones count under their scope's rule (the model is not known
  yet). The per-model restriction of a key is still checked on every item by the core.
- ``grpc.health.v1.Health`` and server reflection are not admitted: no credentials, no rate limit (load
  balancers and gateways watch health; throttling it would make a busy server look dead).
- Authentication and rate limits both off: nothing is admitted and calls run as ``ANONYMOUS`` (which may
  do everything); the wrapper costs one ``type()`` check a call (docs/grpc-auth.md has the numbers).
- Every handler, guarded or not, parses leniently (``protocols/grpc/decoding.py``): request bytes that are
  not the method's message are INVALID_ARGUMENT (after authentication), not grpc's UNKNOWN.

grpc.aio gives every call a context of its own (copied into the call's task), so the principal set for
a call needs no reset and cannot leak into another call. Wrapped handlers are cached per method (the
credentials are read from the call's context, not from ``HandlerCallDetails``), so a call builds none.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from modelwire.errors import ModelwireError
from modelwire.protocols.grpc.decoding import Malformed, lenient
from modelwire.protocols.grpc.errors import abort_with_error
from modelwire.security.policy import Credentials, SecurityPolicy, grpc_scope
from modelwire.security.principal import Scope, use_principal

__all__ = ["SecurityInterceptor", "peer_address"]

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # not subscriptable at run time
Context = grpc.aio.ServicerContext[Any, Any]
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"

_UNTOUCHED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _field(name: str) -> Callable[[Any], str | None]:
    return lambda request: getattr(request, name, None) or None


# The model a unary request names, for per-model rate-limit rules (REST takes it from the path).
_MODEL_OF: dict[str, Callable[[Any], str | None]] = {
    "/modelwire.v1.Predictor/Predict": _field("model"),
    "/modelwire.v1.BatchPredictor/PredictBatch": _field("model"),
    "/inference.GRPCInferenceService/ModelInfer": _field("model_name"),
}


def _no_model(request: Any) -> str | None:
    return None


def peer_address(peer: str | None) -> str | None:
    """The client IP of a grpc peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``); else ``None``."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        return urllib.parse.unquote(rest.rpartition(":")[0].strip("[]")) or None
    return None  # unix sockets and the like: no address


class SecurityInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Authenticates and admits every gRPC call through ``policy``; refuses unparsable request bytes.

    >>> server = grpc.aio.server(interceptors=[SecurityInterceptor(services.security, "X-API-Key")])
    """

    def __init__(self, policy: SecurityPolicy, api_key_header: str = "X-API-Key") -> None:
        self._policy = policy
        self._key_header = api_key_header.lower()
        self._guard = policy.auth_on or policy.limiter.enabled
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # type: ignore[return-value]  # None: grpc answers UNIMPLEMENTED
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._guard and not method.startswith(_UNTOUCHED)
        admit = _Admission(self, grpc_scope(method)) if guarded else None
        wrapped = _wrap(handler, admit, _MODEL_OF.get(method, _no_model))
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def credentials(self, context: Context) -> Credentials:
        """The bearer credential or API key the call's metadata carries (never logged)."""
        bearer = api_key = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, rest = value.partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    bearer = rest.strip()
            elif key == self._key_header and isinstance(value, str):
                api_key = value.strip() or None
        return Credentials(bearer=bearer, api_key=api_key)


class _Admission:
    """Admits calls of one method: authenticate, check its scope, take a rate-limit token."""

    __slots__ = ("_interceptor", "_policy", "_scope")

    def __init__(self, interceptor: SecurityInterceptor, scope: Scope | None) -> None:
        self._interceptor = interceptor
        self._policy = interceptor._policy
        self._scope = scope

    async def __call__(self, context: Context, model: str | None) -> None:
        """Set the call's principal, admitted; a refusal aborts the call (raises ``grpc.aio.AbortError``)."""
        policy, scope = self._policy, self._scope
        try:
            if scope is None or not policy.auth_on:
                principal = policy.public(peer_address(context.peer()))
            else:
                principal = policy.authenticate(self._interceptor.credentials(context))
            await policy.admit(principal, scope, model)
        except ModelwireError as exc:
            await abort_with_error(context, exc)
        use_principal(principal)


async def _check(request: Any, context: Context) -> None:
    if type(request) is Malformed:
        await abort_with_error(context, request.error)


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    # Raise, not abort: the servicer may read its requests in another task (DataPlane.stream does), and
    # its own error boundary (``map_errors``, or the wrappers below) renders the error once.
    async for request in requests:
        if type(request) is Malformed:
            raise request.error
        yield request


def _wrap(handler: Handler, admit: _Admission | None, model_of: Callable[[Any], str | None]) -> Handler:
    """``handler`` with lenient parsing, admitted by ``admit`` first (``None``: no admission)."""
    request_deserializer = lenient(handler.request_deserializer)
    codec = {"request_deserializer": request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        unary_unary: Any = handler.unary_unary

        async def unary(request: Any, context: Context) -> Any:
            if admit is not None:
                await admit(context, None if type(request) is Malformed else model_of(request))
            await _check(request, context)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, **codec)
    if handler.unary_stream is not None:
        unary_stream: Any = handler.unary_stream

        async def unary_out(request: Any, context: Context) -> AsyncIterator[Any]:
            if admit is not None:
                await admit(context, None if type(request) is Malformed else model_of(request))
            await _check(request, context)
            async for item in _responses(unary_stream(request, context)):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_out, **codec)
    if handler.stream_unary is not None:
        stream_unary: Any = handler.stream_unary

        async def stream_in(requests: Any, context: Context) -> Any:
            if admit is not None:
                await admit(context, None)
            try:
                return await stream_unary(_checked(requests), context)
            except ModelwireError as exc:  # from _checked, through a servicer that does not map errors
                await abort_with_error(context, exc)

        return grpc.stream_unary_rpc_method_handler(stream_in, **codec)
    stream_stream: Any = handler.stream_stream

    async def streams(requests: Any, context: Context) -> AsyncIterator[Any]:
        if admit is not None:
            await admit(context, None)
        try:
            async for item in _responses(stream_stream(_checked(requests), context)):
                yield item
        except ModelwireError as exc:  # from _checked, through a servicer that does not map errors
            await abort_with_error(context, exc)

    return grpc.stream_stream_rpc_method_handler(streams, **codec)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """The items of a response-streaming behaviour: an async generator, or a coroutine that writes with
    ``context.write`` (then there is nothing to yield)."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result
