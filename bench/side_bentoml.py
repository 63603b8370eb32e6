"""Side-by-side peer: a user's scikit-learn file as a BentoML service (the current ``@bentoml.service`` SDK).

One worker, no adaptive batching (``batchable`` is an opt-in per API), the model file (``$BENCH_MODEL``)
loaded once in ``__init__``; ``POST /predict`` with ``{"text": ...}`` answers the label and the class
probabilities: ``predict`` and ``predict_proba``, as every other server in the comparison.

    BENCH_MODEL=model.joblib bentoml serve side_bentoml:Sentiment --host 127.0.0.1 --port 8200
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import joblib


@bentoml.service(workers=1)
class Sentiment:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api
    def predict(self, text: str) -> dict[str, Any]:
        rows = [text]
        label = self.model.predict(rows)[0]
        probabilities = self.model.predict_proba(rows)[0]
        return {"label": str(label), "probabilities": probabilities.tolist()}
