from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from modelwire import InvalidInputError, Model, ModelError, ModelNotFoundError
from modelwire.model.runner import CallCost, ModelRunner, map_model_exceptions
from tests.models import ErrorModel, SumModel


class ThreadRecordingModel(Model):
    """Sync model that notes which thread ran each ``predict``."""

    def __init__(self, name: str = "threads", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.threads: list[tuple[int, str]] = []

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.threads.append((threading.get_ident(), threading.current_thread().name))
        return list(batch)


class AsyncThreadRecordingModel(Model):
    def __init__(self, name: str = "async-threads", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.threads: list[int] = []

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        await asyncio.sleep(0)
        self.threads.append(threading.get_ident())
        return [item.upper() for item in batch]


class ReturnsModel(Model):
    """Returns whatever ``options["value"]`` holds, whatever the batch."""

    def predict(self, batch: Sequence[Any]) -> Any:
        return self.options["value"]


class RaisesModel(Model):
    def predict(self, batch: Sequence[Any]) -> Any:
        raise self.options["exc"]


async def test_sync_predict_runs_off_the_event_loop_thread() -> None:
    model = ThreadRecordingModel()
    assert not model.is_async
    assert await ModelRunner(model).run(["a", "b"]) == ["a", "b"]
    ((ident, _),) = model.threads
    assert ident != threading.get_ident()


async def test_sync_predict_uses_the_given_executor() -> None:
    model = ThreadRecordingModel()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-pool") as pool:
        await ModelRunner(model, pool).run(["a"])
    ((_, name),) = model.threads
    assert name.startswith("predict-pool")


async def test_async_predict_is_awaited_on_the_loop() -> None:
    model = AsyncThreadRecordingModel()
    assert model.is_async
    assert await ModelRunner(model).run(["a", "b"]) == ["A", "B"]
    assert model.threads == [threading.get_ident()]


async def test_async_test_double_sums_rows() -> None:
    assert await ModelRunner(SumModel("sum")).run([[1, 2, 3], [0.5]]) == [6.0, 0.5]


@pytest.mark.parametrize("value", [[1], [1, 2, 3], []], ids=["too few", "too many", "none"])
async def test_wrong_output_count_is_a_model_error(
    value: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ModelError) as info:
        await ModelRunner(ReturnsModel("count", value=value)).run(["a", "b"])
    assert f"returned {len(value)} outputs for 2 inputs" in info.value.message
    assert info.value.error_id in caplog.text


async def test_a_non_sequence_output_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="not a sequence"):
        await ModelRunner(ReturnsModel("scalar", value=42)).run(["a"])


async def test_any_iterable_output_is_accepted() -> None:
    model = ReturnsModel("tuple", value=(x for x in ("p", "q")))
    assert await ModelRunner(model).run(["a", "b"]) == ["p", "q"]


@pytest.mark.parametrize("exc", [ValueError("bad shape"), TypeError("not a number")])
async def test_value_and_type_errors_are_invalid_input(exc: Exception) -> None:
    with pytest.raises(InvalidInputError, match="rejected the input") as info:
        await ModelRunner(RaisesModel("picky", exc=exc)).run(["a"])
    assert info.value.__cause__ is exc


async def test_other_exceptions_are_model_errors_with_an_id_and_no_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ModelError) as info:
        await ModelRunner(ErrorModel("broken")).run(["a"])
    err = info.value
    assert err.code.value == "INTERNAL"
    assert "secret" not in err.message
    assert err.to_dict()["details"] == {"error_id": err.error_id}
    assert err.error_id in caplog.text
    assert "secret internal detail" in caplog.text  # the log keeps what the client must not see


async def test_modelwire_errors_pass_through_unchanged() -> None:
    original = ModelNotFoundError("no such thing")
    with pytest.raises(ModelNotFoundError) as info:
        await ModelRunner(RaisesModel("passthrough", exc=original)).run(["a"])
    assert info.value is original


async def test_per_item_exceptions_become_per_item_errors(caplog: pytest.LogCaptureFixture) -> None:
    keep = InvalidInputError("mine")
    value = ["fine", ValueError("bad row"), KeyError("boom"), keep]
    results = await ModelRunner(ReturnsModel("items", value=value)).run([0, 1, 2, 3])
    assert results[0] == "fine"
    assert isinstance(results[1], InvalidInputError)
    assert isinstance(results[2], ModelError)
    assert results[2].error_id in caplog.text
    assert results[3] is keep


def test_map_model_exceptions_outside_a_runner() -> None:
    model = Model("plain")
    with pytest.raises(InvalidInputError), map_model_exceptions(model):
        int("x")
    with pytest.raises(ModelError), map_model_exceptions(model):
        raise ZeroDivisionError


async def test_base_model_predict_is_abstract() -> None:
    with pytest.raises(ModelError):
        await ModelRunner(Model("abstract")).run(["a"])


async def test_default_predict_stream_yields_the_single_prediction() -> None:
    sync_items = [item async for item in ReturnsModel("s", value=["whole"]).predict_stream("x")]
    async_items = [item async for item in SumModel("sum").predict_stream([1, 2])]
    assert sync_items == ["whole"]
    assert async_items == [3.0]


# Where a sync predict runs: a thread until the model's calls are measured cheap, then the loop's own thread.


def test_call_cost_needs_a_warmup_and_a_limit() -> None:
    cost = CallCost(0.001, warmup=3)
    for _ in range(2):
        cost.observe(0.00001, 1)
    assert not cost.inline(1)  # two calls seen, three needed
    cost.observe(0.00001, 1)
    assert cost.inline(1)
    never = CallCost(0.0, warmup=0)
    never.observe(0.0, 1)
    assert not never.inline(1)  # a limit of 0: always a thread


def test_call_cost_scales_with_the_batch_and_backs_off_after_one_slow_call() -> None:
    cost = CallCost(0.001, warmup=1)
    cost.observe(0.0002, 2)  # 0.1 ms per item
    assert cost.inline(8)  # 0.8 ms expected
    assert not cost.inline(12)  # 1.2 ms expected
    cost.observe(0.005, 2)  # one call 5x over the limit: the next ones of its size go to a thread
    assert not cost.inline(2)
    for _ in range(20):  # measured cheap again (in the thread): back on the loop
        cost.observe(0.0002, 2)
    assert cost.inline(2)


async def test_a_cheap_sync_model_runs_on_the_loop_once_measured() -> None:
    model = ThreadRecordingModel()
    loop_thread = threading.get_ident()
    with ThreadPoolExecutor(1, thread_name_prefix="predict-test") as pool:
        runner = ModelRunner(model, pool, inline_below_s=1.0)  # a limit no trivial call reaches
        for _ in range(runner.cost.warmup):
            assert await runner.run(["a"]) == ["a"]
        assert all(name.startswith("predict-test") for _, name in model.threads)
        assert await runner.run(["b", "c"]) == ["b", "c"]
        assert model.threads[-1][0] == loop_thread
        assert runner.cost.calls == runner.cost.warmup + 1  # inline calls are measured too


async def test_a_model_measured_slow_stays_in_its_thread() -> None:
    model = ThreadRecordingModel()
    with ThreadPoolExecutor(1, thread_name_prefix="predict-test") as pool:
        runner = ModelRunner(model, pool, inline_below_s=0.001)
        for _ in range(runner.cost.warmup):
            runner.cost.observe(0.01, 1)  # as if each call had taken 10 ms
        await runner.run(["a"])
        assert model.threads[-1][1].startswith("predict-test")


async def test_inline_off_is_always_a_thread() -> None:
    model = ThreadRecordingModel()
    with ThreadPoolExecutor(1, thread_name_prefix="predict-test") as pool:
        runner = ModelRunner(model, pool, inline_below_s=0.0)
        for _ in range(runner.cost.warmup + 4):
            await runner.run(["a"])
        assert all(name.startswith("predict-test") for _, name in model.threads)


async def test_an_inline_model_error_is_translated_and_measured() -> None:
    model = ErrorModel("bad")
    with ThreadPoolExecutor(1) as pool:
        runner = ModelRunner(model, pool, inline_below_s=1.0)
        for _ in range(runner.cost.warmup):
            runner.cost.observe(0.0, 1)
        with pytest.raises(ModelError):
            await runner.run(["a"])
        assert runner.cost.calls == runner.cost.warmup + 1
