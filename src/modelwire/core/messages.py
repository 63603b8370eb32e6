"""Decoding one JSON or msgpack message, bounded in depth: shared by the message wires (WebSocket, queues).

A message that is not valid JSON/msgpack, or nests deeper than ``limits.max_json_depth``, raises
``InvalidInputError`` (``field`` ``$``); what the value must look like is each wire's own business.
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelwire.core.nesting import DEFAULT_MAX_DEPTH, check_depth, check_json_depth, too_deep
from modelwire.errors import InvalidInputError

__all__ = ["MessageDecoder"]


class MessageDecoder:
    """``decode(data)``: msgpack when ``binary``, else JSON; raises ``InvalidInputError``, never another."""

    __slots__ = ("_decode", "binary", "max_depth")

    def __init__(self, *, binary: bool, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.binary = binary
        self.max_depth = max_depth
        decoder = msgspec.msgpack.Decoder() if binary else msgspec.json.Decoder()
        self._decode: Any = decoder.decode

    def decode(self, data: str | bytes) -> Any:
        try:
            message = self._decode(data)
            if self.binary:
                check_depth(message, self.max_depth, data if isinstance(data, bytes) else None)
            else:
                check_json_depth(data, self.max_depth)
        except RecursionError:  # msgspec's own bound (~1000 levels)
            raise too_deep(self.max_depth) from None
        except InvalidInputError:  # deeper than limits.max_json_depth
            raise
        except (msgspec.DecodeError, ValueError) as exc:
            kind = "msgpack" if self.binary else "JSON"
            raise InvalidInputError(f"the message is not valid {kind}: {exc}", field="$") from None
        return message
