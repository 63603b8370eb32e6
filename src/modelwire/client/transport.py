"""The one interface both wires implement, the endpoint they are built for, and the rules for choosing one.

A transport speaks one wire and nothing else: it turns a call into a request, the answer into plain
Python values, and every failure (a refused connection, a timeout, an error status) into the modelwire
error tree at one boundary (``map_httpx_exceptions`` / ``map_grpc_errors``). ``AsyncClient`` holds one.

This module is the contract the wires import; it imports none of them. ``wires.py`` opens the concrete
transport for an endpoint (``open_transport``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from modelwire.client.results import Health
from modelwire.client.tls import ClientTLS
from modelwire.errors import ConfigurationError, ModelwireError

__all__ = [
    "GRPC_SCHEMES",
    "REST_SCHEMES",
    "Endpoint",
    "EventStreamer",
    "EventWire",
    "PredictStreamer",
    "PredictWire",
    "Transport",
    "choose_wire",
    "parse_url",
    "with_credentials",
]

REST_SCHEMES = frozenset({"http", "https"})
GRPC_SCHEMES = frozenset({"grpc", "grpcs"})

Output = Mapping[str, Any]
PredictWire = Literal["ws", "grpc"]
EventWire = Literal["sse", "ws", "grpc"]


class Transport(Protocol):
    """What ``AsyncClient`` needs from a wire. Every method raises only ``ModelwireError``s."""

    async def predict(self, text: str, *, model: str, version: str | None) -> Output: ...

    async def predict_batch(
        self, texts: Sequence[str], *, model: str, version: str | None
    ) -> list[Output | ModelwireError]: ...

    async def models(self) -> list[Output]: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...


class PredictStreamer(Protocol):
    """A wire that streams predictions: answers ``(index, output or error)`` as each is ready."""

    def stream_predict(
        self, texts: AsyncIterator[str], *, model: str | None, version: str | None
    ) -> AsyncGenerator[tuple[int, Output | ModelwireError]]: ...


class EventStreamer(Protocol):
    """A wire that follows event-bus topics: each event as ``{"id", "topic", "type", "time", "data"}``."""

    def events(self, topics: Sequence[str], *, last_event_id: int | None) -> AsyncGenerator[Output]: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed server URL plus the options every transport honours."""

    url: str
    scheme: str
    timeout: float | None
    headers: Mapping[str, str] = field(default_factory=dict)
    http2: bool = False
    tls: ClientTLS = field(default_factory=ClientTLS)

    @property
    def is_grpc(self) -> bool:
        return self.scheme in GRPC_SCHEMES

    @property
    def target(self) -> str:
        """``host:port`` for gRPC (the URL's path, if any, is ignored)."""
        parts = urlsplit(self.url)
        if not parts.hostname:
            raise ConfigurationError(f"{self.url!r} names no host")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = parts.port or (443 if self.scheme == "grpcs" else 8001)
        return f"{host}:{port}"


def parse_url(
    url: str,
    *,
    timeout: float | None,
    headers: Mapping[str, str] | None = None,
    http2: bool = False,
    tls: ClientTLS | None = None,
) -> Endpoint:
    """Check the URL's scheme and host; raise ``ConfigurationError`` if no transport speaks it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigurationError(f"invalid server URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in REST_SCHEMES | GRPC_SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(REST_SCHEMES | GRPC_SCHEMES))
        raise ConfigurationError(f"unsupported URL scheme in {url!r}: use one of {known}")
    if not parts.hostname:
        raise ConfigurationError(f"{url!r} names no host")
    if timeout is not None and timeout <= 0:
        raise ConfigurationError(f"timeout must be positive or None, not {timeout}")
    tls = tls or ClientTLS()
    if tls.configured and scheme in ("http", "grpc"):
        secure = "https" if scheme == "http" else "grpcs"
        raise ConfigurationError(f"a CA or client certificate was given for a cleartext URL: use {secure}://")
    return Endpoint(
        url=url, scheme=scheme, timeout=timeout, headers=dict(headers or {}), http2=http2, tls=tls
    )


API_KEY_ENV = "MODELWIRE_API_KEY"


def with_credentials(
    headers: Mapping[str, str] | None, *, api_key: str | None, token: str | None
) -> dict[str, str]:
    """``headers`` plus ``Authorization: Bearer <token or api_key>``; with neither, the key in
    ``MODELWIRE_API_KEY``, unless ``headers`` already carry an ``Authorization``."""
    out = dict(headers or {})
    credential = token or api_key
    if credential is None and not any(k.lower() == "authorization" for k in out):
        credential = os.environ.get(API_KEY_ENV) or None
    if credential is not None:
        out = {k: v for k, v in out.items() if k.lower() != "authorization"}
        out["authorization"] = f"Bearer {credential}"
    return out


def choose_wire(endpoint: Endpoint, requested: str | None, allowed: Sequence[str], default_http: str) -> str:
    """The streaming wire for a call: ``grpc`` on a gRPC URL, else ``requested`` or ``default_http``.

    A gRPC URL reaches only gRPC streams and an HTTP URL only WebSocket and SSE (they are different ports),
    so asking across raises ``ConfigurationError`` rather than guessing the other port.
    """
    if requested is not None and requested not in allowed:
        raise ConfigurationError(f"unknown transport {requested!r}: use one of {', '.join(allowed)}")
    if endpoint.is_grpc:
        if requested not in (None, "grpc"):
            raise ConfigurationError(
                f"transport={requested!r} needs an http:// or https:// URL, not {endpoint.url}"
            )
        return "grpc"
    if requested == "grpc":
        raise ConfigurationError(f"transport='grpc' needs a grpc:// or grpcs:// URL, not {endpoint.url}")
    return requested or default_http
