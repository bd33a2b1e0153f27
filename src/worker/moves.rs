//! Connections move to their room's home (issue 11), the loop's side; the
//! core decides (see `hub::moves`).
//!
//! Two ways:
//! - An upgrade that names a room (`/?room=`) homed on another worker is
//!   handed there before the 101 ([`Worker::hand_off`]): the socket goes
//!   over the bus link as `SCM_RIGHTS`, with everything read from it so far
//!   (`BusMsg::Handoff`); the home parses the head again and serves the
//!   connection as if it had accepted it.
//! - An open connection whose request the core moves (`Effect::Move`: its
//!   first `join`, `create` or `match` for a room homed elsewhere, or a
//!   `hello` resuming a session that lives elsewhere) goes at the parser's
//!   next message boundary ([`Worker::finish_move`]): the parser is drained
//!   of what it holds without reading the socket again, the whole messages
//!   that followed the request are kept, and once the parser holds no part
//!   of a frame the socket goes with the session, the request, those
//!   messages, the bytes read and not parsed, the bytes not yet written
//!   and the rate buckets (`BusMsg::Move`). The new worker runs them in
//!   that order and reads on; the client sees nothing.
//!
//! A connection that cannot go (the link is down or over `--bus-buffer`,
//! the parser holds part of a frame, the client closed, the socket cannot
//! be duplicated) stays ([`Worker::stay`]): its request and what followed
//! run here as before. A connection is handed on at most once.

use std::os::fd::{AsFd, OwnedFd};

use log::{debug, warn};

use crate::conn::{Conn, ConnId, Conns, Phase, Rates, Ws};
use crate::http::Upgrade;
use crate::hub::bus_msg::{Arrival, BusMsg, Seq};
use crate::hub::effects::CloseReason;
use crate::hub::moves::Emigrant;

use super::{FeedState, Timer, Worker};

const OUT: usize = 0;
const IN: usize = 1;
const REFUSED: usize = 2;

impl Worker {
    /// Hands connection `id` (its upgrade `up` parsed, `rest` read after
    /// the head) to the home of the room it names, if that is another
    /// worker that can take it. Returns whether it was handed on.
    pub(crate) fn hand_off(&mut self, id: ConnId, up: &Upgrade, rest: &[u8]) -> bool {
        let Some(room) = up.room.as_deref() else {
            return false;
        };
        if up.echo {
            return false;
        }
        let Some(home) = self.hub.remote_home_of(room) else {
            return false;
        };
        if !matches!(
            self.conns.arena.get(id).map(|c| &c.phase),
            Some(Phase::Http { moved: false, .. })
        ) {
            return false;
        }
        let Some(fd) = self.socket_for(id, home) else {
            return false;
        };
        let Some(c) = self.conns.arena.get_mut(id) else {
            return false;
        };
        let Phase::Http { head, .. } = &mut c.phase else {
            return false;
        };
        let mut bytes = std::mem::take(head);
        bytes.extend_from_slice(rest);
        debug!(
            "w={} conn={id:?} peer={} handed to worker {home} (room {room:?})",
            self.id, c.peer
        );
        let mut m = Vec::new();
        BusMsg::Handoff { head: &bytes }.encode(&mut m);
        self.send_socket(home, &m, fd);
        self.free_conn(id, CloseReason::Moved);
        true
    }

    /// A copy of connection `id`'s socket to send to worker `to`, if its
    /// link is up and under `--bus-buffer` (else the move is counted
    /// refused).
    fn socket_for(&mut self, id: ConnId, to: u32) -> Option<OwnedFd> {
        let c = self.conns.arena.get(id)?;
        let bus = self.bus.as_mut()?;
        let limit = bus.out_limit;
        let up = match bus.links.get_mut(to as usize) {
            Some(Some(link)) => !link.over(limit),
            _ => false,
        };
        let fd = match up {
            true => c.sock.as_fd().try_clone_to_owned(),
            false => Err(std::io::ErrorKind::NotConnected.into()),
        };
        match fd {
            // Ours is closed when the slot is freed; the copy travels.
            Ok(fd) => Some(fd),
            Err(e) => {
                debug!("w={} conn={id:?} stays (worker {to}): {e}", self.id);
                self.hub.metrics.moves[REFUSED] += 1;
                None
            }
        }
    }

    /// Sends message `m` (encoded) with the socket `fd` to worker `to` (its
    /// link is there: see [`Worker::socket_for`]).
    fn send_socket(&mut self, to: u32, m: &[u8], fd: OwnedFd) {
        // Bus messages of the core go first, in order.
        self.take_bus_output();
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let Some(Some(link)) = bus.links.get_mut(to as usize) else {
            return;
        };
        link.send_encoded_with_fd(m, fd);
        if !link.pending {
            link.pending = true;
            bus.pending.push(to);
        }
        bus.msgs_out += 1;
        self.hub.metrics.moves[OUT] += 1;
    }

    /// The moving connection `id` (if the request `payload` just asked
    /// for its move) takes it along.
    pub(crate) fn keep_request(&mut self, id: ConnId, payload: &[u8]) {
        if let Some(m) = self
            .moving
            .iter_mut()
            .find(|m| m.conn == id && m.req.is_none())
        {
            m.req = Some(payload.to_vec());
        }
    }

    /// A whole message read after the request a connection moves with:
    /// kept (true), or false when the connection is not moving.
    pub(crate) fn carry(&mut self, id: ConnId, msg: &[u8]) -> bool {
        match self.moving.iter_mut().find(|m| m.conn == id) {
            Some(m) => {
                m.carry.push(msg.to_vec());
                true
            }
            None => false,
        }
    }

    /// What connection `id` was to take along, no longer moving.
    fn take_moving(&mut self, id: ConnId) -> Option<crate::conn::Moving> {
        if let Some(Phase::Ws(ws)) = self.conns.arena.get_mut(id).map(|c| &mut c.phase) {
            ws.moving = false;
        }
        let i = self.moving.iter().position(|m| m.conn == id)?;
        Some(self.moving.swap_remove(i))
    }

    /// Messages of connection `id` read after a request, in order: run,
    /// or, once one of them (or the request) moves it, kept for the move.
    fn run_after<'m>(&mut self, id: ConnId, msgs: impl Iterator<Item = &'m [u8]>) {
        for m in msgs {
            // As the read loop: nothing more is read from a connection
            // whose end was asked.
            if self.conns.arena.get(id).is_none_or(|c| c.end.is_some()) {
                return;
            }
            if !self.carry(id, m) {
                self.on_message(id, m, true);
            }
        }
    }

    /// Connection `id`, moving, has all it read parsed (`rbuf` and `st`:
    /// the shared read buffer and where its reading stands). It goes now
    /// if it can (true), else it stays (false, see [`Worker::stay`]).
    pub(crate) fn finish_move(&mut self, id: ConnId, rbuf: &[u8], st: &mut FeedState) -> bool {
        let Some(c) = self.conns.arena.get(id) else {
            return true;
        };
        let Phase::Ws(ws) = &c.phase else {
            return true;
        };
        let Some(to) = self.moving.iter().find(|m| m.conn == id).map(|m| m.to) else {
            return false;
        };
        // The parser goes back to the pool at a message boundary: one still
        // held has part of a frame.
        let whole = ws.parser.is_none() && c.end.is_none() && !c.overflowed && !ws.paused;
        let fd = if whole { self.socket_for(id, to) } else { None };
        let Some(fd) = fd else {
            if !whole {
                self.hub.metrics.moves[REFUSED] += 1;
            }
            self.stay(id);
            return false;
        };
        let now = self.millis();
        let Some(m) = self.take_moving(id) else {
            return false;
        };
        let cfg = &self.cfg;
        let Some(c) = self.conns.arena.get_mut(id) else {
            return true;
        };
        let Phase::Ws(ws) = &mut c.phase else {
            return true;
        };
        let Some(e) = self.hub.move_out(ws.session, to) else {
            return false;
        };
        let mut input = c.stash.take().map(|s| *s).unwrap_or_default();
        input.drain(..st.stash_pos.min(input.len()));
        input.extend_from_slice(rbuf.get(st.pos..st.len).unwrap_or_default());
        (st.stash_pos, st.pos) = (0, st.len);
        let msgs: Vec<&[u8]> = m.carry.iter().map(Vec::as_slice).collect();
        let rates = ws.rates.export(cfg, now);
        let grant = e.grant.as_deref().map(std::borrow::Cow::Borrowed);
        let arrival = BusMsg::Move(Arrival {
            member: e.member,
            token: &e.token,
            proto: e.proto,
            meta: e.meta.as_deref(),
            grant,
            hello_done: e.hello_done,
            hops: m.hops.saturating_add(1),
            rates,
            bad: ws.bad,
            req: m.req.as_deref().unwrap_or_default(),
            msgs: Seq::Items(&msgs),
            input: &input,
            output: c.out.unsent(),
        });
        let mut bytes = Vec::new();
        arrival.encode(&mut bytes);
        drop(arrival);
        debug!(
            "w={} conn={id:?} peer={} member={} moves to worker {to} ({} bytes)",
            self.id,
            c.peer,
            e.member,
            bytes.len()
        );
        // Nothing more is written or read here: the slot only waits to be
        // freed, and no close is sent (the socket lives on there).
        c.out = Default::default();
        c.phase = Phase::Http {
            head: Vec::new(),
            moved: true,
        };
        let ip = c.peer.ip();
        Self::ws_gone(&mut self.ws_open, &mut self.ws_per_ip, ip);
        self.send_socket(to, &bytes, fd);
        self.free_conn(id, CloseReason::Moved);
        true
    }

    /// Connection `id` was to move and does not: its request and the
    /// messages read after it run here, in order, as they would have.
    pub(crate) fn stay(&mut self, id: ConnId) {
        let Some(m) = self.take_moving(id) else {
            return;
        };
        let Some(Phase::Ws(ws)) = self.conns.arena.get(id).map(|c| &c.phase) else {
            return;
        };
        let at = (id, ws.session, ws.proto);
        if let Some(req) = &m.req {
            self.hub.on_request_checked(at, req, false);
            self.perform();
        }
        self.run_after(id, m.carry.iter().map(Vec::as_slice));
    }

    /// A connection handed here by worker `p` with what was read from it
    /// (`head`): taken on as if accepted, and its head routed.
    pub(crate) fn adopt(&mut self, p: u32, head: &[u8], fd: OwnedFd) {
        let sock = std::net::TcpStream::from(fd);
        let peer = match sock.peer_addr() {
            Ok(a) => a,
            // The client is gone already.
            Err(_) => return,
        };
        if let Err(e) = sock.set_nonblocking(true) {
            warn!("w={} peer={peer} from worker {p}: {e}", self.id);
            return;
        }
        if self.conns.arena.len() >= self.cfg.max_connections as usize + 1024 {
            warn!(
                "w={} peer={peer} from worker {p} refused: {} connections open",
                self.id,
                self.conns.arena.len()
            );
            return;
        }
        let sock = mio::net::TcpStream::from_std(sock);
        let mut conn = Conn::new(sock, peer, self.millis());
        conn.phase = Phase::Http {
            head: head.to_vec(),
            moved: true,
        };
        let Some(id) = self.take_in(conn) else {
            return;
        };
        self.hub.metrics.moves[IN] += 1;
        debug!(
            "w={} conn={id:?} peer={peer} taken from worker {p}",
            self.id
        );
        // The head is whole (it was routed there); input that came after it
        // waits in the socket, and no new event would say so.
        if !self.route_head(id) {
            self.on_readable(id);
        }
    }

    /// A connection moved here by worker `p` with its session (`a`): it
    /// carries on here, its request and the messages that followed it run
    /// in order, then reading goes on from what was read and not parsed.
    pub(crate) fn arrive(&mut self, p: u32, a: Arrival, fd: OwnedFd) {
        let mut token = [0u8; 16];
        if a.token.len() == 16 {
            token.copy_from_slice(a.token);
        }
        let e = Emigrant {
            member: a.member,
            token,
            proto: a.proto,
            meta: a.meta.map(Box::from),
            grant: a.grant.map(|g| Box::new(g.into_owned())),
            hello_done: a.hello_done,
        };
        let sock = std::net::TcpStream::from(fd);
        let peer = sock
            .peer_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        if let Err(e) = sock.set_nonblocking(true) {
            warn!("w={} peer={peer} from worker {p}: {e}", self.id);
        }
        let sock = mio::net::TcpStream::from_std(sock);
        let now = self.millis();
        let Some(id) = self.take_in(Conn::new(sock, peer, now)) else {
            // Its session is lost, as with a connection that drops.
            self.hub.whereabouts(&e.token, None);
            return;
        };
        let proto = e.proto;
        let sid = self.hub.move_in(id, e, p);
        self.hub.metrics.moves[IN] += 1;
        let heartbeat = self.now + self.cfg.hb();
        let Some(c) = self.conns.arena.get_mut(id) else {
            return;
        };
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        c.timer = Some(self.timers.arm(heartbeat, Timer::Heartbeat(id)));
        c.phase = Phase::Ws(Ws {
            bad: a.bad,
            ..Ws::new(proto, sid, Rates::import(a.rates, now))
        });
        c.out.extend(a.output);
        if !a.input.is_empty() {
            c.stash = Some(Box::new(a.input.to_vec()));
        }
        Conns::mark_pending(&mut self.conns.pending, c, id);
        Self::ws_new(&mut self.ws_open, &mut self.ws_per_ip, c.peer.ip());
        debug!(
            "w={} conn={id:?} peer={peer} member={} taken from worker {p}",
            self.id, a.member
        );
        // Once more at most: a resume whose session moved from the worker
        // that issued its token.
        self.hub
            .on_request_checked((id, sid, proto), a.req, a.hops < 2);
        if self.perform() {
            self.keep_request(id, a.req);
            if let Some(m) = self.moving.iter_mut().find(|m| m.conn == id) {
                m.hops = a.hops;
            }
        }
        self.run_after(id, a.msgs.iter());
        // The socket may hold more (edge-triggered: no new event would say
        // so for bytes that came before it was registered here).
        self.on_readable(id);
    }
}
