//! `rooms`: create N rooms (and seat M members in each), then measure the
//! server's memory per room.
//!
//! roomd: `Setup` opens the creator and member connections; the controller
//! samples RSS; `Run` sends `create` (`join:false`) from the creators, at most
//! `--window` in flight per connection, and as each `created` arrives, the
//! room's M `join`s from member connections (each joins up to
//! `--rooms-per-conn` rooms); RSS is sampled again after a short hold. A
//! `rate_limited` create is retried. Latencies: per `create` and per `join`.
//!
//! raw: a room exists while it has members, so `Setup` opens M connections to
//! each of the N room paths and the memory covers rooms and their members.

use crate::ctl::{Cmd, Fleet, PhaseResult, Worker};
use crate::engine::{Engine, Handler, Io, Why};
use crate::fanout::teardown;
use crate::opts::{slice, Endpoint, Proto, RoomsArgs};
use crate::pace::Opener;
use crate::report::Report;
use crate::stats::Stats;
use crate::sys::{now_ns, secs_ns};
use crate::wire;
use tungstenite::{Bytes, Message};

/// Join requests carry this bit in `rid`; creates carry the local room index.
const JOIN_BIT: u32 = 1 << 31;

/// Connections one process needs for its slice (the largest slice).
fn local_conns(a: &RoomsArgs, proto: Proto, rooms_local: usize, creators_local: usize) -> usize {
    match proto {
        Proto::Raw => rooms_local * a.members.max(1),
        Proto::Roomd => {
            let per = a.rooms_per_conn.max(1).min(rooms_local.max(1));
            creators_local + (rooms_local * a.members).div_ceil(per)
        }
    }
}

/// Connections in total (for the open-files check).
pub fn conns_needed(a: &RoomsArgs) -> usize {
    let procs = a.common.procs.max(1);
    local_conns(
        a,
        a.common.proto,
        a.rooms.div_ceil(procs),
        a.creators.div_ceil(procs),
    ) * procs
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cs {
    Idle,
    Connecting,
    Open,
    Dead,
}

struct State {
    proto: Proto,
    names: Vec<String>,
    members: usize,
    per_conn: usize,
    creators: usize,
    /// Connection slots: creators first, then member connections.
    ids: Vec<usize>,
    st: Vec<Cs>,
    connecting: usize,
    inflight: Vec<u32>,
    window: u32,
    idle_ms: u32,
    next_room: usize,
    retry: Vec<u32>,
    create_at: Vec<u64>,
    join_at: Vec<u64>,
    creates_done: usize,
    rooms_ok: usize,
    joins_done: usize,
    joins_ok: usize,
    stats: Stats,
}

impl State {
    fn open(&self, slot: usize) -> bool {
        self.st[slot] == Cs::Open
    }

    /// The member connection slot and seat of member k of local room r.
    fn member_slot(&self, r: usize, k: usize) -> usize {
        self.creators + (k * self.names.len() + r) / self.per_conn
    }

    fn refill(&mut self, io: &mut Io, c: usize) {
        while self.open(c) && self.inflight[c] < self.window {
            let r = match self.retry.pop() {
                Some(r) => r as usize,
                None if self.next_room < self.names.len() => {
                    self.next_room += 1;
                    self.next_room - 1
                }
                None => return,
            };
            self.create_at[r] = now_ns();
            let req = wire::create(r as u32, &self.names[r], 0, self.idle_ms, false);
            if io.send(self.ids[c], Message::Binary(Bytes::from(req))) {
                self.inflight[c] += 1;
                self.stats.sent += 1;
            } else {
                self.retry.push(r as u32);
                return;
            }
        }
    }

    fn joins_for(&mut self, io: &mut Io, r: usize) {
        for k in 0..self.members {
            let seat = r * self.members + k;
            let slot = self.member_slot(r, k);
            self.join_at[seat] = now_ns();
            let req = wire::room_req("join", JOIN_BIT | seat as u32, &self.names[r]);
            if !(self.open(slot) && io.send(self.ids[slot], Message::Binary(Bytes::from(req)))) {
                self.joins_done += 1;
                self.stats.error("member connection lost: join not sent");
            }
        }
    }
}

impl Handler for State {
    fn opened(&mut self, _io: &mut Io, _id: usize, tag: u32, _now: u64) {
        let c = tag as usize;
        self.connecting -= 1;
        self.st[c] = Cs::Open;
        self.stats.opened += 1;
    }

    fn message(&mut self, io: &mut Io, _id: usize, tag: u32, data: &[u8], _bin: bool, now: u64) {
        if self.proto == Proto::Raw {
            return;
        }
        let c = tag as usize;
        let Some(m) = wire::parse(data) else {
            self.stats.error("unparsable server message");
            return;
        };
        let Some(rid) = m.rid.map(|r| r as u32) else {
            return;
        };
        match m.t {
            "created" if rid & JOIN_BIT == 0 && (rid as usize) < self.names.len() => {
                let r = rid as usize;
                self.inflight[c] = self.inflight[c].saturating_sub(1);
                self.creates_done += 1;
                self.rooms_ok += 1;
                self.stats.delivered += 1;
                self.stats
                    .op("create", now.saturating_sub(self.create_at[r]));
                self.stats
                    .lat
                    .record_ns(now.saturating_sub(self.create_at[r]));
                self.joins_for(io, r);
                self.refill(io, c);
            }
            "joined" if rid & JOIN_BIT != 0 => {
                let seat = (rid & !JOIN_BIT) as usize;
                if let Some(at) = self.join_at.get(seat) {
                    self.stats.op("join", now.saturating_sub(*at));
                }
                self.joins_done += 1;
                self.joins_ok += 1;
            }
            "err" => {
                let code = m.code.unwrap_or("?");
                self.stats.server_err(code, m.msg.unwrap_or(""));
                if rid & JOIN_BIT != 0 {
                    self.joins_done += 1;
                } else if (rid as usize) < self.names.len() {
                    self.inflight[c] = self.inflight[c].saturating_sub(1);
                    if code == "rate_limited" {
                        self.retry.push(rid);
                    } else {
                        self.creates_done += 1;
                        // Its members will never join.
                        self.joins_done += self.members;
                    }
                    self.refill(io, c);
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self, _io: &mut Io, _id: usize, tag: u32, why: Why, _now: u64) {
        let c = tag as usize;
        if self.st[c] == Cs::Connecting {
            self.connecting -= 1;
        }
        self.st[c] = Cs::Dead;
        self.stats.conn_closed(&why);
    }
}

pub struct RoomsWorker {
    eng: Engine,
    s: State,
    ep: Endpoint,
    rate: f64,
    max_inflight: usize,
}

impl RoomsWorker {
    pub fn new(
        a: &RoomsArgs,
        index: usize,
        procs: usize,
        run_id: u32,
    ) -> Result<RoomsWorker, String> {
        let ep = Endpoint::from_common(&a.common)?;
        if ep.proto == Proto::Raw && a.members == 0 {
            return Err(
                "rooms --proto raw needs --members >= 1 (a raw room exists only with members)"
                    .into(),
            );
        }
        if a.rooms < procs || (ep.proto == Proto::Roomd && a.creators < procs) {
            return Err("--rooms and --creators must be at least --procs".into());
        }
        let (lo, hi) = slice(a.rooms, index, procs);
        let (clo, chi) = slice(a.creators, index, procs);
        let n = hi - lo;
        let creators = if ep.proto == Proto::Roomd {
            chi - clo
        } else {
            0
        };
        let total = local_conns(a, ep.proto, n, creators);
        let rb = if a.common.read_buffer > 0 {
            a.common.read_buffer
        } else {
            16 * 1024
        };
        let mut eng = Engine::new(rb).map_err(|e| format!("cannot create the event loop: {e}"))?;
        eng.connect_timeout_ns = ep.target.connect_timeout_ns;
        Ok(RoomsWorker {
            eng,
            s: State {
                proto: ep.proto,
                names: (lo..hi).map(|g| format!("b{run_id}-room-{g}")).collect(),
                members: a.members,
                per_conn: a.rooms_per_conn.max(1).min(n.max(1)),
                creators,
                ids: vec![usize::MAX; total],
                st: vec![Cs::Idle; total],
                connecting: 0,
                inflight: vec![0; total],
                window: a.window.max(1) as u32,
                idle_ms: a.room_idle_ms,
                next_room: 0,
                retry: Vec::new(),
                create_at: vec![0; n],
                join_at: vec![0; n * a.members],
                creates_done: 0,
                rooms_ok: 0,
                joins_done: 0,
                joins_ok: 0,
                stats: Stats::default(),
            },
            ep,
            rate: a.common.connect_rate / procs as f64,
            max_inflight: a.common.max_inflight,
        })
    }

    fn open_count(&self) -> u64 {
        self.s.st.iter().filter(|s| **s == Cs::Open).count() as u64
    }

    fn setup(&mut self, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        let total = self.s.ids.len();
        let mut opener = Opener::new(total, self.rate, self.max_inflight, start);
        let mut next_progress = start + 1_000_000_000;
        loop {
            let now = now_ns();
            for _ in 0..opener.due(now, self.s.connecting) {
                let c = opener.take();
                let path = match self.s.proto {
                    Proto::Raw => self.ep.path_for(&self.s.names[c / self.s.members]),
                    Proto::Roomd => self.ep.path.clone(),
                };
                match self.eng.io.connect(&self.ep.target, &path, c as u32) {
                    Ok(id) => {
                        self.s.ids[c] = id;
                        self.s.st[c] = Cs::Connecting;
                        self.s.connecting += 1;
                    }
                    Err(e) => {
                        self.s.st[c] = Cs::Dead;
                        self.s.stats.failed += 1;
                        self.s.stats.error(format!("connect: {e}"));
                    }
                }
            }
            if opener.done() && self.s.connecting == 0 {
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

    fn create(&mut self, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        if self.s.proto == Proto::Raw {
            return Ok(PhaseResult::default());
        }
        for c in 0..self.s.creators {
            self.s.refill(&mut self.eng.io, c);
        }
        let n = self.s.names.len();
        let mut next_progress = start + 1_000_000_000;
        let mut last_change = start;
        let mut last_done = 0;
        loop {
            let now = now_ns();
            let done = self.s.creates_done + self.s.joins_done;
            if self.s.creates_done >= n && self.s.joins_done >= n * self.s.members {
                break;
            }
            if done != last_done {
                last_done = done;
                last_change = now;
            } else if now > last_change + 10_000_000_000 {
                self.s.stats.error("no reply for 10 s: gave up");
                break;
            }
            if !self.s.retry.is_empty() {
                for c in 0..self.s.creators {
                    self.s.refill(&mut self.eng.io, c);
                }
            }
            if self.s.creators > 0
                && (0..self.s.creators).all(|c| !self.s.open(c))
                && self.s.creates_done < n
            {
                self.s.stats.error("every creator connection lost");
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.open_count();
                progress(&self.s.stats);
            }
            // Retries wait a little for the server's rate limit to refill.
            let wake = if self.s.retry.is_empty() {
                next_progress
            } else {
                next_progress.min(now + 10_000_000)
            };
            self.eng
                .turn(&mut self.s, wake)
                .map_err(|e| format!("poll: {e}"))?;
        }
        self.s.stats.conns = self.open_count();
        self.s.stats.expected = (n + n * self.s.members) as u64;
        self.s.stats.delivered = (self.s.rooms_ok + self.s.joins_ok) as u64;
        Ok(PhaseResult::ended(&mut self.s.stats, start, false))
    }
}

impl Worker for RoomsWorker {
    fn phase(
        &mut self,
        cmd: &Cmd,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        match *cmd {
            Cmd::Setup { .. } => self.setup(progress),
            Cmd::Run { .. } => self.create(progress),
            Cmd::Hold { until } => {
                while now_ns() < until {
                    self.eng
                        .turn(&mut self.s, until)
                        .map_err(|e| format!("poll: {e}"))?;
                }
                self.s.stats.conns = self.open_count();
                Ok(PhaseResult {
                    stats: std::mem::take(&mut self.s.stats),
                    ..Default::default()
                })
            }
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

/// The controller: connect, sample RSS, create (and join), hold, sample RSS.
pub fn control(a: &RoomsArgs, fleet: &mut Fleet, report: &mut Report) -> Result<(), String> {
    let c = &a.common;
    let rss = || c.server_pid.and_then(crate::sys::tree_rss);
    let want = conns_needed(a);
    let su = crate::setup(fleet, 0, c.quiet, want)?;
    report.conns = su.stats.conns;
    report.connect_failed = su.stats.failed;
    let mut all = su.stats.clone();
    let (made, secs) = if c.proto == Proto::Raw {
        // The memory baseline is the one before any connection.
        (
            su.stats.opened / a.members.max(1) as u64,
            su.elapsed_ns as f64 / 1e9,
        )
    } else {
        report.server_rss_before = rss();
        let r = fleet.phase(
            Cmd::Run {
                step: 0,
                t0: 0,
                warmup_ns: 0,
                duration_ns: 0,
                drain_ns: 0,
                rate: 0.0,
            },
            "create",
            c.quiet,
        )?;
        all.merge(&r.stats);
        let made = r.stats.ops.get("create").map_or(0, |l| l.count());
        (made, r.elapsed_ns as f64 / 1e9)
    };
    let until = now_ns() + secs_ns(a.hold);
    fleet.phase(Cmd::Hold { until }, "hold", c.quiet)?;
    report.server_rss_after = rss();
    report.take_stats(&all, secs);
    report.deliveries_per_s = 0.0;
    report.rooms = Some(made);
    report.rooms_per_s = Some(if secs > 0.0 { made as f64 / secs } else { 0.0 });
    if let (Some(b), Some(af)) = (report.server_rss_before, report.server_rss_after) {
        if made > 0 {
            report.bytes_per_room = Some((af as f64 - b as f64) / made as f64);
        }
    }
    eprintln!("rooms: {made} created in {secs:.2} s");
    fleet.phase(Cmd::Teardown, "teardown", true)?;
    Ok(())
}
