"""TLS options of the client: which CA to trust, and the client certificate for mutual TLS.

One ``ClientTLS`` per ``Endpoint`` gives every wire what it needs: an ``ssl.SSLContext`` for httpx (REST,
SSE) and websockets (``wss://``), channel credentials for gRPC (``grpcs://``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelwire.errors import ConfigurationError
from modelwire.settings import default_data_dir

if TYPE_CHECKING:
    import grpc

__all__ = ["CA_CERT_ENV", "ClientTLS", "untrusted_hint"]

CA_CERT_ENV = "MODELWIRE_CA_CERT"


_VERIFY_FAILED = ("certificate_verify_failed", "certificate verify failed")


def untrusted_hint(message: str) -> str:
    """What to do when ``message`` (a TLS failure, from any wire) says the server's certificate was not
    trusted; ``""`` for any other failure."""
    if not any(mark in message.lower() for mark in _VERIFY_FAILED):
        return ""
    ca = default_data_dir() / "tls" / "ca.pem"
    return (
        f"{message} (the server's certificate is not signed by a CA this client trusts: pass its CA with "
        f"--ca-cert FILE, ca_cert=FILE in Python, or {CA_CERT_ENV}=FILE; `modelwire certs init` wrote "
        f"its CA to {ca} unless given --dir)"
    )


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """``ca_cert``: PEM CA to trust instead of the system's (e.g. ``modelwire certs init``'s ``ca.pem``);
    ``client_cert`` + ``client_key``: the certificate a mutual-TLS server asks for."""

    ca_cert: str | Path | None = None
    client_cert: str | Path | None = None
    client_key: str | Path | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ConfigurationError(
                "a client certificate needs its key: give both client_cert and client_key"
            )

    @property
    def configured(self) -> bool:
        return self.ca_cert is not None or self.client_cert is not None

    def ssl_context(self) -> ssl.SSLContext:
        """The context for ``https://`` and ``wss://``: TLS 1.2+, the CA (or system roots), client cert."""
        try:
            if self.ca_cert is not None:
                context = ssl.create_default_context(cadata=_read(self.ca_cert, "CA certificate").decode())
            else:
                context = ssl.create_default_context()
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.client_cert is not None and self.client_key is not None:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigurationError(f"cannot use the TLS files given to the client: {exc}") from None
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials for ``grpcs://``: the CA (or the system roots) and the client certificate."""
        import grpc

        root = _read(self.ca_cert, "CA certificate") if self.ca_cert is not None else None
        key = _read(self.client_key, "client key") if self.client_key is not None else None
        chain = _read(self.client_cert, "client certificate") if self.client_cert is not None else None
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
