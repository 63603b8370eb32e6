"""The side-by-side benchmark's own logic (bench/side.py, bench/grpc_load.py): no servers, no timing.

The request bytes the gRPC driver builds by hand are checked by parsing them with the generated
protobuf classes; the CPU accounting, medians, ratios, run order and the written configurations are
checked on fixed inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import grpc_load  # noqa: E402
import side  # noqa: E402
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as pb  # noqa: E402


def test_v2_request_asks_for_outputs_and_a_string_content_type() -> None:
    raw = grpc_load.v2_request("sentiment", "I love it", ["predict", "predict_proba"], "str")
    request = pb.ModelInferRequest.FromString(raw)
    assert request.model_name == "sentiment"
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("text", "BYTES", [1])
    assert list(tensor.contents.bytes_contents) == [b"I love it"]
    assert tensor.parameters["content_type"].string_param == "str"
    assert [o.name for o in request.outputs] == ["predict", "predict_proba"]


def test_v2_request_without_extras_is_the_plain_request() -> None:
    request = pb.ModelInferRequest.FromString(grpc_load.v2_request("m", "x"))
    assert not request.outputs
    assert not request.inputs[0].parameters


def test_tree_ticks_counts_the_group_and_every_descendant_but_not_strangers() -> None:
    # pid: (ppid, pgrp, ticks). 10 is the server; 11 is in its group; 12 left the group (setsid, as
    # BentoML's workers do) but is its child; 13 is 12's child; 20 is an unrelated process.
    table = {
        10: (1, 10, 5),
        11: (10, 10, 7),
        12: (10, 12, 100),
        13: (12, 12, 1000),
        20: (1, 20, 99999),
    }
    assert side.tree_ticks(table, 10) == 5 + 7 + 100 + 1000
    assert side.tree_ticks(table, 30) == 0  # gone


def test_proc_table_reads_this_process(tmp_path: Path) -> None:
    stat = tmp_path / "4242" / "stat"
    stat.parent.mkdir()
    # a command with spaces and a ")" in it: the fields are counted after the last ")"
    stat.write_text("4242 (my (odd) cmd) S 7 4242 4242 0 -1 0 0 0 0 0 13 4 0 0 20 0 1 0 1 0 0\n")
    assert side.proc_table(tmp_path) == {4242: (7, 4242, 17)}


def test_summarize_takes_medians_and_ratio_compares_the_same_concurrency() -> None:
    runs = [
        {
            "protocol": "rest",
            "server": "a",
            "concurrency": 32,
            "req_per_s": r,
            "p50_ms": 1.0,
            "p99_ms": p99,
            "cpu_us": cpu,
            "errors": 0,
        }
        for r, p99, cpu in ((100.0, 9.0, 500.0), (300.0, 3.0, 300.0), (200.0, 5.0, 400.0))
    ]
    runs.append(
        {
            "protocol": "rest",
            "server": "b",
            "concurrency": 32,
            "req_per_s": 50.0,
            "p50_ms": 2.0,
            "p99_ms": 4.0,
            "cpu_us": 900.0,
            "errors": 2,
        }
    )
    rows = {r["server"]: r for r in side.summarize(runs)}
    assert rows["a"]["req_per_s"] == 200.0
    assert rows["a"]["p99_ms"] == 5.0
    assert rows["a"]["cpu_us"] == 400.0
    assert rows["a"]["spread"] == pytest.approx(1.0)
    assert rows["a"]["repeats"] == 3
    assert rows["b"]["errors"] == 2
    assert side.ratio(list(rows.values()), rows["a"], "b") == 4.0
    assert side.ratio(list(rows.values()), rows["a"], "missing") is None


def test_cpu_per_request_never_divides_by_zero() -> None:
    assert side.cpu_us_per_request(0.5, 1000) == 500.0
    assert side.cpu_us_per_request(0.5, 0) == 500_000.0


def test_order_alternates_between_repeats() -> None:
    cells = [side.Cell("rest", key, lambda load, s: {}) for key in ("a", "b", "c")]
    assert [c.server for c in side.order(cells, 0)] == ["a", "b", "c"]
    assert [c.server for c in side.order(cells, 1)] == ["c", "b", "a"]
    assert [c.server for c in side.order(cells, 2)] == ["a", "b", "c"]


def test_nginx_conf_is_foreground_local_and_self_contained(tmp_path: Path) -> None:
    conf = side.nginx_conf(tmp_path, 8123)
    assert "daemon off;" in conf
    assert "worker_processes 1;" in conf
    assert "listen 127.0.0.1:8123;" in conf
    assert f"pid {tmp_path / 'nginx.pid'};" in conf
    assert f"return 200 '{side.CANNED}';" in conf
    json.loads(side.CANNED)


def test_mlserver_settings_use_its_sklearn_runtime_with_batching_per_flag(tmp_path: Path) -> None:
    model = tmp_path / "model.joblib"
    off = side.mlserver_settings(tmp_path, model, (1, 2, 3), batching=False)
    on = side.mlserver_settings(tmp_path, model, (1, 2, 3), batching=True)
    settings = off["settings.json"]
    assert (settings["host"], settings["http_port"], settings["grpc_port"]) == ("127.0.0.1", 1, 2)
    for files in (off, on):
        model_settings = files["models/sentiment/model-settings.json"]
        assert model_settings["implementation"] == "mlserver_sklearn.SKLearnModel"
        assert model_settings["parameters"] == {"uri": str(model)}
    assert off["models/sentiment/model-settings.json"]["max_batch_size"] == 0
    assert on["models/sentiment/model-settings.json"]["max_batch_size"] > 1


def test_read_reviews_labels_with_the_csv_module(tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text('text,label,source\n"great, truly",1,a\n"dull ""film""",0,b\n', encoding="utf-8")
    assert side.read_reviews(data) == (["great, truly", 'dull "film"'], ["positive", "negative"])
    train, test = side.split(10)
    assert sorted(train + test) == list(range(10))
    assert test == [0, 5]


def test_every_server_gets_the_same_pins() -> None:
    names = [pin.split("==")[0] for pin in side.PINS]
    assert names == ["scikit-learn", "numpy", "scipy", "joblib"]
    assert all("==" in pin for pin in side.PINS)


def test_model_work_times_both_ways_of_answering_for_every_cost(tmp_path: Path) -> None:
    import joblib

    texts, labels = ["good fine film", "bad dull film", "great fun", "awful mess"], ["p", "n", "p", "n"]
    for cost, pipeline in side.pipelines().items():
        (tmp_path / cost).mkdir()
        joblib.dump(
            pipeline.set_params(tfidfvectorizer__min_df=1).fit(texts, labels),
            tmp_path / cost / "model.joblib",
        )

    work = side.model_work(tmp_path, calls=3)

    assert set(work) == set(side.COSTS)
    for cost in side.COSTS:
        assert set(work[cost]) == {"predict + predict_proba", "modelwire runtime"}
        assert all(ms > 0 for ms in work[cost].values())
