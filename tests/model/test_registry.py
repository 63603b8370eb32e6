from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from modelwire import (
    ConfigurationError,
    ErrorCode,
    Model,
    ModelNotFoundError,
    ModelNotReadyError,
    Settings,
)
from modelwire.app.builder import build_services
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.model import registry as registry_module
from modelwire.model.batching import BatchingRunner
from modelwire.model.registry import ModelRegistry, build_models
from modelwire.model.repository import ModelRepository
from modelwire.model.runner import ModelRunner
from modelwire.model.runtimes import OnnxModel, SklearnModel
from modelwire.model.sentiment import SentimentModel, train_sentiment
from modelwire.settings import BatchingSettings, ModelSettings
from tests.models import EchoModel, SumModel

ON = BatchingSettings()
OFF = BatchingSettings(enabled=False)


class AsyncLoadModel(Model):
    def __init__(self, name: str = "async-load", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.loaded = False
        self.unloaded = False

    async def load(self) -> None:
        await asyncio.sleep(0)
        self.loaded = True

    async def unload(self) -> None:
        self.unloaded = True

    def predict(self, batch: Any) -> list[Any]:
        return list(batch)


@pytest.fixture
async def registry() -> Any:
    reg = ModelRegistry()
    yield reg
    await reg.unload_all()


def served(registry: ModelRegistry, *versions: str, name: str = "m") -> ModelRegistry:
    for version in versions:
        registry.add(EchoModel(name, version), OFF).ready = True
    return registry


# -- lookups ------------------------------------------------------------------------------------------


async def test_the_default_version_is_the_newest_numerically(registry: ModelRegistry) -> None:
    served(registry, "2", "10", "9", "1")
    assert registry.get("m").version == "10"
    assert registry.get("m", "").version == "10"
    assert registry.get("m", "9").version == "9"
    assert registry.versions("m") == ["1", "2", "9", "10"]


async def test_a_named_version_never_beats_a_numbered_one(registry: ModelRegistry) -> None:
    served(registry, "1", "canary", "2")
    assert registry.get("m").version == "2"
    assert registry.get("m", "canary").version == "canary"
    assert registry.versions("m") == ["1", "2", "canary"]


async def test_only_named_versions_default_to_the_last_by_name(registry: ModelRegistry) -> None:
    served(registry, "beta", "alpha")
    assert registry.get("m").version == "beta"


async def test_an_unknown_model_names_the_served_ones(registry: ModelRegistry) -> None:
    served(registry, "1", name="alpha")
    served(registry, "1", name="beta")
    with pytest.raises(ModelNotFoundError, match=r"'gamma' is not served \(served: alpha, beta\)") as info:
        registry.get("gamma")
    assert info.value.code is ErrorCode.NOT_FOUND


async def test_an_unknown_model_with_nothing_served(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError, match=r"served: none"):
        registry.get("anything")


async def test_an_unknown_version_names_the_known_ones(registry: ModelRegistry) -> None:
    served(registry, "1", "2")
    with pytest.raises(ModelNotFoundError, match=r"'m' has no version '3' \(versions: 1, 2\)"):
        registry.get("m", "3")


async def test_a_model_not_loaded_yet_is_not_ready(registry: ModelRegistry) -> None:
    handle = registry.add(AsyncLoadModel("late"), OFF)
    with pytest.raises(ModelNotReadyError) as info:
        registry.get("late")
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert info.value.retry_after_s is not None
    assert registry.get("late", require_ready=False) is handle

    await registry.load_all()

    assert handle.model.loaded
    assert registry.get("late") is handle


async def test_sync_load_runs_and_marks_ready(registry: ModelRegistry) -> None:
    handle = registry.add(EchoModel("echo"), OFF)
    await registry.load(handle)
    assert handle.ready


async def test_the_same_version_twice_is_a_configuration_error(registry: ModelRegistry) -> None:
    registry.add(EchoModel("m", "1"), OFF)
    with pytest.raises(ConfigurationError, match="configured twice"):
        registry.add(EchoModel("m", "1"), OFF)


async def test_batching_settings_choose_the_runner(registry: ModelRegistry) -> None:
    sizes: list[int] = []
    batched = registry.add(
        EchoModel("batched"), BatchingSettings(max_batch_size=7, max_delay_ms=5), sizes.append
    )
    plain = registry.add(EchoModel("plain"), OFF)

    assert isinstance(batched.runner, BatchingRunner)
    assert batched.runner.policy.max_batch_size == 7
    assert batched.runner.policy.max_delay_s == pytest.approx(0.005)
    assert isinstance(plain.runner, ModelRunner)
    assert await batched.runner.run(["x"]) == [{"echo": "x", "length": 1}]
    assert sizes == [1]


async def test_unload_all_closes_batchers_and_unloads_models() -> None:
    registry = ModelRegistry()
    model = AsyncLoadModel()
    handle = registry.add(model, ON)
    await registry.load_all()

    await registry.unload_all()

    assert model.unloaded
    assert not handle.ready
    assert not registry.handles()[0].ready
    assert isinstance(handle.runner, BatchingRunner)
    with pytest.raises(Exception, match="shutting down"):
        await handle.runner.run(["x"])


# -- building models from settings --------------------------------------------------------------------


@pytest.fixture
def skops_file(tmp_path: Path) -> Path:
    path = tmp_path / "clf.skops"
    sio.dump(LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1]), path)
    return path


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Neg", ["X"], ["Y"])],
        "neg",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 1])],
    )
    path = tmp_path / "neg.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def kinds(models: list[Model]) -> list[tuple[str, str, str]]:
    return [(m.name, m.version, type(m).__name__) for m in models]


def test_without_configured_models_the_default_sentiment_model_is_served(
    make_settings: Callable[..., Settings],
) -> None:
    assert kinds(build_models(make_settings())) == [("sentiment", "1", "SentimentModel")]


def test_a_config_listing_several_models_and_versions_is_honoured(
    make_settings: Callable[..., Settings],
    tiny_reviews: tuple[list[str], list[int]],
    skops_file: Path,
    onnx_file: Path,
) -> None:
    settings = make_settings(
        models=[
            ModelSettings(name="sentiment", source="builtin:sentiment"),
            ModelSettings(name="pinned", source="builtin:sentiment", version="1"),
            ModelSettings(
                name="echo", source="tests.models:EchoModel", version="3", options={"delay_s": 0.0}
            ),
            ModelSettings(name="echo", source="tests.models:EchoModel", version="4"),
            ModelSettings(name="sum", source="tests.models:SumModel"),
            ModelSettings(name="clf", source=str(skops_file), version="2"),
            ModelSettings(name="neg", source=str(onnx_file)),
        ]
    )
    repository = ModelRepository(settings.model_repository)
    train_sentiment(repository, data=tiny_reviews)  # sentiment/2
    train_sentiment(repository, name="pinned", data=tiny_reviews)

    models = build_models(settings)

    assert kinds(models) == [
        ("sentiment", "1", "SentimentModel"),
        ("sentiment", "2", "SentimentModel"),
        ("pinned", "1", "SentimentModel"),
        ("echo", "3", "EchoModel"),
        ("echo", "4", "EchoModel"),
        ("sum", "1", "SumModel"),
        ("clf", "2", "SklearnModel"),
        ("neg", "1", "OnnxModel"),
    ]
    assert models[3].options == {"delay_s": 0.0}
    assert isinstance(models[5], SumModel)
    assert isinstance(models[6], SklearnModel)
    assert models[6].path == skops_file
    assert isinstance(models[7], OnnxModel)


async def test_services_serve_every_configured_model_with_its_own_batching(
    make_settings: Callable[..., Settings], skops_file: Path, onnx_file: Path
) -> None:
    settings = make_settings(
        models=[
            ModelSettings(name="echo", source="tests.models:EchoModel", batching=OFF),
            ModelSettings(name="clf", source=str(skops_file)),
            ModelSettings(name="neg", source=str(onnx_file), batching=BatchingSettings(max_batch_size=3)),
        ]
    )
    services = build_services(settings)
    await start_services(services)
    try:
        registry = services.registry
        assert registry.names() == ["clf", "echo", "neg"]
        assert isinstance(registry.get("echo").runner, ModelRunner)
        clf_runner = registry.get("clf").runner
        neg_runner = registry.get("neg").runner
        assert isinstance(clf_runner, BatchingRunner)
        assert isinstance(neg_runner, BatchingRunner)
        assert clf_runner.policy.max_batch_size == settings.batching.max_batch_size
        assert neg_runner.policy.max_batch_size == 3
        assert await registry.get("neg").runner.run([[2.0]]) == [{"Y": [-2.0]}]
        assert (await registry.get("clf").runner.run([[3.0]]))[0]["label"] == 1
    finally:
        await stop_services(services)


def test_a_config_file_lists_models(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    config = tmp_path / "modelwire.toml"
    config.write_text(
        """
[[models]]
name = "echo"
source = "tests.models:EchoModel"
version = "7"
options = { delay_s = 0.25 }

[[models]]
name = "sum"
source = "tests.models:SumModel"
batching = { enabled = false }
"""
    )
    settings = make_settings(config=config)
    models = build_models(settings)
    assert kinds(models) == [("echo", "7", "EchoModel"), ("sum", "1", "SumModel")]
    assert models[0].options == {"delay_s": 0.25}
    assert settings.models[1].batching == OFF


def test_a_pinned_version_that_does_not_exist(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        models=[ModelSettings(name="sentiment", source="builtin:sentiment", version="5")]
    )
    with pytest.raises(ConfigurationError, match="no version 5"):
        build_models(settings)


def test_the_default_model_is_trained_when_the_repository_is_empty(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_reviews: tuple[list[str], list[int]],
) -> None:
    def small_training(repository: ModelRepository, **kwargs: Any) -> Any:
        return train_sentiment(repository, **kwargs, data=tiny_reviews)

    monkeypatch.setattr(registry_module, "train_sentiment", small_training)
    stages: list[str] = []
    settings = Settings(data_dir=tmp_path / "fresh")

    models = build_models(settings, progress=lambda stage, fraction: stages.append(stage))

    assert kinds(models) == [("sentiment", "1", "SentimentModel")]
    assert stages[-1] == "done"
    assert ModelRepository(settings.model_repository).versions("sentiment") == ["1"]
    assert isinstance(models[0], SentimentModel)
    models[0].load()  # the freshly trained version is servable
    assert models[0].predict(["wonderful"])[0]["sentiment"] == "positive"


@pytest.mark.parametrize(
    "source",
    [
        "nonsense",
        "model.txt",
        "builtin:nothing",
        "no_such_package_xyz.models:Model",
        "tests.models:NoSuchModel",
        "modelwire.settings:Settings",
        "tests.models:",
    ],
)
def test_bad_sources_are_configuration_errors(make_settings: Callable[..., Settings], source: str) -> None:
    settings = make_settings(models=[ModelSettings(name="x", source=source)])
    with pytest.raises(ConfigurationError):
        build_models(settings)


@pytest.mark.parametrize("suffix", [".skops", ".joblib", ".onnx"])
async def test_a_missing_model_file_fails_at_load(
    tmp_path: Path, suffix: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(models=[ModelSettings(name="gone", source=str(tmp_path / f"gone{suffix}"))])
    services = build_services(settings)
    with pytest.raises(ConfigurationError, match="does not exist"):
        await start_services(services)
    await stop_services(services)


def _start_on_empty(data_dir: str, start: Any, versions: Any) -> None:
    """One process starting on an empty repository (run twice at once by the test below)."""
    from tests.model.conftest import NEGATIVE, POSITIVE

    def small_training(repository: ModelRepository, **kwargs: Any) -> Any:
        return train_sentiment(
            repository, **kwargs, data=(POSITIVE + NEGATIVE, [1] * len(POSITIVE) + [0] * len(NEGATIVE))
        )

    registry_module.train_sentiment = small_training  # type: ignore[assignment]
    start.wait(60)
    models = build_models(Settings(data_dir=Path(data_dir)))
    versions.put([m.version for m in models])


def test_two_processes_starting_on_one_empty_repository_train_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, versions = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_start_on_empty, args=(str(tmp_path / "shared"), start, versions))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    try:
        served = [versions.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(30)
    assert [p.exitcode for p in processes] == [0, 0]
    assert served == [["1"], ["1"]]  # both serve the one version one of them trained
    assert ModelRepository(tmp_path / "shared" / "models").versions("sentiment") == ["1"]


@pytest.fixture
def skops_only(tmp_path: Path, tiny_reviews: tuple[list[str], list[int]]) -> Settings:
    """A data dir whose only sentiment version scikit-learn wrote (as before numpy trained it)."""
    settings = Settings(data_dir=tmp_path / "old")
    train_sentiment(ModelRepository(settings.model_repository), data=tiny_reviews, trainer="sklearn")
    return settings


def test_without_the_sklearn_extra_old_versions_are_left_out_and_a_numpy_one_trained(
    skops_only: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tiny_reviews: tuple[list[str], list[int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def small_training(repository: ModelRepository, **kwargs: Any) -> Any:
        return train_sentiment(repository, **kwargs, data=tiny_reviews)

    monkeypatch.setattr(registry_module, "train_sentiment", small_training)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "skops", None)

    with caplog.at_level(logging.WARNING, logger="modelwire.model"):
        models = build_models(skops_only)

    assert kinds(models) == [("sentiment", "2", "SentimentModel")]  # version 1 (skops) is not served
    assert "version 1 is a scikit-learn artifact" in caplog.text
    assert "pip install 'modelwire[sklearn]'" in caplog.text
    models[0].load()
    assert models[0].predict(["wonderful"])[0]["sentiment"] == "positive"
    # asked for by number, the old version is served as asked, and its load names the extra
    pinned = Settings(
        data_dir=skops_only.data_dir,
        models=[ModelSettings(name="sentiment", source="builtin:sentiment", version="1")],
    )
    (old,) = build_models(pinned)
    with pytest.raises(ConfigurationError, match=r"modelwire\[sklearn\]"):
        old.load()


def test_with_the_sklearn_extra_old_versions_are_served(skops_only: Settings) -> None:
    models = build_models(skops_only)
    assert kinds(models) == [("sentiment", "1", "SentimentModel")]
    models[0].load()
    assert models[0].info().platform == "scikit-learn"
