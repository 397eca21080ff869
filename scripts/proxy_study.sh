#!/usr/bin/env bash
# Does the proxy rank architectures usefully? Trains N random architectures of mnas-28
# (seeds 1..N) with the default proxy (`fashion-mnist`) and with 5x its training
# (`fashion-mnist-long`), two trainings at a time (one thread each), and prints the
# Spearman correlation of the two validation accuracies. Results: $OUT/proxy-study.jsonl.
#
# LONG_SEEDS="1 2": additionally trains the 5x recipe with these training seeds (weight
# init and data order; the first run used seed 0) into $OUT/proxy-study-long-seeds.jsonl,
# keeping the existing rows, so the ground truth can be the mean over training seeds
# (one 5x training of a network varies by about as much as the networks differ).
# REPORT_ONLY=1 prints the report of the existing rows.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-docs/results}
export FNAS=${FNAS:-target/release/fnas}
mkdir -p "$OUT"
rows="$OUT/proxy-study.jsonl"
extra="$OUT/proxy-study-long-seeds.jsonl"
start=$(date +%s)
if [ -z "${REPORT_ONLY:-}" ]; then
    [ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
    if [ -n "${LONG_SEEDS:-}" ]; then
        touch "$extra"
        for s in $LONG_SEEDS; do for k in $(seq 1 "$N"); do echo "$k $s"; done; done |
          xargs -P "$JOBS" -L 1 sh -c '"$FNAS" train --arch random:$0 --task fashion-mnist-long --seed $1 --latency-runs 5 --json 2>/dev/null | tail -1 | sed "s/^{/{\"seed\":$0,\"train_seed\":$1,/" >> '"$extra"
    else
        : > "$rows"
        for k in $(seq 1 "$N"); do for task in fashion-mnist fashion-mnist-long; do echo "$k $task"; done; done |
          xargs -P "$JOBS" -L 1 sh -c '"$FNAS" train --arch random:$0 --task $1 --latency-runs 5 --json 2>/dev/null | tail -1 | sed "s/^{/{\"seed\":$0,/" >> '"$rows"
    fi
fi
python3 - "$rows" "$extra" "$OUT/proxy-study-3k.jsonl" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, "scripts")
from ranking import spearman
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["seed"], {})[r["task"]] = r
pairs = [(v["fashion-mnist"]["val_accuracy"], v["fashion-mnist-long"]["val_accuracy"], v["fashion-mnist"]["cost"]["wall_seconds"], k)
         for k, v in sorted(by.items()) if len(v) == 2]
rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
n = len(pairs)
secs = sorted(p[2] for p in pairs)
print(f"architectures: {n}; Spearman(proxy val acc, 5x-proxy val acc) = {rho:.3f} (5x: training seed 0)")
print(f"proxy wall seconds per child: median {secs[n // 2]:.1f}, min {secs[0]:.1f}, max {secs[-1]:.1f} (two trainings at a time)")
cpu = sorted(v["fashion-mnist"]["cost"]["cpu_seconds"] for v in by.values() if len(v) == 2)
print(f"proxy CPU seconds per child: median {statistics.median(cpu):.1f}, min {cpu[0]:.1f}, max {cpu[-1]:.1f}")
extra = [json.loads(l) for l in open(sys.argv[2]) if l.strip()] if os.path.exists(sys.argv[2]) else []
if extra:
    longs = {p[3]: [p[1]] for p in pairs}
    for r in extra:
        if r["seed"] in longs:
            longs[r["seed"]].append(r["val_accuracy"])
    full = [p for p in pairs if len(longs[p[3]]) == max(len(v) for v in longs.values())]
    k = len(longs[full[0][3]])
    mean_long = [statistics.mean(longs[p[3]]) for p in full]
    rho_mean = spearman([p[0] for p in full], mean_long)
    # how much one 5x training varies: mean |seed a - seed b| over the architectures
    spread = statistics.mean(max(longs[p[3]]) - min(longs[p[3]]) for p in full)
    print(f"5x ground truth as the mean over {k} training seeds ({len(full)} architectures): "
          f"Spearman(proxy val acc, mean 5x val acc) = {rho_mean:.3f}")
    for s in range(k):
        rs = spearman([p[0] for p in full], [longs[p[3]][s] for p in full])
        print(f"  against training seed #{s} alone: {rs:.3f}")
    print(f"  5x val accuracy, max - min over the seeds, mean over architectures: {spread * 100:.2f} points")
# the earlier default proxy (fashion-mnist-3k, then named fashion-mnist) on the same
# architectures: how much of the figure is the proxy and how much the ground truth. Each
# ground truth is the mean over the 5x training seeds on record for it.
def truth(rows_by, extra_path):
    t = {k: [v["fashion-mnist-long"]["val_accuracy"]] for k, v in rows_by.items() if len(v) == 2}
    if os.path.exists(extra_path):
        for l in open(extra_path):
            if l.strip():
                r = json.loads(l)
                if r["seed"] in t:
                    t[r["seed"]].append(r["val_accuracy"])
    return {k: statistics.mean(v) for k, v in t.items()}, max(len(v) for v in t.values())
if os.path.exists(sys.argv[3]):
    old = {}
    for l in open(sys.argv[3]):
        if l.strip():
            r = json.loads(l)
            old.setdefault(r["seed"], {})[r["task"]] = r
    ks = [p[3] for p in pairs if len(old.get(p[3], {})) == 2]
    if ks:
        new_t, new_n = truth(by, sys.argv[2])
        old_t, old_n = truth(old, sys.argv[3].replace(".jsonl", "-long-seeds.jsonl"))
        new_p = {p[3]: p[0] for p in pairs}
        op = [old[k]["fashion-mnist"]["val_accuracy"] for k in ks]
        np_ = [new_p[k] for k in ks]
        ot = [old_t[k] for k in ks]
        nt = [new_t[k] for k in ks]
        ratio = sorted(by[k]["fashion-mnist"]["cost"]["cpu_seconds"] / old[k]["fashion-mnist"]["cost"]["cpu_seconds"] for k in ks)
        print(f"earlier proxy (3,000 images, batch 64; {os.path.basename(sys.argv[3])}), {len(ks)} architectures;")
        print(f"ground truths: this 5x (mean of {new_n} seeds), the earlier 5x (mean of {old_n} seeds):")
        print(f"  this proxy    vs this 5x {spearman(np_, nt):.3f}, vs the earlier 5x {spearman(np_, ot):.3f}")
        print(f"  earlier proxy vs this 5x {spearman(op, nt):.3f}, vs the earlier 5x {spearman(op, ot):.3f}")
        print(f"  the two 5x recipes vs each other {spearman(nt, ot):.3f}")
        print(f"  CPU seconds per child, this proxy / the earlier one: median {statistics.median(ratio):.2f} [{ratio[0]:.2f}, {ratio[-1]:.2f}]")
PY
echo "proxy study: $(( $(date +%s) - start )) s"
