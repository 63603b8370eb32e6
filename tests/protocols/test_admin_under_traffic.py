"""Model management under continuous traffic on a real server (httpx clients in threads): unloading and
loading a model through the Open Inference repository extension never fails calls to another model, and
calls to the model itself finish or get 503 with Retry-After, never a 500; switching the default and
rolling back while calls run drops none of them."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    models = (EchoModel("a"), EchoModel("b"), EchoModel("r", "1"), EchoModel("r", "2"))
    return serve_module(*models, batching={"max_delay_ms": 1.0})


class Traffic:
    """Clients calling ``names`` in a loop, one thread each, counting ``name:status`` (a 503 without a
    Retry-After header counts apart) and the versions that answered."""

    def __init__(self, server: ThreadedServer, names: list[str]) -> None:
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._seen = threading.Condition()
        self._threads = [threading.Thread(target=self._call, args=(server, n)) for n in names]

    def _call(self, server: ThreadedServer, name: str) -> None:
        with httpx.Client(base_url=server.http_url, timeout=60) as client:
            while not self._stop.is_set():
                answer = client.post(f"/v1/models/{name}/predict", json={"text": "hi"})
                status = str(answer.status_code)
                if answer.status_code == 503 and "retry-after" not in answer.headers:
                    status = "503 without Retry-After"
                with self._seen:
                    if answer.status_code == 200:
                        self.versions[f"{name}:{answer.headers['model-version']}"] += 1
                    self.outcomes[f"{name}:{status}"] += 1
                    self._seen.notify_all()

    def until_above(self, counter: Counter[str], key: str, mark: int) -> None:
        """Wait until ``counter[key]`` (``outcomes`` or ``versions``) passes ``mark`` (60 s at most)."""
        with self._seen:
            assert self._seen.wait_for(lambda: counter[key] > mark, timeout=60), self.outcomes

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_unload_and_load_under_traffic_never_fails_the_other_model(server: ThreadedServer) -> None:
    with (
        httpx.Client(base_url=server.http_url, timeout=60) as admin,
        Traffic(server, ["a", "a", "b"]) as traffic,
    ):
        for _ in range(5):
            refused = traffic.outcomes["b:503"]
            assert admin.post("/v2/repository/models/b/unload").status_code == 200
            traffic.until_above(traffic.outcomes, "b:503", refused)  # B's callers saw it go
            answered = traffic.outcomes["b:200"]
            assert admin.post("/v2/repository/models/b/load").status_code == 200
            traffic.until_above(traffic.outcomes, "b:200", answered)  # and come back
    assert set(traffic.outcomes) == {"a:200", "b:200", "b:503"}, traffic.outcomes


def test_default_switches_and_rollbacks_under_traffic_drop_no_call(server: ThreadedServer) -> None:
    with (
        httpx.Client(base_url=server.http_url, timeout=60) as admin,
        Traffic(server, ["r", "r", "a"]) as traffic,
    ):
        for _ in range(5):
            seen_one = traffic.versions["r:1"]
            answer = admin.put("/v1/admin/models/r/default", json={"version": "1"})
            assert answer.status_code == 200, answer.text
            traffic.until_above(traffic.versions, "r:1", seen_one)
            seen_two = traffic.versions["r:2"]
            answer = admin.post("/v1/admin/models/r/rollback")  # back to version 2
            assert answer.status_code == 200, answer.text
            assert answer.json()["default_version"] == "2"
            traffic.until_above(traffic.versions, "r:2", seen_two)
    assert set(traffic.outcomes) == {"r:200", "a:200"}, traffic.outcomes
