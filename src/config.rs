//! The command line: every flag of PROTOCOL.md's "Running" section, each also
//! read from `ROOMD_<NAME>`, plus roomd's own limits. Values are validated here
//! so the loop never sees a nonsensical setting.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// roomd: a realtime room server (WebSocket rooms, presence, broadcast).
///
/// Every flag can also be set through an environment variable named
/// ROOMD_<FLAG>, e.g. ROOMD_LISTEN=127.0.0.1:7700 or ROOMD_HB_MS=2000.
/// The wire protocol is PROTOCOL.md (version 1); see README.md for limits.
#[derive(Parser, Debug, Clone)]
#[command(name = "roomd", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Address to serve WebSocket and HTTP on; port 0 picks a free port.
    #[arg(long, env = "ROOMD_LISTEN", default_value = "0.0.0.0:7700")]
    pub listen: SocketAddr,

    /// Worker processes, each one loop on one core, all serving the same
    /// port (SO_REUSEPORT) under a supervisor; 0 means one per core. With 1
    /// the worker runs in this process, with no supervisor.
    #[arg(long, env = "ROOMD_WORKERS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub workers: u32,

    /// Interval between WebSocket pings sent to each client, in ms.
    #[arg(long, env = "ROOMD_HB_MS", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(10..))]
    pub hb_ms: u32,

    /// Ping intervals a client may stay silent before it is dropped (close 4000).
    #[arg(long, env = "ROOMD_HB_MISSES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub hb_misses: u32,

    /// How long a dropped session keeps its seats (others see `away`), in ms.
    #[arg(long, env = "ROOMD_GRACE_MS", default_value_t = 10000)]
    pub grace_ms: u32,

    /// Lifetime of a room with no members, in ms (a room may ask for its own).
    #[arg(long, env = "ROOMD_IDLE_MS", default_value_t = 30000)]
    pub idle_ms: u32,

    /// Largest room size; `create` asking for more (or 0) gets this.
    #[arg(long, env = "ROOMD_MAX_MEMBERS", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_members: u16,

    /// Largest WebSocket message accepted, in bytes (close 1009 past it).
    #[arg(long, env = "ROOMD_MAX_MESSAGE", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(256..=16_777_216))]
    pub max_message: u32,

    /// Rooms one connection may sit in at once (`forbidden` past it):
    /// seats, rooms it watches and matchmaking places together, on every
    /// worker.
    #[arg(long, env = "ROOMD_MAX_ROOMS_PER_CONN", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms_per_conn: u32,

    /// Watchers one room may have (`join` with `watch`; `full` past it).
    #[arg(long, env = "ROOMD_MAX_WATCHERS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub max_watchers: u32,

    /// Bytes of unsent output a connection may hold before it is closed with
    /// 4001 (slow consumer).
    #[arg(long, env = "ROOMD_OUT_BUFFER", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    pub out_buffer: u64,

    /// Messages kept per room for recovery on resume.
    #[arg(long, env = "ROOMD_HISTORY", default_value_t = 64)]
    pub history: u32,

    /// Bytes a room's history may hold (message data plus 24 bytes of
    /// bookkeeping per message); the oldest messages go first.
    #[arg(long, env = "ROOMD_HISTORY_BYTES", default_value_t = 256 * 1024)]
    pub history_bytes: u64,

    /// Bytes the histories of all rooms of a worker may hold together.
    #[arg(long, env = "ROOMD_HISTORY_TOTAL", default_value_t = 256 << 20)]
    pub history_total: u64,

    /// Matchmaking: the rating window a player starts with (points either
    /// side of its rating).
    #[arg(long, env = "ROOMD_MATCH_WINDOW", default_value_t = 50)]
    pub match_window: u32,

    /// Matchmaking: points the window widens per second of waiting.
    #[arg(long, env = "ROOMD_MATCH_WIDEN", default_value_t = 25)]
    pub match_widen: u32,

    /// Matchmaking: the widest window.
    #[arg(long, env = "ROOMD_MATCH_WINDOW_MAX", default_value_t = 500)]
    pub match_window_max: u32,

    /// Matchmaking: how long a player waits when `match` has no `wait_ms`, in ms.
    #[arg(long, env = "ROOMD_MATCH_WAIT_MS", default_value_t = 60000)]
    pub match_wait_ms: u32,

    /// With several workers: a worker that has said it is alive and then
    /// says nothing for this long is hung, and the supervisor kills
    /// (SIGKILL) and restarts it, in ms. Workers say so every second.
    #[arg(long, env = "ROOMD_HUNG_MS", default_value_t = 10000, value_parser = clap::value_parser!(u32).range(1500..))]
    pub hung_ms: u32,

    /// How long a graceful shutdown may take before the process exits anyway, in ms.
    #[arg(long, env = "ROOMD_DRAIN_MS", default_value_t = 5000)]
    pub drain_ms: u32,

    /// HS256 key for client JWTs: when set, every upgrade needs a valid token
    /// (`?token=` or `Authorization: Bearer`), else HTTP 401.
    #[arg(long, env = "ROOMD_JWT_KEY")]
    pub jwt_key: Option<String>,

    /// Bearer key for the HTTP room API under /rooms (absent: the API answers 404).
    #[arg(long, env = "ROOMD_ADMIN_KEY")]
    pub admin_key: Option<String>,

    /// Time a new connection has to complete its HTTP request / upgrade, in ms.
    #[arg(long, env = "ROOMD_HANDSHAKE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub handshake_ms: u32,

    /// Requests per second per connection (token bucket, burst of the same
    /// size); requests past it get `rate_limited`. 0 means unlimited.
    #[arg(long, env = "ROOMD_RATE_LIMIT", default_value_t = 2000)]
    pub rate_limit: u32,

    /// Rooms one connection may create per second (burst of the same size);
    /// 0 means unlimited.
    #[arg(long, env = "ROOMD_CREATE_RATE", default_value_t = 20)]
    pub create_rate: u32,

    /// `pub`/`send` data bytes one connection may send per second (burst of
    /// the same size); 0 means unlimited.
    #[arg(long, env = "ROOMD_PUB_BYTES_RATE", default_value_t = 4 << 20)]
    pub pub_bytes_rate: u32,

    /// WebSocket connections one source address may hold; past it the
    /// upgrade gets 503. 0 means unlimited (the default: behind a proxy every
    /// client shares the proxy's address).
    #[arg(long, env = "ROOMD_MAX_CONNS_PER_IP", default_value_t = 0)]
    pub max_conns_per_ip: u32,

    /// Browser origins allowed to connect, comma-separated (e.g.
    /// https://game.example); an upgrade with another Origin is closed with
    /// 1008. Requests without Origin (non-browser clients) are always allowed.
    /// Empty: any origin.
    #[arg(long, env = "ROOMD_ORIGINS", value_delimiter = ',')]
    pub origins: Vec<String>,

    /// Bad requests in a row (bad_request, unknown_type, rate_limited) before
    /// the connection is closed with 4002.
    #[arg(long, env = "ROOMD_MAX_BAD_REQUESTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_bad_requests: u32,

    /// Conformance testing only: upgrades on this path (e.g. /echo) echo every
    /// message back instead of speaking the room protocol.
    #[arg(long, env = "ROOMD_ECHO_PATH")]
    pub echo_path: Option<String>,

    /// Bytes of unsent output a worker may hold for another worker before
    /// that link is dropped (as lost) and replaced; see README.
    #[arg(long, env = "ROOMD_BUS_BUFFER", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(65536..))]
    pub bus_buffer: u64,

    /// Milliseconds a worker waits for the others' parts of a query that
    /// asks every worker (`list`, a `lobby` snapshot, `GET /rooms`,
    /// `/metrics/all`) or for a room's home to answer an API call; past it
    /// the answer goes out without the missing parts, and says which
    /// workers did not answer. A client request forwarded to a room's home
    /// that has not answered by then gets `err` `internal`.
    #[arg(long, env = "ROOMD_PEER_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..))]
    pub peer_timeout_ms: u32,

    /// Most WebSocket connections this worker holds; upgrades past it get 503.
    /// Sockets past it plus 1024 (for HTTP and handshakes) are closed at accept.
    #[arg(long, env = "ROOMD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: u32,

    /// With several workers, keep each connection on the worker it landed
    /// on: no connection moves to the worker that homes its room (its
    /// room's traffic then crosses the bus; for comparisons).
    #[arg(long, env = "ROOMD_NO_MOVES")]
    pub no_moves: bool,
}

impl Config {
    /// Every option at its default (the embedded defaults `roomd` runs
    /// with when given no arguments).
    pub fn defaults() -> Config {
        Config::parse_from(["roomd"])
    }

    /// `--workers` with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> u32 {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get().min(64) as u32)
    }
    pub fn hb(&self) -> Duration {
        Duration::from_millis(self.hb_ms.into())
    }
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms.into())
    }
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms.into())
    }
    pub fn handshake(&self) -> Duration {
        Duration::from_millis(self.handshake_ms.into())
    }
    /// Silence after which a connection counts as dropped.
    pub fn liveness(&self) -> Duration {
        self.hb() * self.hb_misses
    }
}
