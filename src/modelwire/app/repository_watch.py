"""``RepositoryWatcher``: versions dropped into (or removed from) the model repository while serving.

How this works. A scan compares, for each repository model, the complete version folders on disk
(``<root>/<model>/<n>/`` with ``metadata.json`` and an artifact) with the versions served. A new one goes
through ``ModelAdmin.register``: loaded, warmed up, and judged by the promotion gate, exactly like a
trained one; one whose folder is gone goes through ``ModelAdmin.retire``: drained and unloaded (not the
default, nor one taking traffic). Scans run at start, then on every batch of file events from watchfiles
(``model_watch = "watchfiles"`` or ``"auto"`` when it is installed: inotify on Linux), or every
``model_watch_poll_s`` seconds (``"poll"``, and ``"auto"`` without watchfiles).

Folders are expected to appear whole: copy into a dot-folder (ignored) and rename it into place, as
``modelwire train`` does. A version that fails to load is reported once (``failed``, with its reason, in the
repository index) and tried again only when its ``metadata.json`` changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from pathlib import Path

from modelwire.core.admin import ModelAdmin

__all__ = ["RepositoryWatcher"]

logger = logging.getLogger("modelwire.model")


class RepositoryWatcher:
    """Follows ``root`` for ``admin`` (see the module docstring)."""

    def __init__(self, admin: ModelAdmin, root: Path, *, mode: str = "auto", poll_s: float = 2.0) -> None:
        self._admin = admin
        self._root = root
        self._poll_s = poll_s
        has_watchfiles = importlib.util.find_spec("watchfiles") is not None
        if mode == "watchfiles" and not has_watchfiles:
            logger.warning("model_watch = 'watchfiles' but watchfiles is not installed: polling instead")
        self.mode = "watchfiles" if mode in ("auto", "watchfiles") and has_watchfiles else "poll"
        self._stop = asyncio.Event()
        self._watching = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failed: dict[tuple[str, str], float] = {}
        self.scans = 0
        """Scans done (tests wait on it)."""
        self.scanned = asyncio.Condition()

    async def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        await self.scan()
        self._task = asyncio.create_task(self._run(), name="repository-watch")
        if self.mode == "watchfiles":  # events from now on are seen: a version dropped after start() is too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watching.wait(), 10)
        logger.info("watching the model repository %s (%s)", self._root, self.mode)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        if self.mode == "watchfiles":
            import watchfiles

            # yield_on_timeout: an empty batch every rust_timeout ms; the first one says the watch is set up
            async for changes in watchfiles.awatch(
                self._root,
                stop_event=self._stop,
                recursive=True,
                debounce=200,
                rust_timeout=500,
                yield_on_timeout=True,
            ):
                self._watching.set()
                if changes:
                    await self.scan()
            return
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._poll_s)
            if not self._stop.is_set():
                await self.scan()

    async def scan(self) -> None:
        """Bring the served versions in line with the repository, once."""
        admin = self._admin
        try:
            for name in admin.registry.names():
                if not admin.catalog.in_repository(name):
                    continue
                on_disk = set(admin.catalog.on_disk(name))
                served = set(admin.registry.versions(name))
                for version in sorted(on_disk - served, key=int):
                    await self._add(name, version)
                for version in sorted(served - on_disk):
                    await admin.retire(name, version)
        except Exception:  # a scan that fails is logged; the next event or poll tries again
            logger.exception("scanning the model repository %s failed", self._root)
        finally:
            async with self.scanned:
                self.scans += 1
                self.scanned.notify_all()

    async def _add(self, name: str, version: str) -> None:
        marker = self._root / name / version / "metadata.json"
        try:
            stamp = marker.stat().st_mtime
        except OSError:
            return
        if self._failed.get((name, version)) == stamp:
            return
        admin = self._admin
        served = admin.registry.get(name, None, require_ready=False).model
        try:
            verdict = await admin.register(
                admin.catalog.model(name, version, served.options), by="repository"
            )
        except Exception as exc:  # noqa: BLE001 - a bad folder is reported, never stops the watcher
            self._failed[(name, version)] = stamp
            logger.error("model %s version %s from the repository did not load: %s", name, version, exc)
            return
        self._failed.pop((name, version), None)
        logger.info("model %s version %s from the repository: %s", name, version, verdict.reason)
