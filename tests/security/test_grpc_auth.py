"""gRPC authentication, authorization and rate limits on a real server, with grpcio, modelwire's own client
and grpcurl: every refusal is the right status, and the principal reaches the servicers (job ownership)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from modelwire.client import Client
from modelwire.errors import PermissionDeniedError, UnauthenticatedError
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import (
    events_pb2,
    events_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
)
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from tests.models import EchoModel
from tests.protocols.grpc.richstatus import rich_details
from tests.security.conftest import (
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    SigningKeys,
    claims,
    hs256_with,
    mint,
    unsigned,
)
from tests.serving import ServeModule, ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
RATE_PER_S = 2.0
BURST = 2


class Setup:
    """The running server, its API keys by name, and the keys its JWKS file publishes."""

    def __init__(self, server: ThreadedServer, keys: dict[str, str], signing: SigningKeys) -> None:
        self.server = server
        self.keys = keys
        self.signing = signing
        self.target = server.grpc_url.removeprefix("grpc://")


@pytest.fixture(scope="module")
def setup(serve_module: ServeModule, signing_keys: SigningKeys) -> Setup:
    data_dir = serve_module.data_dir()
    store = KeyStore.in_data_dir(data_dir)
    keys = {
        "predict": store.create([Scope.PREDICT])[0],
        "other": store.create([Scope.PREDICT])[0],
        "reader": store.create([Scope.JOBS_READ])[0],
        "jobs": store.create([Scope.JOBS_READ, Scope.JOBS_WRITE])[0],
        "events": store.create([Scope.EVENTS])[0],
        "example": store.create([Scope.PREDICT])[0],
        "echo only": store.create([Scope.PREDICT], models=["echo"])[0],
    }
    jwks = data_dir / "jwks.json"
    jwks.write_text(json.dumps(signing_keys.jwks()))
    server = serve_module(
        EchoModel(),
        EchoModel("limited"),
        data_dir=data_dir,
        auth={
            "mode": "on",
            "jwt_secret": HS_SECRET,
            "jwt_jwks": jwks,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_leeway_s": 0,
        },
        rate_limits={
            "rules": [{"scope": "predict", "model": "limited", "rate_per_s": RATE_PER_S, "burst": BURST}]
        },
    )
    return Setup(server, keys, signing_keys)


@pytest.fixture(scope="module")
def channel(setup: Setup) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(setup.target) as channel:
        yield channel


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


def predict(channel: grpc.Channel, metadata: Any = (), model: str = "echo") -> Any:
    return pb_grpc.PredictorStub(channel).Predict(
        pb.Input(text="hi", model=model), metadata=metadata, timeout=10
    )


def refusal(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# -- authentication ------------------------------------------------------------------------------------


def test_no_credentials_is_unauthenticated(channel: grpc.Channel) -> None:
    error = refusal(lambda: predict(channel))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "Authorization: Bearer" in error.details()
    assert rich_details(error)["ErrorInfo"].reason == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "credential",
    ["mw_000000000000_" + "x" * 43, "not-a-credential", "a.b.c"],
    ids=["unknown-key", "garbage", "broken-jwt"],
)
def test_bad_credentials_are_unauthenticated(channel: grpc.Channel, credential: str) -> None:
    assert refusal(lambda: predict(channel, bearer(credential))).code() is grpc.StatusCode.UNAUTHENTICATED


def test_api_key_by_bearer_or_key_header(setup: Setup, channel: grpc.Channel) -> None:
    assert predict(channel, bearer(setup.keys["predict"])).result["echo"] == "hi"
    assert predict(channel, (("x-api-key", setup.keys["predict"]),)).result["echo"] == "hi"


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_jwt_with_the_right_claims_passes(setup: Setup, channel: grpc.Channel, alg: str) -> None:
    assert predict(channel, bearer(mint(setup.signing, alg))).result["echo"] == "hi"


def test_refused_tokens(setup: Setup, channel: grpc.Channel) -> None:
    keys = setup.signing
    tokens = {
        "expired": mint(keys, "HS256", exp=int(time.time()) - 60),
        "wrong audience": mint(keys, "RS256", aud="someone-else"),
        "wrong issuer": mint(keys, "HS256", iss="https://evil.test"),
        "alg none": unsigned(),
        "HS256 signed with the RSA public key": hs256_with(keys.rsa_public_pem),
        "RS256 by a key not in the JWKS": jwt.encode(
            claims(), keys.other_rsa, algorithm="RS256", headers={"kid": "rsa-1"}
        ),
    }
    for name, token in tokens.items():
        error = refusal(lambda token=token: predict(channel, bearer(token)))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED, name
    expired = refusal(lambda: predict(channel, bearer(tokens["expired"])))
    assert "expired" in expired.details()


def test_health_and_reflection_need_no_credentials(setup: Setup, channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    metadata = oip_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
        oip.ModelMetadataRequest(name="echo"), timeout=10
    )
    assert metadata.name == "echo"


def test_unparsable_bytes_are_refused_for_strangers_before_parsing(
    setup: Setup, channel: grpc.Channel
) -> None:
    call = channel.unary_unary("/modelwire.v1.Predictor/Predict")  # no serializer: raw bytes
    assert refusal(lambda: call(b"\xff\xff", timeout=10)).code() is grpc.StatusCode.UNAUTHENTICATED
    error = refusal(lambda: call(b"\xff\xff", metadata=bearer(setup.keys["predict"]), timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "modelwire.v1.Input" in error.details()


@settings(max_examples=100, deadline=None)
@given(
    header=st.sampled_from(["authorization", "x-api-key"]),
    prefix=st.sampled_from(["", "Bearer ", "bearer ", "Basic ", "Bearer mw_", "Bearer ey"]),
    value=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=120),
)
def test_random_credentials_are_unauthenticated(
    channel: grpc.Channel, header: str, prefix: str, value: str
) -> None:
    error = refusal(lambda: predict(channel, ((header, prefix + value),)))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED, error.details()


# -- authorization -------------------------------------------------------------------------------------


def infer_request(model: str = "echo") -> Any:
    request = oip.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"hello")
    return request


def test_missing_scope_is_permission_denied_naming_it(setup: Setup, channel: grpc.Channel) -> None:
    reader = bearer(setup.keys["reader"])
    cases = {
        "predict": lambda: predict(channel, reader),
        "predict ": lambda: oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            infer_request(), metadata=reader, timeout=10
        ),
        "jobs:write": lambda: jobs_pb2_grpc.JobsStub(channel).Submit(
            jobs_pb2.SubmitJobRequest(model="echo", texts=["a"]), metadata=reader, timeout=10
        ),
        "events": lambda: next(
            events_pb2_grpc.EventsStub(channel).Subscribe(
                events_pb2.SubscribeRequest(topics=["models"]), metadata=reader, timeout=10
            )
        ),
    }
    for scope, call in cases.items():
        error = refusal(call)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, scope
        assert repr(scope.strip()) in error.details(), error.details()
        assert rich_details(error)["ErrorInfo"].metadata["required_scope"] == scope.strip()


def test_a_key_restricted_to_a_model_may_use_only_that_one(setup: Setup, channel: grpc.Channel) -> None:
    echo_only = bearer(setup.keys["echo only"])
    assert predict(channel, echo_only, model="echo").result["echo"] == "hi"
    for model in ("limited", ""):  # named in the request, and the default model
        error = refusal(lambda model=model: predict(channel, echo_only, model=model))
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "may not use model" in error.details()
    infer = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer
    error = refusal(lambda: infer(infer_request("limited"), metadata=echo_only, timeout=10))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_right_scope_passes_on_every_service(setup: Setup, channel: grpc.Channel) -> None:
    response = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
        infer_request(), metadata=bearer(setup.keys["predict"]), timeout=10
    )
    assert response.model_name == "echo"
    events = events_pb2_grpc.EventsStub(channel).Subscribe(
        events_pb2.SubscribeRequest(topics=["metrics"]),
        metadata=bearer(setup.keys["events"]),
        timeout=10,
    )
    assert next(events).topic == "metrics"
    events.cancel()


def test_jobs_belong_to_the_principal_that_submitted_them(setup: Setup, channel: grpc.Channel) -> None:
    stub = jobs_pb2_grpc.JobsStub(channel)
    owner = bearer(setup.keys["jobs"])
    job = stub.Submit(
        jobs_pb2.SubmitJobRequest(model="echo", texts=["a", "b"]), metadata=owner, timeout=10
    ).job
    assert stub.Get(jobs_pb2.GetJobRequest(id=job.id), metadata=owner, timeout=10).id == job.id
    assert job.id in [j.id for j in stub.List(jobs_pb2.ListJobsRequest(), metadata=owner, timeout=10).jobs]
    watch = stub.Watch(jobs_pb2.WatchJobRequest(id=job.id), metadata=owner, timeout=10)
    assert next(watch).type
    watch.cancel()
    stranger = bearer(setup.keys["reader"])
    error = refusal(lambda: stub.Get(jobs_pb2.GetJobRequest(id=job.id), metadata=stranger, timeout=10))
    assert error.code() is grpc.StatusCode.NOT_FOUND  # not PERMISSION_DENIED: ids do not leak
    listed = stub.List(jobs_pb2.ListJobsRequest(), metadata=stranger, timeout=10).jobs
    assert job.id not in [j.id for j in listed]
    their_watch = stub.Watch(jobs_pb2.WatchJobRequest(id=job.id), metadata=stranger, timeout=10)
    assert refusal(lambda: next(their_watch)).code() is grpc.StatusCode.NOT_FOUND  # a stream sees it too


def test_modelwire_client_over_grpc(setup: Setup) -> None:
    with Client(setup.server.grpc_url, api_key=setup.keys["predict"]) as client:
        assert client.predict("hello", model="echo").output["echo"] == "hello"
    bad_key = "mw_000000000000_" + "x" * 43
    with Client(setup.server.grpc_url, api_key=bad_key) as client, pytest.raises(UnauthenticatedError):
        client.predict("hello", model="echo")
    reader = setup.keys["reader"]
    with (
        Client(setup.server.grpc_url, api_key=reader) as client,
        pytest.raises(PermissionDeniedError, match="predict"),
    ):
        client.predict("hello", model="echo")


# -- rate limits ---------------------------------------------------------------------------------------


def test_a_burst_over_the_limit_gets_retry_info_and_recovers(setup: Setup, channel: grpc.Channel) -> None:
    first, second = bearer(setup.keys["predict"]), bearer(setup.keys["other"])
    served = 0
    for _ in range(BURST + 5):
        try:
            predict(channel, first, model="limited")
        except grpc.RpcError as exc:
            error = exc
            break
        served += 1
    else:
        pytest.fail("the burst was never refused")
    assert served >= BURST
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rich_details(error)
    delay = details["RetryInfo"].retry_delay.ToTimedelta().total_seconds()
    assert 0 < delay <= 1 / RATE_PER_S
    assert details["ErrorInfo"].metadata["limit"] == str(BURST)
    for _ in range(BURST):  # another principal has its own bucket
        assert predict(channel, second, model="limited").model == "limited"
    assert predict(channel, first, model="echo").model == "echo"  # the rule counts model "limited" only
    time.sleep(delay)
    assert predict(channel, first, model="limited").model == "limited"


def test_the_docs_example_waits_as_told(setup: Setup) -> None:
    spec = importlib.util.spec_from_file_location("grpc_auth", ROOT / "docs/examples/grpc_auth.py")
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for _ in range(BURST + 2):  # over the burst: the example sleeps for RetryInfo's delay and tries again
        assert example.predict(setup.target, setup.keys["example"], "hi", model="limited").model == "limited"
    with pytest.raises(grpc.RpcError) as caught:
        example.predict(setup.target, setup.keys["reader"], "hi", model="limited")
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


# -- grpcurl -------------------------------------------------------------------------------------------

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


@pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl (dev dependency) is not installed")
def test_grpcurl_with_an_authorization_header(setup: Setup) -> None:
    def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [GRPCURL, "-plaintext", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    call = ["-d", '{"text": "hello", "model": "echo"}', setup.target, "modelwire.v1.Predictor/Predict"]
    listed = grpcurl(setup.target, "list")  # reflection stays public
    assert "modelwire.v1.Predictor" in listed.stdout, listed.stderr
    refused = grpcurl(*call)
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr
    answered = grpcurl("-H", f"authorization: Bearer {setup.keys['predict']}", *call)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["result"]["echo"] == "hello"
