"""The promotion gate's verdicts (pure) and ``modelwire train --promote`` on a repository."""

from __future__ import annotations

from typing import Any

import pytest

from modelwire.model.gate import judge

GATE = {"margin": 0.02, "floor": 0.6}


@pytest.mark.parametrize(
    ("mode", "candidate", "current", "promoted", "why"),
    [
        ("gate", {"accuracy": 0.85}, {"accuracy": 0.86}, True, "passes the gate against version 1's 0.8600"),
        ("gate", {"accuracy": 0.83}, {"accuracy": 0.86}, False, "below version 1's 0.8600 minus the margin"),
        ("gate", {"accuracy": 0.5}, None, True, "first version"),
        ("gate", {"accuracy": 0.55}, {"accuracy": 0.4}, False, "below the floor 0.6000"),
        ("gate", {"accuracy": float("nan")}, {"accuracy": 0.8}, False, "no held-out accuracy"),
        ("gate", {}, {"accuracy": 0.8}, False, "no held-out accuracy"),
        ("gate", {"accuracy": 0.7}, {}, True, "no accuracy recorded"),
        ("always", {"accuracy": 0.1}, {"accuracy": 0.9}, True, "--promote always"),
        ("never", {"accuracy": 0.99}, {"accuracy": 0.5}, False, "--promote never"),
    ],
)
def test_verdicts(
    mode: str, candidate: dict[str, Any], current: dict[str, Any] | None, promoted: bool, why: str
) -> None:
    verdict = judge(mode, candidate, current, current_version="1", **GATE)
    assert verdict.promoted is promoted
    assert why in verdict.reason
