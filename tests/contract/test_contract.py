"""Behaviour every transport shares: the same predictions, batching, and error mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.contract.conftest import Deployment, Driver, Failure
from tests.models import EchoModel

TEXTS = [
    "I love this product",
    "An awful, boring film.",
    "Absolutely wonderful acting",
    "I want my money back",
]
EXPECTED = ["positive", "negative", "positive", "negative"]


async def test_same_predictions(driver: Driver) -> None:
    answers = [await driver.predict(text) for text in TEXTS]
    assert [a["sentiment"] for a in answers] == EXPECTED
    assert all(0.5 <= a["confidence"] <= 1.0 for a in answers)
    assert answers[0]["confidence"] > 0.8


async def test_explicit_version_and_generic_output(driver: Driver) -> None:
    assert (await driver.predict("I love this product", version="1"))["sentiment"] == "positive"
    assert await driver.predict("hello", model="echo") == {"echo": "hello", "length": 5}


async def test_concurrent_requests_share_predict_calls(driver: Driver, live: Deployment) -> None:
    echo = live.models.registry.get("echo").model
    assert isinstance(echo, EchoModel)
    echo.calls.clear()
    words = [f"word-{i}" for i in range(40)]
    answers = await asyncio.gather(*(driver.predict(w, model="echo") for w in words))
    assert [a["echo"] for a in answers] == words  # each caller got its own answer
    seen = sorted(item for call in echo.calls for item in call)
    assert seen == sorted(words)
    assert len(echo.calls) < len(words)
    assert max(len(call) for call in echo.calls) > 1


@pytest.mark.parametrize(
    ("model", "text", "code"),
    [
        ("nope", "hello", "NOT_FOUND"),
        ("sentiment", "", "INVALID_ARGUMENT"),
        ("echo", "bad", "INVALID_ARGUMENT"),
        ("sentiment", "x" * 2001, "PAYLOAD_TOO_LARGE"),
        ("broken", "boom", "INTERNAL"),
        ("slow", "zzz", "DEADLINE_EXCEEDED"),
    ],
)
async def test_error_mapping(driver: Driver, model: str, text: str, code: str) -> None:
    with pytest.raises(Failure) as failure:
        await driver.predict(text, model=model)
    assert failure.value.code == code
    assert failure.value.message
    assert "secret" not in failure.value.message  # ErrorModel's exception text never leaks
    if code == "INTERNAL":
        assert failure.value.error_id  # the id the server logged with the traceback
    # ... and the server keeps serving
    assert (await driver.predict("I love this product"))["sentiment"] == "positive"


async def test_unknown_version(driver: Driver) -> None:
    with pytest.raises(Failure) as failure:
        await driver.predict("hi", version="42")
    assert failure.value.code == "NOT_FOUND"
    assert "42" in failure.value.message


# -- the same answers through a gateway (its remote model validates nothing: the model service's model does)


async def _post(live: Deployment, body: dict[str, Any], model: str = "sentiment") -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.http_port}", timeout=10) as client:
        return await client.post(f"/v1/models/{model}/predict", json=body)


async def test_a_non_text_instance_is_the_models_own_error(live: Deployment) -> None:
    response = await _post(live, {"instance": 5})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error == {
        "code": "INVALID_ARGUMENT",
        "message": "text must be a string, not int",
        "field": "$.instance",
    }


@pytest.mark.parametrize(
    ("instances", "bad", "kind"),
    [(["I love this product", None], 1, "NoneType"), ([{"a": 1}, "I love this product"], 0, "dict")],
)
async def test_one_bad_item_fails_alone(live: Deployment, instances: list[Any], bad: int, kind: str) -> None:
    response = await _post(live, {"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert predictions[bad] == {
        "error": {
            "code": "INVALID_ARGUMENT",
            "message": f"text must be a string, not {kind}",
            "field": f"$.instances[{bad}]",
        }
    }
    assert predictions[1 - bad]["sentiment"] == "positive"


async def test_confidences_are_the_models_own_floats(live: Deployment) -> None:
    model = live.models.registry.get("sentiment").model
    expected = model.predict(TEXTS)  # what the model computes, in this process
    for body in ({"texts": TEXTS}, {"instances": [*TEXTS, 7]}):
        response = await _post(live, body)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][: len(TEXTS)] == expected
    answers = [(await _post(live, {"text": text})).json() for text in TEXTS]
    assert answers == expected


async def test_instances_reach_the_model_unchanged(live: Deployment) -> None:
    values = [1, 2.5, True, None, [1, [2, "x"]], {"k": [1.25, -3]}, "text"]
    response = await _post(live, {"instances": values}, model="identity")
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"value": v, "type": type(v).__name__} for v in values]
