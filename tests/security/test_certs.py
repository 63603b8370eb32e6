"""``modelwire certs init``: a CA, a server certificate for the hosts, a client certificate, keys 0600."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from modelwire.cli import app


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_writes_a_ca_and_the_certificates_it_signs(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    result = CliRunner().invoke(app, ["certs", "init", "--dir", str(folder), "--hosts", "localhost,10.0.0.7"])
    assert result.exit_code == 0, result.output
    assert f"modelwire serve --tls-cert {folder / 'server.pem'} --tls-key {folder / 'server-key.pem'}" in (
        result.output
    )
    ca, server, client = _cert(folder / "ca.pem"), _cert(folder / "server.pem"), _cert(folder / "client.pem")
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_running_again_renews_the_certificates_but_keeps_the_ca(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    runner = CliRunner()
    assert runner.invoke(app, ["certs", "init", "--dir", str(folder)]).exit_code == 0
    ca, server = _cert(folder / "ca.pem"), _cert(folder / "server.pem")
    assert runner.invoke(app, ["certs", "init", "--dir", str(folder)]).exit_code == 0
    assert _cert(folder / "ca.pem") == ca
    renewed = _cert(folder / "server.pem")
    assert renewed.serial_number != server.serial_number
    renewed.verify_directly_issued_by(ca)  # clients that trust ca.pem trust the renewed one too
    assert runner.invoke(app, ["certs", "init", "--dir", str(folder), "--new-ca"]).exit_code == 0
    assert _cert(folder / "ca.pem") != ca


def test_the_default_folder_is_in_the_data_dir(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["certs", "init", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tls" / "server.pem").is_file()
