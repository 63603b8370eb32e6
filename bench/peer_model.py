"""The default sentiment model as the benchmark's peers load it: the same skops artifact, no modelwire import.

The peers (FastAPI + uvicorn, MLServer) run in their own virtualenvs, so they load the trained pipeline the
way any user of those servers would: ``skops.io.load`` and ``predict_proba``. The post-processing mirrors
``modelwire.model.sentiment.SentimentModel.predict``, so every server answers the same text the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PeerSentimentModel", "latest_version"]


def latest_version(models_dir: Path, name: str = "sentiment") -> Path:
    """The newest complete ``<models_dir>/<name>/<version>/`` folder."""
    folder = models_dir / name
    versions = sorted(
        (p for p in folder.iterdir() if p.name.isdigit() and (p / "model.skops").is_file()),
        key=lambda p: int(p.name),
    )
    if not versions:
        raise FileNotFoundError(f"no trained version under {folder}")
    return versions[-1]


class PeerSentimentModel:
    """Loads ``model.skops`` from one version folder and predicts ``{"sentiment", "confidence"}``."""

    def __init__(self, version_dir: Path) -> None:
        import skops.io as sio

        artifact = version_dir / "model.skops"
        meta = json.loads((version_dir / "metadata.json").read_text())
        self.version = str(meta["version"])
        self._pipeline = sio.load(artifact, trusted=sio.get_untrusted_types(file=artifact))
        self._positive = list(self._pipeline.classes_).index(1)
        self._pipeline.predict_proba(["warm up"])

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        proba = self._pipeline.predict_proba(list(texts))[:, self._positive]
        out = []
        for positive in proba.tolist():
            label = "positive" if positive >= 0.5 else "negative"
            confidence = positive if positive >= 0.5 else 1.0 - positive
            out.append({"sentiment": label, "confidence": round(confidence, 4)})
        return out
