#!/usr/bin/env bash
# Search comparison on real training: vanilla PPO vs FNAS and its ablations, same budget
# in training images, several seeds. Children train on the smaller proxy
# `fashion-mnist-small` (1,000 train / 2,000 val images at 14x14, 2 epochs; a child
# warm-started from the knowledge pool trains 1 epoch). Reward = validation accuracy.
#
#   ppo            vanilla MnasNet-style PPO
#   fnas-nopool    FNAS without the pool (critic gate + value, replay)
#   fnas-nocritic  FNAS without the critic (replay + pool)
#   fnas-noreplay  FNAS without replay (critic gate + value + pool)
#   fnas           full FNAS
#
# Each search has its own store under $DIR (so pools never mix); JOBS searches run at
# once with one training worker each. Prints, per variant, the images each needs to reach
# the best reward vanilla PPO reaches with its whole budget (same seed), the ratio, and
# the test accuracy / latency of each search's best child. Results: $OUT/search-comparison.txt
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${TASK:-fashion-mnist-small}
BUDGET=${BUDGET:-70000}
SEEDS=${SEEDS:-"1 2 3"}
VARIANTS=${VARIANTS:-"ppo fnas-nopool fnas-nocritic fnas-noreplay fnas"}
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-docs/results}
DIR=${DIR:-$(mktemp -d)}
export FNAS=${FNAS:-target/release/fnas} TASK BUDGET DIR
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
mkdir -p "$OUT" "$DIR"
start=$(date +%s)
one() {
  local v=$1 s=$2 args
  case $v in
    ppo) args="--strategy ppo --pool off" ;;
    fnas-nopool) args="--strategy fnas --pool off" ;;
    fnas-nocritic) args="--strategy fnas-replay --pool on" ;;
    fnas-noreplay) args="--strategy fnas-gate --pool on" ;;
    fnas) args="--strategy fnas --pool on" ;;
    *) echo "unknown variant $v" >&2; return 1 ;;
  esac
  # shellcheck disable=SC2086
  "$FNAS" search --task "$TASK" $args --budget-images "$BUDGET" --seed "$s" --workers 1 \
    --store "$DIR/$v-s$s.db" --name "$v-s$s" --json 2>/dev/null | tail -1 > "$DIR/$v-s$s.json"
  "$FNAS" show "$v-s$s" --store "$DIR/$v-s$s.db" --json > "$DIR/$v-s$s.show.json"
  echo "$v seed $s done ($(( $(date +%s) - start0 )) s)"
}
export -f one
export start0=$start
for s in $SEEDS; do for v in $VARIANTS; do echo "$v $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'one "$0" "$1"'
python3 - "$DIR" "$SEEDS" "$VARIANTS" "$BUDGET" <<'PY' | tee "$OUT/search-comparison.txt"
import json, sys, statistics as st
d, seeds, variants, budget = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
def load(v, s):
    show = json.load(open(f"{d}/{v}-s{s}.show.json"))
    res = json.load(open(f"{d}/{v}-s{s}.json"))
    curve, spent, best = [], 0, None
    for t in sorted(show["trials"], key=lambda t: t["id"]):
        spent += t["cost"]["images"]
        if t["source"] == "evaluated" and t["reward"] is not None:
            best = t["reward"] if best is None else max(best, t["reward"])
        curve.append((spent, best))
    trained = sum(t["source"] == "evaluated" for t in show["trials"])
    trusted = sum(t["source"] == "critic" for t in show["trials"])
    warm = sum(1 for t in show["trials"] if t.get("warm_start") == 1.0)
    b = res.get("best") or {}
    m = b.get("metrics") or {}
    return dict(curve=curve, spent=spent, best=best, trained=trained, trusted=trusted, warm=warm,
                test=res.get("best_test_accuracy"), lat=m.get("latency_ms"))
runs = {(v, s): load(v, s) for v in variants for s in seeds}
def reach(curve, target):
    for spent, best in curve:
        if best is not None and best >= target - 1e-12:
            return spent
    return None
print(f"task fashion-mnist-small, budget {budget} training images per search, seeds {' '.join(seeds)}; reward = validation accuracy")
print("cost to reach = training images until the best evaluated reward >= vanilla PPO's final best (same seed)")
print(f"{'variant':<15} {'best val (per seed)':<26} {'trained':>8} {'warm':>6} {'trusted':>8} {'cost to reach (per seed)':<30} {'ratio PPO/variant: median [min, max]':<38} {'test acc of best':<22} {'latency ms of best'}")
for v in variants:
    ratios, reached = [], []
    for s in seeds:
        target = runs[("ppo", s)]["best"]
        c = reach(runs[(v, s)]["curve"], target) if target is not None else None
        reached.append("-" if c is None else str(c))
        ratios.append(runs[("ppo", s)]["spent"] / c if c else 0.0)
    r = runs
    fmt = lambda xs, p: " ".join("-" if x is None else f"{x:.{p}f}" for x in xs)
    rs = sorted(ratios)
    ratio = f"{st.median(rs):.2f} [{rs[0]:.2f}, {rs[-1]:.2f}]" + (" (0 = not reached)" if 0.0 in rs else "")
    print(f"{v:<15} {fmt([r[(v,s)]['best'] for s in seeds],4):<26} {sum(r[(v,s)]['trained'] for s in seeds)/len(seeds):>8.1f} {sum(r[(v,s)]['warm'] for s in seeds)/len(seeds):>6.1f} {sum(r[(v,s)]['trusted'] for s in seeds)/len(seeds):>8.1f} {' '.join(reached):<30} {ratio:<38} {fmt([r[(v,s)]['test'] for s in seeds],4):<22} {fmt([r[(v,s)]['lat'] for s in seeds],2)}")
PY
echo "search comparison: $(( $(date +%s) - start )) s (stores in $DIR)"

# Transfer between tasks: full FNAS on fashion-mnist-small-tops (5 classes), without and
# with --transfer-from the seed's full-FNAS search on fashion-mnist-small (critic
# pre-training and pool warm starts from its networks), in a copy of that store.
[ -n "${TRANSFER_SEEDS:-}" ] || exit 0
tstart=$(date +%s)
two() {
  local mode=$1 s=$2 store extra=""
  if [ "$mode" = with ]; then
    store="$DIR/tops-with-s$s.db"
    cp "$DIR/fnas-s$s.db" "$store"; [ ! -f "$DIR/fnas-s$s.db-wal" ] || cp "$DIR/fnas-s$s.db-wal" "$store-wal"
    rm -rf "$store.pool"; cp -r "$DIR/fnas-s$s.db.pool" "$store.pool"
    extra="--transfer-from fnas-s$s"
  else
    store="$DIR/tops-without-s$s.db"
  fi
  # shellcheck disable=SC2086
  "$FNAS" search --task fashion-mnist-small-tops --strategy fnas --budget-images "$BUDGET" --seed "$s" --workers 1 \
    --store "$store" --name "tops-$mode-s$s" $extra --json 2>/dev/null | tail -1 > "$DIR/tops-$mode-s$s.json"
  "$FNAS" show "tops-$mode-s$s" --store "$store" --json > "$DIR/tops-$mode-s$s.show.json"
  echo "tops $mode seed $s done"
}
export -f two
for s in $TRANSFER_SEEDS; do for m in without with; do echo "$m $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'two "$0" "$1"'
python3 - "$DIR" "$TRANSFER_SEEDS" "$BUDGET" <<'PY2' | tee "$OUT/transfer-between-tasks.txt"
import json, sys, statistics as st
d, seeds, budget = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def curve(mode, s):
    show = json.load(open(f"{d}/tops-{mode}-s{s}.show.json"))
    c, spent, best = [], 0, None
    for t in sorted(show["trials"], key=lambda t: t["id"]):
        spent += t["cost"]["images"]
        if t["source"] == "evaluated" and t["reward"] is not None:
            best = t["reward"] if best is None else max(best, t["reward"])
        c.append((spent, best))
    return c, spent, best
print(f"transfer fashion-mnist-small -> fashion-mnist-small-tops, full FNAS, budget {budget} images, seeds {' '.join(seeds)}")
print("cost to reach = images until the best evaluated reward >= the no-transfer search's final best (same seed)")
ratios = []
for s in seeds:
    cw, sw, bw = curve("without", s)
    ct, stt, bt = curve("with", s)
    reach = next((sp for sp, b in ct if b is not None and b >= bw - 1e-12), None)
    ratio = sw / reach if reach else 0.0
    ratios.append(ratio)
    print(f"seed {s}: without transfer best {bw:.4f} ({sw} images); with transfer best {bt:.4f}, reaches {bw:.4f} after {reach} images; ratio {ratio:.2f}")
r = sorted(ratios)
print(f"ratio without/with: median {st.median(r):.2f} [{r[0]:.2f}, {r[-1]:.2f}] (0 = not reached)")
PY2
echo "transfer runs: $(( $(date +%s) - tstart )) s"
