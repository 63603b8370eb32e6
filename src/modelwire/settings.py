"""The one settings object.

Precedence, highest first: CLI flag (passed as init arguments) > environment (``MODELWIRE_…``, nested
sections with ``__``, e.g. ``MODELWIRE_LIMITS__MAX_BODY_BYTES``) > config file (``modelwire.toml``, or the
file named by ``--config`` / ``MODELWIRE_CONFIG``) > defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from modelwire.backends.urls import QUEUE_SCHEMES, is_redis_url, is_sqlite_url, is_tls_url, queue_kind

__all__ = [
    "MONITORS",
    "AlertRule",
    "AlertWebhookSettings",
    "AuthSettings",
    "BatchingSettings",
    "EventSinkSettings",
    "EventsSettings",
    "FeatureSourceSettings",
    "FeatureViewSettings",
    "FeaturesSettings",
    "GRPCSettings",
    "GatewaySettings",
    "HTTPSettings",
    "JobsSettings",
    "LimitsSettings",
    "ModelSettings",
    "MonitoringSettings",
    "ObservabilitySettings",
    "PayloadLogSettings",
    "QueueSettings",
    "RateLimitRule",
    "RateLimitSettings",
    "Settings",
    "TLSSettings",
    "WebSocketSettings",
    "default_data_dir",
    "parse_budget",
]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


def default_data_dir() -> Path:
    """Where the model repository and local state live unless ``--data-dir`` says otherwise."""
    return Path(platformdirs.user_data_dir("modelwire", appauthor=False))


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchingSettings(_Section):
    """Adaptive batching: concurrent requests for one model are coalesced into one ``predict`` call."""

    enabled: bool = True
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_delay_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    inline_below_ms: float = Field(default=1.0, ge=0.0, le=100.0)
    """A sync ``predict`` measured to take less than this per call runs on the event loop instead of a
    worker thread (no thread hop); 0: always a thread (``model/runner.py``). Applies with batching off too."""


class HTTPSettings(_Section):
    """The REST listener (HTTP/1.1 and HTTP/2 cleartext by prior knowledge)."""

    http2: bool = True
    backlog: int = Field(default=1024, ge=16)
    dashboard: bool = True  # the live web page at ``/`` (static files shipped in the package)
    allowed_origins: tuple[str, ...] = ()
    """Web origins (``https://app.example.com``) besides the server's own whose pages may send
    state-changing requests (POST, DELETE...) and open WebSockets; every other page is refused (403)."""
    cors_origins: tuple[str, ...] = ()
    """Origins whose pages may read answers (CORS). Empty: CORS off. Listed origins are allowed as by
    ``allowed_origins`` too. ``*`` is not accepted: name each origin."""
    cors_methods: tuple[str, ...] = ("GET", "POST", "DELETE")
    cors_headers: tuple[str, ...] = (
        "authorization",
        "content-type",
        "x-api-key",
        "idempotency-key",
        "last-event-id",
        "traceparent",
    )
    cors_max_age_s: int = Field(default=600, ge=0, le=86400)
    """How long a browser may cache a preflight answer."""


class GRPCSettings(_Section):
    """The gRPC listener."""

    reflection: bool = True
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    accept_ahead: int = Field(default=16, ge=0, le=1024)
    """Calls of ``Predictor/Predict`` and ``ModelInfer`` asked of grpc's core ahead of the one being started,
    so that concurrent calls reach the batcher together (``protocols/grpc/accept.py``); 0: grpc.aio's own
    one at a time."""


class LimitsSettings(_Section):
    """Hard input limits and time budgets."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_text_chars: int = Field(default=100_000, ge=1)
    max_batch_items: int = Field(default=1024, ge=1)
    max_json_depth: int = Field(default=32, ge=2, le=500)
    """How deeply a JSON or msgpack payload may nest (REST, WebSocket, job specs and rows); deeper: 400."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_inflight: int = Field(default=2048, ge=1)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    max_concurrent_per_model: int = Field(default=1024, ge=1)
    """Requests of one model running at once; more wait in line (docs/limits.md)."""
    max_queued_per_model: int = Field(default=1024, ge=0)
    """Requests of one model waiting for a slot; past it: 503 with ``Retry-After`` at once."""
    header_read_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """HTTP/1.1: a client must send its request headers within this (slow-loris guard)."""
    body_read_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """A request body must arrive within this, plus as long again per ``max_body_bytes`` received (a
    steady large upload is not cut; a trickle is): else 408 (``protocols/http/body_timeout.py``)."""
    max_header_bytes: int = Field(default=64 * 1024, ge=8192, le=16 * 1024 * 1024)
    """Request headers larger than this are refused with 431 (HTTP/1.1 and HTTP/2)."""
    h2_ping_interval_s: float = Field(default=20.0, ge=0.001, le=60)
    """HTTP/2: the server sends a PING after this long without a frame from the client..."""
    h2_ping_timeout_s: int = Field(default=20, ge=1, le=3600)
    """...and closes the connection when no PING acknowledgement comes within this (a dead peer, or a
    client that never completed the connection preface)."""


class WebSocketSettings(_Section):
    """WebSocket connections (``/v1/ws``, ``/v1/models/{name}/ws``)."""

    max_message_bytes: int = Field(default=1024 * 1024, ge=125)
    max_inflight: int = Field(default=64, ge=1, le=65536)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    ping_interval_s: float = Field(default=20.0, gt=0)
    max_connections: int = Field(default=10_000, ge=1)
    echo: bool = False


class EventsSettings(_Section):
    """The event bus and the streams that read it (WebSocket, SSE, gRPC ``Events``)."""

    queue_size: int = Field(default=1024, ge=1)
    replay_size: int = Field(default=4096, ge=0)
    replay_max_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    """The replay ring's size in bytes (each event's JSON data plus its topic and type): whichever of this
    and ``replay_size`` is reached first evicts the oldest events. 0: nothing is kept for replay."""
    metrics_interval_s: float = Field(default=1.0, gt=0)
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    sse_retry_ms: int = Field(default=3000, ge=0)
    max_sse_connections: int = Field(default=10_000, ge=1)
    """Open Server-Sent Events streams in this process; past it: 503 with ``Retry-After``."""


class JobsSettings(_Section):
    """Async jobs (``/v1/jobs``): where they are kept, how they run, limits, webhooks. See docs/jobs.md."""

    backend: str = "sqlite"
    """``sqlite`` (``<data_dir>/jobs.sqlite3``), ``sqlite:///relative/to/data_dir`` or ``sqlite:////abs/path``;
    or ``redis://host:port/db[?prefix=name]`` (also ``rediss://``, ``unix://``): jobs in Redis, shared with
    other gateways and ``modelwire worker``s, job events over Redis pub/sub (docs/jobs.md)."""
    workers: int = Field(default=2, ge=0, le=256)
    """Jobs processed at once in this process (0: accept jobs here, process them elsewhere)."""
    integrity_check: bool = True
    """At start, SQLite's ``PRAGMA quick_check`` over the whole jobs file (about 7 s per GB): a corrupt file
    stops the start, naming the file, instead of failing requests later. Off: start at once, unchecked."""
    batch_size: int = Field(default=256, ge=1, le=4096)
    lease_s: float = Field(default=30.0, gt=0)
    """Visibility timeout: a job whose worker stopped renewing for this long is picked up again."""
    max_attempts: int = Field(default=3, ge=1, le=100)
    max_queue_depth: int = Field(default=1000, ge=1)
    """Queued plus running jobs; a submit past it is refused (503, Retry-After)."""
    max_upload_bytes: int = Field(default=1024**3, ge=1024)
    max_rows: int = Field(default=10_000_000, ge=1)
    max_metadata_bytes: int = Field(default=8 * 1024, ge=64, le=1024 * 1024)
    """A job's ``metadata``, as compact JSON; larger: 413 (gRPC ``RESOURCE_EXHAUSTED``), nothing stored."""
    retention_s: float = Field(default=7 * 86400.0, gt=0)
    """Finished jobs and their results are removed this long after they finished."""
    progress_interval_ms: int = Field(default=500, ge=0)
    webhook_allow: tuple[str, ...] = ("public",)
    """Callback hosts allowed: ``public`` (any globally routable address), host names (``*.example.com``),
    IP addresses or CIDRs. Private, loopback, link-local and reserved addresses need an explicit entry."""
    webhook_max_attempts: int = Field(default=5, ge=1, le=50)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_secret: SecretStr | None = None
    """HMAC-SHA256 key of ``Modelwire-Signature``; unset: one generated into ``<data_dir>/webhook_secret``."""

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if is_sqlite_url(value) or is_redis_url(value):
            return value
        raise ValueError(
            f"{value!r} is not a jobs backend: use sqlite, sqlite:///path or redis://host:port/db"
        )


class TLSSettings(_Section):
    """HTTPS on the REST port (HTTP/1.1, HTTP/2 by ALPN, wss://, SSE), gRPC over TLS, HTTP/3."""

    cert: Path | None = None
    """PEM certificate chain; with ``key``, turns TLS on for every listener."""
    key: Path | None = None
    client_ca: Path | None = None
    """Mutual TLS on the gRPC port: a client without a certificate signed by this CA is refused."""
    http3: bool = False
    """HTTP/3 (QUIC, UDP) on the REST port number, advertised with ``Alt-Svc`` (needs ``cert``/``key``)."""
    redirect_port: int | None = Field(default=None, ge=0, le=65535)
    """A plain-HTTP listener that only redirects (308) to HTTPS."""
    hsts_max_age_s: int = Field(default=31_536_000, ge=0)
    public_host: str | None = None
    """The host name the redirect's ``Location`` names (never the request's ``Host``, which a client
    forges); default: the bind host, with ``127.0.0.1``, ``0.0.0.0`` and ``::`` shown as ``localhost``."""

    @property
    def enabled(self) -> bool:
        return self.cert is not None and self.key is not None

    @field_validator("public_host")
    @classmethod
    def _host_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip("[]")
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            pass
        if not _HOST_NAME.fullmatch(name):
            raise ValueError(f"{value!r} is not a host name or IP address (no scheme, port or path)")
        return name.lower()

    @model_validator(mode="after")
    def _complete(self) -> TLSSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
        if not self.enabled and (self.client_ca or self.http3 or self.redirect_port is not None):
            raise ValueError("--tls-client-ca, --http3 and --tls-redirect-port need --tls-cert/--tls-key")
        return self


class AuthSettings(_Section):
    """Who may call. ``mode`` ``auto``: on unless the server binds only loopback. See SECURITY.md."""

    mode: Literal["auto", "on", "off"] = "auto"
    insecure: bool = False
    """Allow ``mode=off`` on a non-loopback address (a loud warning is logged)."""
    jwt_secret: SecretStr | None = None
    """HS256 key for JWT bearer tokens."""
    jwt_jwks: Path | None = None
    """A JWKS file (RS256 / ES256 public keys) for JWT bearer tokens."""
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = Field(default=30.0, ge=0)
    api_key_header: str = "X-API-Key"
    ws_token_ttl_s: float = Field(default=60.0, gt=0, le=3600)
    """Life of the short-lived token a browser passes in ``Sec-WebSocket-Protocol`` or a cookie."""


class RateLimitRule(_Section):
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up.

    ``scope`` (``predict``, ``jobs:read``, ``jobs:write``, ``models:admin``, ``events``, ``features:read``,
    ``features:write`` or ``*``) and
    ``model`` (a model name or ``*``) say which requests it counts; the most specific rule applies.
    """

    scope: str = "*"
    model: str = "*"
    rate_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)


class RateLimitSettings(_Section):
    """Per-principal rate limits (API key, JWT subject, or client IP when anonymous). See SECURITY.md."""

    enabled: bool | None = None
    """``None``: on whenever authentication is on, or the server binds a non-loopback address."""
    rules: tuple[RateLimitRule, ...] = (
        RateLimitRule(scope="*", rate_per_s=1000.0, burst=2000),
        RateLimitRule(scope="jobs:write", rate_per_s=20.0, burst=100),
    )
    ws_messages_per_s: float = Field(default=1000.0, gt=0)
    ws_message_burst: int = Field(default=2000, ge=1)
    ws_connections_per_principal: int = Field(default=100, ge=1)


class GatewaySettings(_Section):
    """``modelwire gateway``: the public face forwarding inference to model services over gRPC."""

    upstreams: tuple[str, ...] = ()
    """``host:port`` entries, or one ``dns:///name:port`` target."""
    retry_max_attempts: int = Field(default=3, ge=1, le=5)
    retry_budget_ratio: float = Field(default=0.1, gt=0, le=1)
    """Retries may add at most this share of the calls (gRPC ``retryThrottling``)."""
    keepalive_s: float = Field(default=20.0, gt=0)
    discovery_interval_s: float = Field(default=5.0, gt=0)
    upstream_key: SecretStr | None = None
    """What the gateway presents to model services whose auth is on (``authorization: Bearer``): an API key
    made with ``modelwire keys create --scopes predict`` in their data dir, or a JWT they accept."""
    upstream_ca: Path | None = None
    """PEM CA bundle that signed the model services' certificates; setting it (or ``upstream_cert``) turns
    TLS on for the gRPC hop (gateway/tls.py, docs/gateway.md)."""
    upstream_cert: Path | None = None
    """PEM client certificate the gateway shows model services that ask for one (mutual TLS)."""
    upstream_cert_key: Path | None = None
    """PEM private key of ``upstream_cert`` (not ``upstream_key``, which is the bearer credential)."""
    upstream_server_name: str | None = None
    """The name the model services' certificates must carry, when it is not the ``--upstream`` host."""
    coalesce: bool = True
    """Requests that arrive together for one model version go upstream as one ``BatchPredictor/PredictBatch``
    call (``gateway/coalesce.py``); false: one call per request (``Predict``, ``PredictStream``)."""
    coalesce_max_batch: int = Field(default=64, ge=1, le=1024)
    """Most items in one upstream call (keep it within the model services' ``limits.max_batch_items``)."""
    coalesce_max_calls: int = Field(default=2, ge=1, le=64)
    """Upstream calls in flight per model version before new requests wait and join the next call."""


class ObservabilitySettings(_Section):
    """Metrics, logs and traces (docs/observability.md)."""

    metrics: bool = True
    access_log: bool = False
    otlp_endpoint: str | None = None
    """Export OpenTelemetry traces over OTLP to this collector URL (``http://collector:4317`` for gRPC,
    ``http://collector:4318`` for ``http/protobuf``). Unset: off, unless the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set. Needs ``modelwire[otel]``."""
    otlp_protocol: Literal["grpc", "http/protobuf"] | None = None
    """How spans travel: ``grpc`` or ``http/protobuf``. Unset: ``OTEL_EXPORTER_OTLP_PROTOCOL``, else gRPC."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"{value!r} is not a collector URL: use http(s)://host:port, such as http://127.0.0.1:4317"
            )
        return value


class PromotionSettings(_Section):
    """The promotion gate of a model (``model/gate.py``): a new version becomes the default when ``mode``
    is ``always``, or ``gate`` and its held-out accuracy is at least ``floor`` and not below the current
    default's minus ``margin``; ``never`` only registers it."""

    mode: Literal["always", "never", "gate"] = "gate"
    margin: float = Field(default=0.02, ge=0, le=1)
    floor: float = Field(default=0.6, ge=0, le=1)


class ModelSettings(_Section):
    """One model to serve.

    ``source`` is ``builtin:sentiment``, a ``package.module:Class`` import path, or a file: ``*.skops`` /
    ``*.joblib`` / ``*.pkl`` (scikit-learn) or ``*.onnx`` (onnxruntime). ``version`` pins a version of a
    repository model; by default every version in the repository is served and the newest is the default.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    source: str
    version: str | None = None
    batching: BatchingSettings | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    pinned: bool = False
    """Never unloaded by the memory budget (``models.memory_budget``; docs/admin.md)."""


_QUEUE_DEFAULTS = {  # kind -> (the requests' queue/subject/stream, its dead letters)
    "rabbitmq": ("modelwire.requests", "modelwire.requests.dlq"),
    "nats": ("modelwire.requests", "modelwire.requests.dlq"),
    "redis": ("modelwire:requests", "modelwire:requests:dlq"),
    "kafka": ("modelwire.requests", "modelwire.requests.dlq"),
}


class _BrokerSection(_Section):
    """A broker's URL and credentials: a password in the URL is moved to ``password`` (a secret, never
    logged); ``password_file`` reads it from a file instead."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    """TLS (``amqps://``, ``tls://``, ``rediss://``): the CA bundle (PEM) that the broker's certificate is
    checked against (default: the system's)."""
    cert_file: Path | None = None
    """TLS: this client's certificate (PEM), for a broker that asks for one (mutual TLS)."""
    key_file: Path | None = None
    """TLS: the private key of ``cert_file`` (PEM; default: in ``cert_file`` itself)."""

    @model_validator(mode="after")
    def _check_tls(self) -> _BrokerSection:
        given = [name for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if given and not is_tls_url(self.url):
            raise ValueError(
                f"{', '.join(given)} need a TLS URL (amqps://, tls://, rediss://), not {self.url.split('://')[0]}://"
            )
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is the key of cert_file: give cert_file too")
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context for a TLS URL (the broker's certificate and host name checked against
        ``ca_file`` or the system's CAs; ``cert_file``/``key_file`` presented); ``None`` for a plain one.
        ``ValueError`` names the files when one cannot be read or used."""
        if not is_tls_url(self.url):
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(str(p) for p in (self.ca_file, self.cert_file, self.key_file) if p is not None)
            raise ValueError(f"the TLS files of {self.url} ({files}) cannot be used: {exc}") from None
        return context

    def redis_tls(self) -> dict[str, Any]:
        """redis-py's TLS arguments for a ``rediss://`` URL (it takes files, not a context)."""
        if not is_tls_url(self.url):
            return {}
        self.tls_context()  # the files checked here, with their names, before redis-py reads them
        tls: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        for key, path in (("ssl_ca_certs", self.ca_file), ("ssl_certfile", self.cert_file)):
            if path is not None:
                tls[key] = str(path)
        if self.cert_file is not None:
            tls["ssl_keyfile"] = str(self.key_file or self.cert_file)
        return tls

    @model_validator(mode="before")
    @classmethod
    def _split_credentials(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"url": data}
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        url: str = data["url"]
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in QUEUE_SCHEMES:
            known = ", ".join(f"{s}://" for s in QUEUE_SCHEMES)
            raise ValueError(f"broker URL {url.split('@')[-1]!r} has no known scheme; use one of {known}")
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            data = {**data, "url": f"{scheme}://{host}{slash}{path}"}
            if user and "username" not in data:
                data["username"] = user
            if colon and "password" not in data:
                data["password"] = password
        return data

    @property
    def kind(self) -> str:
        """``rabbitmq``, ``nats``, ``redis`` or ``kafka``."""
        kind = queue_kind(self.url)
        assert kind is not None  # checked by the validator
        return kind

    def secret(self) -> str | None:
        """The broker password: ``password``, else the first line of ``password_file``."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text().strip() or None
        return None


class QueueSettings(_BrokerSection):
    """One broker to take inference requests from (``[[queues]]``, ``--queue URL``; docs/queues.md).

    The scheme picks the broker: ``amqp://``/``amqps://`` RabbitMQ, ``nats://``/``tls://`` NATS (core
    request-reply plus the JetStream stream), ``redis://``/``rediss://`` Redis Streams. A password in the
    URL is moved to ``password`` (a secret, never logged); ``password_file`` reads it from a file instead.
    """

    name: str | None = None
    """RabbitMQ queue / NATS subject / Redis stream: ``modelwire.requests`` (Redis ``modelwire:requests``)."""
    dead_letter: str | None = None
    """Default ``modelwire.requests.dlq`` (Redis ``modelwire:requests:dlq``)."""
    group: str = Field(default="modelwire", min_length=1, max_length=200)
    """NATS queue group and JetStream durable consumer; Redis consumer group."""
    jetstream: str | None = "MODELWIRE"
    """NATS: the JetStream stream for durable work (``None``: core request-reply only)."""
    jetstream_subjects: str = "modelwire.durable.>"
    model: str | None = None
    """The model a message names none (default: the first configured model)."""
    prefetch: int = Field(default=64, ge=1, le=65535)
    """Unacknowledged messages per consumer (prefetch, JetStream max_ack_pending, XREADGROUP COUNT)."""
    max_deliveries: int = Field(default=5, ge=1, le=1000)
    """A message delivered more often (it crashed consumers) is dead-lettered."""
    ack_wait_s: float = Field(default=30.0, gt=0, le=86400)
    """JetStream ack wait; Redis: pending entries idle this long are claimed from a dead consumer."""
    max_message_bytes: int | None = Field(default=None, ge=64)
    """Default ``limits.max_body_bytes``; a larger message is dead-lettered."""
    trust_broker: bool = False
    """With auth on: the broker authenticates, messages run as ``queue:<name>`` with ``scopes``."""
    scopes: tuple[str, ...] = ("predict",)
    """The scopes of ``queue:<name>`` when ``trust_broker`` (``jobs:write``: its messages may submit jobs)."""

    @property
    def queue_name(self) -> str:
        return self.name or _QUEUE_DEFAULTS[self.kind][0]

    @property
    def dead_letter_name(self) -> str:
        return self.dead_letter or _QUEUE_DEFAULTS[self.kind][1]


_SINK_DEFAULTS = {"rabbitmq": "modelwire.events", "nats": "modelwire.events", "redis": "modelwire:events"}


class EventSinkSettings(_BrokerSection):
    """A broker the event bus publishes chosen topics to (``[[event_sinks]]``; docs/queues.md, "Events out").

    RabbitMQ: the topic exchange ``destination`` (``modelwire.events``), routing key the topic with ``/`` as
    ``.`` (``jobs.<id>``, ``models``); NATS: the subject ``<destination>.<topic with / as .>``; Redis: the
    stream ``destination`` (``modelwire:events``), trimmed to about ``max_len`` entries. Each event is a
    CloudEvents 1.0 JSON envelope. Publishing never holds the server up: at most ``buffer`` events wait,
    the oldest dropped (and counted) past that or while the broker is unreachable.
    """

    topics: tuple[str, ...] = ("jobs/*", "models")
    """Topics or patterns as ``/v1/events`` takes them: ``jobs/*``, ``models``, ``server``, ``metrics``..."""
    destination: str | None = None
    buffer: int = Field(default=10_000, ge=1, le=1_000_000)
    max_len: int = Field(default=100_000, ge=1)
    """Redis: the stream is trimmed to about this many entries (``XADD MAXLEN ~``)."""

    @property
    def destination_name(self) -> str:
        return self.destination or _SINK_DEFAULTS.get(self.kind, "modelwire.events")


MONITORS = (
    "prediction_drift",
    "input_drift",
    "confidence",
    "latency_p99",
    "error_ratio",
    "saturation",
    "job_queue_age",
    "feature_freshness",
    "feature_missing_rate",
)
"""What an alert rule may watch (docs/monitoring.md says what each measures)."""
_WINDOW = re.compile(r"^(\d+)(s|m|h)$")


class AlertRule(_Section):
    """One ``[[alerts]]`` rule: fire when ``monitor`` of ``model`` is above ``threshold`` for ``for_s``.

    ``window`` is a number of requests (``1000``) or a duration (``"5m"``, ``"30s"``, ``"1h"``).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    monitor: Literal[
        "prediction_drift",
        "input_drift",
        "confidence",
        "latency_p99",
        "error_ratio",
        "saturation",
        "job_queue_age",
        "feature_freshness",
        "feature_missing_rate",
    ]
    model: str = "*"
    version: str | None = None
    """``None``: the model's default version (the one new traffic goes to)."""
    threshold: float
    window: int | str = 1000
    for_s: float = Field(default=0.0, ge=0)
    keep_firing_for_s: float = Field(default=0.0, ge=0)
    severity: str = Field(default="warning", pattern=r"^[a-z]{1,32}$")
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if not 1 <= value <= 1_000_000:
                raise ValueError("a count window is 1 to 1000000 requests")
            return value
        if value.isdigit():
            return cls._window(int(value))
        if not _WINDOW.fullmatch(value):
            raise ValueError(
                f'window {value!r}: a number of requests (1000) or a duration ("30s", "5m", "1h")'
            )
        return value

    @property
    def window_s(self) -> float | None:
        """The window's length in seconds for a time window, else ``None``."""
        if isinstance(self.window, int):
            return None
        match = _WINDOW.fullmatch(self.window)
        assert match is not None
        return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]

    @property
    def window_count(self) -> int | None:
        return self.window if isinstance(self.window, int) else None


class AlertWebhookSettings(_Section):
    """An ``[[monitoring.webhooks]]`` receiver: alert notifications POSTed, signed like job webhooks.

    ``format = "alertmanager"`` sends Alertmanager's webhook payload (version 4); ``"slack"`` sends
    ``{"text": ...}`` from ``template`` (``$name``, ``$state``, ``$severity``, ``$model``, ``$version``,
    ``$monitor``, ``$value``, ``$threshold``, ``$summary``).
    """

    url: str
    format: Literal["alertmanager", "slack"] = "alertmanager"
    template: str = "[$state] $name ($severity): $model $version $monitor = $value (threshold $threshold)"
    states: tuple[Literal["pending", "firing", "resolved"], ...] = ("firing", "resolved")


class PayloadLogSettings(_Section):
    """The payload log (``[monitoring.payload_log]``): a sample of requests and answers, as CloudEvents.

    ``sink``: ``"file"`` (rotating NDJSON files in ``<data dir>/payloads``), or a broker or Redis URL
    (``amqp://``, ``nats://``, ``redis://``: the stream or exchange ``destination``).
    """

    sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    inputs: Literal["full", "hash", "redact"] = "full"
    sink: str = "file"
    destination: str = "modelwire.payloads"
    buffer: int = Field(default=10_000, ge=1, le=1_000_000)
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_files: int = Field(default=10, ge=1, le=10_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)


class MonitoringSettings(_Section):
    """Model monitors and alerts (``[monitoring]``; docs/monitoring.md)."""

    enabled: bool = True
    interval_s: float = Field(default=5.0, gt=0, le=3600)
    """How often monitors are computed and rules evaluated."""
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """The share of requests sampled into the monitors' buffer."""
    max_samples_per_s: int = Field(default=200, ge=1, le=1_000_000)
    """At most this many items (texts, instances) a second are sampled (each process), a big batch only
    its first items: the monitors' cost and memory stay bounded under load (docs/monitoring.md, "Cost")."""
    buffer: int = Field(default=20_000, ge=16, le=10_000_000)
    """Samples waiting for the next computation; past it, new samples are dropped and counted."""
    max_window: int = Field(default=20_000, ge=16, le=10_000_000)
    """Samples kept per model version for the windows."""
    min_samples: int = Field(default=100, ge=1)
    """Drift is not computed over fewer samples than this (or the rule's count window, if smaller)."""
    default_rules: bool = True
    """The built-in rules for the default model (docs/monitoring.md) next to ``[[alerts]]``."""
    renotify_s: float = Field(default=3600.0, gt=0)
    """A firing alert is announced again after this long (never more often)."""
    history: int = Field(default=200, ge=1, le=100_000)
    """Resolved alerts kept for ``GET /v1/alerts``."""
    max_silences: int = Field(default=1000, ge=1)
    webhooks: tuple[AlertWebhookSettings, ...] = ()
    payload_log: PayloadLogSettings = PayloadLogSettings()


FEATURE_TYPES = ("int", "float", "string", "bool", "float_vector")
"""What a feature of a ``[[feature_views]]`` may hold (``float_vector``: a list of floats)."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class FeatureSourceSettings(_BrokerSection):
    """Where a feature view's events come from (``source = {url=..., queue=...}``; docs/features.md).

    ``amqp://`` a RabbitMQ queue, ``nats://`` a NATS subject (a JetStream stream keeps it), ``redis://`` a
    Redis stream. Each message is a JSON object with the entity key(s), some features and an optional
    ``event_timestamp``; ``fields`` maps a message field to a feature or entity name when they differ.
    """

    queue: str = Field(min_length=1, max_length=200)
    """The RabbitMQ queue, NATS subject or Redis stream the events are read from."""
    dead_letter: str | None = None
    """Where malformed events go, with the reason (default: ``<queue>.dlq``, Redis ``<queue>:dlq``)."""
    group: str = Field(default="modelwire-features", min_length=1, max_length=200)
    """NATS durable consumer / Redis consumer group."""
    jetstream: str | None = None
    """NATS: the JetStream stream that keeps the subject, created if missing (default
    ``MODELWIRE_FEATURES_<VIEW>``). Only JetStream is consumed: at-least-once."""
    prefetch: int = Field(default=256, ge=1, le=65535)
    """Unacknowledged events at most (backpressure): RabbitMQ prefetch, JetStream max_ack_pending, Redis
    XREADGROUP COUNT."""
    max_deliveries: int = Field(default=5, ge=1, le=1000)
    ack_wait_s: float = Field(default=30.0, gt=0, le=86400)
    fields: dict[str, str] = Field(default_factory=dict)
    """``{message field: feature or entity name}`` for the fields whose names differ."""

    @property
    def dead_letter_name(self) -> str:
        return self.dead_letter or self.queue + (":dlq" if self.kind == "redis" else ".dlq")


class FeatureViewSettings(_Section):
    """A feature view (``[[feature_views]]``): features of one entity kind, kept fresh for ``ttl_s``.

    >>> FeatureViewSettings(name="user_stats", entities=["user_id"], ttl_s=86400,
    ...                     features={"avg_rating": "float", "n_reviews": "int"}).features["n_reviews"]
    'int'
    """

    name: str
    entities: tuple[str, ...]
    ttl_s: float = Field(gt=0)
    """A value whose event time is older than this reads as ``OUTSIDE_MAX_AGE``."""
    features: dict[str, str]
    """``{feature name: type}``; types: ``int``, ``float``, ``string``, ``bool``, ``float_vector``."""
    source: FeatureSourceSettings | None = None

    @model_validator(mode="after")
    def _valid(self) -> FeatureViewSettings:
        where = f"feature_views {self.name!r}"
        if not _NAME.match(self.name):
            raise ValueError(
                f"feature_views name {self.name!r} must be a letter or _ then letters, digits or _ (max 64)"
            )
        if not self.entities:
            raise ValueError(f"{where}: entities must name at least one entity key (e.g. ['user_id'])")
        if len(set(self.entities)) != len(self.entities):
            raise ValueError(f"{where}: entities {list(self.entities)} name a key twice")
        if not self.features:
            raise ValueError(f"{where}: features must define at least one feature")
        for name in (*self.entities, *self.features):
            if not _NAME.match(name) or name == "event_timestamp":
                raise ValueError(
                    f"{where}: {name!r} is not a valid entity or feature name "
                    "(a letter or _ then letters, digits or _; not event_timestamp)"
                )
        for name, kind in self.features.items():
            if kind not in FEATURE_TYPES:
                raise ValueError(
                    f"{where}: feature {name!r} has unknown type {kind!r} (known: {', '.join(FEATURE_TYPES)})"
                )
        shared = set(self.entities) & set(self.features)
        if shared:
            raise ValueError(f"{where}: {sorted(shared)} is both an entity key and a feature")
        return self


class FeaturesSettings(_Section):
    """The online feature store (docs/features.md)."""

    store: str = "sqlite"
    """``sqlite`` (``<data_dir>/features.sqlite3``), ``sqlite:///path``, ``redis://host:port/db
    [?prefix=name]`` (one hash per entity and view, shared by every process naming it), or
    ``grpc://host:port``: the store of another modelwire, read over gRPC (``--features``)."""
    key: SecretStr | None = None
    """With ``grpc://``: the credential shown to the feature service (an API key with ``features:read``)."""

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if is_sqlite_url(value) or is_redis_url(value) or value.startswith(("grpc://", "grpcs://")):
            return value
        raise ValueError(
            f"features.store {value!r} is not a feature store: use sqlite, redis://host:port/db or "
            "grpc://host:port (a feature service)"
        )


class Settings(BaseSettings):
    """Everything modelwire can be told. Frozen once built: pass a new one to change it.

    >>> Settings(http_port=9000).http_port
    9000
    """

    model_config = SettingsConfigDict(
        env_prefix="MODELWIRE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    ops_port: int | None = Field(default=None, ge=0, le=65535)
    """Roles with no REST face (``consume``, ``worker``): serve health and ``/metrics`` on this port
    (``create_ops_app`` in ``protocols/http/app.py``); None: no listener at all. ``serve`` and ``gateway``
    ignore it."""
    data_dir: Path = Field(default_factory=default_data_dir)
    config: Path | None = None
    app_dir: Path = Path(".")
    workers: int = Field(default=1, ge=1, le=64)
    log_level: LogLevel = "info"
    models: tuple[ModelSettings, ...] = ()
    """The models to serve: ``[[models]]`` in TOML, or ``[[models.serve]]`` under a ``[models]`` table that
    also holds ``memory_budget`` (``_models_table``)."""
    memory_budget: int | str | None = None
    """``models.memory_budget``: at most this much memory for the loaded models (bytes, ``"2GiB"``,
    ``"512MB"`` or ``"50%"`` of RAM; ``model/budget.py``). Set by ``--memory-budget``,
    ``MODELWIRE_MODELS__MEMORY_BUDGET`` or ``memory_budget`` in the config file's ``[models]`` table.
    ``None``: no budget, nothing is unloaded for memory."""
    model_watch: Literal["off", "auto", "watchfiles", "poll"] = "off"
    """Watch the model repository: a version folder that appears is loaded, warmed up and gated; one that
    is removed is unloaded (docs/admin.md). ``auto``: watchfiles when installed, else polling."""
    model_watch_poll_s: float = Field(default=2.0, gt=0, le=3600)
    """How often the polling watcher scans the repository."""
    queues: tuple[QueueSettings, ...] = ()
    """Brokers to take inference requests from (``--queue URL``, ``[[queues]]``; docs/queues.md)."""
    event_sinks: tuple[EventSinkSettings, ...] = ()
    """Brokers the event bus publishes chosen topics to (``[[event_sinks]]``; docs/queues.md)."""
    feature_views: tuple[FeatureViewSettings, ...] = ()
    """Feature views (``[[feature_views]]``; docs/features.md)."""
    features: FeaturesSettings = FeaturesSettings()

    http: HTTPSettings = HTTPSettings()
    grpc: GRPCSettings = GRPCSettings()
    limits: LimitsSettings = LimitsSettings()
    batching: BatchingSettings = BatchingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    ws: WebSocketSettings = WebSocketSettings()
    events: EventsSettings = EventsSettings()
    jobs: JobsSettings = JobsSettings()
    tls: TLSSettings = TLSSettings()
    auth: AuthSettings = AuthSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    gateway: GatewaySettings = GatewaySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    alerts: tuple[AlertRule, ...] = ()
    """``[[alerts]]`` rules (docs/monitoring.md), added to the built-in ones."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _models_table(cls, data: Any) -> Any:
        return _split_models_table(data)

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_budget(value, total_memory=1 << 40)  # its syntax now; a percentage is resolved at start
        return value

    @model_validator(mode="after")
    def _unique_views(self) -> Settings:
        seen: set[str] = set()
        for view in self.feature_views:
            if view.name in seen:
                raise ValueError(f"feature_views: the name {view.name!r} is defined twice")
            seen.add(view.name)
        return self

    @property
    def model_repository(self) -> Path:
        """The folder holding ``<model>/<version>/`` artifacts."""
        return self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file(init_settings())
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        # each source's [models] table split before the sources are merged, so an environment's
        # MODELWIRE_MODELS__MEMORY_BUDGET never replaces the config file's list of models
        return tuple(_ModelsTableSource(source) for source in sources)

    def effective_models(self) -> tuple[ModelSettings, ...]:
        """The models to serve: the configured ones, or the default sentiment model."""
        if self.models:
            return self.models
        return (ModelSettings(name="sentiment", source="builtin:sentiment"),)


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*|%)\s*$", re.IGNORECASE)


def parse_budget(value: int | str, *, total_memory: int) -> int:
    """``models.memory_budget`` in bytes: a whole number of bytes (``2147483648``), a number with a unit
    (``"2GiB"``, ``"512MB"``: KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024) or a percentage of
    ``total_memory`` (``"50%"``). ``ValueError`` names what is accepted."""
    if isinstance(value, bool):
        raise ValueError("memory_budget must be bytes, a size such as '2GiB', or a percentage such as '50%'")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _BUDGET.match(value)
        if match is None or (match.group(2) != "%" and match.group(2).lower() not in _UNITS):
            raise ValueError(
                f"memory_budget {value!r} is not bytes (2147483648), a size (2GiB, 512MB) or a percentage "
                "of RAM (50%)"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        if not 0 < number <= 100:
            raise ValueError(f"memory_budget {value!r}: a percentage of RAM is from 0 to 100")
        budget = int(total_memory * number / 100)
    else:
        budget = int(number * _UNITS[unit])
    if budget <= 0:
        raise ValueError(f"memory_budget {value!r} must be more than 0 bytes")
    return budget


def _split_models_table(data: Any) -> Any:
    """``models`` given as a table (TOML ``[models]``, ``MODELWIRE_MODELS__MEMORY_BUDGET``, ``models={...}``):
    its ``memory_budget`` becomes ``memory_budget`` and its ``serve`` list the models. A list is kept."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        return data
    table = dict(data["models"])
    out = {k: v for k, v in data.items() if k != "models"}
    unknown = sorted(set(table) - {"memory_budget", "serve"})
    if unknown:
        raise ValueError(
            f"models.{unknown[0]}: the [models] table holds memory_budget and the list of models as "
            "[[models.serve]] (or keep the list as [[models]])"
        )
    if "serve" in table:
        out["models"] = table["serve"]
    if "memory_budget" in table and "memory_budget" not in out:
        out["memory_budget"] = table["memory_budget"]
    return out


class _ModelsTableSource(PydanticBaseSettingsSource):
    """One settings source with its ``[models]`` table split (``_split_models_table``)."""

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        result = _split_models_table(self._inner())
        return dict(result)

    def __repr__(self) -> str:
        return f"_ModelsTableSource({self._inner!r})"


def _config_file(init_values: dict[str, Any]) -> Path | None:
    explicit = init_values.get("config") or os.environ.get("MODELWIRE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        return path
    default = Path("modelwire.toml")
    return default if default.is_file() else None
