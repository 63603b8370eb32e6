"""An example model that predicts from online features: the chance a user churns, from the user's
review statistics in the ``user_stats`` feature view (docs/features.md).

It trains itself at load time, on data it generates (a fixed seed, so every load is the same model):
users with few reviews and low average ratings churn more. Logistic regression in numpy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelwire import Datatype, Model, TensorSpec


class ChurnModel(Model):
    """``{"entity": {"user_id": "u42"}}`` in, ``{"churn": 0.87, "label": "churn"}`` out."""

    outputs = (TensorSpec("churn", Datatype.FP64), TensorSpec("label", Datatype.BYTES))  # for /v2 infer
    features = ("user_stats:avg_rating", "user_stats:n_reviews")
    feature_defaults = {"user_stats:n_reviews": 0}  # a user never seen has no reviews; a missing rating fails

    def load(self) -> None:
        rng = np.random.default_rng(15)
        n = 5000
        rating = rng.uniform(1.0, 5.0, n)
        reviews = rng.poisson(8.0, n).astype(float)
        x = self._scale(rating, reviews)
        truth = 2.0 - 1.2 * (rating - 3.0) - 0.25 * reviews
        churned = rng.random(n) < 1.0 / (1.0 + np.exp(-truth))
        w = np.zeros(x.shape[1])
        for _ in range(500):  # gradient descent on the log loss
            p = 1.0 / (1.0 + np.exp(-x @ w))
            w -= 0.5 * x.T @ (p - churned) / n
        self.weights = w
        self.accuracy = float(((1.0 / (1.0 + np.exp(-x @ w)) > 0.5) == churned).mean())

    @staticmethod
    def _scale(rating: Any, reviews: Any) -> Any:
        rating, reviews = np.asarray(rating, float), np.asarray(reviews, float)
        return np.column_stack([np.ones_like(rating), (rating - 3.0) / 1.2, (reviews - 8.0) / 3.0])

    def predict(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        rating = [item["features"]["user_stats:avg_rating"] for item in batch]
        reviews = [item["features"]["user_stats:n_reviews"] for item in batch]
        p = 1.0 / (1.0 + np.exp(-self._scale(rating, reviews) @ self.weights))
        return [{"churn": round(float(q), 3), "label": "churn" if q > 0.5 else "stay"} for q in p]
