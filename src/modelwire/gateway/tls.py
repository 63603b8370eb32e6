"""TLS on the gateway → model service hop: the CA that signed the model services, the client certificate
for mutual TLS, and the name their certificates must carry.

The files are read and checked once, at start (``UpstreamTLS.from_settings``): a missing or unreadable file,
a certificate without its key, or a key that is not the certificate's is a ``ConfigurationError`` before any
channel is made. They are not read again (no reload on SIGHUP): restart gateways and workers to take new ones.

The name. The router dials addresses (``ipv4:10.0.0.7:8001,...``: a DNS name is resolved first, so that
groups follow it), so gRPC would check the model services' certificates against the address. Instead every
channel checks them against one name: ``upstream_server_name`` when given, else the host written in
``--upstream`` (the ``dns:///NAME`` of a headless Service, or the one host of a static list). A static list
of several hosts has no such name: it needs ``upstream_server_name`` (one name on every certificate).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from modelwire.errors import ConfigurationError
from modelwire.gateway.upstreams import UpstreamSpec
from modelwire.settings import GatewaySettings

__all__ = ["UpstreamTLS", "dial"]


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {flag} {path}: {exc.strerror or exc} (give a readable PEM file)"
        ) from None


@dataclass(frozen=True, slots=True)
class UpstreamTLS:
    """What every channel to a model service needs for TLS: PEM bytes and the name to verify.

    >>> tls = UpstreamTLS.from_settings(settings.gateway, spec)   # None: cleartext
    >>> channel = dial("ipv4:10.0.0.7:8001", options, tls)
    """

    root_certificates: bytes | None
    private_key: bytes | None
    certificate_chain: bytes | None
    server_name: str

    @classmethod
    def from_settings(cls, gateway: GatewaySettings, spec: UpstreamSpec) -> UpstreamTLS | None:
        """The checked TLS material, or ``None`` when neither ``upstream_ca`` nor ``upstream_cert`` is set."""
        ca, cert, key = gateway.upstream_ca, gateway.upstream_cert, gateway.upstream_cert_key
        if (cert is None) != (key is None):
            raise ConfigurationError(
                "a client certificate needs its key: give both --upstream-cert and --upstream-cert-key "
                "(MODELWIRE_GATEWAY__UPSTREAM_CERT / MODELWIRE_GATEWAY__UPSTREAM_CERT_KEY)"
            )
        if ca is None and cert is None:
            if gateway.upstream_server_name is not None:
                raise ConfigurationError(
                    "--upstream-server-name only applies with TLS: give --upstream-ca too"
                )
            return None
        root = None
        if ca is not None:
            root = _read(ca, "--upstream-ca")
            _check_ca(root, ca)
        chain = private = None
        if cert is not None and key is not None:
            chain, private = _read(cert, "--upstream-cert"), _read(key, "--upstream-cert-key")
            _check_pair(cert, key)
        return cls(root, private, chain, gateway.upstream_server_name or _server_name(spec))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    @property
    def mutual(self) -> bool:
        return self.certificate_chain is not None

    def describe(self) -> str:
        return f"{'mutual TLS' if self.mutual else 'TLS'}, certificates checked for {self.server_name!r}"


def dial(target: str, options: Sequence[tuple[str, Any]], tls: UpstreamTLS | None) -> grpc.aio.Channel:
    """A channel to model services: cleartext, or TLS checking their certificates for ``tls.server_name``."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    named = [*options, ("grpc.ssl_target_name_override", tls.server_name)]
    return grpc.aio.secure_channel(target, tls.credentials(), options=named)


def _server_name(spec: UpstreamSpec) -> str:
    hosts = {spec.dns[0]} if spec.dns is not None else {host for host, _ in spec.static}
    if len(hosts) != 1:
        raise ConfigurationError(
            f"with TLS, upstreams on several hosts ({', '.join(sorted(hosts))}) need one name on every "
            "model service's certificate: give --upstream-server-name NAME "
            "(MODELWIRE_GATEWAY__UPSTREAM_SERVER_NAME)"
        )
    return hosts.pop()


def _check_ca(data: bytes, path: Path) -> None:
    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"--upstream-ca {path} is not a PEM CA certificate: {exc}") from None


def _check_pair(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"cannot use --upstream-cert {cert} with --upstream-cert-key {key}: {exc} (both PEM, and the key "
            "must be the certificate's; `modelwire certs init` writes client.pem and client-key.pem)"
        ) from None
