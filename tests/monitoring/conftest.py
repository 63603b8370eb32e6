"""Traffic for the monitors: texts like the default model's held-out data, and shifted texts."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from modelwire.model.sentiment import _split, load_reviews

FRENCH = (
    "Ce film était vraiment magnifique, les acteurs jouent très bien et l'histoire est touchante.",
    "Quelle déception, le scénario est lent et les dialogues sont d'une platitude incroyable.",
    "Une mise en scène audacieuse, une photographie superbe, mais une fin un peu bâclée.",
    "Je me suis ennuyé du début à la fin, malgré une bande originale plutôt réussie.",
    "Les personnages manquent de profondeur et l'intrigue devient vite prévisible.",
    "Un chef-d'œuvre du cinéma français, à voir absolument en salle avec des amis.",
)


@pytest.fixture(scope="session")
def held_out() -> list[str]:
    """Reviews from the held-out split the default model's reference profile describes."""
    texts, labels = load_reviews()
    return _split(texts, labels)[2]


def shifted(n: int, seed: int = 7) -> list[str]:
    """Texts in another language: out of the training vocabulary, other words, other lengths."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(FRENCH, k=rng.randint(1, 3))) for _ in range(n)]


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` (a server-side effect) until it holds, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


_FACTS = (
    "The film was released in {y} and runs {n} minutes.",
    "It was shot in {c} over {n} days in {y}.",
    "The cast includes actors from {c}.",
    "The screenplay is based on a novel published in {y}.",
    "Tickets cost {n} dollars at the cinema in {c}.",
    "The premiere took place in {c} on a Tuesday.",
)
_PLACES = ("Paris", "Ohio", "Lagos", "Osaka", "Lima", "Oslo", "Texas", "Rome")


def neutral(n: int, seed: int = 3) -> list[str]:
    """Facts about films with no opinion in them: the model answers them with little confidence."""
    rng = random.Random(seed)
    return [
        " ".join(
            rng.choice(_FACTS).format(y=rng.randint(1950, 2020), n=rng.randint(2, 200), c=rng.choice(_PLACES))
            for _ in range(2)
        )
        for _ in range(n)
    ]
