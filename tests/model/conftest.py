from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import SentimentModel

POSITIVE = [
    "a wonderful, moving film with superb acting",
    "I loved every minute, brilliant and funny",
    "great story, great cast, a delight",
    "beautiful and touching, highly recommended",
    "an excellent, joyful experience",
    "the best movie I have seen this year",
    "charming, clever and warm",
    "fantastic direction and a lovely score",
    "truly great fun for the whole family",
    "smart, witty and wonderful",
]
NEGATIVE = [
    "a dull, boring mess with awful acting",
    "I hated it, a terrible waste of time",
    "bad story, bad cast, a disaster",
    "ugly and tedious, avoid it",
    "an awful, painful experience",
    "the worst movie I have seen this year",
    "stupid, lazy and cold",
    "horrible direction and an annoying score",
    "truly bad, boring for the whole family",
    "dumb, dull and terrible",
]


@pytest.fixture
def tiny_reviews() -> tuple[list[str], list[int]]:
    """A hand-written labelled sample: trains in well under a second."""
    return POSITIVE + NEGATIVE, [1] * len(POSITIVE) + [0] * len(NEGATIVE)


@pytest.fixture
def repository(data_dir: Path) -> ModelRepository:
    """A per-test copy of the repository holding the session's trained ``sentiment/1``."""
    return ModelRepository(data_dir / "models")


@pytest.fixture(scope="module")
def trained_sentiment(trained_data_dir: Path) -> Iterator[SentimentModel]:
    """The real default model (trained once per session), loaded once per module, read-only."""
    model = SentimentModel("sentiment", "1", repository=ModelRepository(trained_data_dir / "models"))
    model.load()
    yield model
    model.unload()
