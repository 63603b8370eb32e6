"""The gateway's router against in-process model services: client-side health checking keeps calls off a
service that is connected but NOT_SERVING, readiness follows the services' health, and a model service
with auth on takes the gateway's ``gateway.upstream_key``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelwire.app.builder import build_services
from modelwire.app.lifecycle import Server
from modelwire.core.dataplane import CallContext
from modelwire.errors import UnauthenticatedError, UnavailableError
from modelwire.gateway.remote import RemoteModel, UpstreamGroup
from modelwire.gateway.router import Router
from modelwire.model.base import Datatype, Model, ModelInfo, TensorSpec
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import Settings
from tests.gateway.models import FlakyModel, TagModel


async def model_service(root: Path, tag: str, *extra: Model, **overrides: Any) -> Server:
    values: dict[str, Any] = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0, **overrides}
    settings = Settings(data_dir=root / tag, **values)
    services = build_services(settings, models=[TagModel("tag", tag=tag), *extra])
    server = Server(settings, services=services, rest=False)
    await server.start()
    return server


def calls(server: Server) -> float:
    """Inference calls the model service's DataPlane saw, whatever their outcome."""
    assert server.services is not None
    total = 0.0
    for metric in server.services.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "modelwire_requests_total" and sample.labels["model"] == "tag":
                total += sample.value
    return total


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    a, b = await model_service(tmp_path, "a"), await model_service(tmp_path, "b")
    yield a, b
    for server in (a, b):
        await server.stop()


async def wait_until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not check():
            await asyncio.sleep(0.02)


async def test_a_not_serving_model_service_gets_no_calls(tmp_path: Path, two: tuple[Server, Server]) -> None:
    a, b = two
    upstreams = f"127.0.0.1:{a.grpc_port},127.0.0.1:{b.grpc_port}"
    settings = Settings(
        data_dir=tmp_path / "gw", gateway={"upstreams": (upstreams,), "discovery_interval_s": 0.5}
    )
    services = build_services(settings, models=[])
    router = Router(settings, services.registry, services.metrics)
    await router.start()
    router.attach()
    dataplane = services.dataplane
    try:
        assert dataplane.ready()

        async def ask() -> str:
            (result,) = await dataplane.infer("tag", ["x"], ctx=CallContext("test"))
            return str(result["tag"])

        assert {await ask() for _ in range(10)} == {"a", "b"}  # round robin over both

        assert b.services is not None
        b.services.registry.get("tag").ready = False  # b says NOT_SERVING, and stays connected
        b_address = f"127.0.0.1:{b.grpc_port}"
        await wait_until(lambda: not any(u["serving"] for u in router.status() if u["address"] == b_address))
        await asyncio.sleep(0.5)  # the channel's own health watch gets the same news
        before = calls(b)
        answers = [await ask() for _ in range(20)]
        assert answers == ["a"] * 20
        assert calls(b) == before  # not one call reached b (not even one to be retried elsewhere)
        assert dataplane.ready()  # a still serves the model

        assert a.services is not None
        a.services.registry.get("tag").ready = False
        await wait_until(lambda: not dataplane.ready())

        b.services.registry.get("tag", require_ready=False).ready = True
        await wait_until(dataplane.ready)
        await asyncio.sleep(0.3)
        assert {await ask() for _ in range(5)} == {"b"}
    finally:
        await router.close()


async def test_a_model_service_with_auth_on_takes_the_gateway_key(tmp_path: Path) -> None:
    key, _record = KeyStore.in_data_dir(tmp_path / "locked").create([Scope.PREDICT], name="gateway")
    service = await model_service(tmp_path, "locked", auth={"mode": "on"})
    upstream = f"127.0.0.1:{service.grpc_port}"
    try:
        for given, expected in ((key, None), (None, UnauthenticatedError)):
            gateway = {"upstreams": (upstream,), "upstream_key": given}
            settings = Settings(data_dir=tmp_path / "gw", gateway=gateway)
            services = build_services(settings, models=[])
            router = Router(settings, services.registry, services.metrics)
            await router.start()
            router.attach()
            try:
                assert services.dataplane.ready()  # health, model list and metadata are public
                call = services.dataplane.infer("tag", ["x"], ctx=CallContext("test"))
                if expected is None:
                    assert await call == [{"tag": "locked"}]
                else:
                    with pytest.raises(expected):
                        await call
            finally:
                await router.close()
    finally:
        await service.stop()


@pytest.mark.parametrize(("attempts", "failed"), [(3, 0), (1, 5)])
async def test_unavailable_is_retried_within_the_attempts(tmp_path: Path, attempts: int, failed: int) -> None:
    flaky = FlakyModel("flaky")
    outcomes = await ask_flaky(tmp_path, flaky, attempts, 10)
    assert outcomes.count("503") == failed
    assert flaky.calls == (20 if attempts > 1 else 10)  # every failed first attempt was sent again


async def test_the_retry_budget_stops_retries_when_most_calls_fail(tmp_path: Path) -> None:
    busy = FlakyModel("flaky", always=True)
    outcomes = await ask_flaky(tmp_path, busy, 3, 60)
    assert outcomes == ["503"] * 60
    # 3 attempts each would be 180 calls. retryThrottling has 100 tokens, each failed attempt costs one and
    # retries stop at half: ~17 calls get their 2 retries (51 failures), the rest go out once.
    assert 60 < busy.calls <= 60 + 35


async def ask_flaky(tmp_path: Path, flaky: FlakyModel, attempts: int, n: int) -> list[str]:
    service = await model_service(tmp_path, "flaky", flaky)
    gateway = {"upstreams": (f"127.0.0.1:{service.grpc_port}",), "retry_max_attempts": attempts}
    settings = Settings(data_dir=tmp_path / "gw", gateway=gateway)
    services = build_services(settings, models=[])
    router = Router(settings, services.registry, services.metrics)
    await router.start()
    router.attach()
    outcomes = []
    try:
        for _ in range(n):
            try:
                await services.dataplane.infer("flaky", ["x"], ctx=CallContext("test"))
                outcomes.append("ok")
            except UnavailableError:
                outcomes.append("503")
    finally:
        await router.close()
        await service.stop()
    return outcomes


async def test_a_model_service_that_starts_after_the_gateway_is_picked_up(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = {"upstreams": (f"127.0.0.1:{port}",), "discovery_interval_s": 0.5}
    settings = Settings(data_dir=tmp_path / "gw", gateway=gateway)
    services = build_services(settings, models=[])
    router = Router(settings, services.registry, services.metrics)
    await router.start(wait_s=0.5)
    router.attach()
    service = None
    try:
        assert not services.dataplane.ready()  # no model known: not ready
        assert router.status() == [{"address": f"127.0.0.1:{port}", "serving": False, "models": []}]
        service = await model_service(tmp_path, "late", grpc_port=port)
        await wait_until(services.dataplane.ready)
        assert await services.dataplane.infer("tag", ["x"], ctx=CallContext("test")) == [{"tag": "late"}]
    finally:
        await router.close()
        if service is not None:
            await service.stop()


async def test_a_model_service_draining_on_sigterm_loses_no_call(tmp_path: Path) -> None:
    a, b = await model_service(tmp_path, "a"), await model_service(tmp_path, "b")
    upstreams = f"127.0.0.1:{a.grpc_port},127.0.0.1:{b.grpc_port}"
    settings = Settings(data_dir=tmp_path / "gw", gateway={"upstreams": (upstreams,)})
    services = build_services(settings, models=[])
    router = Router(settings, services.registry, services.metrics)
    await router.start()
    router.attach()
    answers: list[str] = []
    failures: list[Exception] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            try:
                (result,) = await services.dataplane.infer("tag", ["x"], ctx=CallContext("test"))
                answers.append(result["tag"])
            except Exception as exc:  # collected and asserted on
                failures.append(exc)

    tasks = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await wait_until(lambda: answers.count("b") >= 20)
        await b.stop()  # what SIGTERM does: NOT_SERVING first, then drain in-flight calls
        drained = len(answers)
        await wait_until(lambda: len(answers) >= drained + 50)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await router.close()
        await a.stop()
    assert failures == []
    assert set(answers[drained:]) == {"a"}


async def test_an_unreachable_model_service_is_a_503_to_retry_that_names_no_address(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{dead}")
    group = UpstreamGroup(channel, f"the model services at 127.0.0.1:{dead}")
    info = ModelInfo("tag", "1", "python", (TensorSpec("text", Datatype.BYTES),), ())
    remote = RemoteModel(info, lambda _name, _version: group)
    try:
        for batch in (["one"], ["one", "two"], [5]):
            with pytest.raises(UnavailableError) as refused:
                await remote.predict(batch)
            assert refused.value.retry_after_s == 1.0
            assert "127.0.0.1" not in refused.value.message
            assert str(dead) not in refused.value.message
            assert "'tag'" in refused.value.message
    finally:
        await channel.close(None)


def test_a_version_without_a_model_service_is_a_503_that_names_no_address(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "gw", gateway={"upstreams": ("127.0.0.1:50051",)})
    services = build_services(settings, models=[])
    router = Router(settings, services.registry, services.metrics)  # nothing discovered: no members
    with pytest.raises(UnavailableError) as refused:
        router.group("tag", "1")
    assert refused.value.retry_after_s == 1.0
    assert "50051" not in refused.value.message
