"""Server overhead in CPU µs per request: modelwire against the Python floor, and A/B of two commits.

Noise-robust on a shared machine: the number that matters is the server process's own CPU time (utime +
stime of every thread, from ``/proc/<pid>/stat``) divided by the requests it answered in a fixed-length
run, not wall-clock req/s (also reported). Each server is pinned to CPU 0 and its load driver to CPU 1 when
the machine has two; every port is picked free (port 0 probing); every process is stopped by its PID.

    .venv/bin/python bench/overhead.py floor         # floor vs modelwire (working tree), REST and gRPC
    .venv/bin/python bench/overhead.py ab REF        # REF (a commit) vs the working tree, alternating
    .venv/bin/python bench/overhead.py ab REF --protocols rest --concurrency 1 32 --pairs 5 --duration 5
    .venv/bin/python bench/overhead.py callgrind REF --duration 20   # instructions per REST request
    .venv/bin/python bench/overhead.py callgrind REF --protocols grpc --duration 20   # per gRPC Predict call
    .venv/bin/python bench/overhead.py callgrind --base-env MODELWIRE_MONITORING__ENABLED=false \
        --env MODELWIRE_MONITORING__INTERVAL_S=0.5 --duration 45 --repeats 2   # same code, two settings

``scripts/bench ab REF`` runs the second form, ``scripts/bench overhead`` the first, and
``bench/ab_rest.sh [REF]`` the A/B of REST alone against REF (default: the parent commit). The A/B checks
REF out into a temporary git worktree and runs it with the same virtualenv (``PYTHONPATH=<worktree>/src``),
so only the code differs; old and new alternate (old, new, new, old, ...), so drift on the machine falls on
both. It prints each run and, per (protocol, concurrency), the median req/s and CPU µs/request of each
side and the ratios new/old.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = str(ROOT / ".venv/bin/python")
BODY = json.dumps({"text": "I love this product"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_split() -> tuple[list[str], list[str]]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [], []
    return ["taskset", "-c", str(cpus[0])], ["taskset", "-c", ",".join(str(c) for c in cpus[1:])]


@dataclass
class Target:
    """One server under test: how to start it and where it listens."""

    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = 0
    grpc_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path, timeout: float = 180) -> None:
        pin, _ = cpu_split()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*pin, *self.argv],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; see {log}")
            if self._ready():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.label} not ready within {timeout:g} s; see {log}")

    def _ready(self) -> bool:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/predict",
            data=BODY.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status != 200:
                    return False
            socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1).close()
        except OSError:
            return False
        return True

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads), in seconds."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def floor_target() -> Target:
    http, grpc = free_port(), free_port()
    argv = [PYTHON, str(BENCH / "floor.py"), "--http-port", str(http), "--grpc-port", str(grpc)]
    return Target("floor", argv, http_port=http, grpc_port=grpc)


def modelwire_target(label: str, src: Path, data_dir: Path) -> Target:
    http, grpc = free_port(), free_port()
    argv = [PYTHON, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--http-port", str(http)]
    argv += ["--grpc-port", str(grpc), "--data-dir", str(data_dir), "--log-level", "warning"]
    return Target(label, argv, env={"PYTHONPATH": str(src)}, http_port=http, grpc_port=grpc)


def drive(target: Target, protocol: str, concurrency: int, duration: float, body: Path) -> dict[str, float]:
    """One closed-loop run; returns requests, req/s and the server's CPU µs per request."""
    _, pin = cpu_split()
    if protocol == "rest":
        argv = [*pin, "wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--timeout", "10s"]
        argv += ["-s", str(BENCH / "wrk_post.lua"), f"http://127.0.0.1:{target.http_port}/predict"]
    elif protocol == "ws":  # pipelined predictions on /v1/ws, `concurrency` in flight over 1 or 4 sockets
        argv = [*pin, PYTHON, str(BENCH / "ws_load.py"), "--url", f"ws://127.0.0.1:{target.http_port}/v1/ws"]
        argv += ["--concurrency", str(concurrency), "--duration", f"{duration:g}", "--warmup", "0"]
    else:
        channels = 1 if concurrency == 1 else min(4, concurrency)
        argv = [*pin, PYTHON, str(BENCH / "grpc_load.py"), "--target", f"127.0.0.1:{target.grpc_port}"]
        argv += ["--concurrency", str(concurrency), "--channels", str(channels)]
        argv += ["--duration", f"{duration:g}", "--warmup", "0"]
    env = {**os.environ, "BENCH_BODY": str(body)}
    cpu, wall = target.cpu_seconds(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + 60, check=False)
    cpu, wall = target.cpu_seconds() - cpu, time.monotonic() - wall
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-500:]}")
    if protocol == "rest":
        line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
        raw = json.loads(line.removeprefix("WRK_JSON "))
        requests = raw["requests"] - raw["errors"]["status"]
        rate = requests / (raw["duration_us"] / 1e6)
        errors = sum(raw["errors"].values())
    else:
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        # grpc_load and ws_load count calls in their measured window; the server also served the calls in
        # flight at its edges, which the CPU delta includes: at most `concurrency` of them (bounded, small).
        requests, rate, errors = raw["requests"], raw["req_per_s"], sum(raw["errors"].values())
    if errors:
        raise RuntimeError(f"{target.label} {protocol} c={concurrency}: {errors} errors")
    return {"requests": requests, "req_per_s": rate, "cpu_us": cpu * 1e6 / max(1, requests), "wall": wall}


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="modelwire-ab-"))
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tmp), ref], cwd=ROOT, check=True)
    try:
        yield tmp
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tmp)], cwd=ROOT, check=False)


def data_dir() -> Path:
    """A data directory with the trained default model, shared by every run (trained once)."""
    path = BENCH / ".peers" / "data"
    if not (path / "models").exists():
        path.mkdir(parents=True, exist_ok=True)
        print(f"==> training the default model into {path}", flush=True)
        subprocess.run([PYTHON, "-m", "modelwire", "train", "--data-dir", str(path)], check=True, timeout=600)
    return path


def measure(
    targets: list[Target], args: argparse.Namespace, order: list[list[int]], log: Path
) -> dict[tuple[str, str, int], list[dict[str, float]]]:
    """Run every target (one at a time) in each round's order; every cell once per round."""
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    body = log.parent / "body.json"
    body.write_text(BODY)
    for round_no, indices in enumerate(order):
        for i in indices:
            target = targets[i]
            target.start(log)
            try:
                drive(target, "rest", 32, args.warmup, body)
                for extra in ("grpc", "ws"):
                    if extra in args.protocols:
                        drive(target, extra, 32, args.warmup, body)
                for protocol in args.protocols:
                    for concurrency in args.concurrency:
                        run = drive(target, protocol, concurrency, args.duration, body)
                        results.setdefault((target.label, protocol, concurrency), []).append(run)
                        print(
                            f"round {round_no + 1} {target.label:8s} {protocol:4s} c={concurrency:<3d} "
                            f"{run['req_per_s']:8.0f} req/s {run['cpu_us']:7.0f} µs CPU/req",
                            flush=True,
                        )
            finally:
                target.stop()
    return results


def summary(results: dict[tuple[str, str, int], list[dict[str, float]]], base: str, other: str) -> list[str]:
    lines = [
        f"{'cell':12s} {base:>10s} {other:>10s}   req/s {other}/{base}   CPU µs/req {other}/{base}",
    ]
    cells = sorted({(p, c) for (_, p, c) in results})
    for protocol, concurrency in cells:
        a = results.get((base, protocol, concurrency), [])
        b = results.get((other, protocol, concurrency), [])
        if not a or not b:
            continue
        rate_a, rate_b = (statistics.median(r["req_per_s"] for r in x) for x in (a, b))
        cpu_a, cpu_b = (statistics.median(r["cpu_us"] for r in x) for x in (a, b))
        lines.append(
            f"{protocol} c={concurrency:<4d}  {cpu_a:6.0f} µs  {cpu_b:6.0f} µs   "
            f"{rate_a:6.0f} -> {rate_b:6.0f} = {rate_b / rate_a:5.2f}x   "
            f"{cpu_a:5.0f} -> {cpu_b:5.0f} = {cpu_b / cpu_a:5.2f}x"
        )
    return lines


def ws_vs_rest(results: dict[tuple[str, str, int], list[dict[str, float]]]) -> list[str]:
    """WebSocket against REST on the same server start (each round drives both): the median over rounds of
    the per-round ratios, so a round slowed by other work on the machine slows both of its sides."""
    lines = []
    for label, protocol, concurrency in sorted(results):
        if protocol != "ws" or (label, "rest", concurrency) not in results:
            continue
        ws, rest = results[(label, "ws", concurrency)], results[(label, "rest", concurrency)]
        rates = [w["req_per_s"] / r["req_per_s"] for w, r in zip(ws, rest, strict=False)]
        cpus = [r["cpu_us"] / w["cpu_us"] for w, r in zip(ws, rest, strict=False)]
        lines.append(
            f"{label}: ws/rest c={concurrency:<4d} req/s {statistics.median(rates):5.2f}x "
            f"(rounds {', '.join(f'{x:.2f}' for x in rates)}); CPU/item rest/ws "
            f"{statistics.median(cpus):5.2f}x (rounds {', '.join(f'{x:.2f}' for x in cpus)})"
        )
    return lines


def callgrind(target: Target, args: argparse.Namespace, log: Path) -> dict[tuple[str, int], float]:
    """Instructions per request (all threads) under ``valgrind --tool=callgrind``, per protocol and c.

    The server starts with instrumentation off (start-up is not counted); for each cell a discarded
    warm-up, then counters zeroed, instrumentation on, ``args.duration`` seconds of load (wrk for REST,
    ``grpc_load.py`` for gRPC ``Predictor/Predict``), a dump, off again. The requests counted are every
    one the server answered while instrumented (gRPC: ``answered``, the calls still in flight at the end
    included). Slow (the server runs ~50x slower) but deaf to other work on the machine; kernel time is
    not counted.
    """
    out = Path(tempfile.mkdtemp(prefix=f"callgrind-{target.label}-", dir=log.parent))
    target.argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg.%p"]
    target.argv += modelwire_target(target.label, Path(target.env["PYTHONPATH"]), data_dir()).argv
    target.http_port = int(target.argv[target.argv.index("--http-port") + 1])
    target.grpc_port = int(target.argv[target.argv.index("--grpc-port") + 1])
    body = log.parent / "body.json"
    body.write_text(BODY)
    _, pin = cpu_split()
    env = {**os.environ, "BENCH_BODY": str(body)}
    results: dict[tuple[str, int], float] = {}
    target.start(log, timeout=900)

    def control(pid: str, *argv: str) -> None:
        subprocess.run(["callgrind_control", *argv, pid], capture_output=True, timeout=60, check=True)

    try:
        pid = str(target.proc.pid if target.proc else 0)
        for protocol in args.protocols:
            for concurrency in args.concurrency:
                warmup = max(3.0, args.warmup)  # past the first monitor round with --warmup
                if protocol == "rest":
                    wrk = [*pin, "wrk", "-t1", f"-c{concurrency}", "--timeout", "60s"]
                    wrk += ["-s", str(BENCH / "wrk_post.lua")]
                    url = f"http://127.0.0.1:{target.http_port}/predict"
                    load = [*wrk, f"-d{warmup:g}s", url], [*wrk, f"-d{args.duration:g}s", url]
                else:
                    channels = 1 if concurrency == 1 else min(4, concurrency)
                    grpc = [*pin, PYTHON, str(BENCH / "grpc_load.py")]
                    grpc += ["--target", f"127.0.0.1:{target.grpc_port}", "--timeout", "120"]
                    grpc += ["--concurrency", str(concurrency), "--channels", str(channels), "--warmup", "0"]
                    load = [*grpc, "--duration", f"{warmup:g}"], [*grpc, "--duration", f"{args.duration:g}"]
                subprocess.run(load[0], env=env, capture_output=True, timeout=900, check=True)
                control(pid, "-i", "on")
                control(pid, "-z")
                done = subprocess.run(
                    load[1], env=env, capture_output=True, text=True, timeout=args.duration + 300, check=True
                )
                control(pid, "-d", f"{protocol}-c{concurrency}")
                control(pid, "-i", "off")
                if protocol == "rest":
                    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
                    raw = json.loads(line.removeprefix("WRK_JSON "))
                    if sum(raw["errors"].values()):
                        raise RuntimeError(f"{target.label} c={concurrency}: wrk errors {raw['errors']}")
                    requests, seconds = raw["requests"], raw["duration_us"] / 1e6
                else:
                    raw = json.loads(done.stdout.strip().splitlines()[-1])
                    if sum(raw["errors"].values()):
                        raise RuntimeError(f"{target.label} c={concurrency}: gRPC errors {raw['errors']}")
                    requests, seconds = raw["answered"], raw["duration_s"]
                print(f"{target.label} {protocol} c={concurrency}: {requests} requests in {seconds:.1f} s")
                dump = max(out.glob("cg.*"), key=os.path.getmtime)
                totals = next(
                    x for x in dump.read_text(errors="replace").splitlines() if x.startswith("summary:")
                )
                results[(protocol, concurrency)] = int(totals.split()[1]) / max(1, requests)
    finally:
        target.stop()
    return results


def split_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env/--base-env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def callgrind_compare(targets: list[Target], args: argparse.Namespace, log: Path) -> None:
    """Each target ``args.repeats`` times (alternating: a, b, b, a, ...); instructions per request and
    the ratio of the second to the first per concurrency."""
    results: dict[tuple[str, str, int], list[float]] = {}
    for round_no in range(args.repeats):
        for target in targets if round_no % 2 == 0 else targets[::-1]:
            for (protocol, concurrency), per_request in callgrind(target, args, log).items():
                results.setdefault((target.label, protocol, concurrency), []).append(per_request)
                count = f"{per_request / 1e3:,.1f} k"
                print(f"{target.label} {protocol} c={concurrency}: {count} instructions/request", flush=True)
    a, b = targets[0].label, targets[1].label
    for protocol in args.protocols:
        for concurrency in args.concurrency:
            mean_a = statistics.mean(results[(a, protocol, concurrency)])
            mean_b = statistics.mean(results[(b, protocol, concurrency)])
            print(
                f"{protocol} c={concurrency}: {a} {mean_a / 1e3:,.1f} k, {b} {mean_b / 1e3:,.1f} k "
                f"instructions/request (means of {args.repeats}); {b}/{a} = {mean_b / mean_a:.4f}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["floor", "ab", "callgrind"])
    parser.add_argument("ref", nargs="?", help="ab, callgrind: the commit to compare the working tree with")
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=["rest", "grpc", "ws"],
        help="default: rest and grpc (floor, ab); rest (callgrind)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--pairs", type=int, default=3, help="rounds; medians over them (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded load per start")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="ab, callgrind: an environment variable for both servers (repeatable; e.g. MODELWIRE_MODELS)",
    )
    parser.add_argument(
        "--base-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="callgrind: a variable for the first server only; without REF both run the working tree, "
        "so only the settings differ (e.g. MODELWIRE_MONITORING__ENABLED=false)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="callgrind: runs of each side, alternating")
    args = parser.parse_args(argv)
    if args.protocols is None:
        args.protocols = ["rest"] if args.mode == "callgrind" else ["rest", "grpc"]
    log = Path(tempfile.mkdtemp(prefix="modelwire-overhead-")) / "servers.log"
    data = data_dir()
    print(f"==> server logs: {log}", flush=True)
    if args.mode == "floor":
        targets = [floor_target(), modelwire_target("modelwire", ROOT / "src", data)]
        order = [[0, 1] if r % 2 == 0 else [1, 0] for r in range(args.pairs)]
        results = measure(targets, args, order, log)
        print("\n".join(summary(results, "floor", "modelwire") + ws_vs_rest(results)))
        return
    if args.mode == "callgrind" and not args.ref and args.base_env:
        base = modelwire_target("base", ROOT / "src", data)
        base.env.update(split_env(args.env + args.base_env))
        tree = modelwire_target("tree", ROOT / "src", data)
        tree.env.update(split_env(args.env))
        print(f"base: {' '.join(args.env + args.base_env)}\ntree: {' '.join(args.env)}", flush=True)
        callgrind_compare([base, tree], args, log)
        return
    if not args.ref:
        parser.error(f"{args.mode} needs REF (callgrind: or --base-env)")
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with checkout(rev) as old:
        targets = [modelwire_target("old", old / "src", data), modelwire_target("new", ROOT / "src", data)]
        for target in targets:
            target.env.update(split_env(args.env))
        if args.mode == "callgrind":
            callgrind_compare(targets, args, log)
            return
        order = [[0, 1] if r % 2 == 0 else [1, 0] for r in range(args.pairs)]
        results = measure(targets, args, order, log)
    print(f"old = {rev}, new = the working tree")
    print("\n".join(summary(results, "old", "new") + ws_vs_rest(results)))


if __name__ == "__main__":
    sys.exit(main())
