"""Summary of scripts/search_comparison.sh: search_comparison_report.py DIR "SEEDS" "VARIANTS" BUDGET.

Per variant and seed: the best evaluated reward, children trained / warm-started /
trusted, and the training images until the best evaluated reward reached vanilla PPO's
final best of the same seed. Ratio = PPO's images to reach its own final best / the
variant's (> 1: the variant gets there with less training; 0: never reached).
"""
import json, sys, statistics as st



def best_curve(show):
    """(images spent, best evaluated reward so far) after each trial of `fnas show --json`."""
    curve, spent, best = [], 0, None
    for t in sorted(show["trials"], key=lambda t: t["id"]):
        spent += t["cost"]["images"]
        if t["source"] == "evaluated" and t["reward"] is not None:
            best = t["reward"] if best is None else max(best, t["reward"])
        curve.append((spent, best))
    return curve, spent, best


def load(d, v, s):
    show = json.load(open(f"{d}/{v}-s{s}.show.json"))
    res = json.load(open(f"{d}/{v}-s{s}.json"))
    curve, spent, best = best_curve(show)
    b = res.get("best") or {}
    m = b.get("metrics") or {}
    return dict(
        curve=curve, spent=spent, best=best,
        trained=sum(t["source"] == "evaluated" for t in show["trials"]),
        trusted=sum(t["source"] == "critic" for t in show["trials"]),
        warm=sum(1 for t in show["trials"] if t.get("warm_start") == 1.0),
        test=res.get("best_test_accuracy"), lat=m.get("latency_ms"))


def reach(curve, target):
    for spent, best in curve:
        if best is not None and best >= target - 1e-12:
            return spent
    return None


def fmt(xs, p):
    return " ".join("-" if x is None else f"{x:.{p}f}" for x in xs)


def main():
    d, seeds, variants, budget = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
    runs = {(v, s): load(d, v, s) for v in variants for s in seeds}
    print(f"{budget} training images per search (the last batch may go past it), seeds {' '.join(seeds)}; reward = validation accuracy")
    print("reach = training images until the best evaluated reward >= vanilla PPO's final best (same seed); ratio = PPO's reach / the variant's (0 = never)")
    print(f"{'variant':<14} {'best val per seed':<21} {'images spent':<20} {'trained':>7} {'warm':>5} {'trusted':>7}  {'reach per seed':<20} {'ratio median [min,max]':<22} {'test acc of best':<21} latency ms of best")
    for v in variants:
        r = [runs[(v, s)] for s in seeds]
        reached, ratios = [], []
        for s in seeds:
            p = runs[("ppo", s)]
            target = p["best"]
            c = reach(runs[(v, s)]["curve"], target) if target is not None else None
            reached.append(c)
            ratios.append(reach(p["curve"], target) / c if c else 0.0)
        q = sorted(ratios)
        n = len(seeds)
        print(f"{v:<14} {fmt([x['best'] for x in r], 4):<21} {' '.join(str(x['spent']) for x in r):<20} "
              f"{sum(x['trained'] for x in r) / n:>7.1f} {sum(x['warm'] for x in r) / n:>5.1f} {sum(x['trusted'] for x in r) / n:>7.1f}  "
              f"{' '.join('-' if c is None else str(c) for c in reached):<20} {st.median(q):.2f} [{q[0]:.2f}, {q[-1]:.2f}]{'':<6} "
              f"{fmt([x['test'] for x in r], 4):<21} {fmt([x['lat'] for x in r], 2)}")


if __name__ == "__main__":
    main()
