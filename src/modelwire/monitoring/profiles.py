"""Reference profiles: what a model version's held-out data looked like, saved beside its artifact.

A profile (``profile.json`` in ``<repository>/<model>/<version>/``) is what the drift monitors compare the
live traffic with. For a text model it holds, over the held-out split the version was measured on:

- ``labels``: the share of each predicted label, and ``confidence``: the confidence histogram, mean and
  quantiles (the prediction side);
- ``inputs``: per text the token count (``length``) and the share of tokens outside the training
  vocabulary (``oov_rate``), each as decile bins plus 201 quantiles (for the KS test), and the mass of the
  tokens over ``HASH_BUCKETS`` hashed buckets (``hashed``), a cheap fingerprint of which words are used;
- ``vocabulary``: the ``VOCABULARY_SIZE`` most frequent training tokens, so the live out-of-vocabulary rate
  is measured against the same words.

Pure functions: computing a profile reads no file; ``model/`` writes and reads it with the artifact.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelwire.monitoring.statistics import bin_proportions, quantile_edges

__all__ = [
    "FORMAT",
    "HASH_BUCKETS",
    "PROFILE_FILE",
    "Prediction",
    "ReferenceProfile",
    "TextStatistics",
    "build_text_profile",
    "hashed_mass",
    "text_item",
    "text_statistics",
]

FORMAT = "modelwire-profile/1"
PROFILE_FILE = "profile.json"
TOKEN = re.compile(r"(?u)\b\w\w+\b")  # the default model's tokens (model/text_classifier.py)
HASH_BUCKETS = 32
VOCABULARY_SIZE = 20_000
QUANTILES = 201
CACHE_TOKENS = 200_000
CONFIDENCE_EDGES = [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]

Prediction = tuple[str, float]
"""``(label, confidence)`` of one prediction."""


@dataclass(frozen=True, slots=True)
class TextStatistics:
    """Per-text token counts and out-of-vocabulary rates, and the token mass per hashed bucket."""

    lengths: np.ndarray[Any, Any]
    oov_rates: np.ndarray[Any, Any]
    hashed: np.ndarray[Any, Any]


def text_item(
    text: str, vocabulary: frozenset[str], cache: dict[str, tuple[int, bool]]
) -> tuple[int, float, bytes]:
    """One text's ``(token count, out-of-vocabulary rate, the hashed bucket of each token)``; a text
    without tokens has an out-of-vocabulary rate of 1. ``cache`` (token to its bucket and whether it is
    known, for one vocabulary; at most ``CACHE_TOKENS``) saves hashing the same words again."""
    tokens = TOKEN.findall(text.lower())
    if not tokens:
        return 0, 1.0, b""
    buckets = bytearray()
    unknown = 0
    get = cache.get
    for token in tokens:
        entry = get(token)
        if entry is None:
            if len(cache) >= CACHE_TOKENS:
                cache.clear()
            entry = cache[token] = (zlib.crc32(token.encode()) % HASH_BUCKETS, token in vocabulary)
        buckets.append(entry[0])
        unknown += not entry[1]
    return len(tokens), unknown / len(tokens), bytes(buckets)


def hashed_mass(buckets: Iterable[bytes]) -> np.ndarray[Any, Any]:
    """The token count per hashed bucket, from ``text_item``'s bucket bytes."""
    joined = np.frombuffer(b"".join(buckets), dtype=np.uint8)
    return np.bincount(joined, minlength=HASH_BUCKETS).astype(np.float64)


def text_statistics(
    texts: Iterable[str], vocabulary: frozenset[str], cache: dict[str, tuple[int, bool]] | None = None
) -> TextStatistics:
    """The input statistics of many ``texts`` (``text_item`` of each, the hashed mass summed)."""
    seen: dict[str, tuple[int, bool]] = {} if cache is None else cache
    items = [text_item(text, vocabulary, seen) for text in texts]
    return TextStatistics(
        np.asarray([i[0] for i in items], dtype=np.float64),
        np.asarray([i[1] for i in items], dtype=np.float64),
        hashed_mass(i[2] for i in items),
    )


def _distribution(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    edges = quantile_edges(values)
    quantiles = np.quantile(values, np.linspace(0, 1, QUANTILES)) if len(values) else np.zeros(0)
    return {
        "edges": edges,
        "proportions": bin_proportions(values, edges),
        "mean": float(values.mean()) if len(values) else 0.0,
        "quantiles": [round(float(q), 6) for q in quantiles],
    }


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """A loaded profile (``to_json`` / ``from_json`` round-trip the file's content)."""

    data: Mapping[str, Any]

    @property
    def n(self) -> int:
        return int(self.data.get("n", 0))

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.data.get("vocabulary", ()))

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/monitoring`` shows of it: everything but the vocabulary and the quantiles."""
        out = {k: v for k, v in self.data.items() if k != "vocabulary"}
        out["vocabulary_size"] = len(self.data.get("vocabulary", ()))
        out["inputs"] = {
            name: {k: v for k, v in stats.items() if k != "quantiles"}
            for name, stats in self.data.get("inputs", {}).items()
        }
        out["confidence"] = {k: v for k, v in self.data.get("confidence", {}).items() if k != "quantiles"}
        return out

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)

    @classmethod
    def from_json(cls, raw: Any) -> ReferenceProfile:
        if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} profile")
        for key in ("labels", "confidence", "inputs", "n"):
            if key not in raw:
                raise ValueError(f"the profile has no {key!r}")
        return cls(raw)


def build_text_profile(
    texts: Sequence[str],
    predictions: Sequence[Prediction],
    training_texts: Iterable[str],
    *,
    source: str,
    output: Mapping[str, str] | None = None,
) -> ReferenceProfile:
    """The profile of a text model from its held-out ``texts`` and their ``predictions``; the vocabulary
    is the most frequent tokens of ``training_texts``."""
    if len(texts) != len(predictions) or not texts:
        raise ValueError("a profile needs held-out texts and one prediction for each")
    counts: Counter[str] = Counter()
    for text in training_texts:
        counts.update(TOKEN.findall(text.lower()))
    vocabulary = [token for token, _ in counts.most_common(VOCABULARY_SIZE)]
    stats = text_statistics(texts, frozenset(vocabulary))
    labels = Counter(label for label, _ in predictions)
    confidence = np.asarray([c for _, c in predictions], dtype=np.float64)
    conf = _distribution(confidence)
    conf["edges"] = CONFIDENCE_EDGES
    conf["proportions"] = bin_proportions(confidence, CONFIDENCE_EDGES)
    return ReferenceProfile(
        {
            "format": FORMAT,
            "kind": "text",
            "n": len(texts),
            "source": source,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "output": dict(output or {"label": "sentiment", "confidence": "confidence"}),
            "labels": {label: labels[label] / len(texts) for label in sorted(labels)},
            "confidence": conf,
            "inputs": {
                "length": _distribution(stats.lengths),
                "oov_rate": _distribution(stats.oov_rates),
                "hashed": {"proportions": [float(x) for x in stats.hashed / max(stats.hashed.sum(), 1.0)]},
            },
            "vocabulary": vocabulary,
        }
    )
