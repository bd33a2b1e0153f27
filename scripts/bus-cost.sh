#!/usr/bin/env bash
# What the bus between workers costs: the server's CPU time (user + system,
# every process of the server) per published message with --workers 1 and
# with --workers 2 under the same roomd-bench load, and the bus messages and
# bytes the workers exchanged (from /metrics/all).
#
# Each configuration runs a short and a long load at the same rate; the
# difference between the two cancels start-up, connecting and joining, and
# leaves the cost of the extra messages. With two workers, clients and room
# homes fall on either worker, so most messages cross the bus: the extra CPU
# per message divided by the bus messages per message is the cost of one bus
# message (both ends, system calls included). Configurations alternate round
# by round; medians are reported.
#
# Usage:
#   scripts/bus-cost.sh [options]
#     --conns N       connections (default 1000)
#     --room-size K   members per room (default 10)
#     --rate R        published messages per second (default 5000)
#     --short S       seconds of load in the short run (default 3)
#     --long L        seconds of load in the long run (default 9)
#     --rounds N      rounds (default 3)
#     --out DIR       reports go here (default target/bus-cost/<time>)
#     --no-build      use the binaries already in target/release
# Takes about (short + long + 8) * 2 * rounds seconds.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

conns=1000
room_size=10
rate=5000
short=3
long=9
rounds=3
out=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) conns="$2"; shift 2 ;;
        --room-size) room_size="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --short) short="$2"; shift 2 ;;
        --long) long="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "bus-cost.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$long" -gt "$short" ] || { echo "bus-cost.sh: --long must be more than --short" >&2; exit 2; }
[ -n "$out" ] || out="$repo/target/bus-cost/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
if [ "$build" = 1 ]; then
    cargo build --release --bins >"$out/build.log" 2>&1 || { echo "bus-cost.sh: build failed (see $out/build.log)" >&2; exit 1; }
fi
roomd="$repo/target/release/roomd"
bench="$repo/target/release/roomd-bench"
# shellcheck source=scripts/load-lib.sh
. "$repo/scripts/load-lib.sh"

# metric TEXT NAME: the sum of NAME's samples over every worker.
metric() {
    awk -v n="$2" '$1 ~ "^"n"({|$)" { s += $2 } END { printf "%d", s }' <<<"$1"
}

# run WORKERS SECONDS TAG: prints "cpu_seconds sent delivered bus_messages bus_bytes".
run() {
    local w="$1" secs="$2" tag="$3" port=""
    # shellcheck disable=SC2086
    "$roomd" --listen 127.0.0.1:0 --workers "$w" $flags >"$out/$tag.server.log" 2>&1 &
    server_pid=$!
    port="$(server_port "$out/$tag.server.log")"
    [ -n "$port" ] || { echo "bus-cost.sh: roomd did not start (see $out/$tag.server.log)" >&2; exit 1; }
    local t0 t1
    t0="$(cpu_ticks "$server_pid")"
    fanout_load bus-cost.sh "$port" "$secs" "$tag"
    t1="$(cpu_ticks "$server_pid")"
    local text
    text="$(exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf 'GET /metrics/all HTTP/1.1\r\nHost: roomd\r\nConnection: close\r\n\r\n' >&3
        cat <&3)"
    stop_server
    awk -v t=$((t1 - t0)) -v hz="$tick" 'BEGIN { printf "%.2f", t / hz }'
    echo " $(sent_delivered bus-cost.sh "$tag") $(metric "$text" roomd_bus_messages_out_total) $(metric "$text" roomd_bus_bytes_out_total)"
}

: >"$out/runs.txt"
for r in $(seq 1 "$rounds"); do
    for w in 1 2; do
        for secs in "$short" "$long"; do
            echo "bus-cost.sh: round $r, --workers $w, $secs s at $rate messages/s" >&2
            line="$(run "$w" "$secs" "w$w.d$secs.r$r")"
            echo "  cpu s, sent, delivered, bus messages, bus bytes: $line" >&2
            echo "$r $w $secs $line" >>"$out/runs.txt"
        done
    done
done

{
    echo "load: $conns connections, rooms of $room_size, $rate messages/s; ${short} s and ${long} s runs; $rounds rounds"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    awk -v s="$short" -v l="$long" '
    { k = $1 " " $2 " " ($3 == s ? "s" : "l"); cpu[k] = $4; sent[k] = $5; del[k] = $6; bm[k] = $7; bb[k] = $8; rs[$1] = 1 }
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        n = 0
        for (r in rs) {
            n++
            for (w = 1; w <= 2; w++) {
                a = r " " w " s"; b = r " " w " l"
                dm = sent[b] - sent[a]
                if (dm <= 0) { print "no messages between the short and long runs"; exit 1 }
                per[w, n] = 1e6 * (cpu[b] - cpu[a]) / dm
                perd[w, n] = 1e6 * (cpu[b] - cpu[a]) / (del[b] - del[a])
            }
            bus[n] = (bm[b] - bm[a]) / dm
            bytes[n] = (bb[b] - bb[a]) / (bm[b] - bm[a] > 0 ? bm[b] - bm[a] : 1)
            cost[n] = bus[n] > 0 ? (per[2, n] - per[1, n]) / bus[n] : 0
        }
        for (i = 1; i <= n; i++) { p1[i] = per[1, i]; p2[i] = per[2, i]; d1[i] = perd[1, i]; d2[i] = perd[2, i] }
        printf "| median of %d rounds | --workers 1 | --workers 2 |\n|---|---:|---:|\n", n
        printf "| server CPU per published message (us) | %.2f | %.2f |\n", median(p1, n), median(p2, n)
        printf "| server CPU per delivery (us) | %.3f | %.3f |\n", median(d1, n), median(d2, n)
        printf "| bus messages per published message | 0 | %.2f |\n", median(bus, n)
        printf "| bytes per bus message | | %.0f |\n", median(bytes, n)
        printf "\nserver CPU per bus message, both ends (us): %.2f\n", median(cost, n)
    }' "$out/runs.txt"
} | tee "$out/summary.md"
