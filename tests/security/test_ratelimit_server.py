"""Rate limits on a real server: 429 with Retry-After and RateLimit-* headers, recovery after Retry-After,
other principals unaffected, and two server processes sharing one bucket through Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import AuthSettings, RateLimitRule, RateLimitSettings, Settings
from tests.serving import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
BURST = 3
RATE = 0.5  # a token every 2 s
PREDICT = "/v1/models/sentiment/predict"
BODY = {"text": "a fine film"}


def keys(data_dir: Path, count: int) -> list[dict[str, str]]:
    store = KeyStore.in_data_dir(data_dir)
    return [{"Authorization": f"Bearer {store.create([Scope.PREDICT])[0]}"} for _ in range(count)]


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[ThreadedServer]:
    settings = make_settings(
        auth=AuthSettings(mode="on"),
        rate_limits=RateLimitSettings(rules=(RateLimitRule(scope="predict", rate_per_s=RATE, burst=BURST),)),
    )
    running = ThreadedServer(settings)
    try:
        yield running.start()
    finally:
        running.stop()


def test_a_burst_gets_429_then_the_same_client_succeeds_after_retry_after(
    server: ThreadedServer, data_dir: Path
) -> None:
    alice, bob = keys(data_dir, 2)
    with httpx.Client(base_url=server.http_url) as client:
        passed = [client.post(PREDICT, json=BODY, headers=alice) for _ in range(BURST)]
        assert [r.status_code for r in passed] == [200] * BURST
        assert [r.headers["RateLimit-Remaining"] for r in passed] == ["2", "1", "0"]
        assert {r.headers["RateLimit-Limit"] for r in passed} == {str(BURST)}

        refused = client.post(PREDICT, json=BODY, headers=alice)
        assert refused.status_code == 429
        retry_after = int(refused.headers["Retry-After"])
        assert retry_after == 2  # one token at 0.5/s, rounded up
        assert refused.headers["RateLimit-Limit"] == str(BURST)
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(refused.headers["RateLimit-Reset"]) <= BURST / RATE
        error = refused.json()["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED"
        assert 0 < error["retry_after_s"] <= retry_after

        other = client.post(PREDICT, json=BODY, headers=bob)
        assert other.status_code == 200
        assert other.headers["RateLimit-Remaining"] == "2"

        time.sleep(retry_after)
        again = client.post(PREDICT, json=BODY, headers=alice)
        assert again.status_code == 200, again.text


def test_public_routes_are_not_counted_by_a_scoped_rule(server: ThreadedServer) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        for _ in range(BURST + 2):
            response = client.get("/v2/health/ready")
            assert response.status_code == 200
            assert "RateLimit-Limit" not in response.headers


SERVE = "from modelwire.app.main import run; from modelwire.settings import Settings; run(Settings())"


def start_process(config: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "MODELWIRE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if match := re.search(r"REST http://127\.0\.0\.1:(\d+)", line):
            return process, f"http://127.0.0.1:{match.group(1)}"
    process.kill()
    process.wait(10)
    raise AssertionError("the server did not report its port")


@pytest.fixture
def two_processes(data_dir: Path, tmp_path: Path, redis_backend: str) -> Iterator[list[str]]:
    """Two ``modelwire`` processes with jobs (and so rate limits) on the same Redis; killed by PID."""
    config = tmp_path / "modelwire.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\nhttp_port = 0\ngrpc_port = 0\n'
        f'[auth]\nmode = "on"\n[jobs]\nbackend = "{redis_backend}"\n'
        f'[rate_limits]\nrules = [{{scope = "predict", rate_per_s = {RATE}, burst = {BURST}}}]\n'
    )
    processes: list[subprocess.Popen[str]] = []
    try:
        urls = []
        for _ in range(2):
            process, url = start_process(config)
            processes.append(process)
            urls.append(url)
        yield urls
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
            if process.stderr is not None:
                process.stderr.close()


def test_two_processes_sharing_redis_share_one_bucket(two_processes: list[str], data_dir: Path) -> None:
    (alice,) = keys(data_dir, 1)
    statuses = []
    remaining = []
    for i in range(BURST + 1):
        response = httpx.post(two_processes[i % 2] + PREDICT, json=BODY, headers=alice)
        statuses.append(response.status_code)
        remaining.append(response.headers.get("RateLimit-Remaining"))
    assert statuses == [200] * BURST + [429]
    assert remaining == ["2", "1", "0", "0"]
