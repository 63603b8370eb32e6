"""Monitors on vs off (issue 16: the REST benchmark within 5 %): ``modelwire serve`` with
``MODELWIRE_MONITORING__ENABLED`` true and false, alternating runs of ``wrk`` on ``POST /predict``, medians
of req/s and server CPU µs per request, and their ratios (on / off).

    .venv/bin/python bench/monitoring_ab.py --data-dir DIR [--pairs 5] [--duration 5] [--concurrency 1 32]

``DIR`` holds a trained ``sentiment`` version (``modelwire train --data-dir DIR``). The body is the
benchmark's usual short text, and, with ``--long``, a 1,000-character review (the input statistics cost
grows with the text).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drivers
import servers

LONG = (
    "I went in expecting little and came out moved. The lead gives a performance of real warmth, the "
    "script trusts its audience, and the photography makes the small town feel lived in. It is slow in "
    "the middle and one subplot goes nowhere, but the last half hour earns every tear. "
) * 4


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--long", action="store_true", help="a 1,000-character review instead of a short text"
    )
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="monitoring-ab-"))
    body = run_dir / "body.json"
    body.write_text(json.dumps({"text": LONG if args.long else servers.TEXT}))
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for pair in range(args.pairs):
        for side in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            server = servers.modelwire(run_dir, args.data_dir, batching=True)
            server.env["MODELWIRE_MONITORING__ENABLED"] = "true" if side == "on" else "false"
            server.start(None)
            try:
                server.wait_ready(120)
                for c in args.concurrency:
                    load = drivers.Load(args.duration, c, None, run_dir / f"{side}-{pair}-{c}.txt")
                    drivers.wrk(
                        drivers.Load(1.0, c, None, run_dir / "warm.txt"), server.base_url + "/predict", body
                    )
                    cpu = server.cpu_seconds()
                    out = drivers.wrk(load, server.base_url + "/predict", body)
                    cpu = server.cpu_seconds() - cpu
                    rps = float(out["req_per_s"])  # type: ignore[arg-type]
                    us = cpu / max(1, int(out["requests"])) * 1e6  # type: ignore[call-overload]
                    results.setdefault((side, c), []).append((rps, us))
                    print(f"pair {pair} {side:3} c={c:<3} {rps:9.0f} req/s {us:7.1f} µs CPU/req", flush=True)
            finally:
                server.stop()
    print("\nmedians (on / off):")
    for c in args.concurrency:
        on, off = results[("on", c)], results[("off", c)]
        rps_on, rps_off = statistics.median(r for r, _ in on), statistics.median(r for r, _ in off)
        cpu_on, cpu_off = statistics.median(u for _, u in on), statistics.median(u for _, u in off)
        print(
            f"c={c:<3} req/s {rps_off:8.0f} off {rps_on:8.0f} on ({rps_on / rps_off:.3f}x)   "
            f"CPU µs/req {cpu_off:6.1f} off {cpu_on:6.1f} on ({cpu_on / cpu_off:.3f}x)"
        )


if __name__ == "__main__":
    main()
