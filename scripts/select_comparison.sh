#!/usr/bin/env bash
# Critic-chosen proposals (fnas-select) against regularized evolution, budget 500, on the
# eight benchmark columns (NAS-Bench-Graph cora..arxiv, AnalogNAS-Bench baseline and
# analog). Ratios are this strategy's cost / evolution's, per seed pair.
#   HEADLINE=1 (default): evolution and fnas-select, 100 seeds -> docs/results/select-headline-*.txt
#   HEADLINE=0: every row (random, evolution, ppo, fnas, fnas-select and its ablations),
#               20 seeds -> docs/results/select-ablation-*.txt
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/results}
if [ "${HEADLINE:-1}" = 1 ]; then
  SEEDS=${SEEDS:-100}; ROWS=evolution,fnas-select; NAME=select-headline
else
  SEEDS=${SEEDS:-20}
  ROWS=random,evolution,ppo,fnas,fnas-select,fnas-select-onehot,fnas-select-ucb,fnas-select-ei,fnas-select-noneighbours,fnas-select-nomutants,fnas-select-nocontroller,fnas-select-nouniform,fnas-select-ppo-own
  NAME=select-ablation
fi
./scripts/setup.sh
cargo build --release -p fnas
mkdir -p "$OUT"
start=$(date +%s)
target/release/fnas bench --benchmark nas-bench-graph \
  --datasets cora,citeseer,pubmed,cs,computers,arxiv \
  --strategies "$ROWS" --baseline evolution --seeds "$SEEDS" --budget 500 \
  --json "$OUT/$NAME-nas-bench-graph.json" | tee "$OUT/$NAME-nas-bench-graph.txt"
target/release/fnas bench --benchmark analog-nasbench --datasets baseline,analog \
  --strategies "$ROWS" --baseline evolution --seeds "$SEEDS" --budget 500 \
  --json "$OUT/$NAME-analog-nasbench.json" | tee "$OUT/$NAME-analog-nasbench.txt"
echo "$NAME: both tables in $(( $(date +%s) - start )) s"
