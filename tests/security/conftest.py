"""Signing keys (RSA, EC, HMAC), a JWKS file, and ``mint`` for the authentication tests."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.test"
AUDIENCE = "modelwire-test"
HS_SECRET = "s" * 40  # 40 bytes: over the 32-byte minimum


@dataclass(frozen=True)
class SigningKeys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    other_rsa: rsa.RSAPrivateKey  # not in the JWKS

    @property
    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
                {**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"},
            ]
        }


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    return SigningKeys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        other_rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture
def jwks_file(signing_keys: SigningKeys, tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(signing_keys.jwks()))
    return path


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims (iss, aud, sub, scope predict, exp in 5 minutes); ``None`` values drop a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "scope": "predict",
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(keys: SigningKeys, alg: str = "RS256", kid: str | None = None, **overrides: Any) -> str:
    """A JWT signed the way ``alg`` says: RS256 (kid rsa-1), ES256 (kid ec-1), HS256 (the test secret)."""
    body = claims(**overrides)
    if alg == "RS256":
        return jwt.encode(body, keys.rsa, algorithm="RS256", headers={"kid": kid or "rsa-1"})
    if alg == "ES256":
        return jwt.encode(body, keys.ec, algorithm="ES256", headers={"kid": kid or "ec-1"})
    if alg == "HS256":
        return jwt.encode(body, HS_SECRET, algorithm="HS256", headers={"kid": kid} if kid else None)
    raise ValueError(alg)


def unsigned(**overrides: Any) -> str:
    """``alg: none``: a header, the claims, and an empty signature."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims(**overrides))}."


def hs256_with(key: bytes, **overrides: Any) -> str:
    """An HS256 token whose HMAC key is ``key`` (the RSA public key PEM: the algorithm-confusion attack).

    PyJWT refuses to use a PEM as an HMAC key, so the token is put together by hand.
    """
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        + "."
        + part(json.dumps(claims(**overrides)).encode())
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"
