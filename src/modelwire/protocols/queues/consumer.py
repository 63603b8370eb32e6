"""One broker's requests answered through the ``DataPlane``: parse, admit, infer, reply, then acknowledge.

How it works. ``run`` takes deliveries from the broker (``backends/queue.py``) and handles each in a task
of its own, never more than ``prefetch`` at once (the broker hands out no more unacknowledged ones
either), so the batcher sees the concurrency it would see from as many REST clients. Each delivery ends in
exactly one of:

- **answered**: the model's answer, or an error answer (unknown model, a model error, an auth refusal,
  overload) in REST's error shape, published to the reply address, then acknowledged;
- **dead-lettered**: a body that cannot be read (not JSON/msgpack, wrong shape, over the size or depth
  limit), or a message delivered more than ``max_deliveries`` times (it crashed consumers before it could be
  answered): published to the dead-letter destination with the reason, an error answer sent when there is a
  reply address, then acknowledged: once, never in a loop;
- **given back**: a failure of this process (the broker unreachable mid-reply): not acknowledged, so the
  broker delivers it again, counting.

A job message (``"op": "job"``) is submitted through the jobs façade, which decides whether the principal
may (``jobs:write``, ``models:admin`` for a training job), and is answered with the job (the REST 202
body); its ``idempotency-key`` header is the job's Idempotency-Key, kept in the job store.

A request carrying an ``idempotency-key`` header is answered from a bounded in-process record when it is
delivered again (same key, same principal), so a redelivered duplicate gets the same answer as the first.
``stop`` is the graceful drain: stop fetching, finish and acknowledge what is in flight, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry import trace as otel_trace

from modelwire.backends.queue import Delivery, QueueBroker
from modelwire.core.dataplane import CallContext
from modelwire.errors import (
    ConfigurationError,
    InternalError,
    InvalidInputError,
    ModelwireError,
    UnavailableError,
)
from modelwire.jobs.manager import JobRequest
from modelwire.observability.tracing import (
    TraceContext,
    active_tracer,
    current_trace,
    parent_context,
    server_span,
    use_trace,
)
from modelwire.protocols.facades import Facades
from modelwire.protocols.queues.messages import (
    JobMessage,
    MessageCodec,
    QueueRequest,
    answer,
    error_answer,
    header,
)
from modelwire.security.policy import Credentials
from modelwire.security.principal import ALL_SCOPES, Principal, Scope, use_principal
from modelwire.security.scopes import job_scope
from modelwire.settings import QueueSettings

__all__ = ["QueueConsumer"]

logger = logging.getLogger("modelwire.queues")

_IDEMPOTENT_ENTRIES = 10_000
_MAX_KEY_CHARS = 255  # as REST's Idempotency-Key header
_CONSUMER = otel_trace.SpanKind.CONSUMER


class QueueConsumer:
    """The adapter for one ``[[queues]]`` entry over its broker."""

    def __init__(self, services: Facades, broker: QueueBroker, queue: QueueSettings) -> None:
        self.services = services
        self.broker = broker
        self.queue = queue
        self.protocol = f"queue-{broker.kind}"
        limits = services.settings.limits
        self.codec = MessageCodec(
            max_bytes=queue.max_message_bytes or limits.max_body_bytes, max_depth=limits.max_json_depth
        )
        self.default_model = queue.model or services.settings.effective_models()[0].name
        self.api_key_header = services.settings.auth.api_key_header.lower()
        try:
            self.trusted = frozenset(Scope(scope) for scope in queue.scopes)
        except ValueError as exc:
            known = ", ".join(s.value for s in Scope)
            raise ConfigurationError(f"[[queues]] scopes: {exc}; use some of {known}") from None
        metrics = services.metrics
        self.stats = metrics.live.queue(queue.queue_name, broker.kind)  # the dashboard's consumer panel
        self.counts = self.stats.counts
        self._counted = {
            outcome: metrics.queue_messages.labels(broker.kind, queue.queue_name, outcome)
            for outcome in self.stats.OUTCOMES
        }
        self._in_flight = metrics.queue_in_flight.labels(broker.kind, queue.queue_name)
        self._slots = asyncio.Semaphore(queue.prefetch)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._answers: OrderedDict[tuple[str, str], tuple[bytes, str | None]] = OrderedDict()

    async def start(self) -> None:
        """Connect (raises when the broker is unreachable) and start taking messages."""
        try:
            await self.broker.connect()
        except Exception as exc:
            raise UnavailableError(f"cannot consume {self.broker.display}: {exc}") from exc
        self._runner = asyncio.create_task(self._run(), name=f"queue-{self.broker.kind}")
        logger.info("consuming %s", self.broker.display)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _run(self) -> None:
        async for delivery in self.broker.deliveries():
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(delivery))
            self._tasks.add(task)
            self.stats.in_flight += 1
            self._in_flight.inc()
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.stats.in_flight -= 1
        self._in_flight.dec()
        self._slots.release()

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts[outcome] + 1
        self._counted[outcome].inc()

    async def stop(self, grace_s: float) -> None:
        """Stop fetching; answer and acknowledge what is in flight (within ``grace_s``); close."""
        self.broker.stop_fetching()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                if self._runner is not None:
                    await self._runner
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
        for task in (self._runner, *self._tasks):
            if task is not None:
                task.cancel()
        await self.broker.close()
        logger.info("stopped consuming %s: %s", self.broker.display, dict(self.counts))

    async def _handle(self, delivery: Delivery) -> None:
        if delivery.deliveries > 1:
            self._count("redelivered")
        traceparent = header(delivery.headers, "traceparent")
        trace = TraceContext.incoming(traceparent, header(delivery.headers, "x-request-id"))
        use_trace(trace)  # this delivery's own task: logs and the answer name its request id
        try:
            tracer = active_tracer()
            if tracer is None:
                await self._process(delivery)
                return
            attributes = {
                "messaging.system": self.broker.kind,
                "messaging.operation.type": "process",
                "messaging.destination.name": delivery.source,
                "messaging.message.delivery_count": delivery.deliveries,
            }
            name = f"process {delivery.source or self.queue.queue_name}"
            parent = parent_context(traceparent)
            with server_span(tracer, name, parent, trace.request_id, attributes, kind=_CONSUMER):
                await self._process(delivery)
        except Exception as exc:
            err = InternalError()
            logger.error("queue message failed [error_id=%s]; giving it back", err.error_id, exc_info=exc)
            self._count("given_back")
            with contextlib.suppress(Exception):
                await self.broker.retry(delivery)

    async def _process(self, delivery: Delivery) -> None:
        content_type = self.codec.content_type(delivery.content_type)
        if delivery.deliveries > self.queue.max_deliveries:
            poison = InternalError(
                f"the message was delivered {delivery.deliveries} times without being answered "
                f"(max_deliveries {self.queue.max_deliveries}); dead-lettered"
            )
            await self._dead_letter(delivery, poison, content_type)
            return
        try:
            request = self.codec.decode(delivery.body, delivery.content_type)
        except InvalidInputError as exc:  # PayloadTooLargeError included
            await self._dead_letter(delivery, exc, content_type)
            return
        principal, refusal = self._principal(delivery)
        model = request.model or header(delivery.headers, "model") or self.default_model
        headers = {**_echoed(delivery), "model": model}
        key = header(delivery.headers, "idempotency-key")
        if isinstance(request, JobMessage):  # the job store keeps its idempotency key, across restarts
            job = await self._submit(request, model, key, principal, refusal)
            await self.broker.reply(delivery, self.codec.encode(job, content_type), content_type, headers)
            await self.broker.ack(delivery)
            self._count("answered")
            return
        record = (principal.id, key) if key is not None and refusal is None else None
        if record is not None and (known := self._answers.get(record)) is not None:
            data, served = known
            await self.broker.reply(delivery, data, content_type, _served(headers, served))
            await self.broker.ack(delivery)
            return
        result, served = await self._answer(delivery, request, model, principal, refusal)
        data = self.codec.encode(result, content_type)
        await self.broker.reply(delivery, data, content_type, _served(headers, served))
        if record is not None:
            self._remember(record, (data, served))
        await self.broker.ack(delivery)
        self._count("answered")

    async def _answer(
        self,
        delivery: Delivery,
        request: QueueRequest,
        model: str,
        principal: Principal,
        refusal: ModelwireError | None,
    ) -> tuple[Any, str | None]:
        """The answer, and the version that produced it (None when no model ran: unknown, refused...)."""
        version = request.version or header(delivery.headers, "version")
        deadline = time.monotonic() + self.services.settings.limits.request_timeout_s
        ctx = CallContext(self.protocol, deadline)
        dataplane, path = self.services.dataplane, f"$.{request.field}"
        try:
            if refusal is not None:
                raise refusal
            policy = self.services.security
            if policy.enforcing:
                await policy.admit(principal, Scope.PREDICT, model)
            use_principal(principal)  # this task's own context: per-model keys are checked by the core
            single = not request.batch
            instances = [request.value] if single else request.value
            results, served = await dataplane.infer_served(
                model, instances, version=version, ctx=ctx, path=path, single=single
            )
        except ModelwireError as exc:
            return error_answer(exc), None
        if single:
            (result,) = results
            if isinstance(result, ModelwireError):  # the model refused it: the version that did says so
                return error_answer(result), served
            return answer(request, result), served
        return answer(request, results), served

    async def _submit(
        self,
        request: JobMessage,
        model: str,
        key: str | None,
        principal: Principal,
        refusal: ModelwireError | None,
    ) -> Any:
        """The job submitted through the jobs façade (which decides the kind's scope), or an error answer."""
        try:
            if refusal is not None:
                raise refusal
            if key is not None and len(key) > _MAX_KEY_CHARS:
                raise InvalidInputError(
                    f"idempotency-key is longer than {_MAX_KEY_CHARS} characters", field="idempotency-key"
                )
            policy = self.services.security
            if policy.enforcing:  # the rate limit counts it like a submit on any wire; no scope decided here
                await policy.meter(principal, job_scope(request.kind), model)
            use_principal(principal)
            job_request = JobRequest(
                model, request.kind, request.version, request.callback_url, dict(request.metadata), key
            )

            async def rows() -> AsyncIterator[list[Any]]:
                yield request.inputs

            job, _created = await self.services.jobs.submit(job_request, rows())
            return job
        except ModelwireError as exc:
            return error_answer(exc)

    def _principal(self, delivery: Delivery) -> tuple[Principal, ModelwireError | None]:
        """Who the message runs as: its credential when auth is on (the same policy as every wire), the
        queue itself when auth is off or the broker authenticates (``trust_broker``)."""
        policy = self.services.security
        # the configured name, not the message's subject: a wildcard must not mint principals (rate limits)
        queue_principal = Principal(id=f"queue:{self.queue.queue_name}", kind="queue", scopes=ALL_SCOPES)
        if not policy.auth_on:
            return queue_principal, None
        if self.queue.trust_broker:
            trusted = Principal(id=queue_principal.id, kind="queue", scopes=self.trusted, authenticated=True)
            return trusted, None
        bearer = None
        authorization = header(delivery.headers, "authorization")
        if authorization is not None:
            scheme, _, rest = authorization.partition(" ")
            bearer = rest.strip() or None if scheme.lower() == "bearer" else None
        creds = Credentials(bearer=bearer, api_key=header(delivery.headers, self.api_key_header))
        try:
            return policy.authenticate(creds), None
        except ModelwireError as exc:
            return queue_principal, exc

    async def _dead_letter(self, delivery: Delivery, exc: ModelwireError, content_type: str) -> None:
        await self.broker.dead_letter(delivery, f"{exc.code.value}: {exc.message}")
        if delivery.reply_to:
            data = self.codec.encode(error_answer(exc), content_type)
            await self.broker.reply(delivery, data, content_type, _echoed(delivery))
        await self.broker.ack(delivery)
        self._count("dead_lettered")
        logger.info("dead-lettered a message from %s: %s", delivery.source, exc.message)

    def _remember(self, record: tuple[str, str], known: tuple[bytes, str | None]) -> None:
        self._answers[record] = known
        if len(self._answers) > _IDEMPOTENT_ENTRIES:
            self._answers.popitem(last=False)


def _served(headers: dict[str, str], version: str | None) -> dict[str, str]:
    """The answer's headers, with ``model-version`` when a model version produced it."""
    return headers if version is None else {**headers, "model-version": version}


def _echoed(delivery: Delivery) -> dict[str, str]:
    """The request's id (made up when it has none) and trace context, for its answer's headers."""
    trace = current_trace()
    request_id = trace.request_id if trace is not None else header(delivery.headers, "x-request-id")
    echoed = {"x-request-id": request_id or uuid.uuid4().hex}
    if (traceparent := header(delivery.headers, "traceparent")) is not None:
        echoed["traceparent"] = traceparent
    return echoed
