"""``submit_job`` and its handles (async and sync) against a real server, over REST and gRPC alike: inline
rows, streamed iterables, file uploads, push watch, wait, results, cancel, idempotency, training, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import modelwire.client._rest_jobs
import modelwire.jobs.watch
from modelwire import (
    AsyncClient,
    AsyncJobHandle,
    Client,
    Datatype,
    DeadlineExceededError,
    FailedPreconditionError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    JobHandle,
    JobInfo,
    Model,
    ModelNotFoundError,
    NotFoundError,
    Prediction,
    TensorSpec,
    UnavailableError,
)
from modelwire.client.job_inputs import FILE_CHUNK_BYTES, read_file
from modelwire.errors import JobNotFoundError
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer


class GateModel(Model):
    """Echoes, but every batch waits until the test opens ``gate``: a job that stays running meanwhile."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "gate", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.entered.set()
        self.gate.wait(60)
        return [{"echo": item} for item in batch]


@pytest.fixture(scope="module")
def gate() -> GateModel:
    return GateModel()


@pytest.fixture(scope="module")
def server(serve_module: ServeModule, gate: GateModel) -> Iterator[ThreadedServer]:
    """Overrides the folder's: echo and the gate model (jobs and trained versions stay in this module's data
    dir)."""
    yield serve_module(
        EchoModel("echo"),
        gate,
        jobs={"batch_size": 50, "progress_interval_ms": 0, "lease_s": 10},
        limits={"request_timeout_s": 10.0, "shutdown_grace_s": 1.0},
    )
    gate.gate.set()  # nothing stays blocked when serve_module stops it


@pytest.fixture
def closed_gate(gate: GateModel) -> Iterator[GateModel]:
    """The gate closed for this test (and opened after it, so no job stays stuck)."""
    gate.gate.clear()
    gate.entered.clear()
    yield gate
    gate.gate.set()


@pytest.fixture
def push_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No re-reading on quiet streams, server or client side: a watch must be fed by pushed events."""
    monkeypatch.setattr(modelwire.jobs.watch, "RECHECK_S", 3600.0)
    monkeypatch.setattr(modelwire.client._rest_jobs, "RECHECK_S", 3600.0)


@pytest.fixture
async def client(url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(url, timeout=10) as client:
        yield client


def echoes(rows: Sequence[Any]) -> list[Any]:
    return [
        r.result.output.get("echo") if isinstance(r.result, Prediction) else r.result.code.value for r in rows
    ]


# -- submit, wait, results ------------------------------------------------------------------------------


async def test_submit_a_list_wait_and_read_typed_results(client: AsyncClient, push_only: None) -> None:
    job = await client.submit_job(["a", "bad", "ccc"], model="echo", metadata={"who": "test"})
    assert isinstance(job, AsyncJobHandle)
    assert job.created
    assert job.info.status in ("queued", "running", "succeeded")
    assert (job.info.model, job.info.total, job.info.metadata) == ("echo", 3, {"who": "test"})
    done = await job.wait(timeout=30)
    assert isinstance(done, JobInfo)
    assert (done.status, done.done, done.errors, done.final, done.fraction) == ("succeeded", 3, 1, True, 1.0)
    rows = [row async for row in job.results()]
    assert [r.index for r in rows] == [0, 1, 2]
    assert echoes(rows) == ["a", "INVALID_ARGUMENT", "ccc"]
    assert [r.ok for r in rows] == [True, False, True]
    assert [r.index for r in [row async for row in job.results(offset=1, limit=1)]] == [1]
    assert (await job.status()).status == "succeeded"


async def test_the_sentiment_model_by_default(client: AsyncClient) -> None:
    job = await client.submit_job(["I love this product, it is wonderful"])
    await job.wait(timeout=30)
    [row] = [row async for row in job.results()]
    assert isinstance(row.result, Prediction)
    assert row.result.sentiment == "positive"


def test_sync_client_streams_a_generator(url: str) -> None:
    produced = []

    def rows() -> Iterator[str]:
        for i in range(2500):  # over the inline limit: streamed in chunks
            produced.append(i)
            yield f"r{i}"

    with Client(url, timeout=10) as client:
        job = client.submit_job(rows(), model="echo")
        assert isinstance(job, JobHandle)
        assert job.info.total == 2500
        assert job.wait(timeout=60).status == "succeeded"
        results = list(job.results())
    assert len(produced) == 2500
    assert [r.index for r in results] == list(range(2500))  # pages of 1000 rows, flattened in order
    assert echoes(results[:3]) == ["r0", "r1", "r2"]


def test_sync_results_can_stop_early(url: str) -> None:
    with Client(url, timeout=10) as client:
        job = client.submit_job([f"r{i}" for i in range(1500)], model="echo")
        job.wait(timeout=60)
        rows = job.results(offset=10)
        assert [next(rows).index for _ in range(3)] == [10, 11, 12]
        rows.close()  # the stream is closed mid-page; the client goes on working
        assert [r.index for r in job.results(offset=1498)] == [1498, 1499]


async def test_async_iterable_rows(client: AsyncClient) -> None:
    async def rows() -> AsyncIterator[Any]:
        for text in ("x", 7, "y"):
            yield text

    job = await client.submit_job(rows(), model="echo")
    await job.wait(timeout=30)
    assert echoes([row async for row in job.results()]) == ["x", "INVALID_ARGUMENT", "y"]


@pytest.mark.parametrize("suffix", [".csv", ".ndjson"])
async def test_file_uploads_are_parsed_by_the_server(
    client: AsyncClient, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        path.write_text('text\nfirst\n"second, with a comma"\nthird\n')
        expected = ["first", "second, with a comma", "third"]
    else:
        path.write_text('"first"\n{broken\n"third"\n')
        expected = ["first", "INVALID_ARGUMENT", "third"]
    job = await client.submit_job(path, model="echo")
    assert job.info.total == 3
    await job.wait(timeout=30)
    assert echoes([row async for row in job.results()]) == expected


async def test_read_file_streams_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    path.write_bytes(b'"row"\n' * 50_000)  # 300 kB
    sizes = [len(chunk) async for chunk in read_file(path)]
    assert len(sizes) > 1
    assert max(sizes) <= FILE_CHUNK_BYTES
    assert sum(sizes) == path.stat().st_size


# -- watch and cancel ------------------------------------------------------------------------------------


async def test_watch_is_pushed_from_a_snapshot_to_the_end(
    client: AsyncClient, closed_gate: GateModel, push_only: None
) -> None:
    job = await client.submit_job(["a", "b"], model="gate")
    events = job.watch()
    first = await anext(events)
    assert first.type == "job.snapshot"
    assert first.job.status in ("queued", "running")
    closed_gate.gate.set()
    async with asyncio.timeout(60):  # a watch that is not pushed to never ends (re-reading is off)
        rest = [event async for event in events]
    assert rest
    assert rest[-1].type == "job.succeeded"
    assert rest[-1].job.done == 2
    assert job.info.status == "succeeded"  # the handle follows what it watched


async def test_cancel_a_running_job(client: AsyncClient, closed_gate: GateModel, push_only: None) -> None:
    job = await client.submit_job(["a", "b", "c"], model="gate")
    async for event in job.watch():
        if event.job.status == "running":
            break
    cancelled = await job.cancel()
    assert cancelled.status == "cancelled"
    assert (await job.wait(timeout=30)).status == "cancelled"
    with pytest.raises(FailedPreconditionError):
        await job.cancel()


async def test_wait_timeout_is_deadline_exceeded(client: AsyncClient, closed_gate: GateModel) -> None:
    job = await client.submit_job(["a"], model="gate")
    with pytest.raises(DeadlineExceededError, match=job.id):
        await job.wait(timeout=0.2)
    closed_gate.gate.set()
    assert (await job.wait(timeout=30)).status == "succeeded"


def test_sync_handle_watch_and_cancel(url: str, closed_gate: GateModel) -> None:
    with Client(url, timeout=10) as client:
        job = client.submit_job(["a"], model="gate")
        events = job.watch()
        assert next(events).type == "job.snapshot"
        events.close()
        assert job.cancel().status == "cancelled"
        again = client.job(job.id)
        assert again.status().status == "cancelled"
        with pytest.raises(DeadlineExceededError):
            client.submit_job(["b"], model="gate").wait(timeout=0.2)


# -- listing, idempotency, training -----------------------------------------------------------------------


async def test_list_jobs_by_status(client: AsyncClient) -> None:
    job = await client.submit_job(["listed"], model="echo")
    await job.wait(timeout=30)
    page = await client.list_jobs(status="succeeded", limit=1000)
    assert job.id in [j.id for j in page.jobs]
    assert all(j.status == "succeeded" for j in page.jobs)
    first = await client.list_jobs(limit=1)
    assert len(first.jobs) == 1
    assert first.next_cursor is not None
    with pytest.raises(InvalidInputError):
        await client.list_jobs(status="sleeping")


async def test_idempotency_key(client: AsyncClient, url: str) -> None:
    key = f"client-{url}"
    first = await client.submit_job(["one"], model="echo", idempotency_key=key)
    again = await client.submit_job(["one"], model="echo", idempotency_key=key)
    assert first.created
    assert not again.created
    assert again.id == first.id
    with pytest.raises(IdempotencyKeyReusedError):
        await client.submit_job(["two"], model="echo", idempotency_key=key)


@pytest.mark.parametrize("given", ["file", "pairs"])
async def test_training_job_registers_a_new_version(client: AsyncClient, tmp_path: Path, given: str) -> None:
    good = ["great movie", "I loved it", "wonderful acting", "a delight", "superb and moving"]
    bad = ["awful movie", "I hated it", "terrible acting", "a bore", "dull and lifeless"]
    pairs = [(t, 1) for t in good * 4] + [(t, 0) for t in bad * 4]
    data: Any = pairs
    if given == "file":
        data = tmp_path / "labelled.csv"
        data.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in pairs) + "\n")
    job = await client.submit_training(data, model="sentiment")
    assert (job.info.kind, job.info.total) == ("train", 40)
    done = await job.wait(timeout=120)
    assert done.status == "succeeded", done.error
    served = {v.version for m in await client.models() if m.name == "sentiment" for v in m.versions}
    assert done.result["version"] in served
    assert 0.0 <= done.result["accuracy"] <= 1.0


async def test_training_a_model_that_cannot_learn_is_refused(client: AsyncClient) -> None:
    with pytest.raises(InvalidInputError, match="cannot be trained"):
        await client.submit_training([("so good", 1), ("so bad", 0)], model="echo")
    with pytest.raises(InvalidInputError, match="training row 1"):
        await client.submit_training([("so good", 1), "no label"], model="sentiment")


# -- errors --------------------------------------------------------------------------------------------------


async def test_unknown_model_and_job_are_not_found(client: AsyncClient) -> None:
    with pytest.raises(NotFoundError):
        await client.submit_job(["x"], model="nope")
    with pytest.raises(NotFoundError):
        await client.job("no-such-job")


async def test_unknown_model_and_job_raise_their_subclasses(client: AsyncClient) -> None:
    with pytest.raises(ModelNotFoundError):
        await client.submit_job(["x"], model="nope")
    with pytest.raises(JobNotFoundError):
        await client.job("no-such-job")


async def test_a_large_upload_to_an_unknown_model_says_so(client: AsyncClient, tmp_path: Path) -> None:
    """The server refuses before reading the upload; whether or not the refusal survives the connection
    (granian closes it, grpcio may replace the status), the client reports the server's reason."""
    path = tmp_path / "big.csv"
    path.write_text("text\n" + "abcdefghij\n" * 30_000)
    with pytest.raises(NotFoundError, match="nope"):
        await client.submit_job(path, model="nope")
    with pytest.raises(NotFoundError, match="nope"):
        await client.submit_job((f"row {i}" for i in range(30_000)), model="nope")


@pytest.mark.parametrize(
    "inputs",
    ["just one string", Path("rows.txt"), Path("missing.csv"), 42],
    ids=["string", "bad-suffix", "missing-file", "number"],
)
async def test_bad_inputs_are_refused_before_sending(client: AsyncClient, inputs: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"inputs|file|rows|\.csv"):
        await client.submit_job(inputs, model="echo")


async def test_an_unreachable_server_is_unavailable(refused_port: int) -> None:
    async with AsyncClient(f"http://127.0.0.1:{refused_port}", timeout=2) as client:
        with pytest.raises(UnavailableError):
            await client.submit_job(["x"], model="echo")


def test_sse_error_event_raises() -> None:
    from modelwire.client._rest_jobs import _event
    from modelwire.errors import ResourceExhaustedError

    with pytest.raises(ResourceExhaustedError):
        _event("error", json.dumps({"code": "RESOURCE_EXHAUSTED", "message": "dropped"}))
    assert _event("job.progress", json.dumps({"type": "job.progress", "time": 1.5, "data": {"id": "j"}})) == (
        "job.progress",
        1.5,
        {"id": "j"},
    )
