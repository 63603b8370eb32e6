"""``VersionCatalog``: the versions of each served model that exist on disk, and what is kept about how
they are served (default version, its history, traffic) so a restart keeps it.

Only repository models (``builtin:sentiment``: ``<root>/<model>/<version>/``) have versions on disk that
can be found, loaded, and deleted; a model from a single file or a class has the one version it was
configured with. The serving state is ``<root>/<model>/serving.json``, written atomically::

    {"default": "2", "history": ["1"], "traffic": {"versions": {"2": 90, "3": 10}, "sticky": null,
     "shadow": null}}
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelwire.errors import ConfigurationError, ModelNotFoundError
from modelwire.model.base import Model
from modelwire.model.gate import Verdict, judge
from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import SentimentModel
from modelwire.settings import ModelSettings, PromotionSettings

__all__ = ["SERVING", "VersionCatalog"]

logger = logging.getLogger("modelwire.model")

SERVING = "serving.json"


class VersionCatalog:
    """Repository versions of the configured models (see the module docstring)."""

    def __init__(self, root: Path, specs: Sequence[ModelSettings]) -> None:
        self.repository = ModelRepository(root)
        self._specs = {s.name: s for s in specs}

    def in_repository(self, name: str) -> bool:
        """Whether ``name``'s versions live in the repository (found, loaded and deleted there)."""
        spec = self._specs.get(name)
        return spec is not None and spec.source == "builtin:sentiment" and spec.version is None

    def pinned(self, name: str) -> bool:
        """Whether ``name`` is configured with ``pinned = true`` (never unloaded by the memory budget)."""
        spec = self._specs.get(name)
        return spec is not None and spec.pinned

    def promotion(self, name: str) -> PromotionSettings:
        spec = self._specs.get(name)
        return spec.promotion if spec is not None else PromotionSettings()

    def gate_on_disk(self, name: str, version: str, mode: str | None = None) -> Verdict:
        """Judge a version just saved into the repository with no server involved (``modelwire train``)
        and record the verdict in ``serving.json``, so the next start serves the right default."""
        folder = self.repository.root / name
        path = folder / SERVING
        try:
            state = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            state = {}
        others = [v for v in self.repository.versions(name) if v != version]
        saved = state.get("default") if isinstance(state, dict) else None
        current = saved if saved in others else (others[-1] if others else None)
        promotion = self.promotion(name)

        def metrics(v: str) -> dict[str, Any]:
            return dict(self.repository.metadata(name, v).metrics)

        verdict = judge(
            mode or promotion.mode,
            metrics(version),
            metrics(current) if current is not None else None,
            margin=promotion.margin,
            floor=promotion.floor,
            current_version=current,
        )
        history = [str(v) for v in state.get("history", [])] if isinstance(state, dict) else []
        if verdict.promoted and current is not None:
            history.append(current)
        new_state = dict(state) if isinstance(state, dict) else {}
        new_state.update({"default": version if verdict.promoted else current, "history": history[-20:]})
        self._write(folder, new_state)
        return verdict

    def on_disk(self, name: str) -> list[str]:
        return self.repository.versions(name) if self.in_repository(name) else []

    def model(self, name: str, version: str, options: Mapping[str, Any]) -> Model:
        """The servable ``Model`` of a repository version, with the served model's options."""
        if not self.in_repository(name) or version not in self.on_disk(name):
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r} in the repository {self.repository.root}"
            )
        return SentimentModel(name, version, repository=self.repository, **dict(options))

    def metrics(self, name: str, version: str) -> dict[str, Any]:
        """The metrics its trainer recorded (held-out accuracy ...), or ``{}``."""
        if not self.in_repository(name):
            return {}
        try:
            return dict(self.repository.metadata(name, version).metrics)
        except ConfigurationError:
            return {}

    def delete(self, name: str, version: str) -> None:
        """Remove a version's folder: renamed out of sight first (a watcher or a restart never sees half
        a folder), then deleted."""
        folder = self.repository.root / name / version
        if not self.in_repository(name) or not folder.is_dir():
            raise ModelNotFoundError(f"model {name!r} has no version {version!r} on disk")
        trash = self.repository.root / name / f".deleted-{version}-{os.getpid()}"
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def read_serving(self, name: str) -> dict[str, Any]:
        path = self.repository.root / name / SERVING
        if not self.in_repository(name) or not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring %s (%r): serving the newest version", path, exc)
            return {}
        return raw if isinstance(raw, dict) else {}

    def write_serving(self, name: str, state: Mapping[str, Any]) -> None:
        if self.in_repository(name):
            self._write(self.repository.root / name, state)

    def _write(self, folder: Path, state: Mapping[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".serving-", dir=folder)
        with os.fdopen(fd, "w") as handle:
            json.dump(dict(state), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, folder / SERVING)
