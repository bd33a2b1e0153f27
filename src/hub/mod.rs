//! The room core: rooms and sessions as one state machine ([`Hub`]), and
//! the pieces it is made of. It is driven by inputs (a request from a
//! session, a connection attached or gone, a bus message from worker k, a
//! peer lost or back, an HTTP API call, the time) and answers with effects
//! ([`effects`]): frames for connections, bus messages, closes, pauses.
//! Nothing here touches a socket, a poll loop or a connection; the worker's
//! loop performs the effects.
//!
//! Its parts, by what they hold:
//! - data: [`room`], [`names`], [`session`], [`history`], [`matcher`];
//! - pure rules and queries: [`rules`], [`lookup`], [`fanout`] (where a
//!   room message goes), [`replay`], [`lobby`] (filters);
//! - the messages at its two boundaries: [`out`] (to clients) and
//!   [`bus_msg`] (to other workers), and what it asks of the loop:
//!   [`effects`], [`rates`];
//! - behaviour, one file per part of PROTOCOL.md: [`requests`] (requests,
//!   joins, leaves, grace, idle rooms), [`audience`] (watchers, kicks),
//!   [`resume`], [`relay`] (sessions resumed on another worker),
//!   [`cluster`] (rooms across workers), [`matchmaking`], [`lobby_feed`],
//!   [`admin`] (the HTTP room API).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::arena::Arena;
use crate::config::Config;
use crate::history::Recorder;
use crate::metrics::Metrics;
use crate::names::NameIndex;
use crate::room::{Extra, Room, RoomId};
use crate::session::{MemberId, Session, SessionId, MEMBER_BITS};
use crate::timer::{TimerId, Wheel};

use effects::{BusOut, Out};

/// Everything the core's timer wheel can hold. Ids carry generations, so a
/// timer whose object is gone (or whose slot was reused) does nothing.
#[derive(Debug, Clone, Copy)]
pub enum Timer {
    /// A session's grace period ends.
    Grace(SessionId),
    /// An empty room's idle time ends.
    Idle(RoomId),
    /// The matchmaker's next event (a group can form, or a wait ends).
    Match,
    /// A room's `watchers` update is due (see `audience`).
    Watchers(RoomId),
    /// The lobby's changes go out (see `lobby_feed`).
    Lobby,
    /// The oldest query to other workers is due (see `cluster`).
    Queries,
    /// The oldest request forwarded to a room's home is due (see `cluster`).
    Forwarded,
}

/// The core on one worker: every room and session, the indexes over them,
/// the matchmaking queues, the lobby, the queries waiting for other workers,
/// its timers and its clock, and the effects not yet performed.
///
/// Invariants: `names` indexes every room in `rooms` by name and nothing
/// else; `tokens` maps the index key of every live session's resume token
/// to it (see `resume`); `shadows` maps (worker, session id there) to the
/// shadow session standing for it here (see `cluster`); `members` counts
/// the seats of all rooms.
pub struct Hub {
    pub cfg: Config,
    /// This worker's index.
    pub id: u32,
    pub rooms: Arena<Room>,
    pub names: NameIndex<Room>,
    pub sessions: Arena<Session>,
    /// Resume token key (its last 64 bits) -> session.
    pub tokens: HashMap<u64, SessionId>,
    /// (worker, its session id) -> the shadow session standing for it here.
    pub shadows: HashMap<(u32, u64), SessionId>,
    /// Resume token key -> the worker a session of a token issued here
    /// moved to (see `moves`).
    pub moved: HashMap<u64, u32>,
    /// Room histories' bounds and their worker-wide byte count.
    pub history: Recorder,
    /// The next member id to hand out.
    pub next_member: MemberId,
    /// Seats in all rooms.
    pub members: usize,
    /// The time, as the last input said.
    pub now: Instant,
    /// Start of the millisecond clock ([`Hub::millis`]).
    pub epoch: Instant,
    pub timers: Wheel<Timer>,
    pub metrics: Metrics,
    /// Reused target lists for fan-out.
    pub scratch: fanout::Targets,
    /// Matchmaking queues.
    pub lobby: matchmaking::Lobby,
    /// Messages for other workers (`None` when this is the only worker).
    pub bus: Option<BusOut>,
    /// `list`s waiting for other workers, by query id.
    pub lists: HashMap<u32, cluster::PendingList>,
    pub lobby_list: lobby::LobbyList,
    /// Deadlines of the queries in `lists` and `api_waits`, oldest first
    /// (one timeout for all: FIFO), and the timer for the first.
    pub query_deadlines: VecDeque<(Instant, u32)>,
    pub query_timer: Option<TimerId>,
    /// HTTP room API calls waiting for other workers, by query id (from
    /// the same counter as `lists`).
    pub api_waits: HashMap<u32, admin::ApiWait>,
    pub next_list: u32,
    /// Requests forwarded to rooms' homes, oldest first, by deadline,
    /// session and number (`Asked::n`), and the timer for the first.
    pub forwarded: VecDeque<(Instant, SessionId, u32)>,
    pub forwarded_timer: Option<TimerId>,
    pub next_forwarded: u32,
    /// The epoch of the latest resume (see `session::Resuming`).
    pub next_resume: u32,
    /// Effects not yet performed.
    pub out: Out,
}

impl Hub {
    /// The core of worker `id`, its clock starting at `now`.
    pub fn new(cfg: Config, id: u32, now: Instant) -> Hub {
        let history = Recorder::new(
            cfg.history as usize,
            usize::try_from(cfg.history_bytes).unwrap_or(usize::MAX),
            usize::try_from(cfg.history_total).unwrap_or(usize::MAX),
        );
        Hub {
            id,
            rooms: Arena::default(),
            names: NameIndex::default(),
            sessions: Arena::default(),
            tokens: HashMap::new(),
            shadows: HashMap::new(),
            moved: HashMap::new(),
            history,
            next_member: 1,
            members: 0,
            now,
            epoch: now,
            timers: Wheel::new(Duration::from_millis(10), 4096, now),
            metrics: Metrics::default(),
            scratch: Default::default(),
            lobby: matchmaking::Lobby::new(&cfg, now),
            bus: None,
            lists: HashMap::new(),
            lobby_list: Default::default(),
            query_deadlines: VecDeque::new(),
            query_timer: None,
            api_waits: HashMap::new(),
            next_list: 0,
            forwarded: VecDeque::new(),
            forwarded_timer: None,
            next_forwarded: 0,
            next_resume: 0,
            out: Out::new(cfg.out_buffer as usize),
            cfg,
        }
    }

    /// One of `workers` workers under a supervisor, in its `incarnation`:
    /// member ids are numbered from it, and bus messages can go out (to
    /// peers whose link is up, see [`Hub::link_up`]).
    pub fn join_cluster(&mut self, workers: u32, incarnation: u32) {
        self.next_member = (u64::from(incarnation) << MEMBER_BITS) | 1;
        self.bus = Some(BusOut::new(self.id, workers));
    }

    /// The link to worker `p` is up (again: it starts with nothing of the
    /// old one's, see [`Hub::peer_lost`]).
    pub fn link_up(&mut self, p: u32) {
        if let Some(b) = self.bus.as_mut() {
            if p < 64 {
                b.up |= 1 << p;
            }
        }
        self.lobby_link_up(p);
        self.moves_link_up(p);
    }

    /// Input: the time. Sets the clock; the loop calls it first in a turn.
    pub fn set_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Input: the time. Sets the clock and runs every timer due by then.
    pub fn tick(&mut self, now: Instant) {
        self.set_time(now);
        let mut due = Vec::new();
        self.timers.expire(self.now, &mut due);
        for t in due {
            match t {
                Timer::Grace(sid) => self.grace_over(sid),
                Timer::Idle(rid) => self.idle_over(rid),
                Timer::Watchers(rid) => self.watchers_due(rid),
                Timer::Lobby => self.lobby_tick(),
                Timer::Queries => self.queries_due(),
                Timer::Forwarded => self.forwarded_due(),
                Timer::Match => self.match_due(),
            }
        }
    }

    /// When the core next needs [`Hub::tick`] (`None`: no timer is armed).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_timeout(self.now).map(|d| self.now + d)
    }

    /// The core's millisecond clock (rate buckets).
    pub fn millis(&self) -> u32 {
        rates::millis(self.epoch, self.now)
    }

    /// A room's watchers and bans, if it has any (see `room::Extra`).
    pub fn extra_mut(&mut self, rid: RoomId) -> Option<&mut Extra> {
        self.rooms.get_mut(rid).and_then(|r| r.extra.as_deref_mut())
    }
}

/// Sends one message to a room's members (see [`fanout::fan_out`]):
/// `broadcast!(hub, room id, member left out, |room| message)`.
macro_rules! broadcast {
    ($w:expr, $rid:expr, $except:expr, $build:expr) => {
        $crate::hub::fanout::fan_out(
            &$w.rooms,
            &mut $w.sessions,
            &mut $w.out,
            &mut $w.scratch,
            &mut $w.bus,
            ($rid, $except, false),
            $build,
        )
    };
}

/// A client connection as the core names it: the loop's connection slab is
/// keyed by it (`Arena<Conn, Link>`), so sessions hold typed, generational
/// ids of connections without knowing what a connection is.
pub enum Link {}

/// A client connection's id (see [`Link`]).
pub type ConnId = crate::arena::Id<Link>;

pub mod admin;
pub mod audience;
pub mod bus_msg;
pub mod cluster;
pub mod effects;
pub mod fanout;
pub mod history;
pub mod lobby;
pub mod lobby_feed;
pub mod lookup;
pub mod matcher;
pub mod matchmaking;
pub mod moves;
pub mod names;
pub mod out;
pub mod rates;
pub mod relay;
pub mod replay;
pub mod requests;
pub mod resume;
pub mod room;
pub mod rules;
pub mod session;

#[cfg(test)]
mod tests;
