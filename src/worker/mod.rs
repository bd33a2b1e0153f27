//! The worker: one `mio` loop that owns the listener, every connection and
//! the bus links of this process, and drives the room core ([`Hub`]): it
//! turns what it reads into the core's inputs and performs the effects the
//! core leaves ([`Worker::perform`], after every input).
//!
//! A turn, in order (the only place this order is written down):
//! 1. poll (sleeping at most until the nearest of the loop's and the core's
//!    timers, or not at all when work is left over from the last turn);
//! 2. socket events: read what is readable (at most [`READ_CAP`] messages per
//!    connection per turn; the rest goes on `read_more`), each message to the
//!    core; note what is writable; bus links, each message to the core (see
//!    `links`); signals;
//! 3. accept (at most [`ACCEPT_CAP`] per turn);
//! 4. reads left over from the last turn;
//! 5. expire the loop's timers, then the core's ([`Hub::tick`]);
//! 6. close connections that overflowed their output limit (4001);
//! 7. end connections: every close and free asked this turn (and frees asked
//!    by the last flush) is performed here, by [`Worker::end_conns`], the
//!    only code that closes a connection, tells the core its session's
//!    connection is gone ([`Hub::detach`]) and frees its slot;
//! 8. flush pending output, at most [`WRITE_CAP`] bytes per connection, and
//!    the bus links';
//! 9. check shutdown.
//!
//! Everywhere else a connection's end is only asked for (`close_conn`,
//! `free_conn`, the core's `Close` effect): from then on nothing more is read
//! from it or queued for it.
//!
//! Connections are registered once, edge-triggered, for both directions; every
//! read loop ends at WouldBlock or at its cap, and a capped connection is put
//! back on a list so the next turn polls with a zero timeout.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::auth;
use crate::config::Config;
use crate::conn::{CloseReason, Conn, ConnId, Conns, Feed, Io, Parsers, Phase, Ws, WRITE_CAP};
use crate::http::{self, Route};
use crate::hub::effects::{Effect, Out};
use crate::hub::Hub;
use crate::metrics::{Gauges, Metrics};
use crate::protocol::{self, Proto, V};
use crate::timer::Wheel;

mod links;
mod moves;
pub(crate) use links::{link_of, CONTROL};

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);

/// Messages read from one connection per turn before others get a turn.
pub const READ_CAP: usize = 64;
/// Connections accepted per turn.
pub const ACCEPT_CAP: usize = 256;
/// How long a closing connection may take to read our close and hang up.
const LINGER: Duration = Duration::from_secs(5);
/// `retry_ms` advertised in `closing`.
const RETRY_MS: u64 = 1000;
/// tungstenite's read window, allocated per connection and zeroed before each
/// read it makes: small (see `conn::Feed`).
const READ_BUFFER: usize = 256;
/// The worker's shared socket read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Positions in the shared read buffer and the connection's stash while a
/// connection is read.
#[derive(Default)]
pub(crate) struct FeedState {
    pub(crate) stash_pos: usize,
    pub(crate) pos: usize,
    pub(crate) len: usize,
}

/// Everything the loop's timer wheel can hold (the core has its own, see
/// `hub::Timer`). Ids carry generations, so a timer whose connection is
/// gone (or whose slot was reused) does nothing.
#[derive(Debug, Clone, Copy)]
pub enum Timer {
    Handshake(ConnId),
    Heartbeat(ConnId),
    Linger(ConnId),
    AcceptRetry,
    /// Time to tell the supervisor this worker is alive.
    Alive,
}

pub struct Worker {
    pub(crate) cfg: Config,
    pub(crate) id: u32,
    pub(crate) poll: Poll,
    listener: TcpListener,
    local: SocketAddr,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    pub(crate) conns: Conns,
    /// The room core: it takes the inputs read here and leaves effects for
    /// [`Worker::perform`].
    pub(crate) hub: Hub,
    /// The loop's own timers (connections' deadlines, the supervisor's).
    pub(crate) timers: Wheel<Timer>,
    /// Shared socket read buffer (see `conn::Feed`).
    pub(crate) rbuf: Vec<u8>,
    /// Open WebSocket connections, in total and per source address.
    ws_open: usize,
    ws_per_ip: HashMap<std::net::IpAddr, u32>,
    pub(crate) now: Instant,
    /// The links to other workers (`None` when this is the only worker).
    pub(crate) bus: Option<crate::bus::Bus>,
    /// tungstenite contexts not in use (see `conn::Parser`).
    parsers: Parsers,
    /// Connections on their way to another worker and what they take
    /// along (a few at most, within a turn or two; see `moves`).
    pub(crate) moving: Vec<crate::conn::Moving>,
    /// Moves the core asked for in the effects being performed.
    asked: Vec<(ConnId, u32)>,
    draining: Option<Instant>,
    quit: bool,
    accept_more: bool,
}

/// Binds a listening socket: SO_REUSEADDR, and SO_REUSEPORT so several
/// workers can share one port.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

impl Worker {
    /// A worker serving on `listener` (already bound, non-blocking).
    pub fn new(cfg: Config, id: u32, listener: std::net::TcpListener) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(cfg.max_message as usize))
            .max_frame_size(Some(cfg.max_message as usize));
        Ok(Worker {
            conns: Conns::new(cfg.out_buffer as usize),
            id,
            poll,
            listener,
            local,
            signals: None,
            timers: Wheel::new(Duration::from_millis(10), 4096, now),
            rbuf: vec![0; READ_CHUNK],
            ws_open: 0,
            ws_per_ip: HashMap::new(),
            now,
            hub: Hub::new(cfg.clone(), id, now),
            bus: None,
            parsers: Parsers::new(ws_config),
            moving: Vec::new(),
            asked: Vec::new(),
            draining: None,
            quit: false,
            accept_more: true,
            cfg,
        })
    }

    /// SIGTERM and SIGINT drain the worker; a second one exits at once.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut s = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        self.poll
            .registry()
            .register(&mut s, SIGNALS, Interest::READABLE)?;
        self.signals = Some(s);
        Ok(())
    }

    /// The worker's millisecond clock (rate buckets).
    pub(crate) fn millis(&self) -> u32 {
        crate::conn::millis(self.hub.epoch, self.now)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs turns until shutdown completes.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.turn(&mut events)? {
                return Ok(());
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_more
            || !self.conns.pending.is_empty()
            || !self.conns.read_more.is_empty()
            || !self.conns.ending.is_empty()
            || self.bus_busy()
        {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let t = match (self.timers.next_timeout(now), self.hub.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b.saturating_duration_since(now))),
            (a, b) => a.or(b.map(|b| b.saturating_duration_since(now))),
        };
        match self.draining {
            Some(d) => {
                let left = d.saturating_duration_since(now);
                Some(t.map_or(left, |t| t.min(left)))
            }
            None => t,
        }
    }

    /// One turn of the loop; returns true when the worker is done.
    pub fn turn(&mut self, events: &mut Events) -> io::Result<bool> {
        match self.poll.poll(events, self.poll_timeout()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let start = Instant::now();
        self.now = start;
        self.hub.set_time(start);
        for ev in events.iter() {
            match ev.token() {
                LISTENER => self.accept_more = true,
                SIGNALS => self.on_signals(),
                CONTROL => self.on_control(),
                t if link_of(t).is_some() => {
                    if let Some(p) = link_of(t) {
                        self.on_link_event(p, ev);
                    }
                }
                Token(i) => {
                    let Some(id) = self.conns.arena.id_at(i) else {
                        continue;
                    };
                    if ev.is_writable() {
                        if let Some(c) = self.conns.arena.get_mut(id) {
                            if !c.out.is_empty() {
                                Conns::mark_pending(&mut self.conns.pending, c, id);
                            }
                        }
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        self.on_readable(id);
                    }
                }
            }
        }
        if self.accept_more {
            self.accept();
        }
        for id in std::mem::take(&mut self.conns.read_more) {
            if let Some(c) = self.conns.arena.get_mut(id) {
                c.read_more = false;
                self.on_readable(id);
            }
        }
        self.read_links_more();
        self.expire_timers();
        for id in std::mem::take(&mut self.conns.overflow) {
            self.close_conn(id, CloseReason::SlowConsumer);
        }
        self.end_conns();
        self.flush();
        self.flush_bus();
        self.hub.metrics.turn(start.elapsed());
        #[cfg(debug_assertions)]
        self.check_invariants();
        if self.quit {
            info!("w={} second signal: exiting now", self.id);
            return Ok(true);
        }
        if let Some(deadline) = self.draining {
            // Connections still in their HTTP phase are waited for too, so
            // each gets its answer (503 `draining` for `/healthz` and
            // upgrades): bounded by --handshake-ms and the drain deadline.
            let busy = !self.conns.arena.is_empty();
            if !busy || Instant::now() >= deadline {
                info!(
                    "w={} drained ({} connections left)",
                    self.id,
                    self.conns.arena.len()
                );
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn on_signals(&mut self) {
        let n = self
            .signals
            .as_mut()
            .map(|s| s.pending().count())
            .unwrap_or(0);
        for _ in 0..n {
            if self.draining.is_some() {
                self.quit = true;
            } else {
                self.start_drain();
            }
        }
    }

    /// Graceful shutdown: every client gets `closing` then close 1001; new
    /// upgrades and `/healthz` get 503 until the worker exits.
    pub fn start_drain(&mut self) {
        if self.draining.is_some() {
            return;
        }
        info!(
            "w={} draining {} connections (up to {} ms)",
            self.id,
            self.conns.arena.len(),
            self.cfg.drain_ms
        );
        self.draining = Some(self.now + self.cfg.drain());
        let frame = |p| protocol::encode_frame(p, &crate::hub::out::closing(RETRY_MS));
        let (mp, js) = (frame(Proto::Msgpack), frame(Proto::Json));
        for id in self.conns.arena.ids() {
            let proto = match self.conns.arena.get(id).map(|c| &c.phase) {
                Some(Phase::Ws(ws)) => ws.proto,
                _ => continue,
            };
            self.conns
                .push(id, if proto == Proto::Json { &js } else { &mp });
            self.close_conn(id, CloseReason::Shutdown);
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_CAP {
            match self.listener.accept() {
                Ok((sock, peer)) => self.on_accept(sock, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_more = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the pending connection stays in the
                    // backlog; try again shortly instead of spinning.
                    error!("w={} accept: {e}", self.id);
                    self.accept_more = false;
                    self.timers
                        .arm(self.now + Duration::from_millis(100), Timer::AcceptRetry);
                    return;
                }
            }
        }
    }

    fn on_accept(&mut self, sock: mio::net::TcpStream, peer: SocketAddr) {
        self.hub.metrics.accepted += 1;
        if self.conns.arena.len() >= self.cfg.max_connections as usize + 1024 {
            warn!(
                "w={} peer={peer} refused: {} connections open",
                self.id,
                self.conns.arena.len()
            );
            return;
        }
        if let Err(e) = sock.set_nodelay(true) {
            debug!("w={} peer={peer} set_nodelay: {e}", self.id);
        }
        // See `conn`: what the kernel holds counts against --out-buffer.
        let lowat = crate::conn::notsent_lowat(self.conns.out_limit);
        if let Err(e) = socket2::SockRef::from(&sock).set_tcp_notsent_lowat(lowat) {
            debug!("w={} peer={peer} TCP_NOTSENT_LOWAT: {e}", self.id);
        }
        let conn = Conn::new(sock, peer, self.millis());
        let Some(id) = self.take_in(conn) else {
            return;
        };
        trace!("w={} conn={id:?} peer={peer} accepted", self.id);
        // Data may already be waiting (edge-triggered: no event will say so
        // if it arrived before registration).
        self.on_readable(id);
    }

    /// A new client connection joins the loop (accepted here, or taken
    /// from another worker): a slot, the poll registration, the handshake
    /// deadline. `None` when it cannot be registered (it is then freed).
    pub(crate) fn take_in(&mut self, conn: Conn) -> Option<ConnId> {
        let peer = conn.peer;
        let id = self.conns.arena.insert(conn);
        let registered = match self.conns.arena.get_mut(id) {
            Some(c) => self.poll.registry().register(
                &mut c.sock,
                Token(id.index()),
                Interest::READABLE | Interest::WRITABLE,
            ),
            None => Ok(()),
        };
        if let Err(e) = registered {
            error!("w={} peer={peer} register: {e}", self.id);
            self.free_conn(id, CloseReason::Dropped);
            return None;
        }
        let t = self
            .timers
            .arm(self.now + self.cfg.handshake(), Timer::Handshake(id));
        if let Some(c) = self.conns.arena.get_mut(id) {
            c.timer = Some(t);
        }
        Some(id)
    }

    fn on_readable(&mut self, id: ConnId) {
        let Some(c) = self.conns.arena.get(id) else {
            return;
        };
        if c.end.is_some() {
            // The end step reads what is left, if anything.
            return;
        }
        match &c.phase {
            Phase::Http { .. } => self.read_head(id),
            // Read again by `unpause`.
            Phase::Ws(ws) if ws.paused => {}
            Phase::Ws(_) | Phase::Closing { ws: Some(_), .. } => self.read_ws(id),
            Phase::Closing { .. } => self.read_closing(id),
        }
    }

    fn read_head(&mut self, id: ConnId) {
        let now_ms = self.millis();
        let mut buf = [0u8; 4096];
        loop {
            let Some(c) = self.conns.arena.get_mut(id) else {
                return;
            };
            let Phase::Http { head, .. } = &mut c.phase else {
                return;
            };
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    self.free_conn(id, CloseReason::Dropped);
                    return;
                }
                Ok(n) => {
                    self.hub.metrics.bytes_in += n as u64;
                    c.last_rx = now_ms;
                    head.extend_from_slice(&buf[..n]);
                    if self.route_head(id) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.free_conn(id, CloseReason::Dropped);
                    return;
                }
            }
        }
    }

    /// Parses what a connection in its HTTP phase has read, and routes it
    /// once the head (and an API call's body) is whole. Returns whether it
    /// was routed (or answered).
    pub(crate) fn route_head(&mut self, id: ConnId) -> bool {
        let Some(c) = self.conns.arena.get_mut(id) else {
            return true;
        };
        let Phase::Http { head, .. } = &mut c.phase else {
            return true;
        };
        let echo_path = self.cfg.echo_path.as_deref();
        let http::Parse::Done(route, used) = http::parse_with(head, echo_path) else {
            return false;
        };
        let used = used.min(head.len());
        if let Route::Api(api) = &route {
            if api.body_len > self.cfg.max_message as usize {
                self.respond(id, 413, "text/plain", b"body too large\n");
                return true;
            }
            if head.len() - used < api.body_len {
                // Wait for the rest of the body.
                return false;
            }
        }
        let rest = head.split_off(used);
        self.on_route(id, route, rest);
        true
    }

    pub(crate) fn respond(&mut self, id: ConnId, status: u16, ctype: &str, body: &[u8]) {
        self.conns
            .push_raw(id, &http::response(status, ctype, body));
        self.close_conn(id, CloseReason::Http);
    }

    fn on_route(&mut self, id: ConnId, route: Route, rest: Vec<u8>) {
        match route {
            Route::Healthz if self.draining.is_some() => {
                self.respond(id, 503, "text/plain", b"draining\n")
            }
            Route::Healthz => self.respond(id, 200, "text/plain", b"ok\n"),
            Route::Metrics => {
                let body = self.hub.metrics.render(&self.gauges());
                self.respond(id, 200, "text/plain; version=0.0.4", body.as_bytes());
            }
            Route::MetricsAll => {
                let text = self.hub.metrics.render(&self.gauges());
                self.hub.metrics_all(id, text);
                self.perform();
            }
            Route::Static { asset, fresh, head } => {
                self.conns
                    .push_raw(id, &crate::web::response(asset, fresh, head));
                self.close_conn(id, CloseReason::Http);
            }
            Route::Api(api) => {
                let n = api.body_len.min(rest.len());
                self.hub.api(id, api, &rest[..n]);
                self.perform();
            }
            Route::Error(status, body) => {
                debug!(
                    "w={} conn={id:?} HTTP {status}: {}",
                    self.id,
                    body.trim_end()
                );
                self.respond(id, status, "text/plain", body.as_bytes())
            }
            Route::Upgrade(_) if self.draining.is_some() => {
                self.respond(id, 503, "text/plain", b"draining\n")
            }
            Route::Upgrade(up) => {
                if self.hand_off(id, &up, &rest) {
                    return;
                }
                let Some(peer) = self.conns.arena.get(id).map(|c| c.peer) else {
                    return;
                };
                if self.ws_open >= self.cfg.max_connections as usize {
                    warn!(
                        "w={} peer={peer} refused: {} WebSocket connections open",
                        self.id, self.ws_open
                    );
                    self.respond(id, 503, "text/plain", b"server full\n");
                    return;
                }
                let per_ip = self.ws_per_ip.get(&peer.ip()).copied().unwrap_or(0);
                if self.cfg.max_conns_per_ip > 0 && per_ip >= self.cfg.max_conns_per_ip {
                    warn!(
                        "w={} peer={peer} refused: {per_ip} connections from this address",
                        self.id
                    );
                    self.respond(
                        id,
                        503,
                        "text/plain",
                        b"too many connections from your address\n",
                    );
                    return;
                }
                if let Some(origin) = up.origin.as_deref() {
                    if !self.cfg.origins.is_empty() && !self.cfg.origins.iter().any(|o| o == origin)
                    {
                        warn!("w={} peer={peer} refused: origin {origin:?}", self.id);
                        // Upgrade, then close 1008 (policy): a browser script
                        // sees a close code, never an HTTP status.
                        let mut out = http::switching(&up);
                        let reason = b"origin refused";
                        out.extend_from_slice(&[0x88, 2 + reason.len() as u8, 0x03, 0xf0]);
                        out.extend_from_slice(reason);
                        self.conns.push_raw(id, &out);
                        self.close_conn(id, CloseReason::Http);
                        return;
                    }
                }
                let grant = match &self.cfg.jwt_key {
                    None => None,
                    Some(key) => match auth::verify(key.as_bytes(), up.token.as_deref()) {
                        Ok(g) => Some(Box::new(g)),
                        Err(why) => {
                            let peer = self.conns.arena.get(id).map(|c| c.peer);
                            warn!(
                                "w={} conn={id:?} peer={peer:?} refused: token {why:?}",
                                self.id
                            );
                            self.respond(id, 401, "text/plain", b"unauthorized\n");
                            return;
                        }
                    },
                };
                self.open_ws(id, up, rest, grant)
            }
        }
    }

    pub(crate) fn gauges(&self) -> Gauges {
        Gauges {
            worker: self.id,
            connections: self.conns.arena.len(),
            sessions: self.hub.sessions.len(),
            tokens: self.hub.tokens.len(),
            moved: self.hub.moved.len(),
            places: self.hub.lobby.matcher.len(),
            watchers: self
                .hub
                .rooms
                .iter()
                .map(|(_, r)| u64::from(r.watchers()))
                .sum(),
            lobby_subs: self.hub.lobby_list.subs.len(),
            queries: self.hub.lists.len() + self.hub.api_waits.len(),
            rooms: self.hub.rooms.len(),
            members: self.hub.members,
            timers: self.timers.len() + self.hub.timers.len(),
            bus: self.bus.as_ref().map(|b| crate::metrics::BusGauges {
                links: b.links.iter().filter(|l| l.is_some()).count() as u64,
                shadows: self.hub.shadows.len() as u64,
                bytes_in: b.bytes_in,
                bytes_out: b.bytes_out,
                msgs_in: b.msgs_in,
                msgs_out: b.msgs_out,
                peers_lost: b.peers_lost,
            }),
        }
    }

    fn open_ws(
        &mut self,
        id: ConnId,
        up: http::Upgrade,
        rest: Vec<u8>,
        grant: Option<Box<auth::Grant>>,
    ) {
        let sid = match self.hub.open_session(id, up.proto, grant) {
            Ok(sid) => sid,
            Err(e) => {
                error!("w={} no randomness for a session token: {e}", self.id);
                self.respond(id, 503, "text/plain", b"no entropy\n");
                return;
            }
        };
        let ms = self.millis();
        let Some(c) = self.conns.arena.get_mut(id) else {
            return;
        };
        // What followed the head is read first, as the socket's own input.
        if !rest.is_empty() {
            c.stash = Some(Box::new(rest));
        }
        c.out.extend(&http::switching(&up));
        Conns::mark_pending(&mut self.conns.pending, c, id);
        c.phase = Phase::Ws(Ws {
            echo: up.echo,
            ..Ws::new(up.proto, sid, crate::conn::Rates::full(&self.cfg, ms))
        });
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        c.timer = Some(
            self.timers
                .arm(self.now + self.cfg.hb(), Timer::Heartbeat(id)),
        );
        self.hub.metrics.upgrades += 1;
        Self::ws_new(&mut self.ws_open, &mut self.ws_per_ip, c.peer.ip());
        debug!(
            "w={} conn={id:?} peer={} member={} upgraded ({})",
            self.id,
            c.peer,
            self.hub.member_id(sid),
            up.proto.name()
        );
        if up.echo {
            // An echo connection speaks no room protocol: what it sends back
            // must be exactly what it was sent, so no `welcome` and no join.
            self.read_ws(id);
            return;
        }
        self.hub.welcome(sid);
        self.perform();
        if let Some(room) = up.room {
            // As if the client had sent `{"t":"join","room":room}`.
            let join = V::Map(vec![("t", V::Str("join")), ("room", V::Str(&room))]);
            let payload = protocol::encode_payload(up.proto, &join);
            self.on_message(id, &payload, false);
        }
        self.read_ws(id);
    }

    /// `--echo-path`: sends a message back as it came (same opcode).
    fn echo(&mut self, id: ConnId, opcode: u8, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 10);
        protocol::frame_header(&mut frame, opcode, payload.len());
        frame.extend_from_slice(payload);
        self.conns.push(id, &frame);
    }

    /// Reads and handles a connection's messages (at most [`READ_CAP`]),
    /// feeding tungstenite from the worker's shared read buffer; what is left
    /// of that buffer when the loop stops is stashed on the connection.
    fn read_ws(&mut self, id: ConnId) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        if rbuf.is_empty() {
            rbuf = vec![0; READ_CHUNK];
        }
        let mut st = FeedState::default();
        self.read_ws_loop(id, &mut rbuf, &mut st);
        if let Some(c) = self.conns.arena.get_mut(id) {
            if let Some(stash) = &mut c.stash {
                stash.drain(..st.stash_pos.min(stash.len()));
            }
            if st.pos < st.len && c.reads_frames() {
                c.stash
                    .get_or_insert_with(Default::default)
                    .extend_from_slice(&rbuf[st.pos..st.len]);
            }
            if c.stash.as_ref().is_some_and(|s| s.is_empty()) {
                c.stash = None;
            }
        }
        self.rbuf = rbuf;
    }

    /// One message of the client on `id`, for the core (`limit`: past the
    /// request rate first; the `?room=` join is not).
    fn on_message(&mut self, id: ConnId, payload: &[u8], limit: bool) {
        let Some(c) = self.conns.arena.get_mut(id) else {
            return;
        };
        let Phase::Ws(ws) = &mut c.phase else {
            return;
        };
        let at = (id, ws.session, ws.proto);
        if limit {
            self.hub.on_message(at, &mut ws.rates, payload);
        } else {
            self.hub.on_request(at, &mut ws.rates, payload);
        }
        if self.perform() {
            self.keep_request(id, payload);
        }
    }

    /// Performs the core's effects, in order: frames queued on connections
    /// (a fan-out's same bytes on each of its), closes and pauses asked,
    /// bad-request counts kept, and bus messages moved onto their links.
    /// Called after every input handed to the core.
    /// Returns whether a connection was asked to move.
    pub(crate) fn perform(&mut self) -> bool {
        if !self.hub.out.is_empty() {
            let max_bad = self.cfg.max_bad_requests;
            perform(
                &mut self.conns,
                &mut self.hub.out,
                &mut self.hub.metrics,
                max_bad,
                &mut self.asked,
            );
        }
        self.take_bus_output();
        if self.asked.is_empty() {
            return false;
        }
        for (conn, to) in self.asked.drain(..) {
            self.moving.push(crate::conn::Moving {
                conn,
                to,
                hops: 0,
                req: None,
                carry: Vec::new(),
            });
        }
        true
    }

    fn read_ws_loop(&mut self, id: ConnId, rbuf: &mut [u8], st: &mut FeedState) {
        let now_ms = self.millis();
        for _ in 0..READ_CAP {
            let (res, nread, echo, moving) = {
                let Some(c) = self.conns.arena.get_mut(id) else {
                    return;
                };
                if c.end.is_some() {
                    return;
                }
                let (ws, moving) = match &mut c.phase {
                    Phase::Ws(ws) if ws.paused => return,
                    Phase::Ws(ws) => {
                        let moving = ws.moving;
                        (ws, moving)
                    }
                    Phase::Closing { ws: Some(ws), .. } => (ws, false),
                    _ => return,
                };
                let parser = ws.parser.get_or_insert_with(|| self.parsers.take());
                let mut io = Io {
                    sock: &mut c.sock,
                    out: &mut c.out,
                    nread: 0,
                    feed: Some(Feed {
                        sock: !moving,
                        stash: c.stash.as_deref().map_or(&[][..], |s| &s[..]),
                        stash_pos: st.stash_pos,
                        buf: rbuf,
                        pos: st.pos,
                        len: st.len,
                    }),
                    track: Some(&mut parser.track),
                };
                let res = parser.ctx.read(&mut io);
                if let Some(f) = &io.feed {
                    (st.stash_pos, st.pos, st.len) = (f.stash_pos, f.pos, f.len);
                }
                let n = io.nread;
                let echo = ws.echo;
                if n > 0 {
                    c.last_rx = now_ms;
                }
                if !c.out.is_empty() {
                    Conns::mark_pending(&mut self.conns.pending, c, id);
                }
                // All input so far parsed, and it ended a message: the
                // parser holds nothing this connection needs until it sends
                // again.
                if let (Phase::Ws(ws), Err(tungstenite::Error::Io(e))) = (&mut c.phase, &res) {
                    if e.kind() == io::ErrorKind::WouldBlock
                        && ws.parser.as_ref().is_some_and(|p| p.track.at_boundary())
                    {
                        if let Some(p) = ws.parser.take() {
                            self.parsers.put(p);
                        }
                    }
                }
                (res, n, echo, moving)
            };
            self.hub.metrics.bytes_in += nread as u64;
            use tungstenite::error::{Error as E, ProtocolError as P};
            if let Some(c) = self.conns.arena.get_mut(id) {
                if let Phase::Closing { ws, peer_done, .. } = &mut c.phase {
                    // The server sent a close: data still in flight is
                    // dropped; the peer's close completes the handshake.
                    match res {
                        Ok(Message::Close(_)) => {
                            *peer_done = true;
                            if c.out.is_empty() {
                                self.free_conn(id, CloseReason::Dropped);
                            }
                            return;
                        }
                        Ok(_) => continue,
                        Err(E::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(E::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // Nothing more to parse: drain raw until EOF
                            // (freeing now, with input unread, would reset
                            // the connection and lose our close frame).
                            debug!("w={} conn={id:?} closing: {e}", self.id);
                            *ws = None;
                            self.read_closing(id);
                            return;
                        }
                    }
                }
            }
            if moving {
                match res {
                    Ok(Message::Binary(b)) => {
                        if !self.carry(id, &b) {
                            self.on_message(id, &b, true);
                        }
                        continue;
                    }
                    Ok(Message::Text(t)) => {
                        if !self.carry(id, t.as_bytes()) {
                            self.on_message(id, t.as_bytes(), true);
                        }
                        continue;
                    }
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                    Err(E::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Everything read is parsed: it goes now, or
                        // stays and reading goes on.
                        if self.finish_move(id, rbuf, st) {
                            return;
                        }
                        continue;
                    }
                    Err(E::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // A close or an error: it stays, and this is handled
                    // after what came before it.
                    _ => self.stay(id),
                }
            }
            match res {
                Ok(Message::Binary(b)) if echo => self.echo(id, 0x2, &b),
                Ok(Message::Text(t)) if echo => self.echo(id, 0x1, t.as_bytes()),
                Ok(Message::Binary(b)) => self.on_message(id, &b, true),
                Ok(Message::Text(t)) => self.on_message(id, t.as_bytes(), true),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(f)) => {
                    let normal = f.is_some_and(|f| f.code == CloseCode::Normal);
                    self.close_conn(
                        id,
                        if normal {
                            CloseReason::ClientNormal
                        } else {
                            CloseReason::ClientOther
                        },
                    );
                    return;
                }
                Err(E::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(E::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = match e {
                        E::Capacity(_) => CloseReason::TooBig,
                        E::Utf8(_) => CloseReason::BadUtf8,
                        E::Protocol(P::ResetWithoutClosingHandshake) => CloseReason::Dropped,
                        E::Protocol(_) => CloseReason::Protocol,
                        E::ConnectionClosed | E::AlreadyClosed | E::Io(_) => CloseReason::Dropped,
                        _ => CloseReason::Internal,
                    };
                    debug!("w={} conn={id:?} read: {e} -> {}", self.id, reason.label());
                    self.close_conn(id, reason);
                    return;
                }
            }
            // A handler may have closed the connection: keep reading to
            // WouldBlock in closing mode (edge-triggered: no new event would
            // come for input already waiting).
            match self.conns.arena.get(id).map(|c| &c.phase) {
                Some(Phase::Ws(_) | Phase::Closing { ws: Some(_), .. }) => {}
                Some(Phase::Closing { ws: None, .. }) => {
                    self.read_closing(id);
                    return;
                }
                _ => return,
            }
        }
        if let Some(c) = self.conns.arena.get_mut(id) {
            if !c.read_more {
                c.read_more = true;
                self.conns.read_more.push(id);
            }
        }
    }

    /// Discards input from a closing connection that has nothing more to
    /// parse, until EOF (lingering close).
    fn read_closing(&mut self, id: ConnId) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            let Some(c) = self.conns.arena.get_mut(id) else {
                return;
            };
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    self.free_conn(id, CloseReason::Dropped);
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.free_conn(id, CloseReason::Dropped);
                    return;
                }
            }
        }
        if let Some(c) = self.conns.arena.get_mut(id) {
            if !c.read_more {
                c.read_more = true;
                self.conns.read_more.push(id);
            }
        }
    }

    /// Asks for a connection to be closed for `reason`: the end step of the
    /// turn closes it. Idempotent (the first reason stays).
    pub(crate) fn close_conn(&mut self, id: ConnId, reason: CloseReason) {
        self.conns.ask_end(id, reason, false);
    }

    /// Asks for a connection to be freed (its socket is dead or done), after
    /// its close where it is still open: the end step of the turn does it.
    fn free_conn(&mut self, id: ConnId, reason: CloseReason) {
        self.conns.ask_end(id, reason, true);
    }

    /// Step 7 of the turn: performs every end asked, including those asked
    /// while it runs (letting a session go may end others). The only caller
    /// of [`Worker::close_now`] and [`Worker::release`].
    fn end_conns(&mut self) {
        let mut i = 0;
        while i < self.conns.ending.len() {
            let id = self.conns.ending[i];
            i += 1;
            let Some(c) = self.conns.arena.get_mut(id) else {
                continue;
            };
            let Some(end) = c.end.take() else {
                continue;
            };
            let open = matches!(c.phase, Phase::Ws(_));
            let release = if end.free && !open {
                true
            } else {
                self.close_now(id, end.reason) || end.free
            };
            if release {
                self.release(id);
            } else if let Some(c) = self.conns.arena.get_mut(id) {
                // Input that waited while the end was asked is read (and
                // dropped, or parsed for the peer's close) next turn: no new
                // event would say it is there.
                if !c.read_more {
                    c.read_more = true;
                    self.conns.read_more.push(id);
                }
            }
        }
        self.conns.ending.clear();
    }

    /// Closes a connection: sends the close frame where the server is the
    /// one closing, lets its session go (at once or into the grace period),
    /// and moves it to `Closing`. Returns whether it is to be freed now (the
    /// socket is already dead). Only from `end_conns`.
    fn close_now(&mut self, id: ConnId, reason: CloseReason) -> bool {
        let Some(c) = self.conns.arena.get_mut(id) else {
            return false;
        };
        let phase = std::mem::replace(
            &mut c.phase,
            Phase::Closing {
                ws: None,
                fin_sent: false,
                peer_done: false,
            },
        );
        let mut session = None;
        match phase {
            Phase::Closing { .. } => {
                c.phase = phase;
                return false;
            }
            Phase::Http { .. } => {}
            Phase::Ws(mut ws) => {
                let ip = c.peer.ip();
                Self::ws_gone(&mut self.ws_open, &mut self.ws_per_ip, ip);
                if ws.moving {
                    // Closed on its way: nothing goes, nothing more runs.
                    ws.moving = false;
                    self.moving.retain(|m| m.conn != id);
                }
                let mut io = Io {
                    sock: &mut c.sock,
                    out: &mut c.out,
                    nread: 0,
                    feed: None,
                    track: None,
                };
                // Results are ignored: the frame is queued into our own buffer
                // (which never refuses), or the context is already closed.
                // Only a close frame of ours needs a parser lent for it; a
                // connection without one has nothing of tungstenite's to
                // flush (a dropped socket takes none from the pool).
                let _ = match (reason.code(), &mut ws.parser) {
                    (Some(code), parser) => {
                        parser.get_or_insert_with(|| self.parsers.take()).ctx.close(
                            &mut io,
                            Some(CloseFrame {
                                code: CloseCode::from(code),
                                reason: reason.label().into(),
                            }),
                        )
                    }
                    // The client closed: this flushes tungstenite's reply.
                    (None, Some(parser)) => parser.ctx.flush(&mut io),
                    (None, None) => Ok(()),
                };
                session = Some(ws.session);
                let client_closed =
                    matches!(reason, CloseReason::ClientNormal | CloseReason::ClientOther);
                c.phase = Phase::Closing {
                    ws: (!client_closed).then_some(ws),
                    fin_sent: false,
                    peer_done: client_closed,
                };
            }
        }
        self.hub.metrics.closes[reason.index()] += 1;
        debug!(
            "w={} conn={id:?} peer={} closing: {}",
            self.id,
            c.peer,
            reason.label()
        );
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        let dead = reason == CloseReason::Dropped;
        if !dead {
            c.timer = Some(self.timers.arm(self.now + LINGER, Timer::Linger(id)));
            Conns::mark_pending(&mut self.conns.pending, c, id);
        }
        if let Some(sid) = session {
            self.hub.detach(sid, reason);
            self.perform();
        }
        dead
    }

    /// One open WebSocket connection (from `ip`) fewer.
    pub(crate) fn ws_gone(
        open: &mut usize,
        per_ip: &mut HashMap<std::net::IpAddr, u32>,
        ip: std::net::IpAddr,
    ) {
        *open -= 1;
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// One open WebSocket connection (from `ip`) more.
    pub(crate) fn ws_new(
        open: &mut usize,
        per_ip: &mut HashMap<std::net::IpAddr, u32>,
        ip: std::net::IpAddr,
    ) {
        *open += 1;
        *per_ip.entry(ip).or_insert(0) += 1;
    }

    /// Deregisters the socket and frees the slot (closing the socket): the
    /// one place a client connection leaves the arena. Only from `end_conns`.
    fn release(&mut self, id: ConnId) {
        self.moving.retain(|m| m.conn != id);
        if let Some(mut c) = self.conns.arena.remove(id) {
            if let Some(t) = c.timer.take() {
                self.timers.cancel(t);
            }
            if let Err(e) = self.poll.registry().deregister(&mut c.sock) {
                debug!("w={} conn={id:?} deregister: {e}", self.id);
            }
            trace!("w={} conn={id:?} freed", self.id);
        }
    }

    fn expire_timers(&mut self) {
        let mut due = Vec::new();
        self.timers.expire(self.now, &mut due);
        for t in due {
            match t {
                Timer::Handshake(id) => {
                    if let Some(c) = self.conns.arena.get_mut(id) {
                        c.timer = None;
                        if matches!(c.phase, Phase::Http { .. }) {
                            debug!(
                                "w={} conn={id:?} peer={} handshake timeout",
                                self.id, c.peer
                            );
                            self.hub.metrics.closes[CloseReason::HandshakeTimeout.index()] += 1;
                            self.free_conn(id, CloseReason::HandshakeTimeout);
                        }
                    }
                }
                Timer::Heartbeat(id) => self.heartbeat(id),
                Timer::Linger(id) => {
                    if let Some(c) = self.conns.arena.get_mut(id) {
                        c.timer = None;
                    }
                    self.free_conn(id, CloseReason::Dropped);
                }
                Timer::AcceptRetry => self.accept_more = true,
                Timer::Alive => self.alive(),
            }
        }
        self.hub.tick(self.now);
        self.perform();
    }

    /// PROTOCOL.md "Liveness": a ping every `hb_ms`; silence for `hb_ms *
    /// hb_misses` is a drop (close 4000).
    fn heartbeat(&mut self, id: ConnId) {
        let now_ms = self.millis();
        let Some(c) = self.conns.arena.get_mut(id) else {
            return;
        };
        c.timer = None;
        if !c.is_open_ws() {
            return;
        }
        let quiet = u128::from(now_ms.wrapping_sub(c.last_rx));
        if quiet >= self.cfg.liveness().as_millis() {
            debug!(
                "w={} conn={id:?} peer={} heartbeat timeout",
                self.id, c.peer
            );
            self.close_conn(id, CloseReason::Timeout);
            return;
        }
        // RFC 6455 5.5.2: a Ping frame, opcode 0x9, empty payload.
        self.conns.push(id, &[0x89, 0x00]);
        let t = self
            .timers
            .arm(self.now + self.cfg.hb(), Timer::Heartbeat(id));
        if let Some(c) = self.conns.arena.get_mut(id) {
            c.timer = Some(t);
        }
    }

    fn flush(&mut self) {
        let list = std::mem::take(&mut self.conns.pending);
        for id in list {
            let Some(c) = self.conns.arena.get_mut(id) else {
                continue;
            };
            c.pending = false;
            let mut written = 0;
            let mut dead = false;
            while !c.out.is_empty() {
                if written >= WRITE_CAP {
                    c.pending = true;
                    self.conns.pending.push(id);
                    break;
                }
                match c.sock.write(c.out.unsent()) {
                    Ok(0) => {
                        dead = true;
                        break;
                    }
                    Ok(n) => {
                        c.out.consume(n);
                        written += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Once per turn per blocked connection (see `conn`).
                        c.read_kernel();
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        dead = true;
                        break;
                    }
                }
            }
            if c.out.is_empty() {
                c.kernel = 0;
                // An idle connection holds no output memory (the upgrade
                // response and `welcome` left a few hundred bytes of it).
                // Costs a malloc per connection per turn it is written to,
                // beside the write itself.
                c.out.release();
            }
            self.hub.metrics.bytes_out += written as u64;
            if dead {
                self.free_conn(id, CloseReason::Dropped);
                continue;
            }
            if let Phase::Closing {
                fin_sent,
                peer_done,
                ..
            } = &mut c.phase
            {
                if c.out.is_empty() && *peer_done {
                    self.free_conn(id, CloseReason::Dropped);
                    continue;
                }
                if c.out.is_empty() && !*fin_sent {
                    *fin_sent = true;
                    // Our last bytes are out: send FIN, then wait for the
                    // peer's EOF (or the linger timer) before closing.
                    if c.sock.shutdown(Shutdown::Write).is_err() {
                        self.free_conn(id, CloseReason::Dropped);
                    }
                }
            }
        }
    }

    /// Debug builds check the cross-arena invariants after every turn.
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        use crate::session::Attach;
        // What a moving connection takes along is kept once, for an open
        // connection that is moving; it goes when it moves, stays or ends.
        for m in &self.moving {
            let c = self.conns.arena.get(m.conn);
            debug_assert!(matches!(c.map(|c| &c.phase), Some(Phase::Ws(ws)) if ws.moving));
            debug_assert_eq!(self.moving.iter().filter(|x| x.conn == m.conn).count(), 1);
        }
        let mut seats = 0;
        for (rid, room) in self.hub.rooms.iter() {
            debug_assert_eq!(
                room.members.is_empty(),
                room.idle.is_some(),
                "idle timer iff empty"
            );
            debug_assert_eq!(self.hub.names.get(&self.hub.rooms, &room.name), Some(rid));
            for m in &room.members {
                let s = self.hub.sessions.get(m.session);
                debug_assert!(s.is_some_and(|s| s.seats.contains(&rid) && s.member == m.id));
            }
            seats += room.members.len();
            debug_assert_eq!(room.lobby_dirty(), self.hub.lobby_list.dirty.contains(&rid));
            debug_assert!(self.hub.lobby_list.active || !room.lobby_dirty());
            if self.hub.lobby_list.active && !room.private() {
                debug_assert!(room.lobby_dirty() || self.hub.lobby_list.shown.contains_key(&rid));
            }
            if let Some(x) = room.extra.as_deref() {
                let mut live = 0;
                for w in &x.watchers {
                    let s = self.hub.sessions.get(w.session);
                    debug_assert!(s.is_some_and(|s| s.watching.contains(&rid) && s.member == w.id));
                    live += u32::from(s.is_some_and(|s| s.live()));
                }
                debug_assert_eq!(live, x.attached, "attached watchers of {:?}", room.name);
            }
        }
        debug_assert_eq!(seats, self.hub.members);
        debug_assert_eq!(self.hub.names.len(), self.hub.rooms.len());
        if !self.hub.lobby_list.active {
            debug_assert!(self.hub.lobby_list.shown.is_empty());
        }
        for (sid, s) in self.hub.sessions.iter() {
            debug_assert_eq!(s.lobby.is_some(), self.hub.lobby_list.subs.contains(&sid));
            debug_assert!(s.resuming.is_none() || s.attached());
            match &s.at {
                Attach::On(_) | Attach::Away { .. } => {}
                Attach::Detached => debug_assert!(false, "detached past its turn"),
                Attach::Shadow(sh) => {
                    // Out of the index only once its worker is lost.
                    let lost = matches!(sh.client, crate::session::Far::Lost { .. });
                    debug_assert!(
                        lost || self.hub.shadows.get(&(sh.worker, sh.rsid)) == Some(&sid)
                    );
                }
            }
        }
    }
}

/// Performs the core's effects on the connections, in order, and forgets
/// them (see [`Worker::perform`]; the bus messages are moved by the
/// caller). `max_bad`: `--max-bad-requests`.
/// Moves asked are set on their connections and listed in `moves`.
pub fn perform(
    conns: &mut Conns,
    out: &mut Out,
    metrics: &mut Metrics,
    max_bad: u32,
    moves: &mut Vec<(ConnId, u32)>,
) {
    for &e in &out.list {
        match e {
            Effect::Send { conn, bytes, count } => {
                if conns.push(conn, out.get(bytes)) && count {
                    metrics.deliveries += 1;
                }
            }
            Effect::Raw { conn, bytes } => conns.push_raw(conn, out.get(bytes)),
            Effect::Fan {
                msgpack,
                json,
                from,
                to,
                count,
            } => {
                let targets = out.targets.get(from as usize..to as usize);
                let (mp, js) = (out.get(msgpack), out.get(json));
                let n = conns.fanout(targets.unwrap_or_default(), mp, js);
                if count {
                    metrics.deliveries += n;
                }
            }
            Effect::Close(conn, why) => conns.ask_end(conn, why, false),
            Effect::Pause(conn, paused) => conns.set_paused(conn, paused),
            Effect::Outcome(conn, bad) => {
                let Some(c) = conns.arena.get_mut(conn) else {
                    continue;
                };
                let Phase::Ws(ws) = &mut c.phase else {
                    continue;
                };
                if !bad {
                    ws.bad = 0;
                    continue;
                }
                ws.bad += 1;
                if ws.bad >= max_bad {
                    warn!("conn={conn:?} {max_bad} bad requests in a row");
                    conns.ask_end(conn, CloseReason::BadRequests, false);
                }
            }
            Effect::Bind(conn, sid) => {
                if let Some(Phase::Ws(ws)) = conns.arena.get_mut(conn).map(|c| &mut c.phase) {
                    ws.session = sid;
                }
            }
            Effect::Move(conn, to) => {
                // The loop keeps the request (`Worker::on_message`) and
                // moves it at the parser's next message boundary.
                if let Some(Phase::Ws(ws)) = conns.arena.get_mut(conn).map(|c| &mut c.phase) {
                    ws.moving = true;
                    moves.push((conn, to));
                }
            }
        }
    }
    out.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    /// Open WebSocket connections on loopback sockets, one per subprotocol
    /// given, and the client ends (kept open).
    fn conns(protos: &[Proto]) -> (Conns, Vec<ConnId>, Vec<std::net::TcpStream>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut conns = Conns::new(1 << 20);
        let (mut ids, mut clients) = (Vec::new(), Vec::new());
        for (i, &proto) in protos.iter().enumerate() {
            let client = std::net::TcpStream::connect(addr).expect("connect");
            let (server, peer) = l.accept().expect("accept");
            server.set_nonblocking(true).expect("nonblocking");
            let mut c = Conn::new(mio::net::TcpStream::from_std(server), peer, 0);
            let rates = crate::conn::Rates::full(&Config::defaults(), 0);
            c.phase = Phase::Ws(Ws::new(proto, SessionId::from_bits(i as u64), rates));
            ids.push(conns.arena.insert(c));
            clients.push(client);
        }
        (conns, ids, clients)
    }

    fn out_of(conns: &Conns, id: ConnId) -> Vec<u8> {
        conns
            .arena
            .get(id)
            .map(|c| c.out.unsent().to_vec())
            .unwrap_or_default()
    }

    fn ws(conns: &Conns, id: ConnId) -> &Ws {
        match conns.arena.get(id).map(|c| &c.phase) {
            Some(Phase::Ws(ws)) => ws,
            _ => panic!("not an open WebSocket"),
        }
    }

    #[test]
    fn effects_are_performed_in_order_and_deliveries_counted_when_queued() {
        let (mut conns, ids, _clients) = conns(&[Proto::Msgpack, Proto::Json]);
        let (a, b) = (ids[0], ids[1]);
        let mut out = Out::new(1 << 20);
        let mut m = Metrics::default();
        out.send(a, b"one", true);
        out.push(b, b"not counted");
        let msgpack = out.keep(b"MP");
        let json = out.keep(b"JS");
        out.targets.extend([(a, Proto::Msgpack), (b, Proto::Json)]);
        out.list.push(Effect::Fan {
            msgpack,
            json,
            from: 0,
            to: 2,
            count: true,
        });
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        assert_eq!(out_of(&conns, a), b"oneMP");
        assert_eq!(out_of(&conns, b), b"not countedJS");
        assert_eq!(m.deliveries, 3, "one unicast and two of the fan-out");
        assert!(out.list.is_empty() && out.bytes.is_empty() && out.targets.is_empty());

        // A close is asked, and what follows it for that connection is
        // not queued (nor counted).
        out.close(a, CloseReason::Replaced);
        out.send(a, b"late", true);
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        assert_eq!(out_of(&conns, a), b"oneMP");
        assert_eq!(m.deliveries, 3);
        assert_eq!(conns.ending, vec![a]);
        let end = conns.arena.get(a).and_then(|c| c.end);
        assert_eq!(end.map(|e| e.reason), Some(CloseReason::Replaced));
    }

    #[test]
    fn bad_requests_in_a_row_close_4002_and_a_good_one_starts_the_count_again() {
        let (mut conns, ids, _clients) = conns(&[Proto::Json]);
        let a = ids[0];
        let (mut out, mut m) = (Out::new(1 << 20), Metrics::default());
        for bad in [true, true, false, true, true] {
            out.outcome(a, bad);
        }
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        assert_eq!(ws(&conns, a).bad, 2, "counted again from the good one");
        assert!(conns.ending.is_empty());
        out.outcome(a, true);
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        let end = conns.arena.get(a).and_then(|c| c.end);
        assert_eq!(end.map(|e| e.reason), Some(CloseReason::BadRequests));
    }

    #[test]
    fn pause_bind_and_raw_answers() {
        let (mut conns, ids, _clients) = conns(&[Proto::Json]);
        let a = ids[0];
        let (mut out, mut m) = (Out::new(1 << 20), Metrics::default());
        out.pause(a, true);
        out.bind(a, SessionId::from_bits(77));
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        assert!(ws(&conns, a).paused);
        assert_eq!(ws(&conns, a).session, SessionId::from_bits(77));
        out.pause(a, false);
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        assert!(!ws(&conns, a).paused);
        assert_eq!(conns.read_more, vec![a], "read again: input may wait");

        // An HTTP answer goes out whatever the phase, then the close.
        if let Some(c) = conns.arena.get_mut(a) {
            c.phase = Phase::Http {
                head: Vec::new(),
                moved: false,
            };
        }
        out.respond(a, 404, "text/plain", b"no\n");
        perform(&mut conns, &mut out, &mut m, 3, &mut Vec::new());
        let sent = String::from_utf8(out_of(&conns, a)).expect("text");
        assert!(
            sent.starts_with("HTTP/1.1 404") && sent.ends_with("no\n"),
            "{sent}"
        );
        let end = conns.arena.get(a).and_then(|c| c.end);
        assert_eq!(end.map(|e| e.reason), Some(CloseReason::Http));
    }
}
