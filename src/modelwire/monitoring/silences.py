"""Silences: while one is active, alerts whose labels it matches are not announced (their state still
changes and ``GET /v1/alerts`` shows them, marked ``silenced``). Each expires at ``ends_at``."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelwire.errors import InvalidInputError, NotFoundError, ResourceExhaustedError

__all__ = ["Silence", "Silences"]

MAX_DURATION_S = 90 * 86400.0
_LABELS = ("alertname", "severity", "model", "version", "monitor")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.matchers.items())

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "state": "active" if self.active(now) else "expired",
        }


class Silences:
    """The silences of one process, expired ones dropped as time passes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[str, Silence] = {}

    def add(self, body: Any, *, now: float, created_by: str) -> Silence:
        """A silence from ``{"matchers": {label: value}, "duration_s" | "ends_at", "comment"}``."""
        if not isinstance(body, Mapping):
            raise InvalidInputError("a silence is a JSON object with matchers and duration_s", field="$")
        matchers = body.get("matchers")
        if not isinstance(matchers, Mapping) or not matchers:
            raise InvalidInputError(
                f"matchers must be an object of label values, at least one of {', '.join(_LABELS)}, or "
                "a rule's own label",
                field="$.matchers",
            )
        for key, value in matchers.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key or len(key + value) > 300:
                raise InvalidInputError(
                    "every matcher is a label name and a string value", field=f"$.matchers.{str(key)[:64]}"
                )
        ends_at = self._ends_at(body, now)
        comment = body.get("comment", "")
        if not isinstance(comment, str) or len(comment) > 1000:
            raise InvalidInputError("comment is a string of at most 1000 characters", field="$.comment")
        self.prune(now)
        if len(self._items) >= self.limit:
            raise ResourceExhaustedError(f"{self.limit} silences are active; delete one first")
        silence = Silence(secrets.token_hex(8), dict(matchers), now, ends_at, comment, created_by)
        self._items[silence.id] = silence
        return silence

    @staticmethod
    def _ends_at(body: Mapping[str, Any], now: float) -> float:
        if "ends_at" in body:
            raw = body["ends_at"]
            try:
                ends = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInputError("ends_at is an ISO 8601 time", field="$.ends_at") from None
            if ends.tzinfo is None:
                raise InvalidInputError("ends_at needs a time zone (Z or +hh:mm)", field="$.ends_at")
            duration = ends.timestamp() - now
            where = "$.ends_at"
        else:
            given = body.get("duration_s")
            where = "$.duration_s"
            if isinstance(given, bool) or not isinstance(given, (int, float)):
                raise InvalidInputError("give duration_s (seconds) or ends_at", field=where)
            duration = float(given)
        if not 0 < duration <= MAX_DURATION_S:
            raise InvalidInputError(
                f"a silence lasts more than 0 s and at most {MAX_DURATION_S:.0f} s (90 days)", field=where
            )
        return now + float(duration)

    def remove(self, silence_id: str) -> None:
        if self._items.pop(silence_id, None) is None:
            raise NotFoundError(f"no silence {silence_id[:64]!r} (never created, deleted, or expired)")

    def prune(self, now: float) -> None:
        for silence_id in [s.id for s in self._items.values() if not s.active(now)]:
            del self._items[silence_id]

    def active(self, now: float) -> list[Silence]:
        self.prune(now)
        return list(self._items.values())

    def silenced(self, labels: Mapping[str, str], now: float) -> bool:
        return any(s.matches(labels) for s in self.active(now))
