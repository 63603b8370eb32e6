"""TLS and mutual TLS on the gateway → model service hop, with real processes on loopback.

A model service serves gRPC over mutual TLS (``--tls-cert/--tls-key --tls-client-ca``); a gateway with
``--upstream-ca/--upstream-cert/--upstream-cert-key`` serves through it, one without the client certificate
and one in cleartext are refused in the handshake and answer 503 (not ready, retry later), never a hang.
Start-up refusals of unusable TLS settings are checked in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelwire.cli import app
from modelwire.errors import ConfigurationError
from modelwire.gateway.tls import UpstreamTLS
from modelwire.gateway.upstreams import UpstreamSpec
from modelwire.security.certs import CertificateFiles
from modelwire.settings import GatewaySettings
from tests.gateway.conftest import GATEWAY_READY, Process, Processes, service_port, wait_ready
from tests.security.tls_files import stranger_files, tls_files  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

MODELS = [{"name": "pid", "source": "tests.gateway.models:PidModel"}]
BOUND_S = 30.0  # every wait below ends by then: a refused hop must answer, not hang


@dataclass
class MutualService:
    processes: Processes
    process: Process
    port: int


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: CertificateFiles,  # noqa: F811
) -> Iterator[MutualService]:
    root = tmp_path_factory.mktemp("tls-hop")
    processes = Processes(root)
    try:
        process = processes.start(
            "service",
            "model-service",
            "--host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--data-dir",
            str(root / "service"),
            "--tls-cert",
            str(tls_files.server_cert),
            "--tls-key",
            str(tls_files.server_key),
            "--tls-client-ca",
            str(tls_files.ca_cert),
            # grpc's own log line for a refused handshake is at INFO; it proves who refused
            env={"MODELWIRE_MODELS": json.dumps(MODELS), "GRPC_VERBOSITY": "INFO", "GRPC_TRACE": ""},
        )
        yield MutualService(processes, process, service_port(process))
    finally:
        processes.close()


def _handshake_refused(service: MutualService, since: int, error: str) -> None:
    """grpc's log line in the model service: it refused a handshake with ``error`` after offset ``since``."""
    deadline = time.monotonic() + BOUND_S
    while error not in service.process.text()[since:]:
        assert time.monotonic() < deadline, service.process.text()[since:][-3000:]
        time.sleep(0.05)


def _gateway(service: MutualService, name: str, *tls: str) -> tuple[Process, str]:
    gateway = service.processes.gateway(name, [service.port], *tls)
    ready = gateway.wait_for(GATEWAY_READY, timeout=BOUND_S)
    return gateway, f"http://127.0.0.1:{ready.group(1)}"


def _predict(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/pid/predict", json={"text": "over tls"}, timeout=BOUND_S)


def test_mutual_tls_hop_serves_predictions(
    service: MutualService,
    tls_files: CertificateFiles,  # noqa: F811
) -> None:
    gateway, url = _gateway(
        service,
        "gateway-mtls",
        "--upstream-ca",
        str(tls_files.ca_cert),
        "--upstream-cert",
        str(tls_files.client_cert),
        "--upstream-cert-key",
        str(tls_files.client_key),
    )
    wait_ready(url, timeout=BOUND_S)
    assert httpx.get(f"{url}/v2/health/ready", timeout=BOUND_S).status_code == 200
    reply = _predict(url)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"echo": "over tls", "pid": service.process.pid}  # it ran behind the TLS hop
    assert "over mutual TLS, certificates checked for '127.0.0.1'" in gateway.text()


def _refused(url: str) -> httpx.Response:
    """The gateway is not ready, and a prediction is a prompt 503 with a retry hint."""
    ready = httpx.get(f"{url}/v2/health/ready", timeout=BOUND_S)
    assert ready.status_code == 503, ready.text
    reply = _predict(url)
    assert reply.status_code == 503, reply.text
    assert reply.headers["Retry-After"] == "1"
    return reply


def test_a_gateway_without_the_client_certificate_is_refused(
    service: MutualService,
    tls_files: CertificateFiles,  # noqa: F811
) -> None:
    since = len(service.process.text())
    gateway, url = _gateway(service, "gateway-no-cert", "--upstream-ca", str(tls_files.ca_cert))
    reply = _refused(url)
    assert "no model service answers" in reply.text
    log = gateway.wait_for(r"upstream 127\.0\.0\.1:\d+ unreachable: .*", timeout=BOUND_S).group(0)
    assert "TLS, certificates checked for '127.0.0.1': check --upstream-ca" in log
    _handshake_refused(service, since, "PEER_DID_NOT_RETURN_A_CERTIFICATE")


def test_a_client_certificate_of_another_ca_is_refused(
    service: MutualService,
    tls_files: CertificateFiles,  # noqa: F811
    stranger_files: CertificateFiles,  # noqa: F811
) -> None:
    since = len(service.process.text())
    _gateway_process, url = _gateway(
        service,
        "gateway-stranger",
        "--upstream-ca",
        str(tls_files.ca_cert),
        "--upstream-cert",
        str(stranger_files.client_cert),
        "--upstream-cert-key",
        str(stranger_files.client_key),
    )
    _refused(url)
    _handshake_refused(service, since, "CERTIFICATE_VERIFY_FAILED")


def test_a_cleartext_gateway_gets_503_from_a_tls_model_service(service: MutualService) -> None:
    since = len(service.process.text())
    gateway, url = _gateway(service, "gateway-cleartext")
    _refused(url)
    log = gateway.wait_for(r"upstream 127\.0\.0\.1:\d+ unreachable: .*", timeout=BOUND_S).group(0)
    assert "cleartext: if the model services use TLS, give --upstream-ca" in log
    _handshake_refused(service, since, "WRONG_VERSION_NUMBER")  # a TLS port shown plain HTTP/2


def test_a_wrong_server_name_is_refused_by_the_gateway(
    service: MutualService,
    tls_files: CertificateFiles,  # noqa: F811
) -> None:
    gateway, url = _gateway(
        service,
        "gateway-wrong-name",
        "--upstream-ca",
        str(tls_files.ca_cert),
        "--upstream-cert",
        str(tls_files.client_cert),
        "--upstream-cert-key",
        str(tls_files.client_key),
        "--upstream-server-name",
        "models.example",
    )
    _refused(url)
    gateway.wait_for("Hostname Verification Check failed", timeout=BOUND_S)


# -- refused at start --------------------------------------------------------------------------------------


def _tls(spec: str = "127.0.0.1:8001", **values: Any) -> UpstreamTLS | None:
    return UpstreamTLS.from_settings(GatewaySettings(**values), UpstreamSpec.parse([spec]))


def test_the_server_name_defaults_to_the_upstream_host(tls_files: CertificateFiles) -> None:  # noqa: F811
    assert _tls() is None
    named = _tls("dns:///model-service.modelwire.svc:8001", upstream_ca=tls_files.ca_cert)
    assert named is not None
    assert named.server_name == "model-service.modelwire.svc"
    assert not named.mutual
    given = _tls("10.0.0.1:8001,10.0.0.2:8001", upstream_ca=tls_files.ca_cert, upstream_server_name="m")
    assert given is not None
    assert given.server_name == "m"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"upstream_ca": "missing.pem"}, "cannot read --upstream-ca missing.pem"),
        ({"upstream_ca": "server_key"}, "is not a PEM CA certificate"),
        ({"upstream_cert": "client_cert"}, "give both --upstream-cert and --upstream-cert-key"),
        ({"upstream_cert_key": "client_key"}, "give both --upstream-cert and --upstream-cert-key"),
        (
            {"upstream_cert": "client_cert", "upstream_cert_key": "server_key"},
            "key must be the certificate's",
        ),
        ({"upstream_server_name": "m"}, "--upstream-server-name only applies with TLS"),
    ],
)
def test_unusable_tls_settings_are_refused_at_start(
    tls_files: CertificateFiles,  # noqa: F811
    tmp_path: Path,
    values: dict[str, str],
    message: str,
) -> None:
    paths = {key: getattr(tls_files, value, tmp_path / value) for key, value in values.items()}
    if "upstream_server_name" in values:
        paths["upstream_server_name"] = values["upstream_server_name"]
    with pytest.raises(ConfigurationError, match=message.replace("missing.pem", ".*missing.pem")):
        _tls(**paths)


def test_several_hosts_need_a_server_name(tls_files: CertificateFiles) -> None:  # noqa: F811
    with pytest.raises(ConfigurationError, match="give --upstream-server-name NAME"):
        _tls("10.0.0.1:8001,10.0.0.2:8001", upstream_ca=tls_files.ca_cert)


@pytest.mark.parametrize("command", ["gateway", "worker"])
def test_the_cli_names_the_unreadable_file(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [command, "--upstream", "127.0.0.1:8001", "--upstream-ca", str(tmp_path / "nope.pem")]
    if command == "worker":
        args += ["--jobs-backend", "redis://127.0.0.1:6379/0"]
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, args)
    assert result.exit_code == 1
    assert f"cannot read --upstream-ca {tmp_path / 'nope.pem'}" in result.output
