#!/usr/bin/env bash
# Warm-start study: is a child initialised from the knowledge pool and trained HALF the
# proxy's epochs as good as the full proxy from scratch?
#  1. fills a fresh pool with N other random mnas-28 architectures (seeds 101..100+N),
#     each trained with the full `fashion-mnist` proxy from scratch;
#  2. trains the architectures of seeds 1..N from that pool with half the epochs
#     (`fnas train --pool STORE --warm-start`, 1 epoch instead of 2);
#  3. compares them with the rows of scripts/proxy_study.sh (same seeds, same validation
#     images): the full proxy from scratch and 5x the proxy's training.
# STORE=... SKIP_FILL=1 reuses a filled pool.
# Results: $OUT/warm-start-study[-WARM_ARGS].jsonl; the summary is printed (and saved as .txt).
# The first run (block-level choice, the proxy's learning rate) is kept as
# docs/results/warm-start-study-block-lr1.{jsonl,txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-docs/results}
export FNAS=${FNAS:-target/release/fnas}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
[ -s "$OUT/proxy-study.jsonl" ] || { echo "run scripts/proxy_study.sh first ($OUT/proxy-study.jsonl)" >&2; exit 1; }
STORE=${STORE:-$(mktemp -d)/warm-study.db}
export STORE
# extra `fnas train` flags of the warm runs (default: its --pool-match and
# --warm-lr-scale defaults); they also name the results files
WARM_ARGS=${WARM_ARGS:-}
export WARM_ARGS
# shellcheck source=scripts/warm_pool_lib.sh
. scripts/warm_pool_lib.sh
suffix=$(warm_suffix)
rows="$OUT/warm-start-study$suffix.jsonl"
: > "$rows"
start=$(date +%s)
fill_pool
seq 1 "$N" | xargs -P "$JOBS" -I{} bash -c '"$FNAS" train --arch random:{} --task fashion-mnist --pool "$STORE" --warm-start --pool-experiment warm-study $WARM_ARGS --latency-runs 5 --json 2>/dev/null | tail -1 | sed "s/^{/{\"seed\":{},/" >> '"$rows"
python3 scripts/warm_start_report.py "$rows" "$OUT/proxy-study.jsonl" | tee "${rows%.jsonl}.txt"
echo "warm-start study: $(( $(date +%s) - start )) s"
