"""Training as a job: labelled rows in, a new model version out, registered and served without a restart.

The rows are ``{"text": str, "label": 0|1}`` (checked at submit, so a job never fails later for that).
Training runs ``model/sentiment.py``'s ``train_sentiment`` in a thread, off the event loop; its progress
callback reports stages (and is where a cancelled job stops, before anything is saved). On success the new
version is in the repository and, through ``register``, loaded into the live registry.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from modelwire.core.dataplane import DataPlane
from modelwire.errors import InvalidInputError
from modelwire.jobs.store import Job, JobStore, decode_row
from modelwire.model.base import Model
from modelwire.model.gate import MODES
from modelwire.model.repository import ModelRepository
from modelwire.model.sentiment import SentimentModel, train_sentiment

__all__ = ["Trainer", "TrainingStoppedError", "training_row"]

Register = Callable[..., Coroutine[Any, Any, Any]]
"""Load a new model version, add it to the live registry and let the promotion gate decide whether it
becomes the default: ``register(model, mode=..., by=...)`` returns the verdict (``app/versions.py``)."""
OnStage = Callable[[str, float], Coroutine[Any, Any, None]]


class TrainingStoppedError(Exception):
    """Raised inside the training thread when the job was cancelled or its lease lost."""


def training_row(row: Any, index: int) -> dict[str, Any]:
    """``{"text", "label"}`` with the label as 0 or 1; ``InvalidInputError`` naming the row otherwise."""
    where = f"$.rows[{index}]"
    if not isinstance(row, Mapping):
        raise InvalidInputError(f"training row {index} must be an object with text and label", field=where)
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"training row {index} needs a non-empty text", field=f"{where}.text")
    if isinstance(label, str) and label.strip() in ("0", "1"):
        label = int(label)
    if label not in (0, 1) or isinstance(label, bool):
        raise InvalidInputError(f"training row {index}: label must be 0 or 1", field=f"{where}.label")
    return {"text": text, "label": int(label)}


class Trainer:
    """Trains new versions of sentiment models into the repository under ``root``."""

    def __init__(self, root: Path, dataplane: DataPlane, register: Register) -> None:
        self.repository = ModelRepository(root)
        self.dataplane = dataplane
        self.register = register

    def check_trainable(self, model: Model) -> None:
        if not isinstance(model, SentimentModel):
            raise InvalidInputError(
                f"model {model.name!r} cannot be trained by modelwire (only builtin:sentiment models can)"
            )

    def has_version(self, name: str, version: str) -> bool:
        """Whether this repository holds ``name`` ``version`` (trained here or by a process sharing it)."""
        return version in self.repository.versions(name)

    def model_version(self, name: str, version: str) -> Model:
        """The servable ``Model`` of a trained version, with the options the served model was given."""
        served = self.dataplane.model(name)
        return SentimentModel(name, version, repository=self.repository, **served.options)

    async def run(
        self, job: Job, store: JobStore, on_stage: OnStage, stop: threading.Event
    ) -> dict[str, Any]:
        mode = job.metadata.get("promote")
        if mode is not None and mode not in MODES:
            raise InvalidInputError(
                f"metadata.promote must be one of {', '.join(MODES)} (got {str(mode)[:40]!r})",
                field="$.metadata.promote",
            )
        texts: list[str] = []
        labels: list[int] = []
        after = -1
        while rows := await store.read_inputs(job.id, after=after, limit=5000):
            for _, data in rows:
                row = decode_row(data)
                texts.append(row["text"])
                labels.append(row["label"])
            after = rows[-1][0]
        loop = asyncio.get_running_loop()

        def progress(stage: str, fraction: float) -> None:
            if stop.is_set():
                raise TrainingStoppedError(stage)
            asyncio.run_coroutine_threadsafe(on_stage(stage, fraction), loop)

        report = await asyncio.to_thread(
            train_sentiment, self.repository, name=job.model, data=(texts, labels), progress=progress
        )
        verdict = await self.register(
            self.model_version(job.model, report.version), mode=mode, by=job.owner or "anonymous"
        )
        return {
            **(verdict.to_json() if verdict is not None else {}),
            "version": report.version,
            "accuracy": round(report.accuracy, 4) if report.accuracy == report.accuracy else None,
            "n_train": report.n_train,
            "n_test": report.n_test,
            "seconds": round(report.seconds, 3),
        }
