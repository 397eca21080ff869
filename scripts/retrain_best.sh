#!/usr/bin/env bash
# Re-trains the best child of each search of a real-training comparison with a longer
# recipe and tests it on t10k, so searches are compared on what a user would deploy, not
# on one noisy proxy score.
#
#   scripts/retrain_best.sh DIR "SEEDS" "VARIANTS" [TASK]
#
# DIR holds the comparison's <variant>-s<seed>.show.json (scripts/search_comparison.sh).
# The chosen child is the one with the best validation accuracy among the trained ones
# (one proxy evaluation each). TASK defaults to fashion-mnist-long (11,250 images x 4
# epochs at 14x14, the 5,000 validation images of the proxies). JOBS re-trainings run at
# once (default: the core count). Writes DIR/retrain-<variant>-s<seed>.json and prints
# the table (scripts/retrain_report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$1 SEEDS=$2 VARIANTS=$3 TASK=${4:-fashion-mnist-long}
FNAS=${FNAS:-target/release/fnas}
JOBS=${JOBS:-$(nproc)}
export FNAS TASK DIR
retrain() {
  local v=$1 s=$2 out="$DIR/retrain-$1-s$2.json" arch
  if [ -s "$out" ]; then echo "$v seed $s: kept"; return 0; fi
  arch=$(python3 - "$DIR/$v-s$s.show.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = [t for t in d["trials"] if t.get("source") == "evaluated" and t.get("reward") is not None]
print(max(t, key=lambda t: t["reward"])["arch"])
PY
)
  "$FNAS" train --arch "$arch" --task "$TASK" --test --json 2>/dev/null | tail -1 > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$v seed $s re-trained"
}
export -f retrain
for s in $SEEDS; do for v in $VARIANTS; do echo "$v $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'retrain "$0" "$1"'
python3 scripts/retrain_report.py "$DIR" "$SEEDS" "$VARIANTS" "$TASK"
