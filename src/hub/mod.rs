//! The room core (issue 10, under way): its data (rooms and their name
//! index, sessions and their seats, histories, the matchmaking machine), a room's rules as pure
//! functions ([`rules`]), the typed messages a worker exchanges with its
//! peers ([`bus_msg`]) and the messages it sends its clients ([`out`]).
//! Nothing here touches a socket, a poll loop or a connection; the request
//! handlers that drive it still live in `impl Worker` blocks outside.

use std::collections::HashMap;

use crate::arena::Arena;
use crate::history::Recorder;
use crate::names::NameIndex;
use crate::room::{Extra, Room, RoomId};
use crate::session::{MemberId, Session, SessionId};

/// The core's state on one worker: every room and session, and the indexes
/// over them. (Its behaviour is still in `impl Worker` blocks that reach it
/// as `self.hub`.)
///
/// Invariants: `names` indexes every room in `rooms` by name and nothing
/// else; `tokens` maps the index key of every live session's resume token
/// to it (see `resume`); `shadows` maps (worker, session id there) to the
/// shadow session standing for it here (see `cluster`); `members` counts
/// the seats of all rooms.
pub struct Hub {
    pub rooms: Arena<Room>,
    pub names: NameIndex<Room>,
    pub sessions: Arena<Session>,
    /// Resume token key (its last 64 bits) -> session.
    pub tokens: HashMap<u64, SessionId>,
    /// (worker, its session id) -> the shadow session standing for it here.
    pub shadows: HashMap<(u32, u64), SessionId>,
    /// Room histories' bounds and their worker-wide byte count.
    pub history: Recorder,
    /// The next member id to hand out.
    pub next_member: MemberId,
    /// Seats in all rooms.
    pub members: usize,
}

impl Hub {
    /// A room's watchers and bans, if it has any (see `room::Extra`).
    pub fn extra_mut(&mut self, rid: RoomId) -> Option<&mut Extra> {
        self.rooms.get_mut(rid).and_then(|r| r.extra.as_deref_mut())
    }

    pub fn new(history: Recorder) -> Hub {
        Hub {
            rooms: Arena::default(),
            names: NameIndex::default(),
            sessions: Arena::default(),
            tokens: HashMap::new(),
            shadows: HashMap::new(),
            history,
            next_member: 1,
            members: 0,
        }
    }
}

/// A client connection as the core names it: the loop's connection slab is
/// keyed by it (`Arena<Conn, Link>`), so sessions hold typed, generational
/// ids of connections without knowing what a connection is.
pub enum Link {}

/// A client connection's id (see [`Link`]).
pub type ConnId = crate::arena::Id<Link>;

pub mod bus_msg;
pub mod fanout;
pub mod history;
pub mod lobby;
pub mod lookup;
pub mod matcher;
pub mod names;
pub mod out;
pub mod replay;
pub mod room;
pub mod rules;
pub mod session;
