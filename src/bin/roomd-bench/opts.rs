//! The command line: one subcommand per scenario, the flags every scenario
//! shares, and the checks that turn flags into a runnable plan.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::Target;
use crate::sys::secs_ns;

/// Load harness for roomd and for "raw room" peer servers.
///
/// Each scenario opens many WebSocket client connections from one mio loop
/// per process, drives them open-loop and prints a progress line each second,
/// a table at the end, and (with --json) a machine-readable report.
/// Latencies are measured from each message's scheduled send time, so a
/// stalled server cannot hide behind a stalled client (no coordinated
/// omission).
#[derive(Parser, Debug)]
#[command(name = "roomd-bench", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    #[command(flatten)]
    Scenario(Box<Scenario>),
    /// Summarize a folder of --json reports named SERVER.SCENARIO.rROUND.json
    /// (as scripts/bench.sh writes them) into summary.md (medians per
    /// server) and chart-lat.svg / chart-thr.svg.
    Summary(SummaryArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    /// The results folder.
    pub dir: PathBuf,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// N connections in N/S rooms; P members per room publish at R messages/s
    /// in total; every delivery is checked (exactly once, in order) and timed.
    Fanout(FanoutArgs),
    /// Open N connections at a given rate, hold them (answering pings), report
    /// the connect rate, failures and the server's memory per connection.
    Idle(IdleArgs),
    /// Create N rooms (and join M members in each); report the creation rate
    /// and the server's memory per room.
    Rooms(RoomsArgs),
    /// Join / publish / leave cycles at R cycles/s over N connections; report
    /// per-operation latencies.
    Churn(ChurnArgs),
    /// roomd: one room, one publisher and N watchers (`join` with
    /// `watch:true`). A join storm (all N at once: time to seat them all,
    /// server messages per join), then messages to the whole audience at R
    /// messages/s (with --find-max: the most deliveries/s within the p99
    /// budget); every delivery checked (exactly once, in order) and timed.
    Watch(WatchArgs),
    /// roomd: R public rooms (created with `join:false`), one connection
    /// subscribed to the lobby (`lobby`, no filter) while changer
    /// connections join and leave P % of the rooms per second; report the
    /// subscriber's updates/s and bytes/s and the server's CPU time per
    /// room change, against the same changes with no subscriber.
    Lobby(LobbyArgs),
    /// roomd with several workers: rooms under load while one worker after
    /// another is killed (--kill-every) or stopped past the watchdog
    /// (--stop-every, --stop-for). Clients cut off reconnect and resume;
    /// reports requests never answered, deliveries lost in rooms that
    /// survived, sessions lost with their worker, the time from each death
    /// to the replacement accepting, and what the server still holds after
    /// the clients leave. Exits 1 when a must-be-zero figure is not 0.
    Faults(FaultsArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// roomd's protocol (PROTOCOL.md, MessagePack subprotocol).
    Roomd,
    /// The "raw room" protocol of the peer servers: connect to --raw-path,
    /// every message is forwarded to the room's other members.
    Raw,
}

/// Flags every scenario has.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server URL, ws://HOST:PORT[/PATH]. With --proto roomd the path defaults
    /// to /ws; with --proto raw the path comes from --raw-path.
    #[arg(long, default_value = "ws://127.0.0.1:7700", env = "ROOMD_BENCH_URL")]
    pub url: String,
    /// Protocol spoken to the server.
    #[arg(long, value_enum, default_value_t = Proto::Roomd)]
    pub proto: Proto,
    /// Upgrade path for --proto raw; {room} is replaced by the room name.
    #[arg(long, default_value = "/r/{room}")]
    pub raw_path: String,
    /// Split the connections (whole rooms at a time) over K child processes,
    /// each with its own loop; results are merged exactly (histograms, counts).
    /// A process may hold about 20,000 sockets here: use K >= conns / 19,000.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Spread client sockets over source addresses 127.0.0.1 ..= 127.0.0.N
    /// (IP_BIND_ADDRESS_NO_PORT), so more than one port range of connections fit.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub src_addrs: u8,
    /// Connections opened per second, over all processes (0 = as fast as the
    /// in-flight limit allows).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Most connections in TCP connect or upgrade at once, per process.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Seconds a connection may take to connect and upgrade before it counts as failed.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Sample this server process's RSS (summed with all its descendants,
    /// i.e. its workers) from /proc before and after the load.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Name of the server under test, copied into the report.
    #[arg(long, default_value = "")]
    pub label: String,
    /// No per-second progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Receive buffer per connection, bytes: the most one read takes in (0 =
    /// the scenario's default: 64 KiB fanout, 4 KiB idle, 16 KiB rooms and churn).
    #[arg(long, default_value_t = 0)]
    pub read_buffer: usize,
    /// Internal: run as child K of --procs (set by the parent).
    #[arg(long, hide = true)]
    pub child_index: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections in total.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Members per room (conns must be a multiple of it).
    #[arg(long, default_value_t = 10)]
    pub room_size: usize,
    /// Members per room that publish.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Messages per second published, in total over all publishers (each is
    /// delivered to room-size - 1 members). With --find-max: the first step.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Payload bytes per message (at least 24: the harness's header).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds measured (per step with --find-max).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts (messages scheduled in it are
    /// checked for order but not counted).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait after the last send for deliveries still in flight.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Step the rate up until p99 passes --p99-budget-ms or deliveries fall
    /// below 99.9 % of expected (a failing rate is run a second time before
    /// it counts as failed); report the highest rate that held.
    #[arg(long)]
    pub find_max: bool,
    /// Latency budget for --find-max, milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub p99_budget_ms: f64,
    /// Most steps --find-max takes.
    #[arg(long, default_value_t = 14)]
    pub max_steps: usize,
    /// Rate multiplier between --find-max steps before the first failure
    /// (then it bisects).
    #[arg(long, default_value_t = 1.6)]
    pub step_factor: f64,
    /// Idle timeout asked for each created room (roomd), milliseconds.
    #[arg(long, default_value_t = 600_000)]
    pub room_idle_ms: u32,
    /// roomd: the creator lets the server name the room (so it is homed on
    /// the creator's worker), and the other members connect once it exists
    /// and join in the upgrade (`?room=`) instead of by a `join` request:
    /// with several workers every member's connection is then served by the
    /// room's home.
    #[arg(long)]
    pub join_on_upgrade: bool,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Room joined by every connection with --proto raw (raw servers need a room path).
    #[arg(long, default_value = "idle")]
    pub room: String,
}

#[derive(Args, Debug, Clone)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms to create.
    #[arg(long, default_value_t = 10_000)]
    pub rooms: usize,
    /// Members joined in each room (with --proto raw at least 1: a raw room
    /// exists only while it has members; each member is a connection).
    #[arg(long, default_value_t = 0)]
    pub members: usize,
    /// roomd: connections sending the create requests.
    #[arg(long, default_value_t = 64)]
    pub creators: usize,
    /// roomd: requests in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// roomd: rooms one member connection joins (the server's
    /// --max-rooms-per-conn, default 16).
    #[arg(long, default_value_t = 16)]
    pub rooms_per_conn: usize,
    /// Seconds to hold the rooms before measuring memory and leaving.
    #[arg(long, default_value_t = 1.0)]
    pub hold: f64,
    /// Idle timeout asked for each created room, milliseconds.
    #[arg(long, default_value_t = 600_000)]
    pub room_idle_ms: u32,
}

#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections cycling (at most one cycle in progress per connection).
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Cycles started per second in total (open loop: a cycle due on a busy
    /// connection waits, and its latency counts from when it was due).
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Rooms cycled through (0 = conns / 4, at least 1).
    #[arg(long, default_value_t = 0)]
    pub rooms: usize,
    /// Seconds of cycling.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Payload bytes of the message published in each cycle (at least 24).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds to wait for cycles in progress after the last one started.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Idle timeout asked for each created room, milliseconds.
    #[arg(long, default_value_t = 600_000)]
    pub room_idle_ms: u32,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Watchers of the room (connections besides the one publisher).
    #[arg(long, default_value_t = 10_000)]
    pub watchers: usize,
    /// Seconds after the storm's last `joined` during which the clients
    /// wait for the coalesced `watchers` count (sent at most about once a
    /// second); every client's last count must then be the number seated.
    #[arg(long, default_value_t = 1.5)]
    pub settle: f64,
    /// Messages per second the publisher sends (each is delivered to every
    /// watcher). With --find-max: the first step.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Payload bytes per message (at least 24: the harness's header).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds measured (per step with --find-max).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait after the last send for deliveries still in flight.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Step the rate up until p99 passes --p99-budget-ms or deliveries fall
    /// below 99.9 % of expected (a failing rate is run twice before it
    /// counts); report the highest rate that held.
    #[arg(long)]
    pub find_max: bool,
    /// Latency budget for --find-max, milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub p99_budget_ms: f64,
    /// Most steps --find-max takes.
    #[arg(long, default_value_t = 14)]
    pub max_steps: usize,
    /// Rate multiplier between --find-max steps before the first failure.
    #[arg(long, default_value_t = 1.6)]
    pub step_factor: f64,
    /// Idle timeout asked for the room, milliseconds.
    #[arg(long, default_value_t = 600_000)]
    pub room_idle_ms: u32,
}

#[derive(Args, Debug, Clone)]
pub struct LobbyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Public rooms in the lobby (created with `join:false`). The server
    /// needs `--create-rate 0` (and a high `--rate-limit`) for these.
    #[arg(long, default_value_t = 100_000)]
    pub rooms: usize,
    /// Connections sending the create requests.
    #[arg(long, default_value_t = 8)]
    pub creators: usize,
    /// Create requests in flight per creator connection.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Room changes per second, in percent of the rooms. A change is a
    /// changer connection's `join` of a room or its `leave` --hold-ms
    /// later: each moves the room's `members` and is its own lobby update,
    /// so half as many rooms are joined per second.
    #[arg(long, default_value_t = 1.0)]
    pub change_pct: f64,
    /// Milliseconds a changer stays in a room it joined (more than the
    /// lobby's 250 ms coalescing, so the join and the leave are both seen).
    #[arg(long, default_value_t = 500)]
    pub hold_ms: u64,
    /// Changer connections (each sits in at most --rooms-per-conn rooms at once).
    #[arg(long, default_value_t = 64)]
    pub changers: usize,
    /// Rooms one changer connection may sit in at once (the server's
    /// --max-rooms-per-conn, default 16).
    #[arg(long, default_value_t = 16)]
    pub rooms_per_conn: usize,
    /// Seconds of changes measured (in each of the two phases).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of changes before measuring starts (in each phase).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds after the last change for the coalesced updates still due.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// `limit` of the lobby subscription (the snapshot's most rooms; at most 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Skip the phase of changes with no subscriber (the server CPU baseline).
    #[arg(long)]
    pub no_baseline: bool,
    /// Idle timeout asked for each created room, milliseconds.
    #[arg(long, default_value_t = 600_000)]
    pub room_idle_ms: u32,
}

/// `faults`. The server must be started with `--workers 2` or more and
/// given as `--server-pid` (the supervisor): the harness finds which child
/// process is which worker with probe connections (each `welcome` names its
/// worker; /proc names the process holding the connection).
#[derive(Args, Debug, Clone)]
pub struct FaultsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients in total, each a member of one room (one process, one loop).
    #[arg(long, default_value_t = 200)]
    pub conns: usize,
    /// Members per room (2 to 32; conns must be a multiple of it). Rooms
    /// are named so they are spread evenly over the workers.
    #[arg(long, default_value_t = 4)]
    pub room_size: usize,
    /// `pub` requests per second in total, one room after another, each
    /// with a `rid` and `echo:true` (every member sees the room's whole seq).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Payload bytes per message (at least 24: the harness's header).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds of load; faults begin only within it.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds after the load for answers, resumes and deliveries still
    /// due (the run ends sooner once everything is settled).
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// SIGKILL one worker every SECS of the load, round robin over worker
    /// ids (0 = never). The next fault waits until the replacement accepts.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub kill_every: f64,
    /// SIGSTOP one worker every SECS of the load (0 = never), round robin
    /// with the kills, for --stop-for.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub stop_every: f64,
    /// Milliseconds a stopped worker stays stopped before SIGCONT. Past the
    /// server's --hung-ms (default 10000) its watchdog kills it first, and
    /// that counts as a death.
    #[arg(long, default_value_t = 12_000, value_name = "MS")]
    pub stop_for: u64,
    /// Clients dropped per second (TCP closed without a close frame), each
    /// reconnecting and resuming at once. A resume that lands on another
    /// worker than its session's is relayed: such a client keeps its
    /// session when the worker its connection is on dies.
    #[arg(long, default_value_t = 0.0)]
    pub drops_per_s: f64,
    /// The server's --grace-ms: after the clients leave, sessions of
    /// connections cut off by a death (and seats taken again by fresh
    /// sessions) wait out the grace period before the leftover count.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub grace_ms: u64,
    /// Seconds past --grace-ms the leftover count waits for the gauges
    /// (sessions, shadows, queue places, tokens, members) to reach 0.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Idle timeout asked for each room, milliseconds (short, so rooms
    /// left empty close soon after the run).
    #[arg(long, default_value_t = 1000)]
    pub room_idle_ms: u32,
}

impl Scenario {
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Fanout(a) => &a.common,
            Scenario::Idle(a) => &a.common,
            Scenario::Rooms(a) => &a.common,
            Scenario::Churn(a) => &a.common,
            Scenario::Watch(a) => &a.common,
            Scenario::Lobby(a) => &a.common,
            Scenario::Faults(a) => &a.common,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Idle(_) => "idle",
            Scenario::Rooms(_) => "rooms",
            Scenario::Churn(_) => "churn",
            Scenario::Watch(_) => "watch",
            Scenario::Lobby(_) => "lobby",
            Scenario::Faults(_) => "faults",
        }
    }
}

/// Where and how to connect, resolved from `Common`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub target: Target,
    pub proto: Proto,
    /// roomd: the upgrade path; raw: the template with `{room}`.
    pub path: String,
}

impl Endpoint {
    pub fn from_common(c: &Common) -> Result<Endpoint, String> {
        let rest = c
            .url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("--url {}: only ws:// URLs are supported", c.url))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let addr: SocketAddr = hostport
            .to_socket_addrs()
            .map_err(|e| format!("--url {}: cannot resolve {hostport}: {e}", c.url))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| format!("--url {}: no IPv4 address for {hostport}", c.url))?;
        let (path, extra) = match c.proto {
            Proto::Roomd => {
                let p = if path.is_empty() || path == "/" {
                    "/ws"
                } else {
                    path
                };
                (
                    p.to_string(),
                    "Sec-WebSocket-Protocol: roomd.v1.msgpack\r\n".to_string(),
                )
            }
            Proto::Raw => {
                if !c.raw_path.contains("{room}") {
                    return Err(format!("--raw-path {}: must contain {{room}}", c.raw_path));
                }
                (c.raw_path.clone(), String::new())
            }
        };
        Ok(Endpoint {
            target: Target {
                addr,
                host: hostport.to_string(),
                extra_headers: extra,
                src_addrs: c.src_addrs,
                connect_timeout_ns: secs_ns(c.connect_timeout),
            },
            proto: c.proto,
            path,
        })
    }

    /// The upgrade path for a raw room, or roomd's path.
    pub fn path_for(&self, room: &str) -> String {
        match self.proto {
            Proto::Roomd => self.path.clone(),
            Proto::Raw => self.path.replace("{room}", room),
        }
    }
}

/// The slice `[lo, hi)` of `n` items that process `i` of `k` takes.
pub fn slice(n: usize, i: usize, k: usize) -> (usize, usize) {
    (n * i / k, n * (i + 1) / k)
}

/// Checks shared by all scenarios.
pub fn check_common(c: &Common, conns_per_proc: usize) -> Result<(), String> {
    if c.procs == 0 || c.procs > 64 {
        return Err("--procs must be between 1 and 64".into());
    }
    if conns_per_proc > 19_500 {
        return Err(format!(
            "{conns_per_proc} connections in one process: a process may hold about 20,000 \
             open files here; raise --procs"
        ));
    }
    if c.connect_rate < 0.0 || c.connect_timeout <= 0.0 {
        return Err("--connect-rate must be >= 0 and --connect-timeout > 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_everything_once() {
        for (n, k) in [(10, 3), (100, 7), (5, 5)] {
            let mut next = 0;
            for i in 0..k {
                let (lo, hi) = slice(n, i, k);
                assert_eq!(lo, next);
                next = hi;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn urls_and_paths() {
        let cli = Cli::parse_from([
            "roomd-bench",
            "fanout",
            "--url",
            "ws://127.0.0.1:9000",
            "--proto",
            "raw",
        ]);
        let Command::Scenario(sc) = cli.command else {
            panic!("a scenario")
        };
        let ep = Endpoint::from_common(sc.common()).expect("valid");
        assert_eq!(ep.target.addr.port(), 9000);
        assert_eq!(ep.path_for("x1"), "/r/x1");
        let cli = Cli::parse_from(["roomd-bench", "idle", "--url", "ws://127.0.0.1:9000/"]);
        let Command::Scenario(sc) = cli.command else {
            panic!("a scenario")
        };
        let ep = Endpoint::from_common(sc.common()).expect("valid");
        assert_eq!(ep.path_for("x1"), "/ws");
        assert!(ep.target.extra_headers.contains("roomd.v1.msgpack"));
    }
}
