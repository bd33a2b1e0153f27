#!/usr/bin/env bash
# Server CPU per delivery of two or more roomd builds side by side, under the
# same roomd-bench fan-out load (the scripts/bus-cost.sh way): each build runs
# a short and a long load at the same rate, the difference between the two
# cancels start-up, connecting and joining, and leaves the cost of the extra
# messages. Builds alternate round by round; medians are reported, with each
# build's ratio to the first.
#
# Usage:
#   scripts/cpu-cost.sh --bin NAME=PATH --bin NAME=PATH [options]
#     --bin NAME=PATH  a roomd binary to measure (two or more; the first is the
#                      reference), e.g. --bin before=/tmp/roomd.old --bin after=target/release/roomd
#     --workers N      roomd --workers (default 1)
#     --conns N        connections (default 1000)
#     --room-size K    members per room (default 10)
#     --rate R         published messages per second (default 5000)
#     --short S        seconds of load in the short run (default 3)
#     --long L         seconds of load in the long run (default 9)
#     --rounds N       rounds (default 3)
#     --out DIR        reports go here (default target/cpu-cost/<time>)
#     --callgrind      count the server's instructions (valgrind --tool=callgrind)
#                      instead of its CPU time: exact on a busy machine, about
#                      50 times slower (use a small load, e.g. --conns 200 --rate 500)
#   Environment: ROOMD_BENCH_BIN, the load generator (default
#   target/release/roomd-bench, built when missing).
# Takes about (short + long + 8) * builds * rounds seconds.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

bins=()
workers=1
conns=1000
room_size=10
rate=5000
short=3
long=9
rounds=3
out=""
callgrind=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bins+=("$2"); shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --conns) conns="$2"; shift 2 ;;
        --room-size) room_size="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --short) short="$2"; shift 2 ;;
        --long) long="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --callgrind) callgrind=1; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "cpu-cost.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#bins[@]} -ge 2 ] || { echo "cpu-cost.sh: give two or more --bin NAME=PATH (see --help)" >&2; exit 2; }
[ "$long" -gt "$short" ] || { echo "cpu-cost.sh: --long must be more than --short" >&2; exit 2; }
for b in "${bins[@]}"; do
    [[ "$b" == *=* ]] || { echo "cpu-cost.sh: --bin $b: expected NAME=PATH" >&2; exit 2; }
    [ -x "${b#*=}" ] || { echo "cpu-cost.sh: ${b#*=}: not an executable" >&2; exit 2; }
done
[ -n "$out" ] || out="$repo/target/cpu-cost/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
bench="${ROOMD_BENCH_BIN:-$repo/target/release/roomd-bench}"
if [ ! -x "$bench" ]; then
    cargo build --release --bin roomd-bench >"$out/build.log" 2>&1 || { echo "cpu-cost.sh: build failed (see $out/build.log)" >&2; exit 1; }
fi
# shellcheck source=scripts/load-lib.sh
. "$repo/scripts/load-lib.sh"

# run BIN SECONDS TAG: prints "cost sent delivered" (cost: CPU seconds, or
# millions of instructions with --callgrind).
run() {
    local bin="$1" secs="$2" tag="$3" port="" under=()
    [ "$callgrind" = 1 ] && under=(valgrind --tool=callgrind --callgrind-out-file="$out/$tag.callgrind")
    # shellcheck disable=SC2086
    "${under[@]}" "$bin" --listen 127.0.0.1:0 --workers "$workers" $flags >"$out/$tag.server.log" 2>&1 &
    server_pid=$!
    port="$(server_port "$out/$tag.server.log")"
    [ -n "$port" ] || { echo "cpu-cost.sh: $bin did not start (see $out/$tag.server.log)" >&2; exit 1; }
    local t0 t1
    t0="$(cpu_ticks "$server_pid")"
    fanout_load cpu-cost.sh "$port" "$secs" "$tag"
    t1="$(cpu_ticks "$server_pid")"
    stop_server
    if [ "$callgrind" = 1 ]; then
        # Totals are written when the server exits (after its drain).
        awk '/^(summary|totals):/ { printf "%.2f", $2 / 1e6; exit }' "$out/$tag.callgrind"
    else
        awk -v t=$((t1 - t0)) -v hz="$tick" 'BEGIN { printf "%.2f", t / hz }'
    fi
    echo " $(sent_delivered cpu-cost.sh "$tag")"
}

: >"$out/runs.txt"
for r in $(seq 1 "$rounds"); do
    for b in "${bins[@]}"; do
        name="${b%%=*}"
        for secs in "$short" "$long"; do
            echo "cpu-cost.sh: round $r, $name, $secs s at $rate messages/s" >&2
            line="$(run "${b#*=}" "$secs" "$name.d$secs.r$r")"
            echo "  cpu s, sent, delivered: $line" >&2
            echo "$r $name $secs $line" >>"$out/runs.txt"
        done
    done
done

names=""
for b in "${bins[@]}"; do names="$names ${b%%=*}"; done
{
    echo "load: $conns connections, rooms of $room_size, $rate messages/s, --workers $workers; ${short} s and ${long} s runs; $rounds rounds"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    awk -v s="$short" -v names="$names" -v cg="$callgrind" '
    { k = $1 " " $2 " " ($3 == s ? "s" : "l"); cpu[k] = $4; sent[k] = $5; del[k] = $6; rs[$1] = 1 }
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        m = split(names, nm, " ")
        head = "| median of rounds |"; line = "|---|"
        for (i = 1; i <= m; i++) { head = head " " nm[i] " |"; line = line "---:|" }
        print head; print line
        for (i = 1; i <= m; i++) {
            n = 0
            for (r in rs) {
                a = r " " nm[i] " s"; b = r " " nm[i] " l"
                if (del[b] - del[a] <= 0) continue
                n++
                pd[n] = 1e6 * (cpu[b] - cpu[a]) / (del[b] - del[a])
                pm[n] = 1e6 * (cpu[b] - cpu[a]) / (sent[b] - sent[a])
                all[i, n] = pd[n]
            }
            cnt[i] = n
            md[i] = median(pd, n); mm[i] = median(pm, n)
        }
        unit = cg ? "instructions" : "us"
        row = "| server CPU per delivery (" unit ") |"
        for (i = 1; i <= m; i++) row = row sprintf(" %.3f |", md[i])
        print row
        row = "| server CPU per published message (" unit ") |"
        for (i = 1; i <= m; i++) row = row sprintf(" %.2f |", mm[i])
        print row
        row = "| ratio to " nm[1] " (per delivery) |"
        for (i = 1; i <= m; i++) row = row sprintf(" %.3f |", md[1] > 0 ? md[i] / md[1] : 0)
        print row
        row = "| rounds (per delivery, " unit ") |"
        for (i = 1; i <= m; i++) {
            c = ""
            for (j = 1; j <= cnt[i]; j++) c = c (j > 1 ? ", " : "") sprintf("%.3f", all[i, j])
            row = row " " c " |"
        }
        print row
    }' "$out/runs.txt"
} | tee "$out/summary.md"
