"""``ModelAdmin``: the admin façade every wire calls to manage models (REST ``/v1/admin`` and the Open
Inference repository extension, gRPC ``modelwire.v1.Admin`` and ``RepositoryIndex``/``...Load``/``...Unload``,
the CLI through them).

It is the one place that decides: every method requires ``models:admin`` of the current principal (so no
wire can skip it), takes the model's lock (two changes to one model never interleave), changes the
registry and the ``DataPlane``'s traffic, persists the serving state (``model/versions.py``), and
publishes the change on the ``models`` topic with who did it (``"by": <principal id>``).

Version lifecycle: ``unavailable`` → ``loading`` → ``ready`` | ``failed`` → ``unloading`` → ``unavailable``
(``model/registry.py``). The default version is the one set here, else the newest; a rollback returns the
default to the one before it and ends any split.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from modelwire.core.budget import MemoryBudget
from modelwire.core.dataplane import DataPlane
from modelwire.core.rollouts import MAX_HISTORY, Publish, Rollouts, admin_id
from modelwire.errors import (
    FailedPreconditionError,
    InvalidInputError,
    ModelNotFoundError,
    UnavailableError,
)
from modelwire.model.base import Model
from modelwire.model.gate import Verdict, judge
from modelwire.model.registry import ModelHandle
from modelwire.model.traffic import Traffic, parse_traffic
from modelwire.model.versions import VersionCatalog
from modelwire.settings import BatchingSettings

__all__ = ["ModelAdmin", "Publish"]

logger = logging.getLogger("modelwire.model")

Batching = Callable[[str], BatchingSettings]


class ModelAdmin(Rollouts):
    """Model management over one ``DataPlane`` (see the module docstring; the default, the traffic and
    rollback are ``Rollouts``' in ``core/rollouts.py``, reloads on demand ``MemoryBudget``'s)."""

    def __init__(
        self,
        dataplane: DataPlane,
        catalog: VersionCatalog,
        publish: Publish,
        batching: Batching,
        observe: Callable[[str], Any] | None = None,
        on_ready: Callable[[ModelHandle], None] | None = None,
        prepare: Callable[[Model], Model] | None = None,
        memory_budget: int | None = None,
    ) -> None:
        self.dataplane = dataplane
        self._prepare = prepare or (lambda model: model)
        """What every new version goes through before it is served (the app's: the feature join)."""
        self.registry = dataplane.registry
        self.catalog = catalog
        self._publish = publish
        self._batching = batching
        self._observe = observe
        self._on_ready = on_ready or (lambda handle: None)
        self._locks: dict[str, asyncio.Lock] = {}
        self._history: dict[str, list[str]] = {}
        self._pins: dict[str, bool] = {}
        """Pins set at run time (``set_pinned``), over the configured ``pinned``."""
        self.budget = MemoryBudget(
            self.registry,
            memory_budget,
            publish,
            pinned=self.pinned,
            on_change=self._on_ready,
            lock=self._lock,
        )
        if self.budget.enabled:  # a call to a version the budget unloaded loads it again
            dataplane.reloader = self.budget.reload
            dataplane.reloadable = lambda handle: (handle.name, handle.version) in self.budget.evicted

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- start-up -----------------------------------------------------------------------------------

    def restore(self) -> None:
        """Apply each model's saved serving state (default, history, traffic) to the registry. Called
        once at start-up; a saved version that is gone is ignored with a warning."""
        for name in self.registry.names():
            state = self.catalog.read_serving(name)
            if not state:
                continue
            known = set(self.registry.versions(name))
            default = state.get("default")
            if isinstance(default, str) and default in known:
                self.registry.set_default(name, default)
            elif default is not None:
                logger.warning(
                    "model %s: saved default version %r is not served; using the newest", name, default
                )
            if isinstance(state.get("pinned"), bool):
                self._pins[name] = state["pinned"]
            history = state.get("history")
            if isinstance(history, list):
                self._history[name] = [str(v) for v in history if str(v) in known][-MAX_HISTORY:]
            traffic = state.get("traffic")
            if isinstance(traffic, dict):
                try:
                    parsed = parse_traffic(traffic, Traffic())
                except InvalidInputError as exc:
                    logger.warning("model %s: ignoring its saved traffic (%s)", name, exc)
                    continue
                if all(v in known for v in parsed.versions) and (
                    parsed.shadow is None or parsed.shadow.version in known
                ):
                    self._set_traffic(name, parsed)

    # -- reading ------------------------------------------------------------------------------------

    def index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        """Every model version, served or on disk: ``[{"name", "version", "state", "reason"}]``."""
        admin_id()
        out: list[dict[str, Any]] = []
        for name in self.registry.names():
            for row in self._versions(name):
                if not ready_only or row["state"] == "ready":
                    out.append({"name": name, **{k: row[k] for k in ("version", "state", "reason")}})
        return out

    def describe(self, name: str) -> dict[str, Any]:
        """One model: its default, versions (state, reason, recorded metrics), traffic and history."""
        admin_id()
        self.registry.get(name, None, require_ready=False)  # 404 for an unknown model
        return {
            "name": name,
            "default_version": self.registry.default_version(name),
            "versions": self._versions(name),
            "traffic": self._traffic(name).to_json(),
            "history": list(self._history.get(name, [])),
            "pinned": self.pinned(name),
        }

    def pinned(self, name: str) -> bool:
        """Whether the memory budget must never unload ``name`` (set at run time, else configured)."""
        return self._pins.get(name, self.catalog.pinned(name))

    def memory(self) -> dict[str, Any]:
        """The memory budget's state (``GET /v1/admin/memory``): budget, used, every version's size,
        last use and pin (``core/budget.py``)."""
        admin_id()
        return self.budget.state()

    def _versions(self, name: str) -> list[dict[str, Any]]:
        served = set(self.registry.versions(name))
        default = self.registry.default_version(name)
        rows = []
        for version in sorted(served | set(self.catalog.on_disk(name)), key=_order):
            if version in served:
                handle = self.registry.get(name, version, require_ready=False)
                state, reason = handle.state, handle.reason
            else:
                state, reason = "unavailable", "on disk, not loaded"
            rows.append(
                {
                    "version": version,
                    "state": state,
                    "reason": reason,
                    "default": version == default,
                    "metrics": self.catalog.metrics(name, version),
                    "size_bytes": self.budget.sizes.get((name, version)),
                }
            )
        return rows

    # -- loading ------------------------------------------------------------------------------------

    async def load(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Load ``version`` (default: the default version), from the repository when it is not served
        yet. Returns its row; a load that fails leaves it ``failed`` with the reason, and raises."""
        who = admin_id()
        async with self._lock(name):
            handle = await self._load(name, version)
        await self._publish("model.loaded", {"name": name, "version": handle.version, "by": who})
        return self.describe(name)

    async def _load(self, name: str, version: str | None) -> ModelHandle:
        try:
            handle = self.registry.get(name, version, require_ready=False)
        except ModelNotFoundError:
            if version is None or not self.catalog.in_repository(name):
                raise
            served = self.registry.get(name, None, require_ready=False).model
            model = self.catalog.model(name, version, served.options)
            observe = self._observe(name) if self._observe is not None else None
            handle = self.registry.add(model, self._batching(name), observe)
        if handle.state in ("ready", "loading"):
            return handle
        if handle.state == "unloading":
            raise FailedPreconditionError(
                f"model {name!r} version {handle.version} is unloading; load it again when it is unloaded"
            )
        try:
            await self.budget.load(handle)
        except UnavailableError:  # the memory budget could not make room
            raise
        except Exception as exc:  # the load's own failure (a missing file, a failed warm-up): its reason
            raise FailedPreconditionError(
                f"model {name!r} version {handle.version} failed to load: {handle.reason}"
            ) from exc
        self._on_ready(handle)
        return handle

    async def unload(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Unload one version, or every version of the model (``version=None``, as the Open Inference
        repository extension's unload does). Calls in flight finish; new ones get 503 + Retry-After."""
        who = admin_id()
        async with self._lock(name):
            self.registry.get(name, None, require_ready=False)
            versions = [version] if version else self.registry.versions(name)
            handles = [self.registry.get(name, v, require_ready=False) for v in versions]
            for handle in handles:
                self.budget.evicted.discard((name, handle.version))  # unloaded by hand: stays so
                await self.registry.unload(handle)
                self._on_ready(handle)
        for handle in handles:
            await self._publish("model.unloaded", {"name": name, "version": handle.version, "by": who})
        return self.describe(name)

    async def delete(self, name: str, version: str) -> dict[str, Any]:
        """Unload a version, forget it and delete its artifact. Not the default, nor one taking traffic."""
        who = admin_id()
        async with self._lock(name):
            if not self.catalog.in_repository(name):
                raise FailedPreconditionError(
                    f"model {name!r} is not a repository model: its artifact is not modelwire's to delete"
                )
            if version not in self.catalog.on_disk(name) and version not in self.registry.versions(name):
                raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
            if version == self.registry.default_version(name):
                raise FailedPreconditionError(
                    f"version {version} is the default of {name!r}: set another default first"
                )
            traffic = self._traffic(name)
            if version in traffic.versions or (traffic.shadow and traffic.shadow.version == version):
                raise FailedPreconditionError(
                    f"version {version} of {name!r} takes traffic: take it out of the split first"
                )
            if version in self.registry.versions(name):
                handle = self.registry.get(name, version, require_ready=False)
                await self.registry.unload(handle)
                self._on_ready(handle)
                self.registry.remove(name, version)
            self.budget.forget(name, version)
            self._history[name] = [v for v in self._history.get(name, []) if v != version]
            self.catalog.delete(name, version)
            self._save(name)
        await self._publish("model.deleted", {"name": name, "version": version, "by": who})
        return self.describe(name)

    async def register(self, model: Model, *, mode: str | None = None, by: str = "system") -> Verdict:
        """Serve a new version (a training job's result, a version found in the repository) and let the
        promotion gate (``model/gate.py``; ``mode`` overrides the model's ``promotion.mode``) decide
        whether it becomes the default. It is loaded (and warmed up) before anyone can be routed to it;
        until the verdict the current default stays pinned, so no call reaches an unjudged version."""
        name = model.name
        model = self._prepare(model)  # a version declaring features gets the join, like those at start
        async with self._lock(name):
            previous = self.registry.default_version(name) if name in self.registry.names() else None
            if previous is not None:
                self.registry.set_default(name, previous)
            observe = self._observe(name) if self._observe is not None else None
            try:
                handle = await self.registry.add_loaded(
                    model, self._batching(name), observe, load=self.budget.load
                )
            except Exception as exc:  # kept, as failed with its reason, for the repository index
                failed = self.registry.add(model, self._batching(name), observe)
                failed.state, failed.reason = "failed", f"{type(exc).__name__}: {exc}"[:500]
                raise FailedPreconditionError(
                    f"model {name!r} version {model.version} failed to load: {failed.reason}"
                ) from exc
            self._on_ready(handle)
            promotion = self.catalog.promotion(name)
            verdict = judge(
                mode or promotion.mode,
                self.catalog.metrics(name, model.version),
                self.catalog.metrics(name, previous) if previous is not None else None,
                margin=promotion.margin,
                floor=promotion.floor,
                current_version=previous,
            )
            if verdict.promoted:
                if previous is not None:
                    history = self._history.setdefault(name, [])
                    history.append(previous)
                    del history[:-MAX_HISTORY]
                self.registry.set_default(name, model.version)
            self._save(name)
        event = {"name": name, "version": model.version, "ready": handle.ready, "by": by}
        await self._publish("model.registered", event)
        await self._publish("model.loaded", event)
        outcome = "model.promoted" if verdict.promoted else "model.not_promoted"
        await self._publish(
            outcome,
            {
                "name": name,
                "version": model.version,
                "previous": previous,
                "reason": verdict.reason,
                "by": by,
            },
        )
        return verdict

    async def retire(self, name: str, version: str, *, by: str = "repository") -> bool:
        """A version whose folder left the repository: drained, unloaded and forgotten. The default version
        and versions taking traffic keep serving (from memory) until that changes; returns whether it went."""
        async with self._lock(name):
            if version not in self.registry.versions(name):
                return False
            traffic = self._traffic(name)
            in_use = version in traffic.versions or (
                traffic.shadow is not None and traffic.shadow.version == version
            )
            if version == self.registry.default_version(name) or in_use:
                logger.warning(
                    "model %s version %s left the repository but is the default or takes traffic: kept",
                    name,
                    version,
                )
                return False
            handle = self.registry.get(name, version, require_ready=False)
            await self.registry.unload(handle)
            self._on_ready(handle)
            self.registry.remove(name, version)
            self.budget.forget(name, version)
            self._history[name] = [v for v in self._history.get(name, []) if v != version]
            self._save(name)
        await self._publish("model.removed", {"name": name, "version": version, "by": by})
        return True

    # -- the memory budget --------------------------------------------------------------------------

    async def load_all(self) -> None:
        """Start-up: load every version, within the memory budget when one is set (the least recently
        used, here the first loaded, are unloaded to make room; pinned ones never)."""
        for handle in self.registry.handles():
            await self.budget.load(handle)

    async def set_pinned(self, name: str, pinned: bool) -> dict[str, Any]:
        """Pin a model (every version; the memory budget never unloads it) or unpin it, at run time. Kept
        in ``serving.json`` for a repository model."""
        who = admin_id()
        if not isinstance(pinned, bool):
            raise InvalidInputError('send {"pinned": true} or {"pinned": false}', field="$.pinned")
        async with self._lock(name):
            self.registry.get(name, None, require_ready=False)  # 404 for an unknown model
            self._pins[name] = pinned
            self._save(name)
        await self._publish("model.pinned" if pinned else "model.unpinned", {"name": name, "by": who})
        return self.describe(name)

    def _save(self, name: str) -> None:
        chosen = self.registry.default_version(name) if name in self.registry.names() else None
        self.catalog.write_serving(
            name,
            {
                "default": chosen,
                "history": self._history.get(name, []),
                "traffic": self._traffic(name).to_json(),
                **({"pinned": self._pins[name]} if name in self._pins else {}),
            },
        )


def _order(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)
