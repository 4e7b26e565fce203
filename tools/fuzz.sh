#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers (fuzz/, cargo-fuzz on stable Rust).
#   make fuzz                                   every target, 900 s each
#   make fuzz TARGETS="b2mml uns_json" FUZZ_SECONDS=60 FUZZ_PARALLEL=2
# Targets run FUZZ_PARALLEL at a time (default 1), at the lowest CPU
# priority, so the machine stays usable meanwhile.
# New inputs that reach new code are added to fuzz/corpus/<target>/, which
# `cargo test` replays; a crash is written to fuzz/artifacts/<target>/ and
# fails the run. Prints one row per target: runs, corpus, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/mezzanine/target}"
seconds=${FUZZ_SECONDS:-900}
all="uns_json spectrum sparkplug mes_event b2mml registry config reconcile_rules whatif_model whatif_scenario shift_calendar oee_rules"
targets=${TARGETS:-$all}
parallel=${FUZZ_PARALLEL:-1}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# DuckDB is linked, not compiled again: the archive of a normal build.
archive=$(ls -t "$CARGO_TARGET_DIR"/debug/build/libduckdb-sys-*/out/libduckdb.a 2>/dev/null | head -1 || true)
if [ -z "$archive" ]; then
    echo "fuzz: no DuckDB archive under $CARGO_TARGET_DIR/debug/build; run 'make test' once first" >&2
    exit 1
fi
link_dir="$CARGO_TARGET_DIR/fuzz-duckdb"
mkdir -p "$link_dir"
ln -sf "$archive" "$link_dir/libduckdb_static.a"
export DUCKDB_LIB_DIR="$link_dir" DUCKDB_STATIC=1

# The same dependency versions as the app.
cp Cargo.lock fuzz/Cargo.lock
fuzz_dir="$CARGO_TARGET_DIR/fuzz"
cargo fuzz build -s none --target-dir "$fuzz_dir"

logs=$(mktemp -d)
# The binaries are run directly: `cargo fuzz run` would build again (and
# a source edit meanwhile would rebuild under a running campaign).
bin_dir="$fuzz_dir/$(rustc -vV | sed -n 's/^host: //p')/release"
fuzz_one() {
    local t=$1
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "fuzz: $t for ${seconds} s (corpus $(ls "fuzz/corpus/$t" | wc -l) inputs)" >&2
    if ! nice -n 19 "$bin_dir/$t" "fuzz/corpus/$t" \
        -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1; then
        echo "fuzz: $t FAILED" >&2
        tail -30 "$logs/$t.log" >&2
        return 1
    fi
    # Keep the smallest set of inputs that covers what the corpus covers.
    local merged
    merged=$(mktemp -d)
    if nice -n 19 "$bin_dir/$t" -merge=1 "$merged" "fuzz/corpus/$t" >>"$logs/$t.merge.log" 2>&1 \
        && [ -n "$(ls -A "$merged")" ]; then
        rm -f "fuzz/corpus/$t"/*
        mv "$merged"/* "fuzz/corpus/$t"/ 2>/dev/null || true
    else
        echo "fuzz: $t: corpus minimization failed" >&2
    fi
    rm -rf "$merged"
}
status=0
running=0
for t in $targets; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    fuzz_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done

printf '%-16s %8s %14s %10s %8s %8s\n' target seconds runs runs/s corpus crashes
for t in $targets; do
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo 0)
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    crashes=$(ls "fuzz/artifacts/$t" | wc -l)
    printf '%-16s %8s %14s %10s %8s %8s\n' "$t" "$seconds" "$runs" "$((runs / seconds))" "$corpus" "$crashes"
done
rm -rf "$logs"
exit $status
