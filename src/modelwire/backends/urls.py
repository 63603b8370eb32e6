"""What a backend URL names: the embedded store (SQLite), a server (Redis), a broker. No imports, no I/O.

The schemes are decided here and nowhere else; ``resolve.py`` turns a URL into an implementation.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

__all__ = [
    "QUEUE_SCHEMES",
    "REDIS_SCHEMES",
    "TLS_SCHEMES",
    "is_redis_url",
    "is_sqlite_url",
    "is_tls_url",
    "queue_kind",
    "sqlite_path",
    "with_credentials",
]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_SQLITE = "sqlite:///"
QUEUE_SCHEMES: dict[str, str] = {
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "nats": "nats",
    "tls": "nats",
    "redis": "redis",
    "rediss": "redis",
    "kafka": "kafka",
}
"""A ``[[queues]]`` URL's scheme to the broker it names (``backends/resolve.py`` opens it)."""
TLS_SCHEMES = ("amqps", "tls", "rediss")
"""The broker schemes that connect over TLS."""


def is_redis_url(url: str) -> bool:
    """``redis://``, ``rediss://`` (TLS) or ``unix://`` (a socket)."""
    return url.startswith(REDIS_SCHEMES)


def is_sqlite_url(url: str) -> bool:
    """``sqlite`` (the default file in the data dir) or ``sqlite:///path``."""
    return url == "sqlite" or url.startswith(_SQLITE)


def sqlite_path(url: str, data_dir: Path, default: str) -> Path:
    """The file a SQLite URL names, as SQLAlchemy spells it: ``sqlite:///relative`` (to ``data_dir``),
    ``sqlite:////absolute``; plain ``sqlite`` is ``data_dir / default``."""
    return data_dir / (url[len(_SQLITE) :] if url != "sqlite" else default)


def queue_kind(url: str) -> str | None:
    """``rabbitmq``, ``nats``, ``redis`` or ``kafka`` for a broker URL; ``None`` for an unknown scheme."""
    scheme, sep, _ = url.partition("://")
    return QUEUE_SCHEMES.get(scheme.lower()) if sep else None


def is_tls_url(url: str) -> bool:
    """``amqps://``, ``tls://`` (NATS) or ``rediss://``: the broker is reached over TLS."""
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in TLS_SCHEMES


def with_credentials(url: str, username: str | None, secret: str | None) -> str:
    """``url`` with the user name and password put back (settings keep them apart, so logs never show
    them): what a broker client is given at connect time, and nothing else."""
    if username is None and secret is None:
        return url
    parts = urllib.parse.urlsplit(url)
    auth = urllib.parse.quote(username or "", safe="")
    if secret is not None:
        auth += ":" + urllib.parse.quote(secret, safe="")
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@{host}"))
