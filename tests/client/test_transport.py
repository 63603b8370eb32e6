"""Choosing a wire by URL, and the typed results."""

from __future__ import annotations

import pytest

from modelwire import AsyncClient, Client, ConfigurationError, ModelSummary, Prediction
from modelwire.client.transport import parse_url


@pytest.mark.parametrize(
    ("url", "protocol"),
    [
        ("http://127.0.0.1:8000", "rest"),
        ("https://models.example.com", "rest"),
        ("HTTP://127.0.0.1:8000/", "rest"),
        ("grpc://127.0.0.1:8001", "grpc"),
        ("grpcs://models.example.com", "grpc"),
    ],
)
def test_the_scheme_picks_the_wire(url: str, protocol: str) -> None:
    assert AsyncClient(url).protocol == protocol
    assert Client(url).protocol == protocol  # no thread is started before the first call


@pytest.mark.parametrize(
    "url", ["ftp://host", "127.0.0.1:8000", "http://", "grpc://:8001", "http://host:notaport", "ws://host"]
)
def test_unusable_urls_fail_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError):
        AsyncClient(url)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        AsyncClient(timeout=0)
    assert AsyncClient(timeout=None).url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("grpc://127.0.0.1:9001", "127.0.0.1:9001"),
        ("grpc://localhost", "localhost:8001"),
        ("grpcs://models.example.com", "models.example.com:443"),
        ("grpc://[::1]:9001", "[::1]:9001"),
    ],
)
def test_grpc_target(url: str, target: str) -> None:
    assert parse_url(url, timeout=1).target == target


def test_prediction_from_the_seed_shape() -> None:
    prediction = Prediction.from_output({"sentiment": "negative", "confidence": 1})
    assert prediction == Prediction("negative", 1.0, {"sentiment": "negative", "confidence": 1})
    assert isinstance(prediction.confidence, float)
    with pytest.raises(AttributeError):
        prediction.sentiment = "positive"  # type: ignore[misc]


def test_prediction_of_another_model() -> None:
    prediction = Prediction.from_output({"label": 3, "confidence": "high"})
    assert (prediction.sentiment, prediction.confidence) == (None, None)
    assert prediction.to_dict() == {"label": 3, "confidence": "high"}


def test_model_summary() -> None:
    summary = ModelSummary.from_dict(
        {
            "name": "sentiment",
            "default_version": "2",
            "versions": [{"version": "1", "ready": True}, {"version": "2", "ready": False}],
            "platform": "scikit-learn",
        }
    )
    assert summary.default_version == "2"
    assert [v.version for v in summary.versions] == ["1", "2"]
    assert not summary.ready
