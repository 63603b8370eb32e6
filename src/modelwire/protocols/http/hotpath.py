"""``HotPathMiddleware``: the inference routes served without the framework's inner layers.

A prediction through FastAPI passes, inside modelwire's own middleware (trace, CORS, security, body
timeout, which stay), Starlette's ``ExceptionMiddleware``, FastAPI's ``AsyncExitStackMiddleware``, the
router's walk over every route (a regex per route until one matches), ``Route.handle`` and
``request_response``'s two wrappers. For the few routes that carry nearly all traffic this middleware,
added innermost, does what those layers would do and nothing else:

- it matches ``(method, path)`` against the hot routes with the same compiled patterns Starlette builds
  (``compile_path``), only on a request with no ``root_path``; anything else goes down the framework path
  unchanged (a wrong method gets the router's 405, ``/predict/`` its redirect);
- it sets ``scope["endpoint"]`` and ``scope["path_params"]`` as the router would, builds the same
  ``Request`` and awaits the same endpoint;
- an exception becomes the response of the app's own exception handler for its class (looked up along its
  MRO, as ``ExceptionMiddleware`` does: ``ModelwireError``, ``HTTPException``, the 499 of a client that
  left); any other exception propagates to ``ServerErrorMiddleware`` (the 500 with an error id), exactly as
  from the router.

The OpenAPI document is untouched: the routes are still registered on the app (``/docs`` describes them).
A contract test (tests/protocols/http/test_hotpath.py) sends the same requests through both paths and
compares status, headers and bodies.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HotPathMiddleware", "HotRoute"]

Endpoint = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]


class HotRoute:
    """One route served on the hot path: a method, a Starlette path template and its endpoint."""

    __slots__ = ("convertors", "endpoint", "method", "path", "regex", "static")

    def __init__(self, method: str, path: str, endpoint: Endpoint) -> None:
        self.method = method
        self.path = path
        self.endpoint = endpoint
        self.regex, _, self.convertors = compile_path(path)
        self.static = path if not self.convertors else None

    def match(self, path: str) -> dict[str, Any] | None:
        """The path parameters if ``path`` is this route's, else ``None`` (Starlette's ``Route.matches``)."""
        if self.static is not None:
            return {} if path == self.static else None
        found = self.regex.match(path)
        if found is None:
            return None
        return {key: self.convertors[key].convert(value) for key, value in found.groupdict().items()}


class HotPathMiddleware:
    """Serves ``routes`` directly; passes every other request to ``app`` (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[HotRoute],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        self.app = app
        self.routes = tuple(routes)
        self.methods = frozenset(route.method for route in routes)
        # The live mapping of the app (FastAPI adds its defaults to it): 500/Exception belong to
        # ServerErrorMiddleware, outside this one, as they do on the framework path.
        self._handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods and not scope.get("root_path"):
            path = scope["path"]
            method = scope["method"]
            for route in self.routes:
                if route.method != method:
                    continue
                params = route.match(path)
                if params is not None:
                    await self._serve(route, params, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(
        self, route: HotRoute, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope["endpoint"] = route.endpoint
        scope["route"] = route  # what the router records; tracing names the span by its ``path`` template
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        started = False

        async def sender(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
            await response(scope, receive, sender)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            if started:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            conn = Request(scope, receive=receive)
            if inspect.iscoroutinefunction(handler):
                response = await handler(conn, exc)  # type: ignore[misc]
            else:
                response = await run_in_threadpool(handler, conn, exc)  # type: ignore[arg-type]
            await response(scope, receive, sender)

    def _handler(self, exc: Exception) -> ExceptionHandler | None:
        handlers = self._handlers
        for cls in type(exc).__mro__:
            if cls in handlers and cls is not Exception:
                return handlers[cls]
        return None
