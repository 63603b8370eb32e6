"""The WebSocket wire (``/v1/ws``, ``/v1/models/{name}/ws``) for streams: pipelined predictions and events.

Each ``stream_predict`` or ``events`` call opens its own socket (``ws://`` or ``wss://``, derived from the
client's ``http://``/``https://`` URL) with the ``modelwire.v1.msgpack`` subprotocol, and closes it when the
iterator ends. ``map_ws_exceptions`` is the one place a ``websockets`` exception becomes a
``ModelwireError``: a refused handshake by its HTTP answer (the REST error body), a closed socket by its
close code (``CLOSE_ERRORS``, the server's table read backwards).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from modelwire.client._rest import error_from_response, error_from_wire
from modelwire.client.tls import untrusted_hint
from modelwire.client.transport import Endpoint, Output
from modelwire.errors import (
    ConfigurationError,
    DeadlineExceededError,
    ErrorCode,
    InternalError,
    ModelwireError,
    UnavailableError,
    error_from_code,
)

__all__ = ["CLOSE_ERRORS", "SUBPROTOCOL", "WebSocketWire", "error_from_close", "map_ws_exceptions", "ws_url"]

SUBPROTOCOL = "modelwire.v1.msgpack"
KEEPALIVE_S = 15.0  # an application ping on quiet event streams, so the server's idle timeout never fires

# Close codes a modelwire server ends a socket with (protocols/http/ws/errors.py), and what each means here.
CLOSE_ERRORS: dict[int, ErrorCode] = {
    1001: ErrorCode.UNAVAILABLE,
    1003: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    1008: ErrorCode.INVALID_ARGUMENT,
    1009: ErrorCode.PAYLOAD_TOO_LARGE,
    1011: ErrorCode.INTERNAL,
    1013: ErrorCode.RESOURCE_EXHAUSTED,
}

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def ws_url(url: str, path: str) -> str:
    """``http://host:8000/base`` + ``/v1/ws`` -> ``ws://host:8000/base/v1/ws`` (``https`` -> ``wss``)."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def error_from_close(code: int | None, reason: str) -> ModelwireError:
    """The error a socket closed with ``code`` stands for (the server's reason as the message)."""
    wire = CLOSE_ERRORS.get(code or 1006, ErrorCode.UNAVAILABLE)
    message = reason or f"the server closed the WebSocket (code {code})"
    return error_from_code(wire.value, message)


@contextlib.contextmanager
def map_ws_exceptions(url: str) -> Iterator[None]:
    """Translate websockets' (and the socket's) exceptions into the modelwire error tree."""
    try:
        yield
    except InvalidStatus as exc:
        response = exc.response
        raise error_from_response(
            response.status_code, response.headers, bytes(response.body or b"")
        ) from None
    except InvalidURI as exc:
        raise ConfigurationError(f"invalid WebSocket URL {url!r}: {exc}") from None
    except ConnectionClosed as exc:
        received = exc.rcvd
        raise error_from_close(
            received.code if received else None, received.reason if received else ""
        ) from None
    except TimeoutError:
        raise UnavailableError(f"could not open a WebSocket to {url} in time") from None
    except (OSError, WebSocketException) as exc:
        reason = f"cannot reach {url}: {exc or type(exc).__name__}"
        raise UnavailableError(untrusted_hint(reason) or reason) from None


class WebSocketWire:
    """Streams over one new WebSocket per call."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    @contextlib.asynccontextmanager
    async def _open(self, path: str) -> AsyncIterator[ClientConnection]:
        url = ws_url(self._endpoint.url, path)
        with map_ws_exceptions(url):
            socket = await connect(
                url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]  # a Subprotocol is a str
                additional_headers=dict(self._endpoint.headers),
                open_timeout=self._endpoint.timeout,
                max_size=16 * 1024 * 1024,
                compression=None,
                ssl=self._endpoint.tls.ssl_context() if url.startswith("wss:") else None,
            )
        try:
            yield socket
        finally:
            with contextlib.suppress(Exception):
                await socket.close()

    async def _receive(self, socket: ClientConnection, wait: float | None) -> Mapping[str, Any]:
        """The next message; a closed socket raises its error, a silent one ``DeadlineExceededError``."""
        try:
            async with asyncio.timeout(wait):
                data = await socket.recv()
        except TimeoutError:
            raise DeadlineExceededError(f"no answer from the server in {wait:g} s") from None
        message = _decode(data) if isinstance(data, bytes) else msgspec.json.decode(data)
        if not isinstance(message, Mapping):
            raise InternalError(f"the server sent a message that is not an object: {message!r:.80}")
        return message

    async def stream_predict(
        self, texts: AsyncIterator[str], *, model: str | None, version: str | None
    ) -> AsyncGenerator[tuple[int, Output | ModelwireError]]:
        path = "/v1/ws" if model is None else f"/v1/models/{quote(model, safe='')}/ws"
        url = ws_url(self._endpoint.url, path)
        extra = {} if version is None else {"version": version}
        sent = received = 0
        done_sending = False
        progress = asyncio.Event()  # set by the sender after each input, and when it stops

        async with self._open(path) as socket:

            async def send_all() -> None:
                nonlocal sent, done_sending
                try:
                    async for text in texts:
                        with map_ws_exceptions(url):
                            await socket.send(_encode({"id": sent, "op": "predict", "text": text, **extra}))
                        sent += 1
                        progress.set()
                    done_sending = True
                finally:
                    progress.set()

            # Inputs go out as the caller yields them, without waiting for answers (the server
            # pipelines them, and stops reading past its in-flight cap: backpressure, not buffering).
            sender = asyncio.create_task(send_all(), name="modelwire-ws-send")
            try:
                while not (done_sending and received == sent):
                    if received == sent:  # nothing outstanding: wait for the caller's next input
                        await progress.wait()
                        progress.clear()
                        if sender.done() and not done_sending:
                            sender.result()  # the caller's iterable (or the socket) failed: raise that
                        continue
                    with map_ws_exceptions(url):
                        message = await self._receive(socket, self._endpoint.timeout)
                    item = _prediction(message, sent)
                    if item is not None:
                        received += 1
                        yield item
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ModelwireError):
                    await sender

    async def events(self, topics: Sequence[str], *, last_event_id: int | None) -> AsyncGenerator[Output]:
        if last_event_id is not None:
            raise ConfigurationError(
                "WebSocket subscriptions start from now: resume with last_event_id over SSE or gRPC"
            )
        url = ws_url(self._endpoint.url, "/v1/ws")
        async with self._open("/v1/ws") as socket:
            early: list[Mapping[str, Any]] = []
            with map_ws_exceptions(url):
                for i, topic in enumerate(topics):
                    await socket.send(_encode({"op": "subscribe", "topic": topic, "id": f"sub{i}"}))
                # Every subscription is confirmed (or refused: raised) before the stream is handed over.
                waiting = len(topics)
                while waiting:
                    message = await self._receive(socket, self._endpoint.timeout)
                    if message.get("op") == "subscribed":
                        waiting -= 1
                    elif message.get("op") == "error":
                        raise error_from_wire(message.get("error") or {})
                    elif message.get("op") == "event":
                        early.append(message)
            for message in early:
                yield message
            while True:
                try:
                    with map_ws_exceptions(url):
                        message = await self._receive(socket, KEEPALIVE_S)
                except DeadlineExceededError:  # quiet topics: keep the connection alive
                    with map_ws_exceptions(url):
                        await socket.send(_encode({"op": "ping"}))
                    continue
                except ModelwireError:
                    if socket.close_code in (1000, 1001):  # idle timeout or server shutdown: the end
                        return
                    raise
                if message.get("op") == "event":
                    yield message
                elif message.get("op") == "error":
                    raise error_from_wire(message.get("error") or {})


def _prediction(message: Mapping[str, Any], sent: int) -> tuple[int, Output | ModelwireError] | None:
    """A server message to ``(index, output or error)``; ``None`` for messages that are not answers."""
    op = message.get("op")
    if op in ("ping", "pong", "event", "subscribed", "unsubscribed"):
        return None
    raw_id = message.get("id")
    if not isinstance(raw_id, int) or isinstance(raw_id, bool) or not 0 <= raw_id < sent:
        if op == "error":  # an error about no request of ours: the whole stream is wrong
            raise error_from_wire(message.get("error") or {})
        raise InternalError(f"the server answered an unknown input ({raw_id!r:.20})")
    if op == "error":
        return raw_id, error_from_wire(message.get("error") or {})
    # the envelope (the request's id, the version that answered) is not the model's output
    return raw_id, {key: value for key, value in message.items() if key not in ("id", "version")}
