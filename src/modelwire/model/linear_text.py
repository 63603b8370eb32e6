"""A direct evaluator for the default model's pipeline: the same arithmetic, without sklearn's per-call cost.

``predict_proba`` on one short text spends ~0.55 ms, nearly all of it in scikit-learn's input validation and
dispatch around three cheap steps. For exactly the pipeline shape modelwire trains (``HashingVectorizer`` →
``TfidfTransformer`` → binary ``LogisticRegression``) this module reads the fitted parameters once and
evaluates them with numpy/scipy: the hashing step is still sklearn's own ``transform`` (so tokens hash
identically), then sublinear tf, idf, l2 normalisation, the linear decision and the logistic function,
exactly as scikit-learn computes them. About 0.07 ms for one text; results equal ``predict_proba`` to
floating-point rounding (tests compare them on held-out reviews). Any other pipeline shape gets ``None``
from ``LinearTextScorer.from_pipeline`` and is run by scikit-learn as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LinearTextScorer"]


class LinearTextScorer:
    """P(positive) for texts, from a fitted hashing + TF-IDF + logistic regression pipeline."""

    def __init__(
        self, hasher: Any, idf: Any, sublinear_tf: bool, coef: Any, intercept: float, sign: float
    ) -> None:
        self._hasher = hasher
        self._idf = np.asarray(idf, dtype=np.float64)
        self._sublinear = sublinear_tf
        self._coef = np.asarray(coef, dtype=np.float64)
        self._intercept = float(intercept)
        self._sign = sign  # +1 when the positive label is classes_[1], -1 when it is classes_[0]

    @classmethod
    def from_pipeline(cls, pipeline: Any, positive_label: Any = 1) -> LinearTextScorer | None:
        """A scorer for ``pipeline`` if it has exactly the supported shape, else ``None``."""
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        steps = [step for _, step in getattr(pipeline, "steps", [])]
        if len(steps) != 3:
            return None
        hasher, tfidf, clf = steps
        supported = (
            isinstance(hasher, HashingVectorizer)
            and hasher.norm is None
            and type(tfidf) is TfidfTransformer
            and tfidf.norm == "l2"
            and tfidf.use_idf
            and type(clf) is LogisticRegression
            and len(clf.classes_) == 2
            and positive_label in list(clf.classes_)
        )
        if not supported:
            return None
        sign = 1.0 if list(clf.classes_).index(positive_label) == 1 else -1.0
        return cls(hasher, tfidf.idf_, tfidf.sublinear_tf, clf.coef_[0], clf.intercept_[0], sign)

    def positive_probability(self, texts: Sequence[str]) -> list[float]:
        matrix = self._hasher.transform(texts).tocsr()
        data = matrix.data.astype(np.float64, copy=False)
        if self._sublinear:
            data = np.log(data) + 1.0
        data = data * self._idf[matrix.indices]
        rows = np.repeat(np.arange(len(texts)), np.diff(matrix.indptr))
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=len(texts)))
        norms[norms == 0.0] = 1.0  # a text with no tokens stays all zeros, as in scikit-learn
        data = data / norms[rows]
        dot = np.bincount(rows, weights=data * self._coef[matrix.indices], minlength=len(texts))
        decision = self._sign * (dot.astype(np.float64) + self._intercept)
        return (1.0 / (1.0 + np.exp(-decision))).tolist()  # type: ignore[no-any-return]
