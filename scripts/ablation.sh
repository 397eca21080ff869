#!/usr/bin/env bash
# The FNAS ablation of issue 3 (README "Figures"): every row on NAS-Bench-Graph
# (cora, citeseer, pubmed, cs, computers, arxiv) and AnalogNAS-Bench (baseline, and
# analog with transfer from baseline), 20 seeds, budget 500. Writes the two tables to
# docs/results/ (or $OUT) and prints the total time.
# TRUST_CONTENDERS=1: only vanilla PPO and the rows with the critic's gate, with the
# paper's plain gate rule (`fnas bench --trust-contenders`); the tables go to
# ablation-{nas-bench-graph,analog-nasbench}-trust-contenders.txt.
# GATE_AFTER_CALIBRATION=1: the same rows, the gate trusting nothing before the critic's
# std is calibrated (`fnas bench --gate-after-calibration`); tables to
# ablation-{nas-bench-graph,analog-nasbench}-gate-after-calibration.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/results}
SEEDS=${SEEDS:-20}
ROWS=random,evolution,ppo,fnas-value,fnas-gate,fnas-gate+transfer,fnas-replay-nocorr,fnas-replay,fnas+transfer
EXTRA=()
SUFFIX=""
if [ -n "${TRUST_CONTENDERS:-}" ]; then
  ROWS=ppo,fnas-gate,fnas-gate+transfer,fnas+transfer
  EXTRA=(--trust-contenders)
  SUFFIX=-trust-contenders
elif [ -n "${GATE_AFTER_CALIBRATION:-}" ]; then
  ROWS=ppo,fnas-gate,fnas-gate+transfer,fnas+transfer
  EXTRA=(--gate-after-calibration)
  SUFFIX=-gate-after-calibration
fi
./scripts/setup.sh
cargo build --release -p fnas
mkdir -p "$OUT"
start=$(date +%s)
target/release/fnas bench --benchmark nas-bench-graph \
  --datasets cora,citeseer,pubmed,cs,computers,arxiv \
  --strategies "$ROWS" --seeds "$SEEDS" --budget 500 "${EXTRA[@]}" | tee "$OUT/ablation-nas-bench-graph$SUFFIX.txt"
target/release/fnas bench --benchmark analog-nasbench --datasets baseline,analog \
  --strategies "$ROWS" --seeds "$SEEDS" --budget 500 "${EXTRA[@]}" | tee "$OUT/ablation-analog-nasbench$SUFFIX.txt"
echo "ablation: both tables in $(( $(date +%s) - start )) s"
