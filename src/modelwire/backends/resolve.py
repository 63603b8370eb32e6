"""The one place that turns a settings URL into an implementation.

``sqlite`` / ``sqlite:///path`` is the embedded default (no external service); ``redis://``, ``rediss://``
and ``unix://`` are Redis, shared by every process that names it. Each ``open_*`` builds without I/O:
the caller opens, starts or connects the result. The Redis client library is only imported when a Redis
URL is given; the RabbitMQ and NATS clients (the ``queues`` extra) only when a queue names that broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelwire.backends.urls import is_redis_url, is_sqlite_url, sqlite_path
from modelwire.errors import ConfigurationError
from modelwire.events.bus import EventBus, LocalEventBus
from modelwire.security.ratelimit import MemoryRateLimiter, RateLimiter, rate_limits_enabled

if TYPE_CHECKING:
    from modelwire.backends.queue import EventTransport, QueueBroker
    from modelwire.features.store import FeatureStore
    from modelwire.jobs.store import JobStore
    from modelwire.settings import EventSinkSettings, FeatureViewSettings, QueueSettings, Settings

__all__ = [
    "describe_jobs_backend",
    "open_event_bus",
    "open_event_transport",
    "open_feature_source",
    "open_feature_store",
    "open_job_store",
    "open_queue_broker",
    "open_rate_limiter",
]

JOBS_FILE = "jobs.sqlite3"
FEATURES_FILE = "features.sqlite3"


def open_job_store(settings: Settings) -> JobStore:
    """The job store ``settings.jobs.backend`` names. No I/O: call ``open()`` on the result."""
    backend = settings.jobs.backend
    if is_sqlite_url(backend):
        from modelwire.backends.sqlite.jobs import SqliteJobStore

        path = sqlite_path(backend, settings.data_dir, JOBS_FILE)
        return SqliteJobStore(path, integrity_check=settings.jobs.integrity_check)
    if is_redis_url(backend):
        from modelwire.backends.redis.jobs import RedisJobStore

        return RedisJobStore.from_url(backend)  # redis://host:port/db[?prefix=...]
    raise ConfigurationError(
        f"jobs backend {backend!r} is not known: use 'sqlite' (the embedded default) or redis://host:port/db"
    )


def open_feature_store(settings: Settings) -> FeatureStore:
    """The online feature store ``settings.features.store`` names. No I/O: call ``open()`` on it."""
    store = settings.features.store
    if is_sqlite_url(store):
        from modelwire.backends.sqlite.features import SqliteFeatureStore

        return SqliteFeatureStore(sqlite_path(store, settings.data_dir, FEATURES_FILE))
    if is_redis_url(store):
        from modelwire.backends.redis.features import RedisFeatureStore

        return RedisFeatureStore.from_url(store)
    raise ConfigurationError(f"features.store {store!r} is not known: use 'sqlite' or redis://host:port/db")


def open_feature_source(view: FeatureViewSettings) -> QueueBroker:
    """The broker a feature view's ``source`` names, consuming its queue / subject / stream (NATS: the
    JetStream stream only, at-least-once). No I/O: call ``connect()`` on it."""
    from modelwire.settings import QueueSettings

    source = view.source
    if source is None:
        raise ConfigurationError(f"feature view {view.name!r} has no source")
    queue = QueueSettings(
        url=source.url,
        username=source.username,
        password=source.password,
        password_file=source.password_file,
        name=source.queue,
        dead_letter=source.dead_letter_name,
        group=source.group,
        jetstream=source.jetstream or f"MODELWIRE_FEATURES_{view.name.upper()}",
        jetstream_subjects=source.queue,
        prefetch=source.prefetch,
        max_deliveries=source.max_deliveries,
        ack_wait_s=source.ack_wait_s,
    )
    if queue.kind == "nats":
        try:
            from modelwire.backends.nats.broker import NatsBroker
        except ImportError as exc:
            raise ConfigurationError(
                f"nats:// needs the broker client ({exc.name}): pip install 'modelwire[queues]'"
            ) from None
        return NatsBroker(queue, core=False)
    return open_queue_broker(queue)


def open_event_bus(settings: Settings) -> EventBus:
    """In-process, or over Redis pub/sub when jobs are in Redis (every gateway sees every job's events)."""
    size, replay = settings.events.queue_size, settings.events.replay_size
    replay_bytes = settings.events.replay_max_bytes
    if is_redis_url(settings.jobs.backend):
        from modelwire.backends.redis.connection import RedisTarget
        from modelwire.backends.redis.events import RedisEventBus

        return RedisEventBus(
            RedisTarget.parse(settings.jobs.backend),
            queue_size=size,
            replay_size=replay,
            replay_max_bytes=replay_bytes,
        )
    return LocalEventBus(queue_size=size, replay_size=replay, replay_max_bytes=replay_bytes)


def open_rate_limiter(settings: Settings, *, auth_on: bool) -> RateLimiter:
    """In memory; in Redis when ``jobs.backend`` is a Redis URL (replicas share counts). No I/O here."""
    rules = settings.rate_limits.rules
    enabled = rate_limits_enabled(settings, auth_on=auth_on)
    if enabled and is_redis_url(settings.jobs.backend):
        from modelwire.backends.redis.connection import RedisTarget
        from modelwire.backends.redis.ratelimit import RedisRateLimiter

        return RedisRateLimiter(RedisTarget.parse(settings.jobs.backend), rules)
    return MemoryRateLimiter(rules, enabled=enabled)


def describe_jobs_backend(settings: Settings) -> tuple[str, str]:
    """``("redis", "Redis redis://host:6379/0 (keys modelwire:*)")`` or ``("sqlite", "SQLite /path")``."""
    backend = settings.jobs.backend
    if is_redis_url(backend):
        from modelwire.backends.redis.connection import RedisTarget

        target = RedisTarget.parse(backend)
        return "redis", f"Redis {target.display} (keys {target.prefix}*)"
    return "sqlite", f"SQLite {sqlite_path(backend, settings.data_dir, JOBS_FILE)}"


KAFKA_NOT_SUPPORTED = (
    "kafka:// is not supported yet: no Kafka broker could be installed to test an adapter against, and "
    "modelwire ships no untested wire (docs/queues.md). Use amqp://, nats:// or redis:// meanwhile"
)


def open_queue_broker(queue: QueueSettings) -> QueueBroker:
    """The broker ``queue.url``'s scheme names (docs/queues.md). No I/O: call ``connect()`` on it."""
    kind = queue.kind
    if kind == "kafka":
        raise ConfigurationError(KAFKA_NOT_SUPPORTED)
    if kind == "redis":
        from modelwire.backends.redis.queue import RedisStreamBroker

        return RedisStreamBroker(queue)
    try:
        if kind == "rabbitmq":
            from modelwire.backends.rabbitmq.broker import RabbitMQBroker

            return RabbitMQBroker(queue)
        from modelwire.backends.nats.broker import NatsBroker

        return NatsBroker(queue)
    except ImportError as exc:
        raise ConfigurationError(
            f"{queue.url.split('://')[0]}:// needs the broker client ({exc.name}): "
            "pip install 'modelwire[queues]'"
        ) from None


def open_event_transport(sink: EventSinkSettings) -> EventTransport:
    """The broker an ``[[event_sinks]]`` URL names (docs/queues.md, "Events out"). No I/O."""
    kind = sink.kind
    if kind == "kafka":
        raise ConfigurationError(KAFKA_NOT_SUPPORTED)
    if kind == "redis":
        from modelwire.backends.redis.publisher import RedisEventTransport

        return RedisEventTransport(sink)
    try:
        if kind == "rabbitmq":
            from modelwire.backends.rabbitmq.publisher import RabbitMQEventTransport

            return RabbitMQEventTransport(sink)
        from modelwire.backends.nats.publisher import NatsEventTransport

        return NatsEventTransport(sink)
    except ImportError as exc:
        raise ConfigurationError(
            f"{sink.url.split('://')[0]}:// needs the broker client ({exc.name}): "
            "pip install 'modelwire[queues]'"
        ) from None
