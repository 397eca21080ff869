"""Summary of scripts/oracle_bound.sh: oracle_bound_report.py ROWS.jsonl DIR "SEEDS" [REF [K]]

The oracle search knows the best architecture from the start and trains it again and
again, from scratch with fresh seeds, until an evaluation reaches vanilla PPO's final
best of the same seed (REF, default ppo, the stores of scripts/search_comparison.sh in
DIR). Its cost to reach is the number of trainings needed times the images of one
training; vanilla PPO's own cost to reach over the oracle's is the largest reach ratio
any search can get on this proxy while training from scratch (the bound of the issue's
measure). The oracle uses, per seed, the architecture of ROWS with the highest chance to
reach the threshold.

Per architecture: its fresh-seed evaluations (mean, std, range). Per seed: PPO's final
best and its cost to reach it, then for the oracle the chance p of one training to reach
it (the share of the fresh evaluations that do, and from a normal fit), the expected
cost (images / p) and the median cost, and the bound = PPO's cost / the oracle's. The
same for the mean of the 5 best rewards (Monte Carlo from the fresh evaluations,
resampled, and from the normal fit).

With K > 1 (REF a search with `--reward-seeds K`, e.g. ppo-r2) one oracle evaluation is
the mean of K trainings: every K-subset of an architecture's fresh evaluations is one
possible evaluation, and one evaluation costs what a child of REF costs.
"""
import itertools, json, math, os, random, statistics as st, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_comparison_report import load, reach, top_curve  # noqa: E402


def normal_tail(x, mu, sd):
    """P(X >= x) for X ~ N(mu, sd)."""
    return 0.5 * math.erfc((x - mu) / (sd * math.sqrt(2)))


def median_draws(p):
    """Median number of independent draws until the first success of chance p."""
    if p <= 0:
        return math.inf
    if p >= 1:
        return 1
    return max(1, math.ceil(math.log(0.5) / math.log(1 - p)))


def top5_draws(draw, target, rng, runs=4000, cap=2000):
    """Mean and median number of draws until the mean of the 5 best >= target."""
    counts = []
    for _ in range(runs):
        top, n = [], 0
        while n < cap:
            n += 1
            top = sorted(top + [draw(rng)], reverse=True)[:5]
            if len(top) == 5 and sum(top) / 5 >= target:
                break
        counts.append(n)
    return st.mean(counts), st.median(counts)


def fmt_cost(images):
    return "never" if math.isinf(images) else f"{images:,.0f}"


def main():
    rows_file, d, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split()
    ref = sys.argv[4] if len(sys.argv) > 4 else "ppo"
    k = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    archs = {}
    with open(rows_file) as fh:
        for line in fh:
            r = json.loads(line)
            archs.setdefault(r["rank"], {"arch": r["arch"], "vals": []})["vals"].append(r["val"])
    if k > 1:
        for a in archs.values():
            a["vals"] = [sum(c) / k for c in itertools.combinations(a["vals"], k)]
    what = "evaluations" if k == 1 else f"evaluations as means of {k} trainings (every {k}-subset of the fresh seeds)"
    print(f"fresh-seed {what} (fashion-mnist-small, from scratch) of the {len(archs)} architectures with the best retrained means")
    print("rank  evaluations    mean    std     min     max")
    for k in sorted(archs):
        v = archs[k]["vals"]
        print(f"{k:>4}  {len(v):>11}  {st.mean(v):.4f}  {st.stdev(v):.4f}  {min(v):.4f}  {max(v):.4f}")
    rng = random.Random(1)
    ratios = {"empirical": [], "normal": [], "top5 resampled": [], "top5 normal": []}
    print()
    print(f"per seed: {ref}'s final best and its cost to reach it (images); the oracle's chance p per training, expected / median cost, bound = {ref}'s cost / the oracle's expected cost")
    for s in seeds:
        p = load(d, ref, s)
        images = st.median(t["cost"]["images"] for t in p["show"]["trials"] if t["source"] == "evaluated")
        target, own = p["best"], reach(p["curve"], p["best"])
        best_emp = max(archs, key=lambda k: sum(v >= target for v in archs[k]["vals"]) / len(archs[k]["vals"]))
        v = archs[best_emp]["vals"]
        p_emp = sum(x >= target for x in v) / len(v)
        best_norm = max(archs, key=lambda k: normal_tail(target, st.mean(archs[k]["vals"]), st.stdev(archs[k]["vals"])))
        vn = archs[best_norm]["vals"]
        p_norm = normal_tail(target, st.mean(vn), st.stdev(vn))
        e_emp = images / p_emp if p_emp > 0 else math.inf
        e_norm = images / p_norm
        ratios["empirical"].append(own / e_emp)
        ratios["normal"].append(own / e_norm)
        print(f"seed {s}: {ref} best {target:.4f} reached after {own:,} images ({images:.0f} per child)")
        print(f"  one best:  empirical (rank {best_emp}) p = {p_emp:.3f}, expected {fmt_cost(e_emp)}, median {fmt_cost(images * median_draws(p_emp))}, bound {own / e_emp:.1f}x")
        print(f"             normal fit (rank {best_norm}) p = {p_norm:.3f}, expected {fmt_cost(e_norm)}, median {fmt_cost(images * median_draws(p_norm))}, bound {own / e_norm:.1f}x")
        curve5 = top_curve(p["show"])
        target5 = curve5[-1][1]
        own5 = next(sp for sp, m in curve5 if m is not None and m >= target5)
        best5 = max(archs, key=lambda k: st.mean(archs[k]["vals"]))
        v5 = archs[best5]["vals"]
        mu, sd = st.mean(v5), st.stdev(v5)
        m_res, med_res = top5_draws(lambda r: r.choice(v5), target5, rng)
        m_nor, med_nor = top5_draws(lambda r: r.gauss(mu, sd), target5, rng)
        ratios["top5 resampled"].append(own5 / (images * m_res))
        ratios["top5 normal"].append(own5 / (images * m_nor))
        print(f"  top-5:     {ref} mean of its 5 best {target5:.4f} reached after {own5:,} images; oracle (rank {best5}, the best mean)")
        print(f"             resampled: expected {images * m_res:,.0f}, median {images * med_res:,.0f}, bound {own5 / (images * m_res):.1f}x;"
              f" normal fit: expected {images * m_nor:,.0f}, median {images * med_nor:,.0f}, bound {own5 / (images * m_nor):.1f}x")
    print()
    print("bound on any from-scratch search's reach ratio, median over the seeds [min, max]")
    for k, r in ratios.items():
        print(f"  {k:<15} {st.median(r):.1f} [{min(r):.1f}, {max(r):.1f}]")


if __name__ == "__main__":
    main()
