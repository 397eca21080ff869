#!/usr/bin/env bash
# The six throughput figures of issue 28: fnas / PyTorch training img/s on three
# architectures, each with one thread and with two threads in one process.
#
#     median         the median architecture of mnas-28 (dwsep k5, 2.0 M MACs)
#     plain-conv     --random-largest 10 --seed 1 (all plain convs, 36.8 M MACs)
#     mbconv6        --random-largest 10 --seed 6 (depthwise-heavy mbconv6, 58.8 M MACs)
#
# Prerequisite: Debian's PyTorch (apt-get install -y python3-torch), run with
# /usr/bin/python3 (override with PYTHON=...).
#
# Usage:
#     scripts/throughput_six.sh [--rounds R] [--kernels fast|burn]
# Environment: IMAGES (default 1024; 512 for the two large networks), BATCH (64).
#
# Same network in both frameworks (scripts/torch_reference.py builds it from the plan,
# parameter counts must match), same images, batch 64, SGD momentum 0.9, one pass.
# Rounds are interleaved fnas, torch, fnas, torch, ... so both see the same machine
# load; the table gives the medians over the rounds, their ratio, and every round.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
ROUNDS=3
KERNELS=fast
BATCH=${BATCH:-64}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --kernels) KERNELS=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "throughput_six.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "throughput_six.sh: $PYTHON cannot import torch; install it with: apt-get install -y python3-torch" >&2
    exit 1
fi

cargo build --release -q -p fnas-child --example throughput
FNAS=target/release/examples/throughput
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.txt
: > "$RESULTS"

declare -A ARCH=(
    [median]=""
    [plain-conv]="--random-largest 10 --seed 1"
    [mbconv6]="--random-largest 10 --seed 6"
)
declare -A IMGS=([median]=${IMAGES:-1024} [plain-conv]=${IMAGES:-512} [mbconv6]=${IMAGES:-512})
echo "kernels=$KERNELS batch=$BATCH rounds=$ROUNDS torch=$("$PYTHON" -c 'import torch; print(torch.__version__)') $(date -u '+%Y-%m-%d %H:%M UTC')"
for name in median plain-conv mbconv6; do
    # shellcheck disable=SC2206
    args=(${ARCH[$name]})
    plan=$WORK/$name.json
    "$FNAS" "${args[@]}" --plan-out "$plan" --plan-only 2>&1 | grep '^plan:' | sed "s/^/$name /"
    "$PYTHON" scripts/torch_reference.py --plan "$plan" --check-only >/dev/null
    for threads in 1 2; do
        common=(--images "${IMGS[$name]}" --batch "$BATCH" --threads "$threads" --procs 1)
        for round in $(seq 1 "$ROUNDS"); do
            line=$("$FNAS" "${args[@]}" "${common[@]}" --kernels "$KERNELS" 2>/dev/null | grep '^fnas ')
            echo "$name $threads $line" >> "$RESULTS"
            line=$("$PYTHON" scripts/torch_reference.py --plan "$plan" "${common[@]}" 2>/dev/null | grep '^torch ')
            echo "$name $threads $line" >> "$RESULTS"
        done
    done
done

"$PYTHON" - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, threads, who, *fields = line.split()
    kv = dict(f.split("=", 1) for f in fields)
    rows.setdefault((name, int(threads)), {}).setdefault(who, []).append(float(kv["images_per_s"]))
print()
print(f"{'network':>10} {'threads':>7} | {'fnas img/s':>10} {'torch img/s':>11} | {'fnas/torch':>10} | rounds fnas ; torch")
for (name, t), r in rows.items():
    f, p = statistics.median(r["fnas"]), statistics.median(r["torch"])
    each = " ".join(f"{x:.0f}" for x in r["fnas"]) + " ; " + " ".join(f"{x:.0f}" for x in r["torch"])
    print(f"{name:>10} {t:>7} | {f:>10.1f} {p:>11.1f} | {f / p:>10.2f} | {each}")
for name in dict.fromkeys(n for n, _ in rows):
    one, two = statistics.median(rows[(name, 1)]["fnas"]), statistics.median(rows[(name, 2)]["fnas"])
    print(f"# {name}: fnas 2 threads / 1 thread = {two / one:.2f}x")
EOF
