"""The payload log: a sample of inference calls written as CloudEvents NDJSON, never slowing a request.

How it works. ``record`` is a data plane tap: with probability ``sample_rate`` it renders the call's
envelope (``monitoring/payloads.py``) and appends it to a bounded queue; when the queue holds ``buffer``
lines the call is dropped and counted (``modelwire_payload_log_total{outcome="dropped"}``). One task takes
what is queued every ``flush_interval_s`` (or as soon as a batch is large) and hands it to the sink:

- ``file`` (default): ``<data dir>/payloads/payloads-<start>-<pid>-<n>.ndjson``, each batch one ``write``
  of whole lines (a process killed mid-way loses at most the batch not yet written, never half a line,
  and may leave its newest file empty when killed between creating it and its first write); at
  ``max_file_bytes`` the next file begins, and only the newest ``max_files`` files are kept;
- a broker or Redis URL: each line published through the ``[[event_sinks]]`` transports
  (``backends/<broker>/publisher.py``) to ``destination``, reconnecting with a growing delay; lines queued
  meanwhile stay in the bounded queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from modelwire.backends.queue import EventTransport
from modelwire.monitoring.payloads import PAYLOAD_TYPE, payload_event, payload_files
from modelwire.observability.metrics import Metrics
from modelwire.observability.tracing import current_trace
from modelwire.settings import PayloadLogSettings

__all__ = ["FileSink", "PayloadLog"]

logger = logging.getLogger("modelwire.monitoring")
_BATCH = 512
_STOP_FLUSH_S = 5.0


class FileSink:
    """Rotating NDJSON files in ``folder``."""

    def __init__(self, folder: Path, max_file_bytes: int, max_files: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._count = 0
        self._fd: int | None = None
        self._size = 0
        self.display = str(folder)

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        path = self.folder / f"payloads-{self._stamp}-{os.getpid()}-{self._count:06d}.ndjson"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        for old in payload_files(self.folder)[: -self.max_files]:
            with contextlib.suppress(OSError):
                old.unlink()

    def write(self, lines: list[bytes]) -> None:
        """Append whole lines; start a new file first when this one is full."""
        if self._fd is None or self._size >= self.max_file_bytes:
            self.close()
            self._open()
        assert self._fd is not None
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PayloadLog:
    """Samples calls into a bounded queue; one task writes them to the sink."""

    def __init__(
        self,
        settings: PayloadLogSettings,
        metrics: Metrics,
        *,
        folder: Path,
        transport: EventTransport | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.file = (
            FileSink(folder, settings.max_file_bytes, settings.max_files) if transport is None else None
        )
        self.source = f"modelwire://{socket.gethostname()}/{os.getpid()}"
        self._queue: collections.deque[bytes] = collections.deque()
        self._rng = rng
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._connected = False
        self.folder = folder
        self._written = metrics.payload_log.labels("written")
        self._dropped = metrics.payload_log.labels("dropped")
        self.written = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self.settings.sample_rate > 0

    def record(self, call: Any) -> None:
        """The data plane's tap: sample, render, enqueue (or drop and count). Never blocks, never raises."""
        if self._rng() >= self.settings.sample_rate:
            return
        if len(self._queue) >= self.settings.buffer:
            self.dropped += 1
            self._dropped.inc()
            return
        trace = current_trace()
        envelope = payload_event(
            source=self.source,
            request_id=(trace.request_id if trace is not None and trace.request_id else secrets.token_hex(8)),
            trace_id=trace.trace_id if trace is not None else "",
            model=call.model,
            version=call.version,
            protocol=call.protocol,
            instances=call.instances,
            results=call.results,
            latency_s=call.latency_s,
            status=call.code,
            time=call.time,
            inputs=self.settings.inputs,
        )
        try:
            line = msgspec.json.encode(envelope) + b"\n"
        except (TypeError, ValueError, OverflowError):  # a model's own output types: logged as their repr
            envelope["data"]["outputs"] = repr(envelope["data"]["outputs"])[:10_000]
            envelope["data"].pop("inputs", None)
            line = msgspec.json.encode(envelope) + b"\n"
        self._queue.append(line)
        if len(self._queue) >= _BATCH:
            self._wakeup.set()

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="payload-log")

    async def stop(self) -> None:
        """Write what is queued (for at most a few seconds), then close the sink."""
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_FLUSH_S):
                    await asyncio.shield(task)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue:
            logger.info("payload log: %d record(s) not written before stopping", len(self._queue))
        if self.file is not None:
            self.file.close()
        if self.transport is not None:
            await self.transport.close()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.flush_interval_s):
                        await self._wakeup.wait()
                self._wakeup.clear()
            try:
                await self._flush()
                delay = 0.1
            except Exception as exc:  # noqa: BLE001 - the sink is down: keep the lines (bounded), retry
                logger.warning("payload log: cannot write to %s (%s); retrying", self._display(), exc)
                if self.transport is not None:
                    await self.transport.close()
                    self._connected = False
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            if self._stopping:
                return

    def _display(self) -> str:
        return self.transport.display if self.transport is not None else str(self.folder)

    async def _flush(self) -> None:
        """Write the queue in batches. A batch leaves the queue before it is written (a cancelled wait
        for the writing thread cannot write it twice); it goes back to the front if writing fails."""
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
            sent = 0
            try:
                if self.file is not None:
                    await asyncio.to_thread(self.file.write, batch)
                    sent = len(batch)
                else:
                    assert self.transport is not None
                    if not self._connected:
                        await self.transport.connect()
                        self._connected = True
                    for line in batch:
                        await self.transport.send("payloads", line.rstrip(b"\n"), {"ce-type": PAYLOAD_TYPE})
                        sent += 1
            except Exception:
                self._queue.extendleft(reversed(batch[sent:]))
                raise
            finally:
                self.written += sent
                self._written.inc(sent)
