//! `churn`: join / publish / leave cycles, open loop.
//!
//! Cycles are due at R per second in total (each process takes R / K); cycle
//! c goes to connection slot c mod N and room (c / N + slot) mod rooms. A
//! cycle due while its slot is still busy waits in the slot's queue; the
//! cycle latency (the main histogram) counts from the due time, the per-op
//! latencies from the request.
//!
//! roomd: the slots are N connections opened in `Setup`, which also creates
//! the rooms (`join:false`); a cycle is `join` -> `joined`, `pub` with `rid`
//! -> `ok`, `leave` -> `left`.
//! raw: a cycle is a whole connection: connect to the room path (join = until
//! the 101), one binary message (pub, no acknowledgement in the raw
//! protocol), close (leave = until the server's close reply).

use std::collections::VecDeque;

use tungstenite::{Bytes, Message};

use crate::ctl::{Cmd, Fleet, PhaseResult, Worker};
use crate::engine::{Engine, Handler, Io, Why};
use crate::fanout::teardown;
use crate::opts::{slice, ChurnArgs, Endpoint, Proto};
use crate::pace::Opener;
use crate::report::Report;
use crate::stats::Stats;
use crate::sys::{now_ns, secs_ns};
use crate::wire::{self, Header};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Free,
    Joining,
    Publishing,
    Leaving,
}

#[derive(Clone)]
struct Slot {
    id: usize,
    open: bool,
    op: Op,
    room: usize,
    /// When the current cycle was due, and when its current request left.
    due: u64,
    at: u64,
    queue: VecDeque<(u64, usize)>,
}

struct State {
    proto: Proto,
    ep: Endpoint,
    names: Vec<String>,
    slots: Vec<Slot>,
    payload: usize,
    rid: u32,
    connecting: usize,
    rooms_created: usize,
    completed: u64,
    stats: Stats,
}

impl State {
    fn send(&mut self, io: &mut Io, s: usize, body: Vec<u8>) -> bool {
        io.send(self.slots[s].id, Message::Binary(Bytes::from(body)))
    }

    /// Starts the next queued cycle on slot `s` if it is free.
    fn start_next(&mut self, io: &mut Io, s: usize, now: u64) {
        if self.slots[s].op != Op::Free {
            return;
        }
        let Some((due, room)) = self.slots[s].queue.pop_front() else {
            return;
        };
        let sl = &mut self.slots[s];
        sl.due = due;
        sl.room = room;
        sl.at = now;
        sl.op = Op::Joining;
        self.stats.sent += 1;
        match self.proto {
            Proto::Roomd => {
                self.rid = self.rid.wrapping_add(1);
                let req = wire::room_req("join", self.rid, &self.names[room]);
                if !self.send(io, s, req) {
                    self.fail(s, "slot connection lost");
                }
            }
            Proto::Raw => {
                let path = self.ep.path_for(&self.names[room]);
                match io.connect(&self.ep.target, &path, s as u32) {
                    Ok(id) => {
                        self.slots[s].id = id;
                        self.connecting += 1;
                    }
                    Err(e) => self.fail(s, &format!("connect: {e}")),
                }
            }
        }
    }

    fn fail(&mut self, s: usize, why: &str) {
        self.stats.error(why.to_string());
        self.slots[s].op = Op::Free;
    }

    fn done(&mut self, io: &mut Io, s: usize, now: u64) {
        let due = self.slots[s].due;
        self.stats.lat.record_ns(now.saturating_sub(due));
        self.stats.delivered += 1;
        self.completed += 1;
        self.slots[s].op = Op::Free;
        self.start_next(io, s, now);
    }

    fn publish(&mut self, io: &mut Io, s: usize, now: u64) {
        let room = self.slots[s].room;
        let h = Header {
            room: room as u32,
            sender: s as u32,
            step: 0,
            seq: 0,
            sched_ns: now,
        };
        let data = wire::payload(&h, self.payload);
        self.slots[s].op = Op::Publishing;
        self.slots[s].at = now;
        match self.proto {
            Proto::Roomd => {
                self.rid = self.rid.wrapping_add(1);
                let req = wire::publish(&self.names[room], &data, Some(self.rid));
                if !self.send(io, s, req) {
                    self.fail(s, "slot connection lost");
                }
            }
            Proto::Raw => {
                // No acknowledgement in the raw protocol: leave right away.
                if self.send(io, s, data) {
                    self.slots[s].op = Op::Leaving;
                    io.close(self.slots[s].id);
                } else {
                    self.fail(s, "connection lost before publishing");
                }
            }
        }
    }
}

impl Handler for State {
    fn opened(&mut self, io: &mut Io, _id: usize, tag: u32, now: u64) {
        let s = tag as usize;
        self.connecting = self.connecting.saturating_sub(1);
        self.stats.opened += 1;
        match self.proto {
            Proto::Roomd => self.slots[s].open = true,
            Proto::Raw => {
                let at = self.slots[s].at;
                self.stats.op("join", now.saturating_sub(at));
                self.publish(io, s, now);
            }
        }
    }

    fn message(&mut self, io: &mut Io, _id: usize, tag: u32, data: &[u8], _bin: bool, now: u64) {
        if self.proto == Proto::Raw {
            return;
        }
        let s = tag as usize;
        let Some(m) = wire::parse(data) else {
            self.stats.error("unparsable server message");
            return;
        };
        let op = self.slots[s].op;
        let at = self.slots[s].at;
        match (m.t, op) {
            ("created", _) => self.rooms_created += 1,
            ("joined", Op::Joining) if m.rid.is_some() => {
                self.stats.op("join", now.saturating_sub(at));
                self.publish(io, s, now);
            }
            ("ok", Op::Publishing) => {
                self.stats.op("pub", now.saturating_sub(at));
                self.slots[s].op = Op::Leaving;
                self.slots[s].at = now;
                self.rid = self.rid.wrapping_add(1);
                let req = wire::room_req("leave", self.rid, &self.names[self.slots[s].room]);
                if !self.send(io, s, req) {
                    self.fail(s, "slot connection lost");
                }
            }
            ("left", Op::Leaving) => {
                self.stats.op("leave", now.saturating_sub(at));
                self.done(io, s, now);
            }
            ("err", _) => {
                let code = m.code.unwrap_or("?");
                self.stats.server_err(code, m.msg.unwrap_or(""));
                if m.rid.is_some() && op != Op::Free {
                    // The cycle is abandoned; a seat it may hold is left.
                    if op != Op::Joining {
                        self.rid = self.rid.wrapping_add(1);
                        let req =
                            wire::room_req("leave", self.rid, &self.names[self.slots[s].room]);
                        self.send(io, s, req);
                    }
                    self.slots[s].op = Op::Free;
                    self.start_next(io, s, now);
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self, io: &mut Io, _id: usize, tag: u32, why: Why, now: u64) {
        let s = tag as usize;
        match self.proto {
            Proto::Roomd => {
                self.slots[s].open = false;
                if why.before_open() {
                    self.connecting = self.connecting.saturating_sub(1);
                    self.stats.failed += 1;
                }
                if let Some(l) = why.label() {
                    self.stats.error(l);
                }
                self.slots[s].op = Op::Free;
            }
            Proto::Raw => {
                if why.before_open() {
                    self.connecting = self.connecting.saturating_sub(1);
                }
                match (self.slots[s].op, why.label()) {
                    (Op::Leaving, None) => {
                        let at = self.slots[s].at;
                        self.stats.op("leave", now.saturating_sub(at));
                        self.done(io, s, now);
                    }
                    (_, label) => {
                        self.stats
                            .error(label.unwrap_or_else(|| "closed early".into()));
                        self.slots[s].op = Op::Free;
                        self.start_next(io, s, now);
                    }
                }
            }
        }
    }
}

pub struct ChurnWorker {
    eng: Engine,
    s: State,
    rate: f64,
    connect_rate: f64,
    max_inflight: usize,
    room_idle_ms: u32,
}

impl ChurnWorker {
    pub fn new(
        a: &ChurnArgs,
        index: usize,
        procs: usize,
        run_id: u32,
    ) -> Result<ChurnWorker, String> {
        let ep = Endpoint::from_common(&a.common)?;
        if a.payload < wire::HEADER {
            return Err(format!("--payload must be at least {} bytes", wire::HEADER));
        }
        if a.conns < procs || a.rate <= 0.0 {
            return Err("--conns must be at least --procs and --rate > 0".into());
        }
        let rooms = if a.rooms > 0 {
            a.rooms
        } else {
            (a.conns / 4).max(1)
        };
        let (lo, hi) = slice(a.conns, index, procs);
        let (rlo, rhi) = slice(rooms.max(procs), index, procs);
        let rb = if a.common.read_buffer > 0 {
            a.common.read_buffer
        } else {
            16 * 1024
        };
        let mut eng = Engine::new(rb).map_err(|e| format!("cannot create the event loop: {e}"))?;
        eng.connect_timeout_ns = ep.target.connect_timeout_ns;
        Ok(ChurnWorker {
            eng,
            s: State {
                proto: ep.proto,
                ep,
                names: (rlo..rhi).map(|g| format!("b{run_id}-churn-{g}")).collect(),
                slots: vec![
                    Slot {
                        id: usize::MAX,
                        open: false,
                        op: Op::Free,
                        room: 0,
                        due: 0,
                        at: 0,
                        queue: VecDeque::new(),
                    };
                    hi - lo
                ],
                payload: a.payload,
                rid: 0,
                connecting: 0,
                rooms_created: 0,
                completed: 0,
                stats: Stats::default(),
            },
            rate: a.rate / procs as f64,
            connect_rate: a.common.connect_rate / procs as f64,
            max_inflight: a.common.max_inflight,
            room_idle_ms: a.room_idle_ms,
        })
    }

    fn open_count(&self) -> u64 {
        self.s.slots.iter().filter(|s| s.open).count() as u64
    }

    /// roomd: open the slots' connections and create the rooms.
    fn setup(&mut self, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        if self.s.proto == Proto::Raw {
            return Ok(PhaseResult {
                stats: Stats {
                    conns: self.s.slots.len() as u64,
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        let n = self.s.slots.len();
        let mut opener = Opener::new(n, self.connect_rate, self.max_inflight, start);
        let mut next_progress = start + 1_000_000_000;
        let mut creating = false;
        let deadline = start + 60_000_000_000;
        loop {
            let now = now_ns();
            for _ in 0..opener.due(now, self.s.connecting) {
                let s = opener.take();
                let path = self.s.ep.path.clone();
                match self.eng.io.connect(&self.s.ep.target, &path, s as u32) {
                    Ok(id) => {
                        self.s.slots[s].id = id;
                        self.s.connecting += 1;
                    }
                    Err(e) => {
                        self.s.stats.failed += 1;
                        self.s.stats.error(format!("connect: {e}"));
                    }
                }
            }
            if opener.done() && self.s.connecting == 0 && !creating {
                creating = true;
                let open: Vec<usize> = (0..n).filter(|&s| self.s.slots[s].open).collect();
                if open.is_empty() {
                    break;
                }
                for r in 0..self.s.names.len() {
                    let s = open[r % open.len()];
                    let req = wire::create(r as u32, &self.s.names[r], 0, self.room_idle_ms, false);
                    self.s.send(&mut self.eng.io, s, req);
                }
            }
            if creating && self.s.rooms_created >= self.s.names.len() {
                break;
            }
            if now > deadline {
                self.s.stats.error("setup deadline passed");
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.open_count();
                progress(&self.s.stats);
            }
            let mut wake = next_progress;
            if let Some(t) = opener.next_at(self.s.connecting) {
                wake = wake.min(t);
            }
            self.eng
                .turn(&mut self.s, wake)
                .map_err(|e| format!("poll: {e}"))?;
        }
        self.s.stats.conns = self.open_count();
        Ok(PhaseResult::ended(&mut self.s.stats, start, false))
    }

    fn run(
        &mut self,
        t0: u64,
        duration_ns: u64,
        drain_ns: u64,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        let start = now_ns();
        self.s.stats = Stats::default();
        let n = self.s.slots.len() as u64;
        let rooms = self.s.names.len() as u64;
        let ns_per = 1e9 / self.rate;
        let t_end = t0 + duration_ns;
        let t_stop = t_end + drain_ns;
        let mut c = 0u64;
        let due = |c: u64| t0 + (c as f64 * ns_per) as u64;
        let mut next_progress = start + 1_000_000_000;
        let mut scheduled = 0u64;
        loop {
            let now = now_ns();
            while due(c) <= now && due(c) < t_end {
                let s = (c % n) as usize;
                let room = ((c / n + s as u64) % rooms) as usize;
                self.s.slots[s].queue.push_back((due(c), room));
                scheduled += 1;
                self.s.start_next(&mut self.eng.io, s, now);
                c += 1;
            }
            let busy = self
                .s
                .slots
                .iter()
                .any(|s| s.op != Op::Free || !s.queue.is_empty());
            if now >= t_end && (!busy || now >= t_stop) {
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.open_count();
                progress(&self.s.stats);
            }
            let mut wake = next_progress.min(t_stop);
            if due(c) < t_end {
                wake = wake.min(due(c));
            }
            self.eng
                .turn(&mut self.s, wake)
                .map_err(|e| format!("poll: {e}"))?;
        }
        for s in self.s.slots.iter_mut() {
            s.queue.clear();
        }
        self.s.stats.expected = scheduled;
        self.s.stats.conns = match self.s.proto {
            Proto::Roomd => self.open_count(),
            Proto::Raw => n,
        };
        Ok(PhaseResult::ended(&mut self.s.stats, start, false))
    }
}

impl Worker for ChurnWorker {
    fn phase(
        &mut self,
        cmd: &Cmd,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        match *cmd {
            Cmd::Setup { .. } => self.setup(progress),
            Cmd::Run {
                t0,
                duration_ns,
                drain_ns,
                ..
            } => self.run(t0, duration_ns, drain_ns, progress),
            Cmd::Hold { .. } => Ok(PhaseResult::default()),
            Cmd::Teardown => {
                let elapsed_ns = teardown(&mut self.eng, &mut self.s)?;
                Ok(PhaseResult {
                    elapsed_ns,
                    ..Default::default()
                })
            }
            Cmd::Storm { .. } | Cmd::Exit => Ok(PhaseResult::default()),
        }
    }
}

/// The controller: setup, cycle for --duration, report.
pub fn control(a: &ChurnArgs, fleet: &mut Fleet, report: &mut Report) -> Result<(), String> {
    let c = &a.common;
    let su = crate::setup(fleet, 0, c.quiet, a.conns)?;
    report.conns = su.stats.conns;
    report.connect_failed = su.stats.failed;
    let t0 = now_ns() + 200_000_000;
    let r = fleet.phase(
        Cmd::Run {
            step: 0,
            t0,
            warmup_ns: 0,
            duration_ns: secs_ns(a.duration),
            drain_ns: secs_ns(a.drain),
            rate: a.rate,
        },
        "churn",
        c.quiet,
    )?;
    report.server_rss_after = c.server_pid.and_then(crate::sys::tree_rss);
    let mut all = su.stats.clone();
    all.merge(&r.stats);
    report.take_stats(&all, a.duration);
    report.deliveries_per_s = 0.0;
    report.ops_per_s = Some(r.stats.delivered as f64 / a.duration);
    fleet.phase(Cmd::Teardown, "teardown", true)?;
    Ok(())
}
