"""Accept-ahead: more than one call of a hot unary method waiting to be accepted from grpc's core.

Why. grpc.aio's server keeps ONE outstanding request (``grpc_server_request_registered_call``) per
registered method and asks for the next call of that method only after its serving task has taken the
previous one, a loop pass later. Concurrent calls of one method therefore reach the event loop one loop
pass apart, however many are waiting in core, and the batcher sees batches of a few: 6.5 items at 32 calls
in flight against REST's 19 (docs/benchmarks.md "gRPC per-call cost (issue 12)", decisions "gRPC
accept-ahead"). ``AcceptAhead`` keeps ``depth`` more requests outstanding for each hot method
(``Predictor/Predict``, ``GRPCInferenceService/ModelInfer``), so every call core holds is delivered in the
same poll cycle, and serves each through grpc.aio's own per-call code path (``_handle_rpc`` under
``_schedule_rpc_coro``: the same interceptors, deadlines, cancellation from the client, abort and status
handling, in a task of its own) with the method's registered handler.

It uses private names of ``grpc._cython.cygrpc`` (checked on grpcio 1.85; ``supported()`` checks them). When
they are missing or have another shape, ``supported()`` is false and the server runs on grpc.aio's own
acceptor alone (slower batching, nothing else changes). ``grpc.accept_ahead = 0`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import grpc

__all__ = ["HOT_METHODS", "AcceptAhead", "Recorder", "supported"]

logger = logging.getLogger("modelwire.grpc")

HOT_METHODS: tuple[str, ...] = (
    "/modelwire.v1.Predictor/Predict",
    "/inference.GRPCInferenceService/ModelInfer",
)

_SHAPES = {
    "_handle_rpc": (
        "method_name",
        "method_resolver",
        "interceptors",
        "rpc_state",
        "loop",
        "concurrency_exceeded",
    ),
    "_schedule_rpc_coro": ("rpc_coro", "rpc_state", "loop", "method_name"),
}


def _cygrpc() -> Any:
    import importlib

    return importlib.import_module("grpc._cython.cygrpc")  # private: supported() checks what is used


def supported() -> bool:
    """Whether this grpcio has the private per-call entry points accept-ahead drives, in the known shape."""
    try:
        cygrpc = _cygrpc()
        for name, args in _SHAPES.items():
            code = getattr(cygrpc, name).__code__
            if code.co_varnames[: code.co_argcount] != args:
                return False
        return hasattr(cygrpc, "_MethodResolver") and hasattr(cygrpc.AioServer, "_make_request_call_future")
    except (ImportError, AttributeError):
        return False


class Recorder:
    """Stands in for the server while the servicers register.

    Every service keeps its generic handler (which serves all its methods); only the hot methods are
    also registered with core (``handlers`` keeps their handlers, for ``AcceptAhead``). grpc.aio's own
    acceptor waits on one outstanding request per registered method, and builds and tears down that wait
    (``asyncio.wait`` over all of them) for every call it takes: with the ~50 methods of modelwire's
    services registered, that was 13 % of the instructions of a ``Predict`` call (decisions "gRPC
    accept-ahead"). The other methods are found through their service's generic handler instead.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server: Any = server  # grpc-stubs lacks add_registered_method_handlers
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self._server.add_generic_rpc_handlers(tuple(handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        hot = {}
        for name, handler in handlers.items():
            method = f"/{service}/{name}"
            if method in HOT_METHODS and not handler.request_streaming and not handler.response_streaming:
                hot[name] = self.handlers[method] = handler
        if hot:
            self._server.add_registered_method_handlers(service, hot)


class AcceptAhead:
    """``depth`` more outstanding requests per hot method of a started ``grpc.aio`` server."""

    def __init__(
        self, server: grpc.aio.Server, handlers: dict[str, Any], interceptors: Iterable[Any], depth: int
    ) -> None:
        self._server = server
        self._handlers = handlers
        self._interceptors = tuple(interceptors)
        self._depth = depth
        self._acceptors: set[asyncio.Task[None]] = set()
        self._calls: set[asyncio.Task[Any]] = set()
        self.accepted = 0
        """Calls taken by these acceptors (the rest by grpc.aio's own)."""

    @property
    def active(self) -> int:
        """Acceptors running (``depth`` per hot method once started; 0 when off or not supported)."""
        return sum(not task.done() for task in self._acceptors)

    def start(self) -> None:
        """Start the acceptors (call after ``server.start()``; a no-op when off or not supported)."""
        if self._depth <= 0 or not self._handlers:
            return
        if not supported():
            logger.info("gRPC accept-ahead off: this grpcio lacks the entry points it needs")
            return
        cygrpc = _cygrpc()
        for method, handler in self._handlers.items():
            resolver = cygrpc._MethodResolver([], {method: handler})
            for i in range(self._depth):
                task = asyncio.get_running_loop().create_task(
                    self._accept(method, resolver), name=f"grpc-accept[{method}#{i}]"
                )
                self._acceptors.add(task)

    async def stop(self) -> None:
        """Stop accepting (after the server stopped: its core has failed the outstanding requests)."""
        for task in self._acceptors:
            task.cancel()
        for task in self._acceptors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._acceptors.clear()

    async def _accept(self, method: str, resolver: Any) -> None:
        cygrpc = _cygrpc()
        aio = self._server._server  # type: ignore[attr-defined]  # grpc.aio.Server's cygrpc.AioServer
        loop = asyncio.get_running_loop()
        method_bytes = method.encode()
        while aio.is_running():
            try:
                rpc_state = await aio._make_request_call_future(method_bytes)
            except Exception:  # noqa: BLE001 - the server is stopping (or core refused): grpc.aio's own acceptor goes on
                return
            self.accepted += 1
            rpc = cygrpc._handle_rpc(method, resolver, self._interceptors, rpc_state, loop, False)
            call = loop.create_task(cygrpc._schedule_rpc_coro(rpc, rpc_state, loop, method), name="rpc_task")
            self._calls.add(call)  # the loop holds tasks weakly
            call.add_done_callback(self._calls.discard)
