#!/usr/bin/env bash
# Warm-start study: is a child initialised from the knowledge pool and trained HALF the
# proxy's epochs as good as the full proxy from scratch?
#  1. fills a fresh pool with N other random mnas-28 architectures (seeds 101..100+N),
#     each trained with the full `fashion-mnist` proxy from scratch;
#  2. trains the architectures of seeds 1..N from that pool with half the epochs
#     (`fnas train --pool STORE --warm-start`, 1 epoch instead of 2);
#  3. compares them with the rows of scripts/proxy_study.sh (same seeds, same validation
#     images): the full proxy from scratch and 5x the proxy's training.
# Results: $OUT/warm-start-study.jsonl; the summary is printed.
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
rows="$OUT/warm-start-study.jsonl"
: > "$rows"
start=$(date +%s)
train_pool() { "$FNAS" train --arch "random:$1" --task fashion-mnist --pool "$STORE" --pool-experiment warm-study-pool --latency-runs 5 --json 2>/dev/null | tail -1 > /dev/null; }
export -f train_pool
# the first one alone creates the store; the rest in parallel
train_pool 101
seq 102 $((100 + N)) | xargs -P "$JOBS" -I{} bash -c 'train_pool {}'
echo "pool filled with $N networks: $(( $(date +%s) - start )) s"
seq 1 "$N" | xargs -P "$JOBS" -I{} bash -c '"$FNAS" train --arch random:{} --task fashion-mnist --pool "$STORE" --warm-start --pool-experiment warm-study --latency-runs 5 --json 2>/dev/null | tail -1 | sed "s/^{/{\"seed\":{},/" >> '"$rows"
python3 - "$rows" "$OUT/proxy-study.jsonl" <<'PY'
import json, sys
warm = {r["seed"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
study = {}
for r in (json.loads(l) for l in open(sys.argv[2]) if l.strip()):
    study.setdefault(r["seed"], {})[r["task"]] = r
seeds = sorted(s for s in warm if s in study and len(study[s]) == 2)
def ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i]); r = [0.0] * len(x); i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]: j += 1
        for t in range(i, j + 1): r[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return r
def spearman(a, b):
    a, b = ranks(a), ranks(b); n = len(a); ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5
w = [warm[s]["val_accuracy"] for s in seeds]
p = [study[s]["fashion-mnist"]["val_accuracy"] for s in seeds]
l = [study[s]["fashion-mnist-long"]["val_accuracy"] for s in seeds]
d = sorted(x - y for x, y in zip(w, p))
n = len(seeds)
wi = sum(warm[s]["cost"]["images"] for s in seeds) / n
pi = sum(study[s]["fashion-mnist"]["cost"]["images"] for s in seeds) / n
print(f"architectures: {n}")
print(f"val accuracy, warm start + half proxy: mean {sum(w)/n:.4f}; full proxy from scratch: mean {sum(p)/n:.4f}")
print(f"difference warm - scratch: mean {sum(d)/n:+.4f}, median {d[n//2]:+.4f}, min {d[0]:+.4f}, max {d[-1]:+.4f}; warm better on {sum(x > 0 for x in d)}/{n}")
print(f"Spearman with the 5x-proxy ranking: warm half proxy {spearman(w, l):.3f}, scratch full proxy {spearman(p, l):.3f}")
print(f"training images per child: warm {wi:.0f}, scratch {pi:.0f} (ratio {pi / wi:.2f}x less with warm start)")
print(f"mean pool hit ratio {sum(warm[s].get('pool_hit_ratio') or 0 for s in seeds)/n:.2f}, mean block distance {sum(warm[s].get('pool_distance') or 0 for s in seeds)/n:.2f}")
PY
echo "warm-start study: $(( $(date +%s) - start )) s"
