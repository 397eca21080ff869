"""Warm start vs scratch by distance to the pool sources, over several near-neighbour studies.

Usage: scripts/warm_distance_report.py ROWS.jsonl [ROWS.jsonl ...]
Each file is the output of scripts/warm_near_study.sh (rows with "seed", "mode" = warm |
scratch); pairs are matched by seed within a file. The pairs of all files are pooled and
binned by the warm run's mean block distance to its sources (the distance
`--warm-max-distance` limits), so the limit can be set where warm starts stop paying.
"""
import json
import statistics
import sys

BINS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, float("inf")]

pairs = []
for path in sys.argv[1:]:
    by = {}
    for r in (json.loads(l) for l in open(path) if l.strip()):
        by.setdefault(r["seed"], {})[r["mode"]] = r
    for v in by.values():
        if "warm" in v and "scratch" in v:
            w, s = v["warm"], v["scratch"]
            pairs.append((w.get("pool_distance") or 0.0, w["val_accuracy"] - s["val_accuracy"]))
if not pairs:
    sys.exit("no complete warm/scratch pairs in " + " ".join(sys.argv[1:]))

print(f"{len(pairs)} warm/scratch pairs from {len(sys.argv) - 1} file(s); diff = warm - scratch val accuracy, points")
print(f"{'distance':<12} {'n':>3} {'mean':>7} {'± s.e.':>7} {'median':>7} {'warm >= scratch':>16}")


def row(label, ds):
    if not ds:
        print(f"{label:<12} {0:>3}")
        return
    se = statistics.stdev(ds) / len(ds) ** 0.5 if len(ds) > 1 else float("nan")
    print(f"{label:<12} {len(ds):>3} {statistics.mean(ds) * 100:>+7.2f} {se * 100:>7.2f} "
          f"{statistics.median(ds) * 100:>+7.2f} {sum(x >= 0 for x in ds):>9}/{len(ds)}")


for lo, hi in zip(BINS, BINS[1:]):
    label = f"{lo:.1f}-{hi:.1f}" if hi != float("inf") else f">= {lo:.1f}"
    row(label, [d for dist, d in pairs if lo <= dist < hi])
for limit in (1.0, 1.5, 2.0):
    row(f"< {limit:.1f} (all)", [d for dist, d in pairs if dist < limit])
