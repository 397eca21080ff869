#!/usr/bin/env bash
# How reproducible is a search's reward, and how well does the critic rank? Retrains the
# last LAST children that a search trained from scratch (each one an architecture the
# controller proposed late, when the critic's ranking matters most) with each training
# seed in SEEDS, and appends one JSON row per (child, seed) to OUT: the search's reward
# and the critic's prediction for that child, and the retrained validation accuracy.
# Summary: python3 scripts/reward_noise_report.py OUT. With PICK=best, the LAST children
# with the highest rewards instead (how much of a search's best reward is luck); with
# PICK=first, the first LAST (the controller's early, nearly random proposals).
#
#   STORE=DIR/fnas-s1.db EXP=fnas-s1 OUT=rows.jsonl ./scripts/reward_noise_study.sh
#
# TASK must be the search's task (default fashion-mnist-small, the comparison's proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
FNAS=${FNAS:-target/release/fnas}
TASK=${TASK:-fashion-mnist-small}
LAST=${LAST:-16}
PICK=${PICK:-last}
case $PICK in last|best|first) ;; *) echo "PICK must be last, best or first, not $PICK" >&2; exit 2 ;; esac
SEEDS=${SEEDS:-"1001 1002"}
: "${STORE:?STORE=the search's store}" "${EXP:?EXP=the experiment's name}" "${OUT:?OUT=the rows file}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p fnas
"$FNAS" show "$EXP" --store "$STORE" --json | python3 -c '
import json, sys
last, pick = int(sys.argv[1]), sys.argv[2]
rows = [t for t in json.load(sys.stdin)["trials"]
        if t["source"] == "evaluated" and t["reward"] is not None and not t.get("warm_start")]
if pick == "best":
    rows.sort(key=lambda t: t["reward"])
for t in (rows[:last] if pick == "first" else rows[-last:]):
    print(json.dumps({"id": t["id"], "arch": t["arch"], "reward": t["reward"], "prediction": t.get("prediction")}))
' "$LAST" "$PICK" | while IFS= read -r child; do
  arch=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["arch"])' "$child")
  for s in $SEEDS; do
    val=$("$FNAS" train --arch "$arch" --task "$TASK" --seed "$s" --latency-runs 1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["val_accuracy"])')
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(exp=sys.argv[2], seed=int(sys.argv[3]), val=float(sys.argv[4])); print(json.dumps(r))' \
      "$child" "$EXP" "$s" "$val" >> "$OUT"
  done
  echo "$EXP trial $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$child") done" >&2
done
