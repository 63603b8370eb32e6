"""The DataPlane: the one façade every transport calls (infer, stream, metadata, health).

It knows no transport. Adapters parse their wire format into instances or ``InferRequest``s, call one
method here, and render the result or the ``ModelwireError`` it raised.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelwire._version import __version__
from modelwire.core.admission import Admission
from modelwire.core.deadline import current_deadline, reset_deadline, use_deadline
from modelwire.core.shadow import Shadows
from modelwire.core.tensors import InferRequest, InferResponse, instances_to_tensors, tensors_to_instances
from modelwire.errors import (
    DeadlineExceededError,
    ErrorCode,
    InvalidInputError,
    ModelwireError,
    OverloadedError,
    PayloadTooLargeError,
    UnavailableError,
)
from modelwire.model.base import Model
from modelwire.model.registry import ModelHandle, ModelRegistry
from modelwire.model.traffic import Traffic, entity_of
from modelwire.observability.metrics import Metrics
from modelwire.observability.tracing import INTERNAL, active_tracer, current_trace, sampled, server_span
from modelwire.security.principal import current_principal
from modelwire.settings import LimitsSettings

__all__ = ["TRAFFIC_KEY_HEADER", "CallContext", "CallRecord", "DataPlane", "Served", "Tap"]

TRAFFIC_KEY_HEADER = "traffic-key"
"""The request header (gRPC: metadata) a ``"sticky": "header"`` split follows, e.g. a user id."""

EXTENSIONS = ("binary_tensor_data", "model_repository_metadata")


@dataclass(slots=True)
class Served:
    """Filled in by the ``DataPlane``: the version that answered (adapters render it: ``Model-Version``)."""

    version: str | None = None


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling and until when. ``deadline`` is on ``time.monotonic()``'s clock.

    ``traffic_key`` (the ``Traffic-Key`` header or metadata) is the key a ``"header"`` sticky canary
    split follows (``model/traffic.py``); ``served`` says afterwards which version answered.
    """

    protocol: str
    deadline: float | None = None
    traffic_key: str | None = None
    served: Served = field(default_factory=Served)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished inference call, as the taps see it (the monitors' sampler, the payload log).

    ``results`` is ``None`` when the call failed as a whole (``code`` says how); ``time`` is Unix seconds.
    """

    protocol: str
    model: str
    version: str | None
    instances: Sequence[Any]
    results: Sequence[Any] | None
    latency_s: float
    code: str
    time: float


Tap = Callable[[CallRecord], None]
"""Called synchronously as each call ends: it must only take a sample (no I/O, no computation)."""


class DataPlane:
    """Inference, streaming, metadata and health over the registry, with limits, deadlines and metrics."""

    def __init__(self, registry: ModelRegistry, limits: LimitsSettings, metrics: Metrics) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self._inflight = 0
        self._accepting = True
        self._draining = False
        self.last_call = 0.0
        """``time.perf_counter()`` when the latest call started (a draining server waits for quiet)."""
        self.admission = Admission(limits.max_concurrent_per_model, limits.max_queued_per_model)
        self.taps: list[Tap] = []
        """Samplers told of every finished call (``CallRecord``): the monitors, the payload log."""
        self.traffic: dict[str, Traffic] = {}
        """Each model's canary split and shadow (set by the admin façade, ``core/admin.py``)."""
        self.shadows = Shadows(registry, metrics, limits.request_timeout_s)
        self.reloader: Callable[[ModelHandle], Awaitable[None]] | None = None
        """Loads again a version the memory budget unloaded (``MemoryBudget.reload``); ``None``: no budget."""
        self.reloadable: Callable[[ModelHandle], bool] = lambda handle: False
        """Whether a version that is not ready is one the memory budget unloaded (a call reloads it)."""

    # -- inference ---------------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        instances: Sequence[Any],
        *,
        version: str | None = None,
        ctx: CallContext,
        path: str | None = None,
    ) -> list[Any]:
        """Predict every instance. Returns one output or ``ModelwireError`` per instance, in order.

        ``path`` is where ``instances`` sit in the caller's request (``$.texts``): an item's error then
        names its own place (``field`` ``$.texts[3]``), for every wire alike. Raises for what fails the
        request as a whole: unknown model, overload, deadline, shutdown.
        """
        results, _version = await self._infer(name, instances, version, ctx, _item_paths(path))
        return results

    async def infer_served(
        self,
        name: str,
        instances: Sequence[Any],
        *,
        version: str | None = None,
        ctx: CallContext,
        path: str | None = None,
        single: bool = False,
    ) -> tuple[list[Any], str]:
        """``infer``, and the version that answered (the default one when ``version`` is None): what an
        answer says in its model-version header. ``single``: ``path`` names the one instance itself
        (``$.text``), as ``predict`` does; its error is returned in the list, not raised."""
        field_of = (lambda _i: path) if single and path is not None else _item_paths(path)
        return await self._infer(name, instances, version, ctx, field_of)

    async def _infer(
        self,
        name: str,
        instances: Sequence[Any],
        version: str | None,
        ctx: CallContext,
        field_of: Callable[[int], str] | None,
    ) -> tuple[list[Any], str]:
        started = self.last_call = time.perf_counter()
        code = ErrorCode.INTERNAL.value
        label = name
        version_served: str | None = None
        results: list[Any] | None = None
        try:
            self._admit()
        except ModelwireError as exc:
            self.metrics.requests.labels(ctx.protocol, label, exc.code.value).inc()
            raise
        inflight = self.metrics.inflight_of(ctx.protocol)
        inflight.inc()
        try:
            current_principal().require_model(name)  # a key limited to some models (security/)
            traffic = self.traffic.get(name)
            if not version and traffic is not None:
                version = self._route(name, traffic, ctx, instances)
            handle = await self._ready(name, version, ctx)  # 503 + Retry-After for one not ready (unloaded)
            version_served = handle.version
            self._check(instances, field_of)
            ctx.served.version = handle.version
            results = await self._run(handle, instances, ctx)
            code = "OK"
            if traffic is not None and traffic.shadow is not None and traffic.mirrored(random.random()):  # noqa: S311 - a traffic share
                self.shadows.mirror(name, traffic.shadow.version, handle.version, instances, results)
            if field_of is not None:
                for i, result in enumerate(results):
                    if isinstance(result, ModelwireError) and result.field is None:
                        result.field = field_of(i)
            return results, handle.version
        except ModelwireError as exc:
            code = exc.code.value
            if exc.code is ErrorCode.NOT_FOUND:
                label = "unknown"  # never let arbitrary names grow the label set
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            self._inflight -= 1
            inflight.dec()
            calls = self.metrics.calls(ctx.protocol, label)
            calls.count(code)
            elapsed = time.perf_counter() - started
            calls.latency.observe(elapsed)
            self.metrics.live.observe(ctx.protocol, elapsed, code == "OK")
            if self.taps and label != "unknown":
                record = CallRecord(
                    ctx.protocol, name, version_served, instances, results, elapsed, code, time.time()
                )
                for tap in self.taps:
                    tap(record)

    async def predict(
        self,
        name: str,
        instance: Any,
        *,
        version: str | None = None,
        ctx: CallContext,
        path: str | None = None,
    ) -> Any:
        """Predict one instance; its per-item error is raised, naming ``path`` (``$.text``) when given."""
        field_of = None if path is None else (lambda _i: path)
        (result,), _version = await self._infer(name, [instance], version, ctx, field_of)
        if isinstance(result, ModelwireError):
            raise result
        return result

    async def infer_tensors(
        self, name: str, request: InferRequest, *, version: str | None = None, ctx: CallContext
    ) -> InferResponse:
        """The Open Inference Protocol call: tensors in, tensors out. Any failed item fails the request."""
        handle = self.registry.get(name, version, require_ready=False)
        info = handle.model.info()  # every version of a model takes the same tensors
        instances = tensors_to_instances(info, request.inputs)
        if "entity" in request.parameters:  # a model that joins features (features/join.py)
            instances = _with_entities(info.inputs[0].name, instances, request.parameters["entity"])
        results = await self.infer(name, instances, version=version, ctx=ctx)
        for result in results:
            if isinstance(result, ModelwireError):
                raise result
        outputs = instances_to_tensors(info, results, [o.name for o in request.outputs])
        return InferResponse(name, ctx.served.version or handle.version, outputs, id=request.id)

    async def stream(
        self,
        name: str,
        requests: AsyncIterator[tuple[Any, ...]],
        *,
        version: str | None = None,
        ctx: CallContext,
        max_pending: int | None = None,
        path: Callable[[Any], str] | None = None,
        versions: dict[Any, str] | None = None,
    ) -> AsyncGenerator[tuple[Any, Any], None]:
        """Pipeline ``(id, instance)`` pairs; yield each ``(id, output or error)`` as soon as it is ready.

        Order is not kept; every request goes through the same batching as single calls. Ids are opaque. A
        request may name its own target as ``(id, instance, name, version)``; an unknown one is that
        item's error. With ``max_pending``, at most that many requests are taken from ``requests`` and not
        yet handed back: at the bound the stream stops pulling, so a source that reads a socket stops
        reading it (backpressure) instead of queueing without bound. ``path(id)`` is where a request
        sits in the caller's messages (``$.text``): its error names it. ``versions``, when given, receives
        ``{id: version that answered}`` before each result is yielded (each request is routed alone).
        """
        await self._ready(name, version, ctx)
        done: asyncio.Queue[tuple[Any, Any] | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(max_pending) if max_pending else None

        async def one(request_id: Any, instance: Any, target: str, target_version: str | None) -> None:
            tracer = active_tracer()
            own = replace(ctx, served=Served())
            try:
                where = path(request_id) if path is not None else None
                if tracer is None or not sampled():
                    result = await self.predict(target, instance, version=target_version, ctx=own, path=where)
                else:  # export on: each message of a stream is a span of its own
                    attributes = {"modelwire.protocol": ctx.protocol, "modelwire.model": target}
                    trace = current_trace()
                    rid = trace.request_id if trace is not None else ""
                    with server_span(tracer, "predict message", None, rid, attributes, INTERNAL):
                        result = await self.predict(
                            target, instance, version=target_version, ctx=own, path=where
                        )
            except ModelwireError as exc:
                result = exc
            if versions is not None and own.served.version is not None:
                versions[request_id] = own.served.version
            await done.put((request_id, result))

        async def feed() -> None:
            source = aiter(requests)
            try:
                while True:
                    if slots is not None:
                        await slots.acquire()
                    request = await anext(source, None)
                    if request is None:
                        break
                    request_id, instance, *routed = request
                    target, target_version = (routed[0], routed[1]) if routed else (name, version)
                    task = asyncio.create_task(one(request_id, instance, target, target_version))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.gather(*list(tasks))
            finally:
                await done.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (item := await done.get()) is not None:
                if slots is not None:
                    slots.release()
                yield item
            await feeder
        finally:
            # The consumer left (or failed): stop reading and cancel what is still running, and wait for the
            # cancellations so every request has released its in-flight slot when this returns.
            feeder.cancel()
            pending = [feeder, *tasks]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _route(
        self, name: str, traffic: Traffic, ctx: CallContext, instances: Sequence[Any] | None
    ) -> str | None:
        key: str | None = None
        if traffic.sticky == "principal":
            key = current_principal().id
        elif traffic.sticky == "header":
            key = ctx.traffic_key
        elif traffic.sticky == "entity" and instances is not None:  # 400 for a call without one entity
            entities = self.registry.get(name, None, require_ready=False).model.entities
            key = entity_of(name, entities, instances)
        chosen = traffic.pick(key, random.random())  # noqa: S311 - a traffic share
        if chosen is None:
            return None
        try:  # a split naming a version that cannot answer now sends that call to the default instead
            if self.registry.get(name, chosen, require_ready=False).ready:
                return chosen
        except ModelwireError:
            pass
        return None

    async def _ready(self, name: str, version: str | None, ctx: CallContext) -> ModelHandle:
        """The handle to run, ready: a version the memory budget unloaded is loaded again, the call
        waiting within its deadline (503 + Retry-After when the load takes longer or finds no room)."""
        try:
            return self.registry.get(name, version)
        except ModelwireError:
            handle = self.registry.get(name, version, require_ready=False)  # 404 as before
            if self.reloader is None or not self.reloadable(handle):
                raise
        reloading = asyncio.ensure_future(self.reloader(handle))  # goes on when this call gives up
        await asyncio.wait({reloading}, timeout=max(self._timeout(ctx), 0.0))
        if reloading.done():
            reloading.result()  # its refusal (no room, a failed load) is this call's error
            return self.registry.get(name, handle.version)
        reloading.add_done_callback(lambda task: task.cancelled() or task.exception())
        raise UnavailableError(
            f"model {name!r} version {handle.version} is being loaded again (the memory budget had "
            "unloaded it) and was not ready within this call's deadline",
            retry_after_s=1.0,
        )

    def _timeout(self, ctx: CallContext) -> float:
        now = time.monotonic()
        timeout = self.limits.request_timeout_s
        for deadline in (ctx.deadline, current_deadline()):  # the call's own, and one set by an adapter
            if deadline is not None:
                timeout = min(timeout, deadline - now)
        return timeout

    async def _run(self, handle: ModelHandle, instances: Sequence[Any], ctx: CallContext) -> list[Any]:
        now = time.monotonic()
        timeout = self._timeout(ctx)
        if timeout <= 0:
            raise DeadlineExceededError("the deadline passed before the model was called")
        token = use_deadline(now + timeout)  # a model that forwards the call passes the rest on
        slots = self.admission.slots(handle.name)
        handle.inflight += 1
        handle.last_used = now
        try:
            async with asyncio.timeout(timeout):
                if not slots.try_enter():
                    await slots.enter()  # wait in the model's line (or OverloadedError when it is full)
                try:
                    return await handle.runner.run(instances)
                finally:
                    slots.leave()
        except TimeoutError:
            raise DeadlineExceededError(
                f"model {handle.name!r} did not answer within {timeout:.3g} s", retry_after_s=None
            ) from None
        finally:
            handle.inflight -= 1
            if handle.inflight == 0 and handle.drained is not None:
                handle.drained.set()  # an unload waits for this
            reset_deadline(token)

    def _admit(self) -> None:
        if not self._accepting:
            raise UnavailableError("the server is shutting down", retry_after_s=1.0)
        if self._inflight >= self.limits.max_inflight:
            raise OverloadedError(
                f"the server is at its limit of {self.limits.max_inflight} requests in flight",
                retry_after_s=1.0,
            )
        self._inflight += 1

    def _check(self, instances: Sequence[Any], field_of: Callable[[int], str] | None) -> None:
        if not instances:
            raise InvalidInputError("the batch is empty")
        if len(instances) > self.limits.max_batch_items:
            raise PayloadTooLargeError(
                f"the batch has {len(instances)} items; the limit is {self.limits.max_batch_items}"
            )
        limit = self.limits.max_text_chars
        for i, item in enumerate(instances):
            if isinstance(item, str) and len(item) > limit:
                where = field_of(i) if field_of is not None else None
                raise PayloadTooLargeError(
                    f"item {i} has {len(item)} characters; the limit is {limit}",
                    field=where,
                    details={} if where is not None else {"index": i},
                )

    # -- metadata and health -----------------------------------------------------------------------

    def drain(self) -> None:
        """A stop began: report not ready (health checks move traffic away) while still serving."""
        self._draining = True

    def stop_accepting(self) -> None:
        """Refuse new requests (UNAVAILABLE); the in-flight ones finish."""
        self._draining = True
        self._accepting = False

    @property
    def inflight(self) -> int:
        return self._inflight

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Serving, and every model's default version can answer (another version that cannot answers
        503 for its own requests only: a gateway whose model services serve different versions)."""
        names = self.registry.names()
        if self._draining or not names:
            return False
        # a version the memory budget unloaded is loaded again by the next call: still servable
        defaults = [self.registry.get(name, None, require_ready=False) for name in names]
        return all(h.ready or self.reloadable(h) for h in defaults)

    def model(self, name: str, version: str | None = None) -> Model:
        """The served ``Model`` object (loaded or not), for domain services that need its class or options.

        Raises ``ModelNotFoundError`` like ``infer`` does.
        """
        return self.registry.get(name, version, require_ready=False).model

    def pick_version(
        self,
        name: str,
        version: str | None = None,
        *,
        ctx: CallContext,
        instances: Sequence[Any] | None = None,
    ) -> str:
        """The version a call from ``ctx`` would run now: ``version``, else the traffic split's pick for
        this caller, else the default. A stream of one request pins it, so one version answers it all.
        ``instances``: the request's (all known, or the first), for a split sticky per entity."""
        traffic = self.traffic.get(name)
        if not version and traffic is not None:
            version = self._route(name, traffic, ctx, instances)
        return self.registry.get(name, version, require_ready=False).version

    async def ready_version(
        self,
        name: str,
        version: str | None = None,
        *,
        ctx: CallContext,
        instances: Sequence[Any] | None = None,
    ) -> str:
        """``pick_version``, once that version can answer: a stream that must decide its version (and
        headers) before it starts waits here, like a call, for a version the memory budget unloaded to be
        loaded again within its deadline (503 + Retry-After when it is not, 404 or 503 as a call gets)."""
        picked = self.pick_version(name, version, ctx=ctx, instances=instances)
        return (await self._ready(name, picked, ctx)).version

    def resolve_version(self, name: str, version: str | None = None, *, require_ready: bool = False) -> str:
        """The version ``infer(name, version=version)`` would run: ``version``, or the default one.

        Raises as ``infer`` would for an unknown model (404), and with ``require_ready`` for one that is
        not ready (503): a stream checks this before it starts, to fail with the usual error.
        """
        return self.registry.get(name, version, require_ready=require_ready).version

    def models_state(self) -> list[dict[str, Any]]:
        """``[{"name", "version", "ready"}]`` for every version, as the live ``metrics`` topic shows them."""
        return [{"name": h.name, "version": h.version, "ready": h.ready} for h in self.registry.handles()]

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.registry.get(name, version, require_ready=False).ready

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelwire", "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        handle = self.registry.get(name, version, require_ready=False)
        info = handle.model.info()
        return {
            "name": info.name,
            "versions": self.registry.versions(name),
            "platform": info.platform,
            "inputs": [spec.to_dict() for spec in info.inputs],
            "outputs": [spec.to_dict() for spec in info.outputs],
            "parameters": info.extra,
        }

    def list_models(self) -> list[dict[str, Any]]:
        out = []
        for name in self.registry.names():
            versions = self.registry.versions(name)
            default = self.registry.get(name, None, require_ready=False)
            out.append(
                {
                    "name": name,
                    "default_version": default.version,
                    "versions": [
                        {"version": v, "ready": self.registry.get(name, v, require_ready=False).ready}
                        for v in versions
                    ],
                    "platform": default.model.platform,
                }
            )
        return out


def _item_paths(path: str | None) -> Callable[[int], str] | None:
    return None if path is None else (lambda i: f"{path}[{i}]")


def _with_entities(input_name: str, instances: list[Any], raw: Any) -> list[Any]:
    """The Open Inference Protocol's ``entity`` request parameter on each row: ``{"user_id": "u1"}`` (every
    row) or ``{"user_id": ["u1", "u2"]}`` (one per row), a JSON object, or its text (gRPC's string
    parameter). A row that is not an object becomes ``{<input name>: row, "entity": ...}``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, dict) or not raw:
        raise InvalidInputError(
            'the entity parameter must be a JSON object, e.g. {"user_id": "u42"}', field="parameters.entity"
        )
    rows = []
    for i, instance in enumerate(instances):
        entity = {}
        for key, value in raw.items():
            if isinstance(value, list):
                if len(value) != len(instances):
                    raise InvalidInputError(
                        f"parameters.entity.{key} has {len(value)} values for {len(instances)} rows",
                        field=f"parameters.entity.{key}",
                    )
                value = value[i]
            entity[key] = value
        base = instance if isinstance(instance, dict) else {input_name: instance}
        rows.append({**base, "entity": entity})
    return rows
