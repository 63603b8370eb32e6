"""Each kind of shifted traffic moves the monitor meant to catch it past its built-in threshold, while
traffic like the held-out data stays under every one: the monitoring façade fed with the default model's
real answers (its data plane tap's records), computed by ``evaluate`` as its timer would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelwire.core.dataplane import CallRecord
from modelwire.events.bus import LocalEventBus
from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import SentimentModel, _split, load_reviews
from modelwire.monitoring.rules import default_rules
from modelwire.monitoring.service import MonitoringService, Served
from modelwire.observability.metrics import Metrics
from modelwire.settings import Settings
from tests.monitoring.conftest import neutral, shifted

THRESHOLDS = {rule.monitor: rule.threshold for rule in default_rules("sentiment")}
WINDOW = "1000"


@pytest.fixture(scope="module")
def model(trained_data_dir: Path) -> SentimentModel:
    loaded = SentimentModel("sentiment", "1", repository=ModelRepository(trained_data_dir / "models"))
    loaded.load()
    return loaded


@pytest.fixture(scope="module")
def split() -> tuple[list[str], list[int]]:
    texts, labels = load_reviews()
    _, _, x_test, y_test = _split(texts, labels)
    return x_test, y_test


async def monitor(model: SentimentModel, texts: list[str]) -> dict[str, Any]:
    """The monitors' values after ``texts`` went through the model one request each."""
    service = MonitoringService(
        Settings(),
        LocalEventBus(),
        Metrics(),
        served=lambda: [Served("sentiment", "1", ("1",))],
        reference=lambda name, version: model.reference(),
        saturation=lambda: 0.0,
        queue_age=_none,
    )
    now = time.time()
    for text, result in zip(texts, model.predict(texts), strict=True):
        code = "OK"
        service.record(CallRecord("rest", "sentiment", "1", [text], [result], 0.002, code, now))
        now += 0.006  # under the sampling budget (200 a second): every call is sampled

    await service.evaluate(now)
    (entry,) = [m for m in service.snapshot()["models"] if m["model"] == "sentiment"]
    return {name: windows[WINDOW] for name, windows in entry["monitors"].items() if WINDOW in windows}


async def _none() -> None:
    return None


def under_every_threshold(values: dict[str, Any]) -> None:
    for name in ("prediction_drift", "input_drift", "confidence"):
        assert values[name]["value"] is not None, (name, values[name])
        assert values[name]["value"] < THRESHOLDS[name], (name, values[name])


async def test_traffic_like_the_held_out_data_stays_under_every_threshold(
    model: SentimentModel, split: tuple[list[str], list[int]]
) -> None:
    values = await monitor(model, split[0][:1000])
    under_every_threshold(values)
    assert values["error_ratio"]["value"] == 0.0


SHIFTS: dict[str, tuple[str, Callable[[list[str], list[int]], list[str]]]] = {
    "another language": ("input_drift", lambda x, y: shifted(1000)),
    "very long texts": ("input_drift", lambda x, y: [" ".join(x[i : i + 8]) for i in range(1000)]),
    "a one-sided stream": (
        "prediction_drift",
        lambda x, y: [t for t, label in zip(x, y, strict=True) if label][:1000],
    ),
    "texts with no opinion": ("confidence", lambda x, y: neutral(1000)),
}


@pytest.mark.parametrize("shift", sorted(SHIFTS))
async def test_a_shift_crosses_the_threshold_of_its_monitor(
    model: SentimentModel, split: tuple[list[str], list[int]], shift: str
) -> None:
    name, make = SHIFTS[shift]
    values = await monitor(model, make(*split))
    assert values[name]["value"] > THRESHOLDS[name], values[name]


async def test_empty_texts_raise_the_error_ratio(
    model: SentimentModel, split: tuple[list[str], list[int]]
) -> None:
    values = await monitor(model, [" "] * 100 + split[0][:100])
    assert values["error_ratio"]["value"] == 0.5
    assert values["error_ratio"]["value"] > THRESHOLDS["error_ratio"]


async def test_a_silence_stops_the_announcements_not_the_state(model: SentimentModel) -> None:
    service = MonitoringService(
        Settings(
            monitoring={"default_rules": False, "min_samples": 10},
            alerts=[
                {
                    "name": "drift",
                    "monitor": "input_drift",
                    "model": "sentiment",
                    "threshold": 0.25,
                    "window": 50,
                }
            ],
        ),
        LocalEventBus(),
        Metrics(),
        served=lambda: [Served("sentiment", "1", ("1",))],
        reference=lambda name, version: model.reference(),
        saturation=lambda: 0.0,
        queue_age=_none,
    )
    told: list[str] = []
    service.notifiers.append(lambda event: told.append(event.state))
    service.silences.add(
        {"matchers": {"alertname": "drift"}, "duration_s": 3600}, now=time.time(), created_by="t"
    )
    texts = shifted(50)
    now = time.time()
    for text, result in zip(texts, model.predict(texts), strict=True):
        service.record(CallRecord("rest", "sentiment", "1", [text], [result], 0.002, "OK", now))
    announced = await service.evaluate(now + 0.1)
    assert [(e.state, e.silenced) for e in announced] == [("firing", True)]
    assert told == []  # nobody was told
    (alert,) = service.alerts()["alerts"]
    assert (alert["state"], alert["silenced"]) == ("firing", True)


async def test_a_big_batch_is_sampled_as_its_first_items_within_the_budget() -> None:
    """A job's 512-row batch must not sit whole in the buffer: the budget counts items, so the buffer
    holds at most ``max_samples_per_s`` items a second, whatever the batch size."""
    settings = Settings.model_validate({"monitoring": {"max_samples_per_s": 50}})
    service = MonitoringService(
        settings,
        LocalEventBus(),
        Metrics(),
        served=lambda: [Served("sentiment", "1", ("1",))],
        reference=lambda name, version: None,
        saturation=lambda: 0.0,
        queue_age=_none,
    )
    now = float(int(time.time()))
    batch = [f"row {i}" for i in range(512)]
    results = [{"sentiment": "positive", "confidence": 0.9}] * 512
    for _ in range(3):  # one second: 50 items in all, the first call's first 50
        service.record(CallRecord("jobs", "sentiment", "1", batch, results, 0.01, "OK", now))
    sampled = list(service._buffer)
    assert [len(call.instances) for call in sampled] == [50]
    assert list(sampled[0].instances) == batch[:50]
    assert sampled[0].results is not None
    assert len(sampled[0].results) == 50
    service.record(CallRecord("jobs", "sentiment", "1", batch[:3], results[:3], 0.01, "OK", now + 1))
    assert [len(call.instances) for call in service._buffer] == [50, 3]  # a new second, a new budget
