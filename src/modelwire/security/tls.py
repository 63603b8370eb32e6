"""The server's certificate and key as every listener needs them, and their reload on SIGHUP.

How a reload works, per listener (``Server.reload_tls`` drives it; docs/tls.md says what a client sees):

- the files are read and checked first (``load_cert_chain`` on a fresh context): a bad pair is refused with a
  logged error and every listener keeps the certificate it has;
- REST (granian): ``granian``'s own respawn starts a new worker on the same port (SO_REUSEPORT) that reads
  the files again, then stops the old worker gracefully: in-flight requests and SSE streams finish on it;
- gRPC: ``dynamic_ssl_server_credentials`` asks ``TLSMaterial.grpc_config`` before each new handshake;
  after a reload it returns the new pair once, so open channels are untouched;
- HTTP/3: the new pair is loaded into the QUIC configuration new connections are created from.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelwire.errors import ConfigurationError
from modelwire.settings import TLSSettings

if TYPE_CHECKING:
    import grpc

__all__ = ["TLSMaterial", "check_key_pair", "granian_tls_options"]

logger = logging.getLogger("modelwire.tls")


def check_key_pair(cert: Path, key: Path) -> None:
    """Raise ``ConfigurationError`` unless ``cert`` and ``key`` are readable PEM files of one pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"TLS file {exc.filename} does not exist (--tls-cert/--tls-key)") from exc
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"cannot use {cert} with {key}: {exc} (both PEM, and the key must be the certificate's; "
            "`modelwire certs init` writes a matching pair)"
        ) from exc


def granian_tls_options(tls: TLSSettings) -> dict[str, Any]:
    """The granian ``Server`` keyword arguments for HTTPS: TLS 1.2 minimum (rustls: modern suites only)."""
    if not tls.enabled:
        return {}
    from granian.constants import SSLProtocols

    assert tls.cert is not None
    assert tls.key is not None
    return {"ssl_cert": tls.cert, "ssl_key": tls.key, "ssl_protocol_min": SSLProtocols.tls12}


@dataclass(frozen=True, slots=True)
class _Pair:
    cert: bytes
    key: bytes


class TLSMaterial:
    """The current certificate/key pair (and the client CA for mutual TLS on gRPC), reloadable.

    >>> material = TLSMaterial(settings.tls)        # reads and checks the files
    >>> server.add_secure_port(address, material.grpc_credentials())
    >>> material.reload()                            # on SIGHUP; True when the new pair was taken
    """

    def __init__(self, tls: TLSSettings) -> None:
        if tls.cert is None or tls.key is None:
            raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
        self.cert_path = tls.cert
        self.key_path = tls.key
        self.client_ca_path = tls.client_ca
        self._lock = threading.Lock()
        self._pair = self._read()
        self._client_ca = self._read_client_ca()
        self._fresh = False  # a reloaded pair gRPC has not picked up yet

    def _read(self) -> _Pair:
        check_key_pair(self.cert_path, self.key_path)
        return _Pair(self.cert_path.read_bytes(), self.key_path.read_bytes())

    def _read_client_ca(self) -> bytes | None:
        if self.client_ca_path is None:
            return None
        try:
            data = self.client_ca_path.read_bytes()
            ssl.create_default_context(cadata=data.decode("ascii"))
        except (OSError, ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigurationError(
                f"--tls-client-ca {self.client_ca_path} is not a readable PEM CA certificate: {exc}"
            ) from exc
        return data

    @property
    def mutual(self) -> bool:
        return self._client_ca is not None

    def reload(self) -> bool:
        """Read the files again; on a bad pair log why and keep the current one (returns False)."""
        try:
            pair = self._read()
            client_ca = self._read_client_ca()
        except ConfigurationError as exc:
            logger.error("TLS reload refused, keeping the current certificate: %s", exc.message)
            return False
        with self._lock:
            self._pair, self._client_ca, self._fresh = pair, client_ca, True
        return True

    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        import grpc

        return grpc.ssl_server_certificate_configuration(
            [(self._pair.key, self._pair.cert)], root_certificates=self._client_ca
        )

    def grpc_config(self) -> grpc.ServerCertificateConfiguration | None:
        """The fetcher gRPC calls before a handshake: a new configuration after a reload, else ``None``."""
        with self._lock:
            if not self._fresh:
                return None
            self._fresh = False
            return self._server_config()

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """TLS (mutual when a client CA is set) for ``add_secure_port``, following ``reload()``."""
        import grpc

        with self._lock:
            initial = self._server_config()
        fetch: Any = self.grpc_config  # grpc's stub says the fetcher never returns None; it may
        return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=self.mutual)
