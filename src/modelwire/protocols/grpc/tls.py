"""gRPC server credentials over ``security.tls.TLSMaterial``: TLS (mutual when a client CA is set) that
follows a SIGHUP reload without dropping open channels."""

from __future__ import annotations

from typing import Any

import grpc

from modelwire.security.tls import TLSMaterial

__all__ = ["server_credentials"]


def _config(cert: bytes, key: bytes, client_ca: bytes | None) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


def server_credentials(material: TLSMaterial) -> grpc.ServerCredentials:
    """For ``add_secure_port``: gRPC asks, before each new handshake, whether a reload took a new pair."""

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        fresh = material.take_reloaded()
        return _config(*fresh) if fresh is not None else None

    fetcher: Any = fetch  # grpc's stub says the fetcher never returns None; it may
    return grpc.dynamic_ssl_server_credentials(
        _config(*material.current()), fetcher, require_client_authentication=material.mutual
    )
