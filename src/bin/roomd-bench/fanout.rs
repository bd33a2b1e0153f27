//! `fanout`: rooms of S members, P publishers each, R messages/s in total
//! sent on an open-loop schedule; every delivery checked and timed.
//!
//! Schedule: the `npub` publishers of the whole run are numbered globally
//! (room * P + slot); global message g = k * npub + pid (the k-th message of
//! publisher pid) is due at `t0 + g / R`. Each worker owns whole rooms, so it
//! walks only its own publishers in that order: a cursor c over its L local
//! publishers maps to k = c / L and pid = first_pid + c % L, monotone in time.
//! A message due while the loop was busy is sent late but keeps its scheduled
//! time in the payload, so the delay counts in the latency.
//!
//! Accounting (per step): a message scheduled at or after `t0 + warmup` is
//! measured; it adds (members ready at step start - 1) to `expected` when
//! sent; each distinct arrival at a member adds 1 to `delivered` and its
//! latency to the histogram. Order and exactly-once are checked per
//! (receiver, sender) with a `Tracker` over the sender's seq; with roomd the
//! room `seq` must also grow at every receiver.

use std::time::Instant;

use tungstenite::{Bytes, Message};

use crate::ctl::{Cmd, PhaseResult, Worker};
use crate::engine::{Engine, Handler, Io, Why};
use crate::opts::{slice, Endpoint, FanoutArgs, Proto};
use crate::pace::Opener;
use crate::stats::{Arrival, Stats, Tracker};
use crate::sys::{now_ns, secs_ns};
use crate::wire::{self, Header, PROBE_STEP};

/// The part of the plan every process agrees on.
#[derive(Clone, Debug)]
pub struct Plan {
    pub ep: Endpoint,
    pub room_size: usize,
    pub publishers: usize,
    pub payload: usize,
    pub rooms_total: usize,
    pub room_lo: usize,
    pub room_hi: usize,
    pub run_id: u32,
    pub room_idle_ms: u32,
    pub connect_rate: f64,
    pub max_inflight: usize,
    /// `--join-on-upgrade` (roomd only).
    pub join_on_upgrade: bool,
}

impl Plan {
    pub fn new(a: &FanoutArgs, index: usize, procs: usize, run_id: u32) -> Result<Plan, String> {
        let ep = Endpoint::from_common(&a.common)?;
        if a.room_size < 2 || !a.conns.is_multiple_of(a.room_size) {
            return Err(format!(
                "--conns {} must be a multiple of --room-size {} (>= 2)",
                a.conns, a.room_size
            ));
        }
        if a.publishers == 0 || a.publishers > a.room_size {
            return Err("--publishers must be between 1 and --room-size".into());
        }
        if a.payload < wire::HEADER {
            return Err(format!("--payload must be at least {} bytes", wire::HEADER));
        }
        if ep.proto == Proto::Roomd && a.room_size > u16::MAX as usize {
            return Err("--room-size too large for roomd's create.max".into());
        }
        let rooms_total = a.conns / a.room_size;
        if rooms_total < procs {
            return Err(format!(
                "{rooms_total} rooms cannot be split over {procs} processes"
            ));
        }
        let (room_lo, room_hi) = slice(rooms_total, index, procs);
        let join_on_upgrade = a.join_on_upgrade && ep.proto == Proto::Roomd;
        Ok(Plan {
            ep,
            room_size: a.room_size,
            publishers: a.publishers,
            payload: a.payload,
            rooms_total,
            room_lo,
            room_hi,
            run_id,
            room_idle_ms: a.room_idle_ms,
            connect_rate: a.common.connect_rate / procs as f64,
            max_inflight: a.common.max_inflight.max(1),
            join_on_upgrade,
        })
    }

    /// The path member `m` of room `name` connects to: with
    /// `--join-on-upgrade`, a member that is not the creator joins there.
    fn path_of(&self, m: usize, name: &str) -> String {
        let p = self.ep.path_for(name);
        if !self.join_on_upgrade || m.is_multiple_of(self.room_size) {
            return p;
        }
        let sep = if p.contains('?') { '&' } else { '?' };
        format!("{p}{sep}room={name}")
    }

    fn local_rooms(&self) -> usize {
        self.room_hi - self.room_lo
    }

    fn local_members(&self) -> usize {
        self.local_rooms() * self.room_size
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ms {
    Idle,
    Connecting,
    /// Upgraded; roomd: waiting for welcome / joined; raw: waiting for a probe.
    Open,
    Ready,
    Dead,
}

#[derive(Clone)]
struct Member {
    id: usize,
    st: Ms,
    last_room_seq: u64,
}

struct Room {
    name: String,
    created: bool,
    /// Members waiting for the room to exist: to join it (or, with
    /// `--join-on-upgrade`, to connect).
    waiting: Vec<u32>,
    ready_at_start: u32,
}

/// The scenario state; the engine calls into it.
struct State {
    plan: Plan,
    members: Vec<Member>,
    rooms: Vec<Room>,
    /// Flat: member * P + publisher slot.
    trackers: Vec<Tracker>,
    stats: Stats,
    /// Current step; messages of other steps are late leftovers.
    step: u32,
    measure_from: u64,
    in_run: bool,
    connecting: usize,
    lost: bool,
}

impl State {
    fn room_of(&self, m: usize) -> usize {
        m / self.plan.room_size
    }

    fn global_member(&self, m: usize) -> u32 {
        ((self.plan.room_lo * self.plan.room_size) + m) as u32
    }

    fn kill(&mut self, m: usize) {
        if self.members[m].st == Ms::Connecting {
            self.connecting -= 1;
        }
        self.members[m].st = Ms::Dead;
    }

    /// Opens member `m`'s connection.
    fn connect(&mut self, io: &mut Io, m: usize) {
        let path = self.plan.path_of(m, &self.rooms[self.room_of(m)].name);
        match io.connect(&self.plan.ep.target, &path, m as u32) {
            Ok(id) => {
                self.members[m].id = id;
                self.members[m].st = Ms::Connecting;
                self.connecting += 1;
            }
            Err(e) => {
                self.members[m].st = Ms::Dead;
                self.stats.failed += 1;
                self.stats.error(format!("connect: {e}"));
            }
        }
    }

    /// Member `m` will never be in its room: closed, or (not connected
    /// yet, with `--join-on-upgrade`) never opened.
    fn give_up(&mut self, io: &mut Io, m: usize) {
        if self.members[m].st == Ms::Idle {
            self.members[m].st = Ms::Dead;
            self.stats.failed += 1;
        } else {
            io.close(self.members[m].id);
        }
    }

    fn send_join(&mut self, io: &mut Io, m: usize) {
        let r = self.room_of(m);
        let msg = wire::room_req("join", 2, &self.rooms[r].name);
        io.send(self.members[m].id, Message::Binary(Bytes::from(msg)));
    }

    /// One payload arrived at member `m`.
    fn payload(&mut self, m: usize, data: &[u8], now: u64) {
        let Some(h) = Header::read(data) else {
            self.stats.error("payload without harness header");
            return;
        };
        if h.step == PROBE_STEP {
            if self.members[m].st == Ms::Open {
                self.members[m].st = Ms::Ready;
            }
            return;
        }
        if !self.in_run || h.step != self.step {
            self.stats.error("delivery from an earlier step");
            return;
        }
        let s = self.plan.room_size as u32;
        let my_room = (self.plan.room_lo + self.room_of(m)) as u32;
        if h.room != my_room || h.sender / s != my_room {
            self.stats.error("delivery to the wrong room");
            return;
        }
        let slot = (h.sender % s) as usize;
        if slot >= self.plan.publishers || h.sender == self.global_member(m) {
            self.stats
                .error("delivery from a non-publisher or to its own sender");
            return;
        }
        let measured = h.sched_ns >= self.measure_from;
        match self.trackers[m * self.plan.publishers + slot].arrive(h.seq) {
            Arrival::Duplicate => {
                self.stats.duplicated += 1;
                return;
            }
            Arrival::Late => self.stats.reordered += 1,
            Arrival::InOrder => {}
        }
        if measured {
            self.stats.delivered += 1;
            self.stats.lat.record_ns(now.saturating_sub(h.sched_ns));
        }
    }

    fn roomd_message(&mut self, io: &mut Io, m: usize, data: &[u8], now: u64) {
        let Some(msg) = wire::parse(data) else {
            self.stats.error("unparsable server message");
            return;
        };
        match msg.t {
            "msg" => {
                if let Some(seq) = msg.seq {
                    if seq <= self.members[m].last_room_seq {
                        self.stats.error("room seq did not grow");
                    }
                    self.members[m].last_room_seq = seq;
                }
                match msg.data {
                    Some(d) => self.payload(m, d, now),
                    None => self.stats.error("msg without data"),
                }
            }
            "welcome" => {
                if self.members[m].st != Ms::Open {
                    return;
                }
                let r = self.room_of(m);
                if self.plan.join_on_upgrade && !m.is_multiple_of(self.plan.room_size) {
                    // Joined by the upgrade: `joined` follows.
                    return;
                }
                if m.is_multiple_of(self.plan.room_size) {
                    // With --join-on-upgrade the server names the room, so
                    // that it is homed on the creator's worker.
                    let name = match self.plan.join_on_upgrade {
                        true => "",
                        false => &self.rooms[r].name,
                    };
                    let req = wire::create(
                        1,
                        name,
                        self.plan.room_size as u16,
                        self.plan.room_idle_ms,
                        true,
                    );
                    io.send(self.members[m].id, Message::Binary(Bytes::from(req)));
                } else if self.rooms[r].created {
                    self.send_join(io, m);
                } else {
                    self.rooms[r].waiting.push(m as u32);
                }
            }
            "created" => {
                let r = self.room_of(m);
                if self.plan.join_on_upgrade {
                    match msg.room {
                        Some(name) => self.rooms[r].name = name.to_owned(),
                        None => self.stats.error("created without its room"),
                    }
                }
                self.rooms[r].created = true;
                for w in std::mem::take(&mut self.rooms[r].waiting) {
                    let w = w as usize;
                    if self.plan.join_on_upgrade {
                        self.connect(io, w);
                    } else if self.members[w].st == Ms::Open {
                        self.send_join(io, w);
                    }
                }
            }
            "joined" if self.members[m].st == Ms::Open => self.members[m].st = Ms::Ready,
            "err" => {
                let code = msg.code.unwrap_or("?");
                self.stats.server_err(code, msg.msg.unwrap_or(""));
                if self.members[m].st == Ms::Open && msg.rid.is_some() {
                    // A failed create or join: this member will never be ready.
                    let r = self.room_of(m);
                    if m.is_multiple_of(self.plan.room_size) {
                        for w in std::mem::take(&mut self.rooms[r].waiting) {
                            self.give_up(io, w as usize);
                        }
                    }
                    io.close(self.members[m].id);
                }
            }
            _ => {}
        }
    }
}

impl Handler for State {
    fn opened(&mut self, _io: &mut Io, _id: usize, tag: u32, _now: u64) {
        let m = tag as usize;
        if self.members[m].st == Ms::Connecting {
            self.connecting -= 1;
            self.members[m].st = Ms::Open;
            self.stats.opened += 1;
        }
    }

    fn message(&mut self, io: &mut Io, _id: usize, tag: u32, data: &[u8], _binary: bool, now: u64) {
        let m = tag as usize;
        match self.plan.ep.proto {
            Proto::Raw => self.payload(m, data, now),
            Proto::Roomd => self.roomd_message(io, m, data, now),
        }
    }

    fn closed(&mut self, io: &mut Io, _id: usize, tag: u32, why: Why, _now: u64) {
        let m = tag as usize;
        let was = self.members[m].st;
        self.kill(m);
        let r = self.room_of(m);
        if self.plan.ep.proto == Proto::Roomd
            && m.is_multiple_of(self.plan.room_size)
            && !self.rooms.is_empty()
            && !self.rooms[r].created
        {
            // The room will never be created: its waiting members give up.
            for w in std::mem::take(&mut self.rooms[r].waiting) {
                self.stats
                    .error("room creator lost before the room existed");
                self.give_up(io, w as usize);
            }
        }
        if let Some(label) = why.label() {
            if why.before_open() {
                self.stats.failed += 1;
            }
            self.stats.error(label);
            self.lost = true;
        } else if was != Ms::Dead && self.in_run {
            self.lost = true;
        }
    }
}

pub struct FanoutWorker {
    eng: Engine,
    s: State,
}

impl FanoutWorker {
    pub fn new(plan: Plan, read_buffer: usize) -> Result<FanoutWorker, String> {
        let mut eng = Engine::new(if read_buffer > 0 {
            read_buffer
        } else {
            64 * 1024
        })
        .map_err(|e| format!("cannot create the event loop: {e}"))?;
        eng.connect_timeout_ns = plan.ep.target.connect_timeout_ns;
        let n = plan.local_members();
        let p = plan.publishers;
        Ok(FanoutWorker {
            eng,
            s: State {
                members: vec![
                    Member {
                        id: usize::MAX,
                        st: Ms::Idle,
                        last_room_seq: 0,
                    };
                    n
                ],
                rooms: Vec::new(),
                trackers: vec![Tracker::default(); n * p],
                stats: Stats::default(),
                step: 0,
                measure_from: 0,
                in_run: false,
                connecting: 0,
                lost: false,
                plan,
            },
        })
    }

    fn ready_count(&self) -> u64 {
        self.s.members.iter().filter(|m| m.st == Ms::Ready).count() as u64
    }

    fn setup(&mut self, gen: u32, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        let s = &mut self.s;
        s.stats = Stats::default();
        s.lost = false;
        s.in_run = false;
        s.rooms = (0..s.plan.local_rooms())
            .map(|r| Room {
                name: format!("b{}-{gen}-{}", s.plan.run_id, s.plan.room_lo + r),
                created: false,
                waiting: Vec::new(),
                ready_at_start: 0,
            })
            .collect();
        for m in s.members.iter_mut() {
            *m = Member {
                id: usize::MAX,
                st: Ms::Idle,
                last_room_seq: 0,
            };
        }
        s.connecting = 0;
        let n = s.members.len();
        let mut opener = Opener::new(n, s.plan.connect_rate, s.plan.max_inflight, start);
        let deadline = start + secs_ns(60.0) + self.eng.connect_timeout_ns * (1 + n as u64 / 1000);
        let mut next_progress = start + 1_000_000_000;
        let mut next_probe = 0u64;
        loop {
            let now = now_ns();
            let s = &mut self.s;
            for _ in 0..opener.due(now, s.connecting) {
                let m = opener.take();
                let r = m / s.plan.room_size;
                if s.plan.join_on_upgrade
                    && !m.is_multiple_of(s.plan.room_size)
                    && !s.rooms[r].created
                {
                    // Connects once its room exists (see "created").
                    s.rooms[r].waiting.push(m as u32);
                    continue;
                }
                s.connect(&mut self.eng.io, m);
            }
            let unresolved = s
                .members
                .iter()
                .filter(|m| !matches!(m.st, Ms::Ready | Ms::Dead))
                .count();
            if opener.done() && unresolved == 0 {
                break;
            }
            if now > deadline {
                for m in 0..n {
                    if !matches!(s.members[m].st, Ms::Ready | Ms::Dead) {
                        let id = s.members[m].id;
                        s.kill(m);
                        s.stats.failed += 1;
                        s.stats.error("not in its room by the setup deadline");
                        self.eng.io.close(id);
                    }
                }
                break;
            }
            // Raw rooms: membership starts "some moment after the upgrade";
            // the first two live members of each room probe every 50 ms until
            // every member has heard one (then it is surely in the room).
            let all_open = opener.done() && s.connecting == 0;
            if s.plan.ep.proto == Proto::Raw && all_open && now >= next_probe {
                next_probe = now + 50_000_000;
                for r in 0..s.rooms.len() {
                    let alive: Vec<usize> = (r * s.plan.room_size..(r + 1) * s.plan.room_size)
                        .filter(|&m| matches!(s.members[m].st, Ms::Open | Ms::Ready))
                        .take(2)
                        .collect();
                    for m in alive {
                        let h = Header {
                            room: (s.plan.room_lo + r) as u32,
                            sender: s.global_member(m),
                            step: PROBE_STEP,
                            seq: 0,
                            sched_ns: now,
                        };
                        let p = wire::payload(&h, wire::HEADER);
                        let id = s.members[m].id;
                        self.eng.io.send(id, Message::Binary(Bytes::from(p)));
                    }
                }
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                s.stats.conns = s.members.iter().filter(|m| m.st == Ms::Ready).count() as u64;
                progress(&s.stats);
            }
            let mut wake = next_progress.min(deadline);
            if let Some(t) = opener.next_at(s.connecting) {
                wake = wake.min(t);
            }
            if s.plan.ep.proto == Proto::Raw && all_open {
                wake = wake.min(next_probe);
            }
            self.eng
                .turn(&mut self.s, wake)
                .map_err(|e| format!("poll: {e}"))?;
        }
        // Let probes still in flight arrive before the first step.
        if self.s.plan.ep.proto == Proto::Raw {
            let until = now_ns() + 100_000_000;
            while now_ns() < until {
                self.eng
                    .turn(&mut self.s, until)
                    .map_err(|e| format!("poll: {e}"))?;
            }
        }
        let ready = self.ready_count();
        let s = &mut self.s;
        s.stats.conns = ready;
        s.stats.opened = ready;
        Ok(PhaseResult::ended(
            &mut s.stats,
            start,
            s.lost || ready < s.members.len() as u64,
        ))
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
        s.measure_from = t0 + warmup_ns;
        for t in s.trackers.iter_mut() {
            t.reset();
        }
        let size = s.plan.room_size;
        for r in 0..s.rooms.len() {
            s.rooms[r].ready_at_start = (0..size)
                .filter(|i| s.members[r * size + i].st == Ms::Ready)
                .count() as u32;
        }
        let p = s.plan.publishers;
        let local_pubs = (s.rooms.len() * p) as u64;
        let npub = (s.plan.rooms_total * p) as f64;
        let first_pid = (s.plan.room_lo * p) as f64;
        let ns_per_msg = 1e9 / rate.max(1e-9);
        let t_measure = t0 + warmup_ns;
        let t_end = t_measure + duration_ns;
        let t_stop = t_end + drain_ns;
        let due_at = |c: u64| -> u64 {
            let k = (c / local_pubs) as f64;
            let j = (c % local_pubs) as f64;
            t0 + ((k * npub + first_pid + j) * ns_per_msg) as u64
        };
        let mut cursor = 0u64;
        let mut next_due = due_at(0);
        let mut next_progress = start + 1_000_000_000;
        let mut buf = vec![0x2au8; s.plan.payload];
        // How late the harness itself sends against the schedule.
        let mut send_lag = crate::stats::Lat::default();
        loop {
            let now = now_ns();
            let s = &mut self.s;
            while next_due <= now && next_due < t_end {
                let j = (cursor % local_pubs) as usize;
                let k = cursor / local_pubs;
                let (r, slot) = (j / p, j % p);
                let m = r * size + slot;
                let measured = next_due >= t_measure;
                if s.members[m].st == Ms::Ready {
                    Header {
                        room: (s.plan.room_lo + r) as u32,
                        sender: s.global_member(m),
                        step,
                        seq: k as u32,
                        sched_ns: next_due,
                    }
                    .write(&mut buf);
                    let frame = match s.plan.ep.proto {
                        Proto::Raw => buf.clone(),
                        Proto::Roomd => wire::publish(&s.rooms[r].name, &buf, None),
                    };
                    if self
                        .eng
                        .io
                        .send(s.members[m].id, Message::Binary(Bytes::from(frame)))
                        && measured
                    {
                        send_lag.record_ns(now - next_due);
                        s.stats.sent += 1;
                        s.stats.expected += s.rooms[r].ready_at_start.saturating_sub(1) as u64;
                    }
                } else if measured {
                    s.stats.error("publisher connection lost: message not sent");
                }
                cursor += 1;
                next_due = due_at(cursor);
            }
            if now >= t_end && (s.stats.delivered >= s.stats.expected || now >= t_stop) {
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                s.stats.conns = s.members.iter().filter(|m| m.st == Ms::Ready).count() as u64;
                progress(&s.stats);
            }
            let mut wake = next_progress.min(t_stop);
            if next_due < t_end {
                wake = wake.min(next_due);
            }
            self.eng
                .turn(&mut self.s, wake)
                .map_err(|e| format!("poll: {e}"))?;
        }
        let ready = self.ready_count();
        let s = &mut self.s;
        s.stats.ops.insert("send lag".into(), send_lag);
        s.in_run = false;
        s.stats.conns = ready;
        Ok(PhaseResult::ended(&mut s.stats, start, s.lost))
    }

    fn hold(&mut self, until: u64) -> Result<PhaseResult, String> {
        let start = now_ns();
        while now_ns() < until {
            self.eng
                .turn(&mut self.s, until)
                .map_err(|e| format!("poll: {e}"))?;
        }
        let ready = self.ready_count();
        let s = &mut self.s;
        s.stats.conns = ready;
        Ok(PhaseResult::ended(&mut s.stats, start, s.lost))
    }
}

/// Closes every connection of `eng` and waits (at most 3 s) for the servers'
/// close replies.
pub fn teardown<H: Handler>(eng: &mut Engine, h: &mut H) -> Result<u64, String> {
    let start = Instant::now();
    for id in eng.io.ids() {
        eng.io.close(id);
    }
    let deadline = now_ns() + 3_000_000_000;
    while eng.io.len() > 0 && now_ns() < deadline {
        eng.turn(h, deadline).map_err(|e| format!("poll: {e}"))?;
    }
    Ok(start.elapsed().as_nanos() as u64)
}

impl Worker for FanoutWorker {
    fn phase(
        &mut self,
        cmd: &Cmd,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        match *cmd {
            Cmd::Setup { gen } => self.setup(gen, progress),
            Cmd::Run {
                step,
                t0,
                warmup_ns,
                duration_ns,
                drain_ns,
                rate,
            } => self.run(step, t0, warmup_ns, duration_ns, drain_ns, rate, progress),
            Cmd::Hold { until } => self.hold(until),
            Cmd::Teardown => {
                let elapsed_ns = teardown(&mut self.eng, &mut self.s)?;
                for m in self.s.members.iter_mut() {
                    m.st = Ms::Idle;
                }
                self.s.connecting = 0;
                self.s.stats = Stats::default();
                Ok(PhaseResult {
                    elapsed_ns,
                    ..Default::default()
                })
            }
            Cmd::Storm { .. } | Cmd::Exit => Ok(PhaseResult::default()),
        }
    }
}
