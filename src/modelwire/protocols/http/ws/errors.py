"""The one table from ``ErrorCode`` to WebSocket close code, and the codes modelwire closes with.

Most errors on a WebSocket do not close it: a bad message or a failed prediction is answered with an
``{"op": "error"}`` message and the socket stays open. The table says how a connection ends when an error
does end it; before the handshake completes, a refusal is an HTTP status from the REST table instead
(``protocols/http/errors.HTTP_STATUS``), since an unaccepted socket has no close code.

Codes (RFC 6455 section 7.4.1 and the IANA registry):

- 1000 normal: the idle timeout (the connection had done its job; distinct from 1001 so a client can
  tell "you were idle" from "the server is going away");
- 1001 going away: server shutdown, after in-flight replies were sent;
- 1003 unsupported data: a frame of the wrong type for the subprotocol (binary on JSON, text on msgpack);
- 1008 policy violation: a client that kept sending after ``ws_message_burst`` messages in a row were
  refused by the message rate limit (``throttle.py``), and the codes of the table below;
- 1009 message too big: over ``ws.max_message_bytes``;
- 1011 internal error: a failure inside the server, with the ``error_id`` it logged as the reason;
- 1013 try again later: a slow event reader the bus dropped (reconnecting, with the last event id, is the
  cure: nothing is wrong with the client's messages, so 1008 "policy violation" would mislead).

1002 (protocol error) and 1007 (invalid UTF-8) are for framing violations, which granian's WebSocket stack
detects and answers itself before a message reaches modelwire (see docs/decisions.md).
"""

from __future__ import annotations

from modelwire.errors import ErrorCode, InternalError, ModelwireError

__all__ = [
    "CLOSE_CODE",
    "GOING_AWAY",
    "INTERNAL_ERROR",
    "MESSAGE_TOO_BIG",
    "NORMAL",
    "POLICY_VIOLATION",
    "TRY_AGAIN_LATER",
    "UNSUPPORTED_DATA",
    "close_for",
]

NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

CLOSE_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: POLICY_VIOLATION,
    ErrorCode.PAYLOAD_TOO_LARGE: MESSAGE_TOO_BIG,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: UNSUPPORTED_DATA,
    ErrorCode.NOT_FOUND: POLICY_VIOLATION,
    ErrorCode.FAILED_PRECONDITION: POLICY_VIOLATION,
    ErrorCode.ALREADY_EXISTS: POLICY_VIOLATION,
    ErrorCode.METHOD_NOT_ALLOWED: POLICY_VIOLATION,
    ErrorCode.UNAUTHENTICATED: POLICY_VIOLATION,
    ErrorCode.PERMISSION_DENIED: POLICY_VIOLATION,
    ErrorCode.RESOURCE_EXHAUSTED: TRY_AGAIN_LATER,
    ErrorCode.DEADLINE_EXCEEDED: TRY_AGAIN_LATER,
    ErrorCode.UNAVAILABLE: GOING_AWAY,
    ErrorCode.INTERNAL: INTERNAL_ERROR,
}

_MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


def close_for(exc: ModelwireError) -> tuple[int, str]:
    """The close code and reason (trimmed to fit a close frame) that end a connection on ``exc``."""
    reason = f"{exc.message} (error_id={exc.error_id})" if isinstance(exc, InternalError) else exc.message
    return CLOSE_CODE.get(exc.code, INTERNAL_ERROR), trim_reason(reason)


def trim_reason(reason: str) -> str:
    data = reason.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
