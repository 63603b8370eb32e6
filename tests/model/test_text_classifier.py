"""The numpy trainer computes what scikit-learn computes: the same TF-IDF matrix, the same optimum."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelwire.model.sentiment import load_reviews
from modelwire.model.text_classifier import FORMAT, TextClassifier


@pytest.fixture(scope="module")
def reviews() -> tuple[list[str], list[int]]:
    """1,500 real reviews, both labels (the CSV is sorted by label, so a stride samples both)."""
    texts, labels = load_reviews()
    return texts[::22], labels[::22]


def dense(model: TextClassifier, texts: list[str]) -> tuple[Any, list[str]]:
    """The model's TF-IDF matrix as a dense array, and each column's 1-2 gram as scikit-learn names it."""
    rows, cols, values = model._tfidf(texts)
    matrix = np.zeros((len(texts), len(model.idf)))
    matrix[rows, cols] = values
    n = len(model.terms)
    names = [*model.terms, *(f"{model.terms[k // n]} {model.terms[k % n]}" for k in model.bigrams)]
    return matrix, names


def test_the_features_equal_scikit_learns_tfidf(reviews: tuple[list[str], list[int]]) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, labels = reviews
    model = TextClassifier.fit(texts, labels, max_iter=1)
    ours, names = dense(model, texts)
    reference = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float64)
    theirs = reference.fit_transform(texts).toarray()
    assert sorted(names) == sorted(reference.vocabulary_)
    order = [reference.vocabulary_[name] for name in names]
    assert np.allclose(ours, theirs[:, order], rtol=0, atol=1e-12)
    assert np.allclose(model.idf, reference.idf_[order], rtol=0, atol=1e-12)


def test_the_fit_reaches_scikit_learns_optimum(reviews: tuple[list[str], list[int]]) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, labels = reviews
    model = TextClassifier.fit(texts, labels, c=4.0, max_iter=2000, tol=1e-7)
    reference = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float64)
    features = reference.fit_transform(texts)
    clf = LogisticRegression(C=4.0, tol=1e-10, max_iter=5000).fit(features, labels)
    matrix, names = dense(model, texts)
    order = [reference.vocabulary_[name] for name in names]
    y = 2.0 * np.asarray(labels) - 1.0

    def objective(coef: Any, intercept: float) -> float:
        margin = y * (matrix @ coef + intercept)
        return float(np.sum(np.logaddexp(0.0, -margin)) + np.dot(coef, coef) / (2 * 4.0))

    # the same minimum (to 1e-7 of the loss), the same weights and probabilities to rounding of the optimisers
    theirs = objective(clf.coef_[0][order], clf.intercept_[0])
    assert objective(model.coef, model.intercept) == pytest.approx(theirs, rel=1e-7)
    assert np.allclose(model.coef, clf.coef_[0][order], rtol=0, atol=1e-3)
    assert model.intercept == pytest.approx(clf.intercept_[0], abs=1e-3)
    ours = np.array(model.positive_probability(texts))
    assert np.allclose(ours, clf.predict_proba(features)[:, 1], rtol=0, atol=1e-4)


def test_the_saved_arrays_predict_the_same(reviews: tuple[list[str], list[int]]) -> None:
    texts, labels = reviews
    model = TextClassifier.fit(texts, labels)
    arrays = model.arrays()
    assert all(a.dtype != object for a in arrays.values())  # nothing needs pickle
    again = TextClassifier.from_arrays(arrays)
    sample = [*texts[:50], "I love this product", "zzqx", "...", "a"]
    assert again.positive_probability(sample) == model.positive_probability(sample)


def test_texts_without_a_known_1_2_gram_score_the_intercept_alone(
    reviews: tuple[list[str], list[int]],
) -> None:
    model = TextClassifier.fit(*reviews)
    alone = 1.0 / (1.0 + np.exp(-model.intercept))
    assert model.positive_probability(["", "...", "zzqx qqzx", "a"]) == pytest.approx([alone] * 4)
    assert model.positive_probability([]) == []


def test_a_batch_scores_each_text_as_alone(reviews: tuple[list[str], list[int]]) -> None:
    model = TextClassifier.fit(*reviews)
    # bigrams never span two texts: "great" ending one text and "film" starting the next stay apart
    batch = ["it was great", "film at its best", "not good", "good"]
    assert model.positive_probability(batch) == pytest.approx(
        [model.positive_probability([t])[0] for t in batch], abs=1e-12
    )


def test_min_df_keeps_the_1_2_grams_of_enough_documents() -> None:
    texts = ["good film", "good film", "bad film", "awful"]
    model = TextClassifier.fit(texts, [1, 1, 0, 0], min_df=2, max_iter=5)
    assert sorted(model.terms) == ["film", "good"]
    n = len(model.terms)
    assert [f"{model.terms[k // n]} {model.terms[k % n]}" for k in model.bigrams] == ["good film"]


def test_arrays_of_another_format_are_refused(reviews: tuple[list[str], list[int]]) -> None:
    arrays = TextClassifier.fit(*reviews, max_iter=1).arrays()
    arrays["format"] = np.frombuffer(b"something-else/9", dtype=np.uint8)
    with pytest.raises(ValueError, match="something-else/9"):
        TextClassifier.from_arrays(arrays)
    assert FORMAT.startswith("modelwire-")
    broken = TextClassifier.fit(*reviews, max_iter=1).arrays()
    broken["coef"] = broken["coef"][:-1]
    with pytest.raises(ValueError, match="same features"):
        TextClassifier.from_arrays(broken)
