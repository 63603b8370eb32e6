"""modelwire.v1.Jobs on a real grpc.aio server with a real grpcio client: submit (unary and streamed), get,
list, watch, results, cancel, retry; idempotency; every error status with its rich details."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from modelwire import Datatype, Model, TensorSpec
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.server import GrpcListener, start_grpc_server
from modelwire.settings import JobsSettings, Settings
from tests.models import EchoModel
from tests.protocols.grpc.richstatus import rich_details
from tests.protocols.grpc.test_grpcurl import grpcurl
from tests.protocols.grpc.test_grpcurl import pytestmark as grpcurl_mark

FINAL = (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED)


class GateModel(Model):
    """Echoes texts, but each batch waits until the test opens ``gate``: a job that stays running."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "gate", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.entered.set()
        await self.gate.wait()
        return [{"echo": item} for item in batch]


@pytest.fixture
def gate() -> GateModel:
    return GateModel()


@pytest.fixture
async def services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings], gate: GateModel
) -> AsyncIterator[Services]:
    """Overrides the folder's: the echo and gate models, small batches, progress after every batch."""
    settings = make_settings(
        jobs=JobsSettings(batch_size=2, progress_interval_ms=0, lease_s=5, max_upload_bytes=65536)
    )
    services = make_services(EchoModel(), gate, settings=settings, default=False)
    await start_services(services)
    yield services
    gate.gate.set()  # a job still waiting at the gate must not hold the shutdown
    await stop_services(services)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.JobsStub:
    return pb_grpc.JobsStub(channel)


def values(*items: Any) -> list[struct_pb2.Value]:
    out = []
    for item in items:
        value = struct_pb2.Value()
        json_format.ParseDict(item, value)
        out.append(value)
    return out


async def finished(stub: pb_grpc.JobsStub, job_id: str) -> pb.Job:
    """Watch the job to its end; the last event's job."""
    events = [event async for event in stub.Watch(pb.WatchJobRequest(id=job_id), timeout=30)]
    assert events, "Watch sent nothing"
    assert events[-1].job.status in FINAL
    return events[-1].job


async def rest_of(call: Any) -> list[pb.JobEvent]:
    """What a stream sends after the messages read so far (``read()`` and ``async for`` cannot mix)."""
    out = []
    while (message := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        out.append(message)
    return out


async def results(stub: pb_grpc.JobsStub, job_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    rows = []
    async for chunk in stub.Results(pb.JobResultsRequest(id=job_id, **kwargs), timeout=30):
        for row in chunk.results:
            which = row.WhichOneof("outcome")
            assert which is not None
            rows.append({"index": row.index, which: json_format.MessageToDict(getattr(row, which))})
    return rows


async def expect_error(call: Any, code: grpc.StatusCode, reason: str | None = None) -> dict[str, Any]:
    async def run() -> Any:
        return [m async for m in call] if hasattr(call, "__aiter__") else await call

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await run()
    assert failure.value.code() == code, failure.value.details()
    details = rich_details(failure.value)
    assert details["ErrorInfo"].reason == (reason or code.name)
    return details


# -- submit, watch, results ---------------------------------------------------------------------------


async def test_submit_watch_and_results_in_input_order(stub: pb_grpc.JobsStub) -> None:
    texts = ["a", "bad", "ccc", "dd", "e"]
    reply = await stub.Submit(
        pb.SubmitJobRequest(model="echo", texts=texts, metadata=struct_pb2.Struct(fields={})), timeout=10
    )
    assert reply.created
    job = reply.job
    assert (job.model, job.kind, job.progress.total) == ("echo", "predict", 5)
    assert job.status in (pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_RUNNING, pb.JOB_STATUS_SUCCEEDED)
    done = await finished(stub, job.id)
    assert done.status == pb.JOB_STATUS_SUCCEEDED
    assert (done.progress.done, done.progress.total, done.progress.errors) == (5, 5, 1)
    assert done.HasField("finished_at")
    assert done.finished_at >= done.created_at
    rows = await results(stub, job.id)
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["output"] == {"echo": "a", "length": 1}
    assert rows[1]["error"]["code"] == "INVALID_ARGUMENT"
    assert "bad" in rows[1]["error"]["message"]
    assert [r["output"]["echo"] for r in rows if "output" in r] == ["a", "ccc", "dd", "e"]
    fetched = await stub.Get(pb.GetJobRequest(id=job.id), timeout=10)
    assert fetched == done


async def test_results_offset_limit_and_chunks(stub: pb_grpc.JobsStub) -> None:
    texts = [f"t{i}" for i in range(30)]
    job = (await stub.Submit(pb.SubmitJobRequest(model="echo", texts=texts), timeout=10)).job
    await finished(stub, job.id)
    window = await results(stub, job.id, offset=10, limit=5)
    assert [r["output"]["echo"] for r in window] == [f"t{i}" for i in range(10, 15)]
    assert len(await results(stub, job.id, offset=25)) == 5
    await expect_error(
        stub.Results(pb.JobResultsRequest(id=job.id, offset=-1), timeout=10), grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_instances_rows_carry_per_row_errors(stub: pb_grpc.JobsStub) -> None:
    job = (
        await stub.Submit(pb.SubmitJobRequest(model="echo", instances=values("ok", 7, {"x": 1})), timeout=10)
    ).job
    await finished(stub, job.id)
    rows = await results(stub, job.id)
    assert rows[0]["output"] == {"echo": "ok", "length": 2}
    assert [rows[1]["error"]["code"], rows[2]["error"]["code"]] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]


async def test_submit_stream_stores_every_chunk_in_order(stub: pb_grpc.JobsStub) -> None:
    async def chunks() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo", texts=["s0"]), texts=["s1"])
        for start in range(2, 40, 6):
            yield pb.SubmitJobChunk(texts=[f"s{i}" for i in range(start, min(start + 6, 40))])

    reply = await stub.SubmitStream(chunks(), timeout=10)
    assert reply.created
    assert reply.job.progress.total == 40
    await finished(stub, reply.job.id)
    assert [r["output"]["echo"] for r in await results(stub, reply.job.id)] == [f"s{i}" for i in range(40)]


@pytest.mark.parametrize(
    ("content_type", "data", "expected"),
    [
        ("application/x-ndjson", b'"one"\n"tw', ["one", "two", "error", "three"]),
        ("text/csv", b'text\none\ntwo\n"thr', ["one", "two", "three"]),
    ],
    ids=["ndjson", "csv"],
)
async def test_submit_stream_of_file_bytes_is_parsed_as_an_upload(
    stub: pb_grpc.JobsStub, content_type: str, data: bytes, expected: list[str]
) -> None:
    tail = b'o"\n{not json\n"three"\n' if content_type != "text/csv" else b'ee"\n'

    async def chunks() -> AsyncIterator[pb.SubmitJobChunk]:
        spec = pb.SubmitJobRequest(model="echo", content_type=content_type)
        yield pb.SubmitJobChunk(spec=spec, data=data)  # rows split across messages anywhere
        yield pb.SubmitJobChunk(data=tail)

    reply = await stub.SubmitStream(chunks(), timeout=10)
    await finished(stub, reply.job.id)
    rows = await results(stub, reply.job.id)
    got = [r["output"]["echo"] if "output" in r else "error" for r in rows]
    assert got == expected


async def test_submit_stream_of_file_bytes_refuses_rows_and_unknown_types(stub: pb_grpc.JobsStub) -> None:
    async def mixed() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo", content_type="text/csv"), data=b"a\n")
        yield pb.SubmitJobChunk(texts=["b"])

    async def unknown() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo", content_type="image/png"), data=b"x")

    details = await expect_error(stub.SubmitStream(mixed(), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    assert details["BadRequest"].field_violations[0].field == "data"
    await expect_error(
        stub.SubmitStream(unknown(), timeout=10), grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_MEDIA_TYPE"
    )
    assert not (await stub.List(pb.ListJobsRequest(), timeout=10)).jobs


# -- watch --------------------------------------------------------------------------------------------


async def test_watch_starts_with_a_snapshot_and_follows_to_the_end(
    stub: pb_grpc.JobsStub, gate: GateModel
) -> None:
    job = (await stub.Submit(pb.SubmitJobRequest(model="gate", texts=list("abcdef")), timeout=10)).job
    call = stub.Watch(pb.WatchJobRequest(id=job.id), timeout=30)
    first = await call.read()
    assert first.type == "job.snapshot"
    assert first.job.id == job.id
    assert first.job.status in (pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_RUNNING)
    await gate.entered.wait()
    gate.gate.set()
    rest = await rest_of(call)
    assert rest[-1].type == "job.succeeded"
    assert rest[-1].job.status == pb.JOB_STATUS_SUCCEEDED
    assert rest[-1].job.progress.done == 6
    progress = [e.job.progress.done for e in rest if e.type == "job.progress"]
    assert progress  # a batch of 2 rows at a time, progress after each
    assert progress == sorted(progress)
    assert all(e.job.id == job.id and e.job.model == "gate" for e in rest)  # whole jobs, not fragments


async def test_watch_of_a_finished_job_sends_its_state_and_ends(stub: pb_grpc.JobsStub) -> None:
    job = (await stub.Submit(pb.SubmitJobRequest(model="echo", texts=["x"]), timeout=10)).job
    await finished(stub, job.id)
    events = [e async for e in stub.Watch(pb.WatchJobRequest(id=job.id), timeout=10)]
    assert [(e.type, e.job.status) for e in events] == [("job.snapshot", pb.JOB_STATUS_SUCCEEDED)]


async def test_cancel_a_running_job_ends_its_watch(
    stub: pb_grpc.JobsStub, gate: GateModel, services: Services
) -> None:
    job = (await stub.Submit(pb.SubmitJobRequest(model="gate", texts=["a", "b", "c"]), timeout=10)).job
    await gate.entered.wait()
    call = stub.Watch(pb.WatchJobRequest(id=job.id), timeout=30)
    assert (await call.read()).job.status == pb.JOB_STATUS_RUNNING
    assert services.metrics.live.connections("grpc") == 1
    cancelled = await stub.Cancel(pb.CancelJobRequest(id=job.id), timeout=10)
    assert cancelled.status == pb.JOB_STATUS_CANCELLED
    rest = await rest_of(call)
    assert [(e.type, e.job.status) for e in rest] == [("job.cancelled", pb.JOB_STATUS_CANCELLED)]
    details = await expect_error(
        stub.Cancel(pb.CancelJobRequest(id=job.id), timeout=10), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert details["ErrorInfo"].metadata["status"] == "cancelled"
    for _ in range(500):
        if services.metrics.live.connections("grpc") == 0:
            break
        await asyncio.sleep(0.01)
    assert services.metrics.live.connections("grpc") == 0


async def test_a_cancelled_watch_releases_its_subscription(
    stub: pb_grpc.JobsStub, gate: GateModel, services: Services
) -> None:
    job = (await stub.Submit(pb.SubmitJobRequest(model="gate", texts=["a"]), timeout=10)).job
    before = services.events.subscriber_count
    call = stub.Watch(pb.WatchJobRequest(id=job.id))
    await call.read()
    assert services.events.subscriber_count == before + 1
    call.cancel()
    for _ in range(500):
        if services.events.subscriber_count == before:
            break
        await asyncio.sleep(0.01)
    assert services.events.subscriber_count == before


# -- list, retry, idempotency -------------------------------------------------------------------------


async def test_list_filters_and_pages(stub: pb_grpc.JobsStub) -> None:
    ids = [
        (await stub.Submit(pb.SubmitJobRequest(model="echo", texts=["x"]), timeout=10)).job.id
        for _ in range(3)
    ]
    for job_id in ids:
        await finished(stub, job_id)
    first = await stub.List(pb.ListJobsRequest(limit=2), timeout=10)
    assert [j.id for j in first.jobs] == ids[::-1][:2]  # newest first
    assert first.next_cursor
    second = await stub.List(pb.ListJobsRequest(limit=2, cursor=first.next_cursor), timeout=10)
    assert [j.id for j in second.jobs] == [ids[0]]
    assert second.next_cursor == ""
    succeeded = await stub.List(pb.ListJobsRequest(status=pb.JOB_STATUS_SUCCEEDED), timeout=10)
    assert {j.id for j in succeeded.jobs} == set(ids)
    assert not (await stub.List(pb.ListJobsRequest(status=pb.JOB_STATUS_FAILED), timeout=10)).jobs
    await expect_error(
        stub.List(pb.ListJobsRequest(limit=5000), timeout=10), grpc.StatusCode.INVALID_ARGUMENT
    )
    await expect_error(stub.List(pb.ListJobsRequest(status=42), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


async def test_retry_of_a_job_that_did_not_fail_is_failed_precondition(stub: pb_grpc.JobsStub) -> None:
    job = (await stub.Submit(pb.SubmitJobRequest(model="echo", texts=["x"]), timeout=10)).job
    await finished(stub, job.id)
    await expect_error(
        stub.Retry(pb.RetryJobRequest(id=job.id), timeout=10), grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_idempotency_key_returns_the_same_job(stub: pb_grpc.JobsStub) -> None:
    request = pb.SubmitJobRequest(model="echo", texts=["one", "two"], idempotency_key="key-1")
    first = await stub.Submit(request, timeout=10)
    again = await stub.Submit(request, timeout=10)
    assert first.created
    assert not again.created
    assert again.job.id == first.job.id
    other = pb.SubmitJobRequest(model="echo", texts=["three"], idempotency_key="key-1")
    details = await expect_error(stub.Submit(other, timeout=10), grpc.StatusCode.ALREADY_EXISTS)
    assert details["ErrorInfo"].metadata["job_id"] == first.job.id
    too_long = pb.SubmitJobRequest(model="echo", texts=["x"], idempotency_key="k" * 256)
    bad = await expect_error(stub.Submit(too_long, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad["BadRequest"].field_violations[0].field == "idempotency_key"


# -- errors -------------------------------------------------------------------------------------------


async def test_unknown_model_is_not_found_at_submit(stub: pb_grpc.JobsStub) -> None:
    await expect_error(
        stub.Submit(pb.SubmitJobRequest(model="nope", texts=["x"]), timeout=10), grpc.StatusCode.NOT_FOUND
    )
    assert not (await stub.List(pb.ListJobsRequest(), timeout=10)).jobs


@pytest.mark.parametrize("method", ["Get", "Cancel", "Retry", "Watch", "Results"])
async def test_unknown_job_is_not_found(stub: pb_grpc.JobsStub, method: str) -> None:
    requests = {
        "Get": pb.GetJobRequest,
        "Cancel": pb.CancelJobRequest,
        "Retry": pb.RetryJobRequest,
        "Watch": pb.WatchJobRequest,
        "Results": pb.JobResultsRequest,
    }
    await expect_error(
        getattr(stub, method)(requests[method](id="no-such-job"), timeout=10), grpc.StatusCode.NOT_FOUND
    )


async def test_empty_id_is_invalid_argument(stub: pb_grpc.JobsStub) -> None:
    details = await expect_error(stub.Get(pb.GetJobRequest(), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    assert details["BadRequest"].field_violations[0].field == "id"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SubmitJobRequest(model="echo"), "$.inputs"),
        (pb.SubmitJobRequest(texts=["x"]), "model"),
        (pb.SubmitJobRequest(model="echo", texts=["x"], kind="dance"), "kind"),
        (pb.SubmitJobRequest(model="echo", texts=["x"], instances=values("y")), "instances"),
    ],
    ids=["no-rows", "no-model", "bad-kind", "texts-and-instances"],
)
async def test_bad_submit_is_invalid_argument(stub: pb_grpc.JobsStub, request_: Any, field: str) -> None:
    details = await expect_error(stub.Submit(request_, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    assert details["BadRequest"].field_violations[0].field == field
    assert not (await stub.List(pb.ListJobsRequest(), timeout=10)).jobs


async def test_bad_callback_url_is_invalid_argument(stub: pb_grpc.JobsStub) -> None:
    request = pb.SubmitJobRequest(model="echo", texts=["x"], callback_url="http://10.0.0.1/hook")
    await expect_error(stub.Submit(request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


async def test_training_a_model_that_cannot_be_trained_is_invalid_argument(stub: pb_grpc.JobsStub) -> None:
    request = pb.SubmitJobRequest(model="echo", kind="train", instances=values({"text": "good", "label": 1}))
    await expect_error(stub.Submit(request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


async def test_submit_stream_needs_the_spec_first_and_only_first(stub: pb_grpc.JobsStub) -> None:
    async def no_spec() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(texts=["x"])

    async def two_specs() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo"), texts=["x"] * 3000)
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo"), texts=["y"])

    for chunks in (no_spec(), two_specs()):
        details = await expect_error(stub.SubmitStream(chunks, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
        assert details["BadRequest"].field_violations[0].field == "spec"
    assert not (await stub.List(pb.ListJobsRequest(), timeout=10)).jobs  # nothing half-stored


async def test_a_first_message_over_the_upload_limit_is_refused(stub: pb_grpc.JobsStub) -> None:
    async def chunks() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo", texts=["x" * 70000]))

    await expect_error(
        stub.SubmitStream(chunks(), timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED, "PAYLOAD_TOO_LARGE"
    )


async def test_submit_stream_over_the_upload_limit_stores_nothing(stub: pb_grpc.JobsStub) -> None:
    async def chunks() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo"))
        for _ in range(10):
            yield pb.SubmitJobChunk(texts=["x" * 8000])  # 80 kB > max_upload_bytes (64 KiB)

    await expect_error(
        stub.SubmitStream(chunks(), timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED, "PAYLOAD_TOO_LARGE"
    )
    assert not (await stub.List(pb.ListJobsRequest(), timeout=10)).jobs


async def test_a_full_queue_is_unavailable_with_retry_info(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(jobs=JobsSettings(workers=0, max_queue_depth=1))
    services = make_services(EchoModel(), settings=settings, default=False)
    await start_services(services)
    listener = await start_grpc_server(services, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            stub = pb_grpc.JobsStub(channel)
            await stub.Submit(pb.SubmitJobRequest(model="echo", texts=["x"]), timeout=10)
            details = await expect_error(
                stub.Submit(pb.SubmitJobRequest(model="echo", texts=["y"]), timeout=10),
                grpc.StatusCode.UNAVAILABLE,
            )
            assert details["RetryInfo"].retry_delay.seconds > 0
    finally:
        await listener.stop(0)
        await stop_services(services)


# -- reflection ---------------------------------------------------------------------------------------


@grpcurl_mark
async def test_grpcurl_submits_a_job_by_reflection(listener: GrpcListener) -> None:
    address = f"127.0.0.1:{listener.port}"
    code, out, err = await grpcurl(address, "list")
    assert code == 0, err
    assert "modelwire.v1.Jobs" in out.split()
    body = json.dumps({"model": "echo", "texts": ["hi"]})
    code, out, err = await grpcurl("-d", body, address, "modelwire.v1.Jobs/Submit")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["created"] is True
    assert answer["job"]["status"] in ("JOB_STATUS_QUEUED", "JOB_STATUS_RUNNING", "JOB_STATUS_SUCCEEDED")


async def test_metadata_over_its_limit_is_refused_on_both_submits(stub: pb_grpc.JobsStub) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"blob": "m" * (8 * 1024)})  # over jobs.max_metadata_bytes (8 KiB by default)
    details = await expect_error(
        stub.Submit(pb.SubmitJobRequest(model="echo", texts=["a"], metadata=metadata), timeout=10),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PAYLOAD_TOO_LARGE",
    )
    assert details["BadRequest"].field_violations[0].field == "$.metadata"
    assert "jobs.max_metadata_bytes" in details["BadRequest"].field_violations[0].description

    async def chunks() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="echo", metadata=metadata), texts=["a"])

    await expect_error(
        stub.SubmitStream(chunks(), timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED, "PAYLOAD_TOO_LARGE"
    )
    assert not (await stub.List(pb.ListJobsRequest(), timeout=10)).jobs
