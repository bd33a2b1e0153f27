#!/usr/bin/env bash
# Fuzzes roomd's parsers of untrusted input with cargo-fuzz (libFuzzer), one
# target after another, each for a bounded time. Not run in CI.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Targets (tests/fuzz/fuzz_targets/): decode_msgpack, decode_json
# (roomd::protocol::decode for each subprotocol) and http_parse
# (roomd::http::parse_with); all three when none is named. The corpus grows in
# tests/fuzz/corpus/TARGET (gitignored), seeded from tests/fuzz/seeds/TARGET;
# a crashing input lands in tests/fuzz/artifacts/TARGET. Copy it to
# tests/fuzz/regressions/TARGET/ so `cargo test` (tests/fuzz_regressions.rs)
# keeps replaying it, then fix the bug.
#
# Environment: FUZZ_ASAN=1 builds with AddressSanitizer (needs nightly
# features, enabled here with RUSTC_BOOTSTRAP=1); FUZZ_NICE (default 10) is
# the niceness, since fuzzing takes a whole core.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
secs=$1
shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode_msgpack decode_json http_parse)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

sanitizer=(-s none)
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    export RUSTC_BOOTSTRAP=1
    sanitizer=(-s address)
fi

fuzz=tests/fuzz
failed=()
for t in "${targets[@]}"; do
    case $t in
    decode_msgpack) extra=(-max_len=16384) ;;
    decode_json) extra=(-max_len=16384 "-dict=$fuzz/dicts/json.dict") ;;
    http_parse) extra=(-max_len=10000 "-dict=$fuzz/dicts/http.dict") ;;
    *)
        echo "unknown target $t" >&2
        exit 2
        ;;
    esac
    mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
    echo "fuzz: $t for ${secs}s (${sanitizer[*]})"
    start=$(date +%s)
    # -a: debug assertions, so arithmetic overflow is a finding too.
    if nice -n "${FUZZ_NICE:-10}" cargo fuzz run --fuzz-dir "$fuzz" "${sanitizer[@]}" -a "$t" \
        "$fuzz/corpus/$t" "$fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        >"$fuzz/artifacts/$t/last-run.log" 2>&1; then
        echo "fuzz: $t: no crash in $(($(date +%s) - start))s; $(grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units)' "$fuzz/artifacts/$t/last-run.log" | tail -n 2 | tr '\n' ' ')"
    else
        echo "fuzz: $t FAILED after $(($(date +%s) - start))s; see $fuzz/artifacts/$t/last-run.log"
        grep -E 'panicked|ERROR|Test unit written' "$fuzz/artifacts/$t/last-run.log" | head -n 5 || true
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
