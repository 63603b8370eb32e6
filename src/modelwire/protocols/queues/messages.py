"""Queue messages without I/O: a request body to a ``QueueRequest``, an answer to bytes.

A request is the body of ``POST /v1/models/{name}/predict`` plus the optional ``model`` and ``version``:
exactly one of ``text``, ``texts``, ``instance`` or ``instances``; ``"op": "predict"`` may say so. A
message with ``"op": "job"`` submits an async job instead: the ``POST /v1/jobs`` body (``model``,
``inputs``, ``version``, ``callback_url``, ``metadata``) plus ``kind`` (``predict`` or ``train``, whose
inputs are ``{"text", "label"}`` rows), as gRPC's ``Jobs/Submit`` takes it; it is answered with the job
(the REST 202 body). JSON, or msgpack when the message's
content type says so (``application/msgpack``, ``application/x-msgpack``, ``application/vnd.msgpack``);
the answer is encoded the same way. The answer is what REST answers: the model's output object for one
input, ``{"predictions": [...]}`` for a batch (a failed item as ``{"error": {...}}``), and
``{"error": {"code", "message", ...}}`` when the request failed as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from modelwire.core.messages import MessageDecoder
from modelwire.errors import InvalidInputError, ModelwireError, PayloadTooLargeError

__all__ = [
    "JSON",
    "MSGPACK",
    "JobMessage",
    "MessageCodec",
    "QueueRequest",
    "answer",
    "error_answer",
    "parse",
]

JSON = "application/json"
MSGPACK = "application/msgpack"
_MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})
_INPUTS = ("text", "texts", "instance", "instances")
_KNOWN = frozenset({*_INPUTS, "model", "version", "op"})
_OPS = ("predict", "job")


@dataclass(frozen=True, slots=True)
class QueueRequest:
    """A decoded request: ``field`` names the input (``text``...), ``value`` holds it."""

    field: str
    value: Any
    model: str | None = None
    version: str | None = None

    @property
    def batch(self) -> bool:
        return self.field in ("texts", "instances")


class JobMessage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``"op": "job"``: an async job to submit (the ``POST /v1/jobs`` body plus ``kind``)."""

    inputs: list[Any]
    model: str | None = None
    kind: Literal["predict", "train"] = "predict"
    version: str | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = {}
    op: Literal["job"] = "job"


def parse(message: Any) -> QueueRequest | JobMessage:
    """A decoded message (any JSON/msgpack value) to its request; ``InvalidInputError`` names the field."""
    if not isinstance(message, dict):
        raise InvalidInputError('a request must be an object such as {"text": "..."}', field="$")
    op = message.get("op", "predict")
    if op not in _OPS:
        raise InvalidInputError(
            f"unknown op {str(op)[:40]!r}: use 'predict' (the default) or 'job'", field="$.op"
        )
    if op == "job":
        try:
            return msgspec.convert(message, JobMessage)
        except msgspec.ValidationError as exc:
            raise InvalidInputError(f"a job message: {exc}", field=_where(str(exc))) from None
    unknown = sorted(str(k) for k in message if k not in _KNOWN)
    if unknown:
        raise InvalidInputError(
            f"unknown field {unknown[0][:64]!r}; a request has one of 'text', 'texts', 'instance' or "
            "'instances', and optionally 'model' and 'version' (\"op\": \"job\" submits a job instead)",
            field=f"$.{unknown[0][:64]}",
        )
    given = [key for key in _INPUTS if key in message]
    if len(given) != 1:
        raise InvalidInputError(
            "send exactly one of 'text', 'texts', 'instance' or 'instances'"
            + (f" (got {', '.join(given)})" if given else ""),
            field="$",
        )
    field = given[0]
    value = message[field]
    if field == "text" and not isinstance(value, str):
        raise InvalidInputError("'text' must be a string", field="$.text")
    if field in ("texts", "instances"):
        if not isinstance(value, list) or not value:
            raise InvalidInputError(f"'{field}' must be a list holding at least one item", field=f"$.{field}")
        if field == "texts":
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise InvalidInputError("each text must be a string", field=f"$.texts[{i}]")
    for key in ("model", "version"):
        if message.get(key) is not None and not isinstance(message[key], str):
            raise InvalidInputError(f"'{key}' must be a string", field=f"$.{key}")
    return QueueRequest(field, value, message.get("model"), message.get("version"))


def _where(message: str) -> str:
    """The ``$.path`` msgspec names at the end of its message (``... - at `$.inputs```), else ``$``."""
    _, at, path = message.rpartition(" - at `")
    return path.rstrip("`") if at else "$"


def answer(request: QueueRequest, result: Any) -> Any:
    """The REST answer for ``result`` (one output, or the batch's outputs and item errors)."""
    if not request.batch:
        return result
    return {"predictions": [{"error": r.to_dict()} if isinstance(r, ModelwireError) else r for r in result]}


def error_answer(exc: ModelwireError) -> dict[str, Any]:
    return {"error": exc.to_dict()}


class MessageCodec:
    """Decode request bodies and encode answers, JSON or msgpack by content type, within the limits."""

    def __init__(self, *, max_bytes: int, max_depth: int) -> None:
        self.max_bytes = max_bytes
        self._json = MessageDecoder(binary=False, max_depth=max_depth)
        self._msgpack = MessageDecoder(binary=True, max_depth=max_depth)

    @staticmethod
    def content_type(content_type: str | None) -> str:
        """The answer's content type: msgpack for a msgpack request, else JSON."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        return MSGPACK if media in _MSGPACK_TYPES else JSON

    def decode(self, body: bytes, content_type: str | None) -> QueueRequest | JobMessage:
        if len(body) > self.max_bytes:
            raise PayloadTooLargeError(f"the message is {len(body)} bytes; the limit is {self.max_bytes}")
        if not body.strip():
            raise InvalidInputError("the message body is empty; send a JSON object", field="$")
        binary = self.content_type(content_type) == MSGPACK
        return parse((self._msgpack if binary else self._json).decode(body))

    @staticmethod
    def encode(value: Any, content_type: str) -> bytes:
        if content_type == MSGPACK:
            return msgspec.msgpack.encode(value)
        return msgspec.json.encode(value)


def header(headers: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` (lower case) that the message carries, stripped; ``None`` if none."""
    for name in names:
        value = headers.get(name)
        if value:
            return value.strip()
    return None
