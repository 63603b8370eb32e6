"""Cross-site requests against a local server (authentication off, the loopback default), on the wire,
with the headers Chromium sends: a page elsewhere can neither retrain the model with a form post, nor
submit jobs with a no-cors fetch, nor open a WebSocket; the server's own pages, curl and the SDKs still
work; CORS is off unless configured, and then answers preflights."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from modelwire.errors import ConfigurationError
from modelwire.security.policy import SecurityPolicy
from modelwire.settings import Settings
from tests.serving import ThreadedServer

EVIL = "http://evil.example"
APP = "http://app.example:3000"  # allowed by CORS in the second server
BOUNDARY = "----WebKitFormBoundaryq8ZzBLlpZ0mJ6lZC"
CHROMIUM_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def chromium_form_post(origin: str = EVIL) -> dict[str, str]:
    """What Chromium sends for ``<form method=post enctype=multipart/form-data>`` submitted from a page
    at ``origin`` to another site (a top-level navigation)."""
    return {
        "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
        "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        "cache-control": "max-age=0",
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        "origin": origin,
        "referer": f"{origin}/",
        "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Linux"',
        "sec-fetch-dest": "document",
        "sec-fetch-mode": "navigate",
        "sec-fetch-site": "cross-site",
        "sec-fetch-user": "?1",
        "upgrade-insecure-requests": "1",
        "user-agent": CHROMIUM_UA,
    }


def chromium_no_cors_fetch(origin: str = EVIL) -> dict[str, str]:
    """``fetch(url, {method: "POST", mode: "no-cors", body: "..."})`` from a page at ``origin``."""
    return {
        "accept": "*/*",
        "content-type": "text/plain;charset=UTF-8",
        "origin": origin,
        "referer": f"{origin}/",
        "sec-fetch-dest": "empty",
        "sec-fetch-mode": "no-cors",
        "sec-fetch-site": "cross-site",
        "user-agent": CHROMIUM_UA,
    }


def chromium_websocket(origin: str = EVIL, site: str = "cross-site") -> dict[str, str]:
    """The handshake headers Chromium adds to ``new WebSocket(url)`` (besides Origin, set separately)."""
    return {
        "sec-fetch-dest": "websocket",
        "sec-fetch-mode": "websocket",
        "sec-fetch-site": site,
        "user-agent": CHROMIUM_UA,
        "cache-control": "no-cache",
        "pragma": "no-cache",
    }


def training_form() -> bytes:
    """The labelled CSV file a form uploads (flipped labels: the poisoning the issue saw)."""
    rows = "text,label\nwonderful,0\nterrible,1\n"
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="data.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n{rows}\r\n--{BOUNDARY}--\r\n"
    ).encode()


def serve(trained_data_dir: Path, target: Path, **overrides: object) -> ThreadedServer:
    data_dir = target / "data"
    shutil.copytree(trained_data_dir, data_dir)
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,
        "data_dir": data_dir,
        "jobs": {"workers": 0},  # accepted jobs stay queued: nothing trains during the tests
    }
    values.update(overrides)
    return ThreadedServer(Settings(**values)).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """Defaults: loopback, authentication off, CORS off."""
    running = serve(trained_data_dir, tmp_path_factory.mktemp("crosssite"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cors_server(trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    running = serve(
        trained_data_dir,
        tmp_path_factory.mktemp("cors"),
        http={"cors_origins": [APP], "allowed_origins": ["https://tools.example"]},
    )
    try:
        yield running
    finally:
        running.stop()


def own_origin(server: ThreadedServer) -> str:
    return server.http_url.rstrip("/")


def ws_url(server: ThreadedServer, path: str = "/v1/ws") -> str:
    return server.http_url.replace("http://", "ws://").rstrip("/") + path


async def job_count(http: httpx.AsyncClient) -> int:
    return len((await http.get("/v1/jobs")).json()["jobs"])


# -- forged by a page elsewhere: refused, nothing stored ------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models/sentiment/train", "/v1/jobs?model=sentiment"])
async def test_a_cross_site_form_upload_is_refused(server: ThreadedServer, path: str) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        before = await job_count(http)
        answer = await http.post(path, content=training_form(), headers=chromium_form_post())
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "PERMISSION_DENIED"
        assert "cross-site request refused" in error["message"]
        assert EVIL in error["message"]
        assert "http.allowed_origins" in error["message"]
        assert await job_count(http) == before


async def test_a_cross_site_no_cors_fetch_is_refused(server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        before = await job_count(http)
        for path, body in (("/v1/jobs", b'{"model": "sentiment", "inputs": ["x"]}'), ("/predict", b"{}")):
            answer = await http.post(path, content=body, headers=chromium_no_cors_fetch())
            assert answer.status_code == 403, answer.text
        assert await job_count(http) == before


async def test_sec_fetch_site_cross_site_without_origin_is_refused(server: ThreadedServer) -> None:
    headers = {k: v for k, v in chromium_form_post().items() if k != "origin"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        answer = await http.post("/v1/models/sentiment/train", content=training_form(), headers=headers)
        cancel = await http.delete("/v1/jobs/some-id", headers={"sec-fetch-site": "cross-site"})
    assert answer.status_code == 403
    assert "Sec-Fetch-Site: cross-site" in answer.json()["error"]["message"]
    assert cancel.status_code == 403


async def test_a_cross_site_websocket_is_refused(server: ThreadedServer) -> None:
    for path in ("/v1/ws", "/v1/models/sentiment/ws"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                ws_url(server, path), origin=EVIL, additional_headers=chromium_websocket(), open_timeout=10
            ):
                pass
        assert refused.value.response.status_code == 403
        assert b"cross-site request refused" in refused.value.response.body


async def test_a_rebound_host_name_is_not_the_servers_own_origin(server: ThreadedServer) -> None:
    """DNS rebinding: evil.example made to resolve to 127.0.0.1; Origin and Host agree, and are refused."""
    port = server.http_url.rsplit(":", 1)[1].rstrip("/")
    rebound = f"rebind.example:{port}"
    headers = {
        **chromium_no_cors_fetch(f"http://{rebound}"),
        "host": rebound,
        "sec-fetch-site": "same-origin",
    }
    headers["content-type"] = "application/json"
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        answer = await http.post(
            "/v1/jobs", content=b'{"model": "sentiment", "inputs": ["x"]}', headers=headers
        )
    assert answer.status_code == 403


# -- the server's own pages, curl and the SDKs keep working ------------------------------------------------


async def test_same_origin_requests_are_served(server: ThreadedServer) -> None:
    own = own_origin(server)
    headers = {
        "origin": own,
        "sec-fetch-site": "same-origin",
        "sec-fetch-mode": "cors",
        "user-agent": CHROMIUM_UA,
    }
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        predicted = await http.post("/predict", json={"text": "great"}, headers=headers)
        assert predicted.status_code == 200, predicted.text
        job = await http.post("/v1/jobs", json={"model": "sentiment", "inputs": ["x"]}, headers=headers)
        assert job.status_code == 202, job.text
    async with connect(
        ws_url(server), origin=own, additional_headers=chromium_websocket(site="same-origin"), open_timeout=10
    ) as ws:
        await ws.send('{"op": "ping", "id": 1}')
        assert "pong" in str(await ws.recv())


async def test_clients_without_origin_are_served(server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        assert (await http.post("/predict", json={"text": "great"})).status_code == 200
        upload = await http.post(
            "/v1/jobs?model=sentiment",
            content=b'"a"\n"b"\n',
            headers={"content-type": "application/x-ndjson"},
        )
        assert upload.status_code == 202, upload.text
    async with connect(ws_url(server), open_timeout=10) as ws:
        await ws.send('{"op": "ping", "id": 1}')
        assert "pong" in str(await ws.recv())


async def test_reads_from_elsewhere_are_not_refused_and_not_readable(server: ThreadedServer) -> None:
    """A cross-site GET is answered (an <img> or a link may ask), but with no CORS header for a page."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        answer = await http.get("/v1/models", headers={"origin": EVIL, "sec-fetch-site": "cross-site"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


# -- simple-form content types on JSON endpoints: 415 --------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        f"multipart/form-data; boundary={BOUNDARY}",
    ],
)
@pytest.mark.parametrize(
    "path", ["/predict", "/v1/models/sentiment/predict", "/v1/models/sentiment/predict/stream"]
)
async def test_json_endpoints_refuse_form_content_types(
    server: ThreadedServer, path: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        answer = await http.post(path, content=b'{"text": "great"}', headers=headers)
    assert answer.status_code == 415, answer.text
    assert "Content-Type: application/json" in answer.json()["error"]["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_job_needs_a_content_type_it_reads(server: ThreadedServer, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        before = await job_count(http)
        answer = await http.post(
            "/v1/jobs?model=sentiment", content=b'{"model": "sentiment", "inputs": ["x"]}', headers=headers
        )
        assert answer.status_code == 415, answer.text
        assert await job_count(http) == before


async def test_open_inference_protocol_clients_may_omit_the_content_type(server: ThreadedServer) -> None:
    body = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["great"]}]}'
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        answer = await http.post("/v2/models/sentiment/infer", content=body)
    assert answer.status_code == 200, answer.text


# -- CORS: off by default, configurable ------------------------------------------


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization,content-type",
        "sec-fetch-mode": "cors",
        "sec-fetch-site": "cross-site",
        "sec-fetch-dest": "empty",
        "user-agent": CHROMIUM_UA,
    }


async def test_cors_is_off_by_default(server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        answer = await http.options("/v1/jobs", headers=preflight(APP))
    assert "access-control-allow-origin" not in answer.headers


async def test_cors_answers_a_preflight_from_an_allowed_origin(cors_server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=cors_server.http_url, timeout=10) as http:
        allowed = await http.options("/v1/jobs", headers=preflight(APP))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == APP
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert allowed.headers["access-control-max-age"] == "600"
        refused = await http.options("/v1/jobs", headers=preflight(EVIL))
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        headers = {"origin": APP, "sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"}
        job = await http.post("/v1/jobs", json={"model": "sentiment", "inputs": ["x"]}, headers=headers)
        assert job.status_code == 202, job.text
        assert job.headers["access-control-allow-origin"] == APP
        assert "location" in job.headers["access-control-expose-headers"].lower()
        forged = await http.post(
            "/v1/jobs", json={"model": "sentiment", "inputs": ["x"]}, headers={"origin": EVIL}
        )
        assert forged.status_code == 403


async def test_allowed_origins_may_post_and_open_websockets(cors_server: ThreadedServer) -> None:
    origin = "https://tools.example"
    async with httpx.AsyncClient(base_url=cors_server.http_url, timeout=10) as http:
        answer = await http.post("/predict", json={"text": "great"}, headers={"origin": origin})
    assert answer.status_code == 200
    async with connect(
        ws_url(cors_server), origin=origin, additional_headers=chromium_websocket(), open_timeout=10
    ) as ws:
        await ws.send('{"op": "ping", "id": 1}')
        assert "pong" in str(await ws.recv())


@pytest.mark.parametrize("origins", [["*"], ["evil.example"], ["http://a.example/path"], ["ftp://a.example"]])
def test_origins_that_are_not_origins_are_refused_at_start(tmp_path: Path, origins: list[str]) -> None:
    settings = Settings(host="127.0.0.1", data_dir=tmp_path, http={"cors_origins": origins})
    with pytest.raises(ConfigurationError, match="cors_origins"):
        SecurityPolicy.build(settings)
