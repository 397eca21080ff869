#!/usr/bin/env bash
# Near-neighbour warm-start study: how good is a warm start when the pool holds a CLOSE
# network, the case a converging search meets (PPO samples variations of what it already
# trained), rather than the random pool of scripts/warm_start_study.sh?
#  1. fills a pool with N random mnas-28 architectures (seeds 101..100+N), each trained
#     with the full `fashion-mnist` proxy from scratch (the same pool as the warm-start
#     study; STORE=... SKIP_FILL=1 reuses a filled one);
#  2. for k = 1..N makes a neighbour of architecture 100+k by changing MUTATIONS (default
#     1) randomly chosen decisions to another choice (seeded; scripts/mutate_arch.py);
#  3. trains each neighbour twice: warm-started from the pool with half the proxy's
#     epochs, and with the full proxy from scratch.
# The warm runs use `fnas train`'s defaults (--pool-match, --warm-lr-scale); WARM_ARGS
# adds flags. SCRATCH_ROWS=FILE reuses the scratch rows of an earlier run with the same N
# and MUTATIONS instead of training them again.
# Results: $OUT/warm-near-study-m$MUTATIONS[-WARM_ARGS].jsonl (one row per training, "mode"
# = warm | scratch); the summary (paired differences by block distance) is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
MUTATIONS=${MUTATIONS:-1}
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-docs/results}
PYTHON=${PYTHON:-python3}
export FNAS=${FNAS:-target/release/fnas}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
STORE=${STORE:-$(mktemp -d)/warm-study.db}
export STORE
# extra `fnas train` flags of the warm runs (e.g. WARM_ARGS="--pool-match block
# --warm-lr-scale 1"), which also name the results file
WARM_ARGS=${WARM_ARGS:-}
export WARM_ARGS
# shellcheck source=scripts/warm_pool_lib.sh
. scripts/warm_pool_lib.sh
suffix=$(warm_suffix)
rows="$OUT/warm-near-study-m$MUTATIONS$suffix.jsonl"
: > "$rows"
modes="warm scratch"
if [ -n "${SCRATCH_ROWS:-}" ]; then
    grep '"mode":"scratch"' "$SCRATCH_ROWS" >> "$rows"
    modes="warm"
fi
start=$(date +%s)
fill_pool
work=$(mktemp -d)
for k in $(seq 1 "$N"); do
    parent=$("$FNAS" space sample mnas-28 --seed $((100 + k)))
    arch=$("$PYTHON" scripts/mutate_arch.py --seed "$k" --mutations "$MUTATIONS" "$parent")
    printf '%s\n' "$arch" > "$work/$k.arch"
    for m in $modes; do echo "$k $m"; done
done | xargs -P "$JOBS" -L 1 sh -c '
    arch=$(cat '"$work"'/$0.arch)
    k=$0; mode=$1; set --
    [ "$mode" = warm ] && set -- --pool "$STORE" --warm-start --pool-experiment warm-near $WARM_ARGS
    "$FNAS" train --arch "$arch" --task fashion-mnist "$@" --latency-runs 5 --json 2>/dev/null | tail -1 |
        sed "s/^{/{\"seed\":$k,\"mode\":\"$mode\",/" >> '"$rows"'
' 
rm -rf "$work"
"$PYTHON" scripts/warm_near_report.py "$rows" | tee "${rows%.jsonl}.txt"
echo "near-neighbour warm-start study: $(( $(date +%s) - start )) s"
