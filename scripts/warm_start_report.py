"""Summary of the warm-start study: scripts/warm_start_report.py WARM_ROWS PROXY_STUDY_ROWS."""
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
