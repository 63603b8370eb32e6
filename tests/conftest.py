from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.builder import build_services
from modelwire.app.services import Services
from modelwire.model.base import Model
from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import load_reviews, train_sentiment
from modelwire.settings import Settings
from tests.serving import ServeModule

pytest_plugins = ["tests.redis_server"]  # redis_server / redis_prefix / redis_backend fixtures


@pytest.fixture(scope="session")
def trained_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding sentiment/1, trained once per test session on the real reviews."""
    data_dir = tmp_path_factory.mktemp("data")
    train_sentiment(ModelRepository(data_dir / "models"), data=load_reviews())
    return data_dir


@pytest.fixture
def data_dir(trained_data_dir: Path, tmp_path: Path) -> Path:
    """A per-test copy of the trained data dir (tests may add versions)."""
    target = tmp_path / "data"
    shutil.copytree(trained_data_dir, target)
    return target


@pytest.fixture
def make_settings(data_dir: Path) -> Callable[..., Settings]:
    """Settings bound to loopback and ephemeral ports, with the trained data dir."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0, "data_dir": data_dir}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_services(make_settings: Callable[..., Settings]) -> Callable[..., Services]:
    """Build (not start) services with the default model plus any extra ``Model`` instances."""

    def make(*extra: Model, settings: Settings | None = None, default: bool = True) -> Services:
        settings = settings or make_settings()
        from modelwire.model.registry import build_models

        models = (build_models(settings) if default else []) + list(extra)
        return build_services(settings, models=models)

    return make


@pytest.fixture(scope="module")
def serve_module(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeModule]:
    """Start a real server once for the requesting test module: ``serve_module(*models, **settings)``.

    A module's ``server`` fixture is then one call, e.g.
    ``return serve_module(EchoModel("echo"), jobs={"batch_size": 2})``; servers stop when the module ends.
    ``trained_data_dir`` is only asked for (trained) when a server or data dir needs a copy of it.
    """

    def trained() -> Path:
        return Path(request.getfixturevalue("trained_data_dir"))

    servers = ServeModule(request.module.__name__.rsplit(".", 1)[-1], trained, tmp_path_factory)
    try:
        yield servers
    finally:
        servers.stop()
