"""The pure parts of the gRPC hop: upstream parsing, the channels' service config, trace context and
``Request-Timeout`` parsing."""

from __future__ import annotations

import json

import pytest

from modelwire.errors import ConfigurationError, InvalidInputError
from modelwire.gateway.upstreams import UpstreamSpec, group_target, service_config
from modelwire.observability.tracing import TraceContext
from modelwire.protocols.http.tracing import parse_request_timeout
from modelwire.settings import Settings


def test_a_static_list_and_a_dns_name_parse() -> None:
    spec = UpstreamSpec.parse(["10.0.0.1:9001,10.0.0.2:9001", "model-b:9002"])
    assert spec.static == (("10.0.0.1", 9001), ("10.0.0.2", 9001), ("model-b", 9002))
    assert UpstreamSpec.parse(["dns:///models.default.svc:8081"]).dns == ("models.default.svc", 8081)
    assert UpstreamSpec.parse(["[::1]:9000"]).static == (("::1", 9000),)


@pytest.mark.parametrize("bad", [[], ["host"], ["host:0"], ["host:http"], ["dns:///a:1", "b:2"]])
def test_a_bad_upstream_is_refused_with_the_expected_form(bad: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        UpstreamSpec.parse(bad)


def test_ipv6_addresses_do_not_mix_with_others() -> None:
    with pytest.raises(ConfigurationError, match="one address family"):
        UpstreamSpec.parse(["[::1]:1,127.0.0.1:2"])


async def test_resolution_gives_addresses_and_skips_an_unresolvable_name() -> None:
    spec = UpstreamSpec.parse(["127.0.0.1:1,localhost:2,no-such-host.invalid:3"])
    assert await spec.resolve() == ["127.0.0.1:1", "127.0.0.1:2"]  # localhost over IPv4 only
    assert await UpstreamSpec.parse(["[::1]:4"]).resolve() == ["[::1]:4"]


def test_a_group_is_one_round_robin_target() -> None:
    assert group_target(["127.0.0.1:2", "127.0.0.1:1"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert group_target(["[::1]:1"]) == "ipv6:[::1]:1"


def test_the_service_config_retries_only_idempotent_inference_within_a_budget() -> None:
    config = json.loads(
        service_config(Settings(gateway={"retry_max_attempts": 4, "retry_budget_ratio": 0.2}))
    )
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "modelwire.v1.Predictor"}
    (method,) = config["methodConfig"]
    assert method["retryPolicy"]["maxAttempts"] == 4
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    services = {name["service"] for name in method["name"]}
    assert services == {
        "modelwire.v1.Predictor",
        "modelwire.v1.BatchPredictor",
        "inference.GRPCInferenceService",
    }
    assert all(name.get("method") for name in method["name"])  # never a whole service (Jobs are not in)
    assert config["retryThrottling"]["tokenRatio"] == 0.2
    no_retries = json.loads(service_config(Settings(gateway={"retry_max_attempts": 1})))
    assert "methodConfig" not in no_retries


def test_an_incoming_traceparent_is_continued_with_a_new_span() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace = TraceContext.incoming(parent, "req-1")
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.span_id != "b7ad6b7169203331"
    assert trace.request_id == "req-1"
    assert trace.traceparent == f"00-{trace.trace_id}-{trace.span_id}-01"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # an all-zero trace id is invalid
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is invalid
    ],
)
def test_a_missing_or_invalid_traceparent_starts_a_new_trace(bad: str | None) -> None:
    trace = TraceContext.incoming(bad, None)
    assert len(trace.trace_id) == 32
    assert trace.trace_id != "0af7651916cd43dd8448eb211c80319c"
    assert len(trace.request_id) == 16  # minted


def test_a_request_id_with_control_characters_is_replaced() -> None:
    assert TraceContext.incoming(None, "bad\nid").request_id != "bad\nid"
    assert TraceContext.incoming(None, "x" * 129).request_id != "x" * 129


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), (" 10 ", 10.0), ("0.001", 0.001)])
def test_request_timeout_is_seconds(value: str, seconds: float) -> None:
    assert parse_request_timeout(value) == seconds


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1e9", ""])
def test_a_bad_request_timeout_says_what_to_send(value: str) -> None:
    with pytest.raises(InvalidInputError, match=r"such as 2\.5"):
        parse_request_timeout(value)
