#!/usr/bin/env bash
# Training throughput of fnas (burn flex) against PyTorch on the same network (issue 4).
#
# Prerequisite: Debian's PyTorch for the reference side:
#     apt-get install -y python3-torch
# It is run with /usr/bin/python3 (override with PYTHON=...): a pyenv/venv python3 on
# PATH usually has no torch.
#
# Usage:
#     scripts/throughput.sh --six [--rounds R] [--kernels fast|burn]
#         the six figures of issue 28 (three architectures x 1 and 2 threads): runs
#         scripts/throughput_six.sh
#     scripts/throughput.sh [--images N] [--batch B] [--rounds R] [--kernels K] [ARCH ARGS...]
# ARCH ARGS choose the architecture as the fnas example does (default: the median
# architecture of the default MNAS space):
#     --arch "b1.op=... b5.layers=..."        a text form
#     --random-largest 10 --seed 1            largest-FLOPs of 10 random architectures
#
# What it does: builds `cargo run --release -p fnas-child --example throughput` once,
# writes the ChildPlan as JSON, has scripts/torch_reference.py build the identical
# network from it (parameter counts must match), then trains the first N Fashion-MNIST
# training images (one pass, batch B, SGD momentum 0.9, lr 0.05) in both frameworks for
#     threads=1      procs=1       one training process, one thread
#     threads=1      procs=nproc   the whole machine: nproc independent children
#     threads=nproc  procs=1       one child using every core (for comparison)
# Runs are interleaved fnas, torch, fnas, torch, ... (R rounds per row) so both see the
# same machine load; the table shows the median img/s over the rounds (all children
# together) and the ratio fnas/torch of the medians.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "${1:-}" = "--six" ]; then
    shift
    exec scripts/throughput_six.sh "$@"
fi
PYTHON=${PYTHON:-/usr/bin/python3}
IMAGES=${IMAGES:-2048}
BATCH=${BATCH:-64}
ROUNDS=${ROUNDS:-2}
NPROC=${NPROC:-$(nproc)}
ARCH_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --images) IMAGES=$2; shift 2 ;;
        --batch) BATCH=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --kernels) ARCH_ARGS+=(--kernels "$2"); shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) ARCH_ARGS+=("$1"); shift ;;
    esac
done

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "throughput.sh: $PYTHON cannot import torch; install it with: apt-get install -y python3-torch" >&2
    exit 1
fi

cargo build --release -q -p fnas-child --example throughput
FNAS=target/release/examples/throughput
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PLAN=$WORK/plan.json

"$FNAS" "${ARCH_ARGS[@]}" --plan-out "$PLAN" --plan-only 2>&1 | grep -v '^wrote '
"$PYTHON" scripts/torch_reference.py --plan "$PLAN" --check-only
echo "images=$IMAGES batch=$BATCH rounds=$ROUNDS nproc=$NPROC torch=$("$PYTHON" -c 'import torch; print(torch.__version__)')"

RESULTS=$WORK/results.txt
: > "$RESULTS"
for cfg in "1 1" "1 $NPROC" "$NPROC 1"; do
    read -r threads procs <<< "$cfg"
    for round in $(seq 1 "$ROUNDS"); do
        common=(--images "$IMAGES" --batch "$BATCH" --threads "$threads" --procs "$procs")
        line=$("$FNAS" "${ARCH_ARGS[@]}" "${common[@]}" 2>/dev/null | grep '^fnas ')
        echo "  round $round: $line"
        echo "$threads $procs $line" >> "$RESULTS"
        line=$("$PYTHON" scripts/torch_reference.py --plan "$PLAN" "${common[@]}" 2>/dev/null | grep '^torch ')
        echo "  round $round: $line"
        echo "$threads $procs $line" >> "$RESULTS"
    done
done

"$PYTHON" - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    threads, procs, who, *fields = line.split()
    kv = dict(f.split("=", 1) for f in fields)
    rows.setdefault((int(threads), int(procs)), {}).setdefault(who, []).append(
        (float(kv["images_per_s"]), float(kv["per_proc"])))
print()
print(f"{'threads':>7} {'procs':>5} | {'fnas img/s':>10} {'torch img/s':>11} | {'fnas/torch':>10} | "
      f"{'fnas/proc':>9} {'torch/proc':>10} | rounds fnas ; torch")
for (t, p), r in rows.items():
    med = {w: statistics.median(x[0] for x in v) for w, v in r.items()}
    per = {w: statistics.median(x[1] for x in v) for w, v in r.items()}
    each = " ".join(f"{x[0]:.0f}" for x in r["fnas"]) + " ; " + " ".join(f"{x[0]:.0f}" for x in r["torch"])
    print(f"{t:>7} {p:>5} | {med['fnas']:>10.1f} {med['torch']:>11.1f} | {med['fnas'] / med['torch']:>10.2f} | "
          f"{per['fnas']:>9.1f} {per['torch']:>10.1f} | {each}")
EOF
