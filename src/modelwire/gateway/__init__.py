"""The gateway role: modelwire's public face (REST, WebSocket, SSE, jobs, dashboard, its own gRPC port) with
models that are model services reached over gRPC (``modelwire gateway --upstream ...``).

``upstreams.py`` says where the model services are and how channels to them behave, ``tls.py`` how they
are dialled over TLS or mutual TLS (``--upstream-ca``), ``router.py`` watches
them and routes by model, ``remote.py`` is the ``Model`` whose ``predict`` is a gRPC call, ``run.py``
composes it all with the ordinary ``Services`` and ``Server``.
"""

from modelwire.gateway.remote import RemoteModel
from modelwire.gateway.router import Router
from modelwire.gateway.run import attach_upstreams, run_gateway
from modelwire.gateway.tls import UpstreamTLS
from modelwire.gateway.upstreams import UpstreamSpec

__all__ = ["RemoteModel", "Router", "UpstreamSpec", "UpstreamTLS", "attach_upstreams", "run_gateway"]
