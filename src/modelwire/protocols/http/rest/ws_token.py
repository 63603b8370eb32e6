"""``POST /v1/auth/ws-token``: a short-lived token a browser passes on a WebSocket handshake.

Browsers cannot set ``Authorization`` on ``new WebSocket(...)``. A page authenticated normally (this
route needs the ``predict`` scope, like the WebSocket routes) gets a token good for ``auth.ws_token_ttl_s``
seconds and offers it as a subprotocol entry next to the real one::

    const {subprotocol} = await (await fetch("/v1/auth/ws-token", {method: "POST", headers})).json();
    new WebSocket(url, ["modelwire.v1.json", subprotocol]);

The answer also sets it as a ``modelwire_ws_token`` cookie (HttpOnly, SameSite=Strict, path ``/v1``).
"""

from __future__ import annotations

import math

import msgspec
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from modelwire.errors import FailedPreconditionError
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.auth import WS_TOKEN_COOKIE, WS_TOKEN_SUBPROTOCOL
from modelwire.protocols.http.openapi import responses
from modelwire.security.principal import current_principal

__all__ = ["add_auth_routes"]


class WsToken(msgspec.Struct):
    """A WebSocket handshake token."""

    token: str
    subprotocol: str
    """Offer this entry in ``Sec-WebSocket-Protocol`` (with ``modelwire.v1.json``); it is never echoed."""
    expires_in: int
    principal: str


_encoder = msgspec.json.Encoder()


def add_auth_routes(app: FastAPI, services: Facades) -> None:
    """Register ``POST /v1/auth/ws-token``."""
    tokens = services.security.ws_tokens
    secure = services.settings.tls.enabled

    async def ws_token(request: Request) -> Response:
        principal = current_principal()
        if not principal.authenticated:
            raise FailedPreconditionError(
                "authentication is off on this server: open the WebSocket without a token"
            )
        token, _expires = tokens.issue(principal)
        ttl = math.floor(tokens.ttl_s)
        body = WsToken(token, WS_TOKEN_SUBPROTOCOL + token, ttl, principal.id)
        response = Response(
            _encoder.encode(body), media_type="application/json", headers={"Cache-Control": "no-store"}
        )
        response.set_cookie(
            WS_TOKEN_COOKIE, token, max_age=ttl, path="/v1", secure=secure, httponly=True, samesite="strict"
        )
        return response

    documented = responses(WsToken)
    error = documented[400]["content"]
    app.add_api_route(
        "/v1/auth/ws-token",
        ws_token,
        methods=["POST"],
        tags=["auth"],
        summary="A short-lived token for a browser WebSocket handshake",
        responses={
            200: documented[200],
            401: {"description": "No or bad credentials (WWW-Authenticate)", "content": error},
            403: {"description": "The credential lacks the predict scope", "content": error},
            409: {"description": "Authentication is off: no token is needed", "content": error},
        },
    )
