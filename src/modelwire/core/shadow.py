"""``Shadows``: copies of live calls sent to a candidate version after the caller got its answer.

How this works. The ``DataPlane`` answers the caller from the live version, then hands the same instances
and the live outputs to ``mirror``, which starts a task and returns at once. The task runs the shadow
version (through its runner, so batching applies), compares each output with the live one, and records
the outcome, the agreement and the latency in metrics. Nothing it does reaches the caller: it starts after
the answer exists, its errors and timeouts are counted and swallowed, and at most ``MAX_RUNNING`` copies
run at once (more are dropped and counted), so a shadow that hangs holds a bounded number of worker
threads and never the live path's. A copy's slot is released only when its work really ends, not when
it times out, for that reason.

Two outputs agree when they are equal once floating-point fields are left out (a label agrees; a
confidence of 0.91 against 0.93 is not a disagreement).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from modelwire.model.registry import ModelRegistry
from modelwire.observability.metrics import Metrics

__all__ = ["MAX_RUNNING", "Shadows", "agree"]

logger = logging.getLogger("modelwire.model")

MAX_RUNNING = 2


def _settled(value: Any) -> Any:
    if isinstance(value, float):
        return None
    if isinstance(value, dict):
        return {k: _settled(v) for k, v in value.items() if not isinstance(v, float)}
    if isinstance(value, list | tuple):
        return [_settled(v) for v in value]
    return value


def agree(live: Any, shadow: Any) -> bool:
    """Whether two outputs say the same thing (see the module docstring)."""
    if isinstance(live, BaseException) or isinstance(shadow, BaseException):
        return False
    return bool(_settled(live) == _settled(shadow))


class Shadows:
    """Runs shadow copies (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, timeout_s: float) -> None:
        self._registry = registry
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return self._running

    def mirror(
        self, name: str, version: str, live_version: str, instances: Sequence[Any], live: Sequence[Any]
    ) -> None:
        if version == live_version:
            return
        if self._running >= MAX_RUNNING:
            self._metrics.shadow_calls.labels(name, version, "dropped").inc()
            return
        self._running += 1
        task = asyncio.create_task(self._copy(name, version, list(instances), list(live)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, name: str, version: str, instances: list[Any], live: list[Any]) -> None:
        started = time.perf_counter()
        work: asyncio.Future[list[Any]] | None = None
        outcome = "failed"
        try:
            handle = self._registry.get(name, version)
            work = asyncio.ensure_future(handle.runner.run(instances))
            work.add_done_callback(self._release)
            outputs = await asyncio.wait_for(asyncio.shield(work), self._timeout_s)
            # a model that raised answers an error per item (the runner's doing): that call failed
            failed = bool(outputs) and all(isinstance(o, BaseException) for o in outputs)
            outcome = "failed" if failed else "answered"
            agreed = sum(agree(a, b) for a, b in zip(live, outputs, strict=False))
            self._metrics.shadow_items.labels(name, version, "true").inc(agreed)
            self._metrics.shadow_items.labels(name, version, "false").inc(len(live) - agreed)
            self._metrics.shadow_latency.labels(name, version).observe(time.perf_counter() - started)
        except TimeoutError:
            outcome = "timed_out"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:  # noqa: BLE001 - the shadow's failure is a metric, never the caller's
            logger.debug("shadow %s version %s failed: %r", name, version, exc)
        finally:
            if work is None:
                self._running -= 1
            if outcome != "cancelled":
                self._metrics.shadow_calls.labels(name, version, outcome).inc()

    def _release(self, work: asyncio.Future[Any]) -> None:
        self._running -= 1
        if not work.cancelled():
            work.exception()  # retrieved: a failed shadow is not an "exception never retrieved" warning

    async def close(self) -> None:
        """Cancel the copies still running (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
