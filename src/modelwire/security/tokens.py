"""Bearer tokens: JWT verification (HS256 secret, RS256/ES256 from a JWKS file) and the short-lived
WebSocket tokens the server signs itself for browsers.

Which algorithm a token may use follows the configured key, never the token's header: an ``HS*`` header is
verified only against ``auth.jwt_secret`` (and refused when there is none), any other header only against
the JWKS key its ``kid`` names, with that key's own algorithm. So ``alg: none``, an HS256 token "signed"
with the RSA public key, or an RS256 token on a server that only has an HS secret are all refused.

A JWT must carry ``exp`` and ``sub``; ``nbf``, ``iss`` (when ``auth.jwt_issuer`` is set) and ``aud`` (when
``auth.jwt_audience`` is set; a token with an ``aud`` is refused when none is configured) are checked with
``auth.jwt_leeway_s`` of clock skew. Scopes come from the OAuth ``scope`` claim (space-separated; unknown
names are ignored), the optional per-model restriction from the ``models`` claim (a list or a
space-separated string). The principal is ``jwt:<iss>|<sub>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from modelwire.errors import ConfigurationError, UnauthenticatedError
from modelwire.security.keys import FileStamp
from modelwire.security.principal import Principal, Scope
from modelwire.settings import AuthSettings

__all__ = ["JWTVerifier", "WsTokens", "invalid_token"]

logger = logging.getLogger("modelwire.security")

_HMAC = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_WS_AUDIENCE = "modelwire:ws"
_WS_ISSUER = "modelwire"

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token expired: get a new one"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (its nbf is in the future)"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) is not the one this server trusts"),
    (jwt.InvalidAudienceError, "the token's audience (aud) is not this server"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted for its key"),
)


def invalid_token(message: str) -> UnauthenticatedError:
    """A presented credential that does not verify (``WWW-Authenticate: ... error="invalid_token"``)."""
    return UnauthenticatedError(message, details={"error": "invalid_token"})


def _reason(exc: jwt.PyJWTError) -> str:
    for kind, message in _REASONS:
        if isinstance(exc, kind):
            if isinstance(exc, jwt.MissingRequiredClaimError):
                return f"the token lacks the required {exc.claim!r} claim"
            return message
    return "malformed token"


def _claim_words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _scopes(value: Any) -> frozenset[Scope]:
    known = {s.value for s in Scope}
    return frozenset(Scope(word) for word in _claim_words(value) if word in known)


class JWTVerifier:
    """Verifies JWT bearer tokens against ``auth.jwt_secret`` and/or ``auth.jwt_jwks``.

    The JWKS file is re-read when it changes (key rotation without a restart); a file that no longer
    parses keeps the previous keys and logs an error.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._secret = settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
        self._jwks_path = settings.jwt_jwks
        self._jwks_stamp = FileStamp(settings.jwt_jwks) if settings.jwt_jwks else None
        self._jwks: dict[str | None, jwt.PyJWK] = {}
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s

    @property
    def configured(self) -> bool:
        return self._secret is not None or self._jwks_path is not None

    def load(self) -> None:
        """Read the JWKS file now; ``ConfigurationError`` when it cannot be used (start-up check)."""
        if self._jwks_path is not None and self._jwks_stamp is not None:
            self._jwks = _read_jwks(self._jwks_path)
            self._jwks_stamp.changed()

    def _keys(self) -> dict[str | None, jwt.PyJWK]:
        if self._jwks_path is not None and self._jwks_stamp is not None and self._jwks_stamp.changed():
            try:
                self._jwks = _read_jwks(self._jwks_path)
            except ConfigurationError as exc:
                logger.error("keeping the previous JWT keys: %s", exc.message)
        return self._jwks

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, str]:
        """The key and the one algorithm a token with this header may be verified with."""
        alg = header.get("alg")
        if alg in _HMAC:
            if self._secret is None:
                raise invalid_token("HMAC-signed tokens are not accepted by this server")
            return self._secret, "HS256"
        if alg not in _ASYMMETRIC:
            raise invalid_token(f"token algorithm {str(alg)[:16]!r} is not accepted")
        keys = self._keys()
        if not keys:
            raise invalid_token("public-key signed tokens are not accepted by this server")
        kid = header.get("kid")
        key = keys.get(kid) if kid is not None else (next(iter(keys.values())) if len(keys) == 1 else None)
        if key is None:
            raise invalid_token("the token's key id (kid) is not in the server's JWKS")
        return key.key, key.algorithm_name

    def verify(self, token: str) -> Principal:
        """The principal a JWT names, or ``UnauthenticatedError`` saying what is wrong with it."""
        if not self.configured:
            raise invalid_token("JWT bearer tokens are not accepted: the server has no JWT key configured")
        try:
            header = jwt.get_unverified_header(token)
            key, algorithm = self._key_for(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise invalid_token(_reason(exc)) from None
        models = claims.get("models")
        return Principal(
            id=f"jwt:{claims.get('iss') or ''}|{claims['sub']}",
            kind="jwt",
            scopes=_scopes(claims.get("scope")),
            models=frozenset(_claim_words(models)) if models is not None else None,
            authenticated=True,
        )


def _read_jwks(path: Path) -> dict[str | None, jwt.PyJWK]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = jwt.PyJWKSet.from_dict(data).keys
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise ConfigurationError(f"cannot use the JWKS file {path}: {exc}") from exc
    out: dict[str | None, jwt.PyJWK] = {}
    for key in keys:
        if key.algorithm_name not in _ASYMMETRIC:
            raise ConfigurationError(
                f"the JWKS file {path} holds a {key.algorithm_name} key: it may hold only public keys "
                "(RS256, ES256, ...); use --jwt-secret for HS256"
            )
        out[key.key_id] = key
    return out


class WsTokens:
    """Short-lived tokens for browser WebSockets, signed with a server key kept in the data dir.

    A browser cannot set ``Authorization`` on a WebSocket; it asks ``POST /v1/auth/ws-token`` (with its
    normal credentials) for a token and passes it in a ``Sec-WebSocket-Protocol`` entry or a cookie. The
    token carries the principal (id, scopes, models) and is good for ``auth.ws_token_ttl_s`` seconds, on the
    WebSocket handshake only (its audience is ``modelwire:ws``; bearer verification never uses this key).
    """

    def __init__(self, key_path: Path, ttl_s: float, *, clock: Callable[[], float] = time.time) -> None:
        self._path = key_path
        self.ttl_s = ttl_s
        self._clock = clock
        self._key: bytes | None = None

    def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = _load_or_create_key(self._path)
        return self._key

    def issue(self, principal: Principal) -> tuple[str, float]:
        """``(token, expires_at)`` for ``principal`` (an authenticated one: an anonymous token would
        carry every scope into a server that has since turned authentication on)."""
        if not principal.authenticated:
            raise ValueError("WebSocket tokens are issued only to authenticated principals")
        now = self._clock()
        expires = now + self.ttl_s
        claims: dict[str, Any] = {
            "iss": _WS_ISSUER,
            "aud": _WS_AUDIENCE,
            "sub": principal.id,
            "kind": principal.kind,
            "scope": " ".join(sorted(s.value for s in principal.scopes)),
            "iat": int(now),
            "exp": expires,
        }
        if principal.models is not None:
            claims["models"] = sorted(principal.models)
        return jwt.encode(claims, self._signing_key(), algorithm="HS256"), expires

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._signing_key(),
                algorithms=["HS256"],
                audience=_WS_AUDIENCE,
                issuer=_WS_ISSUER,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise invalid_token(f"WebSocket token: {_reason(exc)}") from None
        models = claims.get("models")
        return Principal(
            id=str(claims["sub"]),
            kind=str(claims.get("kind") or "jwt"),
            scopes=_scopes(claims.get("scope")),
            models=frozenset(_claim_words(models)) if models is not None else None,
            authenticated=True,
        )


def _load_or_create_key(path: Path) -> bytes:
    """32 random bytes in ``path`` (0600), shared by every process on this data dir. Creation is atomic:
    the first writer's key wins (``os.link`` fails if the file is already there)."""
    with contextlib.suppress(FileNotFoundError):
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".ws-key-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())
