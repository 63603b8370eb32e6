"""Every malformed request gets its status and one JSON error shape; the server keeps serving."""

from __future__ import annotations

import httpx
import pytest


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


JSON = {"content-type": "application/json"}  # untyped bodies are 415 (test_crosssite_server.py)


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        ({"content": b"{not json", "headers": JSON}, 400, "INVALID_ARGUMENT", None),
        ({"content": b"", "headers": JSON}, 400, "INVALID_ARGUMENT", None),
        ({"json": {"text": 3}}, 400, "INVALID_ARGUMENT", "$.text"),
        ({"json": {"texts": ["ok", 5]}}, 400, "INVALID_ARGUMENT", "$.texts[1]"),
        ({"json": {"text": ""}}, 400, "INVALID_ARGUMENT", "$.text"),
        ({"json": {"txt": "typo"}}, 400, "INVALID_ARGUMENT", "$"),
        ({"json": {}}, 400, "INVALID_ARGUMENT", "$"),
        ({"json": {"text": "a", "texts": ["b"]}}, 400, "INVALID_ARGUMENT", "$"),
        ({"json": {"texts": []}}, 400, "INVALID_ARGUMENT", "$.texts"),
        ({"json": {"text": "x" * 70_000}}, 413, "PAYLOAD_TOO_LARGE", None),
        (
            {"content": b"text=hi", "headers": {"content-type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
    ],
)
async def test_bad_predict_requests(
    client: httpx.AsyncClient, kwargs: dict[str, object], status: int, code: str, field: str | None
) -> None:
    response = await client.post("/predict", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    ok = await client.post("/predict", json={"text": "still serving"})
    assert ok.status_code == 200


async def test_text_over_the_character_limit_is_413_with_its_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/echo/predict", json={"texts": ["ok", "y" * 1001]})
    assert response.status_code == 413
    assert error_of(response)["field"] == "$.texts[1]"


async def test_unknown_model_version_and_route_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/v1/models/nope/predict", "/v1/models/sentiment/versions/99/predict"):
        response = await client.post(path, json={"text": "hello"})
        assert response.status_code == 404
        assert error_of(response)["code"] == "NOT_FOUND"
    assert "versions: 1" in str(
        error_of(await client.post("/v1/models/sentiment/versions/99/predict", json={"text": "x"}))["message"]
    )
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "NOT_FOUND"


async def test_not_found_says_which_in_its_reason(client: httpx.AsyncClient) -> None:
    """A client tells an unknown model or version from an unknown route or job without reading the text."""
    for path in ("/v1/models/nope/predict", "/v1/models/sentiment/versions/99/predict"):
        assert error_of(await client.post(path, json={"text": "hello"}))["reason"] == "MODEL_NOT_FOUND"
    assert error_of(await client.get("/v1/jobs/no-such-job"))["reason"] == "JOB_NOT_FOUND"
    assert "reason" not in error_of(await client.get("/no/such/route"))


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/predict")
    assert response.status_code == 405
    assert error_of(response)["code"] == "METHOD_NOT_ALLOWED"


async def test_model_that_raises_is_500_with_error_id_and_no_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.post("/v1/models/broken/predict", json={"text": "boom"})
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "INTERNAL"
    details = error["details"]
    assert isinstance(details, dict)
    error_id = details["error_id"]
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert any(error_id in record.getMessage() for record in caplog.records)


async def test_model_past_the_timeout_is_504(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/slow/predict", json={"text": "zzz"})
    assert response.status_code == 504
    assert error_of(response)["code"] == "DEADLINE_EXCEEDED"
    assert (await client.post("/predict", json={"text": "next one"})).status_code == 200


async def test_batch_with_one_bad_item_answers_the_others(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/echo/predict", json={"texts": ["one", "bad", "three"]})
    assert response.status_code == 200
    first, second, third = response.json()["predictions"]
    assert first == {"echo": "one", "length": 3}
    assert second["error"]["code"] == "INVALID_ARGUMENT"
    assert second["error"]["field"] == "$.texts[1]"
    assert third == {"echo": "three", "length": 5}


async def test_not_ready_is_503_with_retry_after(client: httpx.AsyncClient, services: object) -> None:
    from modelwire.app.services import Services

    assert isinstance(services, Services)
    handle = services.registry.get("echo")
    handle.ready = False
    try:
        response = await client.post("/v1/models/echo/predict", json={"text": "hi"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        ready = await client.get("/v2/health/ready")
        assert ready.status_code == 503
    finally:
        handle.ready = True


async def test_v2_errors_keep_the_protocol_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/models/nope/infer", json={"inputs": []})
    assert response.status_code == 404
    assert isinstance(response.json()["error"], str)
    bad = await client.post(
        "/v2/models/sentiment/infer",
        json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["x"]}]},
    )
    assert bad.status_code == 400
    assert "elements" in bad.json()["error"]
    wrong_type = await client.post(
        "/v2/models/sentiment/infer",
        json={"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
    )
    assert wrong_type.status_code == 400
