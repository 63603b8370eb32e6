"""``Rollouts``: the part of ``ModelAdmin`` (``core/admin.py``) that decides which version answers a model's
calls: the default version, the canary split and shadow (``model/traffic.py``), and rollback to the
previous default (docs/admin.md). A base class of ``ModelAdmin``, which holds the state it uses (the
registry, the ``DataPlane``'s traffic, the history of defaults, each model's lock) and persists it.

Every method requires ``models:admin`` (``admin_id``), takes the model's lock, and publishes its change on
the ``models`` topic with who did it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from modelwire.core.dataplane import DataPlane
from modelwire.errors import FailedPreconditionError, InvalidInputError
from modelwire.model.registry import ModelHandle, ModelRegistry
from modelwire.model.traffic import Shadow, Traffic, no_entity_key, parse_traffic
from modelwire.security.principal import Scope, current_principal

__all__ = ["MAX_HISTORY", "Publish", "Rollouts", "admin_id"]

Publish = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
"""Publish an event of ``type`` with ``data`` on the ``models`` topic (the app passes the event bus)."""
MAX_HISTORY = 20
"""Previous defaults remembered per model (for ``rollback``)."""


def admin_id() -> str:
    """The calling principal's id, once it is known to hold ``models:admin`` (every admin method asks)."""
    principal = current_principal()
    principal.require(Scope.MODELS_ADMIN)
    return principal.id


class Rollouts:
    """Default, split, shadow and rollback of each model (see the module docstring)."""

    dataplane: DataPlane
    registry: ModelRegistry
    _history: dict[str, list[str]]
    _publish: Publish

    if TYPE_CHECKING:  # ModelAdmin's

        def _lock(self, name: str) -> asyncio.Lock: ...

        async def _load(self, name: str, version: str | None) -> ModelHandle: ...

        def _save(self, name: str) -> None: ...

        def describe(self, name: str) -> dict[str, Any]: ...

    # -- serving ------------------------------------------------------------------------------------

    async def set_default(self, name: str, version: str, *, reason: str | None = None) -> dict[str, Any]:
        """Make ``version`` the default (loaded first if needed). The previous default is remembered for
        ``rollback``. A split is kept; its versions keep their shares."""
        who = admin_id()
        if not isinstance(version, str) or not version:
            raise InvalidInputError('name the version: {"version": "2"}', field="$.version")
        async with self._lock(name):
            previous = self.registry.default_version(name)
            await self._load(name, version)
            if version != previous:
                history = self._history.setdefault(name, [])
                history.append(previous)
                del history[:-MAX_HISTORY]
            self.registry.set_default(name, version)
            self._save(name)
        data = {"name": name, "version": version, "previous": previous, "by": who}
        if reason is not None:
            data["reason"] = reason
        await self._publish("model.default_changed", data)
        return self.describe(name)

    async def set_traffic(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Change the split and/or the shadow (``model/traffic.py``), loading the versions it names. The
        change applies to the next call; calls running keep their version."""
        who = admin_id()
        if not isinstance(body, Mapping):
            raise InvalidInputError("send an object with versions, sticky and/or shadow", field="$")
        async with self._lock(name):
            self.registry.get(name, None, require_ready=False)
            traffic = parse_traffic(body, self._traffic(name))
            served = self.registry.get(name, None, require_ready=False).model
            if traffic.sticky == "entity" and not served.entities:
                raise no_entity_key(name)
            for version in [*traffic.versions, *([traffic.shadow.version] if traffic.shadow else [])]:
                await self._load(name, version)
            self._set_traffic(name, traffic)
            self._save(name)
        await self._publish("model.traffic_changed", {"name": name, **traffic.to_json(), "by": who})
        return self.describe(name)

    async def rollback(self, name: str) -> dict[str, Any]:
        """Return the default and all traffic to the previous default; the split and shadow end."""
        who = admin_id()
        async with self._lock(name):
            history = self._history.get(name, [])
            current = self.registry.default_version(name)
            while history and (history[-1] == current or history[-1] not in self.registry.versions(name)):
                history.pop()
            if not history:
                raise FailedPreconditionError(
                    f"model {name!r} has no previous default version to roll back to"
                )
            previous = history[-1]
            await self._load(name, previous)
            history.pop()
            self.registry.set_default(name, previous)
            self._set_traffic(name, Traffic())
            self._save(name)
        await self._publish(
            "model.rolled_back", {"name": name, "version": previous, "from": current, "by": who}
        )
        return self.describe(name)

    def _set_traffic(self, name: str, traffic: Traffic) -> None:
        if traffic.versions or traffic.shadow is not None:
            self.dataplane.traffic[name] = traffic
        else:
            self.dataplane.traffic.pop(name, None)

    def _traffic(self, name: str) -> Traffic:
        return self.dataplane.traffic.get(name) or Traffic()

    def shadow_of(self, name: str) -> Shadow | None:
        return self._traffic(name).shadow
