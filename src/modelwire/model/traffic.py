"""A model's traffic policy: which version answers a call (canary split, sticky per key) and which version
shadows it. Pure logic, no I/O; the ``DataPlane`` asks ``pick`` for every call that names no version, so
every wire (REST, SSE, WebSocket, gRPC, Open Inference, queues) gets the same split.

- ``versions``: percentages per version summing to 100 (``{"1": 90, "2": 10}``). Empty: the default version
  takes everything.
- ``sticky``: ``None`` (each call drawn at random), ``"principal"`` (the caller's identity), ``"header"``
  (the ``Traffic-Key`` request header / gRPC metadata, e.g. a user or entity id) or ``"entity"`` (the
  entity key the request's instances carry, for a model that joins features: ``entity_of``). A sticky
  key always lands on the same version while the split stays the same: its hash places it on [0, 100),
  and the versions own consecutive slices of that line, in version order.
- ``shadow``: a version sent a copy of ``percent`` % of the calls after the caller got its answer.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelwire.errors import InvalidInputError

__all__ = ["STICKY", "Shadow", "Traffic", "entity_of", "no_entity_key", "parse_traffic", "sticky_point"]

STICKY = ("principal", "header", "entity")


@dataclass(frozen=True, slots=True)
class Shadow:
    version: str
    percent: float

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "percent": self.percent}


@dataclass(frozen=True, slots=True)
class Traffic:
    """One model's split and shadow (see the module docstring)."""

    versions: dict[str, float] = field(default_factory=dict)
    sticky: str | None = None
    shadow: Shadow | None = None

    def pick(self, key: str | None, draw: float) -> str | None:
        """The version for a call: by ``key``'s place when sticky and given, else by ``draw`` in [0, 1).
        ``None`` when there is no split (the default version answers)."""
        if not self.versions:
            return None
        point = sticky_point(key) if key is not None and self.sticky is not None else draw * 100.0
        last = None
        total = 0.0
        for version, percent in sorted(self.versions.items(), key=lambda kv: _order(kv[0])):
            if percent <= 0:
                continue
            total += percent
            last = version
            if point < total:
                return version
        return last

    def mirrored(self, draw: float) -> bool:
        """Whether a call is copied to the shadow version (``draw`` in [0, 1))."""
        return self.shadow is not None and draw * 100.0 < self.shadow.percent

    def to_json(self) -> dict[str, Any]:
        return {
            "versions": dict(self.versions),
            "sticky": self.sticky,
            "shadow": self.shadow.to_json() if self.shadow is not None else None,
        }


def sticky_point(key: str) -> float:
    """Where ``key`` sits on [0, 100): the same for the same key in every process (a SHA-256, not
    Python's salted ``hash``), uniform over keys."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def entity_of(model: str, names: Sequence[str], instances: Sequence[Any]) -> str:
    """The sticky key of a call to a model joining features by the entity key ``names``
    (``("user_id",)``): the key values every instance's ``"entity"`` carries, as one JSON text. Raises
    ``InvalidInputError`` (400) for a model with no entity key, an instance without its entity, or a call
    whose instances carry different entities (one call is answered by one version, so a sticky-by-entity
    split takes one entity per call)."""
    if not names:
        raise no_entity_key(model)
    keys: set[str] = set()
    for instance in instances:
        entity = instance.get("entity") if isinstance(instance, Mapping) else None
        if not isinstance(entity, Mapping) or any(n not in entity for n in names):
            raise InvalidInputError(
                f"model {model!r} routes each call by its entity ({', '.join(names)}): send an object "
                f'with "entity": {{"{names[0]}": ...}}'
            )
        keys.add(json.dumps([str(entity[n]) for n in names]))
    if len(keys) > 1:
        raise InvalidInputError(
            f"model {model!r} routes each call by its entity and this call carries {len(keys)} different "
            "entities: send one entity per call"
        )
    if not keys:
        raise InvalidInputError("the batch is empty")
    return keys.pop()


def no_entity_key(model: str) -> InvalidInputError:
    """The 400 for ``"sticky": "entity"`` on a model whose requests carry no entity."""
    return InvalidInputError(
        f"model {model!r} has no entity key (it joins no features), so its split cannot be sticky per "
        'entity: use "sticky": "header" with the entity id in the Traffic-Key header, or "principal"',
        field="$.sticky",
    )


def _order(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _percent(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{field_name} must be a number from 0 to 100", field=field_name)
    if not 0 <= value <= 100:
        raise InvalidInputError(f"{field_name} must be from 0 to 100 (got {value})", field=field_name)
    return float(value)


def parse_traffic(body: Mapping[str, Any], current: Traffic) -> Traffic:
    """``PUT .../traffic``'s body over the current policy: the keys it names replace theirs, the others
    stay (``{"shadow": null}`` ends a shadow, ``{"versions": {}}`` ends a split). Raises
    ``InvalidInputError`` naming the field for a bad percentage, a sum other than 100 or an unknown mode."""
    unknown = sorted(set(body) - {"versions", "sticky", "shadow"})
    if unknown:
        raise InvalidInputError(
            f"unknown field {unknown[0]!r}: send versions, sticky and/or shadow", field=f"$.{unknown[0]}"
        )
    versions = current.versions
    if "versions" in body:
        raw = body["versions"]
        if not isinstance(raw, Mapping):
            raise InvalidInputError('versions must be an object like {"1": 90, "2": 10}', field="$.versions")
        versions = {str(v): _percent(p, f"$.versions.{v}") for v, p in raw.items()}
        if versions and abs(sum(versions.values()) - 100.0) > 1e-6:
            raise InvalidInputError(
                f"the versions' percentages must add up to 100 (they add up to {sum(versions.values()):g})",
                field="$.versions",
            )
    sticky = current.sticky
    if "sticky" in body:
        sticky = body["sticky"]
        if sticky is not None and sticky not in STICKY:
            raise InvalidInputError(
                f"sticky must be one of {', '.join(STICKY)} or null (got {str(sticky)[:40]!r})",
                field="$.sticky",
            )
    shadow = current.shadow
    if "shadow" in body:
        raw_shadow = body["shadow"]
        if raw_shadow is None:
            shadow = None
        elif not isinstance(raw_shadow, Mapping) or "version" not in raw_shadow:
            raise InvalidInputError(
                'shadow must be an object like {"version": "3", "percent": 100}', field="$.shadow"
            )
        else:
            shadow = Shadow(
                str(raw_shadow["version"]), _percent(raw_shadow.get("percent", 100), "$.shadow.percent")
            )
    return Traffic(versions, sticky, shadow)
