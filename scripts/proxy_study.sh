#!/usr/bin/env bash
# Does the proxy rank architectures usefully? Trains N random architectures of mnas-28
# (seeds 1..N) with the default proxy (`fashion-mnist`) and with 5x its training
# (`fashion-mnist-long`), two trainings at a time (one thread each), and prints the
# Spearman correlation of the two validation accuracies. Results: $OUT/proxy-study.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-docs/results}
export FNAS=${FNAS:-target/release/fnas}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
mkdir -p "$OUT"
rows="$OUT/proxy-study.jsonl"
: > "$rows"
start=$(date +%s)
for k in $(seq 1 "$N"); do for task in fashion-mnist fashion-mnist-long; do echo "$k $task"; done; done |
  xargs -P "$JOBS" -L 1 sh -c '"$FNAS" train --arch random:$0 --task $1 --latency-runs 5 --json 2>/dev/null | tail -1 | sed "s/^{/{\"seed\":$0,/" >> '"$rows"
python3 - "$rows" <<'PY'
import json, sys
sys.path.insert(0, "scripts")
from ranking import spearman
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["seed"], {})[r["task"]] = r
pairs = [(v["fashion-mnist"]["val_accuracy"], v["fashion-mnist-long"]["val_accuracy"], v["fashion-mnist"]["cost"]["wall_seconds"])
         for v in by.values() if len(v) == 2]
rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
n = len(pairs)
secs = sorted(p[2] for p in pairs)
print(f"architectures: {n}; Spearman(proxy val acc, 5x-proxy val acc) = {rho:.3f}")
print(f"proxy wall seconds per child: median {secs[n // 2]:.1f}, min {secs[0]:.1f}, max {secs[-1]:.1f}")
PY
echo "proxy study: $(( $(date +%s) - start )) s"
