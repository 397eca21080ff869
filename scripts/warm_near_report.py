"""Summary of the near-neighbour warm-start study: scripts/warm_near_report.py ROWS."""
import json
import statistics
import sys

by = {}
for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip()):
    by.setdefault(r["seed"], {})[r["mode"]] = r
pairs = []
for k, v in sorted(by.items()):
    if "warm" in v and "scratch" in v:
        w, s = v["warm"], v["scratch"]
        pairs.append((w.get("pool_distance") or 0.0, w["val_accuracy"] - s["val_accuracy"], k,
                      w["val_accuracy"], s["val_accuracy"], w["cost"]["images"], s["cost"]["images"]))
if not pairs:
    sys.exit("no complete warm/scratch pairs yet")
n = len(pairs)
d = sorted(p[1] for p in pairs)
print(f"neighbours: {n} (warm start vs full proxy from scratch, same architecture; images per child below)")
print(f"val accuracy: warm mean {statistics.mean(p[3] for p in pairs):.4f}, scratch mean {statistics.mean(p[4] for p in pairs):.4f}")
print(f"difference warm - scratch: mean {statistics.mean(d):+.4f}, median {statistics.median(d):+.4f}, "
      f"min {d[0]:+.4f}, max {d[-1]:+.4f}; warm at least as good on {sum(x >= 0 for x in d)}/{n}")
print(f"training images per child: warm {statistics.mean(p[5] for p in pairs):.0f}, scratch {statistics.mean(p[6] for p in pairs):.0f}")
print("per neighbour (sorted by mean block distance to its pool sources):")
for dist, delta, k, w, s, _, _ in sorted(pairs):
    print(f"  #{k:<3} distance {dist:.2f}  warm {w:.4f}  scratch {s:.4f}  diff {delta * 100:+.1f} points")
