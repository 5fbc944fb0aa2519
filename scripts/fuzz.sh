#!/usr/bin/env bash
# Fuzzes the agent's untrusted-input decoders: each cargo-fuzz target in agent/fuzz for
# SECONDS (default 60), then prints per target the executions, the coverage reached and
# the new inputs found, the corpus size and the crashes. Exits 1 if any target crashed.
#
#   scripts/fuzz.sh [SECONDS]              every target
#   FUZZ_TARGETS="ndjson config" scripts/fuzz.sh 30
#
# Needs a nightly toolchain (libFuzzer instrumentation); installs cargo-fuzz if missing.
# Builds without a sanitizer: the agent forbids unsafe code, so what fuzzing looks for
# here is panics, overflows (debug assertions are on), hangs and runaway memory, and the
# uninstrumented allocator keeps the build and the runs about twice as fast.
# The committed seeds (agent/fuzz/corpus/<target>/) are only read; what a run discovers
# goes to agent/fuzz/target/corpus/<target>/ (kept between runs), crash inputs to
# agent/fuzz/artifacts/<target>/. To keep a crash as a regression test, copy it to
# agent/fuzz/regressions/<target>/ (`cargo test -p agent --test it fuzz` replays them).
# FUZZ_JOBS (default 1) sets the build's parallelism, FUZZ_MAX_LEN the largest input.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz_dir="$root/agent/fuzz"
all_targets=(forward_decode ndjson http_ingest otlp_protobuf otlp_json config)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$root/agent"
echo "building ${#targets[@]} targets (jobs: ${FUZZ_JOBS:-1})..." >&2
for target in "${targets[@]}"; do
    CARGO_BUILD_JOBS="${FUZZ_JOBS:-1}" cargo +nightly fuzz build --sanitizer none "$target" >&2
done

# The value of libFuzzer's `stat::NAME:` line in LOG (0 if absent).
stat() { grep -o "stat::$1: *[0-9]*" "$2" | grep -o '[0-9]*$' | tail -1 || echo 0; }

failed=0
summary=()
for target in "${targets[@]}"; do
    work="$fuzz_dir/target/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    log="$fuzz_dir/target/logs/$target.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    crashes_before=$(find "$artifacts" -type f | wc -l)
    echo "fuzzing $target for ${seconds}s (log: $log)..." >&2
    status=0
    cargo +nightly fuzz run --sanitizer none "$target" "$work" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="${FUZZ_MAX_LEN:-16384}" -print_final_stats=1 >"$log" 2>&1 || status=$?
    crashes=$(($(find "$artifacts" -type f | wc -l) - crashes_before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # libFuzzer failed without leaving an input: see the log
    fi
    [ "$crashes" -eq 0 ] || failed=1
    # "#N DONE cov: C ft: F corp: U/S ..." is libFuzzer's last status line.
    coverage=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    summary+=("$(printf '%-15s %12s %9s %-22s %8s %7s' "$target" \
        "$(stat number_of_executed_units "$log")" "$(stat new_units_added "$log")" \
        "${coverage:-cov: ?}" "$(find "$work" -type f | wc -l)" "$crashes")")
done

printf '%-15s %12s %9s %-22s %8s %7s\n' target executions new_units coverage corpus crashes
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "crashes: inputs in $fuzz_dir/artifacts/<target>/; replay with" \
        "cargo +nightly fuzz run -s none <target> <input>" >&2
fi
exit "$failed"
