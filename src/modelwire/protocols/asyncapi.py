"""The AsyncAPI 3 document: every message channel this configuration serves, the counterpart of
``/openapi.json`` and the ``.proto`` files. Served at ``/asyncapi.json``, printed by ``modelwire asyncapi``.
The ``[[event_sinks]]`` are there too: where each publishes its CloudEvents; and each ``[[feature_views]]``
with a ``source``: the events it ingests (a payload schema from the view's entities and feature types) and
its dead letters.

Pure: settings in, a dict out. It names the ``[[queues]]`` (requests, replies, dead letters per broker, with
the names they were given), the WebSocket (``/v1/ws``, ``/v1/models/{name}/ws``) and the SSE streams
(``/v1/events``, ``/v1/models/{name}/predict/stream``). Message payloads are JSON Schema; a request is the
REST body, an answer the REST answer (docs/queues.md, docs/streaming.md).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from modelwire._version import __version__
from modelwire.settings import EventSinkSettings, FeatureViewSettings, QueueSettings, Settings

__all__ = ["asyncapi_document"]

_TEXT = {"type": "string"}
_ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "examples": ["INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED"]},
        "message": _TEXT,
        "reason": _TEXT,
        "field": _TEXT,
        "retry_after_s": {"type": "number"},
        "details": {"type": "object"},
    },
}
_SCHEMAS: dict[str, Any] = {
    "PredictRequest": {
        "type": "object",
        "description": "Exactly one of text, texts, instance or instances; model and version are optional.",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "text": _TEXT,
            "texts": {"type": "array", "items": _TEXT, "minItems": 1},
            "instance": {},
            "instances": {"type": "array", "minItems": 1},
            "model": _TEXT,
            "version": _TEXT,
            "op": {"const": "predict", "description": "the default; op job submits a job (JobRequest)"},
        },
        "examples": [{"text": "I love this product"}, {"model": "sentiment", "texts": ["great", "awful"]}],
    },
    "JobRequest": {
        "type": "object",
        "description": "op job: an async job (the POST /v1/jobs body plus kind), answered with the job.",
        "required": ["op", "inputs"],
        "additionalProperties": False,
        "properties": {
            "op": {"const": "job"},
            "inputs": {"type": "array", "description": "rows; {text, label} objects for kind train"},
            "kind": {"enum": ["predict", "train"], "default": "predict"},
            "model": _TEXT,
            "version": _TEXT,
            "callback_url": {"type": "string", "format": "uri"},
            "metadata": {"type": "object"},
        },
        "examples": [{"op": "job", "model": "sentiment", "inputs": ["great", "awful"]}],
    },
    "Job": {
        "type": "object",
        "description": "The job as POST /v1/jobs answers it (202) and GET /v1/jobs/{id} shows it.",
        "required": ["id", "kind", "model", "status", "progress"],
        "properties": {
            "id": _TEXT,
            "kind": {"enum": ["predict", "train"]},
            "model": _TEXT,
            "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "progress": {"type": "object"},
        },
    },
    "CloudEvent": {
        "type": "object",
        "description": "An event of the bus as CloudEvents 1.0 structured JSON: id, type, data as on "
        "/v1/events (id as a string), subject and topic the topic, time RFC 3339.",
        "required": ["specversion", "id", "source", "type", "subject", "topic", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": _TEXT,
            "source": _TEXT,
            "type": {"type": "string", "examples": ["job.succeeded", "model.loaded"]},
            "subject": _TEXT,
            "topic": _TEXT,
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "data": {"type": "object"},
        },
    },
    "Error": _ERROR,
    "Answer": {
        "description": "The REST answer: the model's output, {predictions} for a batch, or {error}.",
        "oneOf": [
            {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"$ref": "#/components/schemas/Error"}},
            },
            {"type": "object", "required": ["predictions"], "properties": {"predictions": {"type": "array"}}},
            {"type": "object", "examples": [{"sentiment": "positive", "confidence": 0.95}]},
        ],
    },
    "WsClientMessage": {
        "type": "object",
        "required": ["op"],
        "properties": {
            "op": {"enum": ["predict", "subscribe", "unsubscribe", "ping"]},
            "id": {"type": ["string", "integer"]},
            "text": _TEXT,
            "instance": {},
            "model": _TEXT,
            "version": _TEXT,
            "topic": _TEXT,
        },
    },
    "WsServerMessage": {
        "type": "object",
        "description": "A prediction ({id, ...output}), or {op: error, event, subscribed, unsubscribed, "
        "ping or pong}.",
        "properties": {"op": _TEXT, "id": {"type": ["string", "integer", "null"]}},
    },
    "Event": {
        "type": "object",
        "required": ["topic", "type", "data"],
        "properties": {"topic": _TEXT, "id": _TEXT, "type": _TEXT, "time": {"type": "number"}, "data": {}},
    },
}
_MESSAGES: dict[str, Any] = {
    "PredictRequest": {
        "contentType": "application/json",
        "summary": "A request (JSON, or msgpack with content type application/msgpack)",
        "payload": {"$ref": "#/components/schemas/PredictRequest"},
        "headers": {
            "type": "object",
            "properties": {
                "model": _TEXT,
                "authorization": {"type": "string", "description": "Bearer <API key or JWT> (auth on)"},
                "x-api-key": _TEXT,
                "idempotency-key": _TEXT,
            },
        },
    },
    "JobRequest": {
        "contentType": "application/json",
        "summary": "An async job to submit (op job); the same headers as a PredictRequest",
        "payload": {"$ref": "#/components/schemas/JobRequest"},
    },
    "Answer": {"contentType": "application/json", "payload": {"$ref": "#/components/schemas/Answer"}},
    "JobAccepted": {
        "contentType": "application/json",
        "summary": "The answer to a JobRequest: the job, or an error answer",
        "payload": {"oneOf": [{"$ref": "#/components/schemas/Job"}, {"$ref": "#/components/schemas/Answer"}]},
    },
    "DeadLetter": {
        "summary": "The unreadable (or poison) message as it came, with the reason",
        "headers": {"type": "object", "properties": {"x-modelwire-error": _TEXT}},
        "payload": {},
    },
    "WsClientMessage": {"payload": {"$ref": "#/components/schemas/WsClientMessage"}},
    "WsServerMessage": {"payload": {"$ref": "#/components/schemas/WsServerMessage"}},
    "Event": {"payload": {"$ref": "#/components/schemas/Event"}},
    "StreamPrediction": {"payload": {"$ref": "#/components/schemas/Answer"}},
    "CloudEvent": {
        "contentType": "application/cloudevents+json",
        "summary": "An event of a chosen topic ([[event_sinks]])",
        "payload": {"$ref": "#/components/schemas/CloudEvent"},
    },
}
_PROTOCOL = {"rabbitmq": "amqp", "nats": "nats", "redis": "redis"}
_REPLY_LOCATION = {
    "rabbitmq": "$message.header#/reply_to",
    "nats": "$message.header#/reply_to",
    "redis": "$message.payload#/reply_to",
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/{kind}/{name}"}


def _msg(name: str) -> dict[str, dict[str, str]]:
    return {name: _ref("components/messages", name)}


def _server(doc: dict[str, Any], key: str, kind: str, url: str, description: str) -> list[dict[str, str]]:
    """Add a broker server (host without credentials, protocol with TLS) and return the reference list."""
    parts = urllib.parse.urlsplit(url)
    doc["servers"][key] = {
        "host": parts.netloc.rsplit("@", 1)[-1],
        "protocol": _PROTOCOL.get(kind, kind) + ("s" if parts.scheme in ("amqps", "rediss", "tls") else ""),
        "description": description,
    }
    return [_ref("servers", key)]


def _queue(doc: dict[str, Any], index: int, queue: QueueSettings) -> None:
    kind = queue.kind
    server = f"{kind}{index}"
    servers = _server(doc, server, kind, queue.url, f"{kind} consumer (docs/queues.md)")
    channels: list[tuple[str, str]] = [(f"{server}Requests", queue.queue_name)]
    if kind == "nats" and queue.jetstream:
        channels.append((f"{server}Durable", queue.jetstream_subjects))
    for key, address in channels:
        requests = {**_msg("PredictRequest"), **_msg("JobRequest")}
        doc["channels"][key] = {"address": address, "servers": servers, "messages": requests}
        doc["channels"][f"{key}Replies"] = {
            "address": None,
            "description": "the request's reply address (reply_to, the reply subject or Reply-To header)",
            "servers": servers,
            "messages": {**_msg("Answer"), **_msg("JobAccepted")},
        }
        doc["operations"][f"{key}Answer"] = {
            "action": "receive",
            "channel": _ref("channels", key),
            "summary": "Answer an inference request or submit a job; the answer goes to its reply address",
            "reply": {
                "address": {"location": _REPLY_LOCATION.get(kind, "$message.header#/reply_to")},
                "channel": _ref("channels", f"{key}Replies"),
            },
        }
    dead = f"{server}DeadLetters"
    doc["channels"][dead] = {
        "address": queue.dead_letter_name,
        "servers": servers,
        "messages": _msg("DeadLetter"),
    }
    doc["operations"][f"{dead}Publish"] = {"action": "send", "channel": _ref("channels", dead)}


_SINK_ADDRESS = {  # kind -> (address, what it is)
    "rabbitmq": (
        "{destination}",
        "the topic exchange; routing key the topic with / as . (jobs.<id>, models)",
    ),
    "nats": ("{destination}.{subject}", "the subject: the topic with / as . (jobs.<id>, models)"),
    "redis": ("{destination}", "the stream; fields topic, type, id and body (the envelope)"),
}


def _sink(doc: dict[str, Any], index: int, sink: EventSinkSettings) -> None:
    kind = sink.kind
    server = f"{kind}Events{index}"
    what_for = f"{kind} event sink: topics {', '.join(sink.topics)} (docs/queues.md)"
    servers = _server(doc, server, kind, sink.url, what_for)
    address, what = _SINK_ADDRESS[kind]
    channel: dict[str, Any] = {
        "address": address.replace("{destination}", sink.destination_name),
        "description": what,
        "servers": servers,
        "messages": _msg("CloudEvent"),
    }
    if "{subject}" in channel["address"]:
        channel["parameters"] = {"subject": {"description": "the topic with / as . (jobs.<id>, models)"}}
    key = f"{server}Channel"
    doc["channels"][key] = channel
    doc["operations"][f"{server}Publish"] = {
        "action": "send",
        "channel": _ref("channels", key),
        "summary": "Publish the chosen topics' events",
    }


_FEATURE_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "string": {"type": "string"},
    "bool": {"type": "boolean"},
    "float_vector": {"type": "array", "items": {"type": "number"}},
}


def _feature_event(view: FeatureViewSettings) -> dict[str, Any]:
    """The JSON Schema of one ingested event of ``view``: its entity keys, any of its features, a time."""
    assert view.source is not None
    field_of = {name: field for field, name in view.source.fields.items()}  # name -> message field
    properties: dict[str, Any] = {field_of.get(e, e): {"type": ["string", "integer"]} for e in view.entities}
    for feature, kind in view.features.items():
        properties[field_of.get(feature, feature)] = {
            **_FEATURE_TYPES[kind],
            "description": f"{kind} feature",
        }
    properties["event_timestamp"] = {
        "type": ["string", "number"],
        "description": "RFC 3339 or epoch seconds; without it, the arrival time",
    }
    return {
        "type": "object",
        "required": [field_of.get(e, e) for e in view.entities],
        "properties": properties,
    }


def _feature_source(doc: dict[str, Any], index: int, view: FeatureViewSettings) -> None:
    source = view.source
    assert source is not None
    kind = source.kind
    server = f"{kind}Features{index}"
    what_for = f"{kind} source of the feature view {view.name} (docs/features.md)"
    servers = _server(doc, server, kind, source.url, what_for)
    message = f"FeatureEvent_{view.name}"
    doc["components"]["messages"][message] = {
        "contentType": "application/json",
        "summary": f"A row for the feature view {view.name}, written when its event time is newer",
        "payload": _feature_event(view),
    }
    events, dead = f"{server}Events", f"{server}DeadLetters"
    doc["channels"][events] = {"address": source.queue, "servers": servers, "messages": _msg(message)}
    doc["operations"][f"{events}Ingest"] = {
        "action": "receive",
        "channel": _ref("channels", events),
        "summary": f"Validate and write the event into the online store (view {view.name}), then acknowledge",
    }
    doc["channels"][dead] = {
        "address": source.dead_letter_name,
        "servers": servers,
        "messages": _msg("DeadLetter"),
    }
    doc["operations"][f"{dead}Publish"] = {"action": "send", "channel": _ref("channels", dead)}


def _http(doc: dict[str, Any], http_host: str, tls: bool) -> None:
    doc["servers"]["websocket"] = {"host": http_host, "protocol": "wss" if tls else "ws"}
    doc["servers"]["sse"] = {"host": http_host, "protocol": "https" if tls else "http"}
    ws, sse = [_ref("servers", "websocket")], [_ref("servers", "sse")]
    for key, address in (("ws", "/v1/ws"), ("modelWs", "/v1/models/{name}/ws")):
        doc["channels"][key] = {
            "address": address,
            "servers": ws,
            "messages": {**_msg("WsClientMessage"), **_msg("WsServerMessage")},
        }
        doc["operations"][f"{key}Receive"] = {"action": "receive", "channel": _ref("channels", key)}
        doc["operations"][f"{key}Send"] = {"action": "send", "channel": _ref("channels", key)}
    doc["channels"]["events"] = {"address": "/v1/events", "servers": sse, "messages": _msg("Event")}
    doc["operations"]["eventsSend"] = {"action": "send", "channel": _ref("channels", "events")}
    stream = "/v1/models/{name}/predict/stream"
    doc["channels"]["predictStream"] = {
        "address": stream,
        "servers": sse,
        "messages": _msg("StreamPrediction"),
    }
    doc["operations"]["predictStreamSend"] = {"action": "send", "channel": _ref("channels", "predictStream")}
    for key in ("modelWs", "predictStream"):
        doc["channels"][key]["parameters"] = {"name": {"description": "the model's name"}}


def asyncapi_document(settings: Settings, *, http_host: str | None = None) -> dict[str, Any]:
    """The document for ``settings``; ``http_host`` (``host:port``) is where the WebSocket and SSE are."""
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "modelwire",
            "version": __version__,
            "description": "Message channels: broker queues, WebSocket and SSE (REST: /openapi.json).",
        },
        "defaultContentType": "application/json",
        "servers": {},
        "channels": {},
        "operations": {},
        "components": {"schemas": _SCHEMAS, "messages": dict(_MESSAGES)},
    }
    for index, queue in enumerate(settings.queues):
        if queue.kind != "kafka":
            _queue(doc, index, queue)
    for index, sink in enumerate(settings.event_sinks):
        if sink.kind != "kafka":
            _sink(doc, index, sink)
    for index, view in enumerate(settings.feature_views):
        if view.source is not None and view.source.kind != "kafka":
            _feature_source(doc, index, view)
    _http(doc, http_host or f"{settings.host}:{settings.http_port}", settings.tls.enabled)
    return doc
