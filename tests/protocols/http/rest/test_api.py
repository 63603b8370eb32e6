"""The REST API's happy paths, in-process."""

from __future__ import annotations

from typing import Any

import httpx


async def test_seed_endpoint_answers_the_seed_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", json={"text": "I love this product"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"sentiment", "confidence"}
    assert body["sentiment"] == "positive"
    assert 0.8 < body["confidence"] <= 1.0


async def test_named_model_single_and_batch(client: httpx.AsyncClient) -> None:
    single = await client.post("/v1/models/sentiment/predict", json={"text": "A dreadful, boring film."})
    assert single.json()["sentiment"] == "negative"
    batch = await client.post(
        "/v1/models/sentiment/versions/1/predict",
        json={"texts": ["I love this product", "I hated every minute"]},
    )
    assert [p["sentiment"] for p in batch.json()["predictions"]] == ["positive", "negative"]


async def test_generic_instances(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/echo/predict", json={"instances": ["a", "bb"]})
    assert response.json() == {"predictions": [{"echo": "a", "length": 1}, {"echo": "bb", "length": 2}]}


async def test_models_listing(client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
    assert set(models) == {"sentiment", "echo", "broken", "slow"}
    assert models["sentiment"]["versions"] == [{"version": "1", "ready": True}]
    assert models["sentiment"]["default_version"] == "1"


async def test_open_inference_protocol_json(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2")).json()["name"] == "modelwire"
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/models/sentiment/ready")).status_code == 200
    meta = (await client.get("/v2/models/sentiment/versions/1")).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["sentiment", "confidence"]
    response = await client.post(
        "/v2/models/sentiment/infer",
        json={
            "id": "r1",
            "inputs": [
                {
                    "name": "text",
                    "shape": [2, 1],
                    "datatype": "BYTES",
                    "data": [["I love this product"], ["awful"]],
                }
            ],
        },
    )
    body = response.json()
    assert body["id"] == "r1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["sentiment"]["data"] == ["positive", "negative"]
    assert outputs["confidence"]["datatype"] == "FP32"
    assert outputs["confidence"]["shape"] == [2]


async def test_openapi_document_describes_the_api(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for path in ("/predict", "/v1/models/{name}/predict", "/v2/models/{name}/infer", "/v2/health/ready"):
        assert path in paths
    request_schema = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema == {"$ref": "#/components/schemas/PredictRequest"}
    assert "text" in document["components"]["schemas"]["PredictRequest"]["properties"]
    assert (await client.get("/docs")).status_code == 200


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.post("/predict", json={"text": "count me"})
    text = (await client.get("/metrics")).text
    assert 'modelwire_requests_total{code="OK",model="sentiment",protocol="rest"}' in text
    assert "modelwire_request_duration_seconds_bucket" in text
    assert "modelwire_batch_size_count" in text


async def test_openapi_states_the_bounds_the_server_enforces(client: httpx.AsyncClient) -> None:
    """What a schema-driven client or fuzzer must know: page bounds, exactly one input, the SSE events."""
    document = (await client.get("/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]

    def query(path: str, method: str, name: str) -> dict[str, Any]:
        (param,) = (p for p in paths[path][method]["parameters"] if p["name"] == name and p["in"] == "query")
        schema: dict[str, Any] = param["schema"]
        return schema

    jobs_limit = query("/v1/jobs", "get", "limit")
    assert jobs_limit == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}
    assert query("/v1/jobs/{job_id}/results", "get", "offset")["minimum"] == 0
    assert query("/v1/jobs/{job_id}/results", "get", "limit")["minimum"] == 0

    for name, fields in (
        ("PredictRequest", ["text", "texts", "instance", "instances"]),
        ("PredictStreamRequest", ["texts", "instances"]),
    ):
        schema = schemas[name]
        assert schema["additionalProperties"] is False
        assert (schema["minProperties"], schema["maxProperties"]) == (1, 1)
        assert schema["oneOf"] == [{"required": [field]} for field in fields]
        assert sorted(schema["properties"]) == sorted(fields)
        for batch in ("texts", "instances"):
            assert schema["properties"][batch]["minItems"] == 1, f"{name}.{batch}: an empty batch is refused"

    def events(path: str, method: str) -> dict[str, dict[str, Any]]:
        stream = paths[path][method]["responses"]["200"]["content"]["text/event-stream"]
        assert stream["schema"] == {"type": "string"}
        item = stream["x-itemSchema"]
        kinds = item.get("oneOf") or item["anyOf"]
        return {kind["title"]: kind["properties"] for kind in kinds}

    predict = events("/v1/models/{name}/predict/stream", "post")
    assert sorted(predict) == ["done", "error", "prediction"]
    assert predict["done"]["data"]["contentSchema"]["required"] == ["count", "errors"]
    assert predict["prediction"]["data"]["contentSchema"]["required"] == ["index"]
    item_error = predict["error"]["data"]["contentSchema"]
    assert item_error["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert "ErrorDetail" in schemas
    follow = events("/v1/events", "get")
    assert sorted(follow) == ["bus event", "error", "reset"]
    assert follow["bus event"]["data"]["contentSchema"]["required"] == ["id", "topic", "type", "time", "data"]
    assert follow["bus event"]["id"]["pattern"] == "^[0-9]+$"
