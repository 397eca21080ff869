#!/usr/bin/env bash
# Scaling of one search over worker processes (issue 24): a tabular search whose every
# evaluation sleeps S seconds (`--simulate-eval-seconds`, so the figures measure the
# queue, the store and the driver, not the benchmark), driven by `fnas search --workers 0`
# and evaluated by W `fnas worker` processes, on a SQLite file and on PostgreSQL.
#
# Usage:
#     scripts/scaling.sh [OUT_DIR]      (default /tmp/fnas-scaling)
# Environment:
#     FNAS=path/to/fnas           (default: target/release/fnas, built if missing)
#     WORKERS="1 2 4 8 16"  S=1  BATCH=64  STRATEGY=random
#     EVALS=N (every row) or PER_WORKER=N (default 64: EVALS = N x W, so every row has
#     the same ideal wall time and the workers' start-up weighs alike)
#     BACKENDS="sqlite postgresql"  PG=postgresql://fnas@127.0.0.1:5432/fnas (a server
#     started by scripts/postgres.sh; each run gets a fresh database, dropped after)
#
# Per row: wall time of the driver (start to exit), the ideal S*EVALS/W, their ratio
# (efficiency), the workers' claim latency p50/p99 and the store time per trial (claim
# plus result), from the workers' --json lines. Printed as a table; raw lines kept in
# OUT_DIR. Ideal counts evaluations only: a driver needs a moment to start and to
# record each batch, which is what the efficiency shows.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/fnas-scaling}
FNAS=${FNAS:-target/release/fnas}
WORKERS=${WORKERS:-"1 2 4 8 16"}
S=${S:-1}
PER_WORKER=${PER_WORKER:-64}
BATCH=${BATCH:-64}
STRATEGY=${STRATEGY:-random}
BACKENDS=${BACKENDS:-"sqlite postgresql"}
PG=${PG:-postgresql://fnas@127.0.0.1:5432/fnas}
mkdir -p "$OUT"
if [ ! -x "$FNAS" ]; then cargo build --release -p fnas; fi

pg_db() { # create|drop NAME
  local sql
  if [ "$1" = create ]; then sql="create database $2"; else sql="drop database if exists $2 with (force)"; fi
  psql "${PG%/*}/fnas" -qAt -c "$sql" >/dev/null
}

printf '%-11s %3s %6s %9s %9s %7s %9s %9s %10s\n' backend W evals wall_s ideal_s eff claim_p50 claim_p99 store_ms/t
for backend in $BACKENDS; do
  for w in $WORKERS; do
    evals=${EVALS:-$((PER_WORKER * w))}
    tag="$backend-w$w"
    rm -rf "${OUT:?}/$tag"; mkdir -p "$OUT/$tag"
    if [ "$backend" = sqlite ]; then
      store="$OUT/$tag/s.db"
    else
      db="fnas_scaling_w$w"
      pg_db drop "$db"; pg_db create "$db"
      store="${PG%/*}/$db"
    fi
    t0=$(date +%s.%N)
    "$FNAS" search --benchmark nas-bench-graph --dataset citeseer --strategy "$STRATEGY" \
      --budget "$evals" --batch-size "$BATCH" --seed 1 --store "$store" --name e \
      --workers 0 --simulate-eval-seconds "$S" --json > "$OUT/$tag/driver.json" 2> "$OUT/$tag/driver.err" &
    driver=$!
    # workers join once the experiment exists (they refuse an unknown one)
    until "$FNAS" show e --store "$store" --json >/dev/null 2>&1; do sleep 0.05; done
    pids=()
    for i in $(seq "$w"); do
      "$FNAS" worker --store "$store" --experiment e --json > "$OUT/$tag/worker-$i.json" 2> "$OUT/$tag/worker-$i.err" &
      pids+=($!)
    done
    wait "$driver"
    t1=$(date +%s.%N)
    wait "${pids[@]}"
    python3 - "$OUT/$tag" "$backend" "$w" "$evals" "$S" "$t0" "$t1" <<'EOF'
import json, glob, sys, statistics
d, backend, w, evals, s, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
claims, store = [], []
n = 0
for f in glob.glob(f"{d}/worker-*.json"):
    for line in open(f):
        r = json.loads(line)
        n += 1
        claims.append(r["claim_ms"])
        store.append(r["claim_ms"] + r["finish_ms"])
claims.sort()
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
wall = t1 - t0
ideal = s * evals / w
print(f"{backend:<11} {w:>3} {n:>6} {wall:>9.2f} {ideal:>9.2f} {ideal / wall:>7.1%} {q(claims, .5):>9.2f} {q(claims, .99):>9.2f} {statistics.mean(store) if store else float('nan'):>10.2f}")
EOF
    if [ "$backend" != sqlite ]; then pg_db drop "$db"; fi
  done
done
