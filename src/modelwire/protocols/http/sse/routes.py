"""The Server-Sent Events routes: ``GET /v1/events`` and ``POST /v1/models/{name}/predict/stream``.

Everything that can fail the request as a whole (bad topics, a bad body, an unknown model, a server holding
``events.max_sse_connections`` open streams: 503 with ``Retry-After``) fails before the stream starts, as
the usual JSON error. Once streaming, events flow until the client leaves, the bus drops a
subscriber that fell behind (``event: error``, then the end), or the server shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from modelwire.core.dataplane import TRAFFIC_KEY_HEADER, CallContext
from modelwire.errors import (
    InternalError,
    InvalidInputError,
    ModelwireError,
    OverloadedError,
    PayloadTooLargeError,
    SlowConsumerError,
)
from modelwire.events.bus import Event
from modelwire.events.streaming import FOREIGN_ID, RESET_REASON, RenderCache, close_when, parse_event_id
from modelwire.events.topics import parse_topics
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import decode_json, read_body
from modelwire.protocols.http.schemas import NonEmpty
from modelwire.protocols.http.sse.encoding import HEARTBEAT, encode, encode_json
from modelwire.protocols.http.sse.response import EventStreamResponse

__all__ = ["PredictStreamRequest", "SSERoutes"]

logger = logging.getLogger("modelwire.sse")

_BATCH = 64  # events already queued go out in one write


class PredictStreamRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of ``texts`` or ``instances`` (any model): the items to predict, streamed back."""

    texts: Annotated[list[str], NonEmpty] | msgspec.UnsetType = msgspec.UNSET
    instances: Annotated[list[Any], NonEmpty] | msgspec.UnsetType = msgspec.UNSET


def _render(event: Event) -> bytes:
    return encode_json(event.to_dict(), event=event.type, id=event.id)


class SSERoutes:
    """Handlers bound to one ``Facades``."""

    def __init__(self, services: Facades) -> None:
        self.services = services
        self._render = RenderCache(_render)

    # -- GET /v1/events ----------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Follow event-bus topics; ``Last-Event-ID`` (or ``?last_event_id=``) resumes after that event."""
        self._admit()
        topics = parse_topics(",".join(request.query_params.getlist("topics")))
        raw_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        return EventStreamResponse(self._event_chunks(topics, raw_id), self.services.metrics)

    async def _event_chunks(self, topics: Collection[str], raw_id: str | None) -> AsyncIterator[bytes]:
        settings = self.services.settings.events
        last_id = parse_event_id(raw_id)
        sub = self.services.events.subscribe(topics, last_event_id=last_id)
        closer = close_when(sub, self.services.closing)
        try:
            first = encode(retry=settings.sse_retry_ms)
            if sub.reset:
                said = raw_id if last_id == FOREIGN_ID else last_id
                first += encode_json({"reason": RESET_REASON, "last_event_id": said}, event="reset")
            yield first
            while True:
                try:
                    async with asyncio.timeout(settings.sse_heartbeat_s):
                        event = await sub.get()
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                except StopAsyncIteration:
                    return
                except SlowConsumerError as exc:
                    yield encode_json(exc.to_dict(), event="error")
                    return
                chunk = [self._render(event)]
                while len(chunk) < _BATCH and (queued := sub.get_nowait()) is not None:
                    chunk.append(self._render(queued))
                yield b"".join(chunk)
        finally:
            closer.cancel()
            sub.close()

    def _admit(self) -> None:
        # Counted per process, by the open responses (both routes); a burst of requests landing at the
        # same instant may pass the cap by the few whose responses have not started yet.
        limit = self.services.settings.events.max_sse_connections
        if self.services.metrics.live.connections("sse") >= limit:
            raise OverloadedError(
                f"the server holds its limit of {limit} open event streams (events.max_sse_connections); "
                "retry later",
                retry_after_s=1.0,
            )

    # -- POST /v1/models/{name}[/versions/{version}]/predict/stream -------------------------------

    async def predict_stream(self, request: Request) -> Response:
        """One ``prediction`` (or ``error``) event per item as each finishes, then ``done``."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        limits = self.services.settings.limits
        body = decode_json(
            await read_body(request, limits.max_body_bytes),
            PredictStreamRequest,
            max_depth=limits.max_json_depth,
        )
        given = [f for f in ("texts", "instances") if getattr(body, f) is not msgspec.UNSET]
        if len(given) != 1:
            raise InvalidInputError("send exactly one of 'texts' or 'instances'", field="$")
        field = given[0]
        values: list[Any] = getattr(body, field)
        if not values:
            raise InvalidInputError(f"'{field}' must hold at least one item", field=f"$.{field}")
        if len(values) > limits.max_batch_items:
            raise PayloadTooLargeError(
                f"the batch has {len(values)} items; the limit is {limits.max_batch_items}",
                field=f"$.{field}",
            )
        # unknown or unready: the JSON error, not a stream; one version answers the whole request (one
        # the memory budget unloaded is loaded again first, within the request's deadline, as for a call)
        ctx = CallContext("sse", traffic_key=request.headers.get(TRAFFIC_KEY_HEADER))
        version = await self.services.dataplane.ready_version(name, version, ctx=ctx, instances=values)
        self._admit()
        chunks = self._prediction_chunks(name, version, field, values)
        return EventStreamResponse(chunks, self.services.metrics, headers={"Model-Version": version})

    async def _prediction_chunks(
        self, name: str, version: str | None, field: str, values: list[Any]
    ) -> AsyncIterator[bytes]:
        async def items() -> AsyncIterator[tuple[str, Any]]:
            for index, value in enumerate(values):
                yield str(index), value

        errors = 0
        results = self.services.dataplane.stream(
            name, items(), version=version, ctx=CallContext("sse"), path=lambda key: f"$.{field}[{key}]"
        )
        try:
            async for key, result in results:
                index = int(key)
                if isinstance(result, ModelwireError):
                    errors += 1
                    body = {"index": index, "error": result.to_dict()}
                    yield encode_json(body, event="error")
                else:
                    yield encode_json(_prediction(result, index), event="prediction")
        except ModelwireError as exc:  # the stream as a whole failed (say, the model was unloaded)
            yield encode_json({"error": exc.to_dict()}, event="error")
            return
        except Exception as exc:  # the boundary: anything else ends the stream as INTERNAL
            err = InternalError()
            logger.error("predict stream of %r failed [error_id=%s]", name, err.error_id, exc_info=exc)
            yield encode_json({"error": err.to_dict()}, event="error")
            return
        finally:
            # Cancels the items still running when the client left (their batch slots are freed).
            aclose = getattr(results, "aclose", None)
            if aclose is not None:
                await aclose()
        yield encode_json({"count": len(values), "errors": errors}, event="done")


def _prediction(result: Any, index: int) -> dict[str, Any]:
    if isinstance(result, dict):
        return {**result, "index": index}
    return {"index": index, "result": result}
