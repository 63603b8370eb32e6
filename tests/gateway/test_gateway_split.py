"""A canary split set on the gateway: the gateway picks the version once per call, and each model service
sees ordinary versioned calls for the version it serves (issue 17)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from modelwire.app.builder import build_services
from modelwire.app.components import UpstreamRouter
from modelwire.app.lifecycle import Server
from modelwire.settings import Settings
from tests.gateway.models import TagModel


def versioned_calls(server: Server) -> Counter[str]:
    """The model service's answered inference calls, under the one version it serves."""
    assert server.services is not None
    seen: Counter[str] = Counter()
    for handle in server.services.registry.handles():
        batches = server.services.metrics.registry.get_sample_value(
            "modelwire_requests_total", {"protocol": "grpc", "model": handle.name, "code": "OK"}
        )
        seen[handle.version] += int(batches or 0)
    return seen


def predicted_items(server: Server) -> int:
    """Items the model service's models predicted (the sum of its batch sizes)."""
    assert server.services is not None
    total = server.services.metrics.registry.get_sample_value("modelwire_batch_size_sum", {"model": "tag"})
    return int(total or 0)


async def test_a_split_on_the_gateway_routes_to_the_versions_on_two_model_services(tmp_path: Path) -> None:
    services: list[Server] = []
    for version, tag in (("1", "a"), ("2", "b")):
        settings = Settings(host="127.0.0.1", http_port=0, grpc_port=0, data_dir=tmp_path / tag)
        built = build_services(settings, models=[TagModel("tag", version, tag=tag)])
        server = Server(settings, services=built, rest=False)
        await server.start()
        services.append(server)
    upstreams = ",".join(f"127.0.0.1:{s.grpc_port}" for s in services)
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=tmp_path / "gw",
        gateway={"upstreams": (upstreams,), "discovery_interval_s": 0.5},
    )
    gateway = Server(
        settings, services=build_services(settings, models=[]), components=[UpstreamRouter(settings)]
    )
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=30) as http:
            async with asyncio.timeout(30):
                while [
                    v["state"] for v in (await http.get("/v1/admin/models/tag")).json().get("versions", [])
                ] != [
                    "ready",
                    "ready",
                ]:
                    await asyncio.sleep(0.05)  # discovery: both versions known and serving
            split = await http.put("/v1/admin/models/tag/traffic", json={"versions": {"1": 80, "2": 20}})
            assert split.status_code == 200, split.text

            async def one() -> tuple[str, str]:
                answer = await http.post("/v1/models/tag/predict", json={"text": "x"})
                assert answer.status_code == 200, answer.text
                return answer.headers["model-version"], answer.json()["tag"]

            answers: Counter[tuple[str, str]] = Counter()
            for _ in range(20):
                answers.update(await asyncio.gather(*(one() for _ in range(50))))
        assert set(answers) == {("1", "a"), ("2", "b")}  # each version answered by its own service
        # 20 % of 1000: mean 200, standard deviation 12.6; five of them either side
        assert 137 <= answers[("2", "b")] <= 263, answers
        # the model services saw versioned calls, each for its own version only (the gateway coalesces
        # concurrent requests, so there may be fewer calls than requests), and predicted every item once
        for server, version, tag in ((services[0], "1", "a"), (services[1], "2", "b")):
            calls = versioned_calls(server)
            assert set(calls) == {version}
            assert 0 < calls[version] <= answers[(version, tag)]
            assert predicted_items(server) == answers[(version, tag)]
    finally:
        await gateway.stop()
        for server in services:
            await server.stop()
