//! `lobby`: R public rooms, one lobby subscriber, and changer connections
//! that join and leave P % of the rooms per second (roomd only; one
//! process: the connections are few).
//!
//! Connections (tags): creators `0..C`, changers `C..C+K`, the subscriber
//! `C+K`. `Setup` connects them all and creates the rooms
//! `b<run>-lobby-<i>` with `join:false` (at most `--window` creates in
//! flight per creator; a `rate_limited` create is retried after 10 ms).
//!
//! `Run { step }` is one phase of changes: step `BASELINE` with no
//! subscription, step `SUBSCRIBED` after the subscriber's `lobby` (no
//! filter) has answered its `rooms` snapshot. Cycle c is due at
//! `t0 + c / rate` (open loop; `rate` is half the changes per second asked
//! for) on room `(c * stride + offset) mod R`: a changer with a free seat
//! sends `join`; `--hold-ms` after its `joined` it sends `leave`. Each
//! acknowledged `joined` and `left` is one room change (the room's
//! `members` moved), so a cycle makes two. Counted in the window
//! `[t0 + warmup, t0 + warmup + duration)` by arrival time: changes, and the
//! subscriber's `lobby` updates and their bytes on the wire; the server's
//! CPU time (its process tree, from /proc) is read at both ends of the
//! window. After the window no change starts; the phase ends once every
//! seat is left and `--drain` has passed. The main histogram holds the
//! lobby delay: from a change's acknowledgement to the first update of that
//! room showing its new `members`.

use std::collections::VecDeque;

use tungstenite::{Bytes, Message};

use crate::ctl::{Cmd, Fleet, PhaseResult, Worker};
use crate::engine::{Engine, Handler, Io, Why};
use crate::fanout::teardown;
use crate::opts::{Endpoint, LobbyArgs, Proto};
use crate::pace::Opener;
use crate::report::Report;
use crate::stats::Stats;
use crate::sys::{now_ns, secs_ns, tree_cpu_ns};
use crate::wire;

/// `Run.step` values.
pub const BASELINE: u32 = 0;
pub const SUBSCRIBED: u32 = 1;
/// `rid` bits: creates carry the room index; joins and leaves a seat index.
const JOIN_BIT: u32 = 1 << 31;
const LEAVE_BIT: u32 = 1 << 30;
const LOBBY_RID: u32 = (1 << 30) - 1;
const UNLOBBY_RID: u32 = (1 << 30) - 2;

/// Connections the scenario opens.
pub fn conns_needed(a: &LobbyArgs) -> usize {
    a.creators + a.changers + 1
}

/// Room changes per second the flags ask for (a join and its leave are two).
fn change_rate(a: &LobbyArgs) -> f64 {
    a.rooms as f64 * a.change_pct / 100.0
}

/// Join-and-leave cycles started per second: half the changes.
fn cycle_rate(a: &LobbyArgs) -> f64 {
    change_rate(a) / 2.0
}

/// Checks the flags (once, before anything connects).
pub fn check(a: &LobbyArgs) -> Result<(), String> {
    if a.common.proto != Proto::Roomd {
        return Err("lobby needs --proto roomd".into());
    }
    if a.common.procs != 1 {
        return Err("lobby runs in one process (--procs 1): its connections are few".into());
    }
    if a.rooms == 0 || a.rooms >= LOBBY_RID as usize - 1 || a.creators == 0 || a.changers == 0 {
        return Err("--rooms (below 2^30), --creators and --changers must be at least 1".into());
    }
    let rate = cycle_rate(a);
    if rate.is_nan() || rate <= 0.0 || a.duration <= 0.0 {
        return Err("--change-pct and --duration must be > 0".into());
    }
    // Seats busy at once: a change holds one for --hold-ms plus two round trips.
    let busy = rate * (a.hold_ms as f64 / 1000.0 + 0.05) * 1.25;
    if ((a.changers * a.rooms_per_conn.max(1)) as f64) < busy {
        return Err(format!(
            "{rate:.0} joins/s held {} ms need about {busy:.0} seats at once: raise --changers \
             (each holds --rooms-per-conn {})",
            a.hold_ms, a.rooms_per_conn
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cs {
    Idle,
    Connecting,
    Open,
    Dead,
}

#[derive(Clone, Copy)]
struct Seat {
    room: u32,
    changer: u32,
    /// When the `join` (or the `leave`) left.
    at: u64,
}

struct State {
    names: Vec<String>,
    prefix: String,
    creators: usize,
    changers: usize,
    sub: usize,
    ids: Vec<usize>,
    st: Vec<Cs>,
    connecting: usize,
    // Creating.
    window: u32,
    idle_ms: u32,
    inflight: Vec<u32>,
    next_room: usize,
    retry: Vec<u32>,
    create_at: Vec<u64>,
    creates_done: usize,
    rooms_ok: usize,
    // Changing.
    per_conn: u32,
    seats_used: Vec<u32>,
    seats: Vec<Seat>,
    free_seats: Vec<u32>,
    next_changer: usize,
    hold_ns: u64,
    /// Seats joined, in order of their leave time.
    leaves: VecDeque<(u64, u32)>,
    /// Per room: when its last change was acknowledged and the `members`
    /// it left (u64::MAX: nothing awaited).
    awaited: Vec<(u64, u64)>,
    window_from: u64,
    window_to: u64,
    subscribed: bool,
    snapshot: Option<(u64, u64, u64)>,
    lobby_sent: u64,
    stats: Stats,
}

impl State {
    fn open(&self, c: usize) -> bool {
        self.st[c] == Cs::Open
    }

    fn send(&self, io: &mut Io, c: usize, body: Vec<u8>) -> bool {
        self.open(c) && io.send(self.ids[c], Message::Binary(Bytes::from(body)))
    }

    fn in_window(&self, now: u64) -> bool {
        now >= self.window_from && now < self.window_to
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
            let req = wire::create(r as u32, &self.names[r], 16, self.idle_ms, false);
            if self.send(io, c, req) {
                self.inflight[c] += 1;
                self.stats.sent += 1;
            } else {
                self.retry.push(r as u32);
                return;
            }
        }
    }

    /// A changer connection with a free seat, round robin.
    fn free_changer(&mut self) -> Option<usize> {
        for i in 0..self.changers {
            let k = (self.next_changer + i) % self.changers;
            let c = self.creators + k;
            if self.open(c) && self.seats_used[k] < self.per_conn {
                self.next_changer = (k + 1) % self.changers;
                return Some(k);
            }
        }
        None
    }

    /// Sends the `join` of a change to `room`; false when no changer has a
    /// free seat (the change waits).
    fn join(&mut self, io: &mut Io, room: u32, now: u64) -> bool {
        let Some(k) = self.free_changer() else {
            return false;
        };
        let seat = Seat {
            room,
            changer: k as u32,
            at: now,
        };
        let i = match self.free_seats.pop() {
            Some(i) => {
                self.seats[i as usize] = seat;
                i
            }
            None => {
                self.seats.push(seat);
                (self.seats.len() - 1) as u32
            }
        };
        let req = wire::room_req("join", JOIN_BIT | i, &self.names[room as usize]);
        if self.send(io, self.creators + k, req) {
            self.seats_used[k] += 1;
        } else {
            self.free_seats.push(i);
            self.stats.error("changer connection lost: join not sent");
        }
        true
    }

    fn release(&mut self, i: u32) {
        let k = self.seats[i as usize].changer as usize;
        self.seats_used[k] = self.seats_used[k].saturating_sub(1);
        self.free_seats.push(i);
    }

    fn changed(&mut self, room: u32, members: u64, now: u64) {
        self.awaited[room as usize] = (now, members);
        if self.in_window(now) {
            self.stats.count("changes", 1);
        }
    }

    fn seats_busy(&self) -> usize {
        self.seats.len() - self.free_seats.len()
    }

    fn on_update(&mut self, m: &wire::In, len: usize, now: u64) {
        if !self.in_window(now) {
            self.stats.count("updates outside the window", 1);
        } else {
            self.stats.count("updates", 1);
            self.stats.delivered += 1;
            // Server frames are unmasked: 2 header bytes, 4 past 125, 10 past 65535.
            let head = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            self.stats.count("bytes", (len + head) as u64);
        }
        if m.gone == Some(true) {
            self.stats.count("gone", 1);
        }
        let Some(r) = m
            .room
            .and_then(|n| n.strip_prefix(self.prefix.as_str()))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&r| r < self.names.len())
        else {
            self.stats.count("updates of other rooms", 1);
            return;
        };
        let (at, want) = self.awaited[r];
        if want != u64::MAX && m.members == Some(want) {
            self.stats.lat.record_ns(now.saturating_sub(at));
            self.awaited[r].1 = u64::MAX;
        }
    }
}

impl Handler for State {
    fn opened(&mut self, _io: &mut Io, _id: usize, tag: u32, _now: u64) {
        let c = tag as usize;
        if self.st[c] == Cs::Connecting {
            self.connecting -= 1;
            self.st[c] = Cs::Open;
            self.stats.opened += 1;
        }
    }

    fn message(&mut self, io: &mut Io, _id: usize, tag: u32, data: &[u8], _bin: bool, now: u64) {
        let c = tag as usize;
        let Some(m) = wire::parse(data) else {
            self.stats.error("unparsable server message");
            return;
        };
        if c == self.sub {
            match (m.t, m.rid.map(|r| r as u32)) {
                ("rooms", Some(LOBBY_RID)) => {
                    let n = m.rooms.unwrap_or(0) as u64;
                    self.snapshot = Some((n, data.len() as u64, now - self.lobby_sent));
                    self.subscribed = true;
                }
                ("lobby", _) => self.on_update(&m, data.len(), now),
                ("ok", Some(UNLOBBY_RID)) => self.subscribed = false,
                ("err", _) => {
                    self.stats
                        .server_err(m.code.unwrap_or("?"), m.msg.unwrap_or(""));
                    if m.rid == Some(LOBBY_RID as u64) {
                        self.stats.error("lobby subscription refused");
                    }
                }
                _ => {}
            }
            return;
        }
        let Some(rid) = m.rid.map(|r| r as u32) else {
            return;
        };
        match m.t {
            "created" if rid & (JOIN_BIT | LEAVE_BIT) == 0 && (rid as usize) < self.names.len() => {
                let r = rid as usize;
                self.inflight[c] = self.inflight[c].saturating_sub(1);
                self.creates_done += 1;
                self.rooms_ok += 1;
                self.stats
                    .op("create", now.saturating_sub(self.create_at[r]));
                self.refill(io, c);
            }
            "joined" if rid & JOIN_BIT != 0 => {
                let i = rid & !JOIN_BIT;
                let Some(seat) = self.seats.get(i as usize).copied() else {
                    return;
                };
                self.stats.op("join", now.saturating_sub(seat.at));
                self.changed(seat.room, 1, now);
                self.leaves.push_back((now + self.hold_ns, i));
            }
            "left" if rid & LEAVE_BIT != 0 => {
                let i = rid & !LEAVE_BIT;
                let Some(seat) = self.seats.get(i as usize).copied() else {
                    return;
                };
                self.stats.op("leave", now.saturating_sub(seat.at));
                self.changed(seat.room, 0, now);
                self.release(i);
            }
            "err" => {
                let code = m.code.unwrap_or("?");
                self.stats.server_err(code, m.msg.unwrap_or(""));
                if rid & (JOIN_BIT | LEAVE_BIT) != 0 {
                    let i = rid & !(JOIN_BIT | LEAVE_BIT);
                    if (i as usize) < self.seats.len() {
                        self.release(i);
                    }
                } else if (rid as usize) < self.names.len() {
                    self.inflight[c] = self.inflight[c].saturating_sub(1);
                    if code == "rate_limited" {
                        self.retry.push(rid);
                    } else {
                        self.creates_done += 1;
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
        if c >= self.creators && c < self.sub {
            // Its seats went with it.
            let k = (c - self.creators) as u32;
            let held: Vec<u32> = (0..self.seats.len() as u32)
                .filter(|&i| self.seats[i as usize].changer == k && !self.free_seats.contains(&i))
                .collect();
            for i in held {
                self.release(i);
            }
            self.leaves
                .retain(|&(_, i)| self.seats[i as usize].changer != k);
        }
    }
}

pub struct LobbyWorker {
    eng: Engine,
    s: State,
    ep: Endpoint,
    server_pid: Option<u32>,
    limit: u16,
    connect_rate: f64,
    max_inflight: usize,
}

impl LobbyWorker {
    pub fn new(a: &LobbyArgs, run_id: u32) -> Result<LobbyWorker, String> {
        let ep = Endpoint::from_common(&a.common)?;
        check(a)?;
        let total = conns_needed(a);
        let mut eng = Engine::new(if a.common.read_buffer > 0 {
            a.common.read_buffer
        } else {
            64 * 1024
        })
        .map_err(|e| format!("cannot create the event loop: {e}"))?;
        eng.connect_timeout_ns = ep.target.connect_timeout_ns;
        let prefix = format!("b{run_id}-lobby-");
        Ok(LobbyWorker {
            eng,
            s: State {
                names: (0..a.rooms).map(|i| format!("{prefix}{i}")).collect(),
                prefix,
                creators: a.creators,
                changers: a.changers,
                sub: total - 1,
                ids: vec![usize::MAX; total],
                st: vec![Cs::Idle; total],
                connecting: 0,
                window: a.window.max(1) as u32,
                idle_ms: a.room_idle_ms,
                inflight: vec![0; a.creators],
                next_room: 0,
                retry: Vec::new(),
                create_at: vec![0; a.rooms],
                creates_done: 0,
                rooms_ok: 0,
                per_conn: a.rooms_per_conn.max(1) as u32,
                seats_used: vec![0; a.changers],
                seats: Vec::new(),
                free_seats: Vec::new(),
                next_changer: 0,
                hold_ns: a.hold_ms * 1_000_000,
                leaves: VecDeque::new(),
                awaited: vec![(0, u64::MAX); a.rooms],
                window_from: u64::MAX,
                window_to: u64::MAX,
                subscribed: false,
                snapshot: None,
                lobby_sent: 0,
                stats: Stats::default(),
            },
            ep,
            server_pid: a.common.server_pid,
            limit: a.limit,
            connect_rate: a.common.connect_rate,
            max_inflight: a.common.max_inflight,
        })
    }

    fn turn(&mut self, wake: u64) -> Result<u64, String> {
        self.eng
            .turn(&mut self.s, wake)
            .map_err(|e| format!("poll: {e}"))
    }

    fn open_count(&self) -> u64 {
        self.s.st.iter().filter(|s| **s == Cs::Open).count() as u64
    }

    /// Connects everything, then creates the rooms.
    fn setup(&mut self, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        let total = self.s.ids.len();
        let mut opener = Opener::new(total, self.connect_rate, self.max_inflight, start);
        let mut next_progress = start + 1_000_000_000;
        let connect_deadline = start + 60_000_000_000;
        loop {
            let now = now_ns();
            for _ in 0..opener.due(now, self.s.connecting) {
                let c = opener.take();
                match self
                    .eng
                    .io
                    .connect(&self.ep.target, &self.ep.path, c as u32)
                {
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
            if now > connect_deadline {
                return Err("connections still not open after 60 s".into());
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
            self.turn(wake)?;
        }
        let created_from = now_ns();
        for c in 0..self.s.creators {
            self.s.refill(&mut self.eng.io, c);
        }
        let n = self.s.names.len();
        let mut last_change = created_from;
        let mut last_done = 0;
        loop {
            let now = now_ns();
            if self.s.creates_done >= n {
                break;
            }
            if self.s.creates_done != last_done {
                last_done = self.s.creates_done;
                last_change = now;
            } else if now > last_change + 10_000_000_000 {
                self.s.stats.error("no create answered for 10 s: gave up");
                break;
            }
            if (0..self.s.creators).all(|c| !self.s.open(c)) {
                self.s.stats.error("every creator connection lost");
                break;
            }
            if !self.s.retry.is_empty() {
                for c in 0..self.s.creators {
                    self.s.refill(&mut self.eng.io, c);
                }
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.open_count();
                self.s.stats.delivered = self.s.rooms_ok as u64;
                progress(&self.s.stats);
            }
            let wake = if self.s.retry.is_empty() {
                next_progress
            } else {
                next_progress.min(now + 10_000_000)
            };
            self.turn(wake)?;
        }
        let s = &mut self.s;
        s.stats.conns = s.st.iter().filter(|x| **x == Cs::Open).count() as u64;
        s.stats.delivered = s.rooms_ok as u64;
        s.stats.expected = n as u64;
        s.stats.count("create ns", now_ns() - created_from);
        Ok(PhaseResult::ended(&mut s.stats, start, false))
    }

    /// Subscribes to the lobby and waits (at most 10 s) for the snapshot.
    fn subscribe(&mut self) -> Result<(), String> {
        let s = &mut self.s;
        s.snapshot = None;
        s.lobby_sent = now_ns();
        if !s.send(&mut self.eng.io, s.sub, wire::lobby(LOBBY_RID, self.limit)) {
            return Err("the subscriber connection is lost".into());
        }
        let deadline = now_ns() + 10_000_000_000;
        while self.s.snapshot.is_none() && self.s.open(self.s.sub) {
            if now_ns() > deadline {
                return Err("no `rooms` answer to `lobby` within 10 s".into());
            }
            if self
                .s
                .stats
                .errors
                .contains_key("lobby subscription refused")
            {
                return Err("the server refused the lobby subscription".into());
            }
            self.turn(deadline)?;
        }
        if let Some((rooms, bytes, ns)) = self.s.snapshot {
            self.s.stats.count("snapshot rooms", rooms);
            self.s.stats.count("snapshot bytes", bytes);
            self.s.stats.count("snapshot ns", ns);
        }
        Ok(())
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
        self.s.stats = Stats::default();
        if step == SUBSCRIBED {
            self.subscribe()?;
        }
        // The snapshot may have taken a while: changes start after it.
        let t0 = t0.max(now_ns() + 50_000_000);
        let t_measure = t0 + warmup_ns;
        let t_end = t_measure + duration_ns;
        let t_stop = t_end + drain_ns;
        let give_up = t_stop + self.s.hold_ns + 5_000_000_000;
        self.s.window_from = t_measure;
        self.s.window_to = t_end;
        for a in self.s.awaited.iter_mut() {
            a.1 = u64::MAX;
        }
        let rooms = self.s.names.len() as u64;
        let stride = coprime_stride(rooms);
        let offset = step as u64 * 7919;
        let ns_per = 1e9 / rate;
        let due = |c: u64| t0 + (c as f64 * ns_per) as u64;
        let mut c = 0u64;
        let mut waiting: VecDeque<u32> = VecDeque::new();
        let mut cpu = [None, None];
        let mut next_progress = start + 1_000_000_000;
        loop {
            let now = now_ns();
            if cpu[0].is_none() && now >= t_measure {
                cpu[0] = self.server_pid.and_then(tree_cpu_ns);
            }
            if cpu[1].is_none() && now >= t_end {
                cpu[1] = self.server_pid.and_then(tree_cpu_ns);
            }
            while due(c) <= now && due(c) < t_end {
                waiting.push_back(((c * stride + offset) % rooms) as u32);
                c += 1;
            }
            if now >= t_end {
                if !waiting.is_empty() {
                    self.s
                        .stats
                        .count("changes not started (no free seat)", waiting.len() as u64);
                    waiting.clear();
                }
            } else {
                while let Some(&r) = waiting.front() {
                    if !self.s.join(&mut self.eng.io, r, now) {
                        break;
                    }
                    waiting.pop_front();
                }
            }
            while let Some(&(at, i)) = self.s.leaves.front() {
                if at > now {
                    break;
                }
                self.s.leaves.pop_front();
                let seat = self.s.seats[i as usize];
                self.s.seats[i as usize].at = now;
                let req = wire::room_req("leave", LEAVE_BIT | i, &self.s.names[seat.room as usize]);
                if !self.s.send(
                    &mut self.eng.io,
                    self.s.creators + seat.changer as usize,
                    req,
                ) {
                    self.s
                        .stats
                        .error("changer connection lost: leave not sent");
                    self.s.release(i);
                }
            }
            if now >= t_stop && self.s.seats_busy() == 0 {
                break;
            }
            if now >= give_up {
                self.s.stats.error("seats still held at the phase's end");
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.open_count();
                self.s.stats.sent = self.s.stats.counted("changes");
                progress(&self.s.stats);
            }
            let mut wake = next_progress.min(give_up);
            for t in [t_measure, t_end, t_stop] {
                if t > now {
                    wake = wake.min(t);
                }
            }
            if due(c) < t_end {
                wake = wake.min(due(c));
            }
            if let Some(&(at, _)) = self.s.leaves.front() {
                wake = wake.min(at);
            }
            self.turn(wake)?;
        }
        if step == SUBSCRIBED {
            self.s
                .send(&mut self.eng.io, self.s.sub, wire::unlobby(UNLOBBY_RID));
            let deadline = now_ns() + 2_000_000_000;
            while self.s.subscribed && self.s.open(self.s.sub) && now_ns() < deadline {
                self.turn(deadline)?;
            }
            if self.s.subscribed {
                self.s.stats.error("no `ok` to `unlobby` within 2 s");
            }
        }
        let s = &mut self.s;
        s.window_from = u64::MAX;
        s.window_to = u64::MAX;
        if let [Some(a), Some(b)] = cpu {
            s.stats.count("server cpu ns", b.saturating_sub(a));
        }
        s.stats.sent = s.stats.counted("changes");
        s.stats.conns = s.st.iter().filter(|x| **x == Cs::Open).count() as u64;
        Ok(PhaseResult::ended(&mut s.stats, start, false))
    }
}

/// A step through `0..n` that visits every room once per `n` changes and
/// spreads neighbours apart: an odd number near 0.618 n with no common
/// factor with `n`.
fn coprime_stride(n: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if n <= 2 {
        return 1;
    }
    let mut s = (n as f64 * 0.618) as u64 | 1;
    while gcd(s, n) != 1 {
        s += 2;
    }
    s
}

impl Worker for LobbyWorker {
    fn phase(
        &mut self,
        cmd: &Cmd,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        match *cmd {
            Cmd::Setup { .. } => self.setup(progress),
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
                Ok(PhaseResult {
                    elapsed_ns,
                    ..Default::default()
                })
            }
            Cmd::Hold { .. } | Cmd::Storm { .. } | Cmd::Exit => Ok(PhaseResult::default()),
        }
    }
}

/// Per-change figures of one phase: (changes/s, server CPU µs per change).
fn per_change(s: &Stats, duration: f64) -> (f64, Option<f64>) {
    let changes = s.counted("changes");
    let cpu = s
        .counts
        .get("server cpu ns")
        .filter(|_| changes > 0)
        .map(|ns| *ns as f64 / 1000.0 / changes as f64);
    (changes as f64 / duration, cpu)
}

/// The controller: connect and create, changes with no subscriber
/// (unless --no-baseline), changes with the subscriber.
pub fn control(a: &LobbyArgs, fleet: &mut Fleet, report: &mut Report) -> Result<(), String> {
    let c = &a.common;
    let su = crate::setup(fleet, 0, c.quiet, conns_needed(a))?;
    report.conns = su.stats.conns;
    report.connect_failed = su.stats.failed;
    let made = su.stats.delivered;
    let secs = su.stats.counted("create ns") as f64 / 1e9;
    eprintln!("lobby: {made} rooms created in {secs:.2} s");
    report.rooms = Some(made);
    report.rooms_per_s = Some(if secs > 0.0 { made as f64 / secs } else { 0.0 });
    if made < a.rooms as u64 {
        return Err(format!("only {made} of {} rooms were created", a.rooms));
    }
    let mut errors = su.stats.clone();
    let rate = cycle_rate(a);
    let phase = |fleet: &mut Fleet, step: u32, label: &str| {
        fleet.phase(
            Cmd::Run {
                step,
                t0: now_ns() + 200_000_000,
                warmup_ns: secs_ns(a.warmup),
                duration_ns: secs_ns(a.duration),
                drain_ns: secs_ns(a.drain),
                rate,
            },
            label,
            c.quiet,
        )
    };
    if !a.no_baseline {
        let b = phase(fleet, BASELINE, "baseline")?;
        let (cps, cpu) = per_change(&b.stats, a.duration);
        eprintln!(
            "baseline (no subscriber): {cps:.0} changes/s{}",
            cpu.map_or(String::new(), |u| format!(
                ", server CPU {u:.1} µs per change"
            ))
        );
        report.baseline_changes_per_s = Some(cps);
        report.baseline_cpu_us_per_change = cpu;
        b.stats.errors.iter().for_each(|(k, v)| {
            *errors.errors.entry(k.clone()).or_insert(0) += v;
        });
    }
    let r = phase(fleet, SUBSCRIBED, "lobby")?;
    report.server_rss_after = c.server_pid.and_then(crate::sys::tree_rss);
    let s = &r.stats;
    let (cps, cpu) = per_change(s, a.duration);
    let updates = s.counted("updates");
    report.take_stats(s, a.duration);
    report.deliveries_per_s = 0.0;
    report.lobby_snapshot_rooms = Some(s.counted("snapshot rooms"));
    report.lobby_snapshot_bytes = Some(s.counted("snapshot bytes"));
    report.lobby_snapshot_ms = Some(s.counted("snapshot ns") as f64 / 1e6);
    report.room_changes_per_s = Some(cps);
    report.lobby_updates_per_s = Some(updates as f64 / a.duration);
    report.lobby_bytes_per_s = Some(s.counted("bytes") as f64 / a.duration);
    report.lobby_updates_per_change = Some(if s.counted("changes") > 0 {
        updates as f64 / s.counted("changes") as f64
    } else {
        0.0
    });
    report.lobby_delay_us = Some(s.lat.summary());
    report.server_cpu_us_per_change = cpu;
    report.server_cpu_us_per_update = s
        .counts
        .get("server cpu ns")
        .filter(|_| updates > 0)
        .map(|ns| *ns as f64 / 1000.0 / updates as f64);
    for (k, v) in &s.counts {
        if matches!(
            k.as_str(),
            "changes not started (no free seat)" | "gone" | "updates of other rooms"
        ) {
            eprintln!("lobby: {k}: {v}");
        }
    }
    report.errors += errors.error_count();
    for (k, v) in &errors.errors {
        *report.error_kinds.entry(k.clone()).or_insert(0) += v;
    }
    fleet.phase(Cmd::Teardown, "teardown", true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stride_visits_every_room_once() {
        for n in [1u64, 2, 3, 10, 2000, 100_000, 65_536, 999_983] {
            let s = coprime_stride(n);
            let mut seen = vec![false; n as usize];
            for c in 0..n {
                let r = ((c * s + 7919) % n) as usize;
                assert!(!seen[r], "n={n}: room {r} twice");
                seen[r] = true;
            }
        }
    }
}
