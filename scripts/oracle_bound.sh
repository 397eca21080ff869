#!/usr/bin/env bash
# How fast could ANY search reach vanilla PPO's final best on this proxy? An oracle that
# knows the best architecture from the start trains it again and again (fresh seeds, from
# scratch) until one evaluation reaches the threshold. Its cost bounds every search that
# trains from scratch: none can hit a reward level sooner than by training, every time,
# the architecture most likely to hit it.
#
# Picks the TOP architectures with the highest mean retrained accuracy in ROWS (rows of
# scripts/reward_noise_study.sh; the search's own reward is left out, it is
# selection-biased), retrains each with every seed in SEEDS and appends one JSON row per
# (architecture, seed) to OUT. JOBS trainings run at once, one thread each.
# Summary against a comparison's stores: python3 scripts/oracle_bound_report.py OUT DIR "1 2 3"
#
#   ROWS="docs/results/reward-noise-*.jsonl" OUT=rows.jsonl ./scripts/oracle_bound.sh
#
# TASK must be the comparison's task (default fashion-mnist-small). A rerun with the same
# OUT skips the (architecture, seed) pairs it holds.
set -euo pipefail
cd "$(dirname "$0")/.."
FNAS=${FNAS:-target/release/fnas}
TASK=${TASK:-fashion-mnist-small}
TOP=${TOP:-6}
SEEDS=${SEEDS:-$(seq -s ' ' 2001 2016)}
JOBS=${JOBS:-$(nproc)}
: "${ROWS:?ROWS=rows files of scripts/reward_noise_study.sh}" "${OUT:?OUT=the rows file to append to}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
touch "$OUT"
# shellcheck disable=SC2086
python3 - "$TOP" "$OUT" $ROWS <<'EOF' > "$OUT.todo"
import json, statistics as st, sys
top, out, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
vals = {}
for f in files:
    with open(f) as fh:
        for line in fh:
            r = json.loads(line)
            vals.setdefault(r["arch"], []).append(r["val"])
done = set()
with open(out) as fh:
    for line in fh:
        r = json.loads(line)
        done.add((r["arch"], r["seed"]))
best = sorted(vals, key=lambda a: st.mean(vals[a]), reverse=True)[:top]
for rank, a in enumerate(best, 1):
    print(json.dumps({"rank": rank, "arch": a, "picked_mean": st.mean(vals[a]), "picked_n": len(vals[a])}))
EOF
one() {
  local child=$1 s=$2 arch val
  arch=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["arch"])' "$child")
  if python3 -c 'import json, sys
a, s = sys.argv[2], int(sys.argv[3])
sys.exit(0 if any((r := json.loads(l))["arch"] == a and r["seed"] == s for l in open(sys.argv[1])) else 1)' "$OUT" "$arch" "$s"; then
    return 0
  fi
  val=$("$FNAS" train --arch "$arch" --task "$TASK" --seed "$s" --latency-runs 1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["val_accuracy"])')
  # one short line per row: appends from parallel jobs do not interleave
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(seed=int(sys.argv[2]), val=float(sys.argv[3])); print(json.dumps(r))' \
    "$child" "$s" "$val" >> "$OUT"
  echo "rank $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["rank"])' "$child") seed $s: $val" >&2
}
export -f one
export FNAS TASK OUT
while IFS= read -r child; do for s in $SEEDS; do printf '%s\t%s\n' "$child" "$s"; done; done < "$OUT.todo" |
  xargs -P "$JOBS" -d '\n' -n 1 bash -c 'one "${0%%$'"'"'\t'"'"'*}" "${0##*$'"'"'\t'"'"'}"'
rm -f "$OUT.todo"
