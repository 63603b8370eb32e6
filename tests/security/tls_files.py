"""Certificates for the TLS tests: one local CA (server + client certificates) and a stranger CA."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from modelwire.security.certs import CertificateFiles, create_local_ca


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return create_local_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def stranger_files(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """Another CA's certificates: a client presenting these must be refused by the mTLS port."""
    return create_local_ca(tmp_path_factory.mktemp("stranger"))


def served_serial(port: int) -> int:
    """The serial number of the certificate a new TLS connection to ``port`` is shown."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def file_serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def openssl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``openssl s_client ...``: stdout and stderr together, never raises on a failed handshake."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (apt-get install openssl)")
    return subprocess.run(
        ["openssl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
        check=False,
    )
