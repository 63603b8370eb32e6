"""Where the SSE routes live in the app, and how ``/openapi.json`` describes them.

The ``text/event-stream`` body is a string to OpenAPI 3.1; its events are described, each with the JSON
Schema of its ``data:``, under the media type's ``x-itemSchema`` (OpenAPI 3.2's ``itemSchema``, named as
an extension until the document is 3.2: a 3.1 validator refuses the unprefixed key).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from modelwire.protocols.facades import Facades
from modelwire.protocols.http.openapi import body, ref, responses
from modelwire.protocols.http.schemas import ErrorBody, ErrorDetail
from modelwire.protocols.http.sse.response import EventStreamResponse
from modelwire.protocols.http.sse.routes import PredictStreamRequest, SSERoutes

__all__ = ["add_sse_routes"]

_EVENTS_EXAMPLE = (
    "retry: 3000\n\n"
    'id: 1764000000123\nevent: model.loaded\ndata: {"id":1764000000123,"topic":"models",'
    '"type":"model.loaded","time":1764000000.12,"data":{"name":"sentiment","version":"1","ready":true}}\n\n'
    ": heartbeat\n\n"
)
_PREDICT_EXAMPLE = (
    'event: prediction\ndata: {"sentiment":"positive","confidence":0.97,"index":0}\n\n'
    'event: error\ndata: {"index":1,"error":{"code":"INVALID_ARGUMENT","message":"...",'
    '"field":"$.texts[1]"}}\n\n'
    'event: done\ndata: {"count":2,"errors":1}\n\n'
)


def _event(
    name: str | None, description: str, data: dict[str, Any], *, with_id: bool = False
) -> dict[str, Any]:
    """One kind of event: its ``event:`` name (``None``: the event's type), its ``data:`` as JSON of the
    schema ``data``."""
    fields: dict[str, Any] = {
        "event": {"const": name} if name is not None else {"type": "string", "description": "Its type"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
    }
    if with_id:
        fields["id"] = {"type": "string", "pattern": "^[0-9]+$", "description": "Last-Event-ID resumes here"}
    return {
        "title": name or "bus event",
        "description": description,
        "type": "object",
        "properties": fields,
        "required": ["event", "data", *(["id"] if with_id else [])],
    }


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": extra,
    }


_INTEGER = {"type": "integer", "minimum": 0}
_BUS_EVENT = _object(
    {
        "id": _INTEGER,
        "topic": {"type": "string"},
        "type": {"type": "string"},
        "time": {"type": "number", "description": "Unix seconds"},
        "data": {"type": "object"},
    }
)
_EVENTS = {  # anyOf: a bus event's type is any name
    "anyOf": [
        _event(
            None,
            "An event-bus event; `event:` is its type (model.loaded, job.succeeded, metrics, ...)",
            _BUS_EVENT,
            with_id=True,
        ),
        _event(
            "reset",
            "The events after Last-Event-ID are no longer kept: rebuild state from scratch",
            _object({"reason": {"type": "string"}, "last_event_id": {"type": ["string", "integer"]}}),
        ),
        _event("error", "The client fell too far behind; the stream ends", ref(ErrorDetail)),
    ]
}
_PREDICT_EVENTS = {  # anyOf: a bus event's type is any name
    "anyOf": [
        _event(
            "prediction",
            "One item's answer: the model's output object plus the item's `index`",
            _object({"index": _INTEGER}, extra=True),
        ),
        _event(
            "error",
            "One item failed (`index` and `error`), or, without `index`, the whole stream (it ends)",
            {
                "type": "object",
                "properties": {"index": _INTEGER, "error": ref(ErrorDetail)},
                "required": ["error"],
                "additionalProperties": False,
            },
        ),
        _event(
            "done",
            "The last event: how many items, and how many failed",
            _object({"count": _INTEGER, "errors": _INTEGER}),
        ),
    ]
}


def _stream_docs(example: str, events: dict[str, Any], errors: dict[int, str | None]) -> dict[int | str, Any]:
    documented = responses(ErrorBody)
    out: dict[int | str, Any] = {
        code: {**documented[code], "description": text or documented[code]["description"]}
        for code, text in errors.items()
    }
    stream = {"schema": {"type": "string"}, "x-itemSchema": events, "example": example}
    out[200] = {"content": {"text/event-stream": stream}}
    return out


def _parameter(name: str, where: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def add_sse_routes(app: FastAPI, services: Facades) -> None:
    """``GET /v1/events`` and ``POST /v1/models/{name}[/versions/{version}]/predict/stream``."""
    routes = SSERoutes(services)
    app.add_api_route(
        "/v1/events",
        routes.events,
        methods=["GET"],
        tags=["streaming"],
        summary="Follow live events (Server-Sent Events)",
        description=(
            "A `text/event-stream` of event-bus events: `id:` (the event id), `event:` (its type) and "
            "`data:` (the event as JSON). It starts with a `retry:` hint; a `: heartbeat` comment follows "
            "every `events.sse_heartbeat_s` without events. Reconnecting with `Last-Event-ID` replays what "
            "was missed, or sends `event: reset` first when that is no longer possible. A client that falls "
            "too far behind gets `event: error` and the stream ends."
        ),
        response_class=EventStreamResponse,
        status_code=200,
        response_description="The event stream",
        responses=_stream_docs(
            _EVENTS_EXAMPLE,
            _EVENTS,
            {400: "Unknown or missing topics", 503: "Too many open event streams (Retry-After)"},
        ),
        openapi_extra={
            "parameters": [
                _parameter(
                    "topics",
                    "query",
                    "Comma-separated: metrics, models, server, alerts, features, jobs/<id>, jobs/* or *",
                    required=True,
                ),
                _parameter("last_event_id", "query", "Resume after this event id (the header wins)"),
                _parameter("Last-Event-ID", "header", "Resume after this event id (sent by EventSource)"),
            ]
        },
    )
    name = _parameter("name", "path", "The model", required=True)
    version = _parameter("version", "path", "The model version", required=True)
    for path, parameters in (
        ("/v1/models/{name}/predict/stream", [name]),
        ("/v1/models/{name}/versions/{version}/predict/stream", [name, version]),
    ):
        app.add_api_route(
            path,
            routes.predict_stream,
            methods=["POST"],
            tags=["streaming"],
            summary="Predict a batch, streaming each result as it finishes (Server-Sent Events)",
            description=(
                "Send `texts` or `instances`. Each item answers with `event: prediction` (the model's output "
                "plus `index`) or `event: error` (`index` and `error`), in the order they finish, then "
                "`event: done` with the counts. A bad body or an unknown model is a JSON error before the "
                "stream starts."
            ),
            response_class=EventStreamResponse,
            status_code=200,
            response_description="One event per item, then done",
            responses=_stream_docs(
                _PREDICT_EXAMPLE, _PREDICT_EVENTS, dict.fromkeys((400, 404, 413, 415, 503))
            ),
            openapi_extra={**body(PredictStreamRequest), "parameters": parameters},
        )
