"""What a backend URL names: the embedded store (SQLite) or a server (Redis). No imports, no I/O.

The schemes are decided here and nowhere else; ``resolve.py`` turns a URL into an implementation.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REDIS_SCHEMES", "is_redis_url", "is_sqlite_url", "sqlite_path"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_SQLITE = "sqlite:///"


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
