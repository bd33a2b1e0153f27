//! `faults`: rooms under load while workers are killed (SIGKILL) or
//! stopped (SIGSTOP) by the injector (`inject`); what clients lose.
//!
//! Layout: `conns` clients in rooms of `room_size` (slot r holds clients
//! r*S .. r*S+S-1), one process, one loop. Each slot's room is named so
//! that its home (FNV-1a of the name, as the server computes it) is worker
//! `r % workers`: rooms are spread evenly, and the harness knows which
//! worker homes each. A room lost with its home (`closed` with
//! `why:"lost"`, `{"closed":"lost"}` in `resumed`, or `not_found` for a
//! join) is created again under the slot's next name, on the same worker,
//! by one of its members (retrying while the worker restarts), and the
//! others join it.
//!
//! Load: `rate` `pub`s per second, each with a `rid` and `echo:true`, one
//! room after the other, from the next of its members that is seated. With
//! `echo` every member receives the room's whole `seq`, so each member
//! checks that `seq` grows by exactly one (no gap, no duplicate).
//!
//! A client whose connection ends (its worker died, a relay closed 1011, or
//! a drop of our own with `--drops-per-s`) reconnects at once (backing off
//! to 1 s while connects fail) and sends `hello` with `resume` and its
//! room's `last`. Then:
//! - `resumed`, room `recovered:true`: the replay continues the seq; any gap
//!   is a lost delivery. `recovered:false`: counted, and a `join` re-syncs;
//!   the seqs it skips count as lost.
//! - `err` `not_found`: the session is gone. When its worker (the token's
//!   first byte) had a fault since the session began, that is by design
//!   (a session lives on one worker and dies with it): the client joins
//!   again with its fresh session, and the seqs it missed meanwhile are
//!   counted apart. Otherwise it is a refused resume (an error).
//!
//! Requests: every request carries a `rid`. One whose connection ended
//! before its answer is counted as cut off (no answer can come); one still
//! unanswered on an open connection at the end of the drain is never
//! answered. After the run the clients close (code 1000), and `/metrics/all`
//! is read until sessions, shadows, queue places and tokens are 0, at most
//! the server's grace period plus `--settle`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use serde::Serialize;
use tungstenite::{Bytes, Message};

use crate::ctl::progress_line;
use crate::engine::{Engine, Handler, Io, Why};
use crate::fanout::teardown;
use crate::inject::{self, Fault, Injector, Kind, Log, Schedule};
use crate::opts::{check_common, Endpoint, FaultsArgs, Proto};
use crate::pace::Opener;
use crate::report::Report;
use crate::stats::{Lat, Stats};
use crate::sys::{now_ns, secs_ns};
use crate::wire::{self, Header, Resumed};

/// The gauges that must be 0 once every client is gone and the grace
/// period has passed, and the others reported with them.
const MUST_BE_ZERO: [&str; 5] = [
    "roomd_sessions",
    "roomd_bus_shadow_sessions",
    "roomd_queue_places",
    "roomd_resume_tokens",
    "roomd_members",
];
/// (`roomd_connections` is left out: it counts the connection asking.)
const ALSO_SHOWN: [&str; 3] = ["roomd_rooms", "roomd_watchers", "roomd_pending_queries"];
/// The longest backoff between reconnects of one client.
const MAX_BACKOFF_NS: u64 = 1_000_000_000;
/// How often the maintenance pass runs (reconnects, creates, joins).
const TICK_NS: u64 = 10_000_000;
/// Wait after a failed create or join before the next try.
const RETRY_NS: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cx {
    /// No connection; reconnect at `retry_at` (unless the run is over).
    Down,
    Connecting,
    /// Upgraded, no `welcome` yet.
    Open,
    /// `hello` with `resume` sent, no answer yet.
    Resuming,
    /// A session to act with.
    Ready,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Join,
    Pub,
    Hello,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Join => "join",
            Op::Pub => "pub",
            Op::Hello => "hello",
        }
    }
}

/// Why a member sends a `join` for a room it may already have sat in:
/// the seqs between its `last` and the `joined` seq go to this count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resync {
    /// Its session died with its worker (by design).
    SessionLost,
    /// `recovered:false`, or a resume that did not list the room.
    Unrecovered,
}

struct Pending {
    m: usize,
    conn: usize,
    op: Op,
    /// The generation of the member's room when it was sent.
    gen: u32,
    at: u64,
}

struct Member {
    conn: usize,
    cx: Cx,
    retry_at: u64,
    backoff: u64,
    /// The session's resume token, its worker, and when it began.
    token: Option<String>,
    token_worker: u32,
    token_at: u64,
    /// The fresh session of the current connection, while a resume is asked.
    fresh: Option<String>,
    conn_worker: u32,
    /// Its last connection ended by a drop of our own.
    dropped: bool,
    /// The generation of its slot's room it sits in.
    seat: Option<u32>,
    joining: bool,
    resync: Option<(u32, Resync)>,
    /// The last `seq` it has of the room it sits in.
    last: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotSt {
    NeedCreate,
    Creating,
    Live,
}

struct Slot {
    name: String,
    gen: u32,
    home: u32,
    st: SlotSt,
    retry_at: u64,
    /// When the first `create` of this generation was sent.
    born: u64,
    /// Highest seq seen in the current generation (acks and deliveries).
    max_seq: u64,
    /// Next member to publish (rotates).
    next_pub: usize,
}

/// Counts of one run (the figures of the report's `faults` section).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub answered_ok: u64,
    pub answered_err: BTreeMap<String, u64>,
    /// Requests whose connection ended before their answer.
    pub cut_off: u64,
    /// Requests unanswered on an open connection after the drain.
    pub never_answered: u64,
    /// Answers to a rid already answered (a late `ok` after `err internal`).
    pub late_answers: u64,
    pub pubs_sent: u64,
    pub pubs_not_sent: u64,
    pub delivered: u64,
    /// Deliveries missing in rooms that were not lost, to sessions that
    /// were not lost: gaps, re-syncs and tails.
    pub lost_in_surviving_rooms: u64,
    pub duplicated: u64,
    pub unrecovered: u64,
    pub disconnects: BTreeMap<String, u64>,
    pub resumes: u64,
    /// Of those, resumes after a connection the server's side ended (the
    /// connection's worker died, or a relay was closed), not one of our drops.
    pub resumes_after_cut: u64,
    /// Resumes that landed on another worker than the session's (relayed).
    pub resumes_relayed: u64,
    pub sessions_lost_with_worker: u64,
    /// Seqs a client missed between its session's loss and its new join.
    pub missed_while_session_lost: u64,
    pub resumes_refused: u64,
    pub rooms_lost: u64,
    /// Rooms lost whose home had no fault since they were created (a bug).
    pub rooms_lost_without_fault: u64,
    /// Rooms lost, by the worker that homed them.
    pub rooms_lost_by_home: BTreeMap<String, u64>,
    pub drops: u64,
    /// Members not seated (or not connected) at the end of the drain.
    pub not_back: u64,
}

struct State {
    ep: Endpoint,
    workers: u32,
    run_id: u32,
    room_size: usize,
    room_idle_ms: u32,
    payload: usize,
    members: Vec<Member>,
    slots: Vec<Slot>,
    pending: HashMap<u32, Pending>,
    answered: hashset::Answered,
    next_rid: u32,
    c: Counts,
    stats: Stats,
    /// Delivery latency from the scheduled send time.
    lat: Lat,
    /// `pub` to its `ok`.
    ack: Lat,
    log: Log,
    /// Connecting is allowed (not after the drain).
    reconnect: bool,
    connecting: usize,
}

/// The last few thousand rids answered, to tell a late answer from one
/// to a rid never sent.
mod hashset {
    use std::collections::{HashSet, VecDeque};

    #[derive(Default)]
    pub struct Answered {
        set: HashSet<u32>,
        order: VecDeque<u32>,
    }

    impl Answered {
        const KEEP: usize = 100_000;

        pub fn add(&mut self, rid: u32) {
            if self.set.insert(rid) {
                self.order.push_back(rid);
                if self.order.len() > Self::KEEP {
                    if let Some(old) = self.order.pop_front() {
                        self.set.remove(&old);
                    }
                }
            }
        }

        pub fn has(&self, rid: u32) -> bool {
            self.set.contains(&rid)
        }
    }
}

/// The worker that issued a token: its first byte, with several workers.
fn token_worker(token: &str, workers: u32) -> u32 {
    if workers <= 1 {
        return 0;
    }
    token
        .get(..2)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(u32::MAX)
}

impl State {
    fn slot_of(&self, m: usize) -> usize {
        m / self.room_size
    }

    /// The name of slot `r`'s room in generation `gen`: the first
    /// `f<run>-<r>-<gen>-<i>` homed on worker `r % workers`. A room lost
    /// with its home is created again on the same worker (once its
    /// replacement accepts), so the rooms stay spread evenly.
    fn name_for(&self, r: usize, gen: u32) -> (String, u32) {
        let want = (r as u64 % self.workers as u64) as u32;
        let mut i = 0u32;
        loop {
            let name = format!("f{}-{r}-{gen}-{i}", self.run_id);
            if inject::home(&name, self.workers) == want {
                return (name, want);
            }
            i += 1;
        }
    }

    fn rid(&mut self) -> u32 {
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        self.next_rid
    }

    /// Sends request `op` (built by `build` with its rid) on member `m`'s
    /// connection; false when the connection cannot take it.
    fn request(
        &mut self,
        io: &mut Io,
        m: usize,
        op: Op,
        build: impl FnOnce(u32) -> Vec<u8>,
    ) -> bool {
        let rid = self.rid();
        let conn = self.members[m].conn;
        let gen = self.slots[self.slot_of(m)].gen;
        if !io.send(conn, Message::Binary(Bytes::from(build(rid)))) {
            return false;
        }
        self.c.requests += 1;
        self.pending.insert(
            rid,
            Pending {
                m,
                conn,
                op,
                gen,
                at: now_ns(),
            },
        );
        true
    }

    fn connect(&mut self, io: &mut Io, m: usize, now: u64) {
        match io.connect(&self.ep.target, &self.ep.path, m as u32) {
            Ok(id) => {
                self.members[m].conn = id;
                self.members[m].cx = Cx::Connecting;
                self.connecting += 1;
            }
            Err(e) => {
                self.stats.error(format!("connect: {e}"));
                self.down(m, now);
            }
        }
    }

    /// Member `m` has no connection: it reconnects after its backoff.
    fn down(&mut self, m: usize, now: u64) {
        let mb = &mut self.members[m];
        if mb.cx == Cx::Connecting {
            self.connecting -= 1;
        }
        mb.cx = Cx::Down;
        mb.joining = false;
        mb.retry_at = now + mb.backoff;
        mb.backoff = (mb.backoff * 2).clamp(20_000_000, MAX_BACKOFF_NS);
    }

    /// Slot `r`'s room of generation `gen` is gone with its home: the slot
    /// moves on to its next generation (created again by `tick`).
    fn lost_room(&mut self, r: usize, gen: u32, now: u64, how: &str) {
        let s = &self.slots[r];
        if s.gen != gen {
            return;
        }
        log::debug!("room {} (home {}) lost: {how}", s.name, s.home);
        if !inject::faulted_since(&self.log, s.home, s.born) {
            // Rooms are lost only with their home.
            self.c.rooms_lost_without_fault += 1;
            eprintln!(
                "roomd-bench: room {} lost ({how}) though its home, worker {}, had no fault since it was created",
                s.name, s.home
            );
        }
        self.c.rooms_lost += 1;
        *self
            .c
            .rooms_lost_by_home
            .entry(format!("worker {}", s.home))
            .or_insert(0) += 1;
        let (name, home) = self.name_for(r, gen + 1);
        let s = &mut self.slots[r];
        s.gen = gen + 1;
        s.name = name;
        s.home = home;
        s.st = SlotSt::NeedCreate;
        s.retry_at = now;
        s.born = u64::MAX;
        s.max_seq = 0;
    }

    /// A member sat in its room from `joined` with the room's `seq`.
    fn seated(&mut self, m: usize, gen: u32, seq: u64) {
        let mb = &mut self.members[m];
        mb.joining = false;
        mb.backoff = 0;
        if let Some((g, why)) = mb.resync.take() {
            if g == gen {
                let missed = seq.saturating_sub(mb.last);
                match why {
                    Resync::SessionLost => self.c.missed_while_session_lost += missed,
                    Resync::Unrecovered => self.c.lost_in_surviving_rooms += missed,
                }
            }
        }
        let mb = &mut self.members[m];
        mb.seat = Some(gen);
        mb.last = seq;
        let s = &mut self.slots[m / self.room_size];
        s.max_seq = s.max_seq.max(seq);
    }

    /// Maintenance: reconnects, creates and joins that are due.
    fn tick(&mut self, io: &mut Io, now: u64) {
        if self.reconnect {
            for m in 0..self.members.len() {
                if self.members[m].cx == Cx::Down && self.members[m].retry_at <= now {
                    self.connect(io, m, now);
                }
            }
        }
        for r in 0..self.slots.len() {
            let s = &self.slots[r];
            if s.st != SlotSt::NeedCreate || s.retry_at > now {
                continue;
            }
            let (lo, hi) = (r * self.room_size, (r + 1) * self.room_size);
            let Some(m) = (lo..hi).find(|&m| self.members[m].cx == Cx::Ready) else {
                continue;
            };
            let (name, idle) = (s.name.clone(), self.room_idle_ms);
            // `max` 0 is the server's --max-members: a member whose session
            // died takes a new seat while the old one waits out the grace.
            if self.request(io, m, Op::Create, |rid| {
                wire::create(rid, &name, 0, idle, true)
            }) {
                self.slots[r].st = SlotSt::Creating;
                self.slots[r].born = self.slots[r].born.min(now);
                self.members[m].joining = true;
            }
        }
        for m in 0..self.members.len() {
            let r = self.slot_of(m);
            let (gen, st) = (self.slots[r].gen, self.slots[r].st);
            let mb = &self.members[m];
            if mb.cx != Cx::Ready
                || mb.joining
                || mb.seat == Some(gen)
                || st != SlotSt::Live
                || mb.retry_at > now
            {
                continue;
            }
            let name = self.slots[r].name.clone();
            if self.request(io, m, Op::Join, |rid| wire::room_req("join", rid, &name)) {
                self.members[m].joining = true;
            }
        }
    }

    /// Publishes message `k` of the schedule (due at `sched`) in room
    /// `k % rooms`, from its next seated member.
    fn publish(&mut self, io: &mut Io, k: u64, sched: u64, buf: &mut [u8]) {
        let r = (k % self.slots.len() as u64) as usize;
        let size = self.room_size;
        let gen = self.slots[r].gen;
        let start = self.slots[r].next_pub;
        let Some(i) = (0..size).map(|j| (start + j) % size).find(|&i| {
            let mb = &self.members[r * size + i];
            mb.cx == Cx::Ready && mb.seat == Some(gen)
        }) else {
            self.c.pubs_not_sent += 1;
            return;
        };
        self.slots[r].next_pub = (i + 1) % size;
        let m = r * size + i;
        Header {
            room: r as u32,
            sender: m as u32,
            step: gen,
            seq: k as u32,
            sched_ns: sched,
        }
        .write(buf);
        let name = self.slots[r].name.clone();
        if self.request(io, m, Op::Pub, |rid| wire::publish_echo(rid, &name, buf)) {
            self.c.pubs_sent += 1;
        } else {
            self.c.pubs_not_sent += 1;
        }
    }

    /// Takes the pending request `rid` (None when unknown or answered).
    /// With `late`, an answer to a rid answered before is counted (an `ok`
    /// after an `err internal` for a home that answered past the deadline;
    /// `joined` after `created` is the same request's second reply).
    fn answer(&mut self, rid: Option<u64>, now: u64, late: bool) -> Option<Pending> {
        let rid = u32::try_from(rid?).ok()?;
        match self.pending.remove(&rid) {
            Some(p) => {
                self.answered.add(rid);
                if p.op == Op::Pub {
                    self.ack.record_ns(now.saturating_sub(p.at));
                }
                Some(p)
            }
            None => {
                if late && self.answered.has(rid) {
                    self.c.late_answers += 1;
                }
                None
            }
        }
    }

    fn on_welcome(&mut self, io: &mut Io, m: usize, session: &str, worker: u32, now: u64) {
        if worker >= self.workers {
            self.stats
                .error("welcome names a worker beyond the server's");
        }
        let r = self.slot_of(m);
        let mb = &mut self.members[m];
        mb.conn_worker = worker;
        let Some(token) = mb.token.clone() else {
            mb.token = Some(session.to_string());
            mb.token_worker = token_worker(session, self.workers);
            mb.token_at = now;
            mb.cx = Cx::Ready;
            return;
        };
        mb.fresh = Some(session.to_string());
        mb.cx = Cx::Resuming;
        let s = &self.slots[r];
        let name = s.name.clone();
        let last_seq = self.members[m].last;
        let seated = self.members[m].seat == Some(s.gen);
        let sent = self.request(io, m, Op::Hello, |rid| {
            let last: Vec<(&str, u64)> = if seated {
                vec![(name.as_str(), last_seq)]
            } else {
                Vec::new()
            };
            wire::hello_resume(rid, &token, &last)
        });
        if !sent {
            self.stats.error("could not send hello");
        }
    }

    fn on_resumed(&mut self, m: usize, data: &[u8], now: u64) {
        let r = self.slot_of(m);
        let gen = self.slots[r].gen;
        let name = self.slots[r].name.clone();
        let mb = &mut self.members[m];
        mb.cx = Cx::Ready;
        mb.fresh = None;
        mb.backoff = 0;
        self.c.resumes += 1;
        if !mb.dropped {
            self.c.resumes_after_cut += 1;
        }
        if mb.conn_worker != mb.token_worker {
            self.c.resumes_relayed += 1;
        }
        let rooms = match wire::resumed_rooms(data) {
            Some(v) => v,
            None => {
                self.stats.error("resumed without a rooms map");
                Vec::new()
            }
        };
        let seated = self.members[m].seat == Some(gen);
        let mut listed = false;
        for (room, what) in rooms {
            if room != name {
                continue;
            }
            listed = true;
            match what {
                Resumed::Recovered(true) => {}
                Resumed::Recovered(false) => {
                    self.c.unrecovered += 1;
                    self.members[m].seat = None;
                    self.members[m].resync = Some((gen, Resync::Unrecovered));
                }
                Resumed::Closed(why) => {
                    self.members[m].seat = None;
                    if why == "lost" {
                        self.lost_room(r, gen, now, "resumed closed:lost");
                    } else {
                        self.stats.error(format!("room closed while away: {why}"));
                    }
                }
            }
        }
        if seated && !listed {
            let mb = &self.members[m];
            log::warn!(
                "client {m}: resumed (session of worker {}, connection on worker {}) without its room {name} (home {}, last {})",
                mb.token_worker,
                mb.conn_worker,
                self.slots[r].home,
                mb.last
            );
            self.stats.error("resumed without the room it sat in");
            self.members[m].seat = None;
            self.members[m].resync = Some((gen, Resync::Unrecovered));
        }
    }

    /// The resume of member `m` was refused: its fresh session goes on.
    fn on_resume_refused(&mut self, m: usize, code: &str, now: u64) {
        let r = self.slot_of(m);
        let (gen, home) = (self.slots[r].gen, self.slots[r].home);
        let workers = self.workers;
        let mb = &mut self.members[m];
        // The session lives on the worker that issued its token, or, once
        // its connection moved with its first join, on the room's home.
        let faulted = |w| inject::faulted_since(&self.log, w, mb.token_at);
        let by_design = code == "not_found" && (faulted(mb.token_worker) || faulted(home));
        log::debug!(
            "client {m} (conn on worker {}): resume of a session of worker {} refused: {code}",
            mb.conn_worker,
            mb.token_worker
        );
        if by_design {
            self.c.sessions_lost_with_worker += 1;
        } else {
            self.c.resumes_refused += 1;
            eprintln!(
                "roomd-bench: resume refused ({code}) for a session of worker {} that had no fault",
                mb.token_worker
            );
        }
        let fresh = mb.fresh.take();
        mb.token_worker = fresh.as_deref().map_or(0, |t| token_worker(t, workers));
        mb.token = fresh;
        mb.token_at = now;
        mb.cx = Cx::Ready;
        mb.backoff = 0;
        if mb.seat == Some(gen) {
            mb.resync = Some((
                gen,
                if by_design {
                    Resync::SessionLost
                } else {
                    Resync::Unrecovered
                },
            ));
        }
        mb.seat = None;
    }

    fn on_msg(
        &mut self,
        m: usize,
        room: Option<&str>,
        seq: Option<u64>,
        data: Option<&[u8]>,
        now: u64,
    ) {
        let r = self.slot_of(m);
        let s = &mut self.slots[r];
        let mb = &mut self.members[m];
        if room != Some(s.name.as_str()) || mb.seat != Some(s.gen) {
            // A room of an earlier generation, or one it is leaving.
            return;
        }
        let Some(seq) = seq else {
            self.stats.error("msg without seq");
            return;
        };
        s.max_seq = s.max_seq.max(seq);
        if seq <= mb.last {
            self.c.duplicated += 1;
            return;
        }
        self.c.lost_in_surviving_rooms += seq - mb.last - 1;
        mb.last = seq;
        self.c.delivered += 1;
        match data.and_then(Header::read) {
            Some(h) => self.lat.record_ns(now.saturating_sub(h.sched_ns)),
            None => self.stats.error("msg without the harness header"),
        }
    }

    fn ready_count(&self) -> u64 {
        self.members.iter().filter(|m| m.cx == Cx::Ready).count() as u64
    }

    fn seated_count(&self) -> u64 {
        (0..self.members.len())
            .filter(|&m| {
                let s = &self.slots[self.slot_of(m)];
                s.st == SlotSt::Live
                    && self.members[m].cx == Cx::Ready
                    && self.members[m].seat == Some(s.gen)
            })
            .count() as u64
    }

    /// Everything settled: every member seated with its room's last seq,
    /// nothing pending.
    fn settled(&self) -> bool {
        self.pending.is_empty()
            && (0..self.members.len()).all(|m| {
                let s = &self.slots[self.slot_of(m)];
                let mb = &self.members[m];
                s.st == SlotSt::Live
                    && mb.cx == Cx::Ready
                    && mb.seat == Some(s.gen)
                    && mb.last == s.max_seq
            })
    }
}

impl Handler for State {
    fn opened(&mut self, _io: &mut Io, id: usize, tag: u32, _now: u64) {
        let m = tag as usize;
        if self.members[m].conn == id && self.members[m].cx == Cx::Connecting {
            self.connecting -= 1;
            self.members[m].cx = Cx::Open;
        }
    }

    fn message(&mut self, io: &mut Io, id: usize, tag: u32, data: &[u8], _binary: bool, now: u64) {
        let m = tag as usize;
        if self.members[m].conn != id {
            return;
        }
        let Some(msg) = wire::parse(data) else {
            self.stats.error("unparsable server message");
            return;
        };
        match msg.t {
            "msg" => self.on_msg(m, msg.room, msg.seq, msg.data, now),
            "welcome" => match msg.session {
                Some(s) => {
                    let w = msg.worker.unwrap_or(0) as u32;
                    self.on_welcome(io, m, s, w, now)
                }
                None => self.stats.error("welcome without session"),
            },
            "resumed" => {
                if self.answer(msg.rid, now, false).is_some() {
                    self.c.answered_ok += 1;
                }
                self.on_resumed(m, data, now);
            }
            "created" => {
                if let Some(p) = self.answer(msg.rid, now, false) {
                    self.c.answered_ok += 1;
                    let r = self.slot_of(p.m);
                    if msg.room == Some(self.slots[r].name.as_str()) {
                        self.slots[r].st = SlotSt::Live;
                    }
                }
            }
            "joined" => {
                if self.answer(msg.rid, now, false).is_some() {
                    self.c.answered_ok += 1;
                }
                let r = self.slot_of(m);
                if msg.room == Some(self.slots[r].name.as_str()) {
                    let gen = self.slots[r].gen;
                    self.slots[r].st = SlotSt::Live;
                    self.seated(m, gen, msg.seq.unwrap_or(0));
                }
            }
            "ok" => {
                if let Some(p) = self.answer(msg.rid, now, true) {
                    self.c.answered_ok += 1;
                    if let (Op::Pub, Some(seq)) = (p.op, msg.seq) {
                        let r = self.slot_of(p.m);
                        self.slots[r].max_seq = self.slots[r].max_seq.max(seq);
                    }
                }
            }
            "closed" => {
                let r = self.slot_of(m);
                if msg.room == Some(self.slots[r].name.as_str()) {
                    let gen = self.slots[r].gen;
                    self.members[m].seat = None;
                    match msg.why {
                        Some("lost") => self.lost_room(r, gen, now, "closed lost"),
                        w => self
                            .stats
                            .error(format!("room closed: {}", w.unwrap_or("?"))),
                    }
                }
            }
            "err" => {
                let code = msg.code.unwrap_or("?");
                let Some(p) = self.answer(msg.rid, now, true) else {
                    if msg.rid.is_none() {
                        self.stats.server_err(code, msg.msg.unwrap_or(""));
                    }
                    return;
                };
                *self
                    .c
                    .answered_err
                    .entry(format!("{} {code}", p.op.name()))
                    .or_insert(0) += 1;
                let r = self.slot_of(p.m);
                let current = p.gen == self.slots[r].gen;
                match p.op {
                    Op::Hello => self.on_resume_refused(p.m, code, now),
                    Op::Create => {
                        self.members[p.m].joining = false;
                        if current && code == "exists" {
                            // An earlier create of it (cut off) went through.
                            self.slots[r].st = SlotSt::Live;
                        } else if current && self.slots[r].st == SlotSt::Creating {
                            self.slots[r].st = SlotSt::NeedCreate;
                            self.slots[r].retry_at = now + RETRY_NS;
                        }
                    }
                    Op::Join => {
                        self.members[p.m].joining = false;
                        self.members[p.m].retry_at = now + RETRY_NS;
                        if code == "not_found" {
                            // Created and lost before this member heard of it.
                            self.lost_room(r, p.gen, now, "join not_found");
                        }
                    }
                    Op::Pub => {}
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self, _io: &mut Io, id: usize, tag: u32, why: Why, now: u64) {
        let m = tag as usize;
        let cut: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.conn == id)
            .map(|(&rid, _)| rid)
            .collect();
        for rid in cut {
            if let Some(p) = self.pending.remove(&rid) {
                self.c.cut_off += 1;
                let r = self.slot_of(p.m);
                if p.op == Op::Create
                    && p.gen == self.slots[r].gen
                    && self.slots[r].st == SlotSt::Creating
                {
                    self.slots[r].st = SlotSt::NeedCreate;
                    self.slots[r].retry_at = now + RETRY_NS;
                }
            }
        }
        if self.members[m].conn != id {
            return;
        }
        let mb = &mut self.members[m];
        match why.label() {
            _ if !self.reconnect => {}
            Some(label) => {
                mb.dropped = false;
                *self.c.disconnects.entry(label).or_insert(0) += 1;
            }
            None if mb.dropped => {}
            None => *self.c.disconnects.entry("ours".into()).or_insert(0) += 1,
        }
        if mb.cx == Cx::Resuming {
            // The answer to its hello will not come on this connection.
            mb.fresh = None;
        }
        self.down(m, now);
    }
}

/// Tiny xorshift for picking clients to drop (no crate needed for this).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One fault in the report.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub worker: u32,
    pub kind: &'static str,
    pub at_s: f64,
    pub pid: u32,
    pub new_pid: Option<u32>,
    pub gone_ms: Option<f64>,
    pub back_ms: Option<f64>,
}

/// The report's `faults` section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultsReport {
    pub workers: u32,
    pub kills: u64,
    pub stops: u64,
    /// Stopped workers the watchdog killed, and the time it took after
    /// the SIGSTOP, ms.
    pub watchdog_kills: u64,
    pub watchdog_ms: Vec<f64>,
    /// Stopped workers that outlived the stop (SIGCONT).
    pub continued: u64,
    /// From each death (SIGKILL, or the watchdog's kill) to the first
    /// `welcome` from the replacement, ms: min, median, max.
    pub back_ms_min: Option<f64>,
    pub back_ms_median: Option<f64>,
    pub back_ms_max: Option<f64>,
    pub back_ms: Vec<f64>,
    /// Deaths whose replacement was not seen accepting.
    pub not_back: u64,
    /// Every fault: worker, what, the process before and after, ms from
    /// its start to the process gone and to the replacement's `welcome`.
    pub events: Vec<Event>,
    #[serde(flatten)]
    pub counts: Counts,
    /// The gauges of `/metrics/all` after the clients closed and the wait
    /// (summed over workers), the wait, and workers that did not answer.
    pub leftover: BTreeMap<String, u64>,
    pub leftover_wait_s: f64,
    pub metrics_silent_workers: usize,
    /// `roomd_worker_restarts_total` after the run, by reason.
    pub restarts_died: u64,
    pub restarts_hung: u64,
}

impl FaultsReport {
    /// The rows of the human table.
    pub fn rows(&self, row: &mut impl FnMut(&str, String)) {
        let c = &self.counts;
        let list = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(
            "faults",
            format!(
                "{} workers: {} killed, {} stopped ({} killed by the watchdog, {} continued)",
                self.workers, self.kills, self.stops, self.watchdog_kills, self.continued
            ),
        );
        if !self.back_ms.is_empty() {
            row(
                "death to replacement accepting",
                format!(
                    "min {:.1} / median {:.1} / max {:.1} ms ({} deaths)",
                    self.back_ms_min.unwrap_or(0.0),
                    self.back_ms_median.unwrap_or(0.0),
                    self.back_ms_max.unwrap_or(0.0),
                    self.back_ms.len()
                ),
            );
        }
        if !self.watchdog_ms.is_empty() {
            let w: Vec<String> = self.watchdog_ms.iter().map(|v| format!("{v:.0}")).collect();
            row("SIGSTOP to watchdog kill", format!("{} ms", w.join(", ")));
        }
        if self.not_back > 0 {
            row("replacements not seen accepting", self.not_back.to_string());
        }
        row(
            "requests",
            format!(
                "{} sent: {} ok, {} err, {} cut off with their connection",
                c.requests,
                c.answered_ok,
                c.answered_err.values().sum::<u64>(),
                c.cut_off
            ),
        );
        if !c.answered_err.is_empty() {
            row("  err replies", list(&c.answered_err));
        }
        if c.late_answers > 0 {
            row("  late answers (after an err)", c.late_answers.to_string());
        }
        row("requests never answered", c.never_answered.to_string());
        row(
            "lost in surviving rooms",
            format!(
                "{} deliveries ({} duplicated, {} resumes not recovered)",
                c.lost_in_surviving_rooms, c.duplicated, c.unrecovered
            ),
        );
        row(
            "rooms lost with their home",
            format!("{} ({})", c.rooms_lost, list(&c.rooms_lost_by_home)),
        );
        row(
            "resumes",
            format!(
                "{} ok ({} after the server's side ended, {} landed on another worker than the token's), {} refused",
                c.resumes, c.resumes_after_cut, c.resumes_relayed, c.resumes_refused
            ),
        );
        row(
            "sessions lost with their worker",
            format!(
                "{} (seqs missed until joined again: {})",
                c.sessions_lost_with_worker, c.missed_while_session_lost
            ),
        );
        if c.drops > 0 {
            row("drops of our own", c.drops.to_string());
        }
        if !c.disconnects.is_empty() {
            row("disconnects", list(&c.disconnects));
        }
        if c.pubs_not_sent > 0 {
            row(
                "pubs not sent (no member seated)",
                c.pubs_not_sent.to_string(),
            );
        }
        if c.not_back > 0 {
            row(
                "clients not in their room at the end",
                c.not_back.to_string(),
            );
        }
        row(
            "left after the run",
            format!(
                "{} (after {:.1} s{})",
                list(&self.leftover),
                self.leftover_wait_s,
                if self.metrics_silent_workers > 0 {
                    format!(", {} workers silent", self.metrics_silent_workers)
                } else {
                    String::new()
                }
            ),
        );
        row(
            "worker restarts (metrics)",
            format!("died {}, hung {}", self.restarts_died, self.restarts_hung),
        );
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Checks the flags; returns the number of workers.
fn check(a: &FaultsArgs) -> Result<u32, String> {
    let c = &a.common;
    if c.proto != Proto::Roomd {
        return Err("faults speaks roomd's protocol only (--proto roomd)".into());
    }
    if c.procs != 1 {
        return Err(
            "faults runs in one process (--procs 1): the clients of a room must share one loop"
                .into(),
        );
    }
    check_common(c, a.conns + 1)?;
    if !(2..=32).contains(&a.room_size) || a.conns == 0 || !a.conns.is_multiple_of(a.room_size) {
        return Err(format!(
            "--conns {} must be a positive multiple of --room-size {} (2 to 32)",
            a.conns, a.room_size
        ));
    }
    if a.payload < wire::HEADER {
        return Err(format!("--payload must be at least {} bytes", wire::HEADER));
    }
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        return Err("--rate must be above 0 and at most 100000 messages/s".into());
    }
    if !(a.duration > 0.0 && a.duration <= 3600.0 && (0.0..=600.0).contains(&a.drain)) {
        return Err("--duration must be in (0, 3600] s and --drain in [0, 600] s".into());
    }
    for (flag, v) in [
        ("--kill-every", a.kill_every),
        ("--stop-every", a.stop_every),
    ] {
        if v != 0.0 && !(0.2..=3600.0).contains(&v) {
            return Err(format!("{flag} must be 0 (off) or between 0.2 and 3600 s"));
        }
    }
    if a.stop_every > 0.0 && !(1..=600_000).contains(&a.stop_for) {
        return Err("--stop-for must be between 1 and 600000 ms".into());
    }
    if !(0.0..=1000.0).contains(&a.drops_per_s) || !(0.0..=600.0).contains(&a.settle) {
        return Err("--drops-per-s must be in [0, 1000] and --settle in [0, 600] s".into());
    }
    if a.grace_ms > 600_000 {
        return Err("--grace-ms must be at most 600000".into());
    }
    let faults = a.kill_every > 0.0 || a.stop_every > 0.0;
    let Some(sup) = c.server_pid else {
        if faults {
            return Err(
                "--kill-every and --stop-every need --server-pid (the supervisor of the workers)"
                    .into(),
            );
        }
        return Ok(1);
    };
    if crate::sys::tree_rss(sup).is_none() {
        return Err(format!("--server-pid {sup}: no such process"));
    }
    let n = inject::children(sup).len() as u32;
    if faults && n < 2 {
        return Err(format!(
            "--server-pid {sup} has {n} worker processes: faults need a supervisor with --workers 2 or more"
        ));
    }
    Ok(n.max(1))
}

pub fn control(a: &FaultsArgs, report: &mut Report) -> Result<(), String> {
    let workers = check(a)?;
    let c = &a.common;
    let ep = Endpoint::from_common(c)?;
    let addr: SocketAddr = ep.target.addr;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--url {}: faults runs against loopback only",
            c.url
        ));
    }
    let faults = a.kill_every > 0.0 || a.stop_every > 0.0;
    let pids = match (faults, c.server_pid) {
        (true, Some(sup)) => {
            let p = inject::map_workers(sup, addr, workers, 10_000_000_000)?;
            eprintln!("faults: {workers} workers, pids {p:?}");
            p
        }
        _ => Vec::new(),
    };
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let mut eng = Engine::new(if c.read_buffer > 0 {
        c.read_buffer
    } else {
        16 * 1024
    })
    .map_err(|e| format!("cannot create the event loop: {e}"))?;
    eng.connect_timeout_ns = ep.target.connect_timeout_ns;
    let n = a.conns;
    let mut st = State {
        ep,
        workers,
        run_id: std::process::id(),
        room_size: a.room_size,
        room_idle_ms: a.room_idle_ms,
        payload: a.payload,
        members: (0..n)
            .map(|_| Member {
                conn: usize::MAX,
                cx: Cx::Down,
                retry_at: 0,
                backoff: 0,
                token: None,
                token_worker: 0,
                token_at: 0,
                fresh: None,
                conn_worker: 0,
                dropped: false,
                seat: None,
                joining: false,
                resync: None,
                last: 0,
            })
            .collect(),
        slots: Vec::new(),
        pending: HashMap::new(),
        answered: hashset::Answered::default(),
        next_rid: 0,
        c: Counts::default(),
        stats: Stats::default(),
        lat: Lat::default(),
        ack: Lat::default(),
        log: log.clone(),
        reconnect: true,
        connecting: 0,
    };
    st.slots = (0..n / a.room_size)
        .map(|r| {
            let (name, home) = st.name_for(r, 0);
            Slot {
                name,
                gen: 0,
                home,
                st: SlotSt::NeedCreate,
                retry_at: 0,
                born: u64::MAX,
                max_seq: 0,
                next_pub: 0,
            }
        })
        .collect();

    // Setup: connect everyone (paced), create the rooms, join them.
    let start = now_ns();
    let mut opener = Opener::new(n, c.connect_rate, c.max_inflight.max(1), start);
    let deadline = start + secs_ns(30.0) + eng.connect_timeout_ns;
    let mut next_progress = start + 1_000_000_000;
    let mut next_tick = start;
    st.reconnect = false;
    loop {
        let now = now_ns();
        for _ in 0..opener.due(now, st.connecting) {
            let m = opener.take();
            st.connect(&mut eng.io, m, now);
        }
        if opener.done() {
            st.reconnect = true;
        }
        if now >= next_tick {
            next_tick = now + TICK_NS;
            st.tick(&mut eng.io, now);
        }
        if opener.done() && st.seated_count() == n as u64 {
            break;
        }
        if now > deadline {
            return Err(format!(
                "setup: only {} of {n} clients in their rooms after {:.0} s ({:?})",
                st.seated_count(),
                (now - start) as f64 / 1e9,
                st.stats.errors
            ));
        }
        if now >= next_progress {
            next_progress += 1_000_000_000;
            if !c.quiet {
                let s = Stats {
                    conns: st.seated_count(),
                    ..Default::default()
                };
                eprintln!("{}", progress_line("setup", start, &s));
            }
        }
        let mut wake = next_progress.min(deadline).min(next_tick);
        if let Some(t) = opener.next_at(st.connecting) {
            wake = wake.min(t);
        }
        eng.turn(&mut st, wake).map_err(|e| format!("poll: {e}"))?;
    }
    eprintln!(
        "setup: {n} clients in {} rooms in {:.2} s",
        st.slots.len(),
        (now_ns() - start) as f64 / 1e9
    );
    report.conns = n as u64;
    report.rooms = Some(st.slots.len() as u64);
    let restarts_before = restarts(addr);

    // The load, with the injector on its own thread.
    let t0 = now_ns() + 100_000_000;
    let t_end = t0 + secs_ns(a.duration);
    let t_stop = t_end + secs_ns(a.drain);
    let stop = Arc::new(AtomicBool::new(false));
    let injector = match (faults, c.server_pid) {
        (true, Some(sup)) => {
            let inj = Injector {
                sup,
                addr,
                pids,
                sched: Schedule {
                    kill_every_ns: secs_ns(a.kill_every),
                    stop_every_ns: secs_ns(a.stop_every),
                    stop_for_ns: a.stop_for * 1_000_000,
                    start: t0,
                    end: t_end,
                },
                log: log.clone(),
                stop: stop.clone(),
            };
            Some(
                thread::Builder::new()
                    .name("injector".into())
                    .spawn(move || inj.run())
                    .map_err(|e| format!("cannot start the injector thread: {e}"))?,
            )
        }
        _ => None,
    };
    let ns_per_msg = 1e9 / a.rate;
    let mut k = 0u64;
    let mut next_due = t0;
    let mut buf = vec![0x2au8; st.payload];
    let mut rng = Rng(now_ns() | 1);
    let ns_per_drop = if a.drops_per_s > 0.0 {
        1e9 / a.drops_per_s
    } else {
        0.0
    };
    let mut drops = 0u64;
    let run_start = now_ns();
    let mut next_progress = run_start + 1_000_000_000;
    loop {
        let now = now_ns();
        while next_due <= now && next_due < t_end {
            st.publish(&mut eng.io, k, next_due, &mut buf);
            k += 1;
            next_due = t0 + (k as f64 * ns_per_msg) as u64;
        }
        if ns_per_drop > 0.0 && now < t_end {
            let due = (now.saturating_sub(t0) as f64 / ns_per_drop) as u64;
            while drops < due {
                drops += 1;
                let m = (rng.next() % n as u64) as usize;
                if st.members[m].cx == Cx::Ready {
                    st.c.drops += 1;
                    st.members[m].dropped = true;
                    eng.io.drop_now(st.members[m].conn);
                }
            }
        }
        if now >= next_tick {
            next_tick = now + TICK_NS;
            st.tick(&mut eng.io, now);
        }
        if now >= t_end {
            let injector_done = injector.as_ref().is_none_or(|h| h.is_finished());
            if (st.settled() && injector_done) || now >= t_stop {
                break;
            }
        }
        if now >= next_progress {
            next_progress += 1_000_000_000;
            if !c.quiet {
                eprintln!("{}", progress(&st, &log, run_start));
            }
        }
        let mut wake = next_progress.min(next_tick).min(t_stop);
        if next_due < t_end {
            wake = wake.min(next_due);
        }
        eng.turn(&mut st, wake).map_err(|e| format!("poll: {e}"))?;
    }
    let run_ns = now_ns() - run_start;
    stop.store(true, Ordering::Relaxed);
    let injected = match injector {
        Some(h) => match h.join() {
            Ok(r) => r,
            Err(_) => Err("the injector thread panicked".into()),
        },
        None => Ok(()),
    };

    // What is still open at the end.
    st.c.never_answered = st.pending.len() as u64;
    for (rid, p) in &st.pending {
        if st.c.never_answered <= 5 {
            eprintln!(
                "roomd-bench: never answered: rid {rid} ({}) of client {} on worker {}",
                p.op.name(),
                p.m,
                st.members[p.m].conn_worker
            );
        }
    }
    for r in 0..st.slots.len() {
        let s = &st.slots[r];
        for m in r * st.room_size..(r + 1) * st.room_size {
            let mb = &st.members[m];
            if s.st == SlotSt::Live && mb.cx == Cx::Ready && mb.seat == Some(s.gen) {
                st.c.lost_in_surviving_rooms += s.max_seq.saturating_sub(mb.last);
            } else {
                st.c.not_back += 1;
            }
        }
    }
    let ready = st.ready_count();

    // Close every client (1000: sessions end at once), then count what
    // the server still holds.
    st.reconnect = false;
    let _ = teardown(&mut eng, &mut st)?;
    let restarts_after = restarts(addr);
    let wait = secs_ns(a.grace_ms as f64 / 1000.0 + a.settle);
    let (leftover, waited, silent) = leftovers(addr, wait)?;

    let log = inject::snapshot(&log);
    let mut f = fault_figures(&log, t0);
    f.workers = workers;
    f.counts = std::mem::take(&mut st.c);
    f.leftover = leftover;
    f.leftover_wait_s = waited as f64 / 1e9;
    f.metrics_silent_workers = silent;
    if let (Some(b), Some(a)) = (restarts_before, restarts_after) {
        f.restarts_died = a.0.saturating_sub(b.0);
        f.restarts_hung = a.1.saturating_sub(b.1);
    }

    let mut s = std::mem::take(&mut st.stats);
    s.conns = ready;
    s.sent = f.counts.pubs_sent;
    s.delivered = f.counts.delivered;
    s.duplicated = f.counts.duplicated;
    s.lat = st.lat.clone();
    s.ops.insert("pub ack".into(), st.ack.clone());
    report.take_stats(&s, run_ns as f64 / 1e9);
    // Here `expected` is what arrived plus what was lost, so `missing` is
    // the deliveries lost in surviving rooms.
    report.expected = f.counts.delivered + f.counts.lost_in_surviving_rooms;
    report.missing = f.counts.lost_in_surviving_rooms;
    report.conns = n as u64;
    report.server_rss_after = c.server_pid.and_then(crate::sys::tree_rss);
    let mut failed = Vec::new();
    let cs = &f.counts;
    for (what, v) in [
        ("requests never answered", cs.never_answered),
        (
            "deliveries lost in surviving rooms",
            cs.lost_in_surviving_rooms,
        ),
        ("duplicated deliveries", cs.duplicated),
        (
            "resumes refused on a worker with no fault",
            cs.resumes_refused,
        ),
        (
            "rooms lost on a worker with no fault",
            cs.rooms_lost_without_fault,
        ),
    ] {
        if v > 0 {
            failed.push(format!("{what}: {v}"));
        }
    }
    for g in MUST_BE_ZERO {
        let v = f.leftover.get(g).copied().unwrap_or(0);
        if v > 0 {
            failed.push(format!("{g} left after the run: {v}"));
        }
    }
    if let Err(e) = injected {
        failed.push(format!("injector: {e}"));
    }
    report.failed = failed;
    report.faults = Some(f);
    Ok(())
}

/// The progress line of the load.
fn progress(st: &State, log: &Log, since: u64) -> String {
    let s = Stats {
        conns: st.seated_count(),
        sent: st.c.pubs_sent,
        delivered: st.c.delivered,
        lat: st.lat.clone(),
        errors: st.stats.errors.clone(),
        ..Default::default()
    };
    let l = inject::snapshot(log);
    let back = l.iter().filter(|f| f.back.is_some()).count();
    format!(
        "{}  faults {} (back {back})  resumed {}  new sessions {}  lost {}  unanswered {}",
        progress_line("faults", since, &s),
        l.len(),
        st.c.resumes,
        st.c.sessions_lost_with_worker,
        st.c.lost_in_surviving_rooms,
        st.pending.len()
    )
}

/// Summary figures of the fault log.
fn fault_figures(log: &[Fault], t0: u64) -> FaultsReport {
    let mut f = FaultsReport::default();
    for x in log {
        f.events.push(Event {
            worker: x.worker,
            kind: match (x.kind, x.gone) {
                (Kind::Kill, _) => "kill",
                (Kind::Stop, Some(_)) => "stop, killed by the watchdog",
                (Kind::Stop, None) => "stop",
            },
            at_s: x.at.saturating_sub(t0) as f64 / 1e9,
            pid: x.pid,
            new_pid: x.new_pid,
            gone_ms: x.gone.map(|g| ms(g.saturating_sub(x.at))),
            back_ms: x.back.map(|b| ms(b.saturating_sub(x.at))),
        });
        match x.kind {
            Kind::Kill => f.kills += 1,
            Kind::Stop => f.stops += 1,
        }
        if x.continued {
            f.continued += 1;
        }
        let Some(gone) = x.gone else { continue };
        if x.kind == Kind::Stop {
            f.watchdog_kills += 1;
            f.watchdog_ms.push(ms(gone - x.at));
        }
        // A kill's death is the signal; a watchdog kill's is when it was seen.
        let died = if x.kind == Kind::Kill { x.at } else { gone };
        match x.back {
            Some(b) => f.back_ms.push(ms(b.saturating_sub(died))),
            None => f.not_back += 1,
        }
    }
    f.back_ms_min = f.back_ms.iter().copied().reduce(f64::min);
    f.back_ms_max = f.back_ms.iter().copied().reduce(f64::max);
    f.back_ms_median = median(f.back_ms.clone());
    f
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// `roomd_worker_restarts_total` by reason (died, hung), or None when
/// `/metrics/all` cannot be read.
fn restarts(addr: SocketAddr) -> Option<(u64, u64)> {
    let t = inject::http_get(addr, "/metrics/all").ok()?;
    let f = "roomd_worker_restarts_total";
    Some((
        inject::sum_labelled(&t, f, "reason=\"died\""),
        inject::sum_labelled(&t, f, "reason=\"hung\""),
    ))
}

/// Reads `/metrics/all` until every must-be-zero gauge is 0 or `wait_ns`
/// passes; returns the last reading, the time waited and the workers
/// that did not answer it.
fn leftovers(
    addr: SocketAddr,
    wait_ns: u64,
) -> Result<(BTreeMap<String, u64>, u64, usize), String> {
    let start = now_ns();
    let names: Vec<&str> = MUST_BE_ZERO
        .iter()
        .chain(ALSO_SHOWN.iter())
        .copied()
        .collect();
    loop {
        let text = inject::http_get(addr, "/metrics/all")?;
        let g = inject::sum_families(&text, &names);
        let silent = inject::silent_workers(&text);
        // Rooms are waited for too (they close after --room-idle-ms), but
        // only the must-be-zero gauges fail the run.
        let clean = MUST_BE_ZERO
            .iter()
            .chain(["roomd_rooms"].iter())
            .all(|n| g.get(*n) == Some(&0));
        let waited = now_ns() - start;
        if (clean && silent == 0) || waited >= wait_ns {
            return Ok((g, waited, silent));
        }
        thread::sleep(std::time::Duration::from_millis(200));
    }
}
