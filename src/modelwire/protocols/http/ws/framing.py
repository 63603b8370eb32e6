"""WebSocket message framing without I/O: subprotocol choice, client messages in, server messages out.

A client message is decoded into one typed op (``Predict``, ``Subscribe``, ``Unsubscribe``, ``Ping``) or a
``Malformed`` naming the error to answer with and the offending id when one could be read; decoding never
raises. Server messages are built as plain dicts and encoded for the negotiated subprotocol: JSON in text
frames (``modelwire.v1.json``, also what a client offering no subprotocol gets) or msgpack in binary frames
(``modelwire.v1.msgpack``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from modelwire.core.messages import MessageDecoder
from modelwire.core.nesting import DEFAULT_MAX_DEPTH
from modelwire.errors import InvalidInputError, ModelwireError
from modelwire.events.bus import Event
from modelwire.events.topics import validate_topic

__all__ = [
    "JSON",
    "MSGPACK",
    "SUBPROTOCOLS",
    "Codec",
    "Malformed",
    "Op",
    "Ping",
    "Predict",
    "Subscribe",
    "Unsubscribe",
    "ack",
    "error",
    "event",
    "parse",
    "ping",
    "pong",
    "prediction",
    "select_subprotocol",
]

JSON = "modelwire.v1.json"
MSGPACK = "modelwire.v1.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)

RequestId = str | int


@dataclass(frozen=True, slots=True)
class Predict:
    """``{"id", "op": "predict", "text" | "instance", "model"?, "version"?}``; ``field`` names the input."""

    id: RequestId
    instance: Any
    field: str
    model: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: str
    id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: str
    id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """An application-level ping (browsers cannot send protocol pings); answered with ``pong``."""

    id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message that cannot be acted on: the error to reply with, and its id if one could be read."""

    id: RequestId | None
    error: ModelwireError


Op = Predict | Subscribe | Unsubscribe | Ping


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer with: the client's first one we speak, ``None`` if it offered none.

    Raises ``InvalidInputError`` when every offered subprotocol is unknown: the handshake is refused.
    """
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    if offered:
        raise InvalidInputError(
            f"unsupported WebSocket subprotocol {', '.join(offered)[:200]!r}: offer "
            f"{' or '.join(SUBPROTOCOLS)} (or none, for JSON)",
            field="Sec-WebSocket-Protocol",
        )
    return None


def _bad(message: str, field: str, request_id: RequestId | None = None) -> Malformed:
    return Malformed(request_id, InvalidInputError(message, field=field))


def _optional_str(message: dict[str, Any], key: str, request_id: RequestId | None) -> str | Malformed | None:
    value = message.get(key)
    if value is None or isinstance(value, str):
        return value
    return _bad(f"'{key}' must be a string", f"$.{key}", request_id)


def parse(message: Any) -> Op | Malformed:
    """A decoded message (any JSON/msgpack value) to its op, validated field by field."""
    if not isinstance(message, dict):
        return _bad("a message must be an object with an 'op'", "$")
    raw_id = message.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        return _bad("'id' must be a string or an integer", "$.id")
    request_id: RequestId | None = raw_id
    op = message.get("op")
    if op == "predict":
        return _predict(message, request_id)
    if op in ("subscribe", "unsubscribe"):
        topic = message.get("topic")
        if not isinstance(topic, str):
            return _bad(f"'{op}' needs a 'topic' string", "$.topic", request_id)
        try:
            validate_topic(topic, field="$.topic")
        except InvalidInputError as exc:
            return Malformed(request_id, exc)
        return (Subscribe if op == "subscribe" else Unsubscribe)(topic, request_id)
    if op == "ping":
        return Ping(request_id)
    known = "use predict, subscribe, unsubscribe or ping"
    if op is None:
        return _bad(f"the message has no 'op'; {known}", "$.op", request_id)
    return _bad(f"unknown op {str(op)[:64]!r}; {known}", "$.op", request_id)


def _predict(message: dict[str, Any], request_id: RequestId | None) -> Predict | Malformed:
    if request_id is None:
        return _bad("a predict message needs an 'id' (a string or an integer)", "$.id")
    given = [key for key in ("text", "instance") if key in message]
    if len(given) != 1:
        return _bad("send exactly one of 'text' or 'instance'", "$", request_id)
    key = given[0]
    value = message[key]
    if key == "text" and not isinstance(value, str):
        return _bad("'text' must be a string", "$.text", request_id)
    model = _optional_str(message, "model", request_id)
    if isinstance(model, Malformed):
        return model
    version = _optional_str(message, "version", request_id)
    if isinstance(version, Malformed):
        return version
    return Predict(request_id, value, key, model, version)


# -- server messages ---------------------------------------------------------------------------------


def prediction(request_id: RequestId, output: Any, version: str | None = None) -> dict[str, Any]:
    """The model's output object plus ``id`` and the ``version`` that answered; any other output as
    ``{"id", "result", "version"}``."""
    message = (
        {"id": request_id, **output} if isinstance(output, Mapping) else {"id": request_id, "result": output}
    )
    if version is not None:
        message["version"] = version
    return message


def error(request_id: RequestId | None, exc: ModelwireError) -> dict[str, Any]:
    return {"op": "error", "id": request_id, "error": exc.to_dict()}


def ack(op: str, topic: str, request_id: RequestId | None) -> dict[str, Any]:
    """``subscribed`` / ``unsubscribed``, with the request's id when it had one."""
    out: dict[str, Any] = {"op": op, "topic": topic}
    if request_id is not None:
        out["id"] = request_id
    return out


def event(item: Event) -> dict[str, Any]:
    return {
        "op": "event",
        "topic": item.topic,
        "id": item.id,
        "type": item.type,
        "time": item.time,
        "data": item.data if isinstance(item.data, dict) else dict(item.data),
    }


def ping(now: float) -> dict[str, Any]:
    return {"op": "ping", "time": now}


def pong(request_id: RequestId | None) -> dict[str, Any]:
    return {"op": "pong"} if request_id is None else {"op": "pong", "id": request_id}


class Codec:
    """Decode client frames and encode server messages for one subprotocol."""

    def __init__(self, subprotocol: str | None, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.subprotocol = subprotocol
        self.max_depth = max_depth
        self.binary = subprotocol == MSGPACK
        self._decoder = MessageDecoder(binary=self.binary, max_depth=max_depth)
        if self.binary:
            self._encode: Any = msgspec.msgpack.Encoder().encode
        else:
            self._encode = msgspec.json.Encoder().encode

    @property
    def frame_kind(self) -> str:
        return "binary" if self.binary else "text"

    def decode(self, data: str | bytes) -> Op | Malformed:
        """A client frame's payload to its op. The frame type was checked by the caller."""
        try:
            message = self._decoder.decode(data)  # core/messages.py: shared with the queue adapter
        except InvalidInputError as exc:
            return Malformed(None, exc)
        return parse(message)

    def encode(self, message: Mapping[str, Any]) -> str | bytes:
        """Bytes for a binary frame (msgpack), text for a text frame (JSON)."""
        data: bytes = self._encode(message)
        return data if self.binary else data.decode()
