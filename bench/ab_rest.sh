#!/usr/bin/env bash
# A/B of a REST hot-path change: REF (default: the parent, HEAD~1) against the working tree, alternating, in
# one venv; medians of req/s and server CPU µs per request and their ratios (bench/overhead.py ab).
#   bench/ab_rest.sh                  HEAD~1 vs the working tree, REST at c=1 and 32
#   bench/ab_rest.sh f5382c2 --pairs 5 --concurrency 1 32 128
set -euo pipefail
ref="${1:-HEAD~1}"
[ $# -gt 0 ] && shift
exec "$(dirname "$0")/../scripts/bench" ab "$ref" --protocols rest "$@"
