"""A closed-loop gRPC load driver on grpc.aio: N concurrent unary calls over a few channels, for a fixed time.

Requests are encoded once, by hand, as protobuf wire bytes, and sent through channels with no serializer, so
the driver needs no generated stubs (it drives modelwire's ``Predictor/Predict`` and the Open Inference
Protocol's ``ModelInfer`` of any server alike) and spends its CPU on the calls, not on building messages. The
first response is checked to carry a sentiment label; every non-OK status is counted by code.

    python bench/grpc_load.py --target 127.0.0.1:8001 --kind predictor --concurrency 32 --duration 10
    python bench/grpc_load.py --target 127.0.0.1:8081 --kind v2 --model sentiment --concurrency 128

Prints one JSON object: requests, req_per_s, p50_ms, p99_ms, mean_ms, errors (by status code), client_cpu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

TEXT = "I love this product"
METHODS = {
    "predictor": "/modelwire.v1.Predictor/Predict",
    "v2": "/inference.GRPCInferenceService/ModelInfer",
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, sub-messages, packed repeated scalars."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def predictor_request(text: str) -> bytes:
    """``modelwire.v1.Input{text = 1}``."""
    return _field(1, text.encode())


def v2_request(model: str, text: str, outputs: Sequence[str] = (), content_type: str = "") -> bytes:
    """``inference.ModelInferRequest``: one BYTES input ``text`` of shape [1], in ``bytes_contents``; each
    of ``outputs`` asked for by name (``outputs``, field 6: a runtime such as MLServer's scikit-learn one
    computes only the outputs asked for, ``predict`` when none is); ``content_type`` set as the input's
    ``content_type`` parameter (MLServer decodes a ``"str"`` input as strings, not one byte buffer)."""
    contents = _field(8, text.encode())  # InferTensorContents.bytes_contents
    tensor = (
        _field(1, b"text")  # name
        + _field(2, b"BYTES")  # datatype
        + _field(3, _varint(1))  # shape, packed int64
        # parameters: map<string, InferParameter> entry {key = 1, value = 2}; InferParameter.string_param = 3
        + (
            _field(4, _field(1, b"content_type") + _field(2, _field(3, content_type.encode())))
            if content_type
            else b""
        )
        + _field(5, contents)  # contents
    )
    requested = b"".join(_field(6, _field(1, name.encode())) for name in outputs)
    return _field(1, model.encode()) + _field(5, tensor) + requested  # model_name, inputs, outputs


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    recording: bool = False
    stopping: bool = False
    answered: int = 0
    """Every call answered OK while recording, those finishing after the stop too (for per-call counts)."""


async def _worker(
    call: grpc.aio.UnaryUnaryMultiCallable, request: bytes, tally: Tally, timeout: float
) -> None:
    clock = time.perf_counter
    while not tally.stopping:
        started = clock()
        try:
            await call(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if tally.recording:
                name = exc.code().name
                tally.errors[name] = tally.errors.get(name, 0) + 1
            continue
        if tally.recording:
            tally.answered += 1
            if not tally.stopping:
                tally.latencies.append(clock() - started)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    target: str,
    method: str,
    request: bytes,
    concurrency: int,
    channels: int,
    duration: float,
    warmup: float,
    timeout: float,
) -> dict[str, object]:
    # A local subchannel pool per channel: otherwise channels to one target share one TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    try:
        calls = [ch.unary_unary(method) for ch in opened]
        first = await calls[0](request, timeout=timeout)
        if b"positive" not in first and b"negative" not in first:
            raise SystemExit(f"unexpected response from {target}{method}: {first!r}")
        tally = Tally()
        tasks = [
            asyncio.create_task(_worker(calls[i % channels], request, tally, timeout))
            for i in range(concurrency)
        ]
        await asyncio.sleep(warmup)
        tally.recording = True
        cpu_start = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.sleep(duration)
        tally.stopping = True
        elapsed = time.perf_counter() - started
        cpu_end = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=timeout + 5)
    finally:
        await asyncio.gather(*(ch.close() for ch in opened))
    lat = sorted(tally.latencies)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    return {
        "requests": len(lat),
        # with --warmup 0: every call answered OK by the server from the first (the check) to the last
        "answered": tally.answered + 1,
        "duration_s": round(elapsed, 3),
        "req_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(_percentile(lat, 50) * 1000, 3),
        "p99_ms": round(_percentile(lat, 99) * 1000, 3),
        "mean_ms": round(sum(lat) / len(lat) * 1000, 3) if lat else float("nan"),
        "errors": tally.errors,
        "client_cpu": round(cpu / elapsed, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--kind", choices=sorted(METHODS), default="predictor")
    parser.add_argument("--model", default="sentiment", help="model name for --kind v2")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--output", action="append", default=[], help="--kind v2: ask for this output")
    parser.add_argument("--content-type", default="", help="--kind v2: the input's content_type parameter")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--channels", type=int, default=0, help="default: 1 at concurrency 1, else 4")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    args = parser.parse_args(argv)
    request = (
        predictor_request(args.text)
        if args.kind == "predictor"
        else v2_request(args.model, args.text, args.output, args.content_type)
    )
    channels = args.channels or (1 if args.concurrency == 1 else min(4, args.concurrency))
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(
        run(
            args.target,
            METHODS[args.kind],
            request,
            args.concurrency,
            channels,
            args.duration,
            args.warmup,
            args.timeout,
        )
    )
    result.update(kind=args.kind, concurrency=args.concurrency, channels=channels)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
