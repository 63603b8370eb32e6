from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from modelwire import ConfigurationError, Datatype, InvalidInputError, TensorSpec
from modelwire.model.repository import ModelRepository
from modelwire.model.runner import ModelRunner
from modelwire.model.sentiment import SentimentModel, load_reviews, train_sentiment


def test_i_love_this_product_is_positive_with_high_confidence(trained_sentiment: SentimentModel) -> None:
    (result,) = trained_sentiment.predict(["I love this product"])
    assert set(result) == {"sentiment", "confidence"}  # exactly the seed's shape
    assert result["sentiment"] == "positive"
    assert result["confidence"] > 0.8


@pytest.mark.parametrize(
    "text",
    [
        "This was a terrible, boring waste of time",
        "I hated this film, the acting was awful",
        "Dull, predictable and far too long.",
    ],
)
def test_negative_texts_are_negative(trained_sentiment: SentimentModel, text: str) -> None:
    (result,) = trained_sentiment.predict([text])
    assert result["sentiment"] == "negative"


@pytest.mark.parametrize(
    "text",
    ["An absolute masterpiece, I was moved to tears", "Great fun, wonderful cast, loved it"],
)
def test_positive_texts_are_positive(trained_sentiment: SentimentModel, text: str) -> None:
    assert trained_sentiment.predict([text])[0]["sentiment"] == "positive"


def test_confidence_is_the_probability_of_the_chosen_label(trained_sentiment: SentimentModel) -> None:
    texts = ["I love this product", "a terrible, boring waste of time", "it was a film"]
    for result in trained_sentiment.predict(texts):
        assert isinstance(result["confidence"], float)
        assert 0.5 <= result["confidence"] <= 1.0


def test_a_batch_predicts_what_each_item_predicts_alone(trained_sentiment: SentimentModel) -> None:
    texts = ["I love this product", "a terrible, boring waste of time", "pretty good", "not good"]
    assert trained_sentiment.predict(texts) == [trained_sentiment.predict([t])[0] for t in texts]


@pytest.mark.parametrize("bad", ["", "   \n\t", 42, None, b"I love this product", ["nested"]])
def test_empty_and_non_string_items_fail_alone(trained_sentiment: SentimentModel, bad: Any) -> None:
    good, failed, also_good = trained_sentiment.predict(["I love this product", bad, "awful"])
    assert good["sentiment"] == "positive"
    assert also_good["sentiment"] == "negative"
    assert isinstance(failed, InvalidInputError)


def test_a_batch_of_only_bad_items_never_calls_the_pipeline(trained_sentiment: SentimentModel) -> None:
    results = trained_sentiment.predict(["", 3])
    assert all(isinstance(r, InvalidInputError) for r in results)


async def test_through_the_runner_sync_predict_off_the_loop(trained_sentiment: SentimentModel) -> None:
    results = await ModelRunner(trained_sentiment).run(["I love this product", ""])
    assert results[0]["sentiment"] == "positive"
    assert isinstance(results[1], InvalidInputError)


def test_info_declares_the_tensors_and_the_measured_accuracy(trained_sentiment: SentimentModel) -> None:
    info = trained_sentiment.info()
    assert info.name == "sentiment"
    assert info.version == "1"
    assert info.platform == "numpy"
    assert info.inputs == (TensorSpec("text", Datatype.BYTES),)
    assert info.outputs == (TensorSpec("sentiment", Datatype.BYTES), TensorSpec("confidence", Datatype.FP32))
    assert info.extra["metrics"]["accuracy"] >= 0.85
    assert info.extra["created_at"]


def test_training_reports_progress_and_a_new_version(
    tmp_path: Path, tiny_reviews: tuple[list[str], list[int]]
) -> None:
    stages: list[tuple[str, float]] = []
    repository = ModelRepository(tmp_path)

    first = train_sentiment(repository, data=tiny_reviews, progress=lambda s, f: stages.append((s, f)))
    second = train_sentiment(repository, name="sentiment", data=tiny_reviews)

    assert (first.version, second.version) == ("1", "2")
    assert (first.n_train, first.n_test) == (16, 4)
    assert 0.0 <= first.accuracy <= 1.0
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0
    assert fractions[-1] == 1.0
    assert repository.versions("sentiment") == ["1", "2"]


def test_training_is_reproducible(tmp_path: Path, tiny_reviews: tuple[list[str], list[int]]) -> None:
    repository = ModelRepository(tmp_path)
    a = train_sentiment(repository, data=tiny_reviews)
    b = train_sentiment(repository, data=tiny_reviews)
    assert a.accuracy == b.accuracy
    assert repository.metadata("sentiment", "1").metrics == repository.metadata("sentiment", "2").metrics


def test_training_needs_both_labels(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="both labels"):
        train_sentiment(ModelRepository(tmp_path), data=(["good", "great", "fine", "nice", "ok"], [1] * 5))
    assert ModelRepository(tmp_path).versions("sentiment") == []


def test_load_reviews_reads_the_packaged_csv() -> None:
    texts, labels = load_reviews()
    assert len(texts) == len(labels) == 33_530
    assert set(labels) == {0, 1}
    assert all(isinstance(t, str) for t in texts[:100])


def test_load_reviews_reads_quoted_multiline_rows(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('text,label,source\n"good, really ""good""\nfilm",1,imdb\nbad,0,rt\n', encoding="utf-8")
    assert load_reviews(path) == (['good, really "good"\nfilm', "bad"], [1, 0])


def test_load_reviews_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("text,label,source\n")
    with pytest.raises(ConfigurationError, match="no labelled rows"):
        load_reviews(path)


@pytest.fixture(scope="module")
def sklearn_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sentiment/1 trained by the sklearn trainer on the real reviews (the sklearn extra)."""
    data_dir = tmp_path_factory.mktemp("sklearn-data")
    report = train_sentiment(ModelRepository(data_dir / "models"), data=load_reviews(), trainer="sklearn")
    assert report.accuracy >= 0.85
    return data_dir


def test_the_sklearn_trainer_saves_a_skops_pipeline(sklearn_data_dir: Path) -> None:
    repository = ModelRepository(sklearn_data_dir / "models")
    meta = repository.metadata("sentiment", "1")
    assert meta.format == "skops"
    assert meta.metrics["trainer"] == "sklearn"
    assert {"scikit-learn", "scipy", "skops", "numpy"} <= set(meta.libraries)
    model = SentimentModel("sentiment", "1", repository=repository)
    model.load()
    assert model.info().platform == "scikit-learn"
    assert model.predict(["I love this product"])[0]["sentiment"] == "positive"


def test_both_trainers_reach_the_same_held_out_accuracy(
    trained_data_dir: Path, sklearn_data_dir: Path
) -> None:
    """The numpy trainer replaced scikit-learn's by default: within a point on the same split."""
    numpy_accuracy = ModelRepository(trained_data_dir / "models").metadata("sentiment", "1").metrics
    sklearn_accuracy = ModelRepository(sklearn_data_dir / "models").metadata("sentiment", "1").metrics
    assert numpy_accuracy["n_test"] == sklearn_accuracy["n_test"] == 6706
    assert abs(numpy_accuracy["accuracy"] - sklearn_accuracy["accuracy"]) <= 0.01


def test_the_direct_runtime_equals_predict_proba(sklearn_data_dir: Path) -> None:
    """model/linear_text.py must compute exactly what scikit-learn computes, on real held-out reviews."""
    import numpy as np

    from modelwire.model.linear_text import LinearTextScorer

    repository = ModelRepository(sklearn_data_dir / "models")
    direct = SentimentModel("sentiment", "1", repository=repository)
    direct.load()
    assert isinstance(direct._scorer, LinearTextScorer)
    exact = SentimentModel("sentiment", "1", repository=repository, runtime="sklearn")
    exact.load()
    assert exact._scorer is None
    texts, _ = load_reviews()
    sample = [t for t in [*texts[::97], "I love this product", "a"] if t.strip()]
    sample.append("...")  # a text with no tokens at all
    fast = np.array(direct._positive_probability(sample))
    slow = np.array(exact._positive_probability(sample))
    assert np.allclose(fast, slow, rtol=0, atol=1e-9)
    assert direct.predict(sample) == exact.predict(sample)


def test_the_direct_runtime_declines_other_pipelines() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from modelwire.model.linear_text import LinearTextScorer

    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
        ["good", "bad", "fine", "awful"], [1, 0, 1, 0]
    )
    assert LinearTextScorer.from_pipeline(pipeline) is None


def test_the_sklearn_runtime_needs_a_version_scikit_learn_trained(repository: ModelRepository) -> None:
    model = SentimentModel("sentiment", "1", repository=repository, runtime="sklearn")
    with pytest.raises(ConfigurationError, match=r"--trainer sklearn.*modelwire\[sklearn\]"):
        model.load()


def test_an_unknown_runtime_is_a_configuration_error(repository: ModelRepository) -> None:
    with pytest.raises(ConfigurationError, match="runtime must be direct or sklearn, not 'fast'"):
        SentimentModel("sentiment", "1", repository=repository, runtime="fast").load()


def test_an_unknown_trainer_is_a_configuration_error(
    tmp_path: Path, tiny_reviews: tuple[list[str], list[int]]
) -> None:
    with pytest.raises(ConfigurationError, match="trainer must be one of numpy, sklearn"):
        train_sentiment(ModelRepository(tmp_path), data=tiny_reviews, trainer="torch")  # type: ignore[arg-type]


def test_the_sklearn_trainer_without_the_extra_names_it(
    tmp_path: Path, tiny_reviews: tuple[list[str], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("sklearn", "sklearn.pipeline", "sklearn.linear_model", "sklearn.feature_extraction.text"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ConfigurationError, match=r"--trainer sklearn needs .*pip install 'modelwire\[sklearn\]'"
    ):
        train_sentiment(ModelRepository(tmp_path), data=tiny_reviews, trainer="sklearn")
    report = train_sentiment(ModelRepository(tmp_path), data=tiny_reviews)  # numpy needs no extra
    assert report.version == "1"
