# Shared by scripts/warm_start_study.sh and scripts/warm_near_study.sh (sourced).
# Expects FNAS, STORE, N, JOBS; reads WARM_ARGS and SKIP_FILL.

# The results-file suffix naming the extra `fnas train` flags of the warm runs.
warm_suffix() {
    [ -z "${WARM_ARGS:-}" ] || printf -- '-%s' "$(printf '%s' "$WARM_ARGS" | tr -c 'A-Za-z0-9.' '-' | sed 's/--*/-/g; s/^-//')"
}

# Fills $STORE's pool with N random mnas-28 architectures (seeds 101..100+N), each
# trained with the full `fashion-mnist` proxy from scratch; nothing with SKIP_FILL set.
fill_pool() {
    [ -z "${SKIP_FILL:-}" ] || return 0
    local t0
    t0=$(date +%s)
    train_pool() { "$FNAS" train --arch "random:$1" --task fashion-mnist --pool "$STORE" --pool-experiment warm-study-pool --latency-runs 5 --json 2>/dev/null | tail -1 > /dev/null; }
    export -f train_pool
    # the first one alone creates the store; the rest in parallel
    train_pool 101
    seq 102 $((100 + N)) | xargs -P "$JOBS" -I{} bash -c 'train_pool {}'
    echo "pool filled with $N networks: $(( $(date +%s) - t0 )) s"
}
