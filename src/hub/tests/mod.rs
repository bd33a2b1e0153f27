//! Unit tests of the core as a whole: one to three [`Hub`]s wired by an
//! in-memory bus, driven the way the worker's loop drives them, with an
//! injected clock. A [`Sim`] performs every effect at once: frames land in
//! the client's inbox (decoded from JSON), closes end the client and tell
//! its hub, bus messages reach the peer's hub in link order. No sockets, no
//! sleeps: time moves only by [`Sim::advance`].
//!
//! What crosses a socket, a process or the kernel stays in `tests/`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::bus_msg::{split, BusMsg};
use super::effects::{CloseReason, Effect};
use super::rates::Rates;
use super::{ConnId, Hub};
use crate::protocol::Proto;
use crate::session::SessionId;
use crate::Config;

mod audience;
mod broadcast;
mod cluster;
mod idle;
mod joins;
mod limits;
mod lobby;
mod matchmaking;
mod moves;
mod props;
mod resume;
mod room_kit;
mod rooms;
mod state;
mod unicast;

/// The first room name `{prefix}-{i}` homed on worker `w` of `n`.
pub fn name_on(prefix: &str, w: u32, n: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|r| super::bus_msg::home(r, n) == w)
        .expect("a name homed there")
}

/// A client of the simulation, by index.
pub type C = usize;

/// One simulated client connection.
pub struct Client {
    /// The worker its connection is on.
    pub w: usize,
    pub conn: ConnId,
    pub sid: SessionId,
    rates: Rates,
    /// What it received, oldest first.
    pub inbox: VecDeque<Value>,
    /// HTTP answers it received (API calls).
    pub http: Vec<u8>,
    /// Why its connection was closed (by the core), if it was.
    pub closed: Option<CloseReason>,
    /// Messages it sent while paused, read when the pause ends.
    held: VecDeque<String>,
    paused: bool,
    bad: u32,
    /// The message it sent last (a request a move takes along).
    last: String,
    /// Times its connection moved to another worker.
    pub moves: u32,
}

/// One to three hubs, their clients and their bus.
pub struct Sim {
    pub hubs: Vec<Hub>,
    pub clients: Vec<Client>,
    pub now: Instant,
    /// Links cut by [`Sim::lose`]: (from, to) pairs that carry nothing.
    cut: Vec<(usize, usize)>,
    /// Workers stopped by [`Sim::stop`], and the bus messages waiting for
    /// them (from, to, bytes), in order.
    stopped: Vec<bool>,
    parked: Vec<(usize, usize, Vec<u8>)>,
    /// Moves the core asks for do not happen (as when the loop cannot
    /// move a connection): the request runs where it is.
    pub refuse_moves: bool,
    /// Bus messages carried so far.
    pub bus_msgs: usize,
}

// Not every test uses every helper.
#[allow(dead_code)]
impl Sim {
    /// `workers` hubs with the default configuration.
    pub fn new(workers: usize) -> Sim {
        Sim::with(workers, |_| {})
    }

    /// `workers` hubs, each with the default configuration changed by `f`.
    pub fn with(workers: usize, f: impl Fn(&mut Config)) -> Sim {
        let now = Instant::now();
        let mut hubs: Vec<Hub> = (0..workers)
            .map(|w| {
                let mut cfg = Config::defaults();
                f(&mut cfg);
                let mut h = Hub::new(cfg, w as u32, now);
                if workers > 1 {
                    h.join_cluster(workers as u32, 1 + w as u32);
                }
                h
            })
            .collect();
        if workers > 1 {
            for (w, h) in hubs.iter_mut().enumerate() {
                for p in (0..workers).filter(|&p| p != w) {
                    h.link_up(p as u32);
                }
            }
        }
        let mut sim = Sim {
            stopped: vec![false; hubs.len()],
            hubs,
            clients: Vec::new(),
            now,
            cut: Vec::new(),
            parked: Vec::new(),
            refuse_moves: false,
            bus_msgs: 0,
        };
        sim.pump();
        sim
    }

    /// A new connection on worker `w`, its `welcome` still in its inbox.
    pub fn connect(&mut self, w: usize) -> C {
        let c = self.clients.len();
        let conn = ConnId::from_bits((1 << 32) | c as u64);
        let h = &mut self.hubs[w];
        let sid = h.open_session(conn, Proto::Json, None).expect("randomness");
        let rates = Rates::full(&h.cfg, h.millis());
        h.welcome(sid);
        self.clients.push(Client {
            w,
            conn,
            sid,
            rates,
            inbox: VecDeque::new(),
            http: Vec::new(),
            closed: None,
            held: VecDeque::new(),
            paused: false,
            bad: 0,
            last: String::new(),
            moves: 0,
        });
        self.pump();
        c
    }

    /// A new connection on worker `w`, its `welcome` read.
    pub fn client(&mut self, w: usize) -> C {
        let c = self.connect(w);
        self.expect(c, "welcome");
        c
    }

    /// Client `c` sends `v` (as JSON text); everything it causes happens.
    pub fn send(&mut self, c: C, v: Value) {
        self.send_text(c, &v.to_string());
    }

    /// Client `c` sends a message as it is.
    pub fn send_text(&mut self, c: C, text: &str) {
        let cl = &mut self.clients[c];
        assert!(cl.closed.is_none(), "client {c} is closed");
        if cl.paused {
            cl.held.push_back(text.to_owned());
            return;
        }
        cl.last = text.to_owned();
        let h = &mut self.hubs[cl.w];
        h.on_message(
            (cl.conn, cl.sid, Proto::Json),
            &mut cl.rates,
            text.as_bytes(),
        );
        self.pump();
    }

    /// The next message client `c` received.
    pub fn recv(&mut self, c: C) -> Value {
        self.clients[c]
            .inbox
            .pop_front()
            .unwrap_or_else(|| panic!("client {c} received nothing"))
    }

    /// The next message of client `c`, which must be of type `t`.
    pub fn expect(&mut self, c: C, t: &str) -> Value {
        let v = self.recv(c);
        assert_eq!(v["t"], t, "client {c} expected {t:?}, got {v}");
        v
    }

    /// The next message of client `c`, which must be `err` with `code`.
    pub fn expect_err(&mut self, c: C, code: &str) -> Value {
        let v = self.expect(c, "err");
        assert_eq!(v["code"], code, "{v}");
        v
    }

    /// Skips messages of client `c` up to the first of type `t`.
    pub fn recv_type(&mut self, c: C, t: &str) -> Value {
        loop {
            let v = self.recv(c);
            if v["t"] == t {
                return v;
            }
        }
    }

    /// Client `c` has received nothing more.
    pub fn assert_silent(&self, c: C) {
        let inbox = &self.clients[c].inbox;
        assert!(inbox.is_empty(), "client {c} received {inbox:?}");
    }

    /// Drops what client `c` received so far.
    pub fn clear(&mut self, c: C) {
        self.clients[c].inbox.clear();
    }

    /// Client `c` joins `room` and reads its `joined`.
    pub fn join(&mut self, c: C, room: &str) -> Value {
        self.send(c, json!({"t": "join", "room": room}));
        self.expect(c, "joined")
    }

    /// Client `c` creates `room` and joins it, and reads `created` and
    /// `joined`.
    pub fn create(&mut self, c: C, room: &str) -> Value {
        self.send(c, json!({"t": "create", "room": room}));
        self.expect(c, "created");
        self.expect(c, "joined")
    }

    /// A new client on worker `w`, its session token taken from its
    /// `welcome`.
    pub fn client_token(&mut self, w: usize) -> (C, String) {
        let c = self.connect(w);
        let v = self.expect(c, "welcome");
        let token = v["session"]
            .as_str()
            .expect("welcome carries the session token");
        (c, token.to_owned())
    }

    /// Two clients on worker 0 in `room` (the first created it), their
    /// inboxes empty.
    pub fn pair(&mut self, room: &str) -> (C, C) {
        let (a, b) = (self.client(0), self.client(0));
        self.create(a, room);
        self.join(b, room);
        self.clear(a);
        (a, b)
    }

    /// Client `c`'s connection ends for `why`, as the loop's end step
    /// tells the core.
    pub fn disconnect(&mut self, c: C, why: CloseReason) {
        let cl = &mut self.clients[c];
        if cl.closed.is_none() {
            cl.closed = Some(why);
            let (w, sid) = (cl.w, cl.sid);
            self.hubs[w].detach(sid, why);
        }
        self.pump();
    }

    /// Client `c` resumes the session whose `welcome` gave `token`, from a
    /// new connection on worker `w`: the new client, its `welcome` read.
    pub fn resume(&mut self, w: usize, token: &str, last: Value) -> C {
        let c = self.client(w);
        self.send(
            c,
            json!({"t": "hello", "rid": 1, "resume": token, "last": last}),
        );
        c
    }

    /// The clock moves `ms` on; every timer due runs (on workers not
    /// stopped).
    pub fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        for (w, h) in self.hubs.iter_mut().enumerate() {
            if !self.stopped[w] {
                h.tick(self.now);
            }
        }
        self.pump();
    }

    /// Worker `w` stops (as under SIGSTOP): bus messages for it wait, its
    /// timers do not run.
    pub fn stop(&mut self, w: usize) {
        self.stopped[w] = true;
    }

    /// Worker `w` goes on: it reads what waited, and its timers catch up.
    pub fn cont(&mut self, w: usize) {
        self.stopped[w] = false;
        let (mine, rest) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|x| x.1 == w);
        self.parked = rest;
        for (from, to, bytes) in mine {
            self.carry(from, to, &bytes);
        }
        self.hubs[w].tick(self.now);
        self.pump();
    }

    /// Worker `to` loses worker `from` (its link ended); with `both`, the
    /// other way too. Nothing more crosses between them.
    pub fn lose(&mut self, a: usize, b: usize) {
        self.cut.push((a, b));
        self.cut.push((b, a));
        self.hubs[a].peer_lost(b as u32);
        self.hubs[b].peer_lost(a as u32);
        self.pump();
    }

    /// An HTTP API call on worker `w` (with the admin key when `key`):
    /// the status line and body of the answer.
    pub fn api(&mut self, w: usize, method: &str, path: &str, body: &str) -> (u16, Value) {
        let c = self.connect(w);
        self.clients[c].inbox.clear();
        let bearer = self.hubs[w].cfg.admin_key.clone();
        let req = crate::http::ApiReq {
            method: method.into(),
            path: path.into(),
            bearer,
            body_len: body.len(),
        };
        let conn = self.clients[c].conn;
        self.hubs[w].api(conn, req, body.as_bytes());
        self.pump();
        let raw = String::from_utf8_lossy(&self.clients[c].http).into_owned();
        let status = raw
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {raw:?}"));
        let body = raw.split_once("\r\n\r\n").map_or("", |x| x.1);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Performs every effect and carries every bus message (after an input
    /// given straight to a hub).
    pub fn pump_all(&mut self) {
        self.pump();
    }

    /// Performs every effect and carries every bus message, until nothing
    /// is left.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            for w in 0..self.hubs.len() {
                if !self.hubs[w].out.is_empty() {
                    busy = true;
                    self.perform(w);
                }
            }
            let mut mail = Vec::new();
            for (w, h) in self.hubs.iter_mut().enumerate() {
                let Some(b) = h.bus.as_mut() else { continue };
                for p in std::mem::take(&mut b.pending) {
                    let bytes = std::mem::take(&mut b.bufs[p as usize]);
                    mail.push((w, p as usize, bytes));
                }
            }
            for (from, to, bytes) in mail {
                busy = true;
                if self.cut.contains(&(from, to)) {
                    continue;
                }
                if self.stopped[to] {
                    self.parked.push((from, to, bytes));
                    continue;
                }
                self.carry(from, to, &bytes);
            }
            if !busy {
                return;
            }
        }
    }

    /// Hands worker `to` the bus messages `from` sent it.
    fn carry(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let mut rest = bytes;
        while let Ok(Some((m, used))) = split(rest) {
            rest = &rest[used..];
            self.bus_msgs += 1;
            match BusMsg::decode(m) {
                Ok(BusMsg::MetricsReq { .. }) => {}
                Ok(m) => self.hubs[to].on_bus(from as u32, m),
                Err(e) => panic!("bus message {from} -> {to}: {e:?}"),
            }
        }
        assert!(rest.is_empty(), "a bus message cut short");
    }

    /// Performs hub `w`'s effects as the loop does; closes last (the end
    /// step), each telling the core.
    fn perform(&mut self, w: usize) {
        let out = std::mem::take(&mut self.hubs[w].out);
        let max_bad = self.hubs[w].cfg.max_bad_requests;
        let mut closes = Vec::new();
        let mut moves = Vec::new();
        for &e in &out.list {
            match e {
                Effect::Send { conn, bytes, .. } => self.deliver(conn, out.get(bytes)),
                Effect::Raw { conn, bytes } => {
                    let c = conn.index();
                    self.clients[c].http.extend_from_slice(out.get(bytes));
                }
                Effect::Fan {
                    msgpack,
                    json,
                    from,
                    to,
                    ..
                } => {
                    for &(conn, p) in &out.targets[from as usize..to as usize] {
                        let span = if p == Proto::Json { json } else { msgpack };
                        self.deliver(conn, out.get(span));
                    }
                }
                Effect::Close(conn, why) => {
                    let cl = &mut self.clients[conn.index()];
                    if cl.closed.is_none() {
                        cl.closed = Some(why);
                        closes.push((cl.sid, why));
                    }
                }
                Effect::Pause(conn, on) => self.clients[conn.index()].paused = on,
                Effect::Outcome(conn, bad) => {
                    let cl = &mut self.clients[conn.index()];
                    cl.bad = if bad { cl.bad + 1 } else { 0 };
                    if cl.bad >= max_bad && cl.closed.is_none() {
                        cl.closed = Some(CloseReason::BadRequests);
                        closes.push((cl.sid, CloseReason::BadRequests));
                    }
                }
                Effect::Bind(conn, sid) => self.clients[conn.index()].sid = sid,
                Effect::Move(conn, to) => moves.push((conn, to as usize)),
            }
        }
        let mut out = out;
        out.clear();
        self.hubs[w].out = out;
        for (conn, to) in moves {
            self.move_conn(w, conn, to);
        }
        for (sid, why) in closes {
            self.hubs[w].detach(sid, why);
        }
        // Input that waited for a pause to end.
        for c in 0..self.clients.len() {
            let cl = &mut self.clients[c];
            if cl.w == w && !cl.paused && cl.closed.is_none() && !cl.held.is_empty() {
                let held: Vec<String> = cl.held.drain(..).collect();
                for text in held {
                    let cl = &mut self.clients[c];
                    let h = &mut self.hubs[w];
                    h.on_message(
                        (cl.conn, cl.sid, Proto::Json),
                        &mut cl.rates,
                        text.as_bytes(),
                    );
                }
            }
        }
    }

    /// The loop's part of a move: the session goes from worker `w` to
    /// `to` with its connection, and its request runs there (or, with
    /// `refuse_moves`, here).
    fn move_conn(&mut self, w: usize, conn: ConnId, to: usize) {
        let c = conn.index();
        let (sid, req) = (self.clients[c].sid, self.clients[c].last.clone());
        if self.refuse_moves || self.stopped[to] {
            self.hubs[w].on_request_checked((conn, sid, Proto::Json), req.as_bytes(), false);
            return;
        }
        let e = self.hubs[w]
            .move_out(sid, to as u32)
            .expect("a session to move");
        let sid = self.hubs[to].move_in(conn, e, w as u32);
        let cl = &mut self.clients[c];
        (cl.w, cl.sid) = (to, sid);
        cl.moves += 1;
        let again = cl.moves < 2;
        self.hubs[to].on_request_checked((conn, sid, Proto::Json), req.as_bytes(), again);
    }

    /// Frames for connection `conn`: decoded into its client's inbox,
    /// unless the connection was closed.
    fn deliver(&mut self, conn: ConnId, mut frames: &[u8]) {
        let cl = &mut self.clients[conn.index()];
        if cl.closed.is_some() {
            return;
        }
        while !frames.is_empty() {
            let (op, len) = (frames[0] & 0x0f, frames[1] as usize & 0x7f);
            let (len, head) = match len {
                126 => (u16::from_be_bytes([frames[2], frames[3]]) as usize, 4),
                127 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&frames[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                n => (n, 2),
            };
            assert_eq!(op, 0x1, "a JSON client gets text frames");
            let payload = &frames[head..head + len];
            let v = serde_json::from_slice(payload).expect("a JSON message");
            cl.inbox.push_back(v);
            frames = &frames[head + len..];
        }
    }
}
