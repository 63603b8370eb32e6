from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
from sklearn.preprocessing import FunctionTransformer

from modelwire import ConfigurationError
from modelwire.model.repository import ARTIFACTS, METADATA, ModelRepository, library_versions
from modelwire.model.sentiment import SentimentModel, train_sentiment

ARTIFACT = ARTIFACTS["npz"]


def edit_metadata(repository: ModelRepository, name: str, version: str, **changes: object) -> None:
    path = repository.root / name / version / METADATA
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def test_the_trained_default_model_is_laid_out_per_version(trained_data_dir: Path) -> None:
    folder = trained_data_dir / "models" / "sentiment" / "1"
    assert (folder / ARTIFACT).is_file()
    raw = json.loads((folder / METADATA).read_text())

    assert raw["name"] == "sentiment"
    assert raw["version"] == "1"
    assert raw["format"] == "npz"
    assert not (folder / ARTIFACTS["skops"]).exists()
    assert raw["libraries"] == library_versions("npz")
    assert set(raw["libraries"]) == {"python", "numpy"}  # scikit-learn takes no part
    assert raw["metrics"]["trainer"] == "numpy"
    assert raw["metrics"]["accuracy"] >= 0.85  # held-out 20 % of the real reviews
    assert raw["metrics"]["test_fraction"] == 0.2
    total = raw["metrics"]["n_train"] + raw["metrics"]["n_test"]
    assert raw["metrics"]["n_test"] == total - int(total * 0.8)
    assert ModelRepository(trained_data_dir / "models").versions("sentiment") == ["1"]


def test_a_second_training_registers_version_2(
    repository: ModelRepository, tiny_reviews: tuple[list[str], list[int]]
) -> None:
    report = train_sentiment(repository, data=tiny_reviews)

    assert report.version == "2"
    assert report.path == repository.root / "sentiment" / "2"
    assert repository.versions("sentiment") == ["1", "2"]
    assert repository.metadata("sentiment", "2").metrics["n_train"] == 16
    assert not [p for p in (repository.root / "sentiment").iterdir() if p.name.startswith(".staging")]
    model = SentimentModel("sentiment", "2", repository=repository)
    model.load()
    assert model.predict(["wonderful"])[0]["sentiment"] == "positive"


def test_versions_lists_only_complete_versions_in_numeric_order(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    for version in ("1", "2", "10"):
        folder = tmp_path / "m" / version
        folder.mkdir(parents=True)
        (folder / ARTIFACT).write_bytes(b"x")
        (folder / METADATA).write_text("{}")
    (tmp_path / "m" / "11").mkdir()  # an interrupted save: no files
    (tmp_path / "m" / "12").mkdir()
    (tmp_path / "m" / "12" / ARTIFACT).write_bytes(b"x")  # no metadata
    (tmp_path / "m" / ".staging-abc").mkdir()
    (tmp_path / "m" / "latest").mkdir()
    (tmp_path / "m" / "3").mkdir()  # a version scikit-learn wrote
    (tmp_path / "m" / "3" / ARTIFACTS["skops"]).write_bytes(b"x")
    (tmp_path / "m" / "3" / METADATA).write_text("{}")

    assert repository.versions("m") == ["1", "2", "3", "10"]
    assert repository.next_version("m") == "13"  # never reuses a number, even an incomplete one
    assert repository.versions("unknown") == []
    assert repository.next_version("unknown") == "1"


def test_library_version_drift_logs_a_warning(
    repository: ModelRepository, caplog: pytest.LogCaptureFixture
) -> None:
    libraries = dict(library_versions("npz"), numpy="0.1.0")
    edit_metadata(repository, "sentiment", "1", libraries=libraries)
    model = SentimentModel("sentiment", "1", repository=repository)

    with caplog.at_level(logging.WARNING, logger="modelwire.model"):
        model.load()

    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "numpy 0.1.0" in record.getMessage()
    assert "modelwire train" in record.getMessage()
    assert model.predict(["I love this product"])[0]["sentiment"] == "positive"  # still loads


def test_matching_library_versions_log_no_warning(
    repository: ModelRepository, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelwire.model"):
        SentimentModel("sentiment", "1", repository=repository).load()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_artifact_with_a_type_outside_the_allow_list_is_refused(repository: ModelRepository) -> None:
    meta = repository.save("sentiment", FunctionTransformer(func=os.system), {"accuracy": 1.0})
    assert meta.version == "2"

    with pytest.raises(ConfigurationError, match=r"does not allow: \['(posix|nt)\.system'\]"):
        SentimentModel("sentiment", "2", repository=repository).load()


def test_an_allowed_type_list_is_what_load_trusts(repository: ModelRepository) -> None:
    repository.save("custom", FunctionTransformer(func=os.system), {})
    estimator, meta = repository.load("custom", "1", frozenset({"posix.system", "nt.system"}))
    assert isinstance(estimator, FunctionTransformer)
    assert meta.trusted_types in (["posix.system"], ["nt.system"])


def test_a_missing_version_is_a_configuration_error(repository: ModelRepository) -> None:
    with pytest.raises(ConfigurationError, match="no artifact for sentiment version 9"):
        SentimentModel("sentiment", "9", repository=repository).load()


def test_a_corrupt_artifact_is_a_configuration_error(repository: ModelRepository) -> None:
    (repository.root / "sentiment" / "1" / ARTIFACT).write_bytes(b"not a zip archive")
    with pytest.raises(ConfigurationError, match="retrain"):
        SentimentModel("sentiment", "1", repository=repository).load()


def test_arrays_are_saved_as_npz_and_loaded_without_pickle(tmp_path: Path) -> None:
    import numpy as np

    repository = ModelRepository(tmp_path)
    meta = repository.save("m", {"w": np.arange(3.0), "n": np.asarray([7])}, {"accuracy": 1.0})
    assert (meta.format, meta.trusted_types) == ("npz", [])
    arrays, loaded = repository.load("m", "1", frozenset())
    assert sorted(arrays) == ["n", "w"]
    assert arrays["w"].tolist() == [0.0, 1.0, 2.0]
    assert loaded.format == "npz"

    # an object array needs pickle to load, so it is refused: loading must run no code
    np.savez(tmp_path / "m" / "1" / ARTIFACT, w=np.asarray([os.system], dtype=object))
    with pytest.raises(ConfigurationError, match="retrain"):
        repository.load("m", "1", frozenset())


def test_a_skops_version_without_the_sklearn_extra_names_the_extra(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository.save("custom", FunctionTransformer(), {})
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'modelwire\[sklearn\]'"):
        repository.load("custom", "1", frozenset())
    with pytest.raises(ConfigurationError, match=r"pip install 'modelwire\[sklearn\]'"):
        repository.save("custom", FunctionTransformer(), {})
    assert repository.versions("custom") == ["1"]  # the refused save left nothing behind
    # the numpy default model needs neither
    model = SentimentModel("sentiment", "1", repository=repository)
    model.load()
    assert model.predict(["I love this product"])[0]["sentiment"] == "positive"


@pytest.mark.parametrize(
    "content", [None, "{not json", '{"name": "sentiment"}'], ids=["missing", "bad", "short"]
)
def test_unreadable_metadata_is_a_configuration_error(
    repository: ModelRepository, content: str | None
) -> None:
    path = repository.root / "sentiment" / "1" / METADATA
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(ConfigurationError, match=METADATA):
        SentimentModel("sentiment", "1", repository=repository).load()
