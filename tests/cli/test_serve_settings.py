"""``modelwire serve`` flags → Settings: flag > environment > config file > default, section by section."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelwire
from modelwire.app import main
from modelwire.cli import app, build_settings, parse_model_spec
from modelwire.settings import BatchingSettings, LimitsSettings, ModelSettings, Settings, parse_budget


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace ``main.run`` to capture the Settings it would serve with."""
    calls: list[Settings] = []
    monkeypatch.setattr(main, "run", calls.append)
    return calls


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(
        """
http_port = 9300
grpc_port = 9301
log_level = "warning"

[batching]
enabled = false
max_batch_size = 64
max_delay_ms = 7.0

[limits]
request_timeout_s = 12.0
max_body_bytes = 2048
"""
    )
    return path


def serve(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> None:
    result = runner.invoke(app, ["serve", *args], env=env)
    assert result.exit_code == 0, result.output


def test_defaults(runner: CliRunner, served: list[Settings]) -> None:
    serve(runner)
    (settings,) = served
    assert (settings.host, settings.http_port, settings.grpc_port) == ("127.0.0.1", 8000, 8001)
    assert settings.workers == 1
    assert settings.batching.enabled
    assert settings.models == ()


def test_config_file_beats_defaults(runner: CliRunner, served: list[Settings], config_file: Path) -> None:
    serve(runner, "--config", str(config_file))
    (settings,) = served
    assert (settings.http_port, settings.grpc_port, settings.log_level) == (9300, 9301, "warning")
    assert settings.batching.model_dump() == {
        "enabled": False,
        "max_batch_size": 64,
        "max_delay_ms": 7.0,
        "inline_below_ms": 1.0,
    }
    assert settings.limits.request_timeout_s == 12.0


def test_environment_beats_config_file(runner: CliRunner, served: list[Settings], config_file: Path) -> None:
    env = {
        "MODELWIRE_CONFIG": str(config_file),
        "MODELWIRE_HTTP_PORT": "9200",
        "MODELWIRE_BATCHING__MAX_BATCH_SIZE": "16",
        "MODELWIRE_LIMITS__REQUEST_TIMEOUT_S": "9",
    }
    serve(runner, env=env)
    (settings,) = served
    assert settings.http_port == 9200
    assert settings.grpc_port == 9301  # from the file
    assert settings.batching.max_batch_size == 16
    assert settings.batching.max_delay_ms == 7.0  # the rest of the section still comes from the file
    assert settings.limits.request_timeout_s == 9.0
    assert settings.limits.max_body_bytes == 2048


def test_flags_beat_environment_and_config_file(
    runner: CliRunner, served: list[Settings], config_file: Path, tmp_path: Path
) -> None:
    env = {
        "MODELWIRE_HTTP_PORT": "9200",
        "MODELWIRE_BATCHING__MAX_BATCH_SIZE": "16",
        "MODELWIRE_BATCHING__ENABLED": "false",
        "MODELWIRE_WORKERS": "3",
    }
    serve(
        runner,
        "--config",
        str(config_file),
        "--host",
        "0.0.0.0",
        "--http-port",
        "9100",
        "--max-batch-size",
        "8",
        "--batching",
        "--request-timeout",
        "4.5",
        "--log-level",
        "DEBUG",
        "--data-dir",
        str(tmp_path / "state"),
        env=env,
    )
    (settings,) = served
    assert settings.host == "0.0.0.0"
    assert settings.http_port == 9100
    assert settings.grpc_port == 9301  # no flag, no env: the file
    assert settings.workers == 3  # no flag: the environment
    assert settings.batching.model_dump() == {
        "enabled": True,
        "max_batch_size": 8,
        "max_delay_ms": 7.0,
        "inline_below_ms": 1.0,
    }
    assert settings.limits.request_timeout_s == 4.5
    assert settings.log_level == "debug"
    assert settings.data_dir == tmp_path / "state"
    assert settings.config == config_file


def test_no_batching_flag(runner: CliRunner, served: list[Settings]) -> None:
    serve(runner, "--no-batching", "--max-delay-ms", "0.5", "--workers", "2", "--grpc-port", "0")
    (settings,) = served
    assert not settings.batching.enabled
    assert settings.batching.max_delay_ms == 0.5
    assert (settings.workers, settings.grpc_port) == (2, 0)


def test_modelwire_toml_in_the_working_folder_is_read(
    runner: CliRunner, served: list[Settings], tmp_path: Path
) -> None:
    (tmp_path / "modelwire.toml").write_text("grpc_port = 9501\n")
    serve(runner)
    assert served[0].grpc_port == 9501


def test_models_as_arguments(runner: CliRunner, served: list[Settings]) -> None:
    serve(runner, "tests.models:EchoModel", "rev=pkg.mod:Reverse", "models/Iris Classifier.onnx")
    assert served[0].models == (
        ModelSettings(name="echomodel", source="tests.models:EchoModel"),
        ModelSettings(name="rev", source="pkg.mod:Reverse"),
        ModelSettings(name="Iris-Classifier", source="models/Iris Classifier.onnx"),
    )


@pytest.mark.parametrize(
    ("spec", "name", "source"),
    [
        ("builtin:sentiment", "sentiment", "builtin:sentiment"),
        ("mine=builtin:sentiment", "mine", "builtin:sentiment"),
        ("/tmp/a=b/model.skops", "model", "/tmp/a=b/model.skops"),
        ("clf.joblib", "clf", "clf.joblib"),
    ],
)
def test_parse_model_spec(spec: str, name: str, source: str) -> None:
    assert parse_model_spec(spec) == ModelSettings(name=name, source=source)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-port", "70000"], "http_port"),
        (["--workers", "0"], "workers"),
        (["--max-batch-size", "0"], "batching.max_batch_size"),
        (["notamodel"], "is not builtin:sentiment"),
        (["x="], "names no source"),
    ],
)
def test_bad_settings_are_one_line_and_exit_1(
    runner: CliRunner, served: list[Settings], args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert served == []


def test_a_missing_config_file_is_a_usage_error(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(app, ["serve", "--config", "nope.toml"])
    assert result.exit_code == 2
    assert "nope.toml" in result.stderr


def test_run_mirrors_serve(served: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELWIRE_GRPC_PORT", "9401")
    modelwire.run("echo=tests.models:EchoModel", http_port=9400, max_batch_size=4, batching=False)
    (settings,) = served
    assert (settings.http_port, settings.grpc_port) == (9400, 9401)
    assert settings.batching.model_dump() == {
        "enabled": False,
        "max_batch_size": 4,
        "max_delay_ms": BatchingSettings().max_delay_ms,
        "inline_below_ms": BatchingSettings().inline_below_ms,
    }
    assert settings.models == (ModelSettings(name="echo", source="tests.models:EchoModel"),)


def test_build_settings_passes_other_fields_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    limits = {"max_body_bytes": 4096}
    settings = build_settings(limits=limits, request_timeout=3.0)
    assert settings.limits.max_body_bytes == 4096
    assert settings.limits.request_timeout_s == 3.0
    assert limits == {"max_body_bytes": 4096}  # the caller's dict is not changed
    settings = build_settings(limits=LimitsSettings(max_text_chars=10), request_timeout=2.0)
    assert (settings.limits.max_text_chars, settings.limits.request_timeout_s) == (10, 2.0)


@pytest.mark.parametrize(
    ("env", "value", "read"),
    [
        ("MODELWIRE_HOST", "::1", lambda s: s.host == "::1"),
        ("MODELWIRE_HTTP_PORT", "1234", lambda s: s.http_port == 1234),
        ("MODELWIRE_GRPC_PORT", "1235", lambda s: s.grpc_port == 1235),
        ("MODELWIRE_DATA_DIR", "/srv/mw", lambda s: str(s.data_dir) == "/srv/mw"),
        ("MODELWIRE_WORKERS", "4", lambda s: s.workers == 4),
        ("MODELWIRE_LOG_LEVEL", "ERROR", lambda s: s.log_level == "error"),
        ("MODELWIRE_BATCHING__MAX_BATCH_SIZE", "3", lambda s: s.batching.max_batch_size == 3),
        ("MODELWIRE_BATCHING__MAX_DELAY_MS", "9", lambda s: s.batching.max_delay_ms == 9.0),
        ("MODELWIRE_BATCHING__ENABLED", "false", lambda s: not s.batching.enabled),
        ("MODELWIRE_LIMITS__REQUEST_TIMEOUT_S", "8", lambda s: s.limits.request_timeout_s == 8.0),
    ],
)
def test_every_twin_named_in_the_help_is_read(
    runner: CliRunner, served: list[Settings], env: str, value: str, read: Callable[[Settings], bool]
) -> None:
    help_text = runner.invoke(app, ["serve", "--help"]).stdout
    assert f"[{env}]" in help_text
    serve(runner, env={env: value})
    assert read(served[0])


def test_config_twin_is_read(runner: CliRunner, served: list[Settings], config_file: Path) -> None:
    serve(runner, env={"MODELWIRE_CONFIG": str(config_file)})
    assert served[0].http_port == 9300


def test_origin_flags_and_their_run_twins(
    runner: CliRunner, served: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELWIRE_HTTP__CORS_ORIGINS", '["https://env.example"]')
    result = runner.invoke(
        app,
        [
            "serve",
            "--allowed-origin",
            "http://localhost:3000",
            "--allowed-origin",
            "https://tools.example",
            "--cors-origin",
            "https://app.example",
        ],
    )
    assert result.exit_code == 0, result.output
    modelwire.run(allowed_origins=["https://one.example"])
    flags, function = served
    assert flags.http.allowed_origins == ("http://localhost:3000", "https://tools.example")
    assert flags.http.cors_origins == ("https://app.example",)  # the flag beats the environment
    assert function.http.allowed_origins == ("https://one.example",)
    assert function.http.cors_origins == ("https://env.example",)
    assert function.http.dashboard  # the rest of the section keeps its defaults


def test_tls_public_host_flag_beats_the_environment(runner: CliRunner, served: list[Settings]) -> None:
    serve(
        runner, "--tls-public-host", "Models.Example.COM", env={"MODELWIRE_TLS__PUBLIC_HOST": "other.example"}
    )
    (settings,) = served
    assert settings.tls.public_host == "models.example.com"


def test_a_tls_public_host_with_a_scheme_is_refused_naming_the_setting(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve", "--tls-public-host", "https://models.example.com"])
    assert result.exit_code != 0
    assert "public_host" in result.output
    assert "no scheme, port or path" in result.output


def test_queue_flags_environment_and_config_file(
    runner: CliRunner, served: list[Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    serve(runner, "--queue", "amqp://guest:pw@127.0.0.1:5672/", "--queue", "redis://127.0.0.1:6379/0")
    assert [q.kind for q in served[0].queues] == ["rabbitmq", "redis"]
    assert served[0].queues[0].secret() == "pw"
    assert "pw" not in served[0].queues[0].url
    serve(runner, env={"MODELWIRE_QUEUES": '[{"url": "nats://127.0.0.1:4222", "prefetch": 8}]'})
    assert served[1].queues[0].prefetch == 8
    config = tmp_path / "modelwire.toml"
    config.write_text('[[queues]]\nurl = "redis://127.0.0.1:6379/0"\nname = "jobs:in"\nmax_deliveries = 2\n')
    serve(runner)
    assert (served[2].queues[0].queue_name, served[2].queues[0].max_deliveries) == ("jobs:in", 2)
    modelwire.run(queue=["nats://127.0.0.1:4222"])
    assert served[3].queues[0].kind == "nats"


def test_event_sink_flags_environment_and_config_file(
    runner: CliRunner,
    served: list[Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "modelwire.toml"
    config.write_text('[[event_sinks]]\nurl = "redis://127.0.0.1:6379/0"\nmax_len = 50\n')
    env = {"MODELWIRE_EVENT_SINKS": '[{"url": "nats://127.0.0.1:4222", "topics": ["models"]}]'}
    serve(runner, "--event-sink", "amqp://guest:pw@127.0.0.1:5672/", "--event-sink", "nats://127.0.0.1:4222")
    serve(runner, env=env)  # the environment over the file
    serve(runner)  # the file
    modelwire.run(event_sink=["redis://127.0.0.1:6379/1"])
    flag, environment, file, run = (settings.event_sinks for settings in served)
    assert [s.kind for s in flag] == ["rabbitmq", "nats"]
    assert flag[0].secret() == "pw"
    assert "pw" not in flag[0].url
    assert (environment[0].kind, environment[0].topics) == ("nats", ("models",))
    assert (file[0].kind, file[0].max_len) == ("redis", 50)
    assert run[0].url == "redis://127.0.0.1:6379/1"
    result = runner.invoke(app, ["serve", "--event-sink", "http://user:pw@127.0.0.1/"])
    assert result.exit_code == 1
    assert "no known scheme" in result.output
    assert ":pw@" not in result.output


def test_event_sink_flag_on_consume_worker_and_asyncapi(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Settings] = []
    monkeypatch.setattr(main, "run_consume", calls.append)
    monkeypatch.setattr(main, "run_worker", lambda settings, _reporter: calls.append(settings))
    sink = ["--event-sink", "nats://127.0.0.1:4222", "--data-dir", str(tmp_path)]
    env = {"MODELWIRE_EVENT_SINKS": '[{"url": "redis://127.0.0.1:6379/0"}]'}
    result = runner.invoke(app, ["consume", "--queue", "redis://127.0.0.1:6379/0", *sink], env=env)
    assert result.exit_code == 0, result.output
    (tmp_path / "jobs.sqlite3").touch()  # a worker shares a server's job database
    result = runner.invoke(app, ["worker", *sink], env=env)
    assert result.exit_code == 0, result.output
    assert [[s.kind for s in settings.event_sinks] for settings in calls] == [["nats"], ["nats"]]
    result = runner.invoke(app, ["asyncapi", "--event-sink", "nats://127.0.0.1:4222"])
    assert result.exit_code == 0, result.output
    assert "modelwire.events" in result.output


def test_an_unknown_queue_scheme_is_one_line(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(app, ["serve", "--queue", "http://user:pw@127.0.0.1/"])
    assert result.exit_code == 1
    assert "no known scheme" in result.output
    assert ":pw@" not in result.output


MODELS_LIST = """
[[models]]
name = "echo"
source = "tests.models:EchoModel"
pinned = true
"""

MODELS_TABLE = """
[models]
memory_budget = "2GiB"

[[models.serve]]
name = "echo"
source = "tests.models:EchoModel"
pinned = true
"""


def test_the_memory_budget_from_flag_env_and_both_config_shapes(
    runner: CliRunner, served: list[Settings], tmp_path: Path
) -> None:
    as_list, as_table = tmp_path / "list.toml", tmp_path / "table.toml"
    as_list.write_text(MODELS_LIST)
    as_table.write_text(MODELS_TABLE)
    echo = ModelSettings(name="echo", source="tests.models:EchoModel", pinned=True)
    # [[models]] as ever, the budget from the environment: the list is not replaced by the variable
    serve(runner, "--config", str(as_list), env={"MODELWIRE_MODELS__MEMORY_BUDGET": "50%"})
    # [models] with memory_budget and the list as [[models.serve]]
    serve(runner, "--config", str(as_table))
    # the flag over the environment over the file
    serve(runner, "--config", str(as_table), env={"MODELWIRE_MODELS__MEMORY_BUDGET": "1GiB"})
    serve(
        runner,
        "--config",
        str(as_table),
        "--memory-budget",
        "512MB",
        env={"MODELWIRE_MODELS__MEMORY_BUDGET": "1GiB"},
    )
    assert [(s.models, s.memory_budget) for s in served] == [
        ((echo,), "50%"),
        ((echo,), "2GiB"),
        ((echo,), "1GiB"),
        ((echo,), "512MB"),
    ]
    help_text = runner.invoke(app, ["serve", "--help"]).stdout
    assert "[MODELWIRE_MODELS__MEMORY_BUDGET]" in help_text


def test_run_takes_the_memory_budget(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    modelwire.run(memory_budget=2147483648)
    assert served[0].memory_budget == 2147483648


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2147483648, 2147483648),
        ("2147483648", 2147483648),
        ("2GiB", 2 * 1024**3),
        ("512MB", 512 * 1000**2),
        ("1.5 KiB", 1536),
        ("50%", 500),
    ],
)
def test_a_budget_in_bytes_units_or_a_share_of_ram(value: int | str, expected: int) -> None:
    assert parse_budget(value, total_memory=1000) == expected


@pytest.mark.parametrize("value", ["2 parsecs", "0", "150%", "-1GiB", ""])
def test_a_bad_budget_is_refused_naming_the_forms(value: str) -> None:
    with pytest.raises(ValueError, match="memory_budget"):
        Settings(memory_budget=value)


def test_a_models_table_with_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[\[models.serve\]\]"):
        Settings(models={"memory_budget": "1GiB", "list": []})
