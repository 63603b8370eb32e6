"""``GET /v1/monitoring``, ``GET /v1/alerts`` and silences over REST on a real server, with authentication on:
who may read and who may silence, the errors a person can act on, a silence's expiry."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def keys(serve_module: ServeModule) -> tuple[ThreadedServer, dict[str, str]]:
    data_dir = serve_module.data_dir()
    store = KeyStore(data_dir / "keys.json")
    tokens = {
        "admin": store.create([Scope.MODELS_ADMIN, Scope.EVENTS])[0],
        "events": store.create([Scope.EVENTS])[0],
        "predict": store.create([Scope.PREDICT])[0],
    }
    server = serve_module(data_dir=data_dir, auth={"mode": "on"}, monitoring={"interval_s": 0.2})
    return server, tokens


def client(server: ThreadedServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, headers={"Authorization": f"Bearer {token}"})


def test_monitoring_shows_the_reference_and_the_default_rules(keys: Any) -> None:
    server, tokens = keys
    deadline = time.monotonic() + 30
    with client(server, tokens["events"]) as c:
        while (body := c.get("/v1/monitoring").json())["evaluations"] < 1:  # the first round (0.2 s)
            assert time.monotonic() < deadline, "the monitors never ran"
            time.sleep(0.05)
    assert body["enabled"] is True
    names = {rule["name"] for rule in body["rules"]}
    assert {"sentiment-prediction-drift", "sentiment-input-drift", "sentiment-latency-p99"} <= names
    (model,) = [m for m in body["models"] if m["model"] == "sentiment"]
    assert model["reference"]["status"].startswith("saved with the version")
    assert "vocabulary" not in model["reference"]["profile"]
    assert model["monitors"]["input_drift"]["1000"] == {
        "value": None,
        "samples": 0,
        "reason": "fewer than 100 samples",
    }


def test_reading_needs_events_and_silencing_needs_models_admin(keys: Any) -> None:
    server, tokens = keys
    with client(server, tokens["predict"]) as c:
        assert c.get("/v1/alerts").status_code == 403
        assert c.get("/v1/monitoring").status_code == 403
    with client(server, tokens["events"]) as c:
        assert c.get("/v1/alerts").status_code == 200
        refused = c.post("/v1/alerts/silences", json={"matchers": {"model": "sentiment"}, "duration_s": 60})
        assert refused.status_code == 403
        assert "models:admin" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration_s": 60}, "$.matchers"),
        ({"matchers": {}, "duration_s": 60}, "$.matchers"),
        ({"matchers": {"model": 3}, "duration_s": 60}, "$.matchers.model"),
        ({"matchers": {"model": "x"}}, "$.duration_s"),
        ({"matchers": {"model": "x"}, "duration_s": -1}, "$.duration_s"),
        ({"matchers": {"model": "x"}, "ends_at": "tomorrow"}, "$.ends_at"),
        ({"matchers": {"model": "x"}, "ends_at": "2030-01-01T00:00:00"}, "$.ends_at"),
    ],
)
def test_a_bad_silence_is_400_naming_the_field(keys: Any, body: dict[str, Any], field: str) -> None:
    server, tokens = keys
    with client(server, tokens["admin"]) as c:
        response = c.post("/v1/alerts/silences", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_a_silence_is_listed_until_deleted_then_404(keys: Any) -> None:
    server, tokens = keys
    with client(server, tokens["admin"]) as c:
        created = c.post(
            "/v1/alerts/silences",
            json={
                "matchers": {"alertname": "sentiment-input-drift"},
                "duration_s": 3600,
                "comment": "retraining",
            },
        )
        assert created.status_code == 201
        silence = created.json()
        assert silence["state"] == "active"
        assert silence["created_by"].startswith("key:")
        listed = c.get("/v1/alerts").json()["silences"]
        assert [s["id"] for s in listed] == [silence["id"]]
        assert c.delete(f"/v1/alerts/silences/{silence['id']}").status_code == 204
        assert c.get("/v1/alerts").json()["silences"] == []
        missing = c.delete(f"/v1/alerts/silences/{silence['id']}")
        assert missing.status_code == 404
        assert "no silence" in missing.json()["error"]["message"]


def test_a_silence_expires() -> None:
    from modelwire.monitoring.silences import Silences

    silences = Silences(10)
    silence = silences.add({"matchers": {"model": "m"}, "duration_s": 5}, now=100.0, created_by="t")
    assert silences.silenced({"model": "m", "monitor": "x"}, 104.9)
    assert not silences.silenced({"model": "other"}, 104.9)
    assert not silences.silenced({"model": "m"}, 105.0)
    assert silences.active(105.0) == []
    assert silence.to_json(105.0)["state"] == "expired"


def test_job_queue_age_is_the_oldest_queued_jobs_wait(serve_module: ServeModule) -> None:
    server = serve_module(jobs={"workers": 0}, monitoring={"interval_s": 0.2})  # jobs stay queued
    with httpx.Client(base_url=server.http_url) as c:
        assert c.post("/v1/jobs", json={"model": "sentiment", "inputs": ["a fine film"]}).status_code == 202
        deadline = time.monotonic() + 30
        while True:
            (process,) = [m for m in c.get("/v1/monitoring").json()["models"] if m["model"] == "*"] or [None]
            age = process["monitors"]["job_queue_age"]["value"] if process else None
            if age is not None:
                break
            assert time.monotonic() < deadline, "job_queue_age never showed the queued job"
            time.sleep(0.05)
    assert age >= 0
    assert process["monitors"]["saturation"]["value"] >= 0
