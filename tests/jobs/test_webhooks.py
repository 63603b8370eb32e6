"""Webhooks: signing (checked with the docs' verification snippet), retries with backoff, every attempt
recorded, the allow-list, the secret file, delivery from a running server to a real local receiver."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import re
import stat
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.backends.sqlite.jobs import SqliteJobStore
from modelwire.errors import InvalidInputError
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.webhooks import (
    SIGNATURE_HEADER,
    WebhookDispatcher,
    backoff_s,
    check_callback_url,
    load_secret,
    sign,
)
from modelwire.outbound.webhooks import HttpxWebhookPoster
from tests.jobs.conftest import add_job, chunks
from tests.models import EchoModel

ROOT = Path(__file__).resolve().parents[2]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_webhook", ROOT / "docs/examples/verify_webhook.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verify = load_example().verify


class Receiver:
    """A real HTTP server on 127.0.0.1:0 answering POSTs with scripted statuses (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.received = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                outer.received.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        r = Receiver(list(statuses)).__enter__()
        made.append(r)
        return r

    yield make
    for r in made:
        r.__exit__()


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(b"s3cret", b'{"a":1}', 1700000000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("s3cret", header, b'{"a":1}', now=1700000010)
    assert not verify("other", header, b'{"a":1}', now=1700000010)
    assert not verify("s3cret", header, b'{"a":2}', now=1700000010)
    assert not verify("s3cret", header, b'{"a":1}', now=1700009999)  # a replay, too old
    assert not verify("s3cret", "garbage", b'{"a":1}')


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_s(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a constant


async def fake_resolve(host: str, port: int) -> list[str]:
    table = {"public.example.test": ["93.184.216.34"], "inside.example.test": ["10.0.0.7", "93.184.216.34"]}
    if host not in table:
        raise OSError("no such host")
    return table[host]


@pytest.mark.parametrize(
    ("url", "embedded"),
    [
        ("http://[64:ff9b::7f00:1]/", "127.0.0.1"),  # NAT64 well-known prefix
        ("http://[64:ff9b::a00:7]/", "10.0.0.7"),
        ("http://[2002:7f00:1::]/", "127.0.0.1"),  # 6to4
        ("http://[2002:c0a8:101::1]/", "192.168.1.1"),
        ("http://[::127.0.0.1]/", "127.0.0.1"),  # IPv4-compatible
        ("http://[::a9fe:a9fe]/", "169.254.169.254"),
        ("http://[::ffff:10.1.2.3]/", "10.1.2.3"),  # IPv4-mapped
        ("http://[::ffff:0:7f00:1]/", "127.0.0.1"),  # IPv4-translated (SIIT)
    ],
)
async def test_ipv6_forms_embedding_a_private_ipv4_are_judged_as_it(url: str, embedded: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"\(IPv4 {re.escape(embedded)}\)"):
        await check_callback_url(url, ("public",), resolve=fake_resolve)
    await check_callback_url(url, (embedded,), resolve=fake_resolve)  # the IPv4 rule lets it through


async def test_ipv6_forms_embedding_a_public_ipv4_are_public() -> None:
    for url in (
        "http://[64:ff9b::5db8:d822]/",
        "http://[2002:5db8:d822::1]/",
        "http://[::ffff:93.184.216.34]/",
    ):
        await check_callback_url(url, ("public",), resolve=fake_resolve)
    with pytest.raises(InvalidInputError, match="64:ff9b:1::5db8:d822"):  # a site's own NAT64 (RFC 8215)
        await check_callback_url("http://[64:ff9b:1::5db8:d822]/", ("public",), resolve=fake_resolve)


@pytest.mark.parametrize(
    ("url", "allow", "why"),
    [
        ("ftp://93.184.216.34/x", ("public",), "http and https"),
        ("http:///nohost", ("public",), "no host"),
        ("http://127.0.0.1:8000/", ("public",), "127.0.0.1"),
        ("http://localhost/", ("public",), "resolve"),  # the fake resolver knows no localhost
        ("http://10.1.2.3/", ("public",), "10.1.2.3"),
        ("http://192.168.1.1/", ("public",), "192.168.1.1"),
        ("http://169.254.169.254/latest/meta-data", ("public",), "169.254.169.254"),
        ("http://[::1]/", ("public",), "::1"),
        ("http://[::ffff:127.0.0.1]/", ("public",), "127.0.0.1"),
        ("http://0.0.0.0/", ("public",), "0.0.0.0"),
        ("http://224.0.0.1/", ("public",), "224.0.0.1"),
        ("http://inside.example.test/", ("public",), "10.0.0.7"),
        ("http://93.184.216.34/", ("127.0.0.1",), "outside"),
        ("http://93.184.216.34:99999/", ("public",), "port"),
        ("http://nowhere.example.test/", ("public",), "resolve"),
        ("http://[::1", ("public",), "not a valid URL"),  # found by tests/security/test_grpc_fuzz.py
        ("http://[zz]/", ("public",), "not a valid URL"),
        ("https://93.184.216.34/" + "p" * 2048, ("public",), "longer than 2048"),
    ],
)
async def test_callback_urls_refused(url: str, allow: tuple[str, ...], why: str) -> None:
    with pytest.raises(InvalidInputError, match=why) as info:
        await check_callback_url(url, allow, resolve=fake_resolve)
    assert info.value.field == "$.callback_url"


@pytest.mark.parametrize("url", ["http://..//", "http://" + "a" * 64 + ".example/"])
async def test_callback_hosts_idna_cannot_encode_are_refused(url: str) -> None:
    # The real resolver: IDNA refuses the name before any lookup (UnicodeError, not OSError).
    with pytest.raises(InvalidInputError, match="not a valid name"):
        await check_callback_url(url, ("public",))


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://93.184.216.34/hook", ("public",)),
        ("https://public.example.test/hook", ("public",)),
        ("http://127.0.0.1:9/hook", ("127.0.0.1",)),
        ("http://10.1.2.3/", ("10.0.0.0/8",)),
        ("http://[::1]:8080/", ("::1",)),
        ("http://hooks.internal/", ("hooks.internal",)),
        ("http://a.b.example.test/", ("*.example.test",)),
    ],
)
async def test_callback_urls_allowed(url: str, allow: tuple[str, ...]) -> None:
    await check_callback_url(url, allow, resolve=fake_resolve)


def test_secret_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "state" / "webhook_secret"
    first = load_secret(None, path)
    assert len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(None, path) == first
    assert load_secret("configured", path) == b"configured"
    assert list(path.parent.iterdir()) == [path]  # no staging file left behind


def dispatcher(store: SqliteJobStore, tmp_path: Path, max_attempts: int = 3) -> WebhookDispatcher:
    return WebhookDispatcher(
        store,
        HttpxWebhookPoster(),
        secret="test-secret",
        secret_path=tmp_path / "unused",
        allow=("127.0.0.1",),
        max_attempts=max_attempts,
        timeout_s=5,
        base_delay_s=0.01,
    )


async def test_retries_until_2xx_and_records_every_attempt(
    store: SqliteJobStore, tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(500, 503, 204)
    job_id = await add_job(store, ["a"], callback_url=hook.url)
    job = await store.cancel(job_id)
    webhooks = dispatcher(store, tmp_path, max_attempts=5)
    await webhooks.start()  # resumes pending deliveries: this one
    try:
        assert await webhooks.wait(job.id)
    finally:
        await webhooks.close()
    state = await store.get(job_id)
    assert state.webhook_status == "delivered"
    assert [a["status_code"] for a in state.webhook_attempts] == [500, 503, 204]
    assert [a["attempt"] for a in state.webhook_attempts] == [1, 2, 3]
    bodies = {body for _, body in hook.requests}
    assert len(bodies) == 1  # the same bytes every time
    for headers, body in hook.requests:
        assert verify("test-secret", headers[SIGNATURE_HEADER.lower()], body)
        assert headers["modelwire-job-id"] == job_id
    assert [h["modelwire-delivery-attempt"] for h, _ in hook.requests] == ["1", "2", "3"]
    payload = msgspec.json.decode(bodies.pop())
    assert payload["type"] == "job.cancelled"
    assert payload["job"]["id"] == job_id
    assert payload["job"]["status"] == "cancelled"


async def test_gives_up_after_the_last_attempt(
    store: SqliteJobStore, tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(500, 500, 500, 500)
    closed = f"http://127.0.0.1:{_free_port()}/hook"
    for url, expect in ((hook.url, "status_code"), (closed, "error")):
        job = await store.cancel(await add_job(store, ["a"], callback_url=url))
        webhooks = dispatcher(store, tmp_path)
        await webhooks.start()
        try:
            assert await webhooks.wait(job.id) is False
        finally:
            await webhooks.close()
        state = await store.get(job.id)
        assert state.webhook_status == "failed"
        assert len(state.webhook_attempts) == 3
        assert all(expect in a for a in state.webhook_attempts)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_finished_job_posts_its_final_state(
    jobs_services: Callable[..., Services], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    services = jobs_services(EchoModel())
    await start_services(services)
    try:
        job, _ = await services.jobs.submit(
            JobRequest(model="echo", callback_url=hook.url), chunks(["a", "bad"])
        )
        await asyncio.wait_for(asyncio.to_thread(hook.received.wait, 30), 35)
        secret = (services.settings.data_dir / "webhook_secret").read_text().strip()
        headers, body = hook.requests[0]
        assert verify(secret, headers["modelwire-signature"], body)
        payload = msgspec.json.decode(body)
        assert payload["type"] == "job.succeeded"
        assert payload["job"]["progress"] == {"done": 2, "total": 2, "errors": 1}
        while (await services.jobs.get(job["id"]))["webhook"]["status"] != "delivered":
            await asyncio.sleep(0.05)
        state = await services.jobs.get(job["id"])
        assert state["webhook"]["attempts"][0]["status_code"] == 200
    finally:
        await stop_services(services)


async def test_undelivered_webhooks_resume_after_a_restart(
    jobs_services: Callable[..., Services], receiver: Callable[..., Receiver], data_dir: Path
) -> None:
    hook = receiver()
    store = SqliteJobStore(data_dir / "jobs.sqlite3")
    await store.open()
    job_id = await add_job(store, ["a"], callback_url=hook.url)
    await store.cancel(job_id)  # final, webhook pending: the server stopped before sending it
    await store.close()
    services = jobs_services(EchoModel())
    await start_services(services)
    try:
        await asyncio.wait_for(asyncio.to_thread(hook.received.wait, 30), 35)
        assert msgspec.json.decode(hook.requests[0][1])["job"]["id"] == job_id
    finally:
        await stop_services(services)


def test_the_snippet_in_the_docs_is_the_tested_file() -> None:
    docs = (ROOT / "docs/jobs.md").read_text()
    example = (ROOT / "docs/examples/verify_webhook.py").read_text()
    start = docs.index("```python\nimport hashlib")
    snippet = docs[start + len("```python\n") : docs.index("```", start + 10)]
    assert snippet.strip() in example
