"""Behaviour every transport shares: the same predictions, batching, and error mapping."""

from __future__ import annotations

import asyncio

import pytest

from modelwire.app.lifecycle import Server
from tests.contract.conftest import Driver, Failure
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


async def test_concurrent_requests_share_predict_calls(driver: Driver, live: Server) -> None:
    assert live.services is not None
    echo = live.services.registry.get("echo").model
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
