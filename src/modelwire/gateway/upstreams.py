"""Where the model services are, and how the gateway's gRPC channels to them are configured.

``--upstream`` takes ``HOST:PORT[,HOST:PORT...]`` (a static list) or one ``dns:///NAME:PORT`` (every address
the name resolves to, re-resolved every ``gateway.discovery_interval_s``: a Kubernetes headless Service).
Channels use gRPC's own machinery, configured here once: ``round_robin`` over the addresses of a group,
client-side health checking (``healthCheckConfig``: a subchannel whose ``grpc.health.v1`` Watch says
NOT_SERVING gets no calls), keepalive pings, and a ``retryPolicy`` for UNAVAILABLE on the idempotent
inference methods only, bounded by ``retryThrottling`` (the retry budget). Jobs are never forwarded, so a
job submission is never retried on this hop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelwire.errors import ConfigurationError
from modelwire.settings import Settings

__all__ = ["HEALTH_SERVICE", "UpstreamSpec", "channel_options", "group_target", "service_config"]

HEALTH_SERVICE = "modelwire.v1.Predictor"
"""The ``grpc.health.v1`` service name the channels watch (a model service reports every name alike)."""

# Inference calls: safe to send again when the first attempt never reached a model service.
RETRIED_METHODS = (
    ("modelwire.v1.Predictor", "Predict"),
    ("modelwire.v1.Predictor", "PredictStream"),
    ("modelwire.v1.Predictor", "ListModels"),
    ("modelwire.v1.BatchPredictor", "PredictBatch"),
    ("inference.GRPCInferenceService", "ModelInfer"),
    ("inference.GRPCInferenceService", "ModelMetadata"),
)
RETRY_TOKENS = 100  # retryThrottling.maxTokens: retries stop while fewer than half are left


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """Either a static list of ``(host, port)`` or one DNS name and port to resolve again and again."""

    static: tuple[tuple[str, int], ...] = ()
    dns: tuple[str, int] | None = None

    @classmethod
    def parse(cls, values: Sequence[str]) -> UpstreamSpec:
        """``["h1:1,h2:2"]``, ``["h1:1", "h2:2"]`` or ``["dns:///name:port"]``."""
        entries = [part.strip() for value in values for part in value.split(",") if part.strip()]
        if not entries:
            raise ConfigurationError(
                "a gateway needs model services: --upstream HOST:PORT[,HOST:PORT...] or dns:///NAME:PORT"
            )
        if any(entry.startswith("dns:") for entry in entries):
            if len(entries) != 1:
                raise ConfigurationError("give either one dns:///NAME:PORT upstream or a list of HOST:PORT")
            return cls(dns=_host_port(entries[0].removeprefix("dns:").lstrip("/"), entries[0]))
        static = tuple(_host_port(entry, entry) for entry in entries)
        if len({":" in host for host, _ in static}) > 1:
            raise ConfigurationError(
                "mix no IPv6 addresses with other upstreams: a gRPC target holds one address family"
            )
        return cls(static=static)

    def describe(self) -> str:
        if self.dns is not None:
            return f"dns:///{self.dns[0]}:{self.dns[1]}"
        return ",".join(_address(host, port) for host, port in self.static)

    async def resolve(self) -> list[str]:
        """Every ``ip:port`` (``[ip]:port`` for IPv6) the spec names now; names are looked up each time."""
        pairs = [self.dns] if self.dns is not None else list(self.static)
        found: list[str] = []
        loop = asyncio.get_running_loop()
        for host, port in pairs:
            try:
                ipaddress.ip_address(host)
                ips = [host]
            except ValueError:
                try:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                except OSError:
                    continue  # not resolvable now: tried again at the next discovery round
                found_ips = [str(info[4][0]) for info in infos]
                # One gRPC target holds one address family: a dual-stack name is used over IPv4.
                ips = [ip for ip in found_ips if ":" not in ip] or found_ips
            for ip in ips:
                address = _address(ip, port)
                if address not in found:
                    found.append(address)
        return found


def _host_port(text: str, given: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"upstream {given!r} is not HOST:PORT (or dns:///NAME:PORT)")
    return host, int(port)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def group_target(addresses: Sequence[str]) -> str:
    """A gRPC target naming every address at once, for ``round_robin`` (``ipv4:a:1,b:2``)."""
    family = "ipv6" if all(a.startswith("[") for a in addresses) else "ipv4"
    return f"{family}:{','.join(sorted(addresses))}"


def service_config(settings: Settings) -> str:
    """The channels' service config (JSON): balancing, health checking, retries and the retry budget."""
    gateway = settings.gateway
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": HEALTH_SERVICE},
    }
    if gateway.retry_max_attempts > 1:
        config["methodConfig"] = [
            {
                "name": [{"service": service, "method": method} for service, method in RETRIED_METHODS],
                "retryPolicy": {
                    "maxAttempts": gateway.retry_max_attempts,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
        config["retryThrottling"] = {"maxTokens": RETRY_TOKENS, "tokenRatio": gateway.retry_budget_ratio}
    return json.dumps(config)


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    """Options of every channel to a model service (the routing ones and the per-address watchers)."""
    gateway = settings.gateway
    limit = settings.grpc.max_message_bytes
    return [
        ("grpc.service_config", service_config(settings)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", int(gateway.keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # A restarted model service is reconnected within a discovery interval, not grpc's 120 s maximum.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", int(gateway.discovery_interval_s * 1000)),
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
    ]
