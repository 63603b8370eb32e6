"""The repository watcher (watchfiles and polling): a version folder renamed into the repository is
loaded, warmed up and gated without a restart; one removed is unloaded; a broken one is failed, not fatal."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.services import Services
from modelwire.settings import Settings
from tests.core.conftest import RunningServices


def drop_version(root: Path, name: str, source: str, target: str, *, broken: bool = False) -> None:
    """What a CI pipeline does: copy into a dot-folder, then rename it into place (one event, whole)."""
    staging = root / name / f".incoming-{target}"
    shutil.copytree(root / name / source, staging)
    meta = json.loads((staging / "metadata.json").read_text())
    meta["version"] = target
    (staging / "metadata.json").write_text(json.dumps(meta))
    if broken:
        (staging / "model.npz").write_bytes(b"not an archive")
    os.rename(staging, root / name / target)


async def event(services: Services, subscription: Any, type_: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        async for item in subscription:
            if item.type == type_:
                return dict(item.data)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("mode", ["watchfiles", "poll"])
async def test_versions_dropped_in_and_removed_are_followed(
    running_services: RunningServices, make_settings: Callable[..., Settings], mode: str
) -> None:
    settings = make_settings(model_watch=mode, model_watch_poll_s=0.05)  # a copy of the trained data dir
    root = settings.model_repository
    async with running_services(settings=settings, default=True) as services:
        assert services.watcher is not None
        assert services.watcher.mode == mode
        async with services.events.subscribe(["models"]) as subscription:
            drop_version(root, "sentiment", "1", "2")
            promoted = await event(services, subscription, "model.promoted")  # same accuracy: passes the gate
            assert (promoted["version"], promoted["by"]) == ("2", "repository")
            assert services.registry.get("sentiment", "2").ready
            assert services.dataplane.resolve_version("sentiment") == "2"

            drop_version(root, "sentiment", "1", "3", broken=True)
            admin = services.admin
            assert admin is not None

            async def failed() -> None:
                while "3" not in services.registry.versions("sentiment"):
                    async with services.watcher.scanned:
                        await services.watcher.scanned.wait()

            await asyncio.wait_for(failed(), 30)
            row = next(v for v in admin.describe("sentiment")["versions"] if v["version"] == "3")
            assert row["state"] == "failed"
            assert "model.npz" in row["reason"]
            assert services.dataplane.resolve_version("sentiment") == "2"  # the default did not move

            await admin.set_default("sentiment", "1")
            shutil.rmtree(root / "sentiment" / "2")
            removed = await event(services, subscription, "model.removed")
            assert removed["version"] == "2"
            assert "2" not in services.registry.versions("sentiment")
