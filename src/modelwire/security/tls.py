"""The server's certificate and key as every listener needs them, and their reload on SIGHUP.

How a reload works, per listener (``app/lifecycle.py`` drives it; docs/tls.md says what a client sees):

- the files are read and checked first (``load_cert_chain`` on a fresh context): a bad pair is refused with a
  logged error and every listener keeps the certificate it has;
- REST (granian): ``granian``'s own respawn starts a new worker on the same port (SO_REUSEPORT) that reads
  the files again, then stops the old worker gracefully: in-flight requests and SSE streams finish on it;
- gRPC: ``dynamic_ssl_server_credentials`` asks ``take_reloaded`` before each new handshake
  (``protocols/grpc/tls.py``); after a reload it returns the new pair once, so open channels are untouched;
- HTTP/3: the new pair is loaded into the QUIC configuration new connections are created from.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from modelwire.errors import ConfigurationError
from modelwire.settings import TLSSettings

__all__ = ["TLSMaterial", "check_key_pair"]

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


@dataclass(frozen=True, slots=True)
class _Pair:
    cert: bytes
    key: bytes


class TLSMaterial:
    """The current certificate/key pair (and the client CA for mutual TLS on gRPC), reloadable.

    >>> material = TLSMaterial(settings.tls)        # reads and checks the files
    >>> material.current()                           # (cert, key, client CA) PEM bytes for a listener
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

    def current(self) -> tuple[bytes, bytes, bytes | None]:
        """``(certificate chain, key, client CA or None)`` as PEM bytes, now."""
        with self._lock:
            return self._pair.cert, self._pair.key, self._client_ca

    def take_reloaded(self) -> tuple[bytes, bytes, bytes | None] | None:
        """The pair a ``reload()`` took, once (a listener that re-reads per handshake asks); else None."""
        with self._lock:
            if not self._fresh:
                return None
            self._fresh = False
            return self._pair.cert, self._pair.key, self._client_ca
