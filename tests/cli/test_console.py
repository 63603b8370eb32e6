from __future__ import annotations

import io
import threading

from rich.console import Console

from modelwire.client.results import ModelSummary, ModelVersionStatus
from modelwire.console import models_table, training_progress


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100, force_terminal=False), out


def test_no_bar_unless_training_happens() -> None:
    target, out = _console()
    with training_progress(target):
        pass
    assert out.getvalue() == ""


def test_the_bar_follows_the_stages_from_any_thread() -> None:
    target, out = _console()
    with training_progress(target) as progress:
        progress("reading reviews", 0.0)
        worker = threading.Thread(target=progress, args=("fitting [logistic] regression", 0.6))
        worker.start()
        worker.join()
        progress("done", 1.5)  # clamped
    text = out.getvalue()
    assert "training" in text
    assert "done" in text
    assert "100%" in text


def test_models_table() -> None:
    target, out = _console()
    summary = ModelSummary(
        "sentiment", "2", (ModelVersionStatus("1", True), ModelVersionStatus("2", False)), "scikit-learn"
    )
    target.print(models_table([summary]))
    text = out.getvalue()
    assert "sentiment" in text
    assert "1 ready" in text
    assert "2 not ready" in text
