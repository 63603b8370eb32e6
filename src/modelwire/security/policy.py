"""The security policy: who is calling (``authenticate``), what the route needs (``rest_scope`` /
``grpc_scope``), and whether the call may go on (``admit``: scope, model restriction, rate limit).

Pure decisions, no transport: the ASGI middleware (REST, SSE, WebSocket handshake) and the gRPC
interceptor gather ``Credentials``, ask the policy, and render its errors their own way.

Authentication is on when ``auth.mode`` is ``on``, or ``auto`` on a non-loopback ``host``. Off, every call
runs as an anonymous principal ``ip:<peer>`` holding every scope (rate limits, when on, count by address).
A route the scope tables do not know needs ``models:admin``: a new endpoint is never public by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelwire.errors import ConfigurationError, UnauthenticatedError
from modelwire.security.crosssite import CrossSitePolicy
from modelwire.security.keys import KeyStore, looks_like_key
from modelwire.security.principal import ALL_SCOPES, Principal, Scope, is_loopback
from modelwire.security.ratelimit import (
    MemoryRateLimiter,
    RateDecision,
    RateLimiter,
    rate_limited_error,
    rate_limits_enabled,
)
from modelwire.security.tokens import JWTVerifier, WsTokens, invalid_token
from modelwire.settings import Settings

__all__ = [
    "Credentials",
    "SecurityPolicy",
    "auth_enabled",
    "check_exposure",
    "grpc_scope",
    "rest_scope",
]

logger = logging.getLogger("modelwire.security")

_MIN_SECRET_BYTES = 32
_NO_SCOPES: frozenset[Scope] = frozenset()
_ANONYMOUS_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a call presented. Never logged."""

    bearer: str | None = None
    """``Authorization: Bearer ...`` (an API key or a JWT)."""
    api_key: str | None = None
    """The ``auth.api_key_header`` header (``X-API-Key``)."""
    ws_token: str | None = None
    """A short-lived browser token (``Sec-WebSocket-Protocol`` entry or cookie), WebSocket handshake only."""
    peer: str | None = None
    """The client's IP address (anonymous principals are ``ip:<addr>``)."""


def auth_enabled(settings: Settings) -> bool:
    """``auth.mode``: ``on``/``off``, or ``auto`` = on unless the server binds only loopback."""
    mode = settings.auth.mode
    if mode == "auto":
        return not is_loopback(settings.host)
    return mode == "on"


def check_exposure(settings: Settings) -> bool:
    """Whether authentication is on; ``ConfigurationError`` when it is off on a non-loopback address
    without ``auth.insecure`` (the composition root calls this before it binds anything)."""
    auth_on = auth_enabled(settings)
    if not auth_on and not is_loopback(settings.host) and not settings.auth.insecure:
        raise ConfigurationError(
            f"refusing to serve on {settings.host} with authentication off: anyone who can reach it "
            "could use every model and job. Turn it on (--auth on, then `modelwire keys create`), bind "
            "127.0.0.1, or pass --insecure if a proxy in front authenticates"
        )
    return auth_on


class SecurityPolicy:
    """Authentication, authorization and rate limits for every transport. Built once, by ``app/builder.py``.

    >>> policy = SecurityPolicy.build(settings)
    >>> principal = policy.authenticate(Credentials(bearer="mw_...", peer="10.0.0.7"))
    >>> await policy.admit(principal, Scope.PREDICT, "sentiment")   # raises when refused
    """

    def __init__(
        self,
        *,
        auth_on: bool,
        limiter: RateLimiter,
        keys: KeyStore,
        jwt: JWTVerifier,
        ws_tokens: WsTokens,
        cross_site: CrossSitePolicy | None = None,
    ) -> None:
        self.auth_on = auth_on
        self.cross_site = cross_site or CrossSitePolicy(any_host=auth_on)
        """Which browser requests are refused as forged by a foreign page (``security/crosssite.py``)."""
        self.limiter = limiter
        self.keys = keys
        self.jwt = jwt
        self.ws_tokens = ws_tokens
        self._anonymous: dict[str | None, Principal] = {}
        self.enforcing = auth_on or limiter.enabled
        """False: authentication and rate limits are off, nothing can be refused (the fast path)."""

    @classmethod
    def build(
        cls, settings: Settings, *, limiter: Callable[[bool], RateLimiter] | None = None
    ) -> SecurityPolicy:
        """Check the settings (``ConfigurationError`` when they cannot be safe) and build the policy.

        ``limiter(auth_on)`` makes the rate limiter (``backends.resolve.open_rate_limiter`` keeps buckets
        in Redis when the settings say so); by default buckets are in this process.
        """
        auth = settings.auth
        auth_on = check_exposure(settings)
        if not auth_on and not is_loopback(settings.host):
            logger.warning(
                "AUTHENTICATION IS OFF on %s (--insecure): anyone who can reach this address may predict, "
                "submit and read every job, and train models",
                settings.host,
            )
        if auth.jwt_secret is not None and len(auth.jwt_secret.get_secret_value()) < _MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"--jwt-secret must be at least {_MIN_SECRET_BYTES} bytes (HS256 needs a 256-bit key); "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        verifier = JWTVerifier(auth)
        verifier.load()
        try:
            cross_site = CrossSitePolicy(
                (*settings.http.allowed_origins, *settings.http.cors_origins), any_host=auth_on
            )
        except ValueError as exc:
            raise ConfigurationError(f"http.allowed_origins / http.cors_origins: {exc}") from None
        keys = KeyStore.in_data_dir(settings.data_dir)
        policy = cls(
            auth_on=auth_on,
            limiter=(limiter or _memory_limiter(settings))(auth_on),
            keys=keys,
            jwt=verifier,
            ws_tokens=WsTokens(settings.data_dir / "ws_token_key", auth.ws_token_ttl_s),
            cross_site=cross_site,
        )
        if auth_on and not verifier.configured and keys.active_count() == 0:
            logger.warning(
                "authentication is on but no credential can pass yet: create an API key with "
                "`modelwire keys create --scopes predict --data-dir %s` (takes effect without a restart), "
                "or configure --jwt-secret / --jwt-jwks",
                settings.data_dir,
            )
        return policy

    def authenticate(self, creds: Credentials) -> Principal:
        """The principal ``creds`` prove, or ``UnauthenticatedError``. Auth off: anonymous ``ip:<peer>``."""
        if not self.auth_on:
            return self.public(creds.peer)
        if creds.ws_token is not None:
            principal = self.ws_tokens.verify(creds.ws_token)
            if principal.kind == "key" and not self.keys.is_active(principal.id.removeprefix("key:")):
                raise invalid_token("the API key this WebSocket token was issued for was revoked")
            return principal
        token = creds.bearer or creds.api_key
        if token is None:
            raise UnauthenticatedError(
                "this endpoint needs credentials: send 'Authorization: Bearer <API key or JWT>' "
                "(create a key with `modelwire keys create`)"
            )
        if looks_like_key(token):
            return self.keys.verify(token).principal()
        if token.count(".") == 2:
            return self.jwt.verify(token)
        raise invalid_token("the bearer credential is neither an API key (mw_...) nor a JWT")

    def public(self, peer: str | None) -> Principal:
        """Who a call to a public route (or any call, auth off) runs as: anonymous ``ip:<peer>``; with
        auth on, holding no scope. Cached per address: building a frozen dataclass costs ~1 us."""
        principal = self._anonymous.get(peer)
        if principal is None:
            if len(self._anonymous) >= _ANONYMOUS_CACHE:
                self._anonymous.clear()
            scopes = _NO_SCOPES if self.auth_on else ALL_SCOPES
            principal = Principal(id=f"ip:{peer or 'unknown'}", kind="anonymous", scopes=scopes)
            self._anonymous[peer] = principal
        return principal

    async def decide(
        self, principal: Principal, scope: Scope | None, model: str | None
    ) -> RateDecision | None:
        """Like ``admit``, but a rate-limit refusal is returned (``allowed=False``) rather than raised,
        for transports that put the decision in headers."""
        if scope is not None:
            principal.require(scope)
        if model is not None:
            principal.require_model(model)
        if not self.limiter.enabled:
            return None
        return await self.limiter.acquire(principal.id, scope, model)

    async def admit(
        self, principal: Principal, scope: Scope | None, model: str | None
    ) -> RateDecision | None:
        """Check the scope (``PermissionDeniedError`` names it), the model restriction, then take a
        rate-limit token (``ResourceExhaustedError`` with ``retry_after_s`` when refused)."""
        decision = await self.decide(principal, scope, model)
        if decision is not None and not decision.allowed:
            raise rate_limited_error(decision)
        return decision

    async def meter(self, principal: Principal, scope: Scope | None, model: str | None) -> None:
        """Take a rate-limit token as ``admit`` does, deciding no scope: for an action whose façade decides
        it (a job's scope depends on its kind, ``security.scopes.job_scope``). Raises when refused."""
        if self.limiter.enabled:
            decision = await self.limiter.acquire(principal.id, scope, model)
            if decision is not None and not decision.allowed:
                raise rate_limited_error(decision)

    def www_authenticate(self, exc: UnauthenticatedError) -> str:
        """The ``WWW-Authenticate`` value for a 401 (RFC 6750)."""
        error = exc.details.get("error")
        if error:
            return f'Bearer realm="modelwire", error="{error}"'
        return 'Bearer realm="modelwire"'

    async def close(self) -> None:
        await self.limiter.close()


# -- route -> scope ------------------------------------------------------------------------------------

_PUBLIC = frozenset(
    {
        "/",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/asyncapi.json",
        "/favicon.ico",
        "/v1/models",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
    }
)
_READ = frozenset({"GET", "HEAD"})


def rest_scope(method: str, path: str) -> tuple[Scope | None, str | None]:
    """``(scope, model named in the path)`` a REST/SSE/WebSocket route needs; ``None`` scope = public.

    Public: health, metadata, the model list, the dashboard's files, ``/docs`` and its assets,
    ``/openapi.json``.
    ``/metrics`` needs ``models:admin`` (Prometheus can send a bearer token). Unknown: ``models:admin``.
    """
    if path in _PUBLIC or path.startswith(("/static/", "/docs/assets/")):
        return None, None
    if path == "/predict":
        return Scope.PREDICT, None
    parts = path.split("/")[1:]
    n = len(parts)
    if n >= 2 and parts[0] == "v1":
        head = parts[1]
        if head == "jobs":
            return (Scope.JOBS_READ if method in _READ else Scope.JOBS_WRITE), None
        if head == "features":  # the features façade checks again, for every wire
            return (Scope.FEATURES_WRITE if parts[-1] == "push" else Scope.FEATURES_READ), None
        if head == "models" and n >= 4:
            name, rest = parts[2], parts[3:]
            if rest[0] == "versions" and len(rest) >= 3:
                rest = rest[2:]
            if rest in (["predict"], ["predict", "stream"], ["ws"]):
                return Scope.PREDICT, name
            if rest == ["train"]:
                return Scope.MODELS_ADMIN, name
        elif parts[1:] in (["ws"], ["ws", "echo"], ["auth", "ws-token"]):
            return Scope.PREDICT, None
        elif parts[1:] == ["events"]:
            return Scope.EVENTS, None
        elif parts[1:] in (["monitoring"], ["alerts"]) and method in _READ:
            return Scope.EVENTS, None  # what the alerts topic shows; silences need models:admin
    elif n >= 3 and parts[0] == "v2" and parts[1] == "models":
        name, rest = parts[2], parts[3:]
        if rest[:1] == ["versions"] and len(rest) >= 2:
            rest = rest[2:]
        if rest == ["infer"]:
            return Scope.PREDICT, name
        if rest in ([], ["ready"]) and method in _READ:
            return None, None
    return Scope.MODELS_ADMIN, None


_GRPC: dict[str, Scope | None] = {
    "/modelwire.v1.Predictor/Predict": Scope.PREDICT,
    "/modelwire.v1.Predictor/PredictStream": Scope.PREDICT,
    "/modelwire.v1.Predictor/ListModels": None,
    "/modelwire.v1.BatchPredictor/PredictBatch": Scope.PREDICT,
    "/modelwire.v1.Jobs/Submit": Scope.JOBS_WRITE,
    "/modelwire.v1.Jobs/SubmitStream": Scope.JOBS_WRITE,
    "/modelwire.v1.Jobs/Cancel": Scope.JOBS_WRITE,
    "/modelwire.v1.Jobs/Retry": Scope.JOBS_WRITE,
    "/modelwire.v1.Jobs/Get": Scope.JOBS_READ,
    "/modelwire.v1.Jobs/List": Scope.JOBS_READ,
    "/modelwire.v1.Jobs/Watch": Scope.JOBS_READ,
    "/modelwire.v1.Jobs/Results": Scope.JOBS_READ,
    "/modelwire.v1.Events/Subscribe": Scope.EVENTS,
    "/modelwire.v1.Monitoring/Get": Scope.EVENTS,
    "/modelwire.v1.Monitoring/ListAlerts": Scope.EVENTS,
    "/modelwire.v1.Monitoring/Silence": Scope.MODELS_ADMIN,
    "/modelwire.v1.Monitoring/Unsilence": Scope.MODELS_ADMIN,
    "/modelwire.v1.Features/GetOnlineFeatures": Scope.FEATURES_READ,
    "/modelwire.v1.Features/ListFeatureViews": Scope.FEATURES_READ,
    "/modelwire.v1.Features/Push": Scope.FEATURES_WRITE,
    "/inference.GRPCInferenceService/ModelInfer": Scope.PREDICT,
    "/inference.GRPCInferenceService/ModelStreamInfer": Scope.PREDICT,
    "/inference.GRPCInferenceService/ServerLive": None,
    "/inference.GRPCInferenceService/ServerReady": None,
    "/inference.GRPCInferenceService/ModelReady": None,
    "/inference.GRPCInferenceService/ServerMetadata": None,
    "/inference.GRPCInferenceService/ModelMetadata": None,
}
_GRPC_PUBLIC_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def grpc_scope(full_method: str) -> Scope | None:
    """The scope a gRPC method needs (``/package.Service/Method``); ``None`` = public (health,
    reflection, metadata, model list). Unknown methods need ``models:admin``."""
    try:
        return _GRPC[full_method]
    except KeyError:
        if full_method.startswith(_GRPC_PUBLIC_SERVICES):
            return None
        return Scope.MODELS_ADMIN


def _memory_limiter(settings: Settings) -> Callable[[bool], RateLimiter]:
    def make(auth_on: bool) -> RateLimiter:
        return MemoryRateLimiter(
            settings.rate_limits.rules, enabled=rate_limits_enabled(settings, auth_on=auth_on)
        )

    return make
