"""``Router``: which model services serve which models, whether each is healthy, and the channel to use.

How it works. Every upstream address gets a watcher: a direct channel, a ``grpc.health.v1`` Watch stream,
and, each time the address turns SERVING (and every discovery interval while it is), ``ListModels`` plus
``ModelMetadata`` for each version. From that the router keeps, per (model, version), the addresses that
serve it; a ``RemoteModel`` per (model, version) sits in the gateway's registry, ready while at least one of
its addresses is SERVING (so ``/v2/health/ready`` is ready when every model has a healthy upstream).

Calls do not go through the watchers: addresses serving the same models form a group with one long-lived
channel (``round_robin`` over the group, gRPC's client-side health checking, keepalive, retries; see
``upstreams.py``). An address that stops answering stays in its group, so its channel keeps trying it
and traffic returns by itself when it is back; only DNS forgetting an address, or the address serving other
models, changes a group (then a new channel is made and the old one closed after its calls finished).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelwire.errors import UnavailableError
from modelwire.gateway.remote import CoalescePolicy, RemoteModel, UpstreamGroup, info_from_metadata
from modelwire.gateway.tls import UpstreamTLS, dial
from modelwire.gateway.upstreams import HEALTH_SERVICE, UpstreamSpec, channel_options, group_target
from modelwire.model.base import ModelInfo
from modelwire.model.registry import ModelRegistry
from modelwire.observability.metrics import Metrics
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.settings import BatchingSettings, Settings

__all__ = ["Router"]

logger = logging.getLogger("modelwire.gateway")

Key = tuple[str, str]
_SERVING = health_pb2.HealthCheckResponse.SERVING
_CLOSE_GRACE_S = 30.0
_CALL_TIMEOUT_S = 5.0


@dataclass(slots=True, eq=False)
class Upstream:
    """One model service address, as its watcher last saw it."""

    address: str
    channel: grpc.aio.Channel
    serving: bool = False
    models: dict[Key, ModelInfo] = field(default_factory=dict)
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Router:
    """Discovers the model services, watches their health, and hands out the channel for each model."""

    def __init__(self, settings: Settings, registry: ModelRegistry, metrics: Metrics) -> None:
        self.spec = UpstreamSpec.parse(settings.gateway.upstreams)
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._options = channel_options(settings)
        self._direct_options = [(k, v) for k, v in self._options if k != "grpc.service_config"]
        key = settings.gateway.upstream_key
        self._auth = (("authorization", f"Bearer {key.get_secret_value()}"),) if key is not None else ()
        self.tls = UpstreamTLS.from_settings(settings.gateway, self.spec)
        self._upstreams: dict[str, Upstream] = {}
        self._members: dict[Key, frozenset[str]] = {}
        self._groups: dict[frozenset[str], UpstreamGroup] = {}
        self._attached = False
        self._discovery: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, wait_s: float = 5.0) -> None:
        """Resolve the upstreams and wait (up to ``wait_s``) until each answered or failed once."""
        mode = self.tls.describe() if self.tls is not None else "cleartext"
        logger.info("model services %s over %s", self.spec.describe(), mode)
        self._mark_unknown()
        await self._resolve()
        self._discovery = asyncio.create_task(self._discover_loop(), name="gateway-discovery")
        waits = [asyncio.ensure_future(up.seen.wait()) for up in self._upstreams.values()]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=wait_s)
            for task in pending:
                task.cancel()

    def attach(self) -> None:
        """Serve the discovered models from the registry (after the services started, which marks every
        model it loads ready: readiness here is the upstreams' to decide)."""
        self._attached = True
        self._changed()

    async def close(self) -> None:
        tasks = [t for t in (self._discovery, *(u.task for u in self._upstreams.values())) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for up in self._upstreams.values():
            await up.channel.close(None)
        for group in self._groups.values():
            await group.channel.close(None)
        for task in list(self._closing):
            task.cancel()
        for handle in self._registry.handles():
            if isinstance(handle.model, RemoteModel):
                await handle.model.close()

    # -- routing -----------------------------------------------------------------------------------------

    def group(self, name: str, version: str) -> UpstreamGroup:
        """The channel (and stubs) of the model services serving ``name`` ``version`` now."""
        members = self._members.get((name, version))
        if not members:
            # The caller is told to retry; the internal addresses go to the log only.
            logger.debug(
                "no model service serves %r version %s now (upstreams: %s)",
                name,
                version,
                self.spec.describe(),
            )
            raise UnavailableError(
                f"no model service serves {name!r} version {version} now; try again shortly",
                retry_after_s=1.0,
            )
        group = self._groups.get(members)
        if group is None:
            channel = dial(group_target(sorted(members)), self._options, self.tls)
            group = UpstreamGroup(channel, f"the model services at {', '.join(sorted(members))}", self._auth)
            self._groups[members] = group
        return group

    def status(self) -> list[dict[str, object]]:
        """Each upstream: address, serving, models (for logs and tests)."""
        return [
            {"address": up.address, "serving": up.serving, "models": sorted(f"{n}:{v}" for n, v in up.models)}
            for up in self._upstreams.values()
        ]

    # -- discovery and health ----------------------------------------------------------------------------

    async def _resolve(self) -> None:
        addresses = await self.spec.resolve()
        for address in addresses:
            if address not in self._upstreams:
                channel = dial(group_target([address]), self._direct_options, self.tls)
                up = Upstream(address, channel)
                up.task = asyncio.create_task(self._watch(up), name=f"gateway-watch-{address}")
                self._upstreams[address] = up
        if self.spec.dns is not None and addresses:  # a static list never forgets an address
            for address in set(self._upstreams) - set(addresses):
                up = self._upstreams.pop(address)
                logger.info("upstream %s is gone from DNS", address)
                if up.task is not None:
                    up.task.cancel()
                self._later(up.channel.close(None))
            self._changed()

    async def _discover_loop(self) -> None:
        interval = self._settings.gateway.discovery_interval_s
        while True:
            await asyncio.sleep(interval)
            await self._resolve()
            for up in list(self._upstreams.values()):
                if up.serving:
                    try:
                        await self._list(up)
                    except grpc.aio.AioRpcError:
                        pass  # its watcher reports it
                    except Exception:  # a bad answer must not end discovery
                        logger.exception("cannot list the models of upstream %s", up.address)

    async def _watch(self, up: Upstream) -> None:
        stub = health_pb2_grpc.HealthStub(up.channel)
        retry_s = min(1.0, self._settings.gateway.discovery_interval_s)
        while True:
            try:
                request = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
                async for reply in stub.Watch(request, metadata=self._auth):
                    serving = reply.status == _SERVING
                    if serving and not up.serving:
                        await self._list(up)
                    self._set_serving(up, serving)
            except grpc.aio.AioRpcError as exc:
                if up.serving or not up.seen.is_set():
                    logger.warning(
                        "upstream %s unreachable: %s%s", up.address, exc.details(), self._tls_hint()
                    )
            except Exception:  # a bad answer must not end the watch
                logger.exception("upstream %s answered what the gateway cannot use", up.address)
            self._set_serving(up, False)
            await asyncio.sleep(retry_s)

    async def _list(self, up: Upstream) -> None:
        listed = await pb_grpc.PredictorStub(up.channel).ListModels(
            pb.ListModelsRequest(), timeout=_CALL_TIMEOUT_S, metadata=self._auth
        )
        metadata = oip_grpc.GRPCInferenceServiceStub(up.channel)
        models: dict[Key, ModelInfo] = {}
        for model in listed.models:
            for entry in model.versions:
                key = (model.name, entry.version)
                known = up.models.get(key)
                if known is None:
                    request = oip.ModelMetadataRequest(name=model.name, version=entry.version)
                    reply = await metadata.ModelMetadata(
                        request, timeout=_CALL_TIMEOUT_S, metadata=self._auth
                    )
                    known = info_from_metadata(reply, entry.version)
                models[key] = known
        if models.keys() != up.models.keys():
            logger.info("upstream %s serves %s", up.address, ", ".join(f"{n} {v}" for n, v in sorted(models)))
            up.models = models
            self._changed()

    def _set_serving(self, up: Upstream, serving: bool) -> None:
        up.seen.set()
        if serving != up.serving:
            up.serving = serving
            logger.info("upstream %s is %s", up.address, "SERVING" if serving else "not serving")
            self._changed()

    def _changed(self) -> None:
        """Recompute groups and readiness from what the watchers saw; add models seen the first time."""
        members: dict[Key, set[str]] = {}
        infos: dict[Key, ModelInfo] = {}
        for up in self._upstreams.values():
            for key, info in up.models.items():
                members.setdefault(key, set()).add(up.address)
                infos.setdefault(key, info)
        self._members = {key: frozenset(addresses) for key, addresses in members.items()}
        for unused in set(self._groups) - set(self._members.values()):
            self._later(self._groups.pop(unused).channel.close(_CLOSE_GRACE_S))
        self._mark_unknown()
        if not self._attached:
            return
        registry, metrics = self._registry, self._metrics
        known = {(h.name, h.version): h for h in registry.handles()}
        for key, info in infos.items():
            if key not in known:
                model = RemoteModel(info, self.group, self._coalesce(key[0]))
                known[key] = registry.add(model, BatchingSettings(enabled=False))
        for (name, version), handle in known.items():
            addresses = self._members.get((name, version), frozenset())
            handle.ready = any(self._upstreams[a].serving for a in addresses if a in self._upstreams)
            metrics.model_ready.labels(name, version).set(1 if handle.ready else 0)

    def _coalesce(self, name: str) -> CoalescePolicy | None:
        gateway = self._settings.gateway
        if not gateway.coalesce:
            return None
        observe = self._metrics.batch_size.labels(name).observe  # items per upstream call
        max_bytes = self._settings.grpc.max_message_bytes // 2  # room for the answers
        return CoalescePolicy(gateway.coalesce_max_batch, gateway.coalesce_max_calls, max_bytes, observe)

    def _mark_unknown(self) -> None:
        # While no model service answers, the gateway cannot tell an unknown model from one it cannot
        # reach: 503 and retry, not 404 (a TLS or network mistake must not look like a missing model).
        answering = any(up.serving for up in self._upstreams.values())
        self._registry.unknown_unavailable = (
            None
            if answering
            else f"no model service answers ({self.spec.describe()}; the gateway's log says why), retry later"
        )

    def _tls_hint(self) -> str:
        if self.tls is None:
            return " (cleartext: if the model services use TLS, give --upstream-ca)"
        return (
            f" ({self.tls.describe()}: check --upstream-ca, --upstream-cert/--upstream-cert-key and "
            "--upstream-server-name against the model service's certificate and --tls-client-ca)"
        )

    def _later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
