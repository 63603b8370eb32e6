#!/usr/bin/env bash
# A/B of REST /predict throughput between an earlier commit and the working tree, in one run, same venv:
#   bench/ab_rest.sh REF [PAIRS] [SECONDS]      e.g.  bench/ab_rest.sh 05be116 5 8
# Server pinned to CPU 0, wrk (1 thread, 32 connections) to CPU 1; old and new alternate so drift on a
# shared machine hits both; prints each pair and the median ratio new/old. Needs wrk and taskset.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REF="${1:?usage: bench/ab_rest.sh REF [PAIRS] [SECONDS]}"
PAIRS="${2:-5}"
SECONDS_PER_RUN="${3:-8}"
cd "$ROOT"
OLD="$(mktemp -d)"
DATA="$(mktemp -d)"
BODY="$(mktemp)"
cleanup() { git worktree remove --force "$OLD" >/dev/null 2>&1 || true; rm -rf "$DATA" "$BODY" "$OLD"; }
trap cleanup EXIT
git worktree add -q --detach "$OLD" "$REF"
echo '{"text": "I love this product, it works great"}' >"$BODY"
export BENCH_BODY="$BODY"
PORT=18300

one() { # label src-dir -> prints "label requests"
    PYTHONPATH="$2" taskset -c 0 .venv/bin/python -m modelwire serve --http-port $PORT --grpc-port $((PORT + 1)) \
        --data-dir "$DATA" --log-level warning >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 240); do curl -sf "127.0.0.1:$PORT/v2/health/ready" >/dev/null && break; sleep 0.5; done
    taskset -c 1 wrk -t1 -c32 -d3s -s bench/wrk_post.lua "http://127.0.0.1:$PORT/predict" >/dev/null
    local line
    line=$(taskset -c 1 wrk -t1 -c32 "-d${SECONDS_PER_RUN}s" -s bench/wrk_post.lua "http://127.0.0.1:$PORT/predict" | grep WRK_JSON)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$1 $(sed -E 's/.*"requests": ([0-9]+).*/\1/' <<<"$line")"
}

RESULTS="$(mktemp)"
for _ in $(seq "$PAIRS"); do
    one old "$OLD/src" | tee -a "$RESULTS"
    one new "$ROOT/src" | tee -a "$RESULTS"
done
.venv/bin/python - "$RESULTS" "$REF" <<'PY'
import statistics, sys
runs = {"old": [], "new": []}
for line in open(sys.argv[1]):
    label, count = line.split()
    runs[label].append(int(count))
old, new = statistics.median(runs["old"]), statistics.median(runs["new"])
print(f"median requests: {sys.argv[2]} {old:.0f}, working tree {new:.0f}; ratio new/old {new / old:.2f}")
PY
rm -f "$RESULTS"
