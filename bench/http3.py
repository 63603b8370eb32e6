"""HTTP/3 (hypercorn + aioquic) next to granian's HTTPS (HTTP/2 and HTTP/1.1): one client, same requests.

    modelwire certs init --dir /tmp/tls
    modelwire serve --tls-cert /tmp/tls/server.pem --tls-key /tmp/tls/server-key.pem --http3 &
    python bench/http3.py https://127.0.0.1:8000 --ca-cert /tmp/tls/ca.pem

niquests speaks all three versions, so the client is the same code for each; ``--concurrency`` requests
are kept in flight on one connection (multiplexed streams; HTTP/1.1 gets one connection per request in
flight). Prints requests/s and median/p99 latency per protocol and path. Results: docs/decisions.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import niquests

PATHS = {
    "health": ("GET", "/v2/health/ready", None),
    "predict": ("POST", "/v1/models/sentiment/predict", {"text": "I love this product"}),
}


def _session(protocol: str, multiplexed: bool) -> niquests.Session:
    if protocol == "h3":
        return niquests.Session(multiplexed=multiplexed)
    if protocol == "h2":
        return niquests.Session(multiplexed=multiplexed, disable_http3=True, disable_http1=True)
    return niquests.Session(disable_http3=True, disable_http2=True, pool_maxsize=64)


def run(url: str, ca: str, protocol: str, path: str, requests: int, concurrency: int) -> dict[str, Any]:
    method, target, body = PATHS[path]
    with _session(protocol, concurrency > 1) as session:
        for _ in range(3):  # handshakes; the first answer's Alt-Svc moves the h3 session to QUIC
            warm = session.request(method, url + target, json=body, verify=ca)
            if concurrency > 1:
                session.gather()
            assert warm.status_code == 200, warm.status_code
        version = warm.http_version
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(requests // concurrency):
            sent = time.perf_counter()
            if concurrency == 1:
                session.request(method, url + target, json=body, verify=ca).raise_for_status()
                latencies.append(time.perf_counter() - sent)
                continue
            batch = [session.request(method, url + target, json=body, verify=ca) for _ in range(concurrency)]
            session.gather()
            for response in batch:
                response.raise_for_status()
            latencies.append((time.perf_counter() - sent) / concurrency)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "protocol": protocol,
        "negotiated": version,
        "path": path,
        "rps": (requests // concurrency) * concurrency / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--ca-cert", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    for path in PATHS:
        for protocol in ("h1", "h2", "h3"):
            row = run(args.url, args.ca_cert, protocol, path, args.requests, args.concurrency)
            print(
                f"{row['path']:8} {row['protocol']} (HTTP/{row['negotiated'] / 10:g})  "
                f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
            )


if __name__ == "__main__":
    main()
