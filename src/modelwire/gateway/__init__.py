"""Models that are model services reached over gRPC: what a gateway (``modelwire gateway --upstream ...``)
and ``modelwire worker --upstream`` serve instead of local models.

``upstreams.py`` says where the model services are and how channels to them behave, ``tls.py`` how they
are dialled over TLS or mutual TLS (``--upstream-ca``), ``router.py`` watches them and routes by model,
``remote.py`` is the ``Model`` whose ``predict`` is a gRPC call, ``coalesce.py`` makes the requests that
arrive together one call. ``app/roles.py`` composes the role.
"""

from modelwire.gateway.remote import RemoteModel
from modelwire.gateway.router import Router
from modelwire.gateway.tls import UpstreamTLS
from modelwire.gateway.upstreams import UpstreamSpec

__all__ = ["RemoteModel", "Router", "UpstreamSpec", "UpstreamTLS"]
