from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.builder import build_services
from modelwire.app.services import Services
from modelwire.model.base import Model
from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import load_reviews, train_sentiment
from modelwire.settings import Settings

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
