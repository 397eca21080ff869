#!/usr/bin/env bash
# Same child, same seed, trained with burn's operations and with fnas's fast kernels:
# validation accuracy and wall time of each (issue 28: the two paths reach the same
# accuracy within noise). Three architectures of mnas-28 on the `fashion-mnist` proxy.
#
# Usage: scripts/kernels_accuracy.sh [--epochs E] [--task TASK]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=1
TASK=fashion-mnist
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) EPOCHS=$2; shift 2 ;;
        --task) TASK=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "kernels_accuracy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --release -q -p fnas
FNAS=target/release/fnas
ARCHS=(
    median
    "b1.op=conv b1.kernel=7 b1.se=0 b1.skip=identity b1.width=0.75 b1.layers=1 b2.op=conv b2.kernel=5 b2.se=0 b2.skip=identity b2.width=1.0 b2.layers=3 b3.op=conv b3.kernel=3 b3.se=0 b3.skip=identity b3.width=1.25 b3.layers=1 b4.op=conv b4.kernel=5 b4.se=0.25 b4.skip=identity b4.width=1.25 b4.layers=2 b5.op=conv b5.kernel=7 b5.se=0.25 b5.skip=none b5.width=1.0 b5.layers=1"
    "b1.op=conv b1.kernel=7 b1.se=0 b1.skip=identity b1.width=1.25 b1.layers=2 b2.op=mbconv6 b2.kernel=5 b2.se=0 b2.skip=identity b2.width=1.0 b2.layers=3 b3.op=mbconv6 b3.kernel=5 b3.se=0 b3.skip=none b3.width=1.25 b3.layers=2 b4.op=mbconv6 b4.kernel=3 b4.se=0 b4.skip=none b4.width=1.25 b4.layers=1 b5.op=conv b5.kernel=7 b5.se=0 b5.skip=none b5.width=0.75 b5.layers=2"
)
NAMES=(median plain-conv mbconv6)
echo "task=$TASK epochs=$EPOCHS seed=0 $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-10s | %-6s | %8s | %8s | %10s\n' network kernels val test "wall s"
for i in 0 1 2; do
    for k in burn fast; do
        json=$("$FNAS" train --arch "${ARCHS[$i]}" --task "$TASK" --epochs "$EPOCHS" --kernels "$k" --test --json 2>/dev/null)
        /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.argv[1]); name, k = sys.argv[2], sys.argv[3]
val, test, wall = r["val_accuracy"], r["test_accuracy"] or float("nan"), r["cost"]["wall_seconds"]
print(f"{name:<10} | {k:<6} | {val:8.4f} | {test:8.4f} | {wall:10.1f}")
' "$json" "${NAMES[$i]}" "$k"
    done
done
