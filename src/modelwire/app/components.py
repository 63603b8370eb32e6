"""What some roles run next to their listeners (``lifecycle.Component``).

- ``UpstreamRouter``: the gateway's (and ``worker --upstream``'s) models are model services reached over
  gRPC; it discovers them, watches their health and puts their models in the registry (``gateway/``).
- ``JobReporter``: ``modelwire worker``'s console: one line when a job starts here and one when it ends.
- ``FeatureIngestion``: the ``source`` of each ``[[feature_views]]``: feature events from brokers into the
  online store (``features/ingest.py``); stopping drains them like the queue consumers.
- ``QueueConsumers``: the ``[[queues]]`` (``--queue URL``): requests from brokers, answered through the
  data plane (``protocols/queues/``); stopping drains them (stop fetching, answer, acknowledge, close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from rich.markup import escape

from modelwire.app.services import Services
from modelwire.backends.queue import QueueBroker
from modelwire.backends.resolve import open_feature_source, open_queue_broker
from modelwire.events.bus import Event
from modelwire.features.ingest import FeatureIngestor
from modelwire.features.views import FeatureView
from modelwire.gateway.router import Router
from modelwire.protocols.queues import QueueConsumer
from modelwire.settings import Settings

__all__ = ["FeatureIngestion", "JobReporter", "QueueConsumers", "UpstreamRouter"]

logger = logging.getLogger("modelwire.gateway")


class UpstreamRouter:
    """Starts a ``Router`` over the services' registry once the services are up; closes it at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router: Router | None = None

    async def start(self, services: Services) -> None:
        router = Router(self.settings, services.registry, services.metrics)
        self.router = router
        await router.start(wait_s=max(2.0, self.settings.gateway.discovery_interval_s))
        router.attach()

    async def stop(self) -> None:
        if self.router is not None:
            await self.router.close()

    def log_status(self) -> None:
        for up in self.router.status() if self.router is not None else []:
            logger.info("upstream %(address)s serving=%(serving)s models=%(models)s", up)


class QueueConsumers:
    """One ``QueueConsumer`` per ``settings.queues`` entry. The URLs are resolved here, before anything is
    built or connected, so an unsupported one (``kafka://``) stops the start with its reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.brokers: list[QueueBroker] = [open_queue_broker(queue) for queue in settings.queues]
        self.consumers: list[QueueConsumer] = []

    async def start(self, services: Services) -> None:
        try:
            for broker, queue in zip(self.brokers, self.settings.queues, strict=True):
                consumer = QueueConsumer(services, broker, queue)
                self.consumers.append(consumer)
                await consumer.start()
        except BaseException:  # one broker unreachable: close the connections already made
            await self.stop()
            raise

    async def stop(self) -> None:
        grace = self.settings.limits.shutdown_grace_s
        await asyncio.gather(*(consumer.stop(grace) for consumer in self.consumers))

    def describe(self) -> str:
        return "; ".join(broker.display for broker in self.brokers)


class JobReporter:
    """``modelwire worker``'s lines on the console (events of other processes' jobs are skipped)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._services: Services | None = None
        self._task: asyncio.Task[None] | None = None

    def announce(self, settings: Settings) -> None:
        """The first lines, before anything is built or connected."""
        from modelwire.console import err_console

        err_console.print(f"[bold]modelwire worker[/]: jobs from {escape(self.where)}", highlight=False)
        if settings.jobs.webhook_secret is None and self.where.startswith("Redis"):
            err_console.print(
                "[yellow]warning:[/] MODELWIRE_JOBS__WEBHOOK_SECRET is not set: webhooks of jobs run here "
                f"are signed with {escape(str(settings.data_dir / 'webhook_secret'))}; give every process "
                "one key",
                highlight=False,
            )

    async def start(self, services: Services) -> None:
        self._services = services
        self._task = asyncio.create_task(self._report(services), name="worker-report")

    def ready(self) -> None:
        from modelwire.console import err_console

        assert self._services is not None
        settings = self._services.settings
        names = ", ".join(f"{m['name']} {m['version']}" for m in self._services.dataplane.models_state())
        err_console.print(
            f"[green]ready[/]: {settings.jobs.workers} job worker(s), lease {settings.jobs.lease_s:g} s; "
            f"models: {escape(names)}. SIGTERM gives a running job back and exits.",
            highlight=False,
        )

    def stopping(self) -> None:
        from modelwire.console import err_console

        err_console.print("stopping: giving running jobs back to the queue", highlight=False)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _report(self, services: Services) -> None:
        from modelwire.console import err_console

        started: dict[str, float] = {}
        async with services.events.subscribe(["jobs/*"]) as sub:
            async for event in sub:
                job_id = str(event.data.get("id", ""))
                if event.type == "job.running":
                    with contextlib.suppress(Exception):
                        job = await services.jobs.store.get(job_id)
                        if services.jobs.runner.leases(job.lease_owner):
                            started[job_id] = time.monotonic()
                            err_console.print(_line(event, "running"), highlight=False)
                elif job_id in started and event.type != "job.progress":
                    seconds = time.monotonic() - started.pop(job_id)
                    err_console.print(
                        _line(event, f"{event.type[4:]} after {seconds:.1f} s"), highlight=False
                    )


def _line(event: Event, what: str) -> str:
    data = event.data
    progress = data.get("progress") or {}
    rows = f"{progress.get('done', 0)}/{progress.get('total', '?')} rows"
    error = data.get("error")
    tail = f": {escape(str(error.get('message', '')))}" if isinstance(error, dict) and error else ""
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(what.split()[0], "cyan")
    return (
        f"[{colour}]job {escape(str(data.get('id')))}[/] {what} ({escape(str(data.get('model')))}, "
        f"{rows}, attempt {data.get('attempts', '?')}){tail}"
    )


class FeatureIngestion:
    """One ``FeatureIngestor`` per feature view with a ``source``. The URLs are resolved here, before
    anything connects, so an unsupported one stops the start with its reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.views = [view for view in settings.feature_views if view.source is not None]
        self.brokers: list[QueueBroker] = [open_feature_source(view) for view in self.views]
        self.ingestors: list[FeatureIngestor] = []

    @staticmethod
    def wanted(settings: Settings) -> bool:
        return any(view.source is not None for view in settings.feature_views)

    def describe(self) -> str:
        pairs = zip(self.views, self.brokers, strict=True)
        return "; ".join(f"features {view.name} <- {broker.display}" for view, broker in pairs)

    async def start(self, services: Services) -> None:
        try:
            counter = services.metrics.queue_messages
            for broker, view in zip(self.brokers, self.views, strict=True):
                assert view.source is not None
                labels = (broker.kind, view.source.queue)

                def count(outcome: str, n: int, labels: tuple[str, str] = labels) -> None:
                    counter.labels(*labels, outcome).inc(n)

                ingestor = FeatureIngestor(
                    services.features,
                    FeatureView.from_settings(view),
                    broker,
                    fields=view.source.fields,
                    max_deliveries=view.source.max_deliveries,
                    batch=view.source.prefetch,
                    count=count,
                )
                self.ingestors.append(ingestor)
                await ingestor.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        grace = self.settings.limits.shutdown_grace_s
        await asyncio.gather(*(ingestor.stop(grace) for ingestor in self.ingestors))
