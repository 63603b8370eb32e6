"""``/v1/jobs`` on a real server (127.0.0.1, port 0), with httpx: uploads, idempotency, results, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.events.bus import LocalEventBus, event_size
from modelwire.settings import EventsSettings, JobsSettings, LimitsSettings, Settings
from tests.models import EchoModel, SlowModel

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
async def start(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[..., Any]]:
    servers: list[Server] = []

    async def make(**jobs: Any) -> httpx.AsyncClient:
        values: dict[str, Any] = {"lease_s": 5.0, "webhook_allow": ("127.0.0.1",), **jobs}
        settings = make_settings(
            jobs=JobsSettings(**values), limits=LimitsSettings(max_body_bytes=64 * 1024, shutdown_grace_s=2)
        )
        services = make_services(EchoModel(), SlowModel("slow", delay_s=0.2), settings=settings)
        server = Server(settings, services=services)
        await server.start()
        servers.append(server)
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60)

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def client(start: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with await start() as client:
        yield client


async def wait(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in FINAL:
            return job
        await asyncio.sleep(0.05)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in response.content.splitlines()]


async def test_submit_poll_and_read_results(client: httpx.AsyncClient) -> None:
    inputs = ["good", "bad", 7, *[f"t{i}" for i in range(20)]]
    response = await client.post(
        "/v1/jobs", json={"model": "echo", "inputs": inputs, "metadata": {"who": "me"}}
    )
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert int(response.headers["retry-after"]) >= 1
    assert job["status"] == "queued"
    assert job["progress"] == {"done": 0, "total": 23, "errors": 0}
    done = await wait(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["progress"]["errors"] == 2
    assert done["metadata"] == {"who": "me"}
    results = await client.get(f"/v1/jobs/{job['id']}/results")
    assert results.headers["content-type"].startswith("application/x-ndjson")
    rows = lines(results)
    assert [r["index"] for r in rows] == list(range(23))
    assert rows[0] == {"index": 0, "echo": "good", "length": 4}
    assert rows[1]["error"]["code"] == "INVALID_ARGUMENT"
    assert rows[2]["error"]["code"] == "INVALID_ARGUMENT"
    page = (await client.get(f"/v1/jobs/{job['id']}/results?format=json&offset=20&limit=2")).json()
    assert [r["index"] for r in page["results"]] == [20, 21]
    assert (page["offset"], page["limit"], page["total"], page["next_offset"]) == (20, 2, 23, 22)
    last = (await client.get(f"/v1/jobs/{job['id']}/results?format=json&offset=22")).json()
    assert last["next_offset"] is None
    assert [r["index"] for r in last["results"]] == [22]
    part = lines(await client.get(f"/v1/jobs/{job['id']}/results?offset=3&limit=2"))
    assert [r["echo"] for r in part] == ["t0", "t1"]


async def test_uploads_ndjson_csv_and_multipart(client: httpx.AsyncClient) -> None:
    ndjson = b'"one"\n{"not": "text"}\nnot json at all\n"two"\n'
    csv = b'id,text\n1,"three, with comma"\n2,"four\nlines"\n'
    uploads = [
        ("/v1/jobs?model=echo", {"content": ndjson, "headers": {"content-type": "application/x-ndjson"}}),
        ("/v1/jobs?model=echo", {"content": csv, "headers": {"content-type": "text/csv"}}),
        ("/v1/jobs?model=echo", {"files": {"file": ("rows.csv", csv, "text/csv")}}),
    ]
    got = []
    for url, kwargs in uploads:
        response = await client.post(url, **kwargs)
        assert response.status_code == 202, response.text
        job = await wait(client, response.json()["id"])
        got.append(
            [
                r.get("echo", r.get("error", {}).get("code"))
                for r in lines(await client.get(f"/v1/jobs/{job['id']}/results"))
            ]
        )
    assert got[0][0] == "one"
    assert got[0][1:3] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]  # an object, and a line that is not JSON
    assert got[0][3] == "two"
    assert got[1] == got[2] == ["three, with comma", "four\nlines"]


async def test_idempotency_key(client: httpx.AsyncClient) -> None:
    body = {"model": "echo", "inputs": ["a", "b"]}
    headers = {"Idempotency-Key": "order-17"}
    first = await client.post("/v1/jobs", json=body, headers=headers)
    again = await client.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a", "c"]}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "ALREADY_EXISTS"
    upload = {"content": b'"a"\n"b"\n', "headers": {**headers, "content-type": "application/x-ndjson"}}
    assert (await client.post("/v1/jobs?model=echo", **upload)).json()["id"] == first.json()["id"]
    assert len((await client.get("/v1/jobs")).json()["jobs"]) == 1


async def test_submit_errors(start: Callable[..., Any]) -> None:
    async with await start(max_upload_bytes=4096, workers=0, max_queue_depth=2) as client:

        async def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
            assert response.status_code == status, response.text
            body: dict[str, Any] = response.json()["error"]
            assert body["code"] == code
            return body

        await error(await client.post("/v1/jobs", json={"model": "nope", "inputs": ["a"]}), 404, "NOT_FOUND")
        ndjson = {"content": b'"a"\n', "headers": {"content-type": "application/x-ndjson"}}
        await error(await client.post("/v1/jobs?model=nope", **ndjson), 404, "NOT_FOUND")
        await error(await client.post("/v1/jobs", **ndjson), 400, "INVALID_ARGUMENT")  # no ?model=
        bad = {"model": "echo", "inputs": ["a"], "callback_url": "http://169.254.169.254/latest"}
        body = await error(await client.post("/v1/jobs", json=bad), 400, "INVALID_ARGUMENT")
        assert body["field"] == "$.callback_url"
        plain = {"content": b"a\n", "headers": {"content-type": "text/plain"}}
        await error(await client.post("/v1/jobs?model=echo", **plain), 415, "UNSUPPORTED_MEDIA_TYPE")
        await error(
            await client.post("/v1/jobs", json={"model": "echo", "inputs": []}), 400, "INVALID_ARGUMENT"
        )
        await error(await client.post("/v1/jobs", json={"model": "echo"}), 400, "INVALID_ARGUMENT")

        async def big() -> AsyncIterator[bytes]:  # streamed, no Content-Length: refused mid-stream
            for i in range(100):
                yield b'"%d a row of some length to pass the limit"\n' % i

        over = await client.post(
            "/v1/jobs?model=echo", content=big(), headers={"content-type": "application/x-ndjson"}
        )
        await error(over, 413, "PAYLOAD_TOO_LARGE")
        declared = {"content": b'"x"\n' * 2000, "headers": {"content-type": "application/x-ndjson"}}
        await error(await client.post("/v1/jobs?model=echo", **declared), 413, "PAYLOAD_TOO_LARGE")
        huge_json = {"model": "echo", "inputs": ["x" * 1000] * 100}
        await error(await client.post("/v1/jobs", json=huge_json), 413, "PAYLOAD_TOO_LARGE")
        assert (await client.get("/v1/jobs")).json()["jobs"] == []  # nothing half-stored

        for _ in range(2):
            assert (await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a"]})).status_code == 202
        full = await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a"]})
        await error(full, 503, "UNAVAILABLE")
        assert int(full.headers["retry-after"]) >= 1


async def test_unknown_jobs_cancel_retry_and_list(client: httpx.AsyncClient) -> None:
    for method, url in [
        ("GET", "/v1/jobs/nope"),
        ("DELETE", "/v1/jobs/nope"),
        ("GET", "/v1/jobs/nope/results"),
        ("GET", "/v1/jobs/nope/results?format=json"),
        ("POST", "/v1/jobs/nope/retry"),
    ]:
        response = await client.request(method, url)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"]["code"] == "NOT_FOUND"
    slow = (await client.post("/v1/jobs", json={"model": "slow", "inputs": ["x"] * 50})).json()
    quick = (await client.post("/v1/jobs", json={"model": "echo", "inputs": ["x"]})).json()
    cancelled = await client.delete(f"/v1/jobs/{slow['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.delete(f"/v1/jobs/{slow['id']}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "FAILED_PRECONDITION"
    await wait(client, quick["id"])
    assert (await client.post(f"/v1/jobs/{quick['id']}/retry")).status_code == 409
    listed = (await client.get("/v1/jobs?limit=1")).json()
    assert [j["id"] for j in listed["jobs"]] == [quick["id"]]
    rest = (await client.get(f"/v1/jobs?limit=1&cursor={listed['next_cursor']}")).json()
    assert [j["id"] for j in rest["jobs"]] == [slow["id"]]
    assert rest["next_cursor"] is None
    only = (await client.get("/v1/jobs?status=cancelled")).json()["jobs"]
    assert [j["id"] for j in only] == [slow["id"]]
    for query in ("status=paused", "limit=0", "limit=abc"):
        assert (await client.get(f"/v1/jobs?{query}")).status_code == 400
    assert (await client.get(f"/v1/jobs/{quick['id']}/results?format=xml")).status_code == 400
    assert (await client.get(f"/v1/jobs/{quick['id']}/results?format=json&limit=10001")).status_code == 400


async def test_training_job_then_predict_with_the_new_version(client: httpx.AsyncClient) -> None:
    from modelwire.model.sentiment import load_reviews

    texts, labels = load_reviews()
    step = len(texts) // 400
    body = {"texts": [t[:120] for t in texts[::step][:400]], "labels": labels[::step][:400]}
    response = await client.post("/v1/models/sentiment/train", json=body)
    assert response.status_code == 202, response.text
    job = await wait(client, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["kind"] == "train"
    version = job["result"]["version"]
    assert 0 <= job["result"]["accuracy"] <= 1
    predicted = await client.post(
        f"/v1/models/sentiment/versions/{version}/predict", json={"text": "I loved it"}
    )
    assert predicted.status_code == 200
    assert predicted.json()["sentiment"] in ("positive", "negative")
    csv = b"text,label\ngreat,1\nawful,0\n"
    upload = await client.post(
        "/v1/models/sentiment/train", content=csv, headers={"content-type": "text/csv"}
    )
    assert upload.status_code == 202
    mismatch = await client.post("/v1/models/sentiment/train", json={"texts": ["a", "b"], "labels": [1]})
    assert mismatch.status_code == 400
    assert (await client.post("/v1/models/nope/train", json=body)).status_code == 404
    assert (await client.post("/v1/models/echo/train", json=body)).status_code == 400


async def test_the_jobs_api_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    submit = paths["/v1/jobs"]["post"]
    assert set(submit["requestBody"]["content"]) >= {
        "application/json",
        "application/x-ndjson",
        "text/csv",
        "multipart/form-data",
    }
    assert {"202", "200", "404", "413", "415", "422", "503"} <= set(submit["responses"])
    assert "409" in paths["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert "application/x-ndjson" in paths["/v1/jobs/{job_id}/results"]["get"]["responses"]["200"]["content"]
    assert "post" in paths["/v1/models/{name}/train"]
    schemas = document["components"]["schemas"]
    assert {"JobState", "JobSubmit", "JobList", "TrainSubmit", "JobResultsPage"} <= set(schemas)
    statuses = set(schemas["JobState"]["properties"]["status"]["enum"])
    assert statuses == {"queued", "running", "succeeded", "failed", "cancelled"}


async def test_a_client_that_hangs_up_mid_upload_leaves_nothing_stored(
    start: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    import sqlite3

    async with await start() as client:
        port = int(str(client.base_url).rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rows = b'"a row"\n' * 20_000
        head = (
            "POST /v1/jobs?model=echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(rows) * 2}\r\n\r\n"
        )
        writer.write(head.encode() + rows)  # half the promised body, then hang up
        await writer.drain()
        database = make_settings().data_dir / "jobs.sqlite3"

        def staged() -> int:
            with sqlite3.connect(database) as db:
                return int(db.execute("SELECT COUNT(*) FROM inputs").fetchone()[0])

        while staged() == 0:  # the server is storing the rows as they arrive
            await asyncio.sleep(0.02)
        writer.close()
        async with asyncio.timeout(30):
            while staged() or (await client.get("/v1/jobs")).json()["jobs"]:
                await asyncio.sleep(0.05)
        del reader


async def test_metadata_over_its_limit_is_refused_with_413(start: Callable[..., Any]) -> None:
    async with await start(max_metadata_bytes=1024) as client:
        big = {"note": "m" * 1024}
        for response in (
            await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a"], "metadata": big}),
            await client.post(
                "/v1/jobs",
                params={"model": "echo", "metadata": msgspec.json.encode(big).decode()},
                content=b'"a"\n',
                headers={"content-type": "application/x-ndjson"},
            ),
        ):
            assert response.status_code == 413, response.text
            error = response.json()["error"]
            assert (error["code"], error["field"]) == ("PAYLOAD_TOO_LARGE", "$.metadata")
            assert "jobs.max_metadata_bytes" in error["message"]
            assert error["details"] == {"size": 1035, "limit": 1024}
        assert (await client.get("/v1/jobs")).json()["jobs"] == []  # nothing stored
        fits = {"note": "m" * 1000}
        accepted = await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a"], "metadata": fits})
        assert accepted.status_code == 202
        assert (await wait(client, accepted.json()["id"]))["metadata"] == fits


async def test_job_events_leave_metadata_out_and_the_replay_ring_stays_within_its_bytes(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> None:
    budget = 32 * 1024
    settings = make_settings(
        jobs=JobsSettings(lease_s=5.0, max_metadata_bytes=16 * 1024),
        events=EventsSettings(replay_size=100_000, replay_max_bytes=budget),
    )
    server = Server(settings, services=make_services(EchoModel(), settings=settings))
    await server.start()
    try:
        assert server.services is not None
        bus = server.services.events
        assert isinstance(bus, LocalEventBus)
        live = bus.subscribe(["jobs/*"], queue_size=10_000)  # sees every event, to know their ids
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60) as client:
            ids = []
            for n in range(40):  # 40 jobs with 15 KiB metadata each: 600 KiB if events carried it
                body = {"model": "echo", "inputs": ["a", "b"], "metadata": {"n": n, "blob": "m" * 15_000}}
                response = await client.post("/v1/jobs", json=body)
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            for job_id in ids:
                assert (await wait(client, job_id))["status"] == "succeeded"
        assert 0 < bus.replay_bytes <= budget
        seen = []
        while (event := live.get_nowait()) is not None:
            seen.append(event)
        live.close()
        assert all("metadata" not in event.data for event in seen)
        # small events: the ring still holds every event of the last 10 jobs (each: queued .. succeeded)
        since = min(e.id for e in seen if e.type == "job.queued" and e.data["id"] in ids[-10:]) - 1
        async with bus.subscribe(["jobs/*"], last_event_id=since) as sub:
            assert not sub.reset, "the replay ring no longer holds the last 10 jobs' events"
            replayed = []
            while (event := sub.get_nowait()) is not None:
                replayed.append(event)
        assert sum(event_size(event) for event in replayed) <= budget
        assert {event.data["id"] for event in replayed if event.type == "job.succeeded"} >= set(ids[-10:])
    finally:
        await server.stop()


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "٣", "9" * 40])
async def test_a_cursor_this_server_did_not_give_is_a_400(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", "cursor")
    assert (await client.get("/v1/jobs", params={"cursor": "12"})).status_code == 200


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "٣", "²", " 5"])
@pytest.mark.parametrize(
    ("path", "name"),
    [("/v1/jobs", "limit"), ("/v1/jobs/{id}/results", "offset"), ("/v1/jobs/{id}/results", "limit")],
)
async def test_a_page_parameter_that_is_not_a_whole_number_is_a_400(
    client: httpx.AsyncClient, path: str, name: str, value: str
) -> None:
    """Present but empty, or digits Python reads and ASCII does not, is malformed (schemathesis found
    ``?limit=`` answered as if absent), never a default and never a 500."""
    # the parameters are read before the job is looked up: no job needs to exist
    response = await client.get(path.format(id="no-such-job"), params={name: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", name)
