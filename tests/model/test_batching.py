from __future__ import annotations

import asyncio
import collections
import random
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from modelwire import Datatype, InvalidInputError, Model, ModelError, TensorSpec, UnavailableError
from modelwire.model.batching import BatchingRunner, BatchPolicy, Flush, Wait, next_yields, plan
from modelwire.model.runner import ModelRunner
from tests.models import EchoModel, ErrorModel

# -- the policy, as a pure function ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queued", "oldest_age_s", "running", "policy", "expected"),
    [
        pytest.param(0, 0.0, 0, BatchPolicy(8, 0.01), Wait(None), id="empty queue waits for work"),
        pytest.param(0, 5.0, 0, BatchPolicy(8, 0.01), Wait(None), id="empty queue ignores age"),
        pytest.param(3, 0.0, 1, BatchPolicy(8, 0.0), Wait(None), id="model busy: wait for it"),
        pytest.param(50, 9.0, 1, BatchPolicy(8, 0.0), Wait(None), id="busy beats a full queue"),
        pytest.param(3, 0.0, 1, BatchPolicy(8, 0.0, 2), Flush(3), id="a free slot of two"),
        pytest.param(3, 0.0, 2, BatchPolicy(8, 0.0, 2), Wait(None), id="both slots busy"),
        pytest.param(1, 0.0, 0, BatchPolicy(8, 0.0), Flush(1), id="no delay dispatches at once"),
        pytest.param(3, 0.004, 0, BatchPolicy(8, 0.010), Wait(pytest.approx(0.006)), id="waits the rest"),
        pytest.param(3, 0.010, 0, BatchPolicy(8, 0.010), Flush(3), id="delay used up exactly"),
        pytest.param(3, 0.5, 0, BatchPolicy(8, 0.010), Flush(3), id="delay long past"),
        pytest.param(8, 0.0, 0, BatchPolicy(8, 1.0), Flush(8), id="full batch does not wait"),
        pytest.param(20, 0.0, 0, BatchPolicy(8, 1.0), Flush(8), id="never more than max_batch_size"),
        pytest.param(20, 3.0, 0, BatchPolicy(8, 1.0), Flush(8), id="overdue still capped"),
        pytest.param(5, 0.0, 0, BatchPolicy(1, 1.0), Flush(1), id="batch size one: no batching"),
    ],
)
def test_plan(queued: int, oldest_age_s: float, running: int, policy: BatchPolicy, expected: Any) -> None:
    assert plan(queued, oldest_age_s, running, policy) == expected


def test_plan_is_pure() -> None:
    policy = BatchPolicy(4, 0.02)
    assert [plan(2, 0.01, 0, policy) for _ in range(3)] == [Wait(pytest.approx(0.01))] * 3


@pytest.mark.parametrize(
    ("yields", "gathered", "callers", "expected"),
    [
        pytest.param(0, 0, 1, 0, id="a lone caller: dispatch at once, as before"),
        pytest.param(0, 0, 2, 32, id="two callers batched while the model was busy: load, yield"),
        pytest.param(32, 3, 4, 32, id="yielding gathered items: keep yielding"),
        pytest.param(32, 0, 1, 16, id="yielding gathered nothing: halve"),
        pytest.param(1, 0, 1, 0, id="down to dispatching at once"),
    ],
)
def test_next_yields(yields: int, gathered: int, callers: int, expected: int) -> None:
    assert next_yields(yields, gathered, callers, BatchPolicy(32, 0.0, 1, 32)) == expected


def test_next_yields_off_never_yields() -> None:
    assert next_yields(0, 0, 8, BatchPolicy(32, 0.0, 1, 0)) == 0


# -- test doubles --------------------------------------------------------------------------------------


class GateModel(Model):
    """Sync model that records each batch, then blocks until the test opens the gate."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "gate", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.calls: list[list[Any]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.calls.append(list(batch))
        self.entered.set()
        if not self.gate.wait(timeout=10):
            raise RuntimeError("the test never opened the gate")
        return [f"out:{item}" for item in batch]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10), "the model was never called"


class StrictModel(Model):
    """Like most frameworks: one malformed row makes the whole call raise ``ValueError``."""

    def __init__(self, name: str = "strict", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.calls: list[list[Any]] = []

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.calls.append(list(batch))
        if not all(isinstance(item, int) for item in batch):
            raise ValueError("could not convert string to float")
        return [item * 2 for item in batch]


def batcher(model: Model, **policy: Any) -> BatchingRunner:
    return BatchingRunner(ModelRunner(model), BatchPolicy(**policy))


@pytest.fixture
async def gate() -> AsyncIterator[GateModel]:
    model = GateModel()
    yield model
    model.gate.set()  # never leave a worker thread blocked


async def started(coro: Any) -> asyncio.Task[Any]:
    """Start ``coro`` as a task and let it run up to its first real wait (its items are queued)."""
    task = asyncio.ensure_future(coro)
    for _ in range(3):
        await asyncio.sleep(0)
    return task


# -- coalescing ---------------------------------------------------------------------------------------


async def test_concurrent_requests_share_one_predict_call_and_get_their_own_results() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=32, max_delay_s=0.05)
    texts = [f"text number {i}" for i in range(20)]
    order = list(range(20))
    random.Random(7).shuffle(order)

    tasks = {i: asyncio.ensure_future(runner.run([texts[i]])) for i in order}
    results = {i: await task for i, task in tasks.items()}
    await runner.close()

    assert len(model.calls) <= 2, model.calls
    assert sorted(item for call in model.calls for item in call) == sorted(texts)
    for i, result in results.items():
        assert result == [{"echo": texts[i], "length": len(texts[i])}]


async def test_one_request_with_many_items_gets_them_back_in_order() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=32, max_delay_s=0.0)
    texts = [f"t{i}" for i in range(10)]
    assert [r["echo"] for r in await runner.run(texts)] == texts
    await runner.close()


async def test_a_call_spread_over_several_model_calls_gets_every_result_in_its_place() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=3, max_delay_s=0.0)
    texts = [f"t{i}" for i in range(8)]

    first, second = await asyncio.gather(runner.run(texts), runner.run(["x", "y"]))
    await runner.close()

    assert [r["echo"] for r in first] == texts
    assert [r["echo"] for r in second] == ["x", "y"]
    assert len(model.calls) >= 4
    assert all(len(call) <= 3 for call in model.calls)


async def test_cancelling_a_call_mid_way_keeps_its_remaining_items_from_the_model(gate: GateModel) -> None:
    runner = batcher(gate, max_batch_size=2, max_delay_s=0.0)
    many = await started(runner.run(["a", "b", "c", "d", "e"]))
    await gate.wait_entered()  # the model holds ["a", "b"]; c, d and e wait
    other = await started(runner.run(["z"]))

    many.cancel()
    with pytest.raises(asyncio.CancelledError):
        await many
    gate.gate.set()

    assert await other == ["out:z"]
    assert gate.calls == [["a", "b"], ["z"]]
    await runner.close()


async def test_requests_arriving_while_the_model_is_busy_form_the_next_batch(gate: GateModel) -> None:
    runner = batcher(gate, max_batch_size=32, max_delay_s=0.0)
    first = await started(runner.run(["first"]))
    await gate.wait_entered()
    later = [await started(runner.run([f"later-{i}"])) for i in range(10)]
    gate.gate.set()

    assert await first == ["out:first"]
    assert [await task for task in later] == [[f"out:later-{i}"] for i in range(10)]
    assert gate.calls == [["first"], [f"later-{i}" for i in range(10)]]
    await runner.close()


async def trickle(runner: BatchingRunner, texts: list[str]) -> list[asyncio.Task[list[Any]]]:
    """Start one request per loop cycle, the way grpc.aio hands calls over, one poll cycle at a time."""
    tasks = []
    for text in texts:
        tasks.append(asyncio.ensure_future(runner.run([text])))
        await asyncio.sleep(0)
    return tasks


async def test_a_lone_caller_is_dispatched_at_once_without_yielding() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=32, max_delay_s=0.0)
    await runner.run(["many-0", "many-1"])  # one caller's many items: no evidence of concurrent load
    for i in range(3):
        await runner.run([f"alone-{i}"])
    trickled = await trickle(runner, ["t0", "t1"])  # not yielding: the first goes alone
    await asyncio.wait_for(asyncio.gather(*trickled), 10)
    await runner.close()

    assert model.calls[:4] == [["many-0", "many-1"], ["alone-0"], ["alone-1"], ["alone-2"]]
    assert model.calls[4] == ["t0"]


async def test_under_load_requests_trickling_in_one_per_loop_cycle_join_one_batch(gate: GateModel) -> None:
    runner = batcher(gate, max_batch_size=32, max_delay_s=0.0)
    first = await started(runner.run(["first"]))
    await gate.wait_entered()
    busy = [await started(runner.run([f"busy-{i}"])) for i in range(2)]
    gate.gate.set()  # the model now answers at once; "busy-0/1" were a batch of two: evidence of load
    assert await first == ["out:first"]
    assert [await task for task in busy] == [["out:busy-0"], ["out:busy-1"]]

    trickled = await trickle(runner, [f"t{i}" for i in range(6)])
    assert [await task for task in trickled] == [[f"out:t{i}"] for i in range(6)]
    await runner.close()

    assert gate.calls[:2] == [["first"], ["busy-0", "busy-1"]]
    assert gate.calls[2:] == [[f"t{i}" for i in range(6)]], "the trickle should have formed one batch"


async def test_yielding_under_load_keeps_the_max_delay_and_answers_everyone(gate: GateModel) -> None:
    runner = batcher(gate, max_batch_size=32, max_delay_s=0.005)
    first = await started(runner.run(["first"]))
    await gate.wait_entered()
    busy = [await started(runner.run([f"busy-{i}"])) for i in range(2)]
    gate.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *busy), 10)

    for round_ in range(3):  # items keep arriving while it yields: it must still dispatch, every round
        trickled = await trickle(runner, [f"r{round_}-{i}" for i in range(4)])
        results = await asyncio.wait_for(asyncio.gather(*trickled), 10)
        assert results == [[f"out:r{round_}-{i}"] for i in range(4)]
    await runner.close()


async def test_max_batch_size_is_respected() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=4, max_delay_s=0.05)
    results = await asyncio.gather(*(runner.run([f"x{i}"]) for i in range(10)))
    await runner.close()

    sizes = [len(call) for call in model.calls]
    assert max(sizes) == 4, sizes
    assert sum(sizes) == 10
    assert [r[0]["echo"] for r in results] == [f"x{i}" for i in range(10)]


async def test_on_batch_observes_every_call_size() -> None:
    model = EchoModel()
    seen: list[int] = []
    runner = BatchingRunner(ModelRunner(model), BatchPolicy(3, 0.05), on_batch=seen.append)
    await asyncio.gather(*(runner.run([f"x{i}"]) for i in range(7)))
    await runner.close()
    assert seen == [len(call) for call in model.calls]
    assert sum(seen) == 7


# -- failures -----------------------------------------------------------------------------------------


async def test_a_per_item_error_fails_only_that_item() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=32, max_delay_s=0.05)
    good_a, bad, good_b = await asyncio.gather(runner.run(["a"]), runner.run(["bad"]), runner.run(["b"]))
    await runner.close()

    assert len(model.calls) == 1  # they really shared the call
    assert good_a == [{"echo": "a", "length": 1}]
    assert good_b == [{"echo": "b", "length": 1}]
    assert isinstance(bad[0], InvalidInputError)


async def test_a_whole_batch_exception_fails_every_item_with_one_model_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = batcher(ErrorModel("broken"), max_batch_size=32, max_delay_s=0.05)
    results = await asyncio.gather(*(runner.run([f"x{i}"]) for i in range(5)))

    errors = [r[0] for r in results]
    assert all(isinstance(e, ModelError) for e in errors)
    error_ids = {e.error_id for e in errors}
    assert len(error_ids) == 1  # one predict call failed, one id to find in the log
    (error_id,) = error_ids
    assert error_id
    assert errors[0].details == {"error_id": error_id}
    assert "secret" not in errors[0].message
    assert error_id in caplog.text
    # the driver survived the failure: the next request is answered (with the same failure), not hung
    (again,) = await runner.run(["y"])
    assert isinstance(again, ModelError)
    await runner.close()


async def test_one_callers_malformed_input_does_not_fail_its_batch_mates() -> None:
    model = StrictModel()
    runner = batcher(model, max_batch_size=32, max_delay_s=0.05)
    ok_a, malformed, ok_b = await asyncio.gather(runner.run([1]), runner.run(["x"]), runner.run([3]))
    await runner.close()

    assert model.calls[0] == [1, "x", 3]  # batched together, and the model rejected the lot
    assert model.calls[1:] == [[1], ["x"], [3]]  # then each item alone, so only its sender fails
    assert ok_a == [2]
    assert ok_b == [6]
    assert isinstance(malformed[0], InvalidInputError)


async def test_malformed_input_in_an_unbatched_call_is_invalid_input() -> None:
    runner = batcher(StrictModel(), max_batch_size=32, max_delay_s=0.0)
    (result,) = await runner.run(["x"])
    assert isinstance(result, InvalidInputError)
    await runner.close()


# -- cancellation and shutdown ------------------------------------------------------------------------


async def test_a_cancelled_waiting_request_never_reaches_the_model(gate: GateModel) -> None:
    runner = batcher(gate, max_batch_size=32, max_delay_s=0.0)
    first = await started(runner.run(["first"]))
    await gate.wait_entered()
    keep_a = await started(runner.run(["keep-a"]))
    dropped = await started(runner.run(["dropped"]))
    keep_b = await started(runner.run(["keep-b"]))

    dropped.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dropped
    gate.gate.set()

    assert await first == ["out:first"]
    assert await keep_a == ["out:keep-a"]
    assert await keep_b == ["out:keep-b"]
    assert gate.calls == [["first"], ["keep-a", "keep-b"]]
    await runner.close()


async def test_cancelling_the_only_waiting_request_leaves_the_batcher_serving() -> None:
    model = EchoModel()
    runner = batcher(model, max_batch_size=32, max_delay_s=0.2)
    task = await started(runner.run(["gone"]))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await runner.run(["next"]) == [{"echo": "next", "length": 4}]
    assert model.calls == [["next"]]
    await runner.close()


async def test_close_finishes_the_running_call_and_fails_what_is_queued(gate: GateModel) -> None:
    runner = batcher(gate, max_batch_size=32, max_delay_s=0.0)
    running = await started(runner.run(["running"]))
    await gate.wait_entered()
    queued = [await started(runner.run([f"queued-{i}"])) for i in range(3)]

    closing = await started(runner.close())
    assert not closing.done()  # it waits for the call in progress
    gate.gate.set()
    await closing

    assert await running == ["out:running"]
    for task in queued:
        (result,) = await task
        assert isinstance(result, UnavailableError)
    assert gate.calls == [["running"]]
    with pytest.raises(UnavailableError):
        await runner.run(["after close"])


async def test_close_without_any_request_is_harmless() -> None:
    runner = batcher(EchoModel(), max_batch_size=4, max_delay_s=0.0)
    await runner.close()
    with pytest.raises(UnavailableError):
        await runner.run(["x"])


class TaskRecordingModel(Model):
    """Sync model that notes the asyncio task each ``predict`` ran in (None: a worker thread)."""

    def __init__(self, name: str = "tasks", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.tasks: list[asyncio.Task[Any] | None] = []

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        try:
            self.tasks.append(asyncio.current_task())
        except RuntimeError:  # no running loop in this thread
            self.tasks.append(None)
        return list(batch)


async def test_a_lone_call_to_an_idle_inline_model_runs_in_the_callers_task() -> None:
    model = TaskRecordingModel()
    with ThreadPoolExecutor(1) as pool:
        inner = ModelRunner(model, pool, inline_below_s=1.0)
        seen: list[int] = []
        runner = BatchingRunner(inner, BatchPolicy(), on_batch=seen.append)
        try:
            for _ in range(inner.cost.warmup):  # measured in the thread first
                assert await runner.run(["a"]) == ["a"]
            assert model.tasks == [None] * inner.cost.warmup
            assert await runner.run(["b", "c"]) == ["b", "c"]
            assert model.tasks[-1] is asyncio.current_task()  # no batch task, no thread
            assert seen[-1] == 2  # still a batch to the metrics
            # Concurrent callers: the others are ready to run when the first arrives, so it does not take
            # the shortcut and they batch behind it.
            results = await asyncio.gather(*(runner.run([str(i)]) for i in range(3)))
            assert results == [["0"], ["1"], ["2"]]
            assert seen[-2:] == [1, 2]
        finally:
            await runner.close()


def test_the_loop_still_shows_what_is_ready() -> None:
    """The shortcut reads asyncio's private ready queue; if it goes, this fails (the code falls back to no
    shortcut, which is correct but slower at low concurrency)."""
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop._ready, collections.deque)  # type: ignore[attr-defined]
        assert callable(loop._read_from_self)  # type: ignore[attr-defined]
        handle = loop.call_soon(print)
        assert handle in loop._ready  # type: ignore[attr-defined]
        assert handle._callback is print  # type: ignore[attr-defined]
    finally:
        loop.close()
