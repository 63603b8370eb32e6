"""Whether and where spans are exported: ``--otlp-endpoint``/``--otlp-protocol`` on every role that
serves, their ``MODELWIRE_OBSERVABILITY__…`` twins, and the standard ``OTEL_*`` variables
(``outbound/otlp.py``'s ``otlp_target``, pure: no SDK, no network)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from modelwire.app import main
from modelwire.cli import app
from modelwire.errors import ConfigurationError
from modelwire.outbound.otlp import OtlpTarget, otlp_target
from modelwire.settings import ObservabilitySettings, Settings


def target(env: dict[str, str], **settings: Any) -> OtlpTarget | None:
    return otlp_target(ObservabilitySettings(**settings), env)


def test_off_by_default() -> None:
    assert target({}) is None


def test_the_flag_turns_it_on_over_grpc() -> None:
    assert target({}, otlp_endpoint="http://127.0.0.1:4317") == OtlpTarget("grpc", "http://127.0.0.1:4317")


def test_http_protobuf_appends_the_signal_path_as_the_standard_base_url_does() -> None:
    for given in ("http://c:4318", "http://c:4318/", "http://c:4318/v1/traces"):
        found = target({}, otlp_endpoint=given, otlp_protocol="http/protobuf")
        assert found == OtlpTarget("http/protobuf", "http://c:4318/v1/traces")


def test_the_standard_variables_are_honoured() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert target(env) == OtlpTarget("http/protobuf", None)  # the exporter reads the endpoint itself
    assert target({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}) == OtlpTarget("grpc", None)
    # modelwire's own setting wins over the standard protocol variable
    assert target(env, otlp_protocol="grpc") == OtlpTarget("grpc", None)


def test_otel_sdk_disabled_wins() -> None:
    assert target({"OTEL_SDK_DISABLED": "true"}, otlp_endpoint="http://c:4317") is None


def test_an_unsupported_protocol_says_which_are() -> None:
    with pytest.raises(ConfigurationError, match="grpc or http/protobuf"):
        target({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"})


def test_a_collector_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        ObservabilitySettings(otlp_endpoint="collector:4317")


@pytest.mark.parametrize(
    ("command", "entry"),
    [
        (["serve"], "run"),
        (["model-service"], "run"),
        (["gateway", "--upstream", "127.0.0.1:9"], "run_gateway"),
    ],
)
def test_every_serving_role_takes_the_flags(
    command: list[str], entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Settings] = []
    monkeypatch.setattr(main, entry, lambda settings, **_: served.append(settings))
    flags = ["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-protocol", "http/protobuf"]
    result = CliRunner().invoke(app, [*command, *flags])
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert settings.observability.otlp_endpoint == "http://127.0.0.1:4318"
    assert settings.observability.otlp_protocol == "http/protobuf"


def test_the_environment_twin_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELWIRE_OBSERVABILITY__OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert Settings().observability.otlp_endpoint == "http://127.0.0.1:4317"
