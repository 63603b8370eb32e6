"""The policy: when authentication is on, who a credential is, which scope a route needs, admission."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from modelwire.errors import (
    ConfigurationError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from modelwire.security.policy import (
    Credentials,
    SecurityPolicy,
    auth_enabled,
    grpc_scope,
    rest_scope,
)
from modelwire.security.principal import Principal, Scope
from modelwire.security.scopes import job_scope, require_topics
from modelwire.settings import RateLimitRule, Settings
from tests.security.conftest import HS_SECRET, SigningKeys, mint

PREDICT = Scope.PREDICT


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(**({"data_dir": tmp_path, "host": "127.0.0.1"} | values))


@pytest.mark.parametrize(
    ("host", "mode", "on"),
    [
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("localhost", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.1.2.3", "auto", True),
        ("127.0.0.1", "on", True),
        ("0.0.0.0", "off", False),
    ],
)
def test_auth_mode(tmp_path: Path, host: str, mode: str, on: bool) -> None:
    assert auth_enabled(settings(tmp_path, host=host, auth={"mode": mode})) is on


def test_off_on_a_public_address_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--insecure"):
        SecurityPolicy.build(settings(tmp_path, host="0.0.0.0", auth={"mode": "off"}))


def test_insecure_starts_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "modelwire.security")
    policy = SecurityPolicy.build(settings(tmp_path, host="0.0.0.0", auth={"mode": "off", "insecure": True}))
    assert not policy.auth_on
    assert "AUTHENTICATION IS OFF on 0.0.0.0" in caplog.text


def test_on_without_any_credential_says_how_to_make_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "modelwire.security")
    SecurityPolicy.build(settings(tmp_path, auth={"mode": "on"}))
    assert "modelwire keys create" in caplog.text


def test_a_short_jwt_secret_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        SecurityPolicy.build(settings(tmp_path, auth={"mode": "on", "jwt_secret": "short"}))


def test_authenticate(tmp_path: Path, signing_keys: SigningKeys) -> None:
    policy = SecurityPolicy.build(settings(tmp_path, auth={"mode": "on", "jwt_secret": HS_SECRET}))
    key, record = policy.keys.create({PREDICT})
    assert policy.authenticate(Credentials(bearer=key)).id == f"key:{record.id}"
    assert policy.authenticate(Credentials(api_key=key)).id == f"key:{record.id}"
    jwt_principal = policy.authenticate(Credentials(bearer=mint(signing_keys, "HS256", aud=None)))
    assert jwt_principal.id == "jwt:https://issuer.test|alice"
    with pytest.raises(UnauthenticatedError, match="needs credentials") as missing:
        policy.authenticate(Credentials(peer="10.0.0.1"))
    assert policy.www_authenticate(missing.value) == 'Bearer realm="modelwire"'
    with pytest.raises(UnauthenticatedError) as bad:
        policy.authenticate(Credentials(bearer="not-a-key"))
    assert policy.www_authenticate(bad.value) == 'Bearer realm="modelwire", error="invalid_token"'
    # A WebSocket token is good only as a WebSocket token (never as a bearer).
    ws_token, _ = policy.ws_tokens.issue(policy.authenticate(Credentials(bearer=key)))
    assert policy.authenticate(Credentials(ws_token=ws_token)).id == f"key:{record.id}"
    with pytest.raises(UnauthenticatedError):
        policy.authenticate(Credentials(bearer=ws_token))
    policy.keys.revoke(record.id)
    with pytest.raises(UnauthenticatedError, match="revoked"):
        policy.authenticate(Credentials(ws_token=ws_token))


def test_auth_off_is_anonymous_by_address(tmp_path: Path) -> None:
    policy = SecurityPolicy.build(settings(tmp_path))
    principal = policy.authenticate(Credentials(bearer="anything", peer="127.0.0.9"))
    assert principal.id == "ip:127.0.0.9"
    assert not principal.authenticated
    assert principal.scopes == frozenset(Scope)
    assert policy.public("127.0.0.9") is principal  # cached per address


async def test_admit_checks_scope_model_and_rate(tmp_path: Path) -> None:
    rules = (RateLimitRule(scope="predict", model="tiny", rate_per_s=0.01, burst=1),)
    policy = SecurityPolicy.build(settings(tmp_path, auth={"mode": "on"}, rate_limits={"rules": rules}))
    reader = Principal("key:r", "key", frozenset({Scope.JOBS_READ}), None, True)
    with pytest.raises(PermissionDeniedError, match="'predict' scope") as denied:
        await policy.admit(reader, PREDICT, "echo")
    assert denied.value.details["required_scope"] == "predict"
    only_b = Principal("key:b", "key", frozenset({PREDICT}), frozenset({"b"}), True)
    with pytest.raises(PermissionDeniedError, match="model 'echo'"):
        await policy.admit(only_b, PREDICT, "echo")
    assert await policy.admit(only_b, PREDICT, "b") is None  # no rule for model b
    anyone = Principal("key:a", "key", frozenset({PREDICT}), None, True)
    first = await policy.admit(anyone, PREDICT, "tiny")
    assert first is not None
    assert first.allowed
    assert first.limit == 1
    with pytest.raises(ResourceExhaustedError) as limited:
        await policy.admit(anyone, PREDICT, "tiny")
    assert limited.value.retry_after_s is not None
    assert (await policy.decide(only_b, None, None)) is None
    await policy.close()


@pytest.mark.parametrize(
    ("method", "path", "scope", "model"),
    [
        ("POST", "/predict", PREDICT, None),
        ("POST", "/v1/models/echo/predict", PREDICT, "echo"),
        ("POST", "/v1/models/echo/versions/2/predict", PREDICT, "echo"),
        ("POST", "/v1/models/echo/predict/stream", PREDICT, "echo"),
        ("POST", "/v1/models/echo/versions/2/predict/stream", PREDICT, "echo"),
        ("GET", "/v1/models/echo/ws", PREDICT, "echo"),
        ("GET", "/v1/ws", PREDICT, None),
        ("GET", "/v1/ws/echo", PREDICT, None),
        ("POST", "/v1/auth/ws-token", PREDICT, None),
        ("POST", "/v2/models/echo/infer", PREDICT, "echo"),
        ("POST", "/v2/models/echo/versions/1/infer", PREDICT, "echo"),
        ("GET", "/v1/jobs", Scope.JOBS_READ, None),
        ("GET", "/v1/jobs/abc/results", Scope.JOBS_READ, None),
        ("POST", "/v1/jobs", Scope.JOBS_WRITE, None),
        ("DELETE", "/v1/jobs/abc", Scope.JOBS_WRITE, None),
        ("POST", "/v1/jobs/abc/retry", Scope.JOBS_WRITE, None),
        ("POST", "/v1/models/echo/train", Scope.MODELS_ADMIN, "echo"),
        ("GET", "/v1/events", Scope.EVENTS, None),
        ("GET", "/metrics", Scope.MODELS_ADMIN, None),
        ("GET", "/v1/something-new", Scope.MODELS_ADMIN, None),
        ("POST", "/v2/models/echo", Scope.MODELS_ADMIN, None),
        ("GET", "/", None, None),
        ("GET", "/static/app.js", None, None),
        ("GET", "/docs", None, None),
        ("GET", "/openapi.json", None, None),
        ("GET", "/v1/models", None, None),
        ("GET", "/v2", None, None),
        ("GET", "/v2/health/ready", None, None),
        ("GET", "/v2/models/echo", None, None),
        ("GET", "/v2/models/echo/versions/1/ready", None, None),
    ],
)
def test_rest_scope(method: str, path: str, scope: Scope | None, model: str | None) -> None:
    assert rest_scope(method, path) == (scope, model)


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("/modelwire.v1.Predictor/Predict", PREDICT),
        ("/modelwire.v1.Predictor/ListModels", None),
        ("/modelwire.v1.BatchPredictor/PredictBatch", Scope.PREDICT),
        ("/modelwire.v1.Jobs/Submit", Scope.JOBS_WRITE),
        ("/modelwire.v1.Jobs/Watch", Scope.JOBS_READ),
        ("/modelwire.v1.Events/Subscribe", Scope.EVENTS),
        ("/inference.GRPCInferenceService/ModelInfer", PREDICT),
        ("/inference.GRPCInferenceService/ServerReady", None),
        ("/grpc.health.v1.Health/Check", None),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
        ("/modelwire.v1.Admin/Anything", Scope.MODELS_ADMIN),
    ],
)
def test_grpc_scope(method: str, scope: Scope | None) -> None:
    assert grpc_scope(method) == scope


# -- scopes decided where the action happens (security/scopes.py) ----------------------------------------


def test_a_training_job_needs_models_admin_and_a_prediction_job_jobs_write() -> None:
    assert job_scope("train") is Scope.MODELS_ADMIN
    assert job_scope("predict") is Scope.JOBS_WRITE


def test_models_admin_includes_reading_jobs_only() -> None:
    admin = Principal(id="key:a", kind="key", scopes=frozenset({Scope.MODELS_ADMIN}), authenticated=True)
    assert admin.has(Scope.JOBS_READ)
    admin.require(Scope.JOBS_READ)
    for scope in (Scope.JOBS_WRITE, Scope.PREDICT, Scope.EVENTS):
        assert not admin.has(scope)
        with pytest.raises(PermissionDeniedError):
            admin.require(scope)


@pytest.mark.parametrize(
    ("scopes", "topic", "allowed"),
    [
        ({Scope.EVENTS}, "metrics", True),
        ({Scope.EVENTS}, "*", True),
        ({Scope.PREDICT}, "metrics", False),
        ({Scope.PREDICT}, "models", False),
        ({Scope.JOBS_READ}, "jobs/*", False),
        ({Scope.JOBS_READ}, "jobs/j-1", True),
        ({Scope.MODELS_ADMIN}, "jobs/j-1", True),
        ({Scope.PREDICT}, "jobs/j-1", False),
    ],
)
def test_topics_need_the_events_scope(scopes: set[Scope], topic: str, allowed: bool) -> None:
    principal = Principal(id="key:k", kind="key", scopes=frozenset(scopes), authenticated=True)
    if allowed:
        require_topics(principal, [topic])
    else:
        with pytest.raises(PermissionDeniedError) as caught:
            require_topics(principal, [topic])
        assert caught.value.details["required_scope"] == "events"
        assert caught.value.details["topic"] == topic
