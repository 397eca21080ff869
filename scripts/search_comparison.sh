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
# the test accuracy / latency of each search's best child (scripts/search_comparison_report.py).
# Results: $OUT/search-comparison.txt; with TRANSFER_SEEDS="1 2" also the transfer runs
# below ($OUT/transfer-between-tasks.txt).
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
python3 scripts/search_comparison_report.py "$DIR" "$SEEDS" "$VARIANTS" "$BUDGET" | tee "$OUT/search-comparison.txt"
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
