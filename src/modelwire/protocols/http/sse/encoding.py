"""Server-Sent Events framing (WHATWG HTML, "Server-sent events"): pure functions from fields to bytes.

A message is ``field: value`` lines ended by a blank line. Any of CR LF, CR or LF ends a line for the
client, so ``data`` is split on all three and each piece sent as its own ``data:`` line (the client joins
them back with LF): nothing inside ``data`` can end the message early or forge an ``id:`` or ``event:``.
``event`` and ``id`` are one line by definition; a line break (or NUL) in them is refused, not escaped.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

__all__ = ["HEARTBEAT", "comment", "encode", "encode_json"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")
_json = msgspec.json.Encoder()


def _field(name: str, value: str) -> str:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise ValueError(f"an SSE {name} cannot hold a line break or NUL: {value[:60]!r}")
    return f"{name}: {value}\n"


def encode(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | int | None = None,
    retry: int | None = None,
) -> bytes:
    """One SSE message: ``encode("a\\nb", event="x", id=7)`` is
    ``b"id: 7\\nevent: x\\ndata: a\\ndata: b\\n\\n"``.

    A message without ``data`` dispatches no event in a browser; it still carries ``id``/``retry``.
    """
    out = []
    if retry is not None:
        if retry < 0:
            raise ValueError("an SSE retry must be a non-negative number of milliseconds")
        out.append(f"retry: {int(retry)}\n")
    if id is not None:
        out.append(_field("id", str(id)))
    if event is not None:
        out.append(_field("event", event))
    if data is not None:
        out.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    out.append("\n")
    return "".join(out).encode()


def encode_json(value: Any, *, event: str | None = None, id: str | int | None = None) -> bytes:
    """An SSE message whose ``data`` is ``value`` as JSON (one line: JSON escapes every line break)."""
    return encode(_json.encode(value).decode(), event=event, id=id)


def comment(text: str = "") -> bytes:
    """A comment (ignored by clients; keeps proxies from closing an idle connection)."""
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


HEARTBEAT = comment("heartbeat")
