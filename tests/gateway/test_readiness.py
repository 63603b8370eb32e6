"""Gateway readiness with model services that serve different versions of one model (real processes).

Ready means every model's default version has a serving model service; a version with none answers 503
for its own requests only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.gateway.conftest import GATEWAY_READY, Processes, service_port, wait_ready

pytestmark = pytest.mark.slow


def tagged(version: str) -> list[dict[str, object]]:
    return [
        {
            "name": "tag",
            "version": version,
            "source": "tests.gateway.models:TagModel",
            "options": {"tag": version},
        }
    ]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def versions_ready(client: httpx.Client) -> dict[str, bool]:
    (model,) = client.get("/v1/models").json()["models"]
    return {v["version"]: v["ready"] for v in model["versions"]}


def test_losing_the_only_service_of_an_older_version_keeps_the_gateway_ready(processes: Processes) -> None:
    one = processes.model_service("one", tagged("1"))
    two = processes.model_service("two", tagged("2"))
    gateway = processes.gateway("gateway", [service_port(one), service_port(two)])
    url = f"http://127.0.0.1:{gateway.wait_for(GATEWAY_READY).group(1)}"
    wait_ready(url)
    with httpx.Client(base_url=url, timeout=10) as client:
        wait_for(lambda: versions_ready(client) == {"1": True, "2": True}, "both versions are served")
        one.kill()  # SIGKILL: no NOT_SERVING, the connection just goes
        wait_for(lambda: versions_ready(client) == {"1": False, "2": True}, "the gateway saw version 1 go")

        assert client.get("/v2/health/ready").status_code == 200  # the default (2) is still served
        answer = client.post("/v1/models/tag/predict", json={"text": "x"})
        assert answer.status_code == 200
        assert answer.json() == {"tag": "2"}
        lost = client.post("/v1/models/tag/versions/1/predict", json={"text": "x"})
        assert lost.status_code == 503  # only version 1's own requests
        assert "retry-after" in lost.headers

        two.kill()  # now the default version has no model service either
        wait_for(lambda: client.get("/v2/health/ready").status_code == 503, "the gateway is not ready")
