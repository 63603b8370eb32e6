"""Reading request bodies: size limit while streaming, media type, JSON decoding with a field path.

A refused body (413, 415, or any error before the body was read) is read on and thrown away, up to twice
the limit in all and for at most ``DISCARD_S``, before the error is sent: a client still sending its body
would otherwise see the connection reset (HTTP/1.1) or the stream reset (HTTP/2) instead of the answer.
A body declared larger than that is not waited for: the error goes at once (the server may then reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from modelwire.core.nesting import DEFAULT_MAX_DEPTH, check_json_depth, too_deep
from modelwire.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError

__all__ = ["DISCARD_S", "decode_json", "discard", "discard_budget", "read_body"]

T = TypeVar("T")
DISCARD_S = 5.0
_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)


async def read_body(
    request: Request,
    limit: int,
    *,
    media_types: tuple[str, ...] = ("application/json",),
    untyped: bool = False,
) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes and (415) a foreign media type.

    A body without ``Content-Type`` is refused too (415) unless ``untyped`` (the Open Inference Protocol,
    whose clients send none): with the form types (``application/x-www-form-urlencoded``,
    ``multipart/form-data``, ``text/plain``), it is what a page can send cross-site without a preflight.
    """
    stream = request.stream()
    declared = request.headers.get("content-length")
    content_type = request.headers.get("content-type")
    if content_type is not None or not untyped:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in media_types and not media.endswith("+json"):
            await discard(stream, discard_budget(request, limit))
            given = f"content type {media!r} is" if media else "a body without Content-Type is"
            raise UnsupportedMediaTypeError(
                f"{given} not supported here; send Content-Type: {' or '.join(media_types)}"
            )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await discard(stream, discard_budget(request, limit))
        raise PayloadTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await discard(stream, 2 * limit - size)
            raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def discard_budget(request: Request, limit: int) -> int:
    """How much of a refused, unread body to read on: all of a body declared at most twice ``limit``, none
    of a larger one, up to twice ``limit`` of one of unknown length (chunked); none when the client waits
    for ``100 Continue`` (reading would invite the very upload the answer refuses)."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return 0
    content_length = request.headers.get("content-length")
    if content_length is not None and content_length.isdigit():
        size = int(content_length)
        return size if size <= 2 * limit else 0
    return 2 * limit


async def discard(stream: AsyncIterator[bytes], budget: int, timeout_s: float = DISCARD_S) -> None:
    """Read and drop the rest of a refused body, at most ``budget`` bytes and ``timeout_s`` seconds."""
    if budget <= 0:
        return
    with contextlib.suppress(Exception):  # the client gone, or too slow: the error is sent regardless
        async with asyncio.timeout(timeout_s):
            async for chunk in stream:
                budget -= len(chunk)
                if budget < 0:
                    return


def decode_json(body: bytes, type_: type[T], *, max_depth: int = DEFAULT_MAX_DEPTH) -> T:
    """Decode and validate; errors become 400 with the JSON path of the offending field, or naming
    ``limits.max_json_depth`` when the body nests deeper than ``max_depth``."""
    if not body.strip():
        raise InvalidInputError("the request body is empty; send a JSON object")
    try:
        value = msgspec.json.decode(body, type=type_)
    except RecursionError:  # msgspec's own bound (~1000 levels): far past any limit
        raise too_deep(max_depth) from None
    except msgspec.ValidationError as exc:
        match = _PATH.match(str(exc))
        assert match is not None
        raise InvalidInputError(match["message"], field=match["path"] or "$") from None
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {exc}") from None
    check_json_depth(body, max_depth)
    return value


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
