# Shared by scripts/bus-cost.sh and scripts/cpu-cost.sh (sourced, not run):
# the server's flags for a fixed load, starting and stopping it, its CPU
# ticks, and reading a roomd-bench report.

# roomd's per-connection limits protect a server from one client; here a few
# publishers carry the load of many clients, so they are lifted.
flags="--max-members 1000 --idle-ms 3600000 --rate-limit 1000000 --create-rate 0 --pub-bytes-rate 0"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tick="$(getconf CLK_TCK)"

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

# server_port LOG: the port the server started in the background (pid in
# server_pid) says it listens on in LOG; empty if it does not within 10 s.
server_port() {
    local port=""
    for _ in $(seq 1 100); do
        port="$(sed -n 's/.*listening on .*:\([0-9][0-9]*\)$/\1/p' "$1" | head -n1)"
        [ -n "$port" ] && break
        sleep 0.1
    done
    echo "$port"
}

# cpu_ticks PID: user + system clock ticks of PID and its children.
cpu_ticks() {
    local total=0 p f
    for p in "$1" $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
        f="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        f="${f##*) }"
        # shellcheck disable=SC2086
        set -- $f
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# report_field FILE NAME: an integer field of a roomd-bench JSON report.
report_field() {
    sed -n "s/^  \"$2\": \([0-9]*\),/\1/p" "$1"
}

# fanout_load SCRIPT PORT SECONDS TAG: the load (roomd-bench fanout, $conns
# connections in rooms of $room_size, $rate messages/s) against the server
# on PORT; its report in $out/TAG.json. Exits on failure, naming SCRIPT.
fanout_load() {
    timeout 300 "$bench" fanout --url "ws://127.0.0.1:$2" --conns "$conns" --room-size "$room_size" \
        --rate "$rate" --duration "$3" --warmup 1 --drain 2 --quiet --json "$out/$4.json" \
        >"$out/$4.bench.log" 2>&1 || { echo "$1: roomd-bench failed (see $out/$4.bench.log)" >&2; exit 1; }
}

# sent_delivered SCRIPT TAG: "sent delivered" of $out/TAG.json; warns,
# naming SCRIPT, when deliveries are missing.
sent_delivered() {
    local missing
    missing="$(report_field "$out/$2.json" missing)"
    [ "$missing" = 0 ] || echo "$1: $2: $missing deliveries missing (see $out/$2.bench.log)" >&2
    echo "$(report_field "$out/$2.json" sent) $(report_field "$out/$2.json" delivered)"
}
