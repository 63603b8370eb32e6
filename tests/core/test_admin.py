"""``ModelAdmin`` and the DataPlane's traffic policy, in process: version states, warm-up, the ``models``
events with who did it, the scope check every wire relies on, canary proportions over 10,000 calls,
stickiness, changes under load, shadows that never reach the caller, rollback under load."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from modelwire import Datatype, Model, ModelNotReadyError, PermissionDeniedError, TensorSpec
from modelwire.app.services import Services
from modelwire.core.admin import ModelAdmin
from modelwire.core.dataplane import CallContext
from modelwire.core.shadow import MAX_RUNNING
from modelwire.errors import FailedPreconditionError, InvalidInputError, ModelwireError
from modelwire.security.principal import Principal, Scope, reset_principal, use_principal
from tests.core.conftest import RunningServices
from tests.models import EchoModel

ADMIN = Principal(
    id="key:ops", kind="key", scopes=frozenset({Scope.MODELS_ADMIN, Scope.EVENTS}), authenticated=True
)
PREDICTOR = Principal(id="key:app", kind="key", scopes=frozenset({Scope.PREDICT}), authenticated=True)


class Tagged(Model):
    """Answers ``{"label": <its tag option>, "score": <float>}``; declares warm-up inputs."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)
    warmup_inputs: ClassVar[tuple[Any, ...]] = ("warm",)

    def __init__(self, name: str = "m", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.seen: list[list[Any]] = []

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.seen.append(list(batch))
        if self.options.get("fail_warmup") and "warm" in batch:
            return [RuntimeError("cold cache")]
        return [{"label": self.options.get("tag", "pos"), "score": 0.5 + len(item) / 100} for item in batch]


class Raising(Tagged):
    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if "warm" in batch:
            return super().predict(batch)
        raise RuntimeError("shadow broke")


class Hanging(Tagged):
    """An async model whose calls (but the warm-up) wait until ``release`` is set."""

    release: asyncio.Event

    async def predict(self, batch: Sequence[Any]) -> list[Any]:  # type: ignore[override]
        if "warm" not in batch:
            await self.release.wait()
        return [{"label": "pos", "score": 0.1} for _ in batch]


def admin_of(services: Services) -> ModelAdmin:
    assert services.admin is not None
    return services.admin


@pytest.fixture
def as_admin() -> Any:
    token = use_principal(ADMIN)
    yield
    reset_principal(token)


def ctx(key: str | None = None) -> CallContext:
    return CallContext("test", traffic_key=key)


async def served_version(services: Services, name: str = "m", key: str | None = None) -> str:
    call = ctx(key)
    await services.dataplane.predict(name, "hello", ctx=call)
    assert call.served.version is not None
    return call.served.version


async def test_states_warm_up_and_the_events_name_who(
    running_services: RunningServices, as_admin: Any
) -> None:
    one, two = Tagged("m", "1"), Tagged("m", "2", tag="neg")
    async with running_services(one, two) as services:
        admin = admin_of(services)
        assert one.seen[0] == ["warm"]  # ready only after its warm-up ran
        assert {r["version"]: r["state"] for r in admin.index()} == {"1": "ready", "2": "ready"}
        async with services.events.subscribe(["models"], principal=ADMIN) as events:
            stream = aiter(events)
            await admin.unload("m", "2")
            event = await asyncio.wait_for(anext(stream), 5)
            assert (event.type, event.data) == (
                "model.unloaded",
                {"name": "m", "version": "2", "by": "key:ops"},
            )
            assert admin.describe("m")["versions"][1]["state"] == "unavailable"
            with pytest.raises(ModelNotReadyError, match="not loaded"):
                await services.dataplane.predict("m", "x", version="2", ctx=ctx())
            await admin.load("m", "2")
            assert (await asyncio.wait_for(anext(stream), 5)).type == "model.loaded"
            await admin.set_default("m", "1")
            event = await asyncio.wait_for(anext(stream), 5)
            assert event.type == "model.default_changed"
            assert event.data == {"name": "m", "version": "1", "previous": "2", "by": "key:ops"}
            assert await served_version(services) == "1"
            await admin.rollback("m")
            event = await asyncio.wait_for(anext(stream), 5)
            assert (event.type, event.data["version"], event.data["from"]) == ("model.rolled_back", "2", "1")


async def test_a_failed_warm_up_is_a_failed_version_with_its_reason(
    running_services: RunningServices, as_admin: Any
) -> None:
    async with running_services(Tagged("m", "1")) as services:
        admin = admin_of(services)
        bad = Tagged("m", "2", fail_warmup=True)
        services.registry.add(bad, services.settings.batching)
        with pytest.raises(FailedPreconditionError, match="cold cache"):
            await admin.load("m", "2")
        row = admin.describe("m")["versions"][1]
        assert row["state"] == "failed"
        assert "cold cache" in row["reason"]
        with pytest.raises(ModelNotReadyError, match="failed to load"):
            await services.dataplane.predict("m", "x", version="2", ctx=ctx())


@pytest.mark.parametrize(
    "action",
    [
        lambda a: a.index(),
        lambda a: a.describe("m"),
        lambda a: a.load("m", "1"),
        lambda a: a.unload("m", "1"),
        lambda a: a.delete("m", "1"),
        lambda a: a.set_default("m", "1"),
        lambda a: a.set_traffic("m", {"versions": {"1": 100}}),
        lambda a: a.rollback("m"),
    ],
)
async def test_every_admin_action_needs_models_admin(running_services: RunningServices, action: Any) -> None:
    async with running_services(Tagged("m", "1")) as services:

        async def attempt() -> None:
            result = action(admin_of(services))
            if asyncio.iscoroutine(result):
                await result

        token = use_principal(PREDICTOR)
        try:
            with pytest.raises(PermissionDeniedError, match="models:admin"):
                await attempt()
        finally:
            reset_principal(token)
        assert services.registry.get("m", "1").ready  # nothing changed


async def test_canary_proportions_over_10000_calls(running_services: RunningServices, as_admin: Any) -> None:
    async with running_services(Tagged("m", "1"), Tagged("m", "2")) as services:
        await admin_of(services).set_traffic("m", {"versions": {"1": 90, "2": 10}})
        counts: Counter[str] = Counter()
        for _ in range(100):
            counts.update(await asyncio.gather(*(served_version(services) for _ in range(100))))
        assert sum(counts.values()) == 10_000
        # 10 % of 10,000: mean 1000, standard deviation 30; five of them either side
        assert 850 <= counts["2"] <= 1150, counts


async def test_a_sticky_split_keeps_each_key_on_one_version(
    running_services: RunningServices, as_admin: Any
) -> None:
    async with running_services(Tagged("m", "1"), Tagged("m", "2")) as services:
        await admin_of(services).set_traffic("m", {"versions": {"1": 90, "2": 10}, "sticky": "header"})
        per_key = {
            f"user-{i}": {await served_version(services, key=f"user-{i}") for _ in range(3)}
            for i in range(2000)
        }
        assert all(len(versions) == 1 for versions in per_key.values())
        on_two = sum(versions == {"2"} for versions in per_key.values())
        assert 130 <= on_two <= 270, on_two  # 10 % of 2000 keys: mean 200, sd 13.4
        await admin_of(services).set_traffic("m", {"sticky": "principal"})
        token = use_principal(PREDICTOR)  # "principal": the caller's identity is the key
        try:
            assert len({await served_version(services) for _ in range(50)}) == 1
        finally:
            reset_principal(token)


async def test_changing_the_split_under_load_drops_no_request(
    running_services: RunningServices, as_admin: Any
) -> None:
    async with running_services(Tagged("m", "1"), Tagged("m", "2"), Tagged("m", "3")) as services:
        admin = admin_of(services)
        stop = asyncio.Event()
        served: Counter[str] = Counter()
        errors: list[BaseException] = []

        async def caller() -> None:
            while not stop.is_set():
                try:
                    served[await served_version(services)] += 1
                except ModelwireError as exc:
                    errors.append(exc)

        callers = [asyncio.create_task(caller()) for _ in range(8)]
        splits = [{"1": 50, "2": 50}, {"2": 100}, {"1": 10, "3": 90}, {}, {"3": 100}]
        for i in range(20):
            await admin.set_traffic("m", {"versions": splits[i % len(splits)]})
            await admin.set_default("m", str(i % 3 + 1))
            await served_version(services)  # at least one call between changes
        await admin.rollback("m")
        stop.set()
        await asyncio.gather(*callers)
        assert errors == []
        assert set(served) == {"1", "2", "3"}


async def test_a_shadow_that_raises_or_hangs_never_reaches_the_caller(
    running_services: RunningServices, make_settings: Any, as_admin: Any
) -> None:
    hanging = Hanging("m", "4")
    hanging.release = asyncio.Event()
    settings = make_settings(limits={"request_timeout_s": 2.0})
    models = (Tagged("m", "1"), Tagged("m", "2"), Raising("m", "3"), hanging)
    async with running_services(*models, settings=settings) as services:
        admin = admin_of(services)
        metrics = services.metrics

        def count(version: str, outcome: str) -> float:
            value = metrics.registry.get_sample_value(
                "modelwire_shadow_calls_total", {"model": "m", "version": version, "outcome": outcome}
            )
            return value or 0.0

        def items(version: str, agreed: str) -> float:
            labels = {"model": "m", "version": version, "agreed": agreed}
            return metrics.registry.get_sample_value("modelwire_shadow_items_total", labels) or 0.0

        async def until(condition: Any) -> None:
            async with asyncio.timeout(10):
                while not condition():
                    await asyncio.sleep(0.01)

        await admin.set_default("m", "1")
        # an agreeing shadow: agreement counted (the float score is not compared)
        await admin.set_traffic("m", {"shadow": {"version": "2", "percent": 100}})
        for _ in range(5):
            assert await services.dataplane.predict("m", "hi", ctx=ctx()) == {"label": "pos", "score": 0.52}
            await until(lambda: services.dataplane.shadows.running == 0)
        assert items("2", "true") == 5
        # a raising shadow: the caller gets version 1's answer, the failure is a metric
        await admin.set_traffic("m", {"shadow": {"version": "3", "percent": 100}})
        for _ in range(5):
            call = ctx()
            assert await services.dataplane.predict("m", "hi", ctx=call) == {"label": "pos", "score": 0.52}
            assert call.served.version == "1"
            await until(lambda: services.dataplane.shadows.running == 0)
        assert count("3", "failed") == 5
        # a hanging shadow: callers are answered while it hangs; at most MAX_RUNNING copies wait
        await admin.set_traffic("m", {"shadow": {"version": "4", "percent": 100}})
        for _ in range(10):
            assert await services.dataplane.predict("m", "hi", ctx=ctx()) == {"label": "pos", "score": 0.52}
        assert not hanging.release.is_set()
        assert services.dataplane.shadows.running == MAX_RUNNING
        assert count("4", "dropped") == 10 - MAX_RUNNING
        await until(lambda: count("4", "timed_out") == MAX_RUNNING)
        assert services.dataplane.shadows.running == MAX_RUNNING  # their work has not ended: still held
        hanging.release.set()
        await until(lambda: services.dataplane.shadows.running == 0)


async def test_unload_under_traffic_never_fails_other_models(
    running_services: RunningServices, as_admin: Any
) -> None:
    async with running_services(Tagged("m", "1"), EchoModel("other")) as services:
        admin = admin_of(services)
        stop = asyncio.Event()
        outcomes: Counter[str] = Counter()

        async def caller(name: str) -> None:
            while not stop.is_set():
                try:
                    await services.dataplane.predict(name, "hello", ctx=ctx())
                    outcomes[f"{name}:ok"] += 1
                except ModelNotReadyError as exc:
                    outcomes[f"{name}:503" if exc.retry_after_s else f"{name}:503 without Retry-After"] += 1
                except ModelwireError as exc:
                    outcomes[f"{name}:{exc.code}"] += 1
                await asyncio.sleep(0)  # a refusal returns without awaiting: let the others run

        callers = [asyncio.create_task(caller(n)) for n in ("m", "m", "other", "other")]
        for _ in range(5):
            await admin.unload("m")
            await asyncio.wait_for(_until_count(outcomes, "m:503"), 10)
            await admin.load("m")
        stop.set()
        await asyncio.gather(*callers)
        assert set(outcomes) <= {"m:ok", "m:503", "other:ok"}, outcomes
        assert outcomes["other:ok"] > 0
        assert outcomes["m:503"] > 0


async def _until_count(outcomes: Counter[str], key: str) -> None:
    start = outcomes[key]
    while outcomes[key] == start:
        await asyncio.sleep(0.001)


async def test_bad_splits_and_deletes_are_refused_naming_why(
    running_services: RunningServices, as_admin: Any
) -> None:
    async with running_services(Tagged("m", "1"), Tagged("m", "2")) as services:
        admin = admin_of(services)
        with pytest.raises(InvalidInputError, match="add up to 100") as bad:
            await admin.set_traffic("m", {"versions": {"1": 60, "2": 60}})
        assert bad.value.field == "$.versions"
        with pytest.raises(InvalidInputError, match="sticky must be one of"):
            await admin.set_traffic("m", {"sticky": "cookie"})
        with pytest.raises(InvalidInputError, match="Traffic-Key"):
            await admin.set_traffic("m", {"sticky": "entity"})
        with pytest.raises(ModelwireError, match="no version '7'"):
            await admin.set_traffic("m", {"versions": {"7": 100}})
        with pytest.raises(FailedPreconditionError, match="not a repository model"):
            await admin.delete("m", "1")
        with pytest.raises(FailedPreconditionError, match="no previous default"):
            await admin.rollback("m")
