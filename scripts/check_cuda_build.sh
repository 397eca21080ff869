#!/usr/bin/env bash
# Type-checks the CUDA build (`--features cuda`: burn's CUDA backend behind `--device cuda`)
# on a machine without a GPU or the CUDA toolkit: `cargo check` compiles every crate's
# code with the feature on and links nothing.
#
# DOCS_RS=1: cubecl's `tracel-llvm-bundler` build script otherwise downloads a bundled
# LLVM 23 from its project's servers at build time, which a machine limited to crates.io
# cannot reach; with DOCS_RS set (as on docs.rs) it skips the download, which a check that
# links nothing does not need. A real `cargo build --release --features cuda` needs that
# download (or a machine that can make it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DOCS_RS=1 cargo check -p fnas --features cuda "$@"
