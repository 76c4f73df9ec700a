#!/usr/bin/env bash
# Seeds and runs every fuzz target for SECONDS each (default 300); exits non-zero if any target
# crashed (a panic, an assertion, a sanitizer report, a timeout or running out of memory) or did
# not build.
#
#   fuzz/run-all.sh [SECONDS]
#
# Environment:
#   FUZZ_PARALLEL  targets run at once (default 1; each is one single-threaded libFuzzer process)
#   FUZZ_TARGETS   space-separated subset of targets (default: all, from `cargo fuzz list`)
#   FUZZ_ARGS      extra libFuzzer flags (e.g. "-rss_limit_mb=4096")
#   CARGO_FUZZ     the cargo-fuzz command (default "cargo +nightly fuzz")
#
# Inputs that once crashed or hung a target are kept in fuzz/regressions/<target>/ and are
# replayed before it is fuzzed. Needs a nightly toolchain and cargo-fuzz (`cargo install
# cargo-fuzz`). Crashing inputs are written to fuzz/artifacts/<target>/, logs to
# fuzz/artifacts/run-all/<target>.log; reproduce one with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-…`.
set -uo pipefail

secs="${1:-300}"
case "$secs" in '' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here" || exit 2
read -r -a fuzz <<<"${CARGO_FUZZ:-cargo +nightly fuzz}"
parallel="${FUZZ_PARALLEL:-1}"
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <("${fuzz[@]}" list) || true
fi
[ ${#targets[@]} -gt 0 ] || {
    echo "run-all.sh: no fuzz targets (is cargo-fuzz installed? \`cargo install cargo-fuzz\`)" >&2
    exit 2
}
read -r -a extra <<<"${FUZZ_ARGS:-}"
logs="$here/artifacts/run-all"
mkdir -p "$logs"

./seed.sh "${targets[@]}" || exit 2
echo "building fuzz targets..."
"${fuzz[@]}" build || {
    echo "run-all.sh: fuzz targets failed to build" >&2
    exit 2
}

run() { # run TARGET: replay its past findings, then one libFuzzer process; output to its log
    local replay=()
    [ -d "regressions/$1" ] && mapfile -t replay < <(find "regressions/$1" -type f | sort)
    if [ ${#replay[@]} -gt 0 ]; then
        "${fuzz[@]}" run "$1" "${replay[@]}" -- -timeout=20 >"$logs/$1.replay.log" 2>&1 || {
            echo "run-all.sh: $1 fails on a past finding in regressions/$1 (see $logs/$1.replay.log)" >&2
            cp "$logs/$1.replay.log" "$logs/$1.log"
            return 1
        }
    fi
    "${fuzz[@]}" run "$1" -- -max_total_time="$secs" -timeout=20 -print_final_stats=1 \
        "${extra[@]}" >"$logs/$1.log" 2>&1
}

stat() { # stat LOG NAME: a libFuzzer final statistic
    sed -n "s/^stat::$2: *//p" "$1" | tail -1
}

declare -A rc=()
pids=()
names=()
wait_oldest() {
    wait "${pids[0]}"
    rc[${names[0]}]=$?
    echo "finished ${names[0]} (exit ${rc[${names[0]}]})"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
}
for t in "${targets[@]}"; do
    while [ ${#pids[@]} -ge "$parallel" ]; do wait_oldest; done
    echo "fuzzing $t for ${secs}s (log: $logs/$t.log)"
    run "$t" &
    pids+=($!)
    names+=("$t")
done
while [ ${#pids[@]} -gt 0 ]; do wait_oldest; done

failed=0
printf '\n%-18s %6s %14s %8s %8s  %s\n' target secs executions exec/s corpus result
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    execs="$(stat "$log" number_of_executed_units)"
    eps="$(stat "$log" average_exec_per_sec)"
    units="$(sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p' "$log" | tail -1)"
    if [ "${rc[$t]}" -eq 0 ]; then
        result=ok
    else
        failed=1
        result="CRASH (exit ${rc[$t]}): $(grep -m1 -E '^(==[0-9]+== ?ERROR|thread .* panicked|SUMMARY)' "$log" || echo "see $log")"
    fi
    printf '%-18s %6s %14s %8s %8s  %s\n' "$t" "$secs" "${execs:-?}" "${eps:-?}" "${units:-?}" "$result"
done
if [ "$failed" -ne 0 ]; then
    echo "run-all.sh: a fuzz target failed; crashing inputs are in $here/artifacts/<target>/" >&2
fi
exit "$failed"
