"""docs/features.md shows the example model whole: it must be docs/examples/churn_model.py, the file the
join tests serve (tests/features/test_join.py), byte for byte."""

from __future__ import annotations

from pathlib import Path

from tests.docs.blocks import parse

ROOT = Path(__file__).resolve().parents[2]


def test_the_walkthroughs_model_is_the_shipped_example() -> None:
    blocks = [b for b in parse(ROOT / "docs" / "features.md") if b.code.startswith("# churn_model.py\n")]
    assert len(blocks) == 1
    shown = blocks[0].code.removeprefix("# churn_model.py\n")
    assert shown == (ROOT / "docs" / "examples" / "churn_model.py").read_text()
