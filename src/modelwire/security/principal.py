"""Who is calling: the ``Principal`` every request runs as, its scopes, and the context variable that
carries it from the ASGI middleware / gRPC interceptor to the core.

The middleware (REST, SSE, WebSocket handshake) and the interceptor (gRPC) authenticate, check the
route's scope, and set ``current_principal`` for the rest of the call. The core reads it for the two
checks that need the request's content: the per-model restriction (``DataPlane``) and job ownership
(``JobManager``). With authentication off every call runs as ``ANONYMOUS``, which may do everything.
"""

from __future__ import annotations

import contextvars
import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from modelwire.errors import PermissionDeniedError

__all__ = [
    "ANONYMOUS",
    "IMPLIED",
    "Principal",
    "Scope",
    "current_principal",
    "is_loopback",
    "parse_scopes",
    "use_principal",
]


class Scope(enum.StrEnum):
    """What a principal may do. A JWT carries them in its OAuth-style ``scope`` claim (space-separated)."""

    PREDICT = "predict"
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    MODELS_ADMIN = "models:admin"
    EVENTS = "events"
    FEATURES_READ = "features:read"
    FEATURES_WRITE = "features:write"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)

IMPLIED: dict[Scope, frozenset[Scope]] = {Scope.MODELS_ADMIN: frozenset({Scope.JOBS_READ})}
"""Scopes a scope includes. ``models:admin`` sees every job (``Principal.owns``), so it may read them:
a key that may only train can follow its training job through the 202's ``Location``."""


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """``["predict", "jobs:read"]`` → scopes; an unknown name raises ``ValueError`` naming the known ones."""
    out: set[Scope] = set()
    for value in values:
        for name in value.replace(",", " ").split():
            try:
                out.add(Scope(name))
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise ValueError(f"unknown scope {name!r} (known: {known})") from None
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller (or the anonymous one).

    ``id`` is stable and safe to log and store (``key:<key id>``, ``jwt:<issuer>|<sub>``, ``ip:<address>``,
    ``anonymous``): jobs remember it as their owner and rate limits count by it. ``models`` restricts
    the principal to those model names (``None``: every model).
    """

    id: str
    kind: str  # "key" | "jwt" | "anonymous"
    scopes: frozenset[Scope] = ALL_SCOPES
    models: frozenset[str] | None = None
    authenticated: bool = False

    def has(self, scope: Scope) -> bool:
        """Whether the principal holds ``scope``, or a scope that includes it (``IMPLIED``)."""
        return scope in self.scopes or any(scope in IMPLIED.get(held, ()) for held in self.scopes)

    def require(self, scope: Scope) -> None:
        """Raise ``PermissionDeniedError`` naming the missing scope."""
        if not self.has(scope):
            raise PermissionDeniedError(
                f"this credential lacks the {scope.value!r} scope",
                details={"required_scope": scope.value, "granted": sorted(s.value for s in self.scopes)},
            )

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def require_model(self, model: str) -> None:
        """Raise ``PermissionDeniedError`` when the credential is restricted to other models."""
        if not self.may_use(model):
            raise PermissionDeniedError(
                f"this credential may not use model {model!r}",
                details={"model": model, "allowed_models": sorted(self.models or ())},
            )

    def owns(self, owner: str | None) -> bool:
        """Whether a resource stored with ``owner`` (a job) belongs to this principal.

        Anonymous callers (authentication off) see everything; ``models:admin`` sees everything.
        """
        if not self.authenticated or Scope.MODELS_ADMIN in self.scopes:
            return True
        return owner == self.id


ANONYMOUS = Principal(id="anonymous", kind="anonymous")

_CURRENT: contextvars.ContextVar[Principal] = contextvars.ContextVar("modelwire_principal", default=ANONYMOUS)


def current_principal() -> Principal:
    """The principal of the call running now (``ANONYMOUS`` outside a request or with auth off)."""
    return _CURRENT.get()


def use_principal(principal: Principal) -> contextvars.Token[Principal]:
    """Set the current principal; ``_CURRENT.reset(token)`` undoes it (the middleware does)."""
    return _CURRENT.set(principal)


def reset_principal(token: contextvars.Token[Principal]) -> None:
    _CURRENT.reset(token)


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: an address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
