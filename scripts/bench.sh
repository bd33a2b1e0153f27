#!/usr/bin/env bash
# The standard load suite: roomd (started here from target/release/roomd on a
# free port, fresh for every run) side by side with other servers speaking the
# raw room protocol, interleaved round by round; medians per server, a
# markdown table and SVG charts (`roomd-bench summary`) under
# target/bench-results/<time>/.
#
# Usage:
#   scripts/bench.sh [options]
#     --rounds N            rounds of the whole suite, servers interleaved (default 3)
#     --only a,b,...        scenarios to run (default: all of lat thr seed light idle rooms churn
#                           watch lobby)
#     --peer NAME=URL       an already running raw-room server (e.g. ws://127.0.0.1:7800);
#                           its RSS is sampled when its pid can be found from the port (ss)
#     --start-peer NAME     start peer NAME fresh for every run with PEERS_DIR/run.sh NAME 0
#     --peers-dir DIR       where run.sh and the built peers are (default ../shared/peers)
#     --roomd-args "..."    extra flags for roomd
#     --roomd-workers LIST  roomd's --workers values to measure side by side, e.g. 1,2
#                           (default 1; each is a server named roomd-wN, plain roomd for 1 alone;
#                           N followed by s, e.g. 2s, runs --no-moves: connections stay where
#                           they land and their rooms' traffic crosses the bus)
#     --no-roomd            measure only the peers
#     --no-build            use the binaries already in target/release
#     --smoke               every scenario for a second or two with tiny counts (CI),
#                           plus faults; fails unless every run exits 0 with nothing missing
#     --out DIR             results folder (default target/bench-results/<time>)
#   Environment: ROOMD_BIN, ROOMD_BENCH_BIN override the binaries (with --no-build);
#   ROOMD_FLAGS replaces roomd's default flags (see roomd_flags below).
#
# Scenarios (the issue's targets):
#   lat    fanout --find-max --p99-budget-ms 10, 1,000 connections, rooms of 10
#   thr    fanout --find-max --p99-budget-ms 50, 1,000 connections, rooms of 100
#   seed   fanout 10,000 connections, rooms of 10, at 128,400 deliveries/s
#   light  fanout 1,000 connections, rooms of 10, at 10,000 deliveries/s
#   idle   15,000 idle connections held 5 s: memory per connection
#   rooms  roomd: 1,000,000 empty rooms; raw peers: 5,000 rooms of 1 member
#   churn  join/pub/leave cycles, 200 connections, 2,000 cycles/s
#   watch  roomd only: one room, 1 publisher, 10,000 watchers: a join storm, then
#          find-max of deliveries/s to the audience with p99 <= 50 ms
#   lobby  roomd only: 100,000 public rooms, 1 % of them changing per second
#          (join/leave), with and without one lobby subscriber: its updates/s,
#          bytes/s, and the server's CPU time per change
#   faults roomd only, --workers 2 (not in the default list; --smoke adds it):
#          workers killed and stopped past the watchdog under load; fails on a
#          request never answered, a delivery lost in a surviving room, or a
#          session or shadow left after the grace period
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

rounds=3
only="lat,thr,seed,light,idle,rooms,churn,watch,lobby"
only_given=0
peers=()        # NAME=URL
start_peers=()  # NAME
peers_dir="$repo/../shared/peers"
roomd_args=""
roomd_workers="1"
# roomd's per-connection limits (requests/s, creates/s, pub bytes/s) protect a
# server from one client; here a few publishers and creators carry the load
# of many clients, so the suite lifts them (and allows rooms of 100).
roomd_flags="${ROOMD_FLAGS:---max-members 1000 --idle-ms 3600000 --rate-limit 1000000 --create-rate 0 --pub-bytes-rate 0}"
use_roomd=1
build=1
smoke=0
out=""

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --only) only="$2"; only_given=1; shift 2 ;;
        --peer) peers+=("$2"); shift 2 ;;
        --start-peer) start_peers+=("$2"); shift 2 ;;
        --peers-dir) peers_dir="$2"; shift 2 ;;
        --roomd-args) roomd_args="$2"; shift 2 ;;
        --roomd-workers) roomd_workers="$2"; shift 2 ;;
        --no-roomd) use_roomd=0; shift ;;
        --no-build) build=0; shift ;;
        --smoke) smoke=1; shift ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$smoke" = 1 ]; then
    rounds=1
    [ "$only_given" = 1 ] || only="$only,faults"
fi
[ -n "$out" ] || out="$repo/target/bench-results/$(date +%Y%m%d-%H%M%S)$([ "$smoke" = 1 ] && echo -smoke)"
mkdir -p "$out"

if [ "$build" = 1 ]; then
    cargo build --release --bins >"$out/build.log" 2>&1 || { echo "bench.sh: cargo build failed (see $out/build.log)" >&2; tail -20 "$out/build.log" >&2; exit 1; }
fi
roomd="${ROOMD_BIN:-$repo/target/release/roomd}"
bench="${ROOMD_BENCH_BIN:-$repo/target/release/roomd-bench}"
[ -x "$bench" ] || { echo "bench.sh: $bench missing (build first)" >&2; exit 1; }
[ "$use_roomd" = 0 ] || [ -x "$roomd" ] || { echo "bench.sh: $roomd missing (build first)" >&2; exit 1; }

# What the load needs from the kernel; none of it persists, failures are fine
# (smaller runs still work).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then
    sysctl -qw net.ipv4.ip_local_port_range="1024 65535" \
        net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 \
        net.ipv4.tcp_tw_reuse=1 >/dev/null 2>&1 || true
fi

# --- servers -------------------------------------------------------------------

server_pid=""
server_url=""
cur_sc=""

# start_server NAME LOGFILE: starts roomd or a peer on a free port; sets
# server_pid and server_url; returns non-zero if it does not come up in 10 s.
start_server() {
    local name="$1" log="$2" port=""
    : >"$log"
    if [[ "$name" == roomd* ]]; then
        local workers=1 fault_flags="" move_flags=""
        [[ "$name" == roomd-w* ]] && workers="${name#roomd-w}"
        if [[ "$workers" == *s ]]; then
            workers="${workers%s}"
            move_flags="--no-moves"
        fi
        # faults needs workers to kill, a short grace period for the leftover
        # count, and the shortest watchdog for the stops.
        if [ "$cur_sc" = faults ]; then
            [ "$workers" -ge 2 ] || workers=2
            fault_flags="--grace-ms 1000 --hung-ms 1500"
        fi
        # shellcheck disable=SC2086
        "$roomd" --listen 127.0.0.1:0 --workers "$workers" $roomd_flags $fault_flags $move_flags $roomd_args >"$log" 2>&1 &
    else
        "$peers_dir/run.sh" "$name" 0 >"$log" 2>&1 &
    fi
    server_pid=$!
    for _ in $(seq 1 100); do
        port="$(sed -n 's/.*listening on .*:\([0-9][0-9]*\)$/\1/p' "$log" | head -n1)"
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "bench.sh: $name did not start:" >&2; tail -5 "$log" >&2
        stop_server; return 1
    fi
    server_url="ws://127.0.0.1:$port"
}

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=""
    fi
}
trap stop_server EXIT

# pid_of_port PORT: the process listening on 127.0.0.1:PORT (empty if unknown).
pid_of_port() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9][0-9]*\).*/\1/p' | head -n1
}

# smoke_clean FILE: the report shows connections and no missing, duplicated
# or reordered delivery (the JSON is pretty-printed, one field a line).
smoke_clean() {
    grep -q '^  "missing": 0,' "$1" && grep -q '^  "duplicated": 0,' "$1" \
        && grep -q '^  "reordered": 0,' "$1" && ! grep -q '^  "conns": 0,' "$1"
}

# smoke_extra SCENARIO FILE: what a scenario's smoke run must show besides
# smoke_clean: watch, messages expected and no error, and every client's last
# watchers count the number seated; lobby, no error and updates received.
smoke_extra() {
    case "$1" in
        watch) ! grep -q '^  "expected": 0,' "$2" && grep -q '^  "errors": 0,' "$2" \
                   && grep -q '^  "watchers_count_ok": true,' "$2" ;;
        lobby) grep -q '^  "errors": 0,' "$2" && grep -q '^  "lobby_updates_per_s": ' "$2" \
                   && ! grep -q '^  "lobby_updates_per_s": 0.0,' "$2" ;;
        faults) grep -q '^    "never_answered": 0,' "$2" \
                   && grep -q '^    "lost_in_surviving_rooms": 0,' "$2" \
                   && ! grep -q '^    "kills": 0,' "$2" && ! grep -q '^  "failed": ' "$2" ;;
        *) true ;;
    esac
}

# roomd_only SCENARIO: scenarios that need roomd's protocol (no raw peer runs them).
roomd_only() {
    [ "$1" = watch ] || [ "$1" = lobby ] || [ "$1" = faults ]
}

# --- scenarios -----------------------------------------------------------------

# args_for SCENARIO PROTO: the roomd-bench arguments of a scenario.
args_for() {
    local sc="$1" proto="$2"
    if [ "$smoke" = 1 ]; then
        case "$sc" in
            lat)   echo "fanout --conns 100 --room-size 10 --find-max --p99-budget-ms 10 --rate 200 --max-steps 2 --duration 1 --warmup 0.3 --drain 1" ;;
            thr)   echo "fanout --conns 200 --room-size 100 --publishers 2 --rate 200 --duration 1 --warmup 0.3 --drain 1" ;;
            seed)  echo "fanout --conns 400 --room-size 10 --rate 400 --duration 1 --warmup 0.3 --drain 1 --procs 2" ;;
            light) echo "fanout --conns 100 --room-size 10 --rate 100 --duration 1 --warmup 0.3 --drain 1" ;;
            idle)  echo "idle --conns 300 --hold 1" ;;
            rooms) if [ "$proto" = raw ]; then echo "rooms --rooms 100 --members 2 --hold 0.3"; else echo "rooms --rooms 2000 --members 2 --hold 0.3"; fi ;;
            churn) echo "churn --conns 20 --rate 100 --duration 1 --drain 1" ;;
            watch) echo "watch --watchers 200 --rate 40 --duration 0.5 --warmup 0.2 --drain 1 --settle 1.2" ;;
            lobby) echo "lobby --rooms 2000 --changers 8 --hold-ms 300 --duration 0.7 --warmup 0.3 --drain 0.3" ;;
            faults) echo "faults --conns 40 --room-size 4 --rate 100 --duration 2 --kill-every 0.8 --drops-per-s 5 --drain 2 --grace-ms 1000 --settle 2" ;;
        esac
        return
    fi
    case "$sc" in
        lat)   echo "fanout --conns 1000 --room-size 10 --find-max --p99-budget-ms 10 --rate 2000 --duration 4 --warmup 1" ;;
        thr)   echo "fanout --conns 1000 --room-size 100 --find-max --p99-budget-ms 50 --rate 2000 --duration 4 --warmup 1" ;;
        seed)  echo "fanout --conns 10000 --room-size 10 --rate 14267 --duration 10 --warmup 2" ;;
        light) echo "fanout --conns 1000 --room-size 10 --rate 1111 --duration 10 --warmup 1" ;;
        idle)  echo "idle --conns 15000 --hold 5" ;;
        rooms) if [ "$proto" = raw ]; then echo "rooms --rooms 5000 --members 1 --hold 1"; else echo "rooms --rooms 1000000 --creators 256 --hold 1"; fi ;;
        churn) echo "churn --conns 200 --rate 2000 --duration 10" ;;
        watch) echo "watch --watchers 10000 --find-max --p99-budget-ms 50 --rate 20 --duration 4 --warmup 1" ;;
        lobby) echo "lobby --rooms 100000 --change-pct 1 --duration 10" ;;
        faults) echo "faults --conns 400 --room-size 4 --rate 400 --duration 25 --kill-every 5 --stop-every 10 --stop-for 2500 --drops-per-s 10 --grace-ms 1000" ;;
    esac
}

servers=()
if [ "$use_roomd" = 1 ]; then
    if [ "$roomd_workers" = 1 ]; then
        servers+=("roomd")
    else
        IFS=',' read -r -a wl <<<"$roomd_workers"
        for w in "${wl[@]}"; do servers+=("roomd-w$w"); done
    fi
fi
for p in "${start_peers[@]}"; do servers+=("$p"); done
for p in "${peers[@]}"; do servers+=("${p%%=*}"); done
[ ${#servers[@]} -gt 0 ] || { echo "bench.sh: no server to measure" >&2; exit 2; }

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
    echo "servers: ${servers[*]}"
    echo "rounds: $rounds; scenarios: $only; smoke: $smoke"
} >"$out/machine.txt"

passed=0
failed=0
IFS=',' read -r -a scenarios <<<"$only"
for round in $(seq 1 "$rounds"); do
    for sc in "${scenarios[@]}"; do
        for name in "${servers[@]}"; do
            proto=raw
            [[ "$name" == roomd* ]] && proto=roomd
            if [ "$proto" = raw ] && roomd_only "$sc"; then
                echo "round $round: $sc on $name: skipped (roomd only)"
                continue
            fi
            base="$out/$name.$sc.r$round"
            managed=0
            url=""
            pid=""
            cur_sc="$sc"
            if [[ "$name" == roomd* ]] || [[ " ${start_peers[*]} " == *" $name "* ]]; then
                start_server "$name" "$base.server.log" || { failed=$((failed + 1)); continue; }
                managed=1; url="$server_url"; pid="$server_pid"
                # run.sh execs the peer, so the pid is the server's own.
            else
                for p in "${peers[@]}"; do [ "${p%%=*}" = "$name" ] && url="${p#*=}"; done
                pid="$(pid_of_port "${url##*:}")"
            fi
            args="$(args_for "$sc" "$proto")"
            [ -n "$args" ] || { echo "bench.sh: unknown scenario $sc" >&2; exit 2; }
            extra=(--url "$url" --proto "$proto" --label "$name" --json "$base.json" --quiet)
            [ -n "$pid" ] && extra+=(--server-pid "$pid")
            echo "round $round: $sc on $name: roomd-bench $args ${extra[*]}" | tee -a "$out/commands.txt"
            # shellcheck disable=SC2086
            timeout 900 "$bench" $args "${extra[@]}" >"$base.log" 2>&1
            rc=$?
            [ "$managed" = 1 ] && stop_server
            ok=1
            if [ $rc -ne 0 ] || [ ! -s "$base.json" ]; then
                ok=0
                echo "  FAILED (exit $rc):" >&2; tail -5 "$base.log" >&2
            elif [ "$smoke" = 1 ] && ! smoke_clean "$base.json"; then
                ok=0
                echo "  FAILED: missing/duplicated/reordered deliveries or no connection (see $base.log)" >&2
            elif [ "$smoke" = 1 ] && ! smoke_extra "$sc" "$base.json"; then
                ok=0
                echo "  FAILED: errors, no delivery or update, a wrong watchers count, or a fault figure not 0 (see $base.log)" >&2
            fi
            if [ $ok = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
            sleep 1
        done
    done
done

"$bench" summary "$out" || echo "bench.sh: summary failed" >&2
echo
echo "results: $out"
echo "bench: $passed passed, $failed failed"
[ $failed -eq 0 ]
