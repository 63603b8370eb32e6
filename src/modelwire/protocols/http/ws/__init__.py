"""The WebSocket adapter: ``/v1/ws``, ``/v1/models/{name}/ws`` and the diagnostic ``/v1/ws/echo``.

``framing`` (messages, no I/O), ``errors`` (the close-code table), ``channel`` (the ASGI socket),
``connection`` (one session), ``endpoint`` (handshakes and routes).
"""

from modelwire.protocols.http.ws.endpoint import add_ws_routes

__all__ = ["add_ws_routes"]
