"""JWT verification: claims checked, algorithms bound to the configured keys, browser WebSocket tokens."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from modelwire.errors import ConfigurationError, UnauthenticatedError
from modelwire.security.principal import Principal, Scope
from modelwire.security.tokens import JWTVerifier, WsTokens
from modelwire.settings import AuthSettings
from tests.security.conftest import (
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    SigningKeys,
    hs256_with,
    mint,
    unsigned,
)


def verifier(jwks: Path | None = None, secret: str | None = None, **auth: Any) -> JWTVerifier:
    settings = AuthSettings(
        jwt_jwks=jwks,
        jwt_secret=SecretStr(secret) if secret else None,
        jwt_issuer=auth.pop("issuer", ISSUER),
        jwt_audience=auth.pop("audience", AUDIENCE),
        **auth,
    )
    out = JWTVerifier(settings)
    out.load()
    return out


def refused(check: JWTVerifier, token: str) -> str:
    with pytest.raises(UnauthenticatedError) as caught:
        check.verify(token)
    assert caught.value.details == {"error": "invalid_token"}
    assert token not in caught.value.message
    return caught.value.message


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_jwks_tokens_verify_and_carry_scopes_and_models(
    signing_keys: SigningKeys, jwks_file: Path, alg: str
) -> None:
    token = mint(signing_keys, alg, scope="predict jobs:read other:scope", models=["echo", "b"])
    principal = verifier(jwks_file).verify(token)
    assert principal == Principal(
        id=f"jwt:{ISSUER}|alice",
        kind="jwt",
        scopes=frozenset({Scope.PREDICT, Scope.JOBS_READ}),
        models=frozenset({"echo", "b"}),
        authenticated=True,
    )


def test_hs256_with_the_secret(signing_keys: SigningKeys) -> None:
    principal = verifier(secret=HS_SECRET).verify(mint(signing_keys, "HS256", models="echo"))
    assert principal.models == {"echo"}
    assert principal.scopes == {Scope.PREDICT}


@dataclass(frozen=True)
class FromNow:
    """A time claim ``seconds`` from when the test runs (a token minted at collection would age)."""

    seconds: int


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"exp": FromNow(-120)}, "expired", id="exp 2 min ago"),
        pytest.param({"nbf": FromNow(600)}, "not valid yet", id="nbf in 10 min"),
        pytest.param({"iss": "https://evil.test"}, "issuer", id="another issuer"),
        pytest.param({"aud": "someone-else"}, "audience", id="another audience"),
        pytest.param({"exp": None}, "'exp'", id="no exp"),
        pytest.param({"sub": None}, "'sub'", id="no sub"),
    ],
)
def test_bad_claims_are_refused(
    signing_keys: SigningKeys, jwks_file: Path, overrides: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    claims = {k: now + v.seconds if isinstance(v, FromNow) else v for k, v in overrides.items()}
    assert reason in refused(verifier(jwks_file), mint(signing_keys, **claims))


def test_leeway_tolerates_a_little_clock_skew(signing_keys: SigningKeys, jwks_file: Path) -> None:
    token = mint(signing_keys, exp=int(time.time()) - 5)
    assert verifier(jwks_file, jwt_leeway_s=30).verify(token).id.endswith("|alice")
    refused(verifier(jwks_file, jwt_leeway_s=0), token)


def test_an_audience_is_refused_when_none_is_configured(signing_keys: SigningKeys, jwks_file: Path) -> None:
    assert "audience" in refused(verifier(jwks_file, audience=None), mint(signing_keys))
    assert verifier(jwks_file, audience=None).verify(mint(signing_keys, aud=None)).authenticated


def test_alg_none_is_refused(jwks_file: Path) -> None:
    for check in (verifier(jwks_file), verifier(secret=HS_SECRET)):
        assert "'none'" in refused(check, unsigned())


def test_hs256_signed_with_the_rsa_public_key_is_refused(signing_keys: SigningKeys, jwks_file: Path) -> None:
    """The classic confusion: the verifier must not use the RSA public key as an HMAC secret."""
    token = hs256_with(signing_keys.rsa_public_pem)
    assert "HMAC" in refused(verifier(jwks_file), token)
    refused(verifier(jwks_file, secret=HS_SECRET), token)  # checked against the real secret: no match


def test_an_rs256_token_is_refused_when_only_a_secret_is_configured(signing_keys: SigningKeys) -> None:
    assert "public-key" in refused(verifier(secret=HS_SECRET), mint(signing_keys, "RS256"))


def test_a_token_cannot_pick_another_keys_algorithm(signing_keys: SigningKeys, jwks_file: Path) -> None:
    # An RS256 token naming the EC key: the EC key verifies only ES256.
    assert "algorithm" in refused(verifier(jwks_file), mint(signing_keys, "RS256", kid="ec-1"))


def test_unknown_kid_and_foreign_key(signing_keys: SigningKeys, jwks_file: Path) -> None:
    assert "kid" in refused(verifier(jwks_file), mint(signing_keys, kid="nope"))
    forged = jwt.encode(
        {"sub": "x", "exp": time.time() + 60, "iss": ISSUER, "aud": AUDIENCE},
        signing_keys.other_rsa,
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    )
    assert "signature" in refused(verifier(jwks_file), forged)


def test_garbage_is_refused(jwks_file: Path) -> None:
    assert "malformed" in refused(verifier(jwks_file), "a.b.c")


def test_nothing_configured_refuses_every_jwt(signing_keys: SigningKeys) -> None:
    assert "no JWT key" in refused(verifier(), mint(signing_keys, "HS256"))


def test_a_jwks_with_a_symmetric_key_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}))
    with pytest.raises(ConfigurationError, match="only public keys"):
        verifier(path)
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot use the JWKS file"):
        verifier(path)


def test_the_jwks_file_is_reloaded_when_it_changes(
    signing_keys: SigningKeys, jwks_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = verifier(jwks_file)
    token = mint(signing_keys, "ES256")
    assert check.verify(token).authenticated
    only_rsa = signing_keys.jwks()
    only_rsa["keys"] = only_rsa["keys"][:1]
    jwks_file.write_text(json.dumps(only_rsa, indent=1))
    assert "kid" in refused(check, token)  # the EC key was rotated out
    jwks_file.write_text("{broken")
    assert check.verify(mint(signing_keys, "RS256")).authenticated  # keeps the previous keys
    assert "keeping the previous JWT keys" in caplog.text


def test_ws_tokens_round_trip_and_expire(tmp_path: Path) -> None:
    now = [1_000_000.0]
    tokens = WsTokens(tmp_path / "ws_token_key", 60, clock=lambda: now[0])
    principal = Principal("key:abc", "key", frozenset({Scope.PREDICT}), frozenset({"echo"}), True)
    token, expires = tokens.issue(principal)
    assert expires == now[0] + 60
    again = WsTokens(tmp_path / "ws_token_key", 60)  # another process, same data dir: same key
    with pytest.raises(UnauthenticatedError, match="expired"):
        again.verify(token)  # issued "in 1970"
    now[0] = time.time()
    token, _ = tokens.issue(principal)
    assert again.verify(token) == principal
    assert (tmp_path / "ws_token_key").stat().st_mode & 0o077 == 0


def test_a_ws_token_is_not_a_bearer_jwt(tmp_path: Path) -> None:
    tokens = WsTokens(tmp_path / "ws_token_key", 60)
    token, _ = tokens.issue(Principal("key:abc", "key", frozenset({Scope.PREDICT}), None, True))
    refused(verifier(secret=HS_SECRET), token)
