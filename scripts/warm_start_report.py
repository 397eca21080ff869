"""Summary of the warm-start study: scripts/warm_start_report.py WARM_ROWS PROXY_STUDY_ROWS."""
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ranking import spearman  # noqa: E402
warm = {r["seed"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
study = {}
for r in (json.loads(l) for l in open(sys.argv[2]) if l.strip()):
    study.setdefault(r["seed"], {})[r["task"]] = r
seeds = sorted(s for s in warm if s in study and len(study[s]) == 2)
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
