"""The default model's arithmetic in numpy alone: word 1-2 grams, TF-IDF, logistic regression.

Training and serving need nothing but numpy (no scipy, no scikit-learn), so the default install stays small
(docs/decisions.md §38). The model is the same family scikit-learn would fit:

- **tokens**: lower-cased words of two or more word characters (scikit-learn's default ``token_pattern``),
  and every pair of neighbouring words (bigrams);
- **vocabulary**: the unigrams and bigrams found in at least ``min_df`` training documents (by default 2 from
  1,000 training documents on, else 1: a small data set keeps every word it has; a bigram's words
  are then in the vocabulary too, so a bigram is looked up as a pair of unigram ids);
- **weights**: sublinear tf (``1 + ln(count)``) times smoothed idf (``ln((1 + n) / (1 + df)) + 1``), each
  document l2-normalised;
- **classifier**: binary logistic regression, L2 penalty ``||w||² / 2C`` (intercept not penalised), fitted by
  L-BFGS on the sparse matrix kept as (row, column, value) arrays.

``positive_probability`` is the serving path, and the held-out accuracy is measured through it. The fitted
state is a handful of arrays, saved with ``numpy.savez`` and loaded with ``allow_pickle=False`` (loading runs
no code). See docs/model.md for the measured accuracy and timing.
"""

from __future__ import annotations

import array
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["FORMAT", "TextClassifier"]

FORMAT = "modelwire-ngram-logistic/1"
TOKEN = re.compile(r"(?u)\b\w\w+\b")
SMALL = 1000  # fewer training documents than this keep the 1-2 grams seen once (min_df 1)

Array = np.ndarray[Any, Any]
Progress = Callable[[str, float], None]


def _no_progress(stage: str, fraction: float) -> None:
    return None


class TextClassifier:
    """P(label 1 | text) from word 1-2 gram TF-IDF features and a logistic regression."""

    def __init__(
        self, terms: Sequence[str], bigrams: Array, idf: Array, coef: Array, intercept: float
    ) -> None:
        self.terms = list(terms)
        self._vocabulary = {term: i for i, term in enumerate(self.terms)}
        self.bigrams = np.asarray(bigrams, dtype=np.int64)  # sorted keys left_id * n_terms + right_id
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        if not (len(self.idf) == len(self.coef) == len(self.terms) + len(self.bigrams)):
            raise ValueError("terms, bigrams, idf and coef do not describe the same features")

    # -- serving ---------------------------------------------------------------------------------------

    def positive_probability(self, texts: Sequence[str]) -> list[float]:
        rows, cols, values = self._tfidf(texts)
        dot = np.bincount(rows, weights=values * self.coef[cols], minlength=len(texts))
        return (1.0 / (1.0 + np.exp(-(dot + self.intercept)))).tolist()  # type: ignore[no-any-return]

    def _tfidf(self, texts: Sequence[str]) -> tuple[Array, Array, Array]:
        get = self._vocabulary.get
        ids: list[int] = []
        lengths: list[int] = []
        for text in texts:
            tokens = TOKEN.findall(text.lower())
            ids.extend([get(token, -1) for token in tokens])
            lengths.append(len(tokens))
        unigram = np.asarray(ids, dtype=np.int64)
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        n_terms = len(self.terms)
        pair = (doc[:-1] == doc[1:]) & (unigram[:-1] >= 0) & (unigram[1:] >= 0)
        keys = unigram[:-1][pair] * n_terms + unigram[1:][pair]
        where = np.searchsorted(self.bigrams, keys)
        where[where == len(self.bigrams)] = 0
        known = self.bigrams[where] == keys if len(self.bigrams) else np.zeros(len(keys), dtype=bool)
        known_unigram = unigram >= 0
        feature = np.concatenate([unigram[known_unigram], n_terms + where[known]])
        owner = np.concatenate([doc[known_unigram], doc[:-1][pair][known]])
        rows, cols, counts = _count(owner, feature, len(self.idf))
        return rows, cols, _weigh(rows, cols, counts, self.idf, len(texts))

    # -- training --------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[int],
        *,
        min_df: int | None = None,
        c: float = 32.0,
        max_iter: int = 50,
        tol: float = 1e-4,
        progress: Progress = _no_progress,
    ) -> TextClassifier:
        """Fit on ``texts`` with labels 0/1; ``progress(stage, fraction)`` is told each stage.

        ``max_iter`` bounds the L-BFGS iterations: on the movie reviews, held-out accuracy is flat from about
        30 iterations on (docs/model.md), so 50 stops well past the plateau at a fraction of full convergence.
        """
        progress("tokenising", 0.0)
        vocabulary: dict[str, int] = {}
        add = vocabulary.setdefault
        ids = array.array("q")  # 8 bytes a token (a list of ints: about 36)
        lengths: list[int] = []
        for text in texts:
            tokens = TOKEN.findall(text.lower())
            ids.extend([add(token, len(vocabulary)) for token in tokens])
            lengths.append(len(tokens))
        unigram = np.frombuffer(ids, dtype=np.int64)
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        n_words = len(vocabulary)

        progress("counting 1-2 grams", 0.15)
        pair = doc[:-1] == doc[1:]
        keys = unigram[:-1][pair] * n_words + unigram[1:][pair]
        bigram_keys, bigram_of = np.unique(keys, return_inverse=True)
        n_all = n_words + len(bigram_keys)
        feature = np.concatenate([unigram, n_words + bigram_of.ravel()])
        owner = np.concatenate([doc, doc[:-1][pair]])
        all_rows, all_cols, all_counts = _count(owner, feature, n_all)
        df = np.bincount(all_cols, minlength=n_all)
        del ids, unigram, doc, pair, keys, bigram_of, feature, owner  # about 0.5 GB on the movie reviews

        # Keep the 1-2 grams seen in min_df documents; ids are renumbered in order, so bigram keys made of
        # the new unigram ids stay sorted.
        if min_df is None:
            min_df = 2 if len(texts) >= SMALL else 1
        keep = df >= max(min_df, 1)
        new_id = np.cumsum(keep) - 1
        kept_words = keep[:n_words]
        n_terms = int(kept_words.sum())
        words = np.empty(n_words, dtype=object)
        for word, i in vocabulary.items():
            words[i] = word
        terms = [str(w) for w in words[kept_words]]
        kept_bigrams = bigram_keys[keep[n_words:]]
        bigrams = new_id[kept_bigrams // n_words] * n_terms + new_id[kept_bigrams % n_words]
        n_docs = len(texts)
        idf = np.log((1.0 + n_docs) / (1.0 + df[keep])) + 1.0

        in_vocabulary = keep[all_cols]
        rows, cols = all_rows[in_vocabulary], new_id[all_cols[in_vocabulary]]
        values = _weigh(rows, cols, all_counts[in_vocabulary], idf, n_docs)
        del all_rows, all_cols, all_counts, in_vocabulary

        progress("fitting logistic regression", 0.35)
        y = np.asarray(labels, dtype=np.float64)
        coef, intercept = _fit_logistic(rows, cols, values, y, len(idf), c, max_iter, tol, progress)
        return cls(terms, bigrams, idf, coef, intercept)

    # -- the saved form --------------------------------------------------------------------------------

    def arrays(self) -> dict[str, Array]:
        """The fitted state as plain arrays (no objects: ``numpy.load(allow_pickle=False)`` reads them)."""
        return {
            "format": np.frombuffer(FORMAT.encode(), dtype=np.uint8),
            "terms": np.frombuffer("\n".join(self.terms).encode("utf-8"), dtype=np.uint8),
            "bigrams": self.bigrams,
            "idf": self.idf,
            "coef": self.coef,
            "intercept": np.asarray([self.intercept]),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> TextClassifier:
        found = bytes(arrays["format"]).decode()
        if found != FORMAT:
            raise ValueError(f"format {found!r}, expected {FORMAT!r}")
        text = bytes(arrays["terms"]).decode("utf-8")
        terms = text.split("\n") if text else []
        return cls(terms, arrays["bigrams"], arrays["idf"], arrays["coef"], float(arrays["intercept"][0]))


def _count(owner: Array, feature: Array, n_features: int) -> tuple[Array, Array, Array]:
    """(row, column, count) of each distinct (document, feature), from one entry per occurrence."""
    cells, counts = np.unique(owner * n_features + feature, return_counts=True)
    return cells // n_features, cells % n_features, counts


def _weigh(rows: Array, cols: Array, counts: Array, idf: Array, n_docs: int) -> Array:
    """The values of the l2-normalised (1 + ln tf) * idf matrix at (rows, cols)."""
    values = (1.0 + np.log(counts.astype(np.float64))) * idf[cols]
    norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=n_docs))
    norms[norms == 0.0] = 1.0  # a text with no known 1-2 gram scores the intercept alone
    return values / norms[rows]  # type: ignore[no-any-return]


def _dot(a: Array, b: Array) -> float:
    """The dot product of two vectors without BLAS: OpenBLAS's threads spin on a busy machine, which made
    the fit 3.7 times slower in CPU time on 2 shared cores (measured, docs/model.md)."""
    return float(np.einsum("i,i->", a, b))


def _fit_logistic(
    rows: Array,
    cols: Array,
    values: Array,
    y: Array,
    n_features: int,
    c: float,
    max_iter: int,
    tol: float,
    progress: Progress,
) -> tuple[Array, float]:
    """Minimise sum log(1 + exp(-s·z)) + ||w||² / 2C, z = Xw + b, s = ±1, by L-BFGS (memory 10)."""
    n = len(y)
    sign = 2.0 * y - 1.0
    # rows are sorted (one document after another): Xw is a segmented sum (reduceat, far cheaper than a
    # scatter) and r[rows] a repeat. reduceat needs non-empty segments, so empty documents are skipped.
    per_row = np.bincount(rows, minlength=n)
    filled = per_row > 0
    starts = (np.cumsum(per_row) - per_row)[filled]

    def loss_grad(theta: Array) -> tuple[float, Array]:
        w, b = theta[:-1], theta[-1]
        z = np.full(n, b)
        if len(starts):
            z[filled] += np.add.reduceat(values * np.take(w, cols), starts)
        margin = sign * z
        loss = float(np.sum(np.logaddexp(0.0, -margin)) + 0.5 / c * _dot(w, w))
        r = -sign / (1.0 + np.exp(margin))  # d loss / d z, stable for large |margin|
        grad = np.empty_like(theta)
        grad[:-1] = np.bincount(cols, weights=values * np.repeat(r, per_row), minlength=n_features) + w / c
        grad[-1] = r.sum()
        return loss, grad

    theta = np.zeros(n_features + 1)
    f, g = loss_grad(theta)
    history: list[tuple[Array, Array, float]] = []
    for iteration in range(max_iter):
        if np.max(np.abs(g)) <= tol:
            break
        # two-loop recursion
        q = g.copy()
        alphas = []
        for s, t, rho in reversed(history):
            alpha = rho * _dot(s, q)
            q -= alpha * t
            alphas.append(alpha)
        if history:
            s, t, _ = history[-1]
            q *= _dot(s, t) / _dot(t, t)
        else:
            q /= max(np.sqrt(_dot(q, q)), 1.0)
        for (s, t, rho), alpha in zip(history, reversed(alphas), strict=True):
            beta = rho * _dot(t, q)
            q += (alpha - beta) * s
        direction = -q
        slope = float(_dot(g, direction))
        if slope >= 0:  # not a descent direction: restart from steepest descent
            history.clear()
            direction, slope = -g, -float(_dot(g, g))
        step = 1.0
        while True:  # backtracking until the Armijo condition holds
            candidate = theta + step * direction
            f_new, g_new = loss_grad(candidate)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_k, t_k = candidate - theta, g_new - g
        curvature = float(_dot(s_k, t_k))
        if curvature > 1e-10:
            history.append((s_k, t_k, 1.0 / curvature))
            if len(history) > 10:
                history.pop(0)
        converged = f - f_new <= 1e-9 * max(abs(f), 1.0)
        theta, f, g = candidate, f_new, g_new
        if iteration % 10 == 0:
            progress("fitting logistic regression", 0.35 + 0.6 * iteration / max(max_iter, 1))
        if converged:
            break
    return theta[:-1], float(theta[-1])
