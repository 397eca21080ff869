"""Summary of scripts/search_comparison.sh: search_comparison_report.py DIR "SEEDS" "VARIANTS" BUDGET [REF].

REF (default ppo) is the variant the reach ratios are measured against; it must be in
VARIANTS. E.g. REF=fnas-nopool with VARIANTS="fnas-nopool fnas" measures the pool alone.

Per variant and seed: the best evaluated reward, children trained / warm-started /
trusted, and the training images until the best evaluated reward reached vanilla PPO's
final best of the same seed. Ratio = PPO's images to reach its own final best / the
variant's (> 1: the variant gets there with less training; 0: never reached).
Then the best-so-far curves at equal training: each variant's best evaluated reward
after 25/50/75/100% of the budget, median over the seeds (the reach ratio alone is 1 by
construction when PPO's best child comes early and every variant samples it too), the
mean of the 5 best (less noisy than the single best), how soon each variant's proposals
are on average as good as vanilla PPO's last ones (the mean reward of the last 32
proposals, a trusted one at the critic's prediction: the controller's reward curve, which
averages out most of the training noise that decides the single best; a search that
trains every child from scratch needs 32 children for it, which caps its ratio at PPO's
reach over 32 children's images), and the mean reward of the children
trained in each quarter of the budget (how good the controller's samples became; with
the critic's gate on, the trained ones exclude the confidently poor proposals). Last,
the share of proposals the critic trusted per quarter, the share of trained children
warm-started from the pool per quarter, and how many of the children
trained in the last quarter the gate had to train because the critic thought they might
beat the best so far (why the trusted share falls as the controller improves), and how
well the critic ranked the children it predicted before they were trained (Spearman of
predicted mean against evaluated reward, in each half of the budget: what the gate and
--screen can do is bounded by it).
"""
import json, os, sys, statistics as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ranking  # noqa: E402



def trials(show):
    """(images spent so far, trial) after each trial of `fnas show --json`."""
    spent = 0
    for t in sorted(show["trials"], key=lambda t: t["id"]):
        spent += t["cost"]["images"]
        yield spent, t


def walk(show):
    """(images spent so far, evaluated reward or None) after each trial."""
    for spent, t in trials(show):
        yield spent, t["reward"] if t["source"] == "evaluated" else None


def quarter(spent, budget):
    """Which quarter of the budget (0-3) a trial falls in, by the images spent after it."""
    return max(0, min(3, int(4 * (spent - 1) / budget)))


def best_curve(show):
    """(images spent, best evaluated reward so far) after each trial."""
    curve, spent, best = [], 0, None
    for spent, r in walk(show):
        if r is not None:
            best = r if best is None else max(best, r)
        curve.append((spent, best))
    return curve, spent, best


def top_curve(show, k=5):
    """(images spent, mean of the k best evaluated rewards so far, None before k) after
    each trial: less noisy than the single best (one validation accuracy has a standard
    error of about a point at 2,000 images)."""
    curve, rewards = [], []
    for spent, r in walk(show):
        if r is not None:
            rewards.append(r)
        top = sorted(rewards, reverse=True)[:k]
        curve.append((spent, sum(top) / k if len(top) == k else None))
    return curve


def load(d, v, s):
    show = json.load(open(f"{d}/{v}-s{s}.show.json"))
    res = json.load(open(f"{d}/{v}-s{s}.json"))
    curve, spent, best = best_curve(show)
    b = res.get("best") or {}
    m = b.get("metrics") or {}
    return dict(
        show=show, curve=curve, top=top_curve(show), samples=sample_curve(show), spent=spent, best=best,
        trained=sum(t["source"] == "evaluated" for t in show["trials"]),
        trusted=sum(t["source"] == "critic" for t in show["trials"]),
        warm=sum(1 for t in show["trials"] if t.get("warm_start") == 1.0),
        test=res.get("best_test_accuracy"), lat=m.get("latency_ms"))


SAMPLE_WINDOW = 32  # proposals averaged by reach-avg


def sample_curve(show, window=SAMPLE_WINDOW):
    """(images spent, mean reward of the last `window` new proposals, None before) after
    each trial: how good the controller's samples are (the reward curve RL-NAS papers
    plot), with a trusted proposal counted at the critic's prediction so the gate's
    choice of what to train does not lift the mean. Averaging over proposals cancels
    most of the training noise that decides the single best reward."""
    curve, values = [], []
    for spent, t in trials(show):
        if t["source"] == "evaluated" and t["reward"] is not None:
            values.append(t["reward"])
        elif t["source"] == "critic" and t.get("prediction"):
            values.append(t["prediction"]["mean"])
        last = values[-window:]
        curve.append((spent, sum(last) / window if len(last) == window else None))
    return curve


def reach(curve, target):
    for spent, best in curve:
        if best is not None and best >= target - 1e-12:
            return spent
    return None


def quarter_means(show, budget):
    """Mean evaluated reward of the children trained in each quarter of the budget (with
    the critic's gate on, the trained ones are the less predictably poor proposals)."""
    q = [[], [], [], []]
    for spent, r in walk(show):
        if r is not None:
            q[quarter(spent, budget)].append(r)
    return [sum(x) / len(x) if x else None for x in q]


def quarter_share(show, budget, counted, hit):
    """Per quarter of the budget: the share of the `counted` trials that are a `hit`."""
    q = [[0, 0], [0, 0], [0, 0], [0, 0]]
    for spent, t in trials(show):
        if counted(t):
            c = q[quarter(spent, budget)]
            c[0] += hit(t)
            c[1] += 1
    return [a / n if n else None for a, n in q]


def quarter_trusted(show, budget):
    """Share of the proposals the critic trusted (not trained) in each quarter of the
    budget: the gate never trusts a proposal that might beat the best so far, so the
    share falls as the controller's proposals near the best."""
    return quarter_share(show, budget, lambda t: t["source"] in ("evaluated", "critic"),
                         lambda t: t["source"] == "critic")


def quarter_warm(show, budget):
    """Share of the trained children warm-started from the knowledge pool in each quarter
    of the budget: a child is warm-started only when a stored network is near, so the
    share grows as the controller's samples concentrate."""
    return quarter_share(show, budget, lambda t: t["source"] == "evaluated",
                         lambda t: t.get("warm_start") == 1.0)


def contenders(show, budget):
    """(trained in the last quarter of the budget with a critic prediction, of them those
    the gate had to train because mean + 2 std >= the best evaluated reward so far)."""
    best, n, hi = None, 0, 0
    for spent, t in trials(show):
        p = t.get("prediction")
        if t["source"] == "evaluated" and p and spent > 0.75 * budget:
            n += 1
            hi += best is not None and p["mean"] + 2 * p["std"] >= best
        if t["source"] == "evaluated" and t["reward"] is not None:
            best = t["reward"] if best is None else max(best, t["reward"])
    return n, hi


def spearman(a, b):
    """Spearman's rank correlation (None with fewer than 5 pairs or a constant side)."""
    if len(a) < 5 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return ranking.spearman(a, b)


def critic_ranking(show, budget):
    """Spearman of the critic's predicted mean against the evaluated reward of the
    children it predicted and that were then trained, in the first and second half of
    the budget (by the images spent after each)."""
    halves = ([], [])
    for spent, t in trials(show):
        p = t.get("prediction")
        if t["source"] == "evaluated" and p and t["reward"] is not None:
            halves[spent > budget / 2].append((p["mean"], t["reward"]))
    return [spearman([x for x, _ in h], [y for _, y in h]) for h in halves], [len(h) for h in halves]


def best_at(curve, images):
    """The best evaluated reward once `images` training images have been spent."""
    best = None
    for spent, b in curve:
        if spent > images:
            break
        best = b
    return best


def fmt(xs, p):
    return " ".join("-" if x is None else f"{x:.{p}f}" for x in xs)


def main():
    d, seeds, variants, budget = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
    ref = sys.argv[5] if len(sys.argv) > 5 else "ppo"
    if ref not in variants:
        sys.exit(f"reference variant {ref} is not in VARIANTS ({' '.join(variants)})")
    name = "vanilla PPO" if ref == "ppo" else ref
    runs = {(v, s): load(d, v, s) for v in variants for s in seeds}
    print(f"{budget} training images per search (the last batch may go past it), seeds {' '.join(seeds)}; reward = validation accuracy")
    print(f"reach = training images until the best evaluated reward >= {name}'s final best (same seed); ratio = {name}'s reach / the variant's (0 = never)")
    print(f"{'variant':<14} {'best val per seed':<21} {'images spent':<20} {'trained':>7} {'warm':>5} {'trusted':>7}  {'reach per seed':<20} {'ratio median [min,max]':<22} {'test acc of best':<21} latency ms of best")
    for v in variants:
        r = [runs[(v, s)] for s in seeds]
        reached, ratios = [], []
        for s in seeds:
            p = runs[(ref, s)]
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

    fractions = (0.25, 0.5, 0.75, 1.0)

    def table(title, cell):
        print(f"{title}, median over the seeds [min, max]")
        print(f"{'variant':<14} " + " ".join(f"{f'{int(f * 100)}% ({int(f * budget)})':<26}" for f in fractions))
        for v in variants:
            cells = []
            for i, f in enumerate(fractions):
                xs = sorted(x for x in (cell(runs[(v, s)], i, f) for s in seeds) if x is not None)
                cells.append(f"{st.median(xs):.4f} [{xs[0]:.4f}, {xs[-1]:.4f}]" if xs else "-")
            print(f"{v:<14} " + " ".join(f"{c:<26}" for c in cells))

    table("best evaluated reward after a share of the budget", lambda r, i, f: best_at(r["curve"], f * budget))
    table("mean of the 5 best evaluated rewards after a share of the budget", lambda r, i, f: best_at(r["top"], f * budget))
    def reach_of(key):
        """Per variant: the images until its `key` curve reaches REF's final value (same
        seed), REF's own images over them (0 = never), and the variant's final value."""
        for v in variants:
            reached, ratios, finals = [], [], []
            for s in seeds:
                p = runs[(ref, s)][key]
                target = p[-1][1] if p else None
                c = reach(runs[(v, s)][key], target) if target is not None else None
                reached.append(c)
                ratios.append(reach(p, target) / c if c else 0.0)
                finals.append(runs[(v, s)][key][-1][1])
            yield v, " ".join("-" if c is None else str(c) for c in reached), sorted(ratios), finals

    print(f"reach5 = training images until the mean of the 5 best evaluated rewards >= {name}'s final one (same seed); ratio = {name}'s reach5 / the variant's (0 = never)")
    for v, reached, q, _ in reach_of("top"):
        print(f"{v:<14} reach5 per seed {reached:<24} ratio median {st.median(q):.2f} [{q[0]:.2f}, {q[-1]:.2f}]")
    window = SAMPLE_WINDOW
    print(f"reach-avg = training images until the mean reward of the last {window} new proposals (evaluated reward, or the critic's prediction when trusted)"
          f" >= {name}'s final one (same seed): how soon the controller samples as well as {name} does at the end; ratio = {name}'s reach-avg / the variant's (0 = never)")
    for v, reached, q, finals in reach_of("samples"):
        print(f"{v:<14} final avg {fmt(finals, 4):<21} reach-avg per seed {reached:<24} ratio median {st.median(q):.2f} [{q[0]:.2f}, {q[-1]:.2f}]")
    table("mean evaluated reward of the children trained in each quarter of the budget (up to the share shown)",
          lambda r, i, f: quarter_means(r["show"], budget)[i])
    table("share of the new proposals trusted by the critic (not trained) in each quarter of the budget",
          lambda r, i, f: quarter_trusted(r["show"], budget)[i])
    table("share of the trained children warm-started from the knowledge pool in each quarter of the budget",
          lambda r, i, f: quarter_warm(r["show"], budget)[i])
    print("children trained in the last quarter with a critic prediction: how many the critic thought might beat the best so far (mean + 2 std >= best), per seed")
    for v in variants:
        c = [contenders(runs[(v, s)]["show"], budget) for s in seeds]
        if any(n for n, _ in c):
            print(f"{v:<14} " + "  ".join(f"{hi}/{n}" for n, hi in c))
    print("the critic's ranking of the children it predicted and that were then trained: Spearman (predicted mean, evaluated reward), first half / second half of the budget (children), per seed")
    for v in variants:
        c = [critic_ranking(runs[(v, s)]["show"], budget) for s in seeds]
        if any(sum(n) for _, n in c):
            print(f"{v:<14} " + "  ".join(
                " / ".join("-" if x is None else f"{x:.2f}" for x in rho) + f" ({n[0]}, {n[1]})" for rho, n in c))


if __name__ == "__main__":
    main()
