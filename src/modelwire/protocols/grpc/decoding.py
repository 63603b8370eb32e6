"""Request bytes that are not the method's message: a client's mistake, answered INVALID_ARGUMENT.

grpc.aio parses a request with the handler's ``request_deserializer`` before any servicer code runs; when
that raises (truncated bytes, a bad wire type, invalid UTF-8 in a string field), grpc answers UNKNOWN and
logs a traceback as if the server were broken. ``lenient`` wraps the deserializer so that it returns a
``Malformed`` marker instead; the handler wrapper of ``protocols/grpc/auth.py`` (which wraps every
handler) turns the marker into INVALID_ARGUMENT through the one error table, after authentication, so a
stranger learns nothing about parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelwire.errors import InvalidInputError

__all__ = ["Malformed", "lenient"]

Deserializer = Callable[[bytes], Any]


class Malformed:
    """Stands for a request message that could not be parsed; ``error`` says why, for the client."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidInputError) -> None:
        self.error = error


def lenient(deserialize: Deserializer | None) -> Deserializer | None:
    """``deserialize``, answering ``Malformed`` rather than raising (``None`` stays ``None``: raw bytes)."""
    if deserialize is None:
        return None
    message_type = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = getattr(message_type, "full_name", "request")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - any parse failure is the sender's (DecodeError, ...)
            return Malformed(
                InvalidInputError(
                    f"the request bytes do not parse as a {name} message: send the message the "
                    "method's .proto declares, serialized by a protobuf library"
                )
            )

    return parse
