"""Summary of scripts/reward_noise_study.sh: reward_noise_report.py ROWS.jsonl [ROWS...].

Per experiment and pooled, over the retrained children: the training noise of one
evaluation (std of a child's evaluations around its own mean: the search's reward plus
one per retraining seed), the spread of the children's mean rewards, how well two single
evaluations agree on the ranking (Spearman, seed against seed), and how well the search's
own reward and the critic's prediction rank the children's mean over the retraining seeds
(the search's reward is left out of that mean, so both are scored against the same
independent measurement), and the mean of the search's reward minus the retrained mean
(> 0: the search's reward was luckier than the child; large for a search's best children).
A critic cannot rank better than the rewards it learns from
are reproducible: this is the ceiling of the gate and of --screen.
"""
import json, os, sys, statistics as st
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_comparison_report import spearman  # noqa: E402


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def summary(children):
    seeds = sorted({s for c in children for s in c["vals"]})
    a, b = seeds[0], seeds[1]
    both = [c for c in children if a in c["vals"] and b in c["vals"]]
    evals = [[c["reward"]] + [c["vals"][s] for s in seeds if s in c["vals"]] for c in both]
    noise = st.mean(st.variance(e) for e in evals) ** 0.5
    means = [st.mean(e) for e in evals]
    spread = st.stdev(means)
    retrained = [st.mean(c["vals"][s] for s in seeds if s in c["vals"]) for c in both]
    pred = [(c["prediction"]["mean"], r) for c, r in zip(both, retrained) if c["prediction"]]
    return {
        "retrained": st.mean(retrained),
        "gap": st.mean(c["reward"] - r for c, r in zip(both, retrained)),
        "n": len(both),
        "noise": noise,
        "spread": spread,
        "seed_vs_seed": spearman([c["vals"][a] for c in both], [c["vals"][b] for c in both]),
        "search_vs_retrained": spearman([c["reward"] for c in both], retrained),
        "critic_vs_retrained": spearman([p for p, _ in pred], [r for _, r in pred]),
        "critic_vs_search": spearman([c["prediction"]["mean"] for c in both if c["prediction"]],
                                     [c["reward"] for c in both if c["prediction"]]),
        "predicted": len(pred),
    }


def main():
    by = defaultdict(dict)
    for path in sys.argv[1:]:
        for line in open(path):
            r = json.loads(line)
            c = by[(r["exp"], r["id"])]
            c.update(exp=r["exp"], reward=r["reward"], prediction=r["prediction"])
            c.setdefault("vals", {})[r["seed"]] = r["val"]
    exps = sorted({c["exp"] for c in by.values()})
    print("children retrained from scratch with more seeds; noise = std of one child's evaluations (search + retrained) around their mean;")
    print("spread = std of the children's means; Spearman: the first two retraining seeds, and the search's reward / the critic's prediction vs the mean of the retraining seeds;")
    print("search-retrained = mean of (the search's reward - that mean); retrained = the mean over the children")
    print(f"{'experiment':<16} {'children':>8} {'noise':>7} {'spread':>7} {'seed~seed':>10} {'search~retrained':>17} {'critic~retrained':>17} {'critic~search':>14} {'search-retrained':>17} {'retrained':>10}")
    groups = [(e, [c for c in by.values() if c["exp"] == e]) for e in exps]
    groups.append(("pooled", list(by.values())))
    for name, cs in groups:
        s = summary(cs)
        print(f"{name:<16} {s['n']:>8} {s['noise']:>7.4f} {s['spread']:>7.4f} {fmt(s['seed_vs_seed']):>10} "
              f"{fmt(s['search_vs_retrained']):>17} {fmt(s['critic_vs_retrained']):>17} {fmt(s['critic_vs_search']):>14} {s['gap']:>+17.4f} {s['retrained']:>10.4f}")


if __name__ == "__main__":
    main()
