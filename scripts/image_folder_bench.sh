#!/usr/bin/env bash
# What reading an image-folder task costs against training one proxy child (issue 26).
#
# Usage: scripts/image_folder_bench.sh [WORKDIR]   (default: a fresh temporary folder)
#
# 1. `cargo run --release -p fnas-child --example image_folder_bench -- WORKDIR/photos`
#    writes the 10,000 Fashion-MNIST t10k images as 28x28 PNG files (ten class folders)
#    and times materialising the shipped `fashion-mnist` recipe on them: the first read
#    (decode every PNG + write the cache), a later read (the cache file), and the same
#    recipe on the IDX files.
# 2. `fnas train --arch median --task fashion-mnist` (release) trains one proxy child
#    (the default search proxy) and prints its wall time.
# The acceptance: a later read costs < 5% of that child's training.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, work folder $WORK" >&2
cargo build --release -p fnas-child --example image_folder_bench -p fnas >&2
rm -rf "$WORK/photos" "$WORK/photos.cache"
./target/release/examples/image_folder_bench "$WORK/photos" --rounds 5
./target/release/fnas train --arch median --task fashion-mnist 2>/dev/null | grep -E "^(task|cost|val)"
