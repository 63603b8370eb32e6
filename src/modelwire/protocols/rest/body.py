"""Reading request bodies: size limit while streaming, media type, JSON decoding with a field path."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from modelwire.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError

__all__ = ["decode_json", "read_body"]

T = TypeVar("T")
_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)


async def read_body(
    request: Request, limit: int, *, media_types: tuple[str, ...] = ("application/json",)
) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes and (415) a foreign media type."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in media_types and not media.endswith("+json"):
            raise UnsupportedMediaTypeError(
                f"content type {media!r} is not supported here; send {' or '.join(media_types)}"
            )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes, type_: type[T]) -> T:
    """Decode and validate; errors become 400 with the JSON path of the offending field."""
    if not body.strip():
        raise InvalidInputError("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        match = _PATH.match(str(exc))
        assert match is not None
        raise InvalidInputError(match["message"], field=match["path"] or "$") from None
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {exc}") from None


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
