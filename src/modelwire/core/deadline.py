"""The time budget of the call being served, as a context variable: no transport, no I/O.

Adapters put a client's deadline here (REST's ``Request-Timeout`` header, a gRPC call's own deadline through
``CallContext``); ``DataPlane`` narrows it by ``limits.request_timeout_s`` and keeps it set while a model
runs, so a model that forwards the call (the gateway's remote models) hands the *remaining* budget on.
Deadlines are on ``time.monotonic()``'s clock.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

__all__ = ["current_deadline", "remaining_s", "reset_deadline", "use_deadline"]

_deadline: ContextVar[float | None] = ContextVar("modelwire_deadline", default=None)


def current_deadline() -> float | None:
    """The deadline of the call this task serves (``time.monotonic()`` clock), or ``None``."""
    return _deadline.get()


def use_deadline(deadline: float | None) -> Token[float | None]:
    """Set the deadline for this task (and the tasks it creates); hand the token to ``reset_deadline``."""
    return _deadline.set(deadline)


def reset_deadline(token: Token[float | None]) -> None:
    _deadline.reset(token)


def remaining_s() -> float | None:
    """Seconds left of the current deadline (may be <= 0), or ``None`` when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
