//! `watch`: one room, one publisher and N watchers (roomd only).
//!
//! Layout: watchers are numbered globally and process i of K takes the
//! slice `slice(N, i, K)`; process 0 also holds the publisher, which
//! creates the room (`max` 1: it is the only member) in `Setup`. The room is
//! `b<run>-watch-<gen>`, fresh for every set.
//!
//! Phases: `Setup` (connect, publisher creates and joins; a watcher is
//! ready at its `welcome`); `Storm { t0 }` (at `t0` every process sends all
//! its watchers' `join` with `watch:true` in one go; the phase ends when each
//! has its `joined` or `err`); `Hold` (the settle time, for the coalesced
//! `watchers` count); then `Run` steps as in `fanout`.
//!
//! Storm accounting: every data frame any client receives from the start of
//! the storm to the end of the settle time is recorded by type in a
//! histogram of its arrival time since `t0` ("rx joined", "rx watchers",
//! "rx presence", "rx other"), so the controller can count, exactly across
//! processes, the frames received up to the last `joined` of all. The main
//! histogram holds each watcher's seating time (`joined` since `t0`). At the
//! end of the settle time each ready client's last `watchers` count is
//! counted under "last n=<count>" (or "last n=none").
//!
//! Run accounting: the publisher's schedule is deterministic (message k due
//! at `t0 + k / R`), so every process knows how many measured messages were
//! scheduled and expects that many at each of its watchers ready at the
//! step's start. Each watcher checks the room `seq` grows and, with a
//! `Tracker` over the publisher's seq, that each message arrives once and in
//! order; latency counts from the scheduled send time in the payload.

use tungstenite::{Bytes, Message};

use crate::ctl::{Cmd, Fleet, PhaseResult, Worker};
use crate::engine::{Engine, Handler, Io, Why};
use crate::fanout::teardown;
use crate::findmax;
use crate::opts::{slice, Endpoint, Proto, WatchArgs};
use crate::pace::Opener;
use crate::report::Report;
use crate::stats::{Arrival, Lat, Stats, Tracker};
use crate::sys::{now_ns, secs_ns};
use crate::wire::{self, Header};

/// `rid` of the publisher's `create`, and of every watcher's `join`.
const RID_CREATE: u32 = 1;
const RID_WATCH: u32 = 2;
/// The storm histograms, by frame type.
const RX: [&str; 4] = ["rx joined", "rx watchers", "rx presence", "rx other"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cs {
    Idle,
    Connecting,
    /// Upgraded, `welcome` not yet in.
    Open,
    /// Watcher: `welcome` in, not watching yet. Publisher: `create` sent.
    Connected,
    /// Watcher: `join` sent.
    Joining,
    /// Watcher: watching. Publisher: in its room.
    Ready,
    Dead,
}

#[derive(Clone)]
struct Client {
    id: usize,
    st: Cs,
    last_room_seq: u64,
    last_n: Option<u64>,
    tracker: Tracker,
}

impl Client {
    fn fresh() -> Client {
        Client {
            id: usize::MAX,
            st: Cs::Idle,
            last_room_seq: 0,
            last_n: None,
            tracker: Tracker::default(),
        }
    }
}

struct State {
    /// Local watchers first, then (process 0 only) the publisher.
    clients: Vec<Client>,
    publisher: Option<usize>,
    room: String,
    idle_ms: u32,
    stats: Stats,
    connecting: usize,
    joining: usize,
    /// From a storm's start to the end of its settle time: frames are
    /// recorded by arrival time since `storm_t0`.
    in_storm: bool,
    storm_t0: u64,
    join_sent: u64,
    in_run: bool,
    step: u32,
    measure_from: u64,
    lost: bool,
}

impl State {
    fn is_pub(&self, c: usize) -> bool {
        self.publisher == Some(c)
    }

    fn kill(&mut self, c: usize) {
        match self.clients[c].st {
            Cs::Connecting => self.connecting -= 1,
            Cs::Joining => self.joining -= 1,
            _ => {}
        }
        self.clients[c].st = Cs::Dead;
    }

    fn ready(&self) -> u64 {
        self.clients.iter().filter(|c| c.st == Cs::Ready).count() as u64
    }

    fn ready_watchers(&self) -> u64 {
        (0..self.clients.len())
            .filter(|&c| !self.is_pub(c) && self.clients[c].st == Cs::Ready)
            .count() as u64
    }

    fn record_rx(&mut self, t: &str, now: u64) {
        let i = match t {
            "joined" => 0,
            "watchers" => 1,
            "presence" => 2,
            _ => 3,
        };
        let ns = now.saturating_sub(self.storm_t0);
        if let Some(l) = self.stats.ops.get_mut(RX[i]) {
            l.record_ns(ns);
        } else {
            self.stats.op(RX[i], ns);
        }
    }

    fn payload(&mut self, c: usize, data: &[u8], now: u64) {
        let Some(h) = Header::read(data) else {
            self.stats.error("payload without harness header");
            return;
        };
        if !self.in_run || h.step != self.step {
            self.stats.error("delivery from an earlier step");
            return;
        }
        if self.is_pub(c) {
            self.stats.error("the publisher got its own message");
            return;
        }
        match self.clients[c].tracker.arrive(h.seq) {
            Arrival::Duplicate => {
                self.stats.duplicated += 1;
                return;
            }
            Arrival::Late => self.stats.reordered += 1,
            Arrival::InOrder => {}
        }
        if h.sched_ns >= self.measure_from {
            self.stats.delivered += 1;
            self.stats.lat.record_ns(now.saturating_sub(h.sched_ns));
        }
    }
}

impl Handler for State {
    fn opened(&mut self, _io: &mut Io, _id: usize, tag: u32, _now: u64) {
        let c = tag as usize;
        if self.clients[c].st == Cs::Connecting {
            self.connecting -= 1;
            self.clients[c].st = Cs::Open;
            self.stats.opened += 1;
        }
    }

    fn message(&mut self, io: &mut Io, _id: usize, tag: u32, data: &[u8], _bin: bool, now: u64) {
        let c = tag as usize;
        let Some(m) = wire::parse(data) else {
            self.stats.error("unparsable server message");
            return;
        };
        if self.in_storm {
            self.record_rx(m.t, now);
        }
        match m.t {
            "msg" => {
                if let Some(seq) = m.seq {
                    if seq <= self.clients[c].last_room_seq {
                        self.stats.error("room seq did not grow");
                    }
                    self.clients[c].last_room_seq = seq;
                }
                match m.data {
                    Some(d) => self.payload(c, d, now),
                    None => self.stats.error("msg without data"),
                }
            }
            "watchers" => self.clients[c].last_n = m.n,
            "presence" if self.in_storm => self.stats.error("presence during the storm"),
            "welcome" if self.clients[c].st == Cs::Open => {
                self.clients[c].st = Cs::Connected;
                if self.is_pub(c) {
                    let req = wire::create(RID_CREATE, &self.room, 1, self.idle_ms, true);
                    io.send(self.clients[c].id, Message::Binary(Bytes::from(req)));
                }
            }
            "joined" if self.is_pub(c) && self.clients[c].st == Cs::Connected => {
                self.clients[c].st = Cs::Ready;
            }
            "joined" if self.clients[c].st == Cs::Joining => {
                self.joining -= 1;
                self.clients[c].st = Cs::Ready;
                if m.watch != Some(true) {
                    self.stats.error("joined without watch:true");
                }
                self.stats.lat.record_ns(now.saturating_sub(self.storm_t0));
                self.stats.op("join", now.saturating_sub(self.join_sent));
            }
            "err" => {
                self.stats
                    .server_err(m.code.unwrap_or("?"), m.msg.unwrap_or(""));
                if m.rid.is_some() && matches!(self.clients[c].st, Cs::Connected | Cs::Joining) {
                    // A failed create or watch: this client will never be ready.
                    let id = self.clients[c].id;
                    self.kill(c);
                    io.close(id);
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self, _io: &mut Io, _id: usize, tag: u32, why: Why, _now: u64) {
        let c = tag as usize;
        let was = self.clients[c].st;
        self.kill(c);
        if let Some(label) = why.label() {
            if why.before_open() {
                self.stats.failed += 1;
            }
            self.stats.error(label);
            self.lost = true;
        } else if was != Cs::Dead && (self.in_run || self.in_storm) {
            self.lost = true;
        }
    }
}

pub struct WatchWorker {
    eng: Engine,
    s: State,
    ep: Endpoint,
    run_id: u32,
    payload: usize,
    connect_rate: f64,
    max_inflight: usize,
}

impl WatchWorker {
    pub fn new(
        a: &WatchArgs,
        index: usize,
        procs: usize,
        run_id: u32,
    ) -> Result<WatchWorker, String> {
        let ep = Endpoint::from_common(&a.common)?;
        check(a)?;
        let (lo, hi) = slice(a.watchers, index, procs);
        let n = hi - lo + usize::from(index == 0);
        let mut eng = Engine::new(if a.common.read_buffer > 0 {
            a.common.read_buffer
        } else {
            8 * 1024
        })
        .map_err(|e| format!("cannot create the event loop: {e}"))?;
        eng.connect_timeout_ns = ep.target.connect_timeout_ns;
        Ok(WatchWorker {
            eng,
            s: State {
                clients: vec![Client::fresh(); n],
                publisher: (index == 0).then_some(n - 1),
                room: String::new(),
                idle_ms: a.room_idle_ms,
                stats: Stats::default(),
                connecting: 0,
                joining: 0,
                in_storm: false,
                storm_t0: 0,
                join_sent: 0,
                in_run: false,
                step: 0,
                measure_from: 0,
                lost: false,
            },
            ep,
            run_id,
            payload: a.payload,
            connect_rate: a.common.connect_rate / procs as f64,
            max_inflight: a.common.max_inflight.max(1),
        })
    }

    fn turn(&mut self, wake: u64) -> Result<u64, String> {
        self.eng
            .turn(&mut self.s, wake)
            .map_err(|e| format!("poll: {e}"))
    }

    /// Connects every local client; the publisher creates the room.
    fn setup(&mut self, gen: u32, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        let s = &mut self.s;
        s.stats = Stats::default();
        s.lost = false;
        s.in_run = false;
        s.in_storm = false;
        s.room = format!("b{}-watch-{gen}", self.run_id);
        for c in s.clients.iter_mut() {
            *c = Client::fresh();
        }
        s.connecting = 0;
        s.joining = 0;
        let n = s.clients.len();
        // The publisher (last) opens first.
        let order = |i: usize| (i + n - 1) % n;
        let mut opener = Opener::new(n, self.connect_rate, self.max_inflight, start);
        let deadline = start + secs_ns(60.0) + self.eng.connect_timeout_ns * (1 + n as u64 / 1000);
        let mut next_progress = start + 1_000_000_000;
        loop {
            let now = now_ns();
            let s = &mut self.s;
            for _ in 0..opener.due(now, s.connecting) {
                let c = order(opener.take());
                match self
                    .eng
                    .io
                    .connect(&self.ep.target, &self.ep.path, c as u32)
                {
                    Ok(id) => {
                        s.clients[c].id = id;
                        s.clients[c].st = Cs::Connecting;
                        s.connecting += 1;
                    }
                    Err(e) => {
                        s.clients[c].st = Cs::Dead;
                        s.stats.failed += 1;
                        s.stats.error(format!("connect: {e}"));
                    }
                }
            }
            let unresolved = (0..n)
                .filter(|&c| match s.clients[c].st {
                    Cs::Ready | Cs::Dead => false,
                    Cs::Connected => s.is_pub(c),
                    _ => true,
                })
                .count();
            if opener.done() && unresolved == 0 {
                break;
            }
            if now > deadline {
                for c in 0..n {
                    if !matches!(s.clients[c].st, Cs::Ready | Cs::Dead | Cs::Connected) {
                        let id = s.clients[c].id;
                        s.kill(c);
                        s.stats.failed += 1;
                        s.stats.error("not connected by the setup deadline");
                        self.eng.io.close(id);
                    }
                }
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                s.stats.conns = s
                    .clients
                    .iter()
                    .filter(|c| matches!(c.st, Cs::Connected | Cs::Ready))
                    .count() as u64;
                progress(&s.stats);
            }
            let mut wake = next_progress.min(deadline);
            if let Some(t) = opener.next_at(s.connecting) {
                wake = wake.min(t);
            }
            self.turn(wake)?;
        }
        let s = &mut self.s;
        let connected = s
            .clients
            .iter()
            .filter(|c| matches!(c.st, Cs::Connected | Cs::Ready))
            .count() as u64;
        let pub_lost = s.publisher.is_some_and(|p| s.clients[p].st != Cs::Ready);
        if pub_lost {
            s.stats.error("the publisher is not in its room");
        }
        s.stats.conns = connected;
        s.stats.opened = connected;
        let broken = s.lost || pub_lost || connected < n as u64;
        Ok(PhaseResult::ended(&mut s.stats, start, broken))
    }

    /// From `t0`, every connected watcher joins the room with `watch:true`.
    fn storm(&mut self, t0: u64, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        self.s.stats = Stats::default();
        while now_ns() < t0 {
            self.turn(t0)?;
        }
        let s = &mut self.s;
        s.in_storm = true;
        s.storm_t0 = t0;
        let now = now_ns();
        s.join_sent = now;
        s.stats.op("storm start lag", now.saturating_sub(t0));
        let req = wire::watch(RID_WATCH, &s.room);
        for c in 0..s.clients.len() {
            if s.is_pub(c) || s.clients[c].st != Cs::Connected {
                continue;
            }
            let id = s.clients[c].id;
            if self
                .eng
                .io
                .send(id, Message::Binary(Bytes::from(req.clone())))
            {
                s.clients[c].st = Cs::Joining;
                s.joining += 1;
            } else {
                s.stats.error("watcher connection lost: join not sent");
            }
        }
        let deadline = t0 + secs_ns(60.0);
        let mut next_progress = start + 1_000_000_000;
        loop {
            let now = now_ns();
            if self.s.joining == 0 {
                break;
            }
            if now > deadline {
                self.s
                    .stats
                    .error("not seated by the storm deadline (60 s)");
                for c in 0..self.s.clients.len() {
                    if self.s.clients[c].st == Cs::Joining {
                        let id = self.s.clients[c].id;
                        self.s.kill(c);
                        self.eng.io.close(id);
                    }
                }
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.s.ready();
                progress(&self.s.stats);
            }
            self.turn(next_progress.min(deadline))?;
        }
        let s = &mut self.s;
        s.stats.conns = s.ready();
        Ok(PhaseResult::ended(&mut s.stats, start, s.lost))
    }

    /// Keeps the connections open until `until`; after a storm, this is its
    /// settle time, and it ends with the last `watchers` counts.
    fn hold(&mut self, until: u64) -> Result<PhaseResult, String> {
        let start = now_ns();
        while now_ns() < until {
            self.turn(until)?;
        }
        let s = &mut self.s;
        if s.in_storm {
            s.in_storm = false;
            for c in 0..s.clients.len() {
                if s.clients[c].st == Cs::Ready {
                    let key = match s.clients[c].last_n {
                        Some(n) => format!("last n={n}"),
                        None => "last n=none".to_string(),
                    };
                    s.stats.count(&key, 1);
                }
            }
        }
        s.stats.conns = s.ready();
        Ok(PhaseResult::ended(&mut s.stats, start, s.lost))
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        step: u32,
        t0: u64,
        warmup_ns: u64,
        duration_ns: u64,
        drain_ns: u64,
        rate: f64,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        let start = now_ns();
        let s = &mut self.s;
        s.stats = Stats::default();
        s.step = step;
        s.in_run = true;
        s.in_storm = false;
        let t_measure = t0 + warmup_ns;
        s.measure_from = t_measure;
        for c in s.clients.iter_mut() {
            c.tracker.reset();
        }
        let ns_per_msg = 1e9 / rate.max(1e-9);
        let t_end = t_measure + duration_ns;
        let t_stop = t_end + drain_ns;
        let due_at = |k: u64| t0 + (k as f64 * ns_per_msg) as u64;
        // The same schedule the publisher walks, counted up front.
        let mut measured = 0u64;
        let mut k = 0u64;
        while due_at(k) < t_end {
            if due_at(k) >= t_measure {
                measured += 1;
            }
            k += 1;
        }
        s.stats.expected = measured * s.ready_watchers();
        let mut cursor = 0u64;
        let mut next_progress = start + 1_000_000_000;
        let mut buf = vec![0x2au8; self.payload];
        let mut send_lag = Lat::default();
        loop {
            let now = now_ns();
            let s = &mut self.s;
            if let Some(p) = s.publisher {
                while due_at(cursor) <= now && due_at(cursor) < t_end {
                    let due = due_at(cursor);
                    let is_measured = due >= t_measure;
                    if s.clients[p].st == Cs::Ready {
                        Header {
                            room: 0,
                            sender: 0,
                            step,
                            seq: cursor as u32,
                            sched_ns: due,
                        }
                        .write(&mut buf);
                        let frame = wire::publish(&s.room, &buf, None);
                        if self
                            .eng
                            .io
                            .send(s.clients[p].id, Message::Binary(Bytes::from(frame)))
                            && is_measured
                        {
                            send_lag.record_ns(now - due);
                            s.stats.sent += 1;
                        }
                    } else if is_measured {
                        s.stats.error("publisher connection lost: message not sent");
                    }
                    cursor += 1;
                }
            }
            if now >= t_end && (s.stats.delivered >= s.stats.expected || now >= t_stop) {
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                s.stats.conns = s.ready();
                progress(&s.stats);
            }
            let mut wake = next_progress.min(t_stop);
            if s.publisher.is_some() && due_at(cursor) < t_end {
                wake = wake.min(due_at(cursor));
            }
            self.turn(wake)?;
        }
        let s = &mut self.s;
        if s.publisher.is_some() {
            s.stats.ops.insert("send lag".into(), send_lag);
        }
        s.in_run = false;
        s.stats.conns = s.ready();
        Ok(PhaseResult::ended(&mut s.stats, start, s.lost))
    }
}

impl Worker for WatchWorker {
    fn phase(
        &mut self,
        cmd: &Cmd,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        match *cmd {
            Cmd::Setup { gen } => self.setup(gen, progress),
            Cmd::Storm { t0 } => self.storm(t0, progress),
            Cmd::Hold { until } => self.hold(until),
            Cmd::Run {
                step,
                t0,
                warmup_ns,
                duration_ns,
                drain_ns,
                rate,
            } => self.run(step, t0, warmup_ns, duration_ns, drain_ns, rate, progress),
            Cmd::Teardown => {
                let elapsed_ns = teardown(&mut self.eng, &mut self.s)?;
                for c in self.s.clients.iter_mut() {
                    c.st = Cs::Idle;
                }
                self.s.connecting = 0;
                self.s.joining = 0;
                self.s.in_storm = false;
                self.s.stats = Stats::default();
                Ok(PhaseResult {
                    elapsed_ns,
                    ..Default::default()
                })
            }
            Cmd::Exit => Ok(PhaseResult::default()),
        }
    }
}

/// Checks the flags (once, in the parent, and in each child).
pub fn check(a: &WatchArgs) -> Result<(), String> {
    if a.common.proto != Proto::Roomd {
        return Err("watch needs --proto roomd (watchers are roomd's)".into());
    }
    if a.watchers == 0 || a.watchers < a.common.procs {
        return Err("--watchers must be at least 1 and at least --procs".into());
    }
    if a.payload < wire::HEADER {
        return Err(format!("--payload must be at least {} bytes", wire::HEADER));
    }
    if a.rate <= 0.0 || a.duration <= 0.0 {
        return Err("--rate and --duration must be > 0".into());
    }
    Ok(())
}

/// What one storm (and its settle time) showed, as the controller merges it.
struct StormFigures {
    seated: u64,
    seat_all_ns: u64,
    frames: Vec<(String, u64)>,
    frames_after: u64,
    join: Lat,
    counts_ok: bool,
}

/// Runs a storm and its settle time; `quiet` prints nothing per second.
fn storm(a: &WatchArgs, fleet: &mut Fleet, quiet: bool) -> Result<(StormFigures, Stats), String> {
    let t0 = now_ns() + 200_000_000;
    let st = fleet.phase(Cmd::Storm { t0 }, "storm", quiet)?;
    let until = now_ns() + secs_ns(a.settle);
    let h = fleet.phase(Cmd::Hold { until }, "settle", true)?;
    let mut all = st.stats.clone();
    all.merge(&h.stats);
    // Each `joined` of a watcher records its seating time once.
    let seated = all.lat.count();
    // Seated from the first join sent to the last `joined`: the seating
    // times count from t0, less the earliest start.
    let lag_min = all
        .ops
        .get("storm start lag")
        .map_or(0, |l| l.min_us().saturating_sub(1));
    let last_us = all.lat.max_us();
    let mut frames = Vec::new();
    let mut frames_after = 0;
    for k in RX {
        if let Some(l) = all.ops.get(k) {
            let upto = l.count_le_us(last_us);
            frames.push((k.trim_start_matches("rx ").to_string(), upto));
            frames_after += l.count() - upto;
        }
    }
    let want = format!("last n={seated}");
    let ok = all.counted(&want) == seated + 1 && all.counts.keys().all(|k| *k == want);
    if !ok {
        eprintln!(
            "watch: after the storm the clients' last watchers counts were {:?}, not all {seated}",
            all.counts
        );
        all.error("last watchers count not the number seated");
    }
    let join = all.ops.get("join").cloned().unwrap_or_default();
    for k in RX.iter().chain(["join", "storm start lag"].iter()) {
        all.ops.remove(*k);
    }
    all.counts.clear();
    Ok((
        StormFigures {
            seated,
            seat_all_ns: last_us.saturating_sub(lag_min) * 1000,
            frames,
            frames_after,
            join,
            counts_ok: ok,
        },
        all,
    ))
}

/// The controller: setup, storm (+ settle), then the delivery steps.
pub fn control(a: &WatchArgs, fleet: &mut Fleet, report: &mut Report) -> Result<(), String> {
    let c = &a.common;
    let mut gen = 0;
    let su = crate::setup(fleet, gen, c.quiet, a.watchers + 1)?;
    report.connect_failed = su.stats.failed;
    let mut errors = su.stats.clone();
    let (f, st) = storm(a, fleet, c.quiet)?;
    errors.merge(&st);
    let frames: u64 = f.frames.iter().map(|(_, n)| n).sum();
    eprintln!(
        "storm: {} watchers seated in {:.3} s; {} frames received until then ({:.2} per join), {} in the {:.1} s after",
        f.seated,
        f.seat_all_ns as f64 / 1e9,
        frames,
        frames as f64 / f.seated.max(1) as f64,
        f.frames_after,
        a.settle
    );
    report.watchers = Some(f.seated);
    report.seat_all_s = Some(f.seat_all_ns as f64 / 1e9);
    report.joins_per_s = Some(if f.seat_all_ns > 0 {
        f.seated as f64 / (f.seat_all_ns as f64 / 1e9)
    } else {
        0.0
    });
    report.storm_frames_per_join = Some(frames as f64 / f.seated.max(1) as f64);
    report.storm_frames = f.frames.into_iter().collect();
    report.storm_frames_after = Some(f.frames_after);
    report.join_latency_us = Some(f.join.summary());
    report.watchers_count_ok = Some(f.counts_ok);
    if f.seated == 0 {
        let why: Vec<String> = st
            .errors
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect();
        return Err(format!("no watcher was seated: {}", why.join("; ")));
    }
    let broken = su.broken;
    let run = |fleet: &mut Fleet, step: u32, rate: f64| {
        fleet.run_step(step, rate, (a.warmup, a.duration, a.drain), c.quiet)
    };
    let add_errors = |report: &mut Report, e: &Stats| {
        report.errors += e.error_count();
        for (k, v) in &e.errors {
            *report.error_kinds.entry(k.clone()).or_insert(0) += v;
        }
    };
    if !a.find_max {
        let r = run(fleet, 0, a.rate)?;
        report.server_rss_after = c.server_pid.and_then(crate::sys::tree_rss);
        report.take_stats(&r.stats, a.duration);
        report.conns = r.stats.conns;
        add_errors(report, &errors);
        fleet.phase(Cmd::Teardown, "teardown", true)?;
        return Ok(());
    }
    let search = findmax::Search {
        rate: a.rate,
        step_factor: a.step_factor,
        max_steps: a.max_steps,
        p99_budget_ms: a.p99_budget_ms,
        duration: a.duration,
        deliveries_per_msg: f.seated as f64,
    };
    let rebuild = |fleet: &mut Fleet| {
        fleet.phase(Cmd::Teardown, "teardown", true)?;
        gen += 1;
        let su = crate::setup(fleet, gen, c.quiet, a.watchers + 1)?;
        let (f, _) = storm(a, fleet, true)?;
        Ok(su.broken || f.seated == 0)
    };
    let found = findmax::search(&search, fleet, report, broken, rebuild, run)?;
    report.server_rss_after = c.server_pid.and_then(crate::sys::tree_rss);
    fleet.phase(Cmd::Teardown, "teardown", true)?;
    report.conns = match (&found.best, &found.last) {
        (Some((_, r)), _) | (None, Some(r)) => r.stats.conns,
        (None, None) => 0,
    };
    found.fill(report, a.duration);
    add_errors(report, &errors);
    Ok(())
}
