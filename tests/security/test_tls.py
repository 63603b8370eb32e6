"""TLS on every listener, with real clients: openssl, curl, httpx, grpcio, websockets, niquests (HTTP/3).

One server for the module: HTTPS on the REST port, mutual TLS on the gRPC port, HTTP/3 and the redirect
listener. SIGHUP reload is in test_tls_reload.py.
"""

from __future__ import annotations

import ssl
import subprocess
from typing import Any

import grpc
import httpx
import niquests
import pytest
import websockets

from modelwire.client import AsyncClient, Client
from modelwire.errors import ConfigurationError, UnavailableError
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2, predictor_pb2_grpc
from modelwire.security.certs import CertificateFiles
from modelwire.security.tls import TLSMaterial
from modelwire.settings import TLSSettings, default_data_dir
from tests.security.tls_files import openssl, stranger_files, tls_files  # noqa: F401 (fixtures)
from tests.serving import ServeModule, ThreadedServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(
    serve_module: ServeModule,
    tls_files: CertificateFiles,  # noqa: F811
) -> ThreadedServer:
    return serve_module(
        tls=TLSSettings(
            cert=tls_files.server_cert,
            key=tls_files.server_key,
            client_ca=tls_files.ca_cert,
            http3=True,
            redirect_port=0,
        ),
        events={"sse_heartbeat_s": 0.2},
    )


@pytest.fixture(scope="module")
def https_url(server: ThreadedServer) -> str:
    assert server.server is not None
    return f"https://127.0.0.1:{server.server.http_port}"


@pytest.fixture(scope="module")
def grpc_port(server: ThreadedServer) -> int:
    assert server.server is not None
    return server.server.grpc_port


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


# -- openssl: versions and ALPN ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_1_0_and_1_1_are_refused(https_url: str, version: str) -> None:
    # SECLEVEL=0 lets this OpenSSL offer the old versions at all, so the refusal is the server's.
    result = openssl(
        "s_client", "-connect", f"127.0.0.1:{_port(https_url)}", version, "-cipher", "DEFAULT@SECLEVEL=0"
    )
    assert result.returncode != 0
    assert "Cipher is (NONE)" in result.stdout
    assert "alert" in result.stderr


@pytest.mark.parametrize(("version", "name"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_negotiated_and_verified(
    https_url: str,
    tls_files: CertificateFiles,  # noqa: F811
    version: str,
    name: str,
) -> None:
    port = _port(https_url)
    result = openssl("s_client", "-connect", f"127.0.0.1:{port}", version, "-CAfile", str(tls_files.ca_cert))
    assert result.returncode == 0, result.stderr
    assert f"New, {name}, Cipher is" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout


def test_alpn_negotiates_h2(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    port = _port(https_url)
    result = openssl(
        "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "h2,http/1.1", "-CAfile", str(tls_files.ca_cert)
    )
    assert "ALPN protocol: h2" in result.stdout


# -- HTTPS: curl, httpx, the Python client, SSE, wss --------------------------------------------------


def test_curl_http2_gets_200_with_hsts_and_alt_svc(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    result = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(tls_files.ca_cert), "-D", "-", "-o", "/dev/null",
         f"{https_url}/v1/models"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = result.stdout.lower()
    assert head.startswith("http/2 200")
    assert "strict-transport-security: max-age=31536000" in head
    assert f'alt-svc: h3=":{_port(https_url)}"; ma=86400' in head


async def test_httpx_trusts_the_ca_and_only_it(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    context = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    async with httpx.AsyncClient(verify=context, http2=True) as http:
        response = await http.get(f"{https_url}/v2/health/ready")
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    async with httpx.AsyncClient() as http:  # the system roots do not know the local CA
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"{https_url}/v2/health/ready")


def test_the_client_speaks_https_with_ca_cert(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    with Client(https_url, ca_cert=tls_files.ca_cert, http2=True) as client:
        assert client.predict("I love this product").sentiment == "positive"
    with Client(https_url) as client, pytest.raises(UnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        client.predict("no CA given")


@pytest.mark.parametrize("wire", ["rest", "ws", "grpc"])
async def test_an_untrusted_certificate_says_to_pass_the_ca(
    https_url: str,
    grpc_port: int,
    wire: str,
    tls_files: CertificateFiles,  # noqa: F811
) -> None:
    """CERTIFICATE_VERIFY_FAILED on any wire comes with what to do: --ca-cert / ca_cert= and where
    `modelwire certs init` put its CA."""
    url = f"grpcs://127.0.0.1:{grpc_port}" if wire == "grpc" else https_url
    extra = (
        {"client_cert": tls_files.client_cert, "client_key": tls_files.client_key} if wire == "grpc" else {}
    )
    async with AsyncClient(url, timeout=10, **extra) as client:  # type: ignore[arg-type]

        async def call() -> object:
            if wire == "ws":
                return [item async for item in client.stream_predict(["hi"], transport="ws")]
            return await client.predict("no CA given")

        with pytest.raises(UnavailableError) as caught:
            await call()
    message = str(caught.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message.upper().replace(" ", "_")
    assert "--ca-cert" in message
    assert "ca_cert=" in message
    assert str(default_data_dir() / "tls" / "ca.pem") in message


def test_plain_http_on_the_https_port_says_to_use_https(https_url: str) -> None:
    cleartext = https_url.replace("https://", "http://")
    with Client(cleartext) as client, pytest.raises(UnavailableError) as caught:
        client.predict("cleartext")
    assert "use an https:// URL" in str(caught.value)


def test_the_cli_says_to_pass_the_ca(https_url: str) -> None:
    from typer.testing import CliRunner

    from modelwire.cli import app

    result = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"}).invoke(
        app, ["predict", "hi", "--url", https_url]
    )
    assert result.exit_code == 1
    assert "--ca-cert" in result.stderr
    assert "[UNAVAILABLE]" in result.stderr


def test_a_ca_cert_on_a_cleartext_url_is_a_mistake(tls_files: CertificateFiles) -> None:  # noqa: F811
    with pytest.raises(ConfigurationError, match="https://"):
        Client("http://127.0.0.1:8000", ca_cert=tls_files.ca_cert)


async def test_sse_over_https(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    context = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    async with (
        httpx.AsyncClient(verify=context, timeout=10) as http,
        http.stream("GET", f"{https_url}/v1/events", params={"topics": "server"}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        lines = response.aiter_lines()
        seen = [await anext(lines) for _ in range(4)]
    assert seen[0].startswith("retry: ")
    assert ": heartbeat" in seen


async def test_websocket_over_wss(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    async with AsyncClient(https_url, ca_cert=tls_files.ca_cert) as client:

        async def texts() -> Any:
            for text in ("great", "awful"):
                yield text

        answers = [item async for item in client.stream_predict(texts(), transport="ws")]
    assert [a.result.sentiment for a in answers] == ["positive", "negative"]  # type: ignore[union-attr]
    context = ssl.create_default_context()  # websockets itself: refused without the CA
    with pytest.raises(ssl.SSLCertVerificationError):
        async with websockets.connect(https_url.replace("https", "wss") + "/v1/ws", ssl=context):
            pass


# -- gRPC: TLS and mutual TLS ---------------------------------------------------------------------------


def _grpc_predict(port: int, credentials: grpc.ChannelCredentials) -> str:
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = predictor_pb2_grpc.PredictorStub(channel)
        reply = stub.Predict(predictor_pb2.Input(text="I love it"), timeout=10)
    return reply.sentiment


def test_grpc_with_a_client_certificate_signed_by_the_ca(
    grpc_port: int,
    tls_files: CertificateFiles,  # noqa: F811
) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_files.ca_cert.read_bytes(),
        private_key=tls_files.client_key.read_bytes(),
        certificate_chain=tls_files.client_cert.read_bytes(),
    )
    assert _grpc_predict(grpc_port, credentials) == "positive"
    with Client(
        f"grpcs://127.0.0.1:{grpc_port}",
        ca_cert=tls_files.ca_cert,
        client_cert=tls_files.client_cert,
        client_key=tls_files.client_key,
    ) as client:
        assert client.predict("what a lovely day").sentiment == "positive"


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
def test_grpc_without_a_certificate_from_the_ca_is_refused_in_the_handshake(
    grpc_port: int,
    tls_files: CertificateFiles,  # noqa: F811
    stranger_files: CertificateFiles,  # noqa: F811
    who: str,
) -> None:
    chain: dict[str, bytes] = {}
    if who != "no certificate":
        chain = {
            "private_key": stranger_files.client_key.read_bytes(),
            "certificate_chain": stranger_files.client_cert.read_bytes(),
        }
    credentials = grpc.ssl_channel_credentials(root_certificates=tls_files.ca_cert.read_bytes(), **chain)
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_predict(grpc_port, credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # In the handshake: over TLS 1.2 the server checks the client certificate before its Finished, so
    # openssl's handshake fails (the server hangs up) - with the CA's client certificate it completes.
    key_pair = stranger_files if who != "no certificate" else None
    assert _openssl_grpc_handshake(grpc_port, tls_files, key_pair).returncode != 0
    assert _openssl_grpc_handshake(grpc_port, tls_files, tls_files).returncode == 0


def _openssl_grpc_handshake(
    port: int, ca: CertificateFiles, client: CertificateFiles | None
) -> subprocess.CompletedProcess[str]:
    args = ["s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-alpn", "h2", "-CAfile", str(ca.ca_cert)]
    if client is not None:
        args += ["-cert", str(client.client_cert), "-key", str(client.client_key)]
    return openssl(*args)


# -- HTTP/3 and the redirect listener -------------------------------------------------------------------


def test_http3_is_advertised_and_answers(https_url: str, tls_files: CertificateFiles) -> None:  # noqa: F811
    with niquests.Session() as session:
        first = session.get(f"{https_url}/v2/health/ready", verify=str(tls_files.ca_cert), timeout=10)
        assert first.headers["alt-svc"] == f'h3=":{_port(https_url)}"; ma=86400'
        second = session.post(
            f"{https_url}/v1/models/sentiment/predict",
            json={"text": "I love it"},
            verify=str(tls_files.ca_cert),
            timeout=10,
        )
    assert second.http_version == 30  # niquests took the Alt-Svc hint: HTTP/3 over QUIC
    assert second.status_code == 200
    assert second.json()["sentiment"] == "positive"
    assert second.headers["strict-transport-security"] == "max-age=31536000"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_redirect_listener_only_answers_308(
    server: ThreadedServer, https_url: str, method: str
) -> None:
    assert server.server is not None
    redirect_port = server.server.redirect_port
    async with httpx.AsyncClient() as http:
        response = await http.request(
            method, f"http://127.0.0.1:{redirect_port}/v1/models/sentiment/predict?x=1", json={"text": "hi"}
        )
    assert response.status_code == 308
    # the configured public name (default: the loopback bind host shown as localhost), not the Host sent
    https_port = _port(https_url)
    assert response.headers["location"] == f"https://localhost:{https_port}/v1/models/sentiment/predict?x=1"


async def test_a_forged_host_does_not_move_the_redirect(server: ThreadedServer, https_url: str) -> None:
    assert server.server is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"http://127.0.0.1:{server.server.redirect_port}/v1/models?x=1", headers={"Host": "evil.example"}
        )
    assert response.status_code == 308
    assert response.headers["location"] == f"https://localhost:{_port(https_url)}/v1/models?x=1"


async def test_plain_http_on_the_https_port_gets_no_answer(https_url: str) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(https_url.replace("https", "http") + "/v1/models")


# -- configuration mistakes -----------------------------------------------------------------------------


def test_a_key_from_another_pair_is_refused_at_start(
    tls_files: CertificateFiles,  # noqa: F811
    stranger_files: CertificateFiles,  # noqa: F811
) -> None:
    tls = TLSSettings(cert=tls_files.server_cert, key=stranger_files.server_key)
    with pytest.raises(ConfigurationError, match="the key must be the certificate's"):
        TLSMaterial(tls)


@pytest.mark.parametrize(
    "values",
    [{"http3": True}, {"redirect_port": 8080}, {"client_ca": "ca.pem"}, {"cert": "server.pem"}],
)
def test_tls_options_without_a_certificate_and_key_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="--tls-cert"):
        TLSSettings(**values)
