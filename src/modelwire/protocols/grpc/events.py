"""``modelwire.v1.Events``: the event bus as a gRPC server stream (the same events as SSE and WebSocket).

A subscription lives exactly as long as its call: cancelled by the client, past its deadline (the stream
ends with DEADLINE_EXCEEDED), dropped for falling behind (RESOURCE_EXHAUSTED), or ended by shutdown (OK).
The call's done-callback releases the subscription even when grpc never resumes the handler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import msgspec
from google.protobuf import struct_pb2

from modelwire.errors import DeadlineExceededError
from modelwire.events.bus import Event
from modelwire.events.streaming import RESET_REASON, RenderCache, close_when, parse_event_id
from modelwire.events.topics import parse_topics
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import events_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import events_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.errors import map_errors

__all__ = ["EventConverter", "EventsServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class EventConverter:
    """``SubscribeRequest`` -> (topics, last event id); ``Event`` -> protobuf ``Event``. No I/O."""

    @staticmethod
    def to_domain(request: Any) -> tuple[frozenset[str], int | None]:
        return parse_topics(list(request.topics)), parse_event_id(request.last_event_id or None)

    @staticmethod
    def from_domain(event: Event) -> Any:
        data = struct_pb2.Struct()
        try:
            data.update(event.data)
        except (TypeError, ValueError):  # values a Struct does not take (tuples of them, datetimes): as JSON
            data = struct_pb2.Struct()
            data.update(msgspec.json.decode(msgspec.json.encode(event.data)))
        return pb.Event(id=str(event.id), topic=event.topic, type=event.type, time=event.time, data=data)

    @staticmethod
    def reset(last_event_id: str) -> Any:
        data = struct_pb2.Struct()
        data.update({"reason": RESET_REASON, "last_event_id": last_event_id})
        return pb.Event(type="reset", time=time.time(), data=data)


class EventsServicer(pb_grpc.EventsServicer):  # type: ignore[misc]
    """Streams ``services.events`` to one subscriber per call, counted as a ``grpc`` connection."""

    def __init__(self, services: Facades) -> None:
        self._services = services
        self._render = RenderCache(EventConverter.from_domain)

    @map_errors
    async def Subscribe(self, request: Any, context: Context) -> AsyncIterator[Any]:
        topics, last_event_id = EventConverter.to_domain(request)
        services = self._services
        sub = services.events.subscribe(topics, last_event_id=last_event_id)
        services.metrics.connection_opened("grpc")
        released = False

        def release(_: object = None) -> None:
            nonlocal released
            if not released:
                released = True
                sub.close()
                services.metrics.connection_closed("grpc")

        context.add_done_callback(release)  # type: ignore[arg-type]  # grpc-stubs wants a DoneCallback class
        closer = close_when(sub, services.closing)
        remaining: float | None = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        try:
            if sub.reset:
                yield EventConverter.reset(request.last_event_id)
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await sub.get()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceededError("the call's deadline passed; subscribe again") from None
                yield self._render(event)
        finally:
            closer.cancel()
            release()
