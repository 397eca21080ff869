#!/usr/bin/env bash
# Real training with external workers against in-process workers (issue 24): the same
# search (task, strategy, seed, budget) run twice on one machine,
#   A. `fnas search --workers 2`: two children at a time in one process, one thread each;
#   B. `fnas search --workers 0` + 2 `fnas worker` processes (one child, one thread each),
# on SQLite stores in OUT_DIR. Prints both wall times, their ratio (B/A) and whether the
# two searches recorded the same trials with the same rewards. Run it on a quiet machine:
# the wall times are the figure.
#
# Usage: scripts/workers_vs_threads.sh [OUT_DIR]   (default /tmp/fnas-workers-vs-threads)
# Environment: FNAS (default target/release/fnas), TASK=fashion-mnist, STRATEGY=evolution,
#              BUDGET=8 (children), BATCH=4, SEED=1, ROUNDS=1 (A,B pairs, interleaved)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/fnas-workers-vs-threads}
FNAS=${FNAS:-target/release/fnas}
TASK=${TASK:-fashion-mnist}
STRATEGY=${STRATEGY:-evolution}
BUDGET=${BUDGET:-8}
BATCH=${BATCH:-4}
SEED=${SEED:-1}
ROUNDS=${ROUNDS:-1}
mkdir -p "$OUT"
if [ ! -x "$FNAS" ]; then cargo build --release -p fnas; fi
common=(search --task "$TASK" --strategy "$STRATEGY" --budget "$BUDGET" --batch-size "$BATCH"
        --seed "$SEED" --name e --pool off)

now() { date +%s.%N; }
printf '%-5s %10s %10s %8s %s\n' round A_s B_s B/A same_trials
for r in $(seq "$ROUNDS"); do
  rm -rf "$OUT/a$r.db"* "$OUT/b$r.db"*
  t0=$(now)
  "$FNAS" "${common[@]}" --store "$OUT/a$r.db" --workers 2 > "$OUT/a$r.out" 2> "$OUT/a$r.err"
  t1=$(now)
  "$FNAS" "${common[@]}" --store "$OUT/b$r.db" --workers 0 > "$OUT/b$r.out" 2> "$OUT/b$r.err" &
  driver=$!
  until "$FNAS" show e --store "$OUT/b$r.db" --json >/dev/null 2>&1; do sleep 0.05; done
  "$FNAS" worker --store "$OUT/b$r.db" --experiment e --json > "$OUT/b$r-w1.json" 2> "$OUT/b$r-w1.err" &
  w1=$!
  "$FNAS" worker --store "$OUT/b$r.db" --experiment e --json > "$OUT/b$r-w2.json" 2> "$OUT/b$r-w2.err" &
  w2=$!
  wait "$driver"
  t2=$(now)
  wait "$w1" "$w2"
  same=$(python3 - "$OUT/a$r.db" "$OUT/b$r.db" <<'EOF'
import sqlite3, sys
rows = [sqlite3.connect(p).execute("SELECT arch, reward FROM trials ORDER BY id").fetchall() for p in sys.argv[1:]]
print("yes" if rows[0] == rows[1] else f"no ({len(rows[0])} vs {len(rows[1])} trials)")
EOF
)
  python3 -c "import sys; a=float(sys.argv[2])-float(sys.argv[1]); b=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[4]:<5} {a:>10.1f} {b:>10.1f} {b/a:>8.3f} {sys.argv[5]}')" "$t0" "$t1" "$t2" "$r" "$same"
done
