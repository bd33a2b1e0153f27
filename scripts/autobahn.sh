#!/usr/bin/env bash
# Autobahn|Testsuite conformance, cases 1 to 10 (no compression: 12.* and
# 13.* are excluded), against `roomd --echo-path /echo`.
#
# The Autobahn case files run under Python 3 through the PyPI package
# `kosoku`, installed into a venv under target/. The report lands in
# target/autobahn/ (index.json in the Autobahn shape, one JSON and HTML file
# per case). Prints the counts by result and `N passed, N failed`; OK,
# NON-STRICT and INFORMATIONAL pass, anything else (FAILED, UNIMPLEMENTED, a
# case missing from the report) fails, and so does the script.
#
# Environment: AUTOBAHN_TIMEOUT (seconds for the whole case run, default
# 900), AUTOBAHN_CASES (space-separated case ids or globs to run instead of
# all, e.g. "5.* 7.1.1"), AUTOBAHN_PARALLEL (cases at once, default 2),
# ROOMD_BIN (a roomd binary to test instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."

KOSOKU_VERSION=0.1.0
VENV=target/autobahn-venv
OUT=target/autobahn
TIMEOUT=${AUTOBAHN_TIMEOUT:-900}
PARALLEL=${AUTOBAHN_PARALLEL:-2}
start=$(date +%s)

if ! "$VENV/bin/python" -c "import kosoku" 2>/dev/null ||
    [ "$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("kosoku"))')" != "$KOSOKU_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

if [ -z "${ROOMD_BIN:-}" ]; then
    cargo build --release --quiet --bin roomd
    ROOMD_BIN=target/release/roomd
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Limits raised so the suite's large and fast messages (9.*: up to 16 MiB,
# thousands of frames) exercise the WebSocket layer, not roomd's abuse limits.
RUST_LOG=${RUST_LOG:-warn} "$ROOMD_BIN" --listen 127.0.0.1:0 --workers 1 \
    --echo-path /echo --max-message 16777216 --out-buffer 67108864 \
    --rate-limit 1000000 --max-bad-requests 1000000 \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!

addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/^roomd listening on \(.*\)$/\1/p' "$work/stdout" | head -n 1)
    [ -n "$addr" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "autobahn: roomd did not start; stderr:" >&2
    cat "$work/stderr" >&2
    exit 1
fi

include=()
for c in ${AUTOBAHN_CASES:-}; do
    include+=(-i "$c")
done
exclude=(-x '12.*' -x '13.*')

rm -rf "$OUT"
mkdir -p "$OUT"
echo "autobahn: kosoku $KOSOKU_VERSION against ws://$addr/echo (timeout ${TIMEOUT}s)"
set +e
timeout --kill-after=10 "$TIMEOUT" "$VENV/bin/kosoku" -m fuzzingclient \
    -p "$PARALLEL" "${include[@]}" "${exclude[@]}" -o "$OUT" "ws://$addr/echo" \
    >"$OUT/kosoku.log" 2>&1
kosoku_rc=$?
set -e
if [ "$kosoku_rc" = 124 ] || [ "$kosoku_rc" = 137 ]; then
    echo "autobahn: the case run did not finish within ${TIMEOUT}s"
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "autobahn: roomd died during the run; stderr:"
    tail -n 50 "$work/stderr"
fi
echo "autobahn: cases ran in $(($(date +%s) - start))s; report in $OUT/"

# Every selected case must be in the report with a passing result.
set +e
"$VENV/bin/python" - "$OUT/index.json" "${AUTOBAHN_CASES:-*}" <<'EOF'
import fnmatch, json, sys
from collections import Counter

from kosoku.cases import CASES

index_path, selection = sys.argv[1], sys.argv[2].split()
PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}
wanted = [
    c for c in CASES
    if any(fnmatch.fnmatchcase(c, p) for p in selection)
    and not any(fnmatch.fnmatchcase(c, p) for p in ("12.*", "13.*"))
]
try:
    with open(index_path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    print(f"autobahn: no report ({e})")
    index = {}
results = {}
for agent_cases in index.values():
    results.update(agent_cases)
counts = Counter()
bad = []
for case in wanted:
    r = results.get(case)
    behavior = r["behavior"] if r else "MISSING"
    counts[behavior] += 1
    if behavior not in PASS:
        close = r.get("behaviorClose") if r else None
        bad.append(f"  {case}: {behavior} (close: {close})")
for behavior, n in sorted(counts.items()):
    print(f"{behavior}: {n}")
closes = Counter(results[c].get("behaviorClose") for c in wanted if c in results)
print("closing handshake: " + ", ".join(f"{k} {n}" for k, n in sorted(closes.items())))
if bad:
    print("not passing:")
    print("\n".join(bad))
failed = len(bad)
print(f"{len(wanted) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
verdict=$?
set -e
exit "$verdict"
