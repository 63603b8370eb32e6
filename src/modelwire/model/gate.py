"""The promotion gate: whether a newly trained or registered version becomes its model's default.

Pure logic. ``judge`` compares the candidate's held-out accuracy (recorded by its trainer in
``metadata.json``) with the current default's: by default (``gate``) the candidate is promoted when its
accuracy is at least the floor and not below the current default's minus the margin. ``always`` promotes,
``never`` only registers. The verdict's ``reason`` says why, in words a person can act on; the training job's
result and the ``models`` event carry it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MODES", "PromoteMode", "Verdict", "judge"]

PromoteMode = Literal["always", "never", "gate"]
MODES: tuple[str, ...] = ("always", "never", "gate")


@dataclass(frozen=True, slots=True)
class Verdict:
    promoted: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "reason": self.reason}


def _accuracy(metrics: dict[str, Any] | None) -> float | None:
    value = (metrics or {}).get("accuracy")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def judge(
    mode: str,
    candidate: dict[str, Any],
    current: dict[str, Any] | None,
    *,
    margin: float,
    floor: float,
    current_version: str | None = None,
) -> Verdict:
    """The verdict for a candidate with ``candidate`` metrics over a default with ``current`` metrics
    (``None``: there is no default yet, so the candidate is the first version)."""
    if mode == "always":
        return Verdict(True, "promoted: --promote always")
    if mode == "never":
        return Verdict(False, "registered, not promoted: --promote never")
    if current is None:
        return Verdict(True, "promoted: the model's first version")
    accuracy = _accuracy(candidate)
    if accuracy is None:
        return Verdict(
            False,
            "registered, not promoted: no held-out accuracy was measured (too few rows to hold some out); "
            "promote it by hand if you trust it",
        )
    if accuracy < floor:
        return Verdict(
            False,
            f"registered, not promoted: held-out accuracy {accuracy:.4f} is below the floor {floor:.4f}",
        )
    baseline = _accuracy(current)
    name = f"version {current_version}" if current_version else "the default"
    if baseline is not None and accuracy < baseline - margin:
        return Verdict(
            False,
            f"registered, not promoted: held-out accuracy {accuracy:.4f} is below {name}'s {baseline:.4f} "
            f"minus the margin {margin:.4f}",
        )
    against = f"{name}'s {baseline:.4f}" if baseline is not None else f"{name} (no accuracy recorded)"
    return Verdict(True, f"promoted: held-out accuracy {accuracy:.4f} passes the gate against {against}")
