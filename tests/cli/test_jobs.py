"""``modelwire jobs submit|status|results|cancel|list`` and ``modelwire train FILE --async`` against a real
server, over REST and gRPC: output, files written, exit codes, one-line errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelwire.cli import app
from modelwire.cli.jobs import job_line, job_table
from modelwire.client.job_results import JobInfo
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    """Overrides the folder's: small job batches, progress after each (its jobs and trained versions stay in
    this module's data dir)."""
    return serve_module(EchoModel("echo"), jobs={"batch_size": 2, "progress_interval_ms": 0})


@pytest.fixture(params=["rest", "grpc"])
def url(request: pytest.FixtureRequest, server: ThreadedServer) -> str:
    return server.http_url if request.param == "rest" else server.grpc_url


@pytest.fixture
def rows_csv(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text("text\nfirst\nbad\nthird\n")
    return path


@pytest.fixture
def labelled_csv(tmp_path: Path) -> Path:
    good = ["great movie", "I loved it", "wonderful acting", "a delight", "superb and moving"]
    bad = ["awful movie", "I hated it", "terrible acting", "a bore", "dull and lifeless"]
    path = tmp_path / "labelled.csv"
    lines = [f"{t},1" for t in good * 3] + [f"{t},0" for t in bad * 3]
    path.write_text("text,label\n" + "\n".join(lines) + "\n")
    return path


def one_error_line(result: object, code: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: "), stderr
    assert f"[{code}]" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_submit_prints_the_stored_job(runner: CliRunner, url: str, rows_csv: Path) -> None:
    result = runner.invoke(app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url, "--json"])
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert (job["model"], job["progress"]["total"]) == ("echo", 3)
    assert job["status"] in ("queued", "running", "succeeded")
    plain = runner.invoke(app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.split()[0] != job["id"]  # a second job, its id first on the line


def test_submit_wait_results_and_status(runner: CliRunner, url: str, rows_csv: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url, "--wait", "--json"]
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["progress"] == {"done": 3, "total": 3, "errors": 1}
    assert "succeeded" in result.stderr  # the progress bar's last state

    listed = runner.invoke(app, ["jobs", "results", job["id"], "--url", url])
    assert listed.exit_code == 0, listed.output
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert lines[0] == {"index": 0, "echo": "first", "length": 5}
    assert lines[1]["error"]["code"] == "INVALID_ARGUMENT"

    target = tmp_path / "out.ndjson"
    written = runner.invoke(app, ["jobs", "results", job["id"], "--url", url, "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert written.stdout == ""
    assert [json.loads(line) for line in target.read_text().splitlines()] == lines
    assert "wrote 3 rows" in written.stderr

    status = runner.invoke(app, ["jobs", "status", job["id"], "--url", url])
    assert status.exit_code == 0, status.output
    assert job["id"] in status.stdout
    assert "succeeded" in status.stdout
    assert "3/3 rows (1 failed)" in status.stdout


def test_cancel_a_finished_job_is_refused(runner: CliRunner, url: str, rows_csv: Path) -> None:
    submitted = runner.invoke(
        app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url, "--wait", "--json"]
    )
    job_id = json.loads(submitted.stdout)["id"]
    result = runner.invoke(app, ["jobs", "cancel", job_id, "--url", url])
    one_error_line(result, "FAILED_PRECONDITION")


def test_list_by_status(runner: CliRunner, url: str, rows_csv: Path) -> None:
    submitted = runner.invoke(
        app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url, "--wait", "--json"]
    )
    job_id = json.loads(submitted.stdout)["id"]
    as_json = runner.invoke(app, ["jobs", "list", "--status", "succeeded", "--url", url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    jobs = json.loads(as_json.stdout)
    assert job_id in [j["id"] for j in jobs]
    assert {j["status"] for j in jobs} == {"succeeded"}
    table = runner.invoke(app, ["jobs", "list", "--url", url, "--limit", "1000"])
    assert table.exit_code == 0, table.output
    assert job_id in table.stdout
    bad = runner.invoke(app, ["jobs", "list", "--status", "sleeping", "--url", url])
    assert bad.exit_code == 2


@pytest.mark.parametrize("command", ["status", "results", "cancel"])
def test_unknown_job_is_one_error_line(runner: CliRunner, url: str, command: str) -> None:
    one_error_line(runner.invoke(app, ["jobs", command, "no-such-job", "--url", url]), "NOT_FOUND")


def test_unknown_model_and_unreadable_file(
    runner: CliRunner, url: str, rows_csv: Path, tmp_path: Path
) -> None:
    one_error_line(
        runner.invoke(app, ["jobs", "submit", str(rows_csv), "--model", "nope", "--url", url]), "NOT_FOUND"
    )
    other = tmp_path / "rows.txt"
    other.write_text("hello\n")
    one_error_line(runner.invoke(app, ["jobs", "submit", str(other), "--url", url]), "INVALID_ARGUMENT")
    missing = runner.invoke(app, ["jobs", "submit", str(tmp_path / "missing.csv"), "--url", url])
    assert missing.exit_code == 2


def test_unreachable_server(runner: CliRunner, rows_csv: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        one_error_line(runner.invoke(app, ["jobs", "submit", str(rows_csv), "--url", dead]), "UNAVAILABLE")
    finally:
        sock.close()


def test_train_async_trains_on_the_server(runner: CliRunner, url: str, labelled_csv: Path) -> None:
    result = runner.invoke(app, ["train", str(labelled_csv), "--async", "--wait", "--url", url])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout
    assert '"version"' in result.stdout
    assert '"accuracy"' in result.stdout
    queued = runner.invoke(app, ["train", str(labelled_csv), "--async", "--url", url])
    assert queued.exit_code == 0, queued.output
    assert "modelwire jobs status" in queued.stderr


def test_train_async_needs_a_file_and_a_trainable_model(
    runner: CliRunner, url: str, labelled_csv: Path
) -> None:
    assert runner.invoke(app, ["train", "--async", "--url", url]).exit_code == 2
    one_error_line(
        runner.invoke(app, ["train", str(labelled_csv), "--async", "--name", "echo", "--url", url]),
        "INVALID_ARGUMENT",
    )


def test_job_line_renders_errors_and_results() -> None:
    failed = JobInfo.from_dict(
        {
            "id": "j1",
            "status": "failed",
            "model": "echo",
            "progress": {"done": 1, "total": 4, "errors": 1},
            "error": {"code": "UNAVAILABLE", "message": "the worker stopped"},
        }
    )
    line = job_line(failed)
    assert "j1" in line
    assert "[red]failed[/]" in line
    assert "1/4 rows" in line
    assert "the worker stopped" in line
    assert "UNAVAILABLE" in line
    training = JobInfo.from_dict(
        {"id": "t", "status": "running", "kind": "train", "progress": {"stage": "fitting", "fraction": 0.5}}
    )
    assert "fitting 50%" in job_line(training)


def test_job_table_never_cuts_an_id() -> None:
    """Ids are copied into other commands: whole on one line however narrow the terminal."""
    from rich.console import Console

    jobs = [
        JobInfo.from_dict(
            {
                "id": f"{i:x}" * 32,
                "status": "succeeded",
                "model": "sentiment",
                "progress": {"done": 9, "total": 9},
            }
        )
        for i in range(3)
    ]
    for width in (60, 80):
        console = Console(width=width, record=True, force_terminal=False, color_system=None)
        console.print(job_table(jobs))
        text = console.export_text()
        for job in jobs:
            assert job.id in text, f"width {width}:\n{text}"


def test_status_results_and_cancel_take_a_unique_prefix(runner: CliRunner, url: str, rows_csv: Path) -> None:
    submitted = runner.invoke(
        app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url, "--wait", "--json"]
    )
    job_id = json.loads(submitted.stdout)["id"]
    status = runner.invoke(app, ["jobs", "status", job_id[:12], "--url", url, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["id"] == job_id
    results = runner.invoke(app, ["jobs", "results", job_id[:12], "--url", url])
    assert results.exit_code == 0, results.output
    assert len(results.stdout.splitlines()) == 3
    # cancel resolves it too: the job has finished, so the refusal names its state, not an unknown id
    one_error_line(runner.invoke(app, ["jobs", "cancel", job_id[:12], "--url", url]), "FAILED_PRECONDITION")


def test_an_ambiguous_prefix_lists_the_matches(runner: CliRunner, url: str, rows_csv: Path) -> None:
    by_first: dict[str, list[str]] = {}
    for _ in range(17):  # ids are 32 hex digits: 17 jobs surely share a first digit
        out = runner.invoke(app, ["jobs", "submit", str(rows_csv), "--model", "echo", "--url", url, "--json"])
        job_id = json.loads(out.stdout)["id"]
        by_first.setdefault(job_id[0], []).append(job_id)
        if len(by_first[job_id[0]]) > 1:
            break
    prefix, ids = next((k, v) for k, v in by_first.items() if len(v) > 1)
    result = runner.invoke(app, ["jobs", "status", prefix, "--url", url])
    one_error_line(result, "INVALID_ARGUMENT")
    assert f"job id prefix {prefix!r} matches" in result.stderr
    for job_id in ids:
        assert job_id in result.stderr
