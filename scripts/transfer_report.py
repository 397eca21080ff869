"""Summary of the transfer runs of scripts/search_comparison.sh: transfer_report.py DIR "SEEDS" BUDGET."""
import json
import os
import statistics as st
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_comparison_report import best_curve, reach  # noqa: E402

d, seeds, budget = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
print(f"transfer fashion-mnist-small -> fashion-mnist-small-tops, full FNAS, budget {budget} images, seeds {' '.join(seeds)}")
print("cost to reach = images until the best evaluated reward >= the no-transfer search's final best (same seed);")
print("ratio = the no-transfer search's own cost to reach it / the transfer search's (0 = not reached)")

ratios = []
for s in seeds:
    cw, sw, bw = best_curve(json.load(open(f"{d}/tops-without-s{s}.show.json")))
    ct, _, bt = best_curve(json.load(open(f"{d}/tops-with-s{s}.show.json")))
    own, got = reach(cw, bw), reach(ct, bw)
    ratio = own / got if got else 0.0
    ratios.append(ratio)
    print(f"seed {s}: without transfer best {bw:.4f}, found after {own} of {sw} images; with transfer best {bt:.4f}, reaches {bw:.4f} after {got} images; ratio {ratio:.2f}")
r = sorted(ratios)
print(f"ratio without/with: median {st.median(r):.2f} [{r[0]:.2f}, {r[-1]:.2f}] (0 = not reached)")

# Architectures trained in both searches of a seed (the two controllers start alike, so
# the first proposals coincide): the transfer search's warm-started copy against the
# no-transfer search's from-scratch one, same architecture, same training seed.
diffs = []
for s in seeds:
    without = json.load(open(f"{d}/tops-without-s{s}.show.json"))["trials"]
    scratch = {t["arch"]: t["reward"] for t in without if t["source"] == "evaluated"}
    for t in json.load(open(f"{d}/tops-with-s{s}.show.json"))["trials"]:
        if t["source"] == "evaluated" and t.get("warm_start") == 1.0 and t["arch"] in scratch:
            diffs.append(100 * (t["reward"] - scratch[t["arch"]]))
if diffs:
    print(f"same architecture in both searches, warm-started with transfer vs from scratch without: {len(diffs)} pairs, "
          f"difference mean {st.mean(diffs):+.2f} points, median {st.median(diffs):+.2f} [{min(diffs):+.1f}, {max(diffs):+.1f}], "
          f"warm at least as good on {sum(x >= 0 for x in diffs)}/{len(diffs)}")
else:
    print("same architecture in both searches, warm-started with transfer: none")
