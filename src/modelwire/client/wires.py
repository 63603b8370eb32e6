"""The concrete wires, opened for an endpoint: the one module that names them.

``transport.py`` (predictions, streams, health) and ``job_wire.py`` (jobs) say what a wire must do;
``_rest.py``, ``_grpc.py``, ``_ws.py``, ``_rest_jobs.py`` and ``_grpc_jobs.py`` do it, importing those
contracts. ``AsyncClient`` asks here for the wire a call needs, so the contracts never import their
implementations and every arrow points one way: client -> wires -> implementations -> contracts.

Each implementation is imported inside the function that opens it: importing the client loads no httpx,
grpc or websockets until a call needs them.
"""

from __future__ import annotations

from modelwire.client.features import FeatureWire
from modelwire.client.job_wire import JobWire
from modelwire.client.transport import Endpoint, EventStreamer, PredictStreamer, Transport

__all__ = ["open_feature_wire", "open_job_wire", "open_transport", "open_websocket"]


def open_transport(endpoint: Endpoint) -> Transport:
    """Build the transport for the endpoint's scheme. Must run inside the event loop that will use it."""
    if endpoint.is_grpc:
        from modelwire.client._grpc import GrpcTransport

        return GrpcTransport(endpoint)
    from modelwire.client._rest import RestTransport

    return RestTransport(endpoint)


def open_job_wire(transport: object) -> JobWire:
    """The jobs wire over an open transport (it shares the transport's connection)."""
    from modelwire.client._grpc import GrpcTransport

    if isinstance(transport, GrpcTransport):
        from modelwire.client._grpc_jobs import GrpcJobWire

        return GrpcJobWire(transport)
    from modelwire.client._rest import RestTransport
    from modelwire.client._rest_jobs import RestJobWire

    if not isinstance(transport, RestTransport):
        raise TypeError(f"no jobs wire for {type(transport).__name__}")
    return RestJobWire(transport)


def open_feature_wire(transport: object) -> FeatureWire:
    """The feature store wire over an open transport (it shares the transport's connection)."""
    from modelwire.client._grpc import GrpcTransport

    if isinstance(transport, GrpcTransport):
        from modelwire.client._grpc_features import GrpcFeatureWire

        return GrpcFeatureWire(transport)
    from modelwire.client._rest import RestTransport
    from modelwire.client._rest_features import RestFeatureWire

    if not isinstance(transport, RestTransport):
        raise TypeError(f"no feature wire for {type(transport).__name__}")
    return RestFeatureWire(transport)


def open_websocket(endpoint: Endpoint) -> PredictStreamer | EventStreamer:
    """The WebSocket wire for an ``http(s)://`` endpoint's streams; each call on it opens its own socket."""
    from modelwire.client._ws import WebSocketWire

    return WebSocketWire(endpoint)
