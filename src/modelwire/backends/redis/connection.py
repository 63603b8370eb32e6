"""The one Redis connection module: what a ``redis://`` URL means, the client, and the error boundary.

Every Redis backend (job store, event bus, rate limiter) connects through ``RedisTarget.connect`` and
translates redis-py's exceptions in ``map_redis_errors``; none imports another to get a connection.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from modelwire.backends.urls import is_redis_url
from modelwire.errors import ConfigurationError, InternalError, ModelwireError, UnavailableError

__all__ = ["RedisTarget", "map_redis_errors"]

logger = logging.getLogger("modelwire.backends")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the Redis backend lives: the URL redis-py connects to and the key prefix.

    >>> RedisTarget.parse("redis://10.0.0.5:6379/2?prefix=prod").prefix
    'prod:'
    """

    url: str
    prefix: str = "modelwire:"

    @classmethod
    def parse(cls, backend: str) -> RedisTarget:
        if not is_redis_url(backend):
            raise ConfigurationError(f"{backend!r} is not a redis:// (rediss://, unix://) URL")
        parts = urllib.parse.urlsplit(backend)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((v for k, v in query if k == "prefix"), "modelwire")
        if not prefix or any(c in prefix for c in " {}"):
            raise ConfigurationError(f"the Redis key prefix {prefix!r} must be non-empty, without spaces")
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "prefix"])
        url = urllib.parse.urlunsplit(parts._replace(query=rest))
        return cls(url, prefix if prefix.endswith(":") else prefix + ":")

    @property
    def display(self) -> str:
        """The URL without a password, for logs and banners."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def connect(
        self, name: str = "modelwire", *, retries: int = 3, tls: dict[str, Any] | None = None
    ) -> Redis:
        """A client (a connection pool); ``name`` is what ``CLIENT LIST`` shows for its connections;
        ``tls``: redis-py's ``ssl_*`` arguments for a ``rediss://`` URL (``BrokerSettings.redis_tls``)."""
        # A dropped connection (Redis restarted, an idle one cut by a proxy) is retried on a fresh one;
        # every script is safe to run twice (see job_scripts.py).
        return Redis.from_url(
            self.url,
            decode_responses=False,
            health_check_interval=30,
            socket_keepalive=True,
            client_name=name,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            **(tls or {}),
        )


@contextlib.contextmanager
def map_redis_errors(what: str = "the job store") -> Iterator[None]:
    """The one boundary where redis-py's exceptions become modelwire's (``what`` names the user)."""
    try:
        yield
    except ModelwireError:
        raise
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise UnavailableError(f"Redis is unreachable: {exc}", retry_after_s=1.0) from exc
    except redis_errors.RedisError as exc:
        err = InternalError(f"{what} failed")
        logger.error("Redis error [error_id=%s]: %s", err.error_id, exc)
        raise err from exc
