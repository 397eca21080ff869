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
