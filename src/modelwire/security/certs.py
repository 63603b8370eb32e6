"""A local certificate authority for development and tests (``modelwire certs init``).

One CA (``ca.pem`` + ``ca-key.pem``) signs a server certificate (``server.pem`` + ``server-key.pem``,
SANs for the given hosts) and a client certificate (``client.pem`` + ``client-key.pem``) for mutual TLS.
Keys are ECDSA P-256 and written 0600. Not for production: a public server wants a certificate from a CA
its clients already trust.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelwire.errors import ConfigurationError

__all__ = ["DEFAULT_HOSTS", "CertificateFiles", "create_local_ca", "issue_certificate"]

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where ``create_local_ca`` wrote each file."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelwire development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # O_CREAT's mode does not apply to a file that already existed


def _write_key(path: Path, key: _Key) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(path, pem, secret=True)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), secret=False)


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: _Key,
    *,
    common_name: str,
    hosts: tuple[str, ...] = (),
    client: bool = False,
    days: int = 397,
) -> tuple[x509.Certificate, _Key]:
    """A leaf certificate signed by the CA: a server one (SANs for ``hosts``) or, with ``client``, mTLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _new_ca(days: int) -> tuple[x509.Certificate, _Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name("modelwire local CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, _Key]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{key_path} is not an EC key written by `modelwire certs init`: delete it")
    return cert, key


def create_local_ca(
    directory: Path, *, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 397, new_ca: bool = False
) -> CertificateFiles:
    """Write (or reuse) the CA in ``directory`` and issue a fresh server and client certificate from it.

    An existing CA is kept unless ``new_ca``, so clients that trust ``ca.pem`` keep working after the server
    certificate is renewed (and ``kill -HUP`` makes a running server pick the new one up).
    """
    if not hosts:
        raise ConfigurationError("certs init needs at least one host name or address (--hosts)")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    files = CertificateFiles(
        directory=directory,
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    if files.ca_cert.is_file() and files.ca_key.is_file() and not new_ca:
        ca_cert, ca_key = _load_ca(files.ca_cert, files.ca_key)
    else:
        ca_cert, ca_key = _new_ca(days=max(days, 3650))
        _write_key(files.ca_key, ca_key)
        _write_cert(files.ca_cert, ca_cert)
    server_cert, server_key = issue_certificate(ca_cert, ca_key, common_name=hosts[0], hosts=hosts, days=days)
    client_cert, client_key = issue_certificate(
        ca_cert, ca_key, common_name="modelwire client", client=True, days=days
    )
    _write_key(files.server_key, server_key)
    _write_cert(files.server_cert, server_cert)
    _write_key(files.client_key, client_key)
    _write_cert(files.client_cert, client_cert)
    return files
